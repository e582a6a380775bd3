"""Spec templates: one string with ``{a,b,...}`` alternatives that stands for several specs. No torch.

``P4-[DWC7+MLP,ENC]x{2,4}`` is ``P4-[DWC7+MLP,ENC]x2`` and ``P4-[DWC7+MLP,ENC]x4``; ``ENC(h={2,4})``
is ``ENC(h=2)`` and ``ENC(h=4)``. Braces never occur in the spec language, so inside ``{ }`` a
``,`` separates alternatives, except inside brackets or parentheses (``{[DWC7,ENC],ENC(h=2,r=2.0)}``
is two alternatives); an alternative is any text, itself a template (``{DWC{5,7},CM7}``);
several braces give every combination, in order (the last brace varies fastest). A template
without braces is one spec. Errors in the template (an unclosed ``{``, an empty alternative) and in
its expansions (a bad block, an out-of-range keyword) are :class:`SpecError`\\ s with the caret
under the template's own text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from sdpnet.spec.errors import SpecError
from sdpnet.spec.files import ModelSpec, load_spec
from sdpnet.spec.resolve import resolve

__all__ = ["MAX_EXPANSIONS", "Expansion", "expand", "is_template", "locate", "load_expansion"]

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
class _Alt:
    """``{...}``: the alternatives (each a sequence) and the column of the brace."""

    options: tuple["_Seq", ...]
    col: int


_Seq = tuple[Union[tuple[str, int], _Alt], ...]   # literal runs (text, start column) and alternatives


def is_template(text: str) -> bool:
    """Whether ``text`` holds alternatives (or a stray brace, which :func:`expand` reports)."""
    return "{" in text or "}" in text


def expand(template: str) -> list[Expansion]:
    """Every spec string ``template`` stands for, in order; raises :class:`SpecError` on a bad template."""
    if not isinstance(template, str):
        raise SpecError(f"a template is a string, got {type(template).__name__}")
    seq, end = _parse(template, 0, depth=0)
    if end < len(template):   # only a '}' stops the top level early
        raise SpecError("unmatched '}'", template, end, hint="every '}' closes a '{' before it")
    n = _count(seq)
    if n > MAX_EXPANSIONS:
        first = next(part for part in seq if isinstance(part, _Alt))
        raise SpecError(f"the template expands to {n:,} specs (at most {MAX_EXPANSIONS:,})", template,
                        first.col, hint="use fewer alternatives, or split the sweep")
    out, seen = [], set()
    for text, cols in _expand(seq):
        if text not in seen:   # {2,2}: the same spec once
            seen.add(text)
            out.append(Expansion(text, tuple(cols), template))
    return out


def _parse(s: str, i: int, depth: int) -> tuple[_Seq, int]:
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
            alt, i = _alternatives(s, i, depth + 1)
            parts.append(alt)
            start = i
            continue
        if c == "}" or (c == "," and depth > 0 and nest == 0):
            break
        i += 1
    if i > start:
        parts.append((s[start:i], start))
    return tuple(parts), i


def _alternatives(s: str, open_col: int, depth: int) -> tuple[_Alt, int]:
    if depth > 16:
        raise SpecError("braces nested more than 16 deep", s, open_col)
    options = []
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
        if s[j] == "}":
            return _Alt(tuple(options), open_col), j + 1
        i = j + 1   # a ','


def _count(seq: _Seq) -> int:
    n = 1
    for part in seq:
        if isinstance(part, _Alt):
            n *= sum(_count(o) for o in part.options)
    return n


def _expand(seq: _Seq) -> list[tuple[str, list[int]]]:
    out: list[tuple[str, list[int]]] = [("", [])]
    for part in seq:
        if isinstance(part, _Alt):
            tails = [t for option in part.options for t in _expand(option)]
        else:
            text, col = part
            tails = [(text, list(range(col, col + len(text))))]
        out = [(h + t, hc + tc) for h, hc in out for t, tc in tails]
    return out


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
