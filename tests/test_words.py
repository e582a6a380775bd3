"""One grammar for booleans and one "did you mean" helper, shared by every reader of user text."""
from __future__ import annotations

import json

import pytest

from sdpnet.spec import Spec, SpecError, load_spec, parse, parse_override
from sdpnet.spec.text import FALSE_WORDS, TRUE_WORDS, nearest, parse_bool, suggest

WORDS = [(w, True) for w in TRUE_WORDS] + [(w, False) for w in FALSE_WORDS]
WORDS += [(w.upper(), v) for w, v in WORDS if w.isalpha()]


@pytest.mark.parametrize("word,value", WORDS)
def test_every_reader_takes_the_same_words(word: str, value: bool) -> None:
    """Spec strings, JSON trees, JSON hyperparameters and --set overrides read a bool word the same way."""
    assert parse_bool(word) is value
    assert dict(parse(f"P16-ENC(bias={word})").stages[1].items[0].chain[0].node.kwargs)["bias"] is value
    tree = {"stages": [[{"block": "P", "arg": 16}], [{"block": "ENC", "kwargs": {"bias": word}}]]}
    assert dict(Spec.from_json(tree).stages[1].items[0].chain[0].node.kwargs)["bias"] is value
    assert load_spec(json.dumps({"arch": "P16-ENC", "qkv_bias": word})).hparams["qkv_bias"] is value
    assert parse_override(f"qkv_bias={word}") == ("qkv_bias", value)


@pytest.mark.parametrize("bad", ["2", "maybe", "", "tru"])
def test_bad_words_are_refused_everywhere(bad: str) -> None:
    """A word outside the grammar is an error in each reader, naming the accepted words."""
    with pytest.raises(ValueError, match="true/false"):
        parse_bool(bad)
    for call in (lambda: parse(f"P16-ENC(bias={bad})") if bad else parse("P16-ENC(bias=2)"),
                 lambda: load_spec(json.dumps({"arch": "P16-ENC", "qkv_bias": bad})),
                 lambda: parse_override(f"qkv_bias={bad}")):
        with pytest.raises(SpecError):
            call()


def test_did_you_mean() -> None:
    """The nearest name, case-insensitively first; nothing when nothing is close."""
    assert nearest("dwc", ["DWC", "ENC"]) == "DWC" and nearest("ENX", ["DWC", "ENC"]) == "ENC"
    assert nearest("zzzz", ["DWC", "ENC"]) is None
    assert suggest("ENX", ["ENC", "DWC"], "known blocks") == "did you mean ENC? known blocks: DWC, ENC"
