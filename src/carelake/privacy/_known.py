"""What a de-identified lake must not contain: every identifying string the source lake holds, and how it is written.

The strings come from SQL-on-FHIR views shipped beside this module, so they run on DuckDB and Spark alike and
anyone can read exactly what is searched for: ``known_identifiers.json`` (Patient: names, identifiers, birth
date), ``known_identifiers_telecom_address.json`` (Patient: telecom, addresses) and
``known_identifiers_related.json`` (RelatedPerson). A ViewDefinition reads one resource type, and the Patient
half is split in two because Spark cannot compile one view that large (generated code over 64 KB).

    >>> written_forms("birth_date", "2019-03-14")
    ['2019-03-14', '03/14/2019', '3/14/2019', 'March 14, 2019', '14 March 2019', 'Mar 14, 2019']
    >>> written_forms("phone", "555-810-7203")
    ['555-810-7203', '5558107203', '(555) 810-7203', '555.810.7203', '555 810 7203', '(555)810-7203', '15558107203']
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from carelake.lake import Lake

VIEWS = tuple(
    Path(__file__).with_name(f"{name}.json")
    for name in ("known_identifiers", "known_identifiers_telecom_address", "known_identifiers_related")
)

# Every category the views write, in the order a form shared by two categories is reported under.
CATEGORIES = ("birth_date", "identifier", "phone", "email", "url", "name", "address")

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
    "December",
)  # fmt: skip
_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SEPARATED_NUMBER = re.compile(r"^[0-9]+(?:[- ][0-9]+)+$")


# Ordinary English words that are also names or places: searched for alone they would flag ordinary text, so
# the leak sweep and the scrubber's lake-wide place list look for them only inside longer forms.
_COMMON_WORDS = """
    will may june april august summer autumn winter dawn faith hope joy grace mercy patience charity
    rose lily iris ivy daisy holly hazel olive violet ruby pearl amber crystal jade ginger honey angel
    sunny rusty sky mark frank grant chase hunter miles dean guy ray jack pat sue don bill art rich penny
    king prince major royal noble earl baron bishop deacon page
    young white brown black green gray grey long short little small hill wood woods stone rivers lake
    field fields bell cook baker cooper mason porter turner walker fisher carpenter rice bush hall ward
    banks marsh ford cross church lane park parks price foster knight case cash day house wall waters
    bond west north south east spring frost snow flowers lamb fox wolf crane bird hart read burns lord
    power powers strong sharp swift wise good best love hardy brooks reed head hand cox moody gross
    savage bright sterling street said van von del der den san normal independence liberty union
"""
COMMON_WORDS = frozenset(_COMMON_WORDS.split())


def known_views() -> list[dict[str, Any]]:
    """The ViewDefinitions ``known_identifiers`` runs, for ``carelake view run`` or a review of what is searched."""
    return [json.loads(path.read_text(encoding="utf-8")) for path in VIEWS]


def known_identifiers(lake: Lake, *, engine: str = "duckdb") -> pa.Table:
    """Every identifying string of the lake's patients (``patient_id``, ``category``, ``value``), distinct.

    This is the list a de-identified copy is checked against (:func:`carelake.privacy.verify`): names,
    identifier values, telecom values, address lines, city, postal code and birth date of each patient, and
    the names, telecom and addresses of their contacts and related persons. Values are stripped of
    surrounding white space; empty ones are dropped. Rows are sorted, so both engines give equal tables.

    Examples:
        >>> known_identifiers(cl.open_lake("my-lake")).column_names  # doctest: +SKIP
        ['patient_id', 'category', 'value']
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from carelake.fhir import run_view

    schema = pa.schema([("patient_id", pa.string()), ("category", pa.string()), ("value", pa.string())])
    catalog = lake.catalog
    if "resources" not in catalog.views and "resources" not in catalog.tables:
        return schema.empty_table()  # nothing ingested yet: no FHIR resources, no identifiers
    eng = lake.connect(engine)
    try:
        tables = [run_view(view, lake=lake, engine=eng) for view in known_views()]
    finally:
        eng.close()
    table = pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])
    table = table.set_column(2, "value", pc.utf8_trim_whitespace(table.column("value")))
    table = table.filter(pc.fill_null(pc.greater(pc.utf8_length(table.column("value")), 0), False))
    table = table.group_by(schema.names, use_threads=False).aggregate([]).select(schema.names)
    return table.sort_by([(name, "ascending") for name in schema.names]).cast(schema)


def written_forms(category: str, value: str) -> list[str]:
    """The ways ``value`` is written in free text, so a date or phone number is found however it was typed.

    Birth dates (full ``YYYY-MM-DD`` only) give the ISO, US numeric and spelled-out forms; phone numbers the
    value as written, its digits alone and the usual US layouts; identifiers that are digit groups (an SSN
    ``999-94-5397``) also their digits run together. Everything else is searched as written.

    Examples:
        >>> written_forms("identifier", "999-94-5397")
        ['999-94-5397', '999945397']
        >>> written_forms("name", "Sumiko254 Medhurst46")
        ['Sumiko254 Medhurst46']
    """
    value = value.strip()
    if not value:
        return []
    if category == "birth_date":
        return _date_forms(value)
    if category == "phone":
        return _phone_forms(value)
    if category == "identifier" and _SEPARATED_NUMBER.match(value):
        return _unique([value, re.sub(r"[- ]", "", value)])
    return [value]


def _date_forms(value: str) -> list[str]:
    if not _FULL_DATE.match(value):
        return [value]
    try:
        date = dt.date.fromisoformat(value)
    except ValueError:
        return [value]
    month = MONTHS[date.month - 1]
    return _unique(
        [
            value,
            f"{date.month:02d}/{date.day:02d}/{date.year}",
            f"{date.month}/{date.day}/{date.year}",
            f"{month} {date.day}, {date.year}",
            f"{date.day} {month} {date.year}",
            f"{month[:3]} {date.day}, {date.year}",
        ]
    )


def phone_digits(value: str) -> str:
    """A phone number's digits without the North American country code: how it is matched in any layout."""
    digits = re.sub(r"\D", "", value)
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits


def _phone_forms(value: str) -> list[str]:
    digits = phone_digits(value)
    forms = [value]
    if len(digits) >= 7:
        forms.append(digits)
    if len(digits) == 10:
        area, exchange, line = digits[:3], digits[3:6], digits[6:]
        forms += [
            f"({area}) {exchange}-{line}",
            f"{area}-{exchange}-{line}",
            f"{area}.{exchange}.{line}",
            f"{area} {exchange} {line}",
            f"({area}){exchange}-{line}",
            f"1{digits}",
        ]
    elif len(digits) == 7:
        forms.append(f"{digits[:3]}-{digits[3:]}")
    return _unique(forms)


def _unique(forms: list[str]) -> list[str]:
    return list(dict.fromkeys(forms))
