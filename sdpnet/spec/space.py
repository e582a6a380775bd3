"""A template as a search space: its braces as named parameters, sampled one design at a time. No torch, no Optuna.

Every brace of a template (:mod:`sdpnet.spec.template`) is a parameter:

- ``{a,b}`` alternatives are a categorical parameter whose choices are the texts they expand to
  (``{DWC{5,7},CM7}``: ``DWC5``, ``DWC7``, ``CM7``);
- a range is an integer or float parameter (``{32..128:log}``: an integer on a log scale,
  ``{1.0..4.0:0.5}``: a float on a grid of 0.5);
- alternatives that hold a continuous range keep their own texts as choices, and the braces inside
  the chosen one are parameters of their own, asked only when it is chosen (conditional).

A parameter is named by the brace's text and its column (``{2,4}@9``), so the same template always
names its parameters alike, and a changed template names them differently. :meth:`Space.sample`
walks the template and asks a ``suggest`` callback for each parameter it meets (Optuna's define-by-run);
the search tool binds it to ``trial.suggest_*``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sdpnet.spec.errors import SpecError
from sdpnet.spec.template import (MAX_EXPANSIONS, Alternatives, Expansion, Range, Seq, count, expand_seq,
                                  parse_template, range_text)

__all__ = ["Param", "Space"]


@dataclass(frozen=True)
class Param:
    """One parameter of a search space.

    Attributes:
        name: unique in the space: the brace's text and column (``{2,4}@9``), or the option it sets.
        kind: ``"choice"``, ``"int"`` or ``"float"``.
        choices: the texts a choice takes.
        low, high, step, log: a number's range (``step`` None: any value).
        col, span: where the brace is in the template.
        conditional: asked only when an enclosing alternative is chosen.
    """

    name: str
    kind: str
    choices: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    col: int = 0
    span: int = 1
    conditional: bool = False

    def values(self) -> list[Any] | None:
        """Every value (choices, or a range's values) when there is a list of them; None for a continuous range."""
        if self.kind == "choice":
            return list(self.choices)
        r = Range(self.low, self.high, self.kind == "int", self.log, self.step, 0, "")
        return r.values()

    def describe(self) -> str:
        """``one of DWC5, DWC7, CM7`` or ``an int in [32, 128], log scale``, for the dry run."""
        when = " (asked only when chosen)" if self.conditional else ""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices) + when
        low, high = (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)
        scale = ", log scale" if self.log else f", step {self.step:g}" if self.step is not None else ""
        return f"{'an int' if self.kind == 'int' else 'a float'} in [{low}, {high}]{scale}{when}"


class Space:
    """The designs one template stands for, as named parameters.

    Args:
        template: the template text (braces with alternatives and ranges).
        name: the parameter name when the whole template is one brace (an option's values: ``lr.lr``);
            otherwise a prefix of every parameter's name.
    """

    def __init__(self, template: str, name: str = "") -> None:
        self.template = template
        self.seq = parse_template(template)
        whole = len(self.seq) == 1 and not isinstance(self.seq[0], tuple) and len(self.seq[0].text) == len(template)
        self._whole = name if whole and name else None
        self.prefix = "" if self._whole else name
        self.params: list[Param] = []
        self._choices: dict[str, dict[str, tuple[str, list[int]]]] = {}   # flat choice -> its (text, cols)
        self._collect(self.seq, conditional=False)
        if len({p.name for p in self.params}) != len(self.params):   # only a nested copy of the same column could
            raise SpecError("two braces of the template share a name", template, 0)

    # ---- the parameters -----------------------------------------------------------------------------------

    def _name(self, brace: Alternatives | Range) -> str:
        return self._whole or f"{self.prefix}{brace.text}@{brace.col}"

    def _collect(self, seq: Seq, conditional: bool) -> None:
        for part in seq:
            if isinstance(part, Range):
                self.params.append(Param(self._name(part), "int" if part.integer else "float",
                                         low=part.low, high=part.high, step=part.step, log=part.log, col=part.col,
                                         span=len(part.text), conditional=conditional))
            elif isinstance(part, Alternatives):
                n = count((part,))
                if n is not None:   # finite: one categorical over everything it expands to
                    if n > MAX_EXPANSIONS:
                        raise SpecError(f"the alternatives expand to {n:,} choices (at most {MAX_EXPANSIONS:,})",
                                        self.template, part.col, hint="use fewer alternatives or a range")
                    flat = {}
                    for text, cols in expand_seq((part,)):
                        flat.setdefault(text, (text, cols))
                    self._choices[self._name(part)] = flat
                    self.params.append(Param(self._name(part), "choice", tuple(flat), col=part.col,
                                             span=len(part.text), conditional=conditional))
                else:               # holds a continuous range: choose an alternative, then its own braces
                    self.params.append(Param(self._name(part), "choice", part.sources, col=part.col,
                                             span=len(part.text), conditional=conditional))
                    for option in part.options:
                        self._collect(option, conditional=True)

    @property
    def finite(self) -> bool:
        """Whether the space has a list of designs (no continuous range)."""
        return count(self.seq) is not None

    def size(self) -> int | None:
        """How many designs (None: continuous)."""
        return count(self.seq)

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's values (a finite space has no conditional parameter)."""
        if not self.finite:
            r = next(p for p in self.params if p.values() is None)
            raise SpecError(f"the range {self.template[r.col:r.col + r.span]} is continuous, so the space has no "
                            f"grid", self.template, r.col, span=r.span,
                            hint="give it a step (as in {1.0..4.0:0.5}) or use another --sampler")
        return {p.name: p.values() for p in self.params}

    # ---- sampling -------------------------------------------------------------------------------------------

    def sample(self, suggest: Callable[[Param], Any]) -> Expansion:
        """One design: ``suggest(param)`` gives each parameter met while walking the template (define-by-run)."""
        text, cols = self._walk(self.seq, suggest, {p.name: p for p in self.params})
        return Expansion(text, tuple(cols), self.template)

    def _walk(self, seq: Seq, suggest: Callable[[Param], Any], params: dict[str, Param]) -> tuple[str, list[int]]:
        text, cols = "", []
        for part in seq:
            if isinstance(part, tuple):
                t, c = part[0], list(range(part[1], part[1] + len(part[0])))
            elif isinstance(part, Range):
                t, c = range_text(part, suggest(params[self._name(part)]))
            else:
                name = self._name(part)
                choice = suggest(params[name])
                if name in self._choices:
                    t, c = self._choices[name][choice]
                else:
                    t, c = self._walk(part.options[part.sources.index(choice)], suggest, params)
            text += t
            cols += c
        return text, cols

    def corners(self, limit: int = 256) -> list[Expansion]:
        """Designs to check before a search: every choice with each range at its ends, when there are at most
        ``limit`` of them; else each parameter's values once, the others at their first (``limit`` designs at
        most). A design outside these is checked when a trial draws it."""
        ends = [self._ends(p) for p in self.params]
        n = 1
        for e in ends:
            n *= len(e)
        out: dict[str, Expansion] = {}
        if n <= limit:
            for i in range(n):
                pick, j = {}, i
                for p, e in zip(reversed(self.params), reversed(ends)):
                    pick[p.name] = e[j % len(e)]
                    j //= len(e)
                ex = self.sample(lambda p: pick[p.name])
                out.setdefault(ex.text, ex)
            return list(out.values())
        base = {p.name: e[0] for p, e in zip(self.params, ends)}
        for p, e in zip(self.params, ends):
            for v in e:
                ex = self.sample(lambda q: v if q.name == p.name else base[q.name])
                out.setdefault(ex.text, ex)
                if len(out) >= limit:
                    return list(out.values())
        return list(out.values())

    @staticmethod
    def _ends(p: Param) -> list[Any]:
        if p.kind == "choice":
            return list(p.choices)
        return [p.low] if p.low == p.high else [p.low, p.high]
