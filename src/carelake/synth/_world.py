"""The health system the patients move through: hospitals, clinics, payers, their locations and clinicians.

Built once per run from its own seeded stream, so every chunk of patients (in any worker process) sees the
same organisations and practitioners and can reference them by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from carelake.synth._draws import Draws, IdSource, streams
from carelake.synth._people import FAMILY, FAMILY_ASIAN, FAMILY_HISPANIC, GIVEN_FEMALE, GIVEN_MALE, STREETS
from carelake.synth._terminology import (
    LOCATION_TYPES,
    NPI,
    ORG_PAYER,
    ORG_PROVIDER,
    luhn_check_digit,
)

HOSPITALS = (
    "Springfield Memorial Hospital",
    "St. Brigid Medical Center",
    "Prairie Regional Hospital",
    "Lakeview General Hospital",
)
CLINIC_TOWNS = (
    "Springfield",
    "Decatur",
    "Champaign",
    "Peoria",
    "Bloomington",
    "Jacksonville",
    "Lincoln",
    "Taylorville",
    "Mattoon",
    "Danville",
    "Quincy",
    "Effingham",
)
PAYERS = (
    ("Blue Prairie Health Plan", "blueprairie"),
    ("Heartland Medicaid", "heartland-medicaid"),
    ("Medicare Part A/B", "medicare"),
    ("Unity Commercial Insurance", "unity"),
)


@dataclass(frozen=True, slots=True)
class Clinician:
    """A practitioner as other resources refer to and notes name them."""

    ref: dict[str, str]
    name: str


@dataclass(slots=True)
class Site:
    """A hospital or clinic: its Organization, its Locations and the clinicians who work there."""

    ref: dict[str, str]
    name: str
    address: str
    phone: str
    locations: dict[str, dict[str, str]] = field(default_factory=dict)
    clinicians: list[Clinician] = field(default_factory=list)
    emergency: list[Clinician] = field(default_factory=list)


@dataclass(slots=True)
class Payer:
    ref: dict[str, str]
    name: str
    system: str


@dataclass(slots=True)
class World:
    """Every shared resource of a run, plus quick access for the simulation."""

    hospitals: list[Site]
    clinics: list[Site]
    payers: list[Payer]
    resources: list[tuple[str, dict[str, Any]]]


def npi(draws: Draws, first: int) -> str:
    """A ten-digit NPI whose check digit is valid (Luhn over the 80840 prefix, as CMS specifies)."""
    body = f"{first}{draws.between(10_000_000, 99_999_999)}"
    return body + str(luhn_check_digit("80840" + body))


def build_world(seed: int) -> World:
    draws, ids = streams(seed, 0)
    resources: list[tuple[str, dict[str, Any]]] = []
    hospitals = [_site(draws, ids, resources, name, "Springfield", hospital=True) for name in HOSPITALS]
    clinics = [_site(draws, ids, resources, f"{town} Family Medicine", town, hospital=False) for town in CLINIC_TOWNS]
    payers = []
    for name, slug in PAYERS:
        org_id = ids.new()
        resources.append(
            (
                "Organization",
                {
                    "resourceType": "Organization",
                    "id": org_id,
                    "active": True,
                    "type": ORG_PAYER,
                    "name": name,
                    "telecom": [{"system": "phone", "value": f"(800) 555-{draws.between(0, 9999):04d}"}],
                },
            )
        )
        payers.append(Payer({"reference": f"Organization/{org_id}"}, name, f"http://{slug}.example.org/member-id"))
    for site in hospitals:
        site.clinicians = [_clinician(draws, ids, resources) for _ in range(10)]
        site.emergency = [_clinician(draws, ids, resources) for _ in range(6)]
    for site in clinics:
        site.clinicians = [_clinician(draws, ids, resources) for _ in range(5)]
    return World(hospitals, clinics, payers, resources)


def _site(
    draws: Draws, ids: IdSource, resources: list[tuple[str, dict[str, Any]]], name: str, town: str, *, hospital: bool
) -> Site:
    org_id = ids.new()
    line = f"{draws.between(100, 4999)} {draws.pick(STREETS)} {'Blvd' if hospital else 'St'}"
    postal = f"62{draws.between(500, 799)}"
    phone = f"(217) 555-{draws.between(0, 9999):04d}"
    address = {"line": [line], "city": town, "state": "IL", "postalCode": postal, "country": "US"}
    resources.append(
        (
            "Organization",
            {
                "resourceType": "Organization",
                "id": org_id,
                "identifier": [{"system": NPI, "value": npi(draws, 1)}],
                "active": True,
                "type": ORG_PROVIDER,
                "name": name,
                "telecom": [{"system": "phone", "value": phone}],
                "address": [address],
            },
        )
    )
    site = Site({"reference": f"Organization/{org_id}"}, name, f"{line}, {town}, IL {postal}", phone)
    kinds = (
        (
            ("main", "HOSP", name),
            ("ER", "ER", f"{name} Emergency Department"),
            ("ward", "HU", f"{name} Inpatient Medicine"),
        )
        if hospital
        else (("main", "PC", name),)
    )
    for key, type_code, location_name in kinds:
        location_id = ids.new()
        resources.append(
            (
                "Location",
                {
                    "resourceType": "Location",
                    "id": location_id,
                    "status": "active",
                    "name": location_name,
                    "mode": "instance",
                    "type": LOCATION_TYPES[type_code],
                    "address": address,
                    "managingOrganization": site.ref,
                },
            )
        )
        site.locations[key] = {"reference": f"Location/{location_id}", "display": location_name}
    return site


def _clinician(draws: Draws, ids: IdSource, resources: list[tuple[str, dict[str, Any]]]) -> Clinician:
    female = draws.chance(0.45)
    given = draws.pick(GIVEN_FEMALE if female else GIVEN_MALE)
    family = draws.pick(draws.pick((FAMILY, FAMILY, FAMILY_HISPANIC, FAMILY_ASIAN)))
    suffix = draws.pick(("MD", "MD", "MD", "DO", "NP", "PA-C"))
    practitioner_id = ids.new()
    name: dict[str, Any] = {"use": "official", "family": family, "given": [given], "suffix": [suffix]}
    if suffix in ("MD", "DO"):
        name["prefix"] = ["Dr."]
    resources.append(
        (
            "Practitioner",
            {
                "resourceType": "Practitioner",
                "id": practitioner_id,
                "identifier": [{"system": NPI, "value": npi(draws, 1)}],
                "active": True,
                "name": [name],
                "gender": "female" if female else "male",
                "telecom": [
                    {
                        "system": "email",
                        "value": f"{given.lower()}.{family.lower().replace(chr(39), '')}@hospital.example.org",
                        "use": "work",
                    }
                ],
            },
        )
    )
    display = f"{given} {family}, {suffix}"
    return Clinician({"reference": f"Practitioner/{practitioner_id}", "display": display}, display)
