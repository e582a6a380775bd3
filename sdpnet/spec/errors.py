"""``SpecError``: a bad spec, with where it is wrong and what would be right."""
from __future__ import annotations


# How much of a long spec to echo on each side of the caret.
_WINDOW = 60


class SpecError(ValueError):
    """A malformed or inconsistent model spec.

    Attributes:
        message: what is wrong (one line).
        spec: the spec text the error points into, or None (errors in JSON files and hyperparameters).
        col: 0-based column of the offending text in ``spec`` (the rendered message counts from 1).
        span: how many characters the caret line underlines.
        hint: what would be valid (nearest names, valid keywords), or None.
        source: the file the error comes from, if any.
        path: the key path inside a JSON file or tree (``arch.stages[1][0].block``), if any.
    """

    def __init__(
        self,
        message: str,
        spec: str | None = None,
        col: int | None = None,
        *,
        span: int = 1,
        hint: str | None = None,
        source: str | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.spec = spec
        self.col = col
        self.span = max(1, span)
        self.hint = hint
        self.source = source
        self.path = path
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(str(self.source))
        if self.path:
            where.append(f"at {self.path}")
        head = (": ".join([" ".join(where), self.message]) if where else self.message)
        if self.spec is not None and self.col is not None:
            head += f" (column {self.col + 1})"
        lines = [head]
        if self.spec is not None and self.col is not None:
            lines += _echo(self.spec, self.col, self.span)
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


def _echo(text: str, col: int, span: int) -> list[str]:
    """The spec (a window of it, if long) and a caret line under ``text[col:col+span]``."""
    text = text.replace("\n", " ").replace("\t", " ").replace("\r", " ")
    start = max(0, col - _WINDOW)
    end = min(len(text), col + span + _WINDOW)
    prefix = "..." if start > 0 else ""
    suffix = "..." if end < len(text) else ""
    shown = prefix + text[start:end] + suffix
    caret_at = len(prefix) + col - start
    span = max(1, min(span, max(1, end - col)))
    return ["  " + shown, "  " + " " * caret_at + "^" * span]
