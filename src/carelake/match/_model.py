"""The linkage model, described once for every engine: comparisons, blocking rules and how it is trained.

Only functions both DuckDB and Spark have natively (equality, ``levenshtein``, ``substr``) appear in the
SQL Splink generates, so the same model scores the same pairs the same way on either engine; phonetic codes
come precomputed with the fields (see ``_fields``).
"""

from __future__ import annotations

from typing import Any

MISSING = "missing on one side"
COMPARISON_NAMES = ("given_name", "family_name", "birth_date", "sex", "address", "phone", "email", "identifiers")
# Splink's CustomComparison does not keep its description in the saved model, so carelake keeps them here.
DESCRIPTIONS = {
    "given_name": "given name: exact, a typo away, sounds alike, same initial",
    "family_name": "family name: exact, one or two typos away, sounds alike",
    "birth_date": "birth date: exact, day and month swapped, one character off, same year",
    "address": "home address: same street line and postal code, same postal code, same city",
    "identifiers": "SSN, or an MRN of the same system, agrees; SSNs differ",
    "sex": "administrative sex: the same or not",
    "phone": "phone number (digits only): the same or not",
    "email": "e-mail address: the same or not",
}


def _levels(column: str) -> dict[str, Any]:
    import splink.comparison_level_library as cll

    return {
        "null": cll.NullLevel(column).configure(label_for_charts=MISSING),
        "exact": cll.ExactMatchLevel(column),
        "else": cll.ElseLevel(),
    }


def comparisons() -> list[Any]:
    """One Splink comparison per kind of evidence, levels from most to least alike."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    def same(*columns: str) -> str:
        return " AND ".join(f"{c}_l = {c}_r" for c in columns)

    given, family, birth = _levels("given_name"), _levels("family_name"), _levels("birth_date")
    return [
        cl.CustomComparison(
            output_column_name="given_name",
            comparison_description=DESCRIPTIONS["given_name"],
            comparison_levels=[
                given["null"],
                given["exact"].configure(label_for_charts="exact"),
                cll.LevenshteinLevel("given_name", 2).configure(label_for_charts="typo (edit distance <= 2)"),
                cll.ExactMatchLevel("given_soundex").configure(label_for_charts="sounds alike (Soundex)"),
                cll.CustomLevel("substr(given_name_l, 1, 1) = substr(given_name_r, 1, 1)", "same initial"),
                given["else"].configure(label_for_charts="different"),
            ],
        ),
        cl.CustomComparison(
            output_column_name="family_name",
            comparison_description=DESCRIPTIONS["family_name"],
            comparison_levels=[
                family["null"],
                family["exact"].configure(label_for_charts="exact"),
                cll.LevenshteinLevel("family_name", 1).configure(label_for_charts="one typo"),
                cll.LevenshteinLevel("family_name", 2).configure(label_for_charts="two typos"),
                cll.ExactMatchLevel("family_soundex").configure(label_for_charts="sounds alike (Soundex)"),
                family["else"].configure(label_for_charts="different"),
            ],
        ),
        cl.CustomComparison(
            output_column_name="birth_date",
            comparison_description=DESCRIPTIONS["birth_date"],
            comparison_levels=[
                birth["null"],
                birth["exact"].configure(label_for_charts="exact"),
                cll.CustomLevel(
                    "substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4)"
                    " AND substr(birth_date_l, 6, 2) = substr(birth_date_r, 9, 2)"
                    " AND substr(birth_date_l, 9, 2) = substr(birth_date_r, 6, 2)",
                    "day and month swapped",
                ),
                cll.LevenshteinLevel("birth_date", 1).configure(label_for_charts="one character off"),
                cll.ExactMatchLevel("birth_year").configure(label_for_charts="same year"),
                birth["else"].configure(label_for_charts="different"),
            ],
        ),
        _exact("sex"),
        cl.CustomComparison(
            output_column_name="address",
            comparison_description=DESCRIPTIONS["address"],
            comparison_levels=[
                cll.Or(cll.NullLevel("address_line"), cll.NullLevel("postal_code")).configure(label_for_charts=MISSING),
                cll.CustomLevel(same("address_line", "postal_code"), "same address"),
                cll.ExactMatchLevel("postal_code").configure(label_for_charts="same postal code"),
                cll.ExactMatchLevel("city").configure(label_for_charts="same city"),
                cll.ElseLevel().configure(label_for_charts="different"),
            ],
        ),
        _exact("phone"),
        _exact("email"),
        cl.CustomComparison(
            output_column_name="identifiers",
            comparison_description=DESCRIPTIONS["identifiers"],
            comparison_levels=[
                cll.CustomLevel(f"({same('ssn')}) OR ({same('mrn')})", "SSN or MRN agrees"),
                cll.NullLevel("ssn").configure(label_for_charts="no SSN on one side"),
                cll.ElseLevel().configure(label_for_charts="SSNs differ"),
            ],
        ),
    ]


def _exact(column: str) -> Any:
    import splink.comparison_library as cl

    levels = _levels(column)
    return cl.CustomComparison(
        output_column_name=column,
        comparison_description=DESCRIPTIONS[column],
        comparison_levels=[
            levels["null"],
            levels["exact"].configure(label_for_charts="exact"),
            levels["else"].configure(label_for_charts="different"),
        ],
    )


def prediction_blocking_rules() -> list[Any]:
    """Which pairs are scored at all: any one rule lets a pair through (a union, each pair once).

    Each rule survives a different set of the changes a second registration makes: a typo never touches a
    family name's first letter, a moved person keeps their SSN or phone, a mistyped birth date (day and month
    swapped, a day off) keeps its year and the names their sound. Every rule is an equality, so the number of
    pairs grows with the size of the blocks, not with the square of the input.
    """
    from splink import block_on

    return [
        block_on("birth_date", "family_initial"),
        block_on("ssn"),
        block_on("phone"),
        block_on("email"),
        block_on("family_soundex", "given_soundex", "birth_year"),
        block_on("family_name", "birth_year"),
    ]


def prior_rules() -> list[Any]:
    """Rules that admit almost no false pair, to estimate how likely two random records are one person."""
    from splink import block_on

    return [block_on("ssn"), block_on("given_name", "family_name", "birth_date")]


def training_blocking_rules() -> list[Any]:
    """One EM pass per rule; a pass cannot learn m for the comparisons its rule uses, so two cover all."""
    from splink import block_on

    return [block_on("birth_date"), block_on("family_soundex", "given_soundex")]


PRIOR_RECALL = 0.7  # assumed share of true pairs the prior rules find: a second registration often lacks the SSN


def settings(probability_two_random_records_match: float | None = None) -> Any:
    """The Splink settings (untrained); the probability a random pair matches may be given."""
    from splink import SettingsCreator

    options: dict[str, Any] = {}
    if probability_two_random_records_match is not None:
        options["probability_two_random_records_match"] = probability_two_random_records_match
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="patient_id",
        comparisons=comparisons(),
        blocking_rules_to_generate_predictions=prediction_blocking_rules(),
        # Keeps the comparison vector (which level each pair reached) in Splink's working tables; only the
        # ids, scores and level labels are written to the lake.
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=False,
        em_convergence=0.0001,
        max_iterations=25,
        **options,
    )
