"""Spec templates: ``{a,b}`` alternatives expand to spec strings; errors carry a caret into the template."""
from __future__ import annotations

import sys

import pytest

from sdpnet.spec import SpecError, parse
from sdpnet.spec.template import MAX_EXPANSIONS, expand, is_template, load_expansion


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
