"""The OMOP Common Data Model tables, versions 5.3 and 5.4: names, column types, required fields, keys.

The definitions live in ``cdm_fields.csv`` (our own compact transcription of the OHDSI specification), so
ingestion checks rows against the DDL and the export writes it, from one source.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from carelake.errors import ConfigError

FIELDS_FILE = Path(__file__).with_name("cdm_fields.csv")
VERSIONS = ("5.3", "5.4")
# The SQL type each CDM type is stored as in the lake (DuckDB dialect; the engine translates for Spark).
SQL_TYPES = {"integer": "BIGINT", "float": "DOUBLE", "date": "DATE", "datetime": "TIMESTAMP", "varchar": "VARCHAR"}


@dataclass(frozen=True)
class CdmField:
    name: str
    type: str
    required: bool
    primary_key: bool

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.type]


@dataclass(frozen=True)
class CdmTable:
    """One CDM table of one version."""

    name: str
    fields: tuple[CdmField, ...]

    @property
    def key(self) -> str | None:
        """The single-column primary key, if the table has one."""
        return next((f.name for f in self.fields if f.primary_key), None)

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.fields]


@cache
def cdm_tables(version: str) -> dict[str, CdmTable]:
    """Every table of a CDM version, by lower-case name, columns in the specification's order."""
    if version not in VERSIONS:
        raise ConfigError(f"unsupported OMOP CDM version {version!r}", hint=f"use one of {', '.join(VERSIONS)}")
    fields: dict[str, list[CdmField]] = {}
    with FIELDS_FILE.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["version"] == version:
                fields.setdefault(row["table"], []).append(
                    CdmField(row["column"], row["type"], row["required"] == "yes", row["primary_key"] == "yes")
                )
    return {name: CdmTable(name, tuple(columns)) for name, columns in fields.items()}


def parse_version(text: str | None) -> str | None:
    """The CDM version a ``cdm_source.cdm_version`` value names ('v5.3.1' -> '5.3'), or None."""
    match = re.search(r"(\d+)\.(\d+)", text or "")
    if match is None:
        return None
    version = f"{match[1]}.{match[2]}"
    return version if version in VERSIONS else None


def version_from_columns(columns: dict[str, list[str]]) -> str | None:
    """Guess the version from table headers when ``cdm_source`` does not say (5.4 renamed visit columns)."""
    for table in ("visit_occurrence", "visit_detail"):
        header = set(columns.get(table, []))
        if {"admitted_from_concept_id", "discharged_to_concept_id"} & header:
            return "5.4"
        if {"admitting_source_concept_id", "discharge_to_concept_id"} & header:
            return "5.3"
    return None
