"""Spec templates: one string with ``{a,b,...}`` alternatives that stands for several specs. No torch.

``P4-[DWC7+MLP,ENC]x{2,4}`` is ``P4-[DWC7+MLP,ENC]x2`` and ``P4-[DWC7+MLP,ENC]x4``; ``ENC(h={2,4})``
is ``ENC(h=2)`` and ``ENC(h=4)``. Braces never occur in the spec language, so inside ``{ }`` a
``,`` separates alternatives, except inside brackets or parentheses (``{[DWC7,ENC],ENC(h=2,r=2.0)}``
is two alternatives); an alternative is any text, itself a template (``{DWC{5,7},CM7}``);
several braces give every combination, in order (the last brace varies fastest). A template
without braces is one spec. Errors in the template (an unclosed ``{``, an empty alternative) and in
its expansions (a bad block, an out-of-range keyword) are :class:`SpecError`\\ s with the caret
under the template's own text.

A brace may instead hold a numeric range (:class:`Range`): ``{LO..HI}`` is any number from LO to HI,
both included, integers when both ends are written as integers (``d={32..128}``), floats otherwise
(``r={1.0..4.0}``); ``{LO..HI:log}`` is sampled on a log scale, ``{LO..HI:STEP}`` takes only
LO, LO + STEP, ..., HI. A range with integers or a step has a list of values and expands like
alternatives (``x{1..3}`` is ``x1``, ``x2``, ``x3``); a float range without a step is continuous:
only a search samples it (:mod:`sdpnet.spec.space`), ``expand`` refuses it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Union

from sdpnet.spec.errors import SpecError
from sdpnet.spec.files import ModelSpec, load_spec
from sdpnet.spec.resolve import resolve

__all__ = ["MAX_EXPANSIONS", "Expansion", "Alternatives", "Range", "parse_template", "count", "expand",
           "expand_seq", "is_template", "locate", "load_expansion", "format_number"]

MAX_EXPANSIONS = 1_000  # one sweep's worth; more is almost surely a typo (and would not finish)


@dataclass(frozen=True)
class Expansion:
    """One spec a template stands for.

    Attributes:
        text: the spec string.
        cols: for every character of ``text``, its 0-based column in the template.
        template: the template it came from.
    """

    text: str
    cols: tuple[int, ...]
    template: str


@dataclass(frozen=True)
class Alternatives:
    """``{a,b,...}``: the alternatives (each a sequence), the column of the brace and its text.

    Attributes:
        options: one sequence per alternative.
        col: the column of the ``{``.
        text: the brace's text, ``{`` to ``}``.
        sources: each alternative's own text.
    """

    options: tuple["Seq", ...]
    col: int
    text: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Range:
    """``{LO..HI}``, ``{LO..HI:log}`` or ``{LO..HI:STEP}``: a number from ``low`` to ``high``, both included.

    Attributes:
        low, high: the ends (ints when ``integer``).
        integer: both ends (and the step) were written as integers.
        log: sampled on a log scale (``:log``).
        step: the values are ``low + k * step`` (``:STEP``), or None.
        col: the column of the ``{``.
        text: the brace's text, ``{`` to ``}``.
    """

    low: float
    high: float
    integer: bool
    log: bool
    step: float | None
    col: int
    text: str

    def values(self) -> list[float] | None:
        """Every value, in order, when the range has a list of them (integers, or a step); else None."""
        if self.integer:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = round((self.high - self.low) / self.step)
        return [float(format_number(self.low + k * self.step, self.step)) for k in range(n + 1)]

    def count(self) -> int | None:
        """How many values: None for a continuous range."""
        if self.integer:
            return (int(self.high) - int(self.low)) // int(self.step or 1) + 1
        return None if self.step is None else round((self.high - self.low) / self.step) + 1

    def format(self, value: float) -> str:
        """``value`` as spec text: an integer, or a float with 4 significant digits (6 on a step's grid)."""
        return format_number(value, self.step if self.step is not None else None, self.integer)


Seq = tuple[Union[tuple[str, int], Alternatives, Range], ...]   # literal runs (text, start column), braces

_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_INT = re.compile(r"[+-]?\d+")


def format_number(value: float, step: float | None = None, integer: bool = False) -> str:
    """A range's value as spec text: ``64``, ``2.5``, ``0.0003`` (floats always with a point or an exponent)."""
    if integer:
        return str(int(value))
    digits = 6 if step is not None else 4
    text = repr(float(f"{value:.{digits}g}"))
    return text


def is_template(text: str) -> bool:
    """Whether ``text`` holds alternatives (or a stray brace, which :func:`expand` reports)."""
    return "{" in text or "}" in text


def expand(template: str) -> list[Expansion]:
    """Every spec string ``template`` stands for, in order; raises :class:`SpecError` on a bad template."""
    seq = parse_template(template)
    n = count(seq)
    if n is None:
        r = _continuous(seq)
        raise SpecError(f"the range {r.text} is continuous (any float between its ends), so the template has no "
                        f"list of specs", template, r.col, span=len(r.text),
                        hint=f"give it a step to expand it ({{{r.text[1:-1]}:{_step_hint(r)}}}), or search it "
                             f"(python -m sdpnet search)")
    if n > MAX_EXPANSIONS:
        first = next(part for part in seq if isinstance(part, (Alternatives, Range)))
        raise SpecError(f"the template expands to {n:,} specs (at most {MAX_EXPANSIONS:,})", template,
                        first.col, hint="use fewer alternatives, or split the sweep")
    out, seen = [], set()
    for text, cols in expand_seq(seq):
        if text not in seen:   # {2,2}: the same spec once
            seen.add(text)
            out.append(Expansion(text, tuple(cols), template))
    return out


def parse_template(template: str) -> Seq:
    """The template as a sequence of literal runs and braces; raises :class:`SpecError` on a bad template."""
    if not isinstance(template, str):
        raise SpecError(f"a template is a string, got {type(template).__name__}")
    seq, end = _parse(template, 0, depth=0)
    if end < len(template):   # only a '}' stops the top level early
        raise SpecError("unmatched '}'", template, end, hint="every '}' closes a '{' before it")
    return seq


def _parse(s: str, i: int, depth: int) -> tuple[Seq, int]:
    """The sequence starting at ``i``, up to an unbraced ``,``/``}`` (inside braces) or the end."""
    parts: list = []
    start, nest = i, 0   # nest: brackets and parentheses opened inside this sequence
    while i < len(s):
        c = s[i]
        if c in "[(":
            nest += 1
        elif c in "])":
            nest = max(0, nest - 1)
        if c == "{":
            if i > start:
                parts.append((s[start:i], start))
            close = s.find("}", i)
            if close > 0 and "{" not in s[i + 1:close] and ".." in s[i + 1:close]:
                brace, i = _range(s, i, close), close + 1
            else:
                brace, i = _alternatives(s, i, depth + 1)
            parts.append(brace)
            start = i
            continue
        if c == "}" or (c == "," and depth > 0 and nest == 0):
            break
        i += 1
    if i > start:
        parts.append((s[start:i], start))
    return tuple(parts), i


def _range(s: str, open_col: int, close: int) -> Range:
    """The range ``s[open_col:close + 1]``; SpecError with the caret under the part at fault."""
    body = s[open_col + 1:close]
    text = s[open_col:close + 1]
    hint = "a range is {LO..HI}, {LO..HI:log} or {LO..HI:STEP}, as in d={32..128:log} or r={1.0..4.0:0.5}"
    if "," in body:
        raise SpecError("a range stands alone in its braces", s, open_col + 1 + body.index(","), hint=hint)
    lo_text, _, rest = body.partition("..")
    hi_text, colon, option = rest.partition(":")
    lo_col = open_col + 1
    hi_col = open_col + 1 + len(lo_text) + 2
    opt_col = hi_col + len(hi_text) + 1

    def number(t: str, col: int, what: str) -> float:
        if not t.strip():
            raise SpecError(f"the range has no {what} end", s, col if t else col - (what == "high"),
                            span=2 if what == "high" and not t else 1, hint=hint)
        if not re.fullmatch(r"\s*" + _NUM + r"\s*", t):
            raise SpecError(f"the range's {what} end {t.strip()!r} is not a number", s, col + len(t) - len(t.lstrip()),
                            span=len(t.strip()), hint=hint)
        return float(t)

    low, high = number(lo_text, lo_col, "low"), number(hi_text, hi_col, "high")
    integer = bool(_INT.fullmatch(lo_text.strip()) and _INT.fullmatch(hi_text.strip()))
    log, step = False, None
    if colon:
        opt = option.strip()
        if opt == "log":
            log = True
        elif re.fullmatch(_NUM, opt):
            step = float(opt)
            if not step > 0:
                raise SpecError(f"the range's step {opt} is not above 0", s, opt_col, span=len(option), hint=hint)
            if integer and not _INT.fullmatch(opt):
                raise SpecError(f"an integer range takes an integer step, not {opt}", s, opt_col, span=len(option),
                                hint=f"write the ends as floats for a float range: {{{float(low)!r}..{float(high)!r}"
                                     f":{opt}}}")
        else:
            raise SpecError(f"unknown range option {opt!r}" if opt else "the range's option after ':' is missing", s,
                            opt_col if opt else opt_col - 1, span=max(1, len(option)),
                            hint="expected :log (a log scale) or a step such as :16 or :0.5")
    if integer:
        low, high = int(low), int(high)
    if low > high:
        raise SpecError(f"the range {text} is empty: its low end {lo_text.strip()} is above its high end "
                        f"{hi_text.strip()}", s, open_col, span=len(text), hint=f"write it as {{{hi_text.strip()}.."
                                                                                  f"{lo_text.strip()}}}")
    if log and low <= 0:
        raise SpecError(f"a log range needs a low end above 0, not {lo_text.strip()}", s, lo_col, span=len(lo_text),
                        hint="use a linear range, or start the log range above 0")
    if step is not None:
        k = (high - low) / step
        if abs(k - round(k)) > 1e-9 * max(1.0, abs(k)):
            end = low + math.floor(k + 1e-9) * step
            end_text = str(int(end)) if integer else format_number(end, step)
            raise SpecError(f"the step {option.strip()} does not divide the range {lo_text.strip()}..{hi_text.strip()}",
                            s, opt_col, span=len(option),
                            hint=f"end it on the step: {{{lo_text.strip()}..{end_text}:{option.strip()}}}")
    return Range(low, high, integer, log, step, open_col, text)


def _alternatives(s: str, open_col: int, depth: int) -> tuple[Alternatives, int]:
    if depth > 16:
        raise SpecError("braces nested more than 16 deep", s, open_col)
    options, starts = [], []
    i = open_col + 1
    while True:
        seq, j = _parse(s, i, depth)
        if j >= len(s):
            raise SpecError("unclosed '{'", s, open_col, hint="close the alternatives with '}', as in x{2,4}")
        if not seq:
            what = "empty alternatives '{}'" if s[j] == "}" and not options else "empty alternative"
            raise SpecError(what, s, open_col if what.startswith("empty alternatives") else j,
                            span=2 if what.startswith("empty alternatives") else 1,
                            hint="alternatives are non-empty text separated by ',', as in ENC(h={2,4})")
        options.append(seq)
        starts.append((i, j))
        if s[j] == "}":
            return Alternatives(tuple(options), open_col, s[open_col:j + 1], tuple(s[a:b] for a, b in starts)), j + 1
        i = j + 1   # a ','


def count(seq: Seq) -> int | None:
    """How many specs ``seq`` stands for; None when a continuous range is in it."""
    n = 1
    for part in seq:
        if isinstance(part, Alternatives):
            counts = [count(o) for o in part.options]
            if None in counts:
                return None
            n *= sum(counts)
        elif isinstance(part, Range):
            c = part.count()
            if c is None:
                return None
            n *= c
    return n


def _continuous(seq: Seq) -> Range | None:
    """The first continuous range of ``seq`` (in any alternative), or None."""
    for part in seq:
        if isinstance(part, Range) and part.count() is None:
            return part
        if isinstance(part, Alternatives):
            found = next((r for r in map(_continuous, part.options) if r is not None), None)
            if found is not None:
                return found
    return None


def range_text(r: Range, value: float) -> tuple[str, list[int]]:
    """The text of one of ``r``'s values and its columns: the characters point at the range's ``{``, the last (of
    two or more) at its ``}``, so an error in the value underlines the whole brace."""
    text = r.format(value)
    cols = [r.col] * len(text)
    if len(text) > 1:
        cols[-1] = r.col + len(r.text) - 1
    return text, cols


def expand_seq(seq: Seq) -> list[tuple[str, list[int]]]:
    """Every (text, columns) ``seq`` stands for, in order (it has no continuous range: see :func:`count`)."""
    out: list[tuple[str, list[int]]] = [("", [])]
    for part in seq:
        if isinstance(part, Alternatives):
            tails = [t for option in part.options for t in expand_seq(option)]
        elif isinstance(part, Range):
            tails = [range_text(part, v) for v in part.values()]
        else:
            text, col = part
            tails = [(text, list(range(col, col + len(text))))]
        out = [(h + t, hc + tc) for h, hc in out for t, tc in tails]
    return out


def _step_hint(r: Range) -> str:
    return format_number((r.high - r.low) / 4 or 1.0)


def locate(error: SpecError, expansion: Expansion) -> SpecError:
    """``error`` (raised for ``expansion.text``) pointing at the template's text instead, naming the expansion."""
    if error.spec != expansion.text or error.col is None or expansion.text == expansion.template:
        return error
    cols = expansion.cols
    col = cols[min(error.col, len(cols) - 1)] if cols else 0
    last = cols[min(error.col + error.span, len(cols)) - 1] if cols else col
    where = f"in the expansion {expansion.text!r}"
    return SpecError(f"{error.message} {where}", expansion.template, col, span=max(1, last - col + 1),
                     hint=error.hint, source=error.source, path=error.path)


def load_expansion(expansion: Expansion, check: bool = True, **hparams: Any) -> ModelSpec:
    """The expansion as a :class:`ModelSpec` with ``hparams``, resolved with ``check`` (the checks that need
    the hyperparameters); errors point into the template."""
    try:
        model = load_spec(expansion.text, **hparams)
        if check:
            resolve(model)
    except SpecError as e:
        raise locate(e, expansion) from None
    return model
