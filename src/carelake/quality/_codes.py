"""Whether a code is well formed for its code system, judged by well-kept libraries (python-stdnum)."""

from __future__ import annotations

from stdnum import luhn, verhoeff


def loinc_is_valid(code: str) -> bool:
    """A LOINC code is NNNNN-C with the Luhn (mod 10) check digit C of its number."""
    number, _, check = code.partition("-")
    return number.isdigit() and check.isdigit() and len(check) == 1 and luhn.is_valid(number + check)


def snomed_is_valid(code: str) -> bool:
    """A SNOMED CT id is 6-18 digits: the item, a partition identifier (00, 01, 02 for core concepts,
    descriptions and relationships; 10, 11, 12 in extensions) and a Verhoeff check digit."""
    return (
        code.isdigit()
        and 6 <= len(code) <= 18
        and code[-3:-1] in {"00", "01", "02", "10", "11", "12"}
        and verhoeff.is_valid(code)
    )
