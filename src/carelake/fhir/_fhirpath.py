"""FHIRPath text → a small syntax tree, for compiling to SQL (not for evaluating).

Why a hand-written parser: the FHIRPath packages on PyPI (``fhirpathpy``, ``fhirpath``) are
*evaluators* over Python dicts; their parse trees are internal to their interpreters (``fhirpathpy``'s
comes from an ANTLR grammar and brings the ANTLR runtime along) and would need a translation layer as
large as the grammar itself. carelake needs a tree to translate into set-based SQL, over the subset
SQL-on-FHIR v2 uses (paths, indexers, operators, a few dozen functions), so this module is a short
recursive-descent parser of the FHIRPath N1 grammar (https://hl7.org/fhirpath/N1/grammar.html),
with its precedence table, literals (string, number, boolean, ``{}``, ``@`` date/time, quantity),
``$this``/``$index``/``$total`` and ``%constants``. Errors are :class:`ViewDefinitionError` with the
position of the offending character.

Examples:
    >>> parse("name.where(use = 'official').family.first()")  # doctest: +ELLIPSIS
    Call(target=Member(target=Call(target=Member(target=None, name='name'), name='where', ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from carelake.fhir._errors import ViewDefinitionError


@dataclass(frozen=True)
class Node:
    """A FHIRPath syntax tree node."""


@dataclass(frozen=True)
class Literal(Node):
    """A literal; ``type`` is a FHIRPath type name (``string``, ``integer``, ``date``…) or ``empty``."""

    value: object
    type: str
    unit: str | None = None


@dataclass(frozen=True)
class Member(Node):
    """``target.name``; ``target`` is None for a name on the input focus (``name`` in ``name.given``)."""

    target: Node | None
    name: str


@dataclass(frozen=True)
class Call(Node):
    """``target.name(args)``; ``target`` is None for a call on the input focus."""

    target: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Indexer(Node):
    """``target[index]``."""

    target: Node
    index: Node


@dataclass(frozen=True)
class Binary(Node):
    """An infix operator: ``and``, ``=``, ``+``, ``|``…"""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Unary(Node):
    """A polarity operator: ``-x`` or ``+x``."""

    op: str
    operand: Node


@dataclass(frozen=True)
class TypeOp(Node):
    """``operand is Type`` / ``operand as Type``."""

    op: str
    operand: Node
    type_name: str


@dataclass(frozen=True)
class Variable(Node):
    """``$this``, ``$index`` or ``$total``."""

    name: str


@dataclass(frozen=True)
class Constant(Node):
    """An external constant: ``%name`` (``%rowIndex``, a view's ``constant``, ``%resource``)."""

    name: str


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<datetime>@(?:T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?
        |\d{4}(?:-\d{2}(?:-\d{2})?)?(?:T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?(?:Z|[+-]\d{2}:\d{2})?)?))
  | (?P<number>\d+(?:\.\d+)?L?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<quoted>`(?:[^`\\]|\\.)*`)
  | (?P<variable>\$[A-Za-z]+)
  | (?P<constant>%(?:[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|!~|[.,()\[\]{}=~<>|+\-*/&])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

# Binary operators by precedence level, loosest first (FHIRPath N1 §"Operator precedence").
_LEVELS: tuple[tuple[str, ...], ...] = (
    ("implies",),
    ("or", "xor"),
    ("and",),
    ("in", "contains"),
    ("=", "~", "!=", "!~"),
    ("<=", "<", ">", ">="),
    ("|",),
    ("is", "as"),
    ("+", "-", "&"),
    ("*", "/", "div", "mod"),
)
_WORD_OPS = {"implies", "or", "xor", "and", "in", "contains", "is", "as", "div", "mod"}
_CALENDAR_UNITS = {
    "year", "years", "month", "months", "week", "weeks", "day", "days",
    "hour", "hours", "minute", "minutes", "second", "seconds", "millisecond", "milliseconds",
}  # fmt: skip


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokenize(text: str, element: str | None) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ViewDefinitionError(
                f"cannot parse FHIRPath {text!r}: unexpected character {text[pos]!r} at position {pos}",
                element=element,
            )
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str, element: str | None) -> None:
        self.text = text
        self.element = element
        self.tokens = _tokenize(text, element)
        self.i = 0

    # -- helpers
    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def next(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, message: str, token: _Token | None = None) -> ViewDefinitionError:
        token = token or self.peek()
        where = "at the end" if token.kind == "end" else f"at position {token.pos} ({token.text!r})"
        return ViewDefinitionError(f"cannot parse FHIRPath {self.text!r}: {message} {where}", element=self.element)

    def expect(self, text: str) -> _Token:
        token = self.peek()
        if token.kind != "op" or token.text != text:
            raise self.fail(f"expected {text!r}")
        return self.next()

    def is_op(self, token: _Token, ops: tuple[str, ...]) -> bool:
        if token.kind == "op":
            return token.text in ops
        return token.kind == "ident" and token.text in ops and token.text in _WORD_OPS

    # -- grammar
    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail("empty expression")
        node = self.expression(0)
        if self.peek().kind != "end":
            raise self.fail("unexpected token")
        return node

    def expression(self, level: int) -> Node:
        if level == len(_LEVELS):
            return self.polarity()
        ops = _LEVELS[level]
        left = self.expression(level + 1)
        while self.is_op(self.peek(), ops):
            op = self.next().text
            if op in ("is", "as"):
                left = TypeOp(op, left, self.type_specifier())
            else:
                left = Binary(op, left, self.expression(level + 1))
        return left

    def type_specifier(self) -> str:
        parts = [self.identifier()]
        while self.peek().kind == "op" and self.peek().text == ".":
            self.next()
            parts.append(self.identifier())
        return ".".join(parts)

    def identifier(self) -> str:
        token = self.peek()
        if token.kind == "ident":
            self.next()
            return token.text
        if token.kind == "quoted":
            self.next()
            return _unescape(token.text[1:-1])
        raise self.fail("expected an identifier")

    def polarity(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.text in ("+", "-"):
            self.next()
            return Unary(token.text, self.polarity())
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token.kind == "op" and token.text == ".":
                self.next()
                node = self.invocation(node)
            elif token.kind == "op" and token.text == "[":
                self.next()
                index = self.expression(0)
                self.expect("]")
                node = Indexer(node, index)
            else:
                return node

    def invocation(self, target: Node | None) -> Node:
        token = self.peek()
        if token.kind == "variable":
            self.next()
            return self.variable(token)
        name = self.identifier()
        if self.peek().kind == "op" and self.peek().text == "(":
            self.next()
            args: list[Node] = []
            if not (self.peek().kind == "op" and self.peek().text == ")"):
                args.append(self.expression(0))
                while self.peek().kind == "op" and self.peek().text == ",":
                    self.next()
                    args.append(self.expression(0))
            self.expect(")")
            return Call(target, name, tuple(args))
        return Member(target, name)

    def variable(self, token: _Token) -> Node:
        name = token.text[1:]
        if name not in ("this", "index", "total"):
            raise self.fail("unknown variable", token)
        return Variable(name)

    def term(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.text == "(":
            self.next()
            node = self.expression(0)
            self.expect(")")
            return node
        if token.kind == "op" and token.text == "{":
            self.next()
            self.expect("}")
            return Literal(None, "empty")
        if token.kind == "string":
            self.next()
            return Literal(_unescape(token.text[1:-1]), "string")
        if token.kind == "number":
            self.next()
            return self.number(token)
        if token.kind == "datetime":
            self.next()
            return self.temporal(token.text[1:])
        if token.kind == "constant":
            self.next()
            body = token.text[1:]
            return Constant(_unescape(body[1:-1]) if body[:1] in ("`", "'") else body)
        if token.kind == "variable":
            self.next()
            return self.variable(token)
        if token.kind == "ident" and token.text in ("true", "false"):
            self.next()
            return Literal(token.text == "true", "boolean")
        if token.kind in ("ident", "quoted"):
            return self.invocation(None)
        raise self.fail("expected a term")

    def number(self, token: _Token) -> Node:
        text = token.text
        if text.endswith("L"):
            return Literal(int(text[:-1]), "integer")
        unit = self.peek()
        if unit.kind == "string" or (unit.kind == "ident" and unit.text in _CALENDAR_UNITS):
            self.next()
            return Literal(text, "quantity", unit=_unescape(unit.text[1:-1]) if unit.kind == "string" else unit.text)
        if "." in text:
            return Literal(text, "decimal")
        return Literal(int(text), "integer")

    def temporal(self, text: str) -> Node:
        if text.startswith("T"):
            return Literal(text[1:], "time")
        if "T" in text:
            return Literal(text.rstrip("T"), "dateTime")
        return Literal(text, "date")


def parse(text: str, *, element: str | None = None) -> Node:
    """Parse a FHIRPath expression; ``element`` names where it came from for error messages."""
    if not isinstance(text, str):
        raise ViewDefinitionError(f"a FHIRPath expression must be a string, not {type(text).__name__}", element=element)
    return _Parser(text, element).parse()
