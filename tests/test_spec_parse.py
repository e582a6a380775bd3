"""The spec parser: the card example's tree, canonical strings, normalisation and the malformed-spec corpus."""
from __future__ import annotations

import time

import pytest

from sdpnet.spec import Block, Item, Spec, SpecError, Stage, Unit, parse

CARD = "P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP"


def B(name: str, arg: int | None = None, **kwargs) -> Block:
    return Block(name, arg, tuple(sorted(kwargs.items())))


def one(node, repeat: int = 1) -> Item:
    return Item((Unit(node, repeat),))


class TestCardExample:
    def test_tree(self):
        """The design card's example parses to the documented tree."""
        group = Stage((Item((Unit(B("DWC", 7)), Unit(B("MLP"))), 2), one(B("ENC"))))
        expected = Spec((
            Stage((one(B("P", 16)),)),
            Stage((one(group, 17),)),
            Stage((Item((Unit(B("ENC")), Unit(B("CLS", 5)))),)),
            Stage((one(B("MLP")),)),
        ))
        assert parse(CARD) == expected

    def test_prints_back(self):
        """The card example is canonical: it prints back exactly as written."""
        assert str(parse(CARD)) == CARD

    def test_expand(self):
        """It unrolls to 1 + 17 * 5 + 2 + 1 blocks."""
        blocks = [b.name for _, b in parse(CARD).expand()]
        assert len(blocks) == 1 + 17 * 5 + 2 + 1
        assert blocks[:7] == ["P", "DWC", "MLP", "DWC", "MLP", "ENC", "DWC"]

    def test_columns(self):
        """Blocks remember their columns (not compared)."""
        spec = parse(CARD)
        assert [b.col for _, b in spec.expand()][:3] == [0, 7, 12]


CANONICAL = [
    CARD,
    "P16-DWC7x4-GAP+LIN",
    "CT3x2-ENCx7-SEQPOOL+LIN",
    "P16(d=384)+POS-ENC(h=6,r=2.0)x12-LIN",
    "P4+NEMB3+CLS5+REG4-[DWC7(act=kelu,ls=1e-06)x3,ENC(qkn=true)]x4-TOKS+MLP(h=512)",
    "CONV3(d=32,s=2)+CONV3-CM9x8-GAP+LIN(norm=none)",
    "P16-[DWC7x2]x3-LIN",
    "P16-A".replace("A", "[2xDWC7+MLP,ENC]x2,DOWN2(d=256),ENCx2"),
    "P8-2xDWC5+ENC,MLP",
    "P16-ENC(bias=false)",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_strings_print_back(text):
    """A canonical string prints back unchanged."""
    assert str(parse(text)) == text


NORMALISE = [
    ("P16 - DWC7 x 3", "P16-DWC7x3"),
    ("P16-[DWC7]", "P16-DWC7"),
    ("P16-[DWC7]x3", "P16-DWC7x3"),
    ("P16-[DWC7x2]", "P16-DWC7x2"),
    ("P16-[[DWC7,ENC]]x2", "P16-[DWC7,ENC]x2"),
    ("P16-[[[ENC]]]", "P16-ENC"),
    ("P16-2xDWC7", "P16-DWC7x2"),
    ("P16-2x[DWC7,ENC]", "P16-[DWC7,ENC]x2"),
    ("P16-2xDWC7x3", "P16-[DWC7x3]x2"),
    ("P16-[DWC7x2]x3", "P16-[DWC7x2]x3"),
    ("P16-ENCx1", "P16-ENC"),
    ("P16-1xENC", "P16-ENC"),
    ("P16-1x[DWC7,ENC]x1", "P16-DWC7,ENC"),
    ("P16-ENC,[DWC7,MLP],ENC", "P16-ENC,DWC7,MLP,ENC"),
    ("P16-ENC+[DWC7+MLP]", "P16-ENC+DWC7+MLP"),
    ("P16-2x[DWC7+MLP]", "P16-2xDWC7+MLP"),
    ("P16-[2xDWC7+MLP]", "P16-2xDWC7+MLP"),
    ("P16-ENC(r=2,h=4)", "P16-ENC(h=4,r=2.0)"),
    ("P16-ENC(bias=0,qkn=1)", "P16-ENC(bias=false,qkn=true)"),
    ("P16-ENC(ls=0.00001)", "P16-ENC(ls=1e-05)"),
    ("P16-ENC(r=2.50)", "P16-ENC(r=2.5)"),
    ("P16-ENC(bias=True)", "P16-ENC(bias=true)"),
    ("P16-DWC,DWC 7,DWC (act=relu),DWC(act=relu)", "P16-DWC,DWC7,DWC(act=relu),DWC(act=relu)"),
]


@pytest.mark.parametrize("text, canonical", NORMALISE)
def test_normalisation(text, canonical):
    """Equivalent spellings parse to the canonical tree."""
    assert str(parse(text)) == canonical
    assert parse(text) == parse(canonical)


def test_prefix_repeat_covers_the_chain():
    """``2xA+B`` repeats the whole chain: A, B, A, B."""
    names = [b.name for _, b in parse("P16-2xDWC7+MLP").expand()]
    assert names == ["P", "DWC", "MLP", "DWC", "MLP"]


def test_head_roles():
    """A last stage of head blocks is the head; otherwise it is body."""
    from sdpnet.spec.check import stage_roles

    assert stage_roles(parse(CARD)) == ["stem", "body", "body", "head"]
    assert stage_roles(parse("P16-ENC-ENC+CLS5")) == ["stem", "body", "body"]
    assert stage_roles(parse("P16-ENC-CLS5")) == ["stem", "body", "body"]
    assert stage_roles(parse("P16")) == ["stem"]


# (spec, expected 0-based column, a fragment of the message)
MALFORMED = [
    ("", 0, "empty spec"),
    ("   ", 0, "empty spec"),
    ("P16-DWX7", 4, "unknown block 'DWX'"),
    ("P16-ENC-FOO", 8, "unknown block"),
    ("P16-dwc7", 4, "upper case"),
    ("P16-[ENC", 4, "unclosed '['"),
    ("P16-[[ENC]", 4, "unclosed '['"),
    ("P16-ENC]", 7, "unmatched ']'"),
    ("P16-ENC)", 7, "unmatched ')'"),
    ("P16-[DWC7,ENC", 4, "unclosed '['"),
    ("P16-[DWC7,ENC-GAP", 13, "unexpected '-'"),
    ("P16-ENCx0", 8, ">= 1"),
    ("P16-0xENC", 4, ">= 1"),
    ("P16-ENCx", 7, "missing repeat count"),
    ("P16-ENCx-GAP", 7, "missing repeat count"),
    ("P16-[ENC]x", 9, "missing repeat count"),
    ("P16-ENCxDWC", 7, "missing repeat count"),
    ("P16-2ENC", 4, "followed by 'x'"),
    ("P16-2x", 5, "dangling 'x'"),
    ("P16-ENC-", 7, "dangling '-'"),
    ("P16-ENC,", 7, "dangling ','"),
    ("P16-ENC+", 7, "dangling '+'"),
    ("P16--ENC", 3, "dangling '-'"),
    ("P16-ENC,,DWC7", 7, "dangling ','"),
    ("P16-ENC+-DWC7", 7, "dangling '+'"),
    ("-P16", 0, "unexpected '-'"),
    (",P16", 0, "unexpected ','"),
    ("P16-[]", 4, "empty group"),
    ("P16-[,ENC]", 5, "unexpected ','"),
    ("P16-ENC()", 7, "empty keyword list"),
    ("P16-ENC(k=2)", 8, "no keyword 'k'"),
    ("P16-ENC(h=8,h=4)", 12, "duplicate keyword 'h'"),
    ("P16-ENC(h=1.5)", 10, "takes an integer"),
    ("P16-ENC(h=eight)", 10, "takes an integer"),
    ("P16-ENC(r=wide)", 10, "takes a number"),
    ("P16-ENC(bias=2)", 13, "takes a bool"),
    ("P16-ENC(act=xyz)", 12, "not one of"),
    ("P16-ENC(act=3)", 12, "takes a word"),
    ("P16-ENC(h)", 9, "expected '='"),
    ("P16-ENC(h=)", 10, "expected a value"),
    ("P16-ENC(h=8", 7, "unclosed '('"),
    ("P16-ENC(h=8;r=2)", 11, "unexpected ';'"),
    ("P16-ENC(H=8)", 8, "expected a keyword name"),
    ("P16-ENC(h=0)", 10, ">= 1"),
    ("P16-ENC2", 7, "takes no integer"),
    ("P16-GAP5+LIN", 7, "takes no integer"),
    ("P-ENC", 0, "needs an integer"),
    ("P16-CM", 4, "needs an integer"),
    ("P0-ENC", 1, ">= 1"),
    ("P16-DWC99999999999", 7, "too large"),
    ("P16-ENCx99999999999999999999", 8, "too large"),
    ("P16-[ENCx1000]x1000", 15, "more than 10,000 blocks"),
    ("P16-[[ENCx100000]x100000]x100000", 10, "more than 10,000 blocks"),
    ("P16-ENCx2x3", 9, "second repeat"),
    ("P16-ENC DWC7", 8, "expected an operator"),
    ("P16-ENC;", 7, "unexpected character ';'"),
    ("P16-ENC\u00e9", 7, "unexpected character"),
    ("DWC7-ENC", 0, "no stem"),
    ("ENC-GAP+LIN", 0, "no stem"),
    ("CLS5-ENC", 0, "no stem"),
    ("POS+P16-ENC", 0, "before the stem's tokenizer"),
    ("P16+DWC7-ENC", 4, "cannot stand in the stem"),
    ("P16-P16", 4, "stem block in the body"),
    ("P16-ENC,CT3", 8, "stem block in the body"),
    ("P16-GAP-LIN", 4, "pooling outside the head"),
    ("P16-ENC+GAP+LIN", 8, "pooling outside the head"),
    ("P16-SEQPOOL,ENC", 4, "pooling outside the head"),
    ("P16+LIN-ENC", 4, "classifier LIN outside the head"),
    ("P16-ENC-GAP+GAP+LIN", 12, "two pooling blocks"),
    ("P16-ENC-GAPx2+LIN", 8, "two pooling blocks"),
    ("P16-ENC-GAP+LIN+MLP", 16, "two classifiers"),
    ("P16-ENC-LIN+GAP", 12, "after the classifier"),
    ("P16-ENC-TOKS+LIN", 8, "no class tokens"),
    ("P16-MLP(r=2)-MLP(r=3)", 17, "MLP in the head has no keyword 'r'"),
    ("P16-ENC-MLP(h=64,act=relu)", 17, "MLP in the head has no keyword 'act'"),
    ("P16-" + "[" * 100 + "ENC" + "]" * 100, 68, "nested more than"),
]


@pytest.mark.parametrize("text, col, fragment", MALFORMED)
def test_malformed(text, col, fragment):
    """Each malformed spec is a SpecError at the expected column, with the caret message."""
    with pytest.raises(SpecError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert fragment in err.message, err.message
    assert err.col == col, str(err)
    lines = str(err).splitlines()
    caret = lines[2].index("^")
    if col < len(text):
        assert lines[1][caret] == text[col]  # the caret stands under the offending character
    else:
        assert caret == len(lines[1])  # or just past the end of the spec


def test_corpus_is_large_enough():
    """The corpus holds at least 50 malformed specs."""
    assert len(MALFORMED) >= 50


class TestMessages:
    def test_unknown_block_suggests_nearest(self):
        """An unknown block suggests the nearest name and lists the known ones."""
        with pytest.raises(SpecError) as info:
            parse("P16-DWX7")
        text = str(info.value)
        assert "did you mean DWC?" in text and "known blocks: " in text and "SEQPOOL" in text
        assert text.splitlines()[2] == "      ^^^"

    def test_bad_keyword_lists_valid_ones(self):
        """A bad keyword lists the block's keywords."""
        with pytest.raises(SpecError) as info:
            parse("P16-ENC(hh=8)")
        assert "did you mean h?" in str(info.value) and "qkn" in str(info.value)

    def test_long_spec_is_windowed(self):
        """A long spec is echoed around the error, with the caret still under it."""
        text = "P16-" + ",".join(["DWC7"] * 500) + ",DWX7"
        with pytest.raises(SpecError) as info:
            parse(text)
        lines = str(info.value).splitlines()
        assert len(lines[1]) < 200
        assert lines[1][lines[2].index("^"):].startswith("DWX7")

    def test_not_a_string(self):
        """parse() of a non-string is a SpecError."""
        with pytest.raises(SpecError):
            parse(None)  # type: ignore[arg-type]


class TestSizeLimits:
    @pytest.mark.parametrize("text", [
        "P16-[ENCx1000]x1000",
        "P16-[[ENCx100000]x100000]x100000",
        "P16-" + "[" * 60 + "ENCx1000000" + "]x1000000" * 60,
        "P16-" + ",".join(["ENCx9999"] * 3),
    ])
    def test_huge_repeats_fail_fast(self, text):
        """More than 10,000 unrolled blocks is a SpecError, found without unrolling."""
        t0 = time.perf_counter()
        with pytest.raises(SpecError, match="10,000"):
            parse(text)
        assert time.perf_counter() - t0 < 1.0

    def test_ten_thousand_is_fine(self):
        """Exactly 10,000 blocks is allowed."""
        assert sum(1 for _ in parse("P16-ENCx9998-LIN").expand()) == 10_000
