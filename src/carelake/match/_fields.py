"""What a Patient record is compared on: one ViewDefinition flattens it, one SQL pass adds match keys.

The view is the house way to read FHIR (SQL-on-FHIR, compiled for both engines); normalising (lower case,
letters or digits only) happens in FHIRPath, and the phonetic codes and date parts that no FHIRPath function
gives are added by SQL written once in DuckDB's dialect and translated for Spark.
"""

from __future__ import annotations

from typing import Any

US_SSN = "http://hl7.org/fhir/sid/us-ssn"
# The official name when there is one (Synthea adds maiden names), else the first name given.
_NAME = "iif(name.where(use = 'official').exists(), name.where(use = 'official').first(), name.first())"

FIELDS_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "patient_match_fields",
    "title": "Patient fields for record linkage",
    "status": "active",
    "description": "One row per Patient: normalised name, birth date, sex, address, phone, e-mail and identifiers.",
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "patient_id", "path": "getResourceKey()"},
                {"name": "given_name", "path": f"{_NAME}.given.first().lower().replaceMatches('[^a-z]', '')"},
                {"name": "family_name", "path": f"{_NAME}.family.first().lower().replaceMatches('[^a-z]', '')"},
                {"name": "birth_date", "path": "birthDate", "type": "date"},
                {"name": "sex", "path": "gender", "type": "code"},
                {
                    "name": "address_line",
                    "path": "address.first().line.first().lower().replaceMatches('[^a-z0-9]', '')",
                },
                {"name": "postal_code", "path": "address.first().postalCode.first().substring(0, 5)"},
                {"name": "city", "path": "address.first().city.first().lower().replaceMatches('[^a-z]', '')"},
                {"name": "phone", "path": "telecom.where(system = 'phone').value.first().replaceMatches('[^0-9]', '')"},
                {"name": "email", "path": "telecom.where(system = 'email').value.first().lower().trim()"},
                {
                    "name": "ssn",
                    "path": f"identifier.where(system = '{US_SSN}').value.first().replaceMatches('[^0-9]', '')",
                },
                {
                    # An MRN only means something within its system: compare "system|value".
                    "name": "mrn",
                    "path": "identifier.where(type.coding.exists(code = 'MR')).select(system & '|' & value).first()",
                },
            ]
        }
    ],
}

_CODES_FROM = "bfpvcgjkqsxzdtlmnraeiouyhw"  # h and w have no counterpart: translate() drops them
_CODES_TO = "111122222222334556000000"


def soundex_sql(column: str) -> str:
    """American Soundex of a lower-case, letters-only column, as SQL both engines run.

    Letters map to digit classes; h and w are dropped (they do not separate equal codes), vowels separate
    them; runs of one code collapse, including the first letter's; the first letter is kept as a letter.

    Examples:
        >>> import duckdb
        >>> names = ["robert", "rupert", "ashcraft", "tymczak", "pfister", "honeyman", "lee"]
        >>> [duckdb.sql(f"SELECT {soundex_sql(repr(n))}").fetchall()[0][0] for n in names]
        ['R163', 'R163', 'A261', 'T522', 'P236', 'H555', 'L000']
    """
    codes = f"translate({column}, '{_CODES_FROM}', '{_CODES_TO}')"
    for digit in "123456":
        codes = f"regexp_replace({codes}, '{digit}+', '{digit}', 'g')"
    # The first letter's own code heads the string unless it was an h or w (dropped): skip it.
    tail = f"CASE WHEN left({column}, 1) IN ('h', 'w') THEN {codes} ELSE substr({codes}, 2) END"
    digits = f"replace({tail}, '0', '')"
    return (
        f"CASE WHEN {column} IS NULL OR {column} = '' THEN NULL "
        f"ELSE upper(left({column}, 1)) || rpad(left({digits}, 3), 3, '0') END"
    )


def keys_sql(view_table: str) -> str:
    """The linkage input from the view's rows: empty strings as NULL, plus phonetic codes and date parts.

    It reads the view's materialised rows (not the view's query): the phonetic code repeats its column
    many times, and an engine may inline the column's whole JSON extraction into each repetition.
    """
    text = ["given_name", "family_name", "address_line", "postal_code", "city", "phone", "email", "ssn", "mrn"]
    cleaned = ", ".join(f"nullif({c}, '') AS {c}" for c in text)
    return f"""
        WITH fields AS (SELECT patient_id, birth_date, sex, {cleaned} FROM {view_table} WHERE patient_id IS NOT NULL)
        SELECT patient_id, given_name, family_name,
               {soundex_sql("given_name")} AS given_soundex,
               {soundex_sql("family_name")} AS family_soundex,
               left(family_name, 1) AS family_initial,
               birth_date, left(birth_date, 4) AS birth_year,
               sex, address_line, postal_code, city, phone, email, ssn, mrn
        FROM fields"""
