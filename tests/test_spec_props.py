"""Property tests of the spec language: round trips over random trees, and robustness to random text."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sdpnet.registry import get_schema
from sdpnet.spec import Block, Item, Spec, SpecError, Stage, Unit, parse
from sdpnet.spec.check import count_stage
from sdpnet.spec.normalize import normalize

SETTINGS = settings(max_examples=100, deadline=1000, suppress_health_check=[HealthCheck.too_slow])

STEM = ["P", "CT", "CONV", "POS", "NEMB", "CLS", "REG"]
BODY = ["DWC", "CM", "MLP", "ENC", "DOWN", "CONV", "POS", "NEMB", "CLS", "REG"]
counts = st.integers(1, 3)


def in_range(strategy, rng):
    """``strategy`` filtered to the values a schema Range admits."""
    return strategy if rng is None else strategy.filter(lambda v: rng.why(v) is None)


def values(param):
    if param.type is bool:
        return st.booleans()
    if param.type is int:
        return in_range(st.integers(1, 512), param.range)
    if param.type is float:
        return in_range(st.floats(0, 8, allow_nan=False, allow_infinity=False), param.range)
    return st.sampled_from(param.allowed() or ("a", "word"))


@st.composite
def blocks(draw, names, role):
    name = draw(st.sampled_from(names))
    schema = get_schema(name)
    arg = None
    if schema.arg is not None and (schema.arg_required or draw(st.booleans())):
        arg = draw(in_range(st.integers(1, 32), schema.arg_range))
    choices = [p for p in schema.params_for(role) if not p.needs]  # those need tokens the tree may not declare
    params = draw(st.lists(st.sampled_from(choices), unique=True, max_size=3)) if choices else []
    kwargs = tuple(sorted((p.key, draw(values(p))) for p in params))
    return Block(name, arg, kwargs)


def stages(block_strategy, depth=2):
    unit = st.deferred(lambda: st.builds(Unit, st.one_of(block_strategy, group), counts))
    item = st.builds(Item, st.lists(unit, min_size=1, max_size=2).map(tuple), counts)
    stage = st.lists(item, min_size=1, max_size=3).map(lambda items: Stage(tuple(items)))
    group = st.deferred(lambda: stage) if depth else block_strategy
    return stage


def _stem_stage(draw):
    first = Item((Unit(draw(blocks(["P", "CT", "CONV"], "stem")), draw(counts)),))
    rest = draw(st.lists(st.builds(Item, st.lists(st.builds(Unit, blocks(STEM, "stem"), counts), min_size=1,
                                                  max_size=2).map(tuple), counts), max_size=2))
    return Stage((first, *rest))


@st.composite
def specs(draw):
    """Random valid, possibly un-normalised trees: stem, body stages, optional head."""
    body = [draw(stages(blocks(BODY, "body"))) for _ in range(draw(st.integers(0, 2)))]
    # A last body stage must not read as a head: end it with an ENC.
    if body:
        body[-1] = Stage(body[-1].items + (Item((Unit(Block("ENC")),)),))
    head = []
    if draw(st.booleans()):
        cls = draw(st.booleans())
        pool = draw(st.sampled_from(["GAP", "SEQPOOL"] + (["TOKS"] if cls else []) + [None]))
        clf = draw(st.sampled_from(["LIN", "MLP", None] if pool else ["LIN", "MLP"]))
        names = ([Block("CLS", 2)] if cls else []) + [Block(n) for n in (pool, clf) if n]
        head = [Stage(tuple(Item((Unit(b),)) for b in names))]
    spec = Spec((_stem_stage(draw), *body, *head))
    assume(sum(count_stage(s) for s in spec.stages) <= 2000)  # stay well inside the 10,000-block limit
    return spec


class TestRoundTrip:
    @SETTINGS
    @given(specs())
    def test_print_parse(self, tree):
        """A random tree prints and re-parses to its normal form; the normal form is a fixed point."""
        norm = normalize(tree)
        assert parse(str(tree)) == norm
        assert parse(str(norm)) == norm
        assert normalize(norm) == norm
        assert str(parse(str(norm))) == str(norm)

    @SETTINGS
    @given(specs())
    def test_json(self, tree):
        """string -> JSON -> string is the identity on canonical strings, through real JSON text."""
        text = str(normalize(tree))
        spec = parse(text)
        again = Spec.from_json(json.loads(json.dumps(spec.to_json())))
        assert again == spec
        assert str(again) == text


ALPHABET = "PCTDWENMLGAOSQRBKVUIHx0123456789-,+[]()=._ hrdsactbiuel"
VALID = ["P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP", "CT3x2-ENC(h=4,r=2)x7-SEQPOOL+LIN",
         "P4+CLS1-DWC7(act=kelu)x2,DOWN2(d=128)-TOKS+MLP(h=64)"]


def _only_spec_errors(text: str) -> None:
    try:
        spec = parse(text)
    except SpecError as e:
        assert e.col is None or 0 <= e.col <= len(text)
        str(e)
        return
    assert parse(str(spec)) == spec


class TestRobustness:
    @SETTINGS
    @given(st.text(alphabet=ALPHABET, max_size=80))
    def test_random_text(self, text):
        """Random text over the grammar's alphabet raises nothing but SpecError, fast."""
        _only_spec_errors(text)

    @SETTINGS
    @given(st.text(max_size=40))
    def test_random_unicode(self, text):
        """Arbitrary text raises nothing but SpecError."""
        _only_spec_errors(text)

    @SETTINGS
    @given(st.sampled_from(VALID), st.lists(st.tuples(st.sampled_from(["ins", "del", "rep"]),
                                                      st.integers(0, 60), st.sampled_from(ALPHABET)),
                                            min_size=1, max_size=4))
    def test_mutations(self, text, edits):
        """Random insertions, deletions and replacements in valid specs raise only SpecError."""
        for op, pos, ch in edits:
            pos = pos % (len(text) + 1)
            if op == "ins":
                text = text[:pos] + ch + text[pos:]
            elif op == "del":
                text = text[:pos] + text[pos + 1:]
            else:
                text = text[:pos] + ch + text[pos + 1:]
        _only_spec_errors(text)

    @SETTINGS
    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(
                            st.sampled_from(["stages", "block", "group", "chain", "repeat", "arg", "kwargs", "h"]),
                            c, max_size=3), max_leaves=12))
    def test_random_json(self, obj):
        """Random JSON trees raise nothing but SpecError."""
        try:
            Spec.from_json({"stages": obj})
        except SpecError:
            pass
