"""Which of many Python regular expressions can match a text, in one pass: skip the scans that cannot.

The free-text scrubber runs some forty patterns over every note, and most of them find nothing in a given note:
Python's ``re`` still tries each one at every position (the lookbehinds and case-insensitive cue lists they start
with defeat its literal-prefix search), about 2.5 ms per note in all. RE2 (``google-re2``) tells in one linear
pass which of a set of patterns match anywhere, but it has no lookaround and no backreference, so it cannot run
the patterns themselves. A :class:`Screen` runs a *relaxed* form of each pattern in one RE2 set:

* a lookbehind that opens the pattern and a lookahead that closes it are matched as plain text (where the
  pattern matches, that text is there); every other lookaround becomes empty (it only ever removes matches);
* a backreference becomes the pattern of the group it refers to (which matched the same text);
* ``^``/``$``/``\\A``/``\\Z`` become empty (Python's ``$`` also matches before a final newline, RE2's does not);
* everything else (literals, classes, ``\\b``, repeats, flags) is written out in RE2 syntax.

So a relaxed pattern matches every text its original matches: when RE2 finds nothing, neither would ``re``, and
that scan is skipped. Where the pattern does not open with a lookbehind that must match, the relaxed form also
matches wherever the original starts a match, so within a text ``re`` need only start where RE2 finds the next
relaxed match: :meth:`Screen.finditer` jumps there, from the end of each match, instead of trying every position
in between (2.6 times faster over 3,000 synthetic notes, the same spans). What is found never changes, only how
fast.
The two engines agree on ``\\w``, ``\\d``, ``\\s``, ``\\b`` and case folding for ASCII text without the few
control characters Python also counts as space (``\\v``, ``\\x1c``-``\\x1f``), and for non-ASCII punctuation and
symbols (``’``, ``°``); any other text is scanned with every pattern, as is any pattern with no relaxed form, and
every text should RE2 ever give up on the set.
"""

from __future__ import annotations

import contextlib
import re
import re._constants as sre  # the parse tree of re's own parser: the only complete reading of Python's syntax
import re._parser as sre_parse
import unicodedata
from collections.abc import Iterator
from typing import Any

# Python counts these as \s and RE2 does not: a text holding one is never judged by RE2.
_ODD_SPACE = re.compile(r"[\x0b\x1c-\x1f]")
_CATEGORIES = {
    sre.CATEGORY_DIGIT: r"\d",
    sre.CATEGORY_NOT_DIGIT: r"\D",
    sre.CATEGORY_SPACE: r"\s",
    sre.CATEGORY_NOT_SPACE: r"\S",
    sre.CATEGORY_WORD: r"\w",
    sre.CATEGORY_NOT_WORD: r"\W",
}
_FLAGS = {re.IGNORECASE: "i", re.DOTALL: "s", re.MULTILINE: "m"}
# RE2's memory budget for the set's automata: its default, 8 MB, never ran out on 2,300 notes; this leaves room
# for unusual text, and should RE2 still run out, the text is scanned with every pattern (see _judge).
MAX_MEM = 32 << 20


class Unsupported(Exception):
    """The pattern uses syntax with no relaxed RE2 form: it is always scanned."""


class Screen:
    """Patterns are added as recognisers are built; the RE2 set is compiled on the first text."""

    def __init__(self, *, max_mem: int = MAX_MEM) -> None:
        self._patterns: dict[str, str] = {}  # pattern text -> its relaxed form
        self._always: set[str] = set()  # patterns without a relaxed form
        self._opening: set[str] = set()  # patterns whose relaxed form starts before them (an opening lookbehind)
        self._finders: dict[str, Any] = {}  # pattern text -> its relaxed form compiled alone, to find where to start
        self._max_mem = max_mem
        self._set: Any = None
        self._order: list[str] = []  # set index - 1 -> pattern text (index 0 is the always-matching sentinel)
        self._last: tuple[str | None, frozenset[str] | None] = (None, None)
        self._haystack: tuple[str | None, str | bytes] = (None, "")  # the last text, as finditer gives it to RE2

    def add(self, pattern: str, flags: int = 0) -> None:
        try:
            self._patterns[pattern], starts_before = _relax(pattern, flags)
        except (Unsupported, re.error):
            self._always.add(pattern)
            return
        if starts_before:
            self._opening.add(pattern)

    def may_match(self, text: str) -> frozenset[str] | None:
        """The patterns that may match ``text`` (a superset of those that do), or None: scan with every pattern.

        The recognisers of one analysis ask in turn about the same text; the answer is kept for it."""
        last_text, last = self._last
        if text is last_text:
            return last
        found = self._judge(text)
        self._last = (text, found)
        return found

    def finditer(self, pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
        """The matches of ``pattern.finditer(text)``, with ``re`` started only where the relaxed form matches.

        No match can start before the relaxed form's next match, so ``re`` searches from there; where RE2 finds
        none, no match is left. Texts RE2 cannot judge (see :meth:`may_match`) are scanned as ``re`` would."""
        judged = self.may_match(text) is not None  # first: the first text compiles the finders
        finder = self._finders.get(pattern.pattern) if judged else None
        if finder is None:
            yield from pattern.finditer(text)
            return
        kept = self._haystack  # read once: a scrubber in another thread may keep another text meanwhile
        if kept[0] is not text:  # RE2 reads a str by encoding it at every call: bytes, when ASCII
            kept = self._haystack = (text, text.encode("ascii") if text.isascii() else text)
        haystack, position = kept[1], 0
        while (candidate := finder.search(haystack, position)) is not None:
            match = pattern.search(text, candidate.start())
            if match is None:
                return
            if match.end() == match.start():  # an empty match: re's own rules say where the next may start
                yield from pattern.finditer(text, match.start())
                return
            yield match
            position = match.end()

    def _judge(self, text: str) -> frozenset[str] | None:
        if _ODD_SPACE.search(text) or not (text.isascii() or _plain_symbols(text)):
            return None
        if self._set is None:
            self._compile()
        hits = self._set.Match(text)
        if 0 not in hits:  # the sentinel always matches: RE2 gave up (out of memory), so judge nothing
            return None
        return frozenset(self._order[i - 1] for i in hits if i) | self._always

    def _compile(self) -> None:
        import re2

        options = re2.Options()
        options.max_mem = self._max_mem
        options.log_errors = False
        screen = re2.Set.SearchSet(options)
        screen.Add("")
        order = []
        for pattern, relaxed in self._patterns.items():
            try:
                screen.Add(relaxed)
            except re2.error:
                self._always.add(pattern)
                continue
            order.append(pattern)
            if pattern not in self._opening:
                with contextlib.suppress(re2.error):  # found by the set, but not alone: scanned from the start
                    self._finders[pattern] = re2.compile(relaxed, options)
        screen.Compile()
        self._set, self._order = screen, order


def _plain_symbols(text: str) -> bool:
    """Are all the non-ASCII characters punctuation or symbols (’ “ ” – ° ± • …)?

    Those are never ``\\w``, ``\\d`` or ``\\s`` and have no case in either engine, so they read the same in
    both, and a note with a typographic apostrophe or a degree sign can still be screened. Letters, digits,
    spaces and marks outside ASCII (é, µ, the Kelvin sign, a non-breaking space) are where the engines differ."""
    return all(
        unicodedata.category(ch)[0] in "PS" and ch.lower() == ch.upper()  # not Ⓐ: circled letters have case
        for ch in set(text)
        if not ch.isascii()
    )


def _relax(pattern: str, flags: int) -> tuple[str, bool]:
    """The relaxed form, and whether it starts before the pattern does (it opens with a lookbehind that must
    match, whose text the relaxed form matches)."""
    tree = sre_parse.parse(pattern, flags)
    on = "".join(letter for flag, letter in _FLAGS.items() if tree.state.flags & flag)
    writer, last = _Writer(), len(tree) - 1
    starts_before = last >= 0 and tree[0][0] is sre.ASSERT and tree[0][1][0] < 0
    body = "".join(
        writer.sequence(arg[1])  # an opening lookbehind or closing lookahead: its text is there, match it
        if (i == 0 and starts_before) or (i == last and op is sre.ASSERT and arg[0] > 0)
        else writer.item(op, arg)
        for i, (op, arg) in enumerate(tree)
    )
    return (f"(?{on}:{body})" if on else body), starts_before


class _Writer:
    """Writes a parse tree of ``re`` as RE2 syntax, relaxed as the module docstring says."""

    def __init__(self) -> None:
        self.groups: dict[int, str] = {}

    def sequence(self, items: Any) -> str:
        return "".join(self.item(op, arg) for op, arg in items)

    def item(self, op: Any, arg: Any) -> str:
        if op is sre.LITERAL:
            return _char(arg)
        if op is sre.NOT_LITERAL:
            return f"[^{_char(arg)}]"
        if op is sre.ANY:
            return "."
        if op is sre.IN:
            return _charset(arg)
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.sequence(branch) for branch in arg[1]) + ")"
        if op is sre.SUBPATTERN:
            group, add, remove, items = arg
            on = "".join(letter for flag, letter in _FLAGS.items() if add & flag)
            off = "".join(letter for flag, letter in _FLAGS.items() if remove & flag)
            body = self.sequence(items)
            if group is not None:
                self.groups[group] = body
            return f"(?{on}-{off}:{body})" if off else f"(?{on}:{body})"
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)):
            low, high, items = arg
            bound = f"{{{low},}}" if high is sre.MAXREPEAT else f"{{{low},{high}}}"
            if low > 1000 or (high is not sre.MAXREPEAT and high > 1000):  # RE2's repeat limit
                raise Unsupported("repeat count over 1000")
            return f"(?:{self.sequence(items)}){bound}"
        if op is getattr(sre, "ATOMIC_GROUP", None):
            return f"(?:{self.sequence(arg)})"
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            return ""
        if op is sre.AT:
            return {sre.AT_BOUNDARY: r"\b", sre.AT_NON_BOUNDARY: r"\B"}.get(arg, "")
        if op is sre.GROUPREF:
            if arg not in self.groups:
                raise Unsupported("a reference to a group not yet closed")
            return f"(?:{self.groups[arg]})"
        if op is sre.GROUPREF_EXISTS:
            _, yes, no = arg
            return f"(?:{self.sequence(yes)}|{self.sequence(no) if no else ''})"
        raise Unsupported(str(op))


def _char(code: int) -> str:
    return chr(code) if chr(code).isascii() and chr(code).isalnum() else f"\\x{{{code:x}}}"


def _charset(items: Any) -> str:
    parts, negate = [], False
    for op, arg in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            parts.append(_char(arg))
        elif op is sre.RANGE:
            parts.append(f"{_char(arg[0])}-{_char(arg[1])}")
        elif op is sre.CATEGORY and arg in _CATEGORIES:
            parts.append(_CATEGORIES[arg])
        else:
            raise Unsupported(str(op))
    return f"[{'^' if negate else ''}{''.join(parts)}]"
