"""The RE2 screen in front of the scrubber's patterns: it may only ever rule out a pattern that cannot match.

Soundness is checked three ways: on every pattern of the scrubber over real notes (Synthea's, which we did not
generate) and over held-apart notes; on random texts made of the pieces the patterns look for; and on the
constructs the relaxation rewrites. The scrubber's output is then compared with the screen switched off.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carelake.privacy._screen import Screen
from carelake.privacy._text import Known, TextScrubber, _generic_recognizers
from carelake.synth._phi_notes import phi_notes


def _scrubber_patterns() -> list[re.Pattern[str]]:
    """Every pattern the scrubber's recognisers register with their screen, compiled as ``re`` runs them."""
    patterns = []
    for recognizer in _generic_recognizers():
        patterns += getattr(recognizer, "_patterns", [])
        flags = getattr(recognizer, "global_regex_flags", 0)
        patterns += [re.compile(p.regex, flags) for p in getattr(recognizer, "patterns", [])]
    return patterns


@pytest.fixture(scope="module")
def screened() -> tuple[Screen, list[re.Pattern[str]]]:
    patterns = _scrubber_patterns()
    screen = Screen()
    for pattern in patterns:
        screen.add(pattern.pattern, pattern.flags)
    return screen, patterns


def _synthea_notes(testdata: Path) -> list[str]:
    lines = (testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients" / "DocumentReference.000.ndjson").read_bytes()
    return [
        base64.b64decode(content["attachment"]["data"]).decode("utf-8")
        for document in map(orjson.loads, lines.splitlines())
        for content in document["content"]
        if "data" in content["attachment"]
    ]


def _assert_sound(screen: Screen, patterns: list[re.Pattern[str]], text: str) -> int:
    """No pattern the screen rules out matches; returns how many it ruled out."""
    possible = screen.may_match(text)
    if possible is None:
        return 0
    ruled_out = [p for p in patterns if p.pattern not in possible]
    for pattern in ruled_out:
        assert pattern.search(text) is None, (pattern.pattern[:80], text[:80])
    return len(ruled_out)


def _assert_same_matches(screen: Screen, patterns: list[re.Pattern[str]], text: str) -> None:
    """Every pattern: the screen's jumping finditer gives re's own matches, group spans included."""
    for pattern in patterns:
        expected = [m.regs for m in pattern.finditer(text)]
        assert [m.regs for m in screen.finditer(pattern, text)] == expected, (pattern.pattern[:80], text[:80])


def test_every_scrubber_pattern_has_a_relaxed_form(screened: tuple[Screen, list[re.Pattern[str]]]) -> None:
    screen, patterns = screened
    assert screen.may_match("warm up") is not None
    assert len(patterns) >= 35
    assert not screen._always, "a pattern without a relaxed RE2 form is scanned on every text"


def test_sound_and_useful_on_real_and_held_apart_notes(
    screened: tuple[Screen, list[re.Pattern[str]]], testdata: Path
) -> None:
    screen, patterns = screened
    synthea = _synthea_notes(testdata)
    held_apart = [note.text for note in phi_notes(60, seed=7)]
    assert len(synthea) >= 100
    ruled_out = sum(_assert_sound(screen, patterns, text) for text in synthea)
    ruled_out_held = sum(_assert_sound(screen, patterns, text) for text in held_apart)
    # Useful, not only sound: most patterns find nothing in a given note, and the screen says so.
    assert ruled_out / (len(synthea) * len(patterns)) > 0.5
    assert ruled_out_held / (len(held_apart) * len(patterns)) > 0.3


def test_finditer_finds_what_re_finds_on_real_and_held_apart_notes(
    screened: tuple[Screen, list[re.Pattern[str]]], testdata: Path
) -> None:
    screen, patterns = screened
    notes = _synthea_notes(testdata) + [note.text for note in phi_notes(60, seed=7)]
    for text in notes:
        _assert_same_matches(screen, patterns, text)
    assert screen._finders, "no pattern has a finder: every scan starts at every position"


_PIECES = st.sampled_from(
    [
        " ", "  ", "\t", "\n", ",", ".", ":", "#", "-", "/", "@", "(", ")", "'", "’", "é", "\x0b", "°", "–", "“",
        "0", "7", "12", "1961", "2019", "555", "0147", "62704", "912-34-5678", "192.168.1.20", "::1",
        "Dr.", "Mrs", "Patient", "patient:", "MRN", "mrn #", "ID", "Signed by", "RN", "MD", "wife", "son,",
        "says", "called", "March", "Mar", "May", "sept", "Jane", "Doe", "O'Brien", "McCarthy", "Elm", "Street",
        "St", "Apt", "Springfield", "IL", "Illinois", "PO Box", "zip", "www.", "http://", ".com", "example",
        "age", "years", "y/o", "ext", "phone", "fax", "x", "A", "B", "Z", "q",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_PIECES, min_size=1, max_size=40).map("".join))
def test_sound_on_random_texts_of_the_pieces_patterns_look_for(
    screened: tuple[Screen, list[re.Pattern[str]]], text: str
) -> None:
    _assert_sound(*screened, text)
    _assert_same_matches(*screened, text)


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        (r"(?<=Dr\. )[A-Z][a-z]+", "seen by Dr. Smith", "seen by Smith"),  # an opening lookbehind is matched as text
        (r"[A-Z][a-z]+(?= says)", "Mark says hi", "Mark said hi"),  # a closing lookahead too
        (r"(?<![\w-])\d{3}(?![\w-])", "call 555 now", "no digits"),  # negative ones only widen
        (r"a(?=b)b", "ab", "ac"),  # a lookaround inside becomes empty
        (r"\d{1,2}([/-])\d{1,2}\1\d{4}", "on 3/14/2019", "on 3/14"),  # a backreference: its group's pattern
        (r"end$", "the end\n", "the fin"),  # Python's $ also matches before a final newline
        (r"(?i)\bmrn\b", "MRN: 1", "mrnx"),  # global flags
        (r"(?i:id)(?-i:X)", "IdX", "idx"),  # scoped flags, switched off again
    ],
)
def test_relaxed_forms(pattern: str, matching: str, not_matching: str) -> None:
    screen = Screen()
    screen.add(pattern)
    assert re.search(pattern, matching)
    assert pattern in screen.may_match(matching)  # type: ignore[operator]
    assert not re.search(pattern, not_matching)
    assert pattern not in screen.may_match(not_matching)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"(?<=Dr\. )[A-Z][a-z]+", "Dr. Smith and Dr. Jones"),  # opens with a lookbehind: scanned as re does
        (r"(?<![\w-])\d{3}(?![\w-])", "555 1234 666-7 888"),  # negative lookarounds
        (r"\bon (\d+)", "on 1 anon 2 on 3"),  # a word boundary at the start: RE2 reads the text before too
        (r"^\d+", "12 34\n56"),  # ^ at the start only
        (r"(?m)^\d+", "12 34\n56"),  # ... or after each newline
        (r"x*", "axxbx"),  # empty matches: re's rules for where the next may start
        (r"\d{1,2}([/-])\d{1,2}\1\d{4}", "3/4/2019 and 5-6-2020 not 7/8-2021"),  # a backreference
        (r"ab|b", "abab b"),  # overlapping candidates
    ],
)
def test_finditer_matches_re_on_each_construct(pattern: str, text: str) -> None:
    screen = Screen()
    screen.add(pattern)
    compiled = re.compile(pattern)
    screen.may_match("compile now")
    assert [m.regs for m in screen.finditer(compiled, text)] == [m.regs for m in compiled.finditer(text)]
    assert (pattern in screen._finders) == (not pattern.startswith("(?<="))


def test_texts_re2_would_read_differently_are_not_judged() -> None:
    screen = Screen()
    screen.add(r"\s\d")
    assert screen.may_match("é 1") is None  # Unicode letters: \w, \b and case folding differ between the engines
    assert screen.may_match("a\u00a01") is None  # a non-breaking space is \s to Python only
    assert screen.may_match("a\x0b1") is None  # so is \v
    assert screen.may_match("Ⓐ 1") is None  # a symbol with case
    assert screen.may_match("a b") == frozenset()
    # Punctuation and symbols read the same in both: a note with a typographic apostrophe is still screened.
    assert screen.may_match("Temp 38.5°C – patient’s “stable”") == {r"\s\d"}
    assert screen.may_match("patient’s “stable”") == frozenset()


def test_a_pattern_without_relaxed_form_is_always_possible() -> None:
    screen = Screen()
    screen.add(r"x{2000}")  # over RE2's repeat limit
    screen.add(r"q")
    assert screen.may_match("nothing here") == {r"x{2000}"}


def test_when_re2_gives_up_nothing_is_ruled_out() -> None:
    class GaveUp:  # what RE2::Set::Match leaves when its automaton runs out of memory: no index at all
        def Match(self, text: str) -> list[int]:  # RE2's name
            return []

    screen = Screen()
    screen.add("q")
    screen.may_match("compile now")
    screen._set = GaveUp()
    assert screen.may_match("a different text") is None


def test_the_scrubber_finds_the_same_with_the_screen_off(monkeypatch: pytest.MonkeyPatch, testdata: Path) -> None:
    texts = [note.text for note in phi_notes(40, seed=11)] + _synthea_notes(testdata)[:40]
    known = Known(names=("Jane Doe",), dates=("1961-07-04",))
    screened = [TextScrubber(cache_size=0)._spans(text, known) for text in texts]
    monkeypatch.setattr(Screen, "may_match", lambda self, text: None)
    assert [TextScrubber(cache_size=0)._spans(text, known) for text in texts] == screened
