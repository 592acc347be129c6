"""What a de-identification run keeps, generalises and removes: the policy and its fixed tables.

``safe-harbor`` follows HIPAA §164.514(b)(2): the 18 identifier categories go, dates keep their year
(or, with ``date_mode="shift"``, move by one random offset per patient — useful, but not Safe Harbor),
ZIP codes keep three digits, ages over 89 become "90 or older". ``limited-dataset`` follows
§164.514(e): direct identifiers go, dates, towns and five-digit ZIP codes stay.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from carelake.errors import ConfigError

PolicyName = Literal["safe-harbor", "limited-dataset"]
DateMode = Literal["year", "shift", "keep"]
POLICIES: tuple[PolicyName, ...] = ("safe-harbor", "limited-dataset")
DATE_MODES: tuple[DateMode, ...] = ("year", "shift", "keep")

# ZIP3 areas with 20,000 people or fewer, which Safe Harbor replaces by 000 (HHS guidance, 2000 Census).
RESTRICTED_ZIP3 = frozenset(
    {"036", "059", "063", "102", "203", "556", "692", "790", "821"}
    | {"823", "830", "831", "878", "879", "884", "890", "893"}
)
CENSUS_VINTAGE = "2000 Census (HHS Safe Harbor guidance list of 17 ZIP3 areas)"

# Extensions whose meaning carelake knows and that carry no identifier; every other one is dropped.
# The text of a US Core race or ethnicity extension, when it is one of the OMB category labels, is a code in
# words: kept verbatim. Scrubbing it would turn "White" into [NAME] for every patient whose surname is White.
CATEGORY_LABELS = frozenset(
    {
        "White",
        "Black or African American",
        "Black",
        "Asian",
        "American Indian or Alaska Native",
        "Native Hawaiian or Other Pacific Islander",
        "Other race",
        "Other",
        "Two or more races",
        "Hispanic or Latino",
        "Not Hispanic or Latino",
        "Hispanic",
        "Non Hispanic",
        "Unknown",
        "Asked but unknown",
    }
)
KEPT_EXTENSIONS = frozenset(
    {
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
        "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
        "ombCategory",
        "detailed",
        "text",
    }
)


@dataclass(frozen=True)
class Policy:
    """A de-identification policy with its options, as written into the run manifest."""

    name: PolicyName = "safe-harbor"
    date_mode: DateMode = "year"
    kept_extensions: frozenset[str] = field(default=KEPT_EXTENSIONS)

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ConfigError(f"unknown policy {self.name!r}", hint=f"one of {', '.join(POLICIES)}")
        if self.date_mode not in DATE_MODES:
            raise ConfigError(f"unknown date mode {self.date_mode!r}", hint=f"one of {', '.join(DATE_MODES)}")
        if self.name == "safe-harbor" and self.date_mode == "keep":
            raise ConfigError(
                "Safe Harbor cannot keep exact dates",
                hint="use --date-mode year (Safe Harbor) or shift, or --policy limited-dataset",
            )

    @classmethod
    def of(cls, name: str, date_mode: str | None = None, *, keep_extensions: tuple[str, ...] = ()) -> Policy:
        """A policy by name; the date mode defaults to ``year`` (Safe Harbor) or ``keep`` (limited data set)."""
        mode = date_mode or ("year" if name == "safe-harbor" else "keep")
        return cls(name, mode, KEPT_EXTENSIONS | frozenset(keep_extensions))  # type: ignore[arg-type]

    @property
    def safe_harbor(self) -> bool:
        """Whether the output meets Safe Harbor: shifted dates are not 'year only'."""
        return self.name == "safe-harbor" and self.date_mode == "year"

    @property
    def generalises_geography(self) -> bool:
        return self.name == "safe-harbor"

    @property
    def caps_age(self) -> bool:
        return self.name == "safe-harbor"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kept_extensions"] = sorted(self.kept_extensions)
        data["safe_harbor"] = self.safe_harbor
        data["census_vintage"] = CENSUS_VINTAGE if self.generalises_geography else None
        return data


def zip3(postal_code: str) -> str | None:
    """Safe Harbor's ZIP: the first three digits, or 000 for sparsely populated areas; None when not a US ZIP."""
    digits = postal_code.strip()[:5]
    if len(digits) < 3 or not digits[:3].isdigit():
        return None
    return "000" if digits[:3] in RESTRICTED_ZIP3 else digits[:3]
