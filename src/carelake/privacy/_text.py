"""Free-text PHI scrubbing for HIPAA Safe Harbor: every identifier in a note becomes a typed tag.

The walker calls :meth:`TextScrubber.scrub` on every free-text string (decoded notes, ``Annotation.text``,
``CodeableConcept.text``, ``valueString`` ...) with what the record already knows about the patient
(:class:`Known`). Two layers find the spans:

* **What the record knows** (the patient's names, identifiers, phones, e-mails, address lines, cities and birth
  date) is always caught: names whole-word and case-insensitive, phone numbers by their digits whatever the
  layout, dates in every common written form, identifiers as whole tokens with or without separators.
* **Generic recognisers**, Microsoft Presidio recognisers: Presidio's IP recogniser and carelake's own pattern
  recognisers for dates, ages over 89, phone and fax numbers, e-mail, URLs, street addresses, ``City, ST ZIP``,
  ZIP codes and identifiers after cue words (MRN, SSN, member, account, licence, VIN, plate, serial ...); names
  come from context (titles, ``Patient:``, ``signed by``, credentials, relatives such as ``wife Jane``) and from
  Faker's first/last-name lists, which are used for capitalised tokens only.

Every recogniser is pattern-based, with its context written into the pattern: no spaCy model is installed or
downloaded, no NER runs, and the recognisers are called directly rather than through Presidio's
``AnalyzerEngine``, whose NLP pass, context enhancement and de-duplication had nothing to add (see
``_recognizers``). Before they run, one RE2 pass rules out the patterns that cannot match the text, and each
pattern that can is started only where RE2 finds its next possible match (:mod:`carelake.privacy._screen`).
About 340 notes of 500 words per second on one core, against a target of 20.
Presidio's stock e-mail and URL recognisers are not used: the e-mail one validates through ``tldextract``, which
fetches the public-suffix list over the network on first use, and the URL one matches inside abbreviations such
as ``p.r.n.``. The patient's own identifiers are matched by one regular expression per :class:`Known`, compiled
once per patient, by RE2 (:class:`KnownPattern`).

Overlapping spans are merged into one, tagged with the category of the longest; ages over 89 become ``90+``
in place. Nothing from the input text ever goes into an exception or a log line.

    >>> scrubber = TextScrubber()
    >>> scrubber.scrub("Seen by Dr. Smith on 03/14/2019, a 92-year-old.")[0]
    'Seen by Dr. [NAME] on [DATE], a 90+-year-old.'
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import importlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, cached_property, partial
from typing import Any

from carelake.privacy._known import MONTHS, phone_digits
from carelake.privacy._screen import Screen

__all__ = ["CATEGORIES", "Known", "TextScrubber"]

CATEGORIES = ("NAME", "DATE", "AGE90", "PHONE", "EMAIL", "ADDRESS", "ID", "URL", "IP")
# When overlapping spans of equal length disagree, the earlier category names the merged span.
_PRIORITY = {c: i for i, c in enumerate(("EMAIL", "URL", "IP", "PHONE", "DATE", "ID", "ADDRESS", "NAME", "AGE90"))}


@dataclass(frozen=True)
class Known:
    """What the record already says about one patient; these must always be caught in that patient's text."""

    names: tuple[str, ...] = ()  # given/family names, full names as written in HumanName
    identifiers: tuple[str, ...] = ()  # MRN, SSN, plan ids, any Identifier.value
    phones: tuple[str, ...] = ()  # ContactPoint phone/fax values as written
    emails: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()  # street lines, city names
    dates: tuple[str, ...] = ()  # ISO dates 'YYYY-MM-DD' (birth date) — match every common written form

    @cached_property
    def pattern(self) -> KnownPattern | None:
        """One regular expression for all of it, a named group per category; built once per patient.

        Kept on the object, not in a cache keyed by value: hashing every tuple again for each of the
        patient's strings cost more than the match itself."""
        return _known_regex(self)


# -- word lists --------------------------------------------------------------------------------------------------
# fmt: off
_STATES = (
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA",
    "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR",
    "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "PR",
)
# Two-letter states that are also credentials or clinical abbreviations (MD, PA, DO, OR, ...): these need a ZIP.
_AMBIGUOUS_STATES = {
    "MD", "PA", "MA", "ND", "DC", "OR", "ME", "GA", "VA", "CT", "IN", "OK", "HI", "LA", "MS", "NE", "ID", "OH", "DE",
    "AL", "AR", "MI", "SC",
}
_STATE_NAMES = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware", "Florida",
    "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine", "Maryland",
    "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada", "Ohio",
    "Oklahoma", "Oregon", "Pennsylvania", "Tennessee", "Texas", "Utah", "Vermont", "Virginia", "Washington",
    "Wisconsin", "Wyoming",
)
_STREET_TYPES = (
    "Street", "St", "Avenue", "Ave", "Av", "Road", "Rd", "Drive", "Dr", "Lane", "Ln", "Boulevard", "Blvd", "Court",
    "Ct", "Way", "Place", "Pl", "Circle", "Cir", "Terrace", "Ter", "Parkway", "Pkwy", "Highway", "Hwy", "Trail", "Trl",
    "Square", "Sq", "Route", "Rte", "Pike", "Alley", "Crossing", "Loop",
)
_STREET_SYNONYMS = [("street", "st"), ("avenue", "ave", "av"), ("road", "rd"), ("drive", "dr"), ("lane", "ln"),
                    ("boulevard", "blvd"), ("court", "ct"), ("place", "pl"), ("circle", "cir"), ("terrace", "ter"),
                    ("parkway", "pkwy"), ("highway", "hwy"), ("trail", "trl"), ("square", "sq"), ("route", "rte"),
                    ("north", "n"), ("south", "s"), ("east", "e"), ("west", "w"),
                    ("apt", "apartment", "unit", "#", "suite", "ste")]
# Title-case words that open or follow names in notes without being names (headings, services, credentials).
_NOT_NAMES = {
    "Date", "DOB", "MRN", "Sex", "Age", "Phone", "Tel", "Fax", "Address", "Time", "Room", "Bed", "Unit", "Visit",
    "Service", "Status", "Note", "Notes", "Plan", "Assessment", "History", "Exam", "Allergies", "Medications", "Meds",
    "Labs", "Vitals", "Diagnosis", "Impression", "Findings", "Signed", "Dictated", "Reviewed", "Attending", "Resident",
    "Nurse", "Patient", "Pt", "Provider", "Department", "Clinic", "Hospital", "Center", "Medicine", "Cardiology",
    "Neurology", "Oncology", "Pharmacy", "Radiology", "Surgery", "Pediatrics", "Psychiatry", "Emergency", "Internal",
    "Family", "Primary", "Care", "Team", "Floor", "Office", "Called", "Email", "Home", "Work", "Cell", "Mobile",
    "Today", "Yesterday", "Tomorrow", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
    "Jr", "Sr", "II", "III", "IV", "Social", "Worker", "Case", "Manager", "Health", "Medical", "Memorial", "General",
    "Regional", "Community", "University", "Associates", "Group", "Services", "Program", "Disease", "Syndrome",
    "Hospice", "Rehab", "Rehabilitation", "Therapy", "Physical", "Occupational", "Speech", "Imaging", "Laboratory",
    "Lab", "Report", "Reason", "Referral", "Follow", "Up", "Chief", "Complaint", "Subjective", "Objective", "Review",
    "Systems", "Discharge", "Admission", "Admit", "Transfer", "Consult", "Consultation", "Progress", "Telephone",
    "Encounter", "Reconciliation", "Summary", "Instructions", "Education", "Goals", "Orders", "Order", "Results", "CT",
    "MRI", "Dear", "Sincerely", "Regards", "Thank", "Thanks", "Re", "Subject", "From", "To", "Cc", "Attn", "Hi",
    "Hello", "Per", "Via", "And", "Or", "The", "This", "That", "With", "Son", "Daughter", "Wife", "Husband", "Mother",
    "Father", "Sister", "Brother", "Niece", "Nephew", "Aunt", "Uncle", "Grandson", "Granddaughter", "Cousin", "Friend",
    "Caller", "Client", "Contact", "Spouse", "Partner", "Guardian", "Caregiver",
}
_NOT_NAMES |= set(MONTHS) | {m[:3] for m in MONTHS} | {"Sept"}
# Eponyms and organisation words: a name-like word right before one of these is not a person (Addison's disease).
_EPONYM_NEXT = re.compile(
    r"(?:['’]s?)?[ \t]+(?:disease|syndrome|sign|palsy|test|maneuver|manoeuvre|criteria|score|scale|catheter|drain|"
    r"stain|node|reflex|phenomenon|ulcer|fracture|tumou?r|lymphoma|triad|murmur|classification|procedure|operation|law|"
    r"hospital|clinic|medical|health|center|centre|memorial|university|college|pharmacy|county|village|heights|"
    r"manor|foundation|institute|regional|general|street|avenue|road|drive|boulevard|lane|st|ave|rd|dr|blvd|ln)\b",
    re.IGNORECASE,
)
_ORG_BEFORE = re.compile(r"(?:\b(?:St|Saint|Mt|Mount|Fort|Ft|Port|Lake|San|Santa|Los|Las)\.?[ \t]+)$")
# English words that are also first names: never a name on their own (they still are after a title or "wife").
_WORD_NAMES = {
    "amber", "angel", "april", "aurora", "autumn", "bill", "chase", "christian", "crystal", "daisy", "dale", "dawn",
    "dean", "destiny", "dev", "diamond", "don", "drew", "earl", "ebony", "faith", "fang", "forum", "frank", "gang",
    "glen", "grace", "grant", "guy", "harsh", "heather", "holly", "hunter", "jack", "jade", "jay", "jean", "jill",
    "joy", "kirk", "lance", "lucky", "mark", "mason", "melody", "min", "misty", "molly", "na", "om", "parker", "patty",
    "penny", "ping", "raven", "ray", "robin", "rose", "ruby", "sandy", "sessa", "sherry", "summer", "tanner", "veda",
    "veer", "will", "may", "june", "august", "hope", "iris", "ivy", "lily", "pearl", "hazel", "violet", "ginger",
    "olive", "sage", "sky", "star", "sunny", "river", "storm", "rocky", "rusty", "buck", "chip", "clay", "cliff",
    "dusty", "gene", "ward", "page", "case", "miles", "price", "reed", "rich", "lane", "royal", "king", "major",
    "prince", "duke", "chance", "sterling", "art", "bud", "gay", "cherry", "candy", "honey", "precious", "unique",
    "justice", "liberty", "charity", "mercy", "patience", "genesis", "haven", "heaven", "legacy", "miracle", "nova",
    "rain", "saint", "shadow", "spirit", "story", "sugar", "tiger", "winter", "blaze", "brook", "cash", "colt", "eden",
    "ocean", "sierra", "stone", "wolf", "young", "long", "white", "brown", "green", "black", "gray", "grey", "bell",
    "walker", "cane", "porter", "potter", "baker", "cook", "fisher", "turner", "carter", "miller", "li", "jun", "ana",
    "ira", "jo", "tao", "yan", "sai", "hema", "kala", "eta", "ati", "lopa", "upma", "jos", "yug", "dolores", "mercedes",
    "trinidad", "virginia", "georgia", "carolina", "dakota", "montana", "indiana", "florida", "nevada", "austin",
    "phoenix", "denver", "dallas", "houston",
}
_CREDENTIALS = (
    "MD", "DO", "RN", "NP", "PA-C", "PA", "LPN", "LCSW", "LSW", "MSW", "PharmD", "RPh", "PhD", "APRN", "CNM", "CRNA",
    "FNP-C", "FNP", "DNP", "BSN", "MSN", "RD", "RRT", "CNA", "DPT", "OTR", "SLP", "MPH", "FACP", "FACC", "DDS", "DPM",
)
_NOT_NAMES |= set(_CREDENTIALS)

# fmt: on


@dataclass(frozen=True)
class _Words:
    """Word lists the name recognisers consult, built once from spaCy's stop words and Faker's name lists."""

    common: frozenset[str]  # lower-case English words (stop words, Faker's lorem words, names that are words)
    stop: frozenset[str]  # lower-case stop words: never the first or last word of a name
    alone: frozenset[str]  # first names that are a name on their own when capitalised
    paired: frozenset[str]  # first names that are a name when a surname follows
    surnames: frozenset[str]  # surnames that are not English words
    surnames_all: frozenset[str]  # every surname, for the word right after a first name


@cache
def _word_lists() -> _Words:
    """The name recognisers' word lists (see :class:`_Words`)."""
    from spacy.lang.en.stop_words import STOP_WORDS

    lorem = importlib.import_module("faker.providers.lorem.en_US").Provider.word_list
    common = frozenset(w.lower() for w in (*STOP_WORDS, *lorem)) | _WORD_NAMES

    def names(locale: str, *attrs: str) -> set[str]:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        found: set[str] = set()
        for attr in attrs:
            for name in getattr(provider, attr, ()):
                plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()  # Lucía -> Lucia
                found.update(n for n in {name, plain} if n.isascii() and n.isalpha() and len(n) > 1)
        return found

    alone = names("en_US", "first_names") | names("en_IN", "first_names") | names("es_MX", "first_names")
    alone |= names("zh_CN", "first_romanized_names") | names("ja_JP", "first_romanized_names")
    paired = set(alone)
    for locale in ("en", "en_GB", "en_IE", "es_ES", "it_IT", "de_DE", "fr_FR", "pt_BR", "pl_PL"):
        paired |= names(locale, "first_names")
    surnames: set[str] = set()
    for locale in ("en", "en_US", "en_GB", "en_IE", "en_IN", "es_MX", "es_ES", "it_IT", "de_DE", "fr_FR", "pt_BR"):
        surnames |= names(locale, "last_names")
    surnames |= names("zh_CN", "last_romanized_names") | names("ja_JP", "last_romanized_names")
    surnames |= names("pl_PL", "male_last_names", "female_last_names")
    excluded = _NOT_NAMES | set(MONTHS) | set(_STATE_NAMES)
    return _Words(
        common=common,
        stop=frozenset(w.lower() for w in STOP_WORDS),
        alone=frozenset(n for n in alone if n.lower() not in common and n not in excluded),
        paired=frozenset(n for n in paired if n not in excluded),
        surnames=frozenset(n for n in surnames if n not in _NOT_NAMES and n.lower() not in common),
        surnames_all=frozenset(n for n in surnames if n not in _NOT_NAMES),
    )


# -- regular-expression building blocks --------------------------------------------------------------------------
def _title_and_upper(words: Iterable[str]) -> str:
    forms: list[str] = []
    for word in sorted(words, key=len, reverse=True):
        forms += [word, word.upper()] if word.upper() != word else [word]
    return "(?:" + "|".join(re.escape(f) for f in forms) + ")"


_MON = _title_and_upper([*MONTHS, *(m[:3] for m in MONTHS), "Sept"])
_MON_ANY = "(?:" + "|".join([*MONTHS, *(m[:3] for m in MONTHS), "Sept"]) + ")"
_NW = r"(?:Ma?c[A-Z][a-z]+|[A-Z][a-zA-Z]*(?:['’][A-Za-z]{2,}|-[A-Z][a-zA-Z]+)*)"  # a name word (O'Brien, McCarthy)
_INITIAL = r"[A-Z]\.?"
_NAME = rf"{_NW}(?:[ \t](?:{_INITIAL}[ \t])?{_NW}){{0,3}}"  # one space apart: wider gaps separate fields
_NAME_TOKEN = re.compile(rf"(?<![\w'’-]){_NW}(?![\w-])")
_STREET_TYPE = _title_and_upper(_STREET_TYPES)
_CITY = r"(?:[A-Z][A-Za-z'’-]*\.?[ \t]+){0,2}[A-Z][A-Za-z'’-]+"
_ZIP = r"\d{5}(?:-\d{4})?"
_ANY_STATE = "(?:" + "|".join(_STATES + _STATE_NAMES) + ")"
_SAFE_STATE = "(?:" + "|".join([*(s for s in _STATES if s not in _AMBIGUOUS_STATES), *_STATE_NAMES]) + ")"
_UNIT = r"(?:Apt|APT|Apartment|Unit|UNIT|Suite|Ste|STE|Rm|Room|Fl|Floor|Bldg|Lot|\#)\.?[ \t]*\#?[ \t]*[A-Za-z0-9-]+"
_STREET = (
    rf"\d{{1,6}}[A-Z]?(?:[ \t]+(?:[NSEW]|NE|NW|SE|SW|North|South|East|West)\.?)?"
    rf"(?:[ \t]+(?:[A-Z][A-Za-z'’-]*|\d{{1,3}}(?:st|nd|rd|th))){{1,3}}[ \t]+{_STREET_TYPE}\b\.?"
    rf"(?:(?:,[ \t]*|[ \t]+){_UNIT})?"
)
_ID_CUE = (
    r"(?i:MRN|MR\#|MR[ \t]+number|medical[ \t]+record(?:[ \t]+(?:number|no\.?|\#))?|chart[ \t]+(?:number|no\.?|\#)"
    r"|acct\.?|account(?:[ \t]+(?:number|no\.?|\#))?|member(?:[ \t]+(?:ID|number|no\.?|\#))?"
    r"|subscriber(?:[ \t]+(?:ID|number|no\.?|\#))?|policy(?:[ \t]+(?:ID|number|no\.?|\#))?"
    r"|(?:group|plan|beneficiary|insurance|medicare|medicaid|encounter|visit|case|claim|reference|confirmation)"
    r"[ \t]+(?:ID|number|no\.?|\#)|ID(?:[ \t]+(?:number|no\.?|\#))?|identifier|SSN|social[ \t]+security"
    r"(?:[ \t]+(?:number|no\.?|\#))?|licen[cs]e(?:[ \t]+(?:plate|number|no\.?|\#))?|(?-i:DL|SN|FIN)"
    r"|driver'?s[ \t]+licen[cs]e(?:[ \t]+(?:number|no\.?|\#))?|serial(?:[ \t]+(?:number|no\.?|\#))?|S/N|VIN"
    r"|plate(?:[ \t]+(?:number|no\.?|\#))?|tag[ \t]+(?:number|no\.?|\#)|device[ \t]+(?:ID|identifier|serial)|UDI"
    r"|NPI|DEA|claim|accession(?:[ \t]+(?:number|no\.?|\#))?|CSN|badge|passport(?:[ \t]+(?:number|no\.?|\#))?"
    r"|certificate(?:[ \t]+(?:number|no\.?|\#))?)"
)
_ID_VALUE = r"(?=[A-Za-z0-9-]*\d)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_UNIT_SUFFIX = re.compile(r"\d+(?:MG|MCG|ML|IU|UNITS?|KG|MM|CM|MMHG|HR|H|MIN|X|G|L)$")


def _valid_day_month(match: re.Match[str]) -> bool:
    parts = [int(p) for p in re.findall(r"\d+", match.group("phi"))][:3]
    if len(parts) < 2:
        return False
    first, second = parts[0], parts[1]
    if len(parts) == 3 and parts[0] > 31:  # year first
        first, second = parts[1], parts[2]
        return 1 <= first <= 12 and 1 <= second <= 31
    return (1 <= first <= 12 and 1 <= second <= 31) or (1 <= second <= 12 and 1 <= first <= 31)


def _valid_day(match: re.Match[str]) -> bool:
    return 1 <= int(re.findall(r"\d+", match.group("phi"))[0]) <= 31


def _valid_alnum_id(match: re.Match[str]) -> bool:
    value = match.group("phi").replace("-", "")
    return len(value) >= 6 and not _UNIT_SUFFIX.fullmatch(value)


# -- recognisers -------------------------------------------------------------------------------------------------
Check = Callable[[re.Match[str]], bool]
Refine = Callable[[str, int, int], tuple[int, int] | None]


def _recognizer_classes() -> tuple[type, type, type]:
    """Presidio recogniser classes, defined on first use so importing carelake.privacy stays light."""
    from presidio_analyzer import LocalRecognizer, RecognizerResult
    from presidio_analyzer.predefined_recognizers import IpRecognizer

    class RegexRecognizer(LocalRecognizer):
        """Patterns whose named group ``phi`` (or whole match) is the span; optional check and span refinement."""

        def __init__(
            self,
            entity: str,
            name: str,
            patterns: Sequence[str],
            *,
            check: Check | None = None,
            refine: Refine | None = None,
            score: float = 0.85,
            screen: Screen | None = None,
        ) -> None:
            self._patterns = [re.compile(p) for p in patterns]
            self._screen = screen
            if screen is not None:
                for pattern in patterns:
                    screen.add(pattern)
            self._check, self._refine, self._score, self._entity = check, refine, score, entity
            super().__init__(supported_entities=[entity], name=name, supported_language="en")

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            results = []
            possible = self._screen.may_match(text) if self._screen is not None else None
            for pattern in self._patterns:
                if possible is not None and pattern.pattern not in possible:
                    continue
                for match in pattern.finditer(text) if self._screen is None else self._screen.finditer(pattern, text):
                    if self._check is not None and not self._check(match):
                        continue
                    start, end = match.span("phi") if "phi" in pattern.groupindex else match.span()
                    if self._refine is not None:
                        span = self._refine(text, start, end)
                        if span is None:
                            continue
                        start, end = span
                    if start < end:
                        results.append(RecognizerResult(self._entity, start, end, self._score))
            return results

    class DictionaryNameRecognizer(LocalRecognizer):
        """Capitalised first names from Faker's lists, alone or followed by a surname (``Maria L. Lopez``)."""

        def __init__(self) -> None:
            self._words = _word_lists()
            super().__init__(supported_entities=["NAME"], name="carelake-name-dictionary", supported_language="en")

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            tokens = [(m.start(), m.end(), m.group()) for m in _NAME_TOKEN.finditer(text)]
            results = []
            i = 0
            while i < len(tokens):
                start, end, word = tokens[i]
                j = i
                words = self._words
                alone = word in words.alone and not _is_eponym_or_place(text, start, end)
                surnames = words.surnames_all if alone else words.surnames
                while j + 1 < len(tokens) and j - i < 2 and _adjacent(text, tokens[j][1], tokens[j + 1][0]):
                    following = tokens[j + 1][2]
                    if (
                        following in surnames
                        or (following in words.paired and following.lower() not in words.stop)
                        or (alone and _unlisted_name(following))
                    ):
                        j += 1
                    else:
                        break
                paired = j > i and (word in words.paired or word in words.surnames)
                if alone or paired:
                    results.append(RecognizerResult("NAME", start, tokens[j][1], 0.6))
                    i = j + 1
                else:
                    i += 1
            return results

    class ScreenedIpRecognizer(IpRecognizer):
        """Presidio's IP recogniser, skipped on texts where the screen rules all of its patterns out."""

        def __init__(self, screen: Screen) -> None:
            super().__init__(supported_entity="IP", context=[])
            self._screen = screen
            for pattern in self.patterns:
                screen.add(pattern.regex, self.global_regex_flags)

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: Any = None) -> Any:
            possible = self._screen.may_match(text)
            if possible is not None and not any(p.regex in possible for p in self.patterns):
                return []
            return super().analyze(text, entities, nlp_artifacts, regex_flags)

    return RegexRecognizer, DictionaryNameRecognizer, ScreenedIpRecognizer


_ADJACENT = re.compile(rf"[ \t](?:{_INITIAL}[ \t])?")


def _adjacent(text: str, end: int, next_start: int) -> bool:
    return _ADJACENT.fullmatch(text, end, next_start) is not None


_NOT_NAME_SUFFIX = re.compile(r".*(?:ology|ics|ing|tion|ment|ist|ary|ine|ide|ol|ex|in)$")


def _unlisted_name(word: str) -> bool:
    """A capitalised word in a name position that no list knows: a name unless it is a word or looks like a term."""
    lists = _word_lists()
    lower = word.lower()
    return (
        lower not in lists.common
        and lower not in lists.stop
        and word not in _NOT_NAMES
        and not _NOT_NAME_SUFFIX.match(lower)
    )


def _speaker(match: re.Match[str]) -> bool:
    """``Mark says``, ``Keisha called``: a first name, or an unlisted capitalised word, before a speech verb."""
    word = match.group("phi")
    lists = _word_lists()
    if word in _NOT_NAMES or word.lower() in lists.stop:
        return False
    return word in lists.paired or word in lists.alone or _unlisted_name(word)


def _is_eponym_or_place(text: str, start: int, end: int) -> bool:
    return _EPONYM_NEXT.match(text, end) is not None or _ORG_BEFORE.search(text, max(0, start - 12), start) is not None


def _trim_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Drop heading words and stop words a context pattern swept up at the ends of a name (``Dr. Smith Will``)."""
    stop_words = _word_lists().stop
    words = list(re.finditer(r"[^\s,]+", text[start:end]))

    def stop(word: str) -> bool:
        bare = word.rstrip(".")
        return bare in _NOT_NAMES or bare.lower() in stop_words

    while words and stop(words[-1].group()):
        words.pop()
    while words and stop(words[0].group()):
        words.pop(0)
    if not words:
        return None
    return start + words[0].start(), start + words[-1].end()


def _relative_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """After ``wife``/``son,``: keep the name only when its first word is a known first name or one of two words."""
    span = _trim_name(text, start, end)
    if span is None:
        return None
    words = text[span[0] : span[1]].split()
    lists = _word_lists()
    if words[0] in lists.paired or words[0] in lists.alone or (len(words) > 1 and words[-1] in lists.surnames_all):
        return span
    return None


def _generic_recognizers() -> list[Any]:
    """Every recogniser the scrubber runs, sharing one screen (built once per process: ``_recognizers``)."""
    regex_recognizer, dictionary, ip_recognizer = _recognizer_classes()
    screen = Screen()  # one RE2 pass per text tells which of the patterns below can match it at all
    rx = partial(regex_recognizer, screen=screen)
    titles = r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Doctor|Prof|Professor|Rev|MRS|DR)\.?[ \t]+"  # not MS (sclerosis, Contin)
    header = (
        r"\b(?i:patient(?:[ \t]+name)?|pt(?:[ \t]+name)?|name|client|resident|member|subscriber|guarantor|"
        r"insured|emergency[ \t]+contact|next[ \t]+of[ \t]+kin|nok|caregiver|pcp|attending|provider|physician|"
        r"referring(?:[ \t]+(?:physician|provider|doctor|clinician))?|ordering(?:[ \t]+(?:physician|provider))?|"
        r"author|caller|nurse|rn|case[ \t]+manager|social[ \t]+worker|therapist|radiologist|pharmacist|interpreter|"
        r"cc|attn|to|from|re)[ \t]*:[ \t]*"
    )
    signed = (
        r"\b(?i:(?:electronically[ \t]+)?signed(?:[ \t]+by)?|(?:dictated|transcribed|reviewed|verified|"
        r"approved|performed|interpreted|read|seen|examined|evaluated|referred|cosigned|attested|entered|"
        r"documented|authored|prepared|completed|reported)[ \t]+by|dear)[ \t]*:?[ \t]*"
    )
    relation = (
        r"\b(?i:wife|husband|spouse|partner|son|daughter|mother|father|mom|dad|brother|sister|sibling|"
        r"grandson|granddaughter|grandmother|grandfather|grandma|grandpa|aunt|uncle|niece|nephew|cousin|"
        r"friend|neighbou?r|caregiver|fianc[ée]e?|boyfriend|girlfriend|guardian|stepson|stepdaughter|"
        r"stepmother|stepfather|roommate|landlord|employer|coworker|co-worker|sponsor|poa|hcpoa|proxy|"
        r"surrogate|child|contact)(?:[ \t]*[,:(–-][ \t]*|[ \t]+(?i:named[ \t]+|is[ \t]+)?)"
    )
    speech = (
        "(?:says|said|states|stated|reports|reported|called|calls|asked|asks|brought|visited|notes|noted|"
        "denies|denied|agrees|agreed|wants|wanted|prefers|preferred|requests|requested|declined|declines|"
        "confirmed|confirms|explained|explains|verbalized|verbalizes)"
    )
    credentials = "(?:" + "|".join(re.escape(c) for c in _CREDENTIALS) + ")"
    names = [
        rx("NAME", "carelake-name-title", [rf"{titles}(?P<phi>(?:{_INITIAL}[ \t]*)?{_NAME})"], refine=_trim_name),
        rx(
            "NAME",
            "carelake-name-header",
            [rf"{header}(?:{titles})?(?P<phi>{_NAME}(?:,[ \t]*(?!{credentials}\b){_NW})?)"],
            refine=_trim_name,
        ),
        rx("NAME", "carelake-name-signed", [rf"{signed}(?:{titles})?(?P<phi>{_NAME})"], refine=_trim_name),
        rx(
            "NAME",
            "carelake-name-credential",
            [rf"(?P<phi>{_NW}(?:[ \t](?:{_INITIAL}[ \t])?{_NW}){{0,2}}),?[ \t]+{credentials}\b"],
            refine=_trim_name,
        ),
        rx("NAME", "carelake-name-speaker", [rf"(?<![\w'’-])(?P<phi>{_NW})(?=[ \t]+{speech}\b)"], check=_speaker),
        rx("NAME", "carelake-name-relation", [rf"{relation}(?P<phi>{_NW}(?:[ \t]{_NW})?)"], refine=_relative_name),
        dictionary(),
    ]
    dates = rx(
        "DATE",
        "carelake-date-words",
        [
            rf"\b(?P<phi>{_MON}\.?[ \t]+\d{{1,2}}(?:st|nd|rd|th)?(?:,[ \t]*|[ \t]+)\d{{4}})\b",
            rf"\b(?P<phi>\d{{1,2}}(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?{_MON}\.?,?[ \t]+\d{{4}})\b",
            rf"\b(?P<phi>\d{{1,2}}[ \t-](?i:{_MON_ANY})[ \t-](?:\d{{4}}|\d{{2}}))\b",
            rf"\b(?P<phi>{_MON}\.?,?[ \t]+(?:19|20)\d{{2}})\b",
        ],
    )
    month_day = rx(
        "DATE",
        "carelake-date-month-day",
        [rf"\b(?P<phi>{_MON}\.?[ \t]+\d{{1,2}}(?:st|nd|rd|th)?)\b(?![ \t]*(?:mg|mcg|g|ml|mL|units?|%|kg))"],
        check=lambda m: _valid_day(m) and "May" not in m.group("phi")[:3],
    )
    numeric = rx(
        "DATE",
        "carelake-date-numeric",
        [
            r"(?<![\w/.-])(?P<phi>\d{1,2}([/-])\d{1,2}\2(?:\d{4}|\d{2}))(?![\w/-]|\.\d)",
            r"(?<![\w/.-])(?P<phi>(?:1[89]|2[01])\d{2}([/-])\d{1,2}\2\d{1,2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
            r"(?:Z|[+-]\d{2}:?\d{2})?)?)(?![\w/-])",
            r"(?<![\w.])(?P<phi>\d{1,2}\.\d{1,2}\.(?:19|20)\d{2})(?![\w.])",
            r"\b(?i:on|since|from|until|till|through|thru|dated|as[ \t]+of|by|before|after|starting|effective|"
            r"scheduled[ \t]+for|due|last|next)[ \t]+(?P<phi>\d{1,2}/\d{1,2})(?![\w/]|\.\d)",
        ],
        check=_valid_day_month,
    )
    month_year = rx(
        "DATE", "carelake-date-month-year", [r"(?<![\w/.-])(?P<phi>(?:0?[1-9]|1[0-2])/(?:19|20)\d{2})(?![\w/])"]
    )
    age = rx(
        "AGE90",
        "carelake-age-over-89",
        [
            r"(?<![\w.])(?P<phi>9\d|1[01]\d)(?=[ \t]*-?[ \t]*(?i:years?|yrs?|y/o|y\.o\.|yo|y)(?![a-z]))",
            r"\b(?i:age[ds]?)[ \t]*:?[ \t]*(?:of[ \t]+)?(?P<phi>9\d|1[01]\d)\b(?!\.\d)",
        ],
    )
    phones = rx(
        "PHONE",
        "carelake-phone",
        [
            r"(?<![\w+])(?P<phi>(?:\+?1[ \t.-]?)?(?:\(\d{3}\)[ \t]?|\d{3}[ \t.-])\d{3}[ \t.-]\d{4}"
            r"(?:[ \t]*(?i:x|ext\.?|extension)[ \t]*\d{1,5})?)(?![\w-])",
            r"\b(?i:phone|tel|telephone|fax|facsimile|cell|mobile|pager|beeper|ph|call(?:ed)?|text|reached)\b\.?[ \t]*"
            r"[:#]?[ \t]*(?:(?i:at|is|number|no\.?)[ \t]*)?(?P<phi>\+?1?\d{10}|\d{3}[-. ]\d{4})(?![\w-])",
        ],
    )
    email = rx(
        "EMAIL",
        "carelake-email",
        [r"(?<![\w.+-])(?P<phi>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"],
    )
    url = rx(
        "URL",
        "carelake-url",
        [
            r"(?i)\b(?P<phi>(?:https?://|ftp://|www\.)[^\s<>\"'()]*[^\s<>\"'().,;:!?])",
            r"(?i)(?<![@\w.-])(?P<phi>(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:com|org|net|edu|gov|io|us|info|biz|"
            r"health|care)(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)])?)(?![\w@-])",
        ],
    )
    addresses = rx(
        "ADDRESS",
        "carelake-address",
        [
            rf"(?<![\w/.-])(?P<phi>{_STREET}(?:(?:,[ \t]*|[ \t]+){_CITY},?[ \t]+{_ANY_STATE}(?:[ \t]+{_ZIP})?)?)",
            rf"(?<![\w-])(?P<phi>{_CITY},[ \t]*{_ANY_STATE}[ \t]+{_ZIP})(?![\w-])",
            rf"(?<![\w-])(?P<phi>{_CITY},[ \t]*{_SAFE_STATE})\b(?![\w-])",
            r"(?<![\w-])(?P<phi>\d{5}-\d{4})(?![\w-])",
            rf"\b(?i:zip(?:[ \t]*code)?|postal[ \t]+code)\b[ \t]*[:#]?[ \t]*(?P<phi>{_ZIP})\b",
            r"(?i)\b(?P<phi>P\.?[ \t]?O\.?[ \t]+Box[ \t]+\d+)",
        ],
        refine=_trim_place,
    )
    ids = [
        rx("ID", "carelake-id-ssn", [r"(?<![\w-])(?P<phi>\d{3}-\d{2}-\d{4})(?![\w-])"]),
        rx(
            "ID",
            "carelake-id-cue",
            [
                rf"\b{_ID_CUE}[ \t]*(?:[:#=.][ \t]*)?(?:(?i:is|no\.?|number)[ \t]*[:#]?[ \t]*)?"
                rf"(?P<phi>{_ID_VALUE})(?![\w-])",
                rf"(?<![\w&])\#[ \t]?(?P<phi>{_ID_VALUE})(?![\w-])",
            ],
            check=lambda m: len(m.group("phi")) >= 4,
        ),
        rx("ID", "carelake-id-long-number", [r"(?<![\w.,/-])(?P<phi>\d{7,})(?![\w,/-]|\.\d)"]),
        rx(
            "ID",
            "carelake-id-alnum",
            [r"(?<![\w-])(?P<phi>(?=(?:[A-Z-]*\d){4})(?=[0-9-]*[A-Z])[A-Z0-9](?:[A-Z0-9-]*[A-Z0-9])?)(?![\w-])"],
            check=_valid_alnum_id,
        ),
    ]
    ip = ip_recognizer(screen)
    return [*names, dates, month_day, numeric, month_year, age, phones, email, url, addresses, *ids, ip]


def _trim_place(text: str, start: int, end: int) -> tuple[int, int] | None:
    """A ``City, ST`` match may start on a heading or stop word (``In Springfield, IL``): drop those."""
    if text[start].isdigit() or not text[start].isalpha():
        return start, end
    common = _word_lists().common
    while True:
        word = re.match(r"[A-Za-z'’.-]+", text[start:end])
        if word is None or text[start + word.end() : start + word.end() + 1] == ",":
            break
        bare = word.group().rstrip(".")
        if bare.lower() in common or bare in _NOT_NAMES:
            rest = re.match(r"[A-Za-z'’.-]+[ \t]+", text[start:end])
            if rest is None:
                return None
            start += rest.end()
        else:
            break
    return start, end


# -- what the record knows ---------------------------------------------------------------------------------------
_NAME_AFFIXES = {"MR", "MRS", "MS", "MISS", "MX", "DR", "PROF", "MD", "DO", "RN", "NP", "PA", "JR", "SR", "II", "III"}


def _name_pattern(value: str, common: frozenset[str]) -> list[str]:
    """A known name: the whole string, and each part of two or more letters; common words only when capitalised."""
    out = []
    parts = [p for p in re.split(r"[\s,]+", value.strip()) if p and p.strip(".").upper() not in _NAME_AFFIXES]
    if len(parts) > 1:
        out.append("(?i:" + r"[ \t,]+".join(re.escape(p) for p in parts) + ")")
    for part in parts:
        bare = part.strip(".")
        if len(bare) < 2:
            continue
        if bare.lower() in common or bare.title() in _NOT_NAMES:
            out.append(f"(?:{re.escape(bare.title())}|{re.escape(bare.upper())})")
        else:
            out.append(f"(?i:{re.escape(bare)})")
    return out


def _date_pattern(value: str) -> list[str]:
    try:
        day = dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        return [re.escape(value.strip())] if value.strip() else []
    m, d, y, yy = day.month, day.day, day.year, f"{day.year % 100:02d}"
    name = MONTHS[m - 1]
    sept = r"|Sept\.?" if m == 9 else ""
    month = f"(?i:{name}|{name[:3]}\\.?{sept})"
    nth = r"(?:st|nd|rd|th)?"
    sep = r"[ \t]*[/.-][ \t]*"
    return [
        rf"0?{m}{sep}0?{d}{sep}(?:{y}|{yy})",
        rf"0?{d}{sep}0?{m}{sep}{y}",
        rf"{y}{sep}0?{m}{sep}0?{d}",
        rf"{month}[ \t]+0?{d}{nth},?[ \t]*(?:{y}|'{yy})",
        rf"0?{d}{nth}[ \t]+(?:of[ \t]+)?{month},?[ \t]+{y}",
        rf"0?{d}-{month}-(?:{y}|{yy})",
        rf"{y}{m:02d}{d:02d}",
    ]


def _phone_pattern(value: str) -> list[str]:
    digits = phone_digits(value)
    if len(digits) < 7:
        return [re.escape(value.strip())] if value.strip() else []
    gap = r"[ \t().-]{0,2}"
    local = gap.join(digits[-7:])
    if len(digits) == 10:
        return [rf"(?:\+?1{gap})?\(?{gap.join(digits[:3])}\)?{gap}{local}", local]
    return [gap.join(digits), local]


def _identifier_pattern(value: str) -> list[str]:
    value = value.strip()
    characters = "".join(re.findall(r"[A-Za-z0-9]+", value))
    if len(characters) < 4:  # too short to search for without erasing ordinary numbers
        return []
    if len(characters) < 6:
        return [f"(?i:{re.escape(value)})"]
    flexible = r"[ \t./-]?".join(re.escape(ch) for ch in characters)  # 912-34-5678 also as 912345678
    # The number inside a prefixed id (MRN-4471902) is written alone just as often ("MRN 4471902", "#4471902").
    numbers = [run for run in re.findall(r"[0-9]{6,}", value) if run != characters]
    return [f"(?i:{re.escape(value)})", f"(?i:{flexible})", *numbers]


def _address_pattern(value: str, common: frozenset[str]) -> list[str]:
    out = []
    synonyms = {word: alternatives for alternatives in _STREET_SYNONYMS for word in alternatives}
    for part in (p.strip() for p in value.split(",")):
        if not part or part.upper() in _STATES or part in _STATE_NAMES:
            continue
        words = part.split()
        if len(words) == 1 and not any(ch.isdigit() for ch in part) and part.lower() in common:
            out.append(f"(?:{re.escape(part.title())}|{re.escape(part.upper())})")
            continue
        pieces = []
        for word in words:
            bare = word.rstrip(".").lower()
            pieces.append("(?:" + "|".join(re.escape(a) for a in synonyms.get(bare, (bare,))) + ")")
        out.append("(?i:" + r"\.?,?[ \t]+".join(pieces) + ")")
    return out


def _known_regex(known: Known) -> KnownPattern | None:
    """One regular expression for everything the record knows about a patient; a named group per category."""
    common = _word_lists().common
    groups: dict[str, list[str]] = {
        "NAME": [p for v in known.names for p in _name_pattern(v, common)],
        "ID": [p for v in known.identifiers for p in _identifier_pattern(v)],
        "PHONE": [p for v in known.phones for p in _phone_pattern(v)],
        "EMAIL": [f"(?i:{re.escape(v.strip())})" for v in known.emails if v.strip()],
        "ADDRESS": [p for v in known.addresses for p in _address_pattern(v, common)],
        "DATE": [p for v in known.dates for p in _date_pattern(v)],
    }
    alternatives = []
    for category, patterns in groups.items():
        if patterns:
            body = "|".join(sorted(set(patterns), key=len, reverse=True))
            alternatives.append(rf"(?P<{category}>{body})")
    return KnownPattern("|".join(alternatives)) if alternatives else None


_EDGE = "[^A-Za-z0-9]"  # what must stand on each side of a known value: it is a whole token


@cache
def _re2_options() -> Any:
    """RE2 logs a pattern it cannot compile to stderr, and this pattern is made of a patient's identifiers."""
    import re2

    options = re2.Options()
    options.log_errors = False
    return options


class KnownPattern:
    """A patient's known values as one regular expression, run by RE2 wherever RE2 finds what ``re`` would.

    Compiling it with ``re`` took 1.3 ms per patient, 15 % of the de-identification walk; RE2 compiles it in a
    fifth of that. RE2 has no lookaround, so the whole-token edges (``(?<![A-Za-z0-9])`` and ``(?![A-Za-z0-9])``
    for ``re``) are matched as one consumed character each, in the text padded with a space at both ends, and
    each search starts again where the previous match's value ended: the edge after one value may be the edge
    before the next, as with ``re``'s lookarounds. Both engines take the first alternative that matches, so the
    spans are ``re``'s own. The values use no character classes that the two read differently (no ``\\s``,
    ``\\w`` or ``\\b``), but case folding outside ASCII may differ: a text or a value that is not ASCII goes
    to ``re``, compiled on first need, as does a pattern too large for RE2's memory budget.
    """

    def __init__(self, body: str) -> None:
        self._body = body
        self._re: re.Pattern[str] | None = None
        self._re2: Any = None
        if body.isascii():
            import re2

            with contextlib.suppress(re2.error):
                self._re2 = re2.compile(f"{_EDGE}(?:{body}){_EDGE}", _re2_options())
        if self._re2 is not None:
            self._categories = {index: name for name, index in self._re2.groupindex.items()}

    def spans(self, text: str) -> Iterator[tuple[int, int, str]]:
        """``(start, end, category)`` of every known value in ``text``, left to right, not overlapping."""
        if self._re2 is None or not text.isascii():
            if self._re is None:
                self._re = re.compile(f"(?<![A-Za-z0-9])(?:{self._body})(?![A-Za-z0-9])")
            for match in self._re.finditer(text):
                yield match.start(), match.end(), match.lastgroup or "ID"
            return
        padded = b" " + text.encode("ascii") + b" "  # text position i is padded position i + 1
        position = 0
        while (match := self._re2.search(padded, position)) is not None:
            index = match.lastindex  # the one category group that matched: the values have no groups of their own
            start, end = match.span(index)
            yield start - 1, end - 1, self._categories[index]
            position = max(end - 1, position + 1)  # the value's last character may be the next one's edge


# -- the engine --------------------------------------------------------------------------------------------------
@cache
def _recognizers() -> tuple[Any, ...]:
    """carelake's Presidio recognisers, built once per process.

    They are called directly rather than through Presidio's ``AnalyzerEngine``: every one of them is a pattern with
    its context written in, so the engine's NLP pass, context enhancement and score threshold had nothing to do,
    and its de-duplication (quadratic in the spans found) only removed spans that ``_merge`` folds into the span
    containing them anyway. Same spans, about a quarter less time per note."""
    return tuple(_generic_recognizers())


class TextScrubber:
    """Replaces PHI in free text with typed tags (``[NAME]``, ``[DATE]`` ...), so notes can leave the clinic.

    Deterministic: the same text and :class:`Known` always give the same output. Safe for sequential use from
    one thread; build one per thread for parallel use.

    Examples:
        >>> text, found = TextScrubber().scrub("Call 217-555-0147.", Known(names=("Ann",)))
        >>> text, dict(found)
        ('Call [PHONE].', {'PHONE': 1})
    """

    def __init__(self, *, places: Iterable[str] = (), cache_size: int = 100_000) -> None:
        self._recognizers = _recognizers()
        self._entities = list(CATEGORIES)
        self._places = _places_regex(places)
        # Structured FHIR repeats its strings (CodeableConcept.text, organisation names): the generic pass depends
        # on the text alone, so its spans are kept for short texts and reused.
        self._generic_cache: dict[str, list[tuple[int, int, str]]] = {}
        self._cache_size = cache_size
        # A patient's record repeats its own strings (every vital sign's display and unit): their scrubbed form
        # is kept while the same Known is passed, so each is scanned once per patient rather than once per use.
        self._known_seen: Known | None = None
        self._scrubbed: dict[tuple[str, bool], tuple[str, tuple[tuple[str, int], ...]]] = {}

    def scrub(
        self, text: str, known: Known | None = None, *, generic: bool = True
    ) -> tuple[str, collections.Counter[str]]:
        """Return the text with every PHI span replaced by a typed tag, and counts per category.

        ``generic=False`` replaces only what the record knows (for terminology displays, which the generic
        recognisers would mangle but which could still quote a patient's name).
        """
        clean, found = self.replace(text, known, generic=generic)
        return clean, collections.Counter(dict(found))

    def replace(
        self, text: str, known: Known | None = None, *, generic: bool = True
    ) -> tuple[str, tuple[tuple[str, int], ...]]:
        """:meth:`scrub`, with the counts as ``(category, n)`` pairs, shared with the cache (do not change them):
        the de-identification walk asks for millions of strings, most of them seen before, and adds the counts
        up itself, so a Counter copied for each was work for nothing."""
        if known is not self._known_seen or len(self._scrubbed) >= self._cache_size:
            self._known_seen, self._scrubbed = known, {}
        done = self._scrubbed.get((text, generic))
        if done is None:
            found: collections.Counter[str] = collections.Counter()
            pieces, position = [], 0
            for start, end, category in self._spans(text, known, generic=generic):
                pieces.append(text[position:start])
                pieces.append("90+" if category == "AGE90" else f"[{category}]")
                found[category] += 1
                position = end
            pieces.append(text[position:])
            done = "".join(pieces), tuple(found.items())
            if len(text) <= 1_000:
                self._scrubbed[text, generic] = done
        return done

    def _spans(self, text: str, known: Known | None = None, *, generic: bool = True) -> list[tuple[int, int, str]]:
        """The merged ``(start, end, category)`` spans ``scrub`` replaces (for evaluation against labels)."""
        if not text or not text.strip():
            return []
        spans = list(self._generic(text)) if generic else []
        pattern = known.pattern if known is not None else None
        if pattern is not None:
            spans.extend(pattern.spans(text))
        return _merge(spans)

    def _generic(self, text: str) -> list[tuple[int, int, str]]:
        cached = self._generic_cache.get(text)
        if cached is not None:
            return cached
        failure = None
        try:
            results = [found for r in self._recognizers for found in r.analyze(text, self._entities, None)]
        except Exception as exc:  # a third-party failure: keep its type only, its message may quote the text
            failure = type(exc).__name__
        if failure is not None:  # raised outside the handler, so the original is not even chained as context
            from carelake.errors import CarelakeError

            raise CarelakeError(
                f"free-text scrubbing failed ({failure}) on a text of {len(text)} characters",
                hint="report it with the carelake version; the text itself is not shown, to keep it private",
            )
        spans = [(r.start, r.end, r.entity_type) for r in results]
        if self._places is not None:
            spans.extend((m.start(), m.end(), "ADDRESS") for m in self._places.finditer(text))
        if len(text) <= 1_000:
            if len(self._generic_cache) >= self._cache_size:
                self._generic_cache.clear()
            self._generic_cache[text] = spans
        return spans


def _places_regex(places: Iterable[str]) -> re.Pattern[str] | None:
    """Towns anyone in the lake lives in, as written (Title or UPPER case), whole words; common words left out."""
    from carelake.privacy._known import COMMON_WORDS

    forms = set()
    for place in places:
        place = place.strip()
        if len(place) < 3 or any(ch.isdigit() for ch in place) or place.lower() in COMMON_WORDS:
            continue
        forms.update({place, place.upper(), place.title()})
    if not forms:
        return None
    body = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])(?:{body})(?![A-Za-z0-9])")


def _merge(spans: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Overlapping spans become one, named after the longest of them (ties: ``_PRIORITY``)."""
    merged: list[tuple[int, int, str]] = []
    best = (0, 0)
    for start, end, category in sorted(spans):
        rank = (end - start, -_PRIORITY.get(category, 99))
        if merged and start < merged[-1][1]:
            last_start, last_end, last_category = merged[-1]
            if rank > best:
                last_category, best = category, rank
            merged[-1] = (last_start, max(last_end, end), last_category)
        else:
            merged.append((start, end, category))
            best = rank
    return merged
