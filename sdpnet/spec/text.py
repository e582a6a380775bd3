"""Words shared by every reader of user text (spec strings, JSON spec files, ``--set`` overrides,
training configs): the one grammar for booleans and the one "did you mean" helper. No torch.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
BOOL_WORDS = "0/1, true/false, yes/no or on/off"


def parse_bool(value: Any) -> bool:
    """``value`` as a bool: a bool, the integers 0/1, or one of :data:`TRUE_WORDS` / :data:`FALSE_WORDS`
    (any case, surrounding spaces ignored); raises ``ValueError`` saying what would be valid."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"expected a bool ({BOOL_WORDS}), got {value!r}")


def nearest(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The closest of ``choices`` to ``word`` (same word in another case first, then difflib), or None."""
    choices = list(choices)
    exact = [c for c in choices if c.lower() == word.lower()]
    if exact:
        return exact[0]
    match = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    return match[0] if match else None


def suggest(word: str, choices: Iterable[str], what: str) -> str:
    """A hint line: ``did you mean DWC? known blocks: CLS, CM, ...``."""
    choices = sorted(choices)
    near = nearest(word, choices)
    known = f"{what}: {', '.join(choices)}" if choices else f"no {what}"
    return f"did you mean {near}? {known}" if near else known
