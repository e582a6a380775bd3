"""Spec strings to trees: a scanner-less recursive-descent parser, linear in the text.

The grammar is in /work/shared/SPEC-DSL.md §2 and docs/spec.md. The lower-case ``x`` is the
repeat operator wherever a count may follow or precede it; block names are upper case, so
``DWC7x3`` is ``DWC7`` three times and ``2xDWC7`` is the prefix form. Inside ``( )`` lower-case
text is keyword names and word values (``act=relu``). Nesting, integer size and the unrolled
block count are bounded, so no input hangs or exhausts memory.
"""
from __future__ import annotations

import re

from sdpnet.registry import get_schema, list_blocks
from sdpnet.spec import check
from sdpnet.spec.errors import SpecError
from sdpnet.spec.nodes import Block, Item, Stage, Unit, Value
from sdpnet.spec.normalize import normalize
from sdpnet.spec.text import suggest
from sdpnet.spec.tree import Spec

_SPACE = " \t\r\n"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz_"
_DIGITS = "0123456789"
_RUNS = {chars: re.compile(f"[{re.escape(chars)}]*") for chars in
         (_SPACE, _UPPER, _DIGITS, _LOWER + _DIGITS, _LOWER + _UPPER + _DIGITS)}
# The text of a block with no spaces in it (bounded by the next bracket, so matching is linear).
_BLOCK_TEXT = re.compile(r"[A-Z]+[0-9]*(?:\([^()\s]*\))?")
_WHAT = {"-": "a stage", ",": "an item", "+": "a block or group", "x": "a block or group"}


def parse(text: str) -> Spec:
    """Parse a spec string into its normalised tree; raises :class:`SpecError` for any bad spec."""
    if not isinstance(text, str):
        raise SpecError(f"a spec is a string, got {type(text).__name__}")
    spec = normalize(_Parser(text).spec())
    check.check_roles(spec, TextLocator(text))
    return spec


class TextLocator:
    """Points errors at columns of the spec text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, message: str, block: Block | None, key: str | None = None, hint: str | None = None) -> SpecError:
        if block is None:
            return SpecError(message, self.text, 0, hint=hint)
        if key is not None:
            i = [k for k, _ in block.kwargs].index(key)
            return SpecError(message, self.text, block.kwcols[i], span=len(key), hint=hint)
        return SpecError(message, self.text, block.col, span=len(block.name), hint=hint)


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.depth = 0
        self.memo: dict[str, Block] = {}

    # -- scanning -------------------------------------------------------------------------------
    def fail(self, message: str, col: int, span: int = 1, hint: str | None = None) -> SpecError:
        return SpecError(message, self.s, col, span=span, hint=hint)

    def peek(self) -> str:
        c = self.s[self.i] if self.i < self.n else ""
        if c and c in _SPACE:
            self.i = _RUNS[_SPACE].match(self.s, self.i).end()
            c = self.s[self.i] if self.i < self.n else ""
        return c

    def run(self, chars: str) -> str:
        start = self.i
        self.i = _RUNS[chars].match(self.s, start).end()
        return self.s[start:self.i]

    def integer(self, what: str) -> tuple[int, int]:
        """An integer >= 1 at the cursor, with its column."""
        col = self.i
        digits = self.run(_DIGITS)
        if len(digits) > len(str(check.MAX_INT)):
            raise self.fail(f"{what} {digits[:12]}{'...' if len(digits) > 12 else ''} is too large "
                            f"(at most {check.MAX_INT:,})", col, len(digits))
        value = int(digits)
        why = check.check_int(value, what)
        if why:
            raise self.fail(why, col, len(digits))
        return value, col

    def unexpected(self, after: str | None = None) -> SpecError:
        """An error for whatever stands at the cursor where something else was expected."""
        c, col = self.peek(), self.i
        if c == "":
            if self.n == 0 or not self.s.strip():
                return self.fail("empty spec", 0, hint="a spec is stages of blocks, as in P16-DWC7x4-GAP+LIN")
            return self.fail("the spec ends too early", col, hint=after)
        if c in _LOWER and c != "x" or c == "x" and not self.s[col + 1:col + 2].isdigit():
            word = self.run(_LOWER + _UPPER + _DIGITS)
            up = word.upper().rstrip(_DIGITS)
            near = suggest(up, list_blocks(), "known blocks")
            return self.fail(f"unexpected {word!r}: block names are upper case", col, len(word), near)
        if c == "]":
            return self.fail("unmatched ']'", col, hint="every ']' closes a '[' before it")
        if c == ")":
            return self.fail("unmatched ')'", col, hint="keywords are written NAME(k=v,...)")
        if c == "x" and after is None:
            return self.fail("a second repeat on the same unit", col,
                             hint="bracket it to repeat again, as in [DWC7x2]x3")
        if c in "-,+x":
            return self.fail(f"unexpected {c!r}", col, hint=after)
        if c in _UPPER or c in _DIGITS or c in "[(":
            return self.fail(f"unexpected {c!r}: expected an operator ('-', ',' or '+') before it", col,
                             hint=after or "'-' separates stages, ',' items, '+' chained blocks")
        return self.fail(f"unexpected character {c!r}", col,
                         hint="specs use block names, integers, x, '-', ',', '+', brackets and NAME(k=v)")

    # -- grammar --------------------------------------------------------------------------------
    def spec(self) -> Spec:
        if not self.peek():
            raise self.unexpected()
        stage, total = self.stage()
        stages = [stage]
        while self.peek() == "-":
            op = self.i
            self.i += 1
            self.operand(op, "-")
            stage, count = self.stage()
            total += count
            if total > check.MAX_BLOCKS:
                raise self.too_many(op + 1, total)
            stages.append(stage)
        if self.peek():
            raise self.unexpected()
        return Spec(tuple(stages), source=self.s)

    def operand(self, op: int, sym: str) -> None:
        """After operator ``sym`` at ``op``: fail if no operand follows (a dangling operator)."""
        c = self.peek()
        if c == "" or c in "-,+])" or (c == "x" and sym == "x"):
            raise self.fail(f"dangling {sym!r}: expected {_WHAT[sym]} after it", op,
                            hint="remove it or write what follows, as in P16-DWC7")

    def stage(self) -> tuple[Stage, int]:
        """A stage and its unrolled block count."""
        item, total = self.item()
        items = [item]
        while self.peek() == ",":
            op = self.i
            self.i += 1
            self.operand(op, ",")
            item, count = self.item()
            items.append(item)
            total += count
            if total > check.MAX_BLOCKS:
                raise self.too_many(op + 1, total)
        return Stage(tuple(items)), total

    def too_many(self, col: int, total: int, span: int = 1) -> SpecError:
        return self.fail(f"the spec unrolls to more than {check.MAX_BLOCKS:,} blocks ({total:,} so far)", col,
                         span, hint="use smaller repeat counts")

    def item(self) -> tuple[Item, int]:
        repeat = 1
        if self.peek() in _DIGITS and self.peek():
            repeat, col = self.integer("repeat count")
            if self.peek() != "x":
                raise self.fail(f"a number must be followed by 'x' here (prefix repeat, as in {repeat}xDWC7)",
                                col, self.i - col)
            op = self.i
            self.i += 1
            self.operand(op, "x")
        unit, total = self.unit()
        chain = [unit]
        while self.peek() == "+":
            op = self.i
            self.i += 1
            self.operand(op, "+")
            unit, count = self.unit()
            chain.append(unit)
            total += count
        if total * repeat > check.MAX_BLOCKS:
            raise self.too_many(self.i, total * repeat)
        return Item(tuple(chain), repeat), total * repeat

    def unit(self) -> tuple[Unit, int]:
        c = self.peek()
        if c == "[":
            node, count = self.group()
        elif c and c in _UPPER:
            node, count = self.block(), 1
        else:
            raise self.unexpected("expected a block name or '['")
        repeat = 1
        if self.peek() == "x":
            op = self.i
            self.i += 1
            if self.peek() == "" or self.peek() not in _DIGITS:
                raise self.fail("missing repeat count after 'x'", op, hint="write a count >= 1, as in DWC7x3")
            repeat, col = self.integer("repeat count")
            count *= repeat
            if count > check.MAX_BLOCKS:
                raise self.too_many(col, count, self.i - col)
        return Unit(node, repeat), count

    def group(self) -> tuple[Stage, int]:
        open_col = self.i
        self.i += 1
        self.depth += 1
        if self.depth > check.MAX_DEPTH:
            raise self.fail(f"brackets nested more than {check.MAX_DEPTH} deep", open_col)
        if self.peek() == "]":
            raise self.fail("empty group '[]'", open_col, 2, hint="a group holds blocks, as in [DWC7,ENC]x4")
        if self.peek() == "":
            raise self.fail("unclosed '['", open_col, hint="close it with ']'")
        stage, count = self.stage()
        if self.peek() != "]":
            if self.peek() == "":
                raise self.fail("unclosed '['", open_col, hint="close it with ']'")
            raise self.unexpected("expected ',' '+' or ']'")
        self.i += 1
        self.depth -= 1
        return stage, count

    def block(self) -> Block:
        """A block; blocks spelled identically reuse the first one's checked fields (specs repeat blocks)."""
        col = self.i
        text = _BLOCK_TEXT.match(self.s, col).group()
        end = col + len(text)
        hit = self.memo.get(text)
        if hit is not None and (end == self.n or self.s[end] not in _SPACE):
            self.i += len(text)
            return Block(hit.name, hit.arg, hit.kwargs, col, tuple(col + c for c in hit.kwcols))
        block = self.checked_block()
        if self.i - col == len(text):
            self.memo[text] = Block(block.name, block.arg, block.kwargs, 0, tuple(c - col for c in block.kwcols))
        return block

    def checked_block(self) -> Block:
        col = self.i
        name = self.run(_UPPER)
        schema = get_schema(name)
        if schema is None:
            raise self.fail(f"unknown block {name!r}", col, len(name), suggest(name, list_blocks(), "known blocks"))
        arg = None
        arg_col = self.i
        c = self.peek()
        if c and c in _DIGITS:
            arg, arg_col = self.integer(f"{name}'s {schema.arg or 'argument'}")
        if arg is not None or schema.arg_required:
            bad = check.check_arg(schema, arg)
            if bad:
                raise self.fail(bad[0], arg_col if arg is not None else col,
                                len(str(arg)) if arg is not None else len(name), bad[1])
        if self.peek() != "(":
            return Block(name, arg, (), col)
        kwargs = sorted(self.kwargs(schema))
        return Block(name, arg, tuple((k, v) for k, v, _ in kwargs), col, tuple(c for _, _, c in kwargs))

    def kwargs(self, schema) -> list[tuple[str, Value, int]]:
        open_col = self.i
        self.i += 1
        out: list[tuple[str, Value, int]] = []
        if self.peek() == ")":
            raise self.fail("empty keyword list '()'", open_col, 2, hint=check.keyword_hint(schema, ""))
        while True:
            c = self.peek()
            if c == "":
                raise self.fail("unclosed '('", open_col, hint="close it with ')'")
            col = self.i
            key = self.run(_LOWER + _DIGITS) if c in _LOWER else ""
            if not key:
                raise self.fail("expected a keyword name (lower case)", col, hint=check.keyword_hint(schema, ""))
            param = schema.param(key)
            if param is None:
                raise self.fail(f"{schema.name} has no keyword {key!r}", col, len(key), check.keyword_hint(schema, key))
            if any(k == key for k, _, _ in out):
                raise self.fail(f"duplicate keyword {key!r}", col, len(key), hint="give each keyword once")
            if self.peek() != "=":
                raise self.fail(f"expected '=' after {key!r}", self.i if self.peek() else col,
                                hint=f"as in {key}=..." )
            self.i += 1
            vcol = self.i if self.peek() else self.i
            raw = self.value()
            if raw is None:
                raise self.fail(f"expected a value for {key!r}", vcol, hint=param.doc or None)
            text, value = raw
            try:
                value = check.coerce(param, value)
            except ValueError as e:
                raise self.fail(str(e), vcol, len(text),
                                hint=f"{key}: {param.doc}" if param.doc else None) from None
            out.append((key, value, col))
            c = self.peek()
            if c == ",":
                self.i += 1
                continue
            if c == ")":
                self.i += 1
                return out
            if c == "":
                raise self.fail("unclosed '('", open_col, hint="close it with ')'")
            raise self.fail(f"unexpected {c!r} in keywords", self.i, hint="keywords are k=v separated by ','")

    def value(self) -> tuple[str, Value] | None:
        """An INT, FLOAT or WORD at the cursor (text and value), or None."""
        c = self.peek()
        start = self.i
        if c and c in _DIGITS:
            self.run(_DIGITS)
            is_float = False
            if self.s[self.i:self.i + 1] == ".":
                self.i += 1
                self.run(_DIGITS)
                is_float = True
            if self.s[self.i:self.i + 1] in ("e", "E") and self.i + 1 < self.n:
                j = self.i + 1 + (self.s[self.i + 1] in "+-")
                if j < self.n and self.s[j] in _DIGITS:
                    self.i = j
                    self.run(_DIGITS)
                    is_float = True
            text = self.s[start:self.i]
            if len(text) > 40:
                raise self.fail(f"number {text[:12]}... is too long", start, len(text))
            return text, (float(text) if is_float else int(text))
        if c and (c in _LOWER or c in _UPPER):
            text = self.run(_LOWER + _UPPER + _DIGITS)
            return text, text
        return None
