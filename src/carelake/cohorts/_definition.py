"""Cohort definitions: YAML a person writes, checked into typed objects with errors that name the field.

The schema (docs/cohorts.md) follows OHDSI's cohort logic in a smaller form: value sets of codes, an entry
event that sets each index time, criteria applied in order (each one a row of the attrition table), and an
outcome looked for in a window after the index. Windows are whole days relative to the index time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from carelake.errors import ConfigError, InputError
from carelake.fhir._events import SYSTEMS

Domain = Literal[
    "encounter", "condition", "observation", "procedure", "medication", "immunization", "screening", "family_history"
]
DOMAINS: tuple[str, ...] = ("encounter", "condition", "observation", "procedure", "medication", "immunization")

# Code systems whose hierarchy the lake holds: ICD-10-CM's is in the codes themselves (E11 > E11.9).
HIERARCHIES = {SYSTEMS["icd10cm"]}
TASKS = Path(__file__).with_name("tasks")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Codes(_Strict):
    """Codes of one system; ``descendants`` adds every code below them where the lake has the hierarchy."""

    system: str
    codes: list[str] = Field(min_length=1)
    descendants: bool = False

    @field_validator("system")
    @classmethod
    def _known_system(cls, value: str) -> str:
        if value in SYSTEMS:
            return SYSTEMS[value]
        if not re.match(r"^(https?|urn):", value):
            raise ValueError(f"unknown code system {value!r}; use one of {', '.join(SYSTEMS)} or a system URI")
        return value

    @model_validator(mode="after")
    def _hierarchy_exists(self) -> Codes:
        if self.descendants and self.system not in HIERARCHIES:
            raise ValueError(
                f"descendants: the lake holds no hierarchy for {self.system} (only ICD-10-CM's, by code prefix); "
                "list the codes, or use icd10cm"
            )
        return self


Window = tuple[int | None, int | None]


class EventFilter(_Strict):
    """Events of a domain whose code is in a value set, optionally within a window and a value range."""

    domain: Domain
    value_set: str | None = None
    window: Window = (None, 0)  # days relative to the index; None is unbounded
    min_value: float | None = None
    max_value: float | None = None
    disposition: list[str] | None = None  # encounters: discharge disposition codes kept
    not_disposition: list[str] | None = None
    priority: list[str] | None = None  # encounters: priority codes kept (EL elective, EM emergency, …)
    not_priority: list[str] | None = None
    min_count: int = Field(default=1, ge=1)

    @field_validator("window")
    @classmethod
    def _ordered(cls, value: Window) -> Window:
        start, end = value
        if start is not None and end is not None and start > end:
            raise ValueError(f"window starts after it ends: [{start}, {end}]")
        return value


class Entry(_Strict):
    """The event that puts a patient in the cohort; each qualifying event is an index (or only the first)."""

    domain: Domain
    value_set: str | None = None
    index: Literal["start", "end"] = "start"
    first_only: bool = False
    disposition: list[str] | None = None
    not_disposition: list[str] | None = None
    priority: list[str] | None = None
    not_priority: list[str] | None = None


class IndexFilter(_Strict):
    """Conditions on the index event itself (an encounter's discharge disposition or priority)."""

    disposition: list[str] | None = None
    not_disposition: list[str] | None = None
    priority: list[str] | None = None
    not_priority: list[str] | None = None


_KINDS = ("age", "history_days", "index_event", "require", "exclude")


class Criterion(_Strict):
    """One step of the attrition table: exactly one of age, history_days, index_event, require, exclude."""

    name: str
    age: dict[Literal["min", "max"], int] | None = None
    history_days: int | None = Field(default=None, ge=0)
    index_event: IndexFilter | None = None
    require: EventFilter | None = None
    exclude: EventFilter | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Criterion:
        kinds = [k for k in _KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a criterion has exactly one of {', '.join(_KINDS)} (found {kinds or 'none'})")
        return self


class Outcome(_Strict):
    """What is predicted: any of these events within the window (time at risk) after the index."""

    name: str
    any: list[EventFilter] = Field(min_length=1)
    window: Window = (1, 30)


class CohortDefinition(_Strict):
    """A whole cohort: value sets, entry, criteria in order, outcome."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,40}$")
    description: str = ""
    value_sets: dict[str, list[Codes]] = Field(default_factory=dict)
    entry: Entry
    criteria: list[Criterion] = Field(default_factory=list)
    outcome: Outcome | None = None

    @model_validator(mode="after")
    def _value_sets_exist(self) -> CohortDefinition:
        used = [("entry", self.entry.value_set)]
        for i, c in enumerate(self.criteria):
            for f in (c.require, c.exclude):
                if f is not None:
                    used.append((f"criteria[{i}] ({c.name})", f.value_set))
        if self.outcome:
            used += [(f"outcome.any[{i}]", f.value_set) for i, f in enumerate(self.outcome.any)]
        for where, name in used:
            if name is not None and name not in self.value_sets:
                known = ", ".join(self.value_sets) or "none defined"
                raise ValueError(f"{where}: value set {name!r} is not defined (value_sets: {known})")
        return self

    @property
    def table(self) -> str:
        """The gold table the cohort is written to."""
        return "cohort_" + self.name.replace("-", "_")


def load_definition(source: str | Path | dict[str, Any]) -> CohortDefinition:
    """A definition from a YAML file, a shipped task name (``readmission-30d``) or a dict, validated."""
    import yaml

    where = "<dict>"
    if isinstance(source, dict):
        data: Any = source
    else:
        path = Path(source)
        if not path.exists() and (TASKS / f"{source}.yaml").exists():
            path = TASKS / f"{source}.yaml"
        if not path.exists():
            shipped = ", ".join(sorted(p.stem for p in TASKS.glob("*.yaml")))
            raise InputError(f"no cohort definition at {path}", hint=f"pass a YAML file or a shipped task: {shipped}")
        where = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise InputError(f"{path}{line}: not valid YAML", hint="fix the YAML syntax at that line") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: a cohort definition is a YAML mapping", hint="see docs/cohorts.md")
    try:
        return CohortDefinition.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: {field}: {message}", hint="see docs/cohorts.md for the schema") from None


def shipped_tasks() -> list[str]:
    """The task definitions carelake ships (readmission-30d, diabetes-onset)."""
    return sorted(p.stem for p in TASKS.glob("*.yaml"))
