"""Spec templates: ``{a,b}`` alternatives and ``{LO..HI}`` ranges expand to spec strings; errors carry a caret into
the template; a template as a search space (named parameters, sampled define-by-run)."""
from __future__ import annotations

import sys

import pytest

from sdpnet.spec import SpecError, parse
from sdpnet.spec.space import Space
from sdpnet.spec.template import MAX_EXPANSIONS, expand, is_template, load_expansion, parse_template


class TestExpand:
    @pytest.mark.parametrize("template, specs", [
        ("P4-[DWC7+MLP,ENC]x{2,4}", ["P4-[DWC7+MLP,ENC]x2", "P4-[DWC7+MLP,ENC]x4"]),
        ("P4-ENC(h={2,4})", ["P4-ENC(h=2)", "P4-ENC(h=4)"]),
        ("P{4,8}-DWC{5,7}", ["P4-DWC5", "P4-DWC7", "P8-DWC5", "P8-DWC7"]),        # the last brace varies fastest
        ("P4-{DWC{5,7},CM7}+MLP", ["P4-DWC5+MLP", "P4-DWC7+MLP", "P4-CM7+MLP"]),  # nested alternatives
        ("P4-{DWC7,ENC}-LIN", ["P4-DWC7-LIN", "P4-ENC-LIN"]),
        ("P4-[DWC7,ENC]x2", ["P4-[DWC7,ENC]x2"]),                                 # no braces: one spec
        ("P4-ENCx{2,2}", ["P4-ENCx2"]),                                           # duplicates once
        ("P4-{[DWC7+MLP,ENC],[CM7,ENC]}x2-LIN", ["P4-[DWC7+MLP,ENC]x2-LIN", "P4-[CM7,ENC]x2-LIN"]),  # [,] inside
        ("P4-{ENC(h=2,r=2.0),DWC7}", ["P4-ENC(h=2,r=2.0)", "P4-DWC7"]),                         # (,) inside
    ])
    def test_expansions(self, template, specs):
        """Every combination, in order, each a spec that parses."""
        got = [e.text for e in expand(template)]
        assert got == specs
        for text in got:
            parse(text)

    def test_columns_map_to_template(self):
        """Every character of an expansion knows its column in the template."""
        template = "P4-ENC(h={2,16})"
        ex = expand(template)[1]
        assert ex.text == "P4-ENC(h=16)"
        assert "".join(template[c] for c in ex.cols) == ex.text

    def test_is_template(self):
        assert is_template("P4-ENCx{2,4}") and is_template("P4}") and not is_template("P4-[ENC,DWC7]x2")


class TestErrors:
    @pytest.mark.parametrize("template, message, col, span", [
        ("P4-ENCx{2,4", "unclosed '{'", 7, 1),
        ("P4-ENCx{}", "empty alternatives '{}'", 7, 2),
        ("P4-ENCx{2,}", "empty alternative", 10, 1),
        ("P4-ENCx{,2}", "empty alternative", 8, 1),
        ("P4-ENCx2}", "unmatched '}'", 8, 1),
        ("P4-" + "{DWC7,ENC}" * 10, "expands to 1,024 specs", 3, 1),
    ])
    def test_template_errors(self, template, message, col, span):
        """A malformed template is a SpecError with the caret under the brace at fault."""
        with pytest.raises(SpecError) as info:
            expand(template)
        e = info.value
        assert message in e.message and e.spec == template and (e.col, e.span) == (col, span)
        lines = str(e).split("\n")
        assert lines[1].startswith("  " + template[:col + 1])
        assert lines[2] == "  " + " " * col + "^" * span

    @pytest.mark.parametrize("template, bad, message", [
        ("P4-ENC(h={2,x})", "x", "h takes an integer"),               # in an alternative
        ("P{4,3}-ENCC", "ENCC", "unknown block 'ENCC'"),             # in the text around the braces
        ("P4(d=30)-ENC(h={2,4})-LIN", "ENC", "not divisible by h=4"),   # found only by resolving
    ])
    def test_expansion_errors_point_into_template(self, template, bad, message):
        """An expansion that does not parse or resolve is reported at the template's own text."""
        with pytest.raises(SpecError) as info:
            for ex in expand(template):
                load_expansion(ex)
        e = info.value
        assert message in e.message and "in the expansion" in e.message
        assert e.spec == template and template[e.col:e.col + e.span] == bad
        assert str(e).split("\n")[2] == "  " + " " * e.col + "^" * e.span

    def test_limit(self):
        """At most MAX_EXPANSIONS specs, counted before any is built."""
        assert len(expand("P4-DWC7x{" + ",".join(map(str, range(1, MAX_EXPANSIONS + 1))) + "}")) == MAX_EXPANSIONS
        with pytest.raises(SpecError, match="expands to"):
            expand("P4-" + "{DWC7,ENC,CM7}" * 40)   # 3**40: refused at once

    def test_torch_free(self):
        """Templates belong to the spec parser: expanding one imports no torch."""
        import subprocess

        code = ("import sys; from sdpnet.spec.template import expand; expand('P4-ENCx{2,4}'); "
                "print('torch' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "False", out.stderr


class TestRanges:
    @pytest.mark.parametrize("template, specs", [
        ("P4-ENCx{1..3}", ["P4-ENCx1", "P4-ENCx2", "P4-ENCx3"]),                       # integers: every value
        ("P4(d={32..64:16})-ENC", ["P4(d=32)-ENC", "P4(d=48)-ENC", "P4(d=64)-ENC"]),   # integer step
        ("P4-ENC(r={1.0..2.0:0.5})", ["P4-ENC(r=1.0)", "P4-ENC(r=1.5)", "P4-ENC(r=2.0)"]),   # float step
        ("P4-ENC(r={0.1..0.3:0.1})", ["P4-ENC(r=0.1)", "P4-ENC(r=0.2)", "P4-ENC(r=0.3)"]),   # no 0.30000000000000004
        ("P4-ENCx{ 1 .. 2 }", ["P4-ENCx1", "P4-ENCx2"]),                               # spaces
        ("P4-ENCx{2..2}", ["P4-ENCx2"]),                                               # one value
        ("P4-{ENCx{1..2},DWC7}", ["P4-ENCx1", "P4-ENCx2", "P4-DWC7"]),                 # inside alternatives
    ])
    def test_finite_ranges_expand(self, template, specs):
        """A range with integers or a step expands like alternatives, in order."""
        assert [e.text for e in expand(template)] == specs

    def test_range_fields(self):
        """The range's ends, scale and step; integers when both ends are written as integers."""
        (lit, r), = [parse_template("P4(d={32..128:log})")[:2]]
        assert (r.low, r.high, r.integer, r.log, r.step) == (32, 128, True, True, None)
        assert (r.col, r.text) == (5, "{32..128:log}")
        r = parse_template("ENC(r={1..4.0})")[1]
        assert not r.integer and r.values() is None and r.count() is None

    def test_columns_point_at_the_range(self):
        """A value's characters map under the range, so an error in it underlines the whole brace."""
        with pytest.raises(SpecError) as info:
            for ex in expand("P4-DROP(p={1.5..2.5:1.0})"):
                load_expansion(ex)
        e = info.value
        assert "p=1.5 must be < 1" in e.message and "in the expansion 'P4-DROP(p=1.5)'" in e.message
        assert e.spec[e.col:e.col + e.span] == "{1.5..2.5:1.0}"


class TestRangeErrors:
    @pytest.mark.parametrize("template, message, bad", [
        ("P4-ENC(r={1.0..4.0})", "is continuous", "{1.0..4.0}"),          # expand() needs a list of values
        ("P4-ENCx{1..}", "has no high end", ".}"),
        ("P4-ENCx{..4}", "has no low end", "."),
        ("P4-ENCx{a..4}", "low end 'a' is not a number", "a"),
        ("P4-ENCx{1..b2}", "high end 'b2' is not a number", "b2"),
        ("P4-ENCx{4..1}", "is empty: its low end 4 is above its high end 1", "{4..1}"),
        ("P4-ENCx{1..4:lg}", "unknown range option 'lg'", "lg"),
        ("P4-ENCx{1..4:}", "option after ':' is missing", ":"),
        ("P4-ENCx{1..8:3}", "the step 3 does not divide the range 1..8", "3"),
        ("P4-ENCx{1..8:0.5}", "an integer range takes an integer step", "0.5"),
        ("P4-ENCx{1..8:0}", "step 0 is not above 0", "0"),
        ("P4-ENCx{0..8:log}", "a log range needs a low end above 0", "0"),
        ("P4-ENCx{1..8,9}", "a range stands alone in its braces", ","),
        ("P4-ENCx{1..2000}", "expands to 2,000 specs", "{"),
    ])
    def test_caret(self, template, message, bad):
        """A bad range is a SpecError with the caret under the part at fault."""
        with pytest.raises(SpecError) as info:
            expand(template)
        e = info.value
        assert message in e.message and e.spec == template
        assert template[e.col:e.col + e.span] == bad
        assert str(e).split("\n")[2] == "  " + " " * e.col + "^" * e.span

    def test_hints(self):
        """The hint says what would be valid."""
        with pytest.raises(SpecError) as info:
            expand("P4-ENCx{1..8:3}")
        assert info.value.hint == "end it on the step: {1..7:3}"
        with pytest.raises(SpecError) as info:
            expand("P4-ENC(r={1.0..4.0})")
        assert "{1.0..4.0:0.75}" in info.value.hint and "sdpnet search" in info.value.hint


class TestSpace:
    T = "P4(d={32..128:log})-[DWC{3,7}+MLP,ENC(r={1.0..4.0})]x{1,2}-LIN"

    def test_params(self):
        """Every brace is a parameter named by its text and column: ranges numbers, alternatives choices."""
        s = Space(self.T)
        assert [(p.name, p.kind) for p in s.params] == [
            ("{32..128:log}@5", "int"), ("{3,7}@24", "choice"), ("{1.0..4.0}@40", "float"), ("{1,2}@53", "choice")]
        assert s.params[0].log and s.params[1].choices == ("3", "7") and not s.finite

    def test_sample(self):
        """A design is the template with each parameter's value written in; its columns map into the template."""
        picks = {"{32..128:log}@5": 64, "{3,7}@24": "7", "{1.0..4.0}@40": 2.34567, "{1,2}@53": "2"}
        ex = Space(self.T).sample(lambda p: picks[p.name])
        assert ex.text == "P4(d=64)-[DWC7+MLP,ENC(r=2.346)]x2-LIN" and ex.template == self.T
        parse(ex.text)
        assert len(ex.cols) == len(ex.text) and all(0 <= c < len(self.T) for c in ex.cols)

    def test_nested_finite_alternatives_are_one_choice(self):
        """{DWC{5,7},CM7} is one choice of three texts."""
        (p,) = Space("P4-{DWC{5,7},CM7}-LIN").params
        assert p.choices == ("DWC5", "DWC7", "CM7")
        assert Space("P4-{DWC{5,7},CM7}-LIN").grid() == {p.name: list(p.choices)}

    def test_conditional(self):
        """Alternatives holding a continuous range choose an alternative first; its braces are asked only then."""
        s = Space("P4-{ENC(r={1.0..2.0}),DWC{5,7}}-LIN")
        assert [(p.name, p.conditional) for p in s.params] == [
            ("{ENC(r={1.0..2.0}),DWC{5,7}}@3", False), ("{1.0..2.0}@10", True), ("{5,7}@25", True)]
        asked = []

        def pick(p):
            asked.append(p.name)
            return "DWC{5,7}" if p.kind == "choice" and not p.conditional else "5"
        assert s.sample(pick).text == "P4-DWC5-LIN" and asked == ["{ENC(r={1.0..2.0}),DWC{5,7}}@3", "{5,7}@25"]

    def test_whole_template_is_named(self):
        """An option's values (one brace) take the option's name."""
        (p,) = Space("{0.0003..0.003:log}", "lr.lr").params
        assert p.name == "lr.lr" and p.kind == "float" and p.log

    def test_grid_and_corners(self):
        """A finite space has a grid; the corners are every choice with each range at its ends."""
        s = Space("P4-ENC(h={2,4})x{1..3}")
        assert s.grid() == {"{2,4}@9": ["2", "4"], "{1..3}@16": [1, 2, 3]} and s.size() == 6
        assert [e.text for e in s.corners()] == ["P4-ENC(h=2)x1", "P4-ENC(h=2)x3", "P4-ENC(h=4)x1", "P4-ENC(h=4)x3"]
        with pytest.raises(SpecError, match="no grid"):
            Space(self.T).grid()
