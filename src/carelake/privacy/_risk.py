"""Re-identification risk: k-anonymity and l-diversity of the patients, and a plan to reach a target k.

An attacker who knows someone's age, sex, ZIP code, race and ethnicity (the *quasi-identifiers*) can find
them in a table if few records share those values. Records sharing all quasi-identifier values form an
*equivalence class*; a table is k-anonymous when every class has at least k records (Sweeney 2002), and
l-diverse when every class holds at least l distinct values of a sensitive attribute, so that finding
someone's class does not reveal it (Machanavajjhala et al. 2007).

Quasi-identifiers are derived in SQL from the standard ``patients`` view, one row per Patient record:

- ``age_band``: completed years at ``as_of`` (at death, for those who died before it) in 5-year bands,
  ``90+`` for 90 and over (HIPAA Safe Harbor's collapse); partial birth dates count from their first day;
- ``sex``: ``gender``; ``zip3``: the first three characters of ``postal_code``; ``race``; ``ethnicity``.

Missing values become ``unknown`` (a class of its own, as an attacker would see it). The sensitive attribute
``condition`` is each patient's most frequent condition code in the ``conditions`` view (the SNOMED CT code,
else the first coding's code; ties go to the smallest code; refuted and entered-in-error conditions are
left out); patients without one get ``none``. A single code per patient keeps l meaningful: a patient's whole
set of codes is almost always unique, which would make every class look diverse.

The queries run once over a per-patient table written to a temporary folder (deleted at the end); nothing
is written to the lake. Both engines compute the same classes; the figures are derived from them in Python.

    >>> risk = reidentification_risk(lake, k=11)                     # doctest: +SKIP
    >>> risk.share_below_k, risk.min_l                                # doctest: +SKIP
    (0.93, 1)
    >>> plan = achieve_k(lake, k=5)                                   # doctest: +SKIP
    >>> plan.generalisation, plan.records_suppressed                  # doctest: +SKIP
    (Generalisation(age_band_years=10, geography='state'), 12)
"""

from __future__ import annotations

import difflib
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from carelake.errors import ConfigError
from carelake.privacy._cells import suppressed

if TYPE_CHECKING:
    import pyarrow as pa

    from carelake.engine import Engine
    from carelake.lake import Lake

QuasiIdentifier = Literal["age_band", "sex", "zip3", "race", "ethnicity"]
QUASI_IDENTIFIERS: tuple[QuasiIdentifier, ...] = ("age_band", "sex", "zip3", "race", "ethnicity")
Sensitive = Literal["condition"]
SENSITIVE: tuple[Sensitive, ...] = ("condition",)
Geography = Literal["zip3", "state", "none"]
GEOGRAPHIES: tuple[Geography, ...] = ("zip3", "state", "none")  # finest first
AGE_BAND_YEARS: tuple[int, ...] = (5, 10, 20)  # finest first
OLDEST_BAND = 90  # ages from 90 on are one band, whatever the band width
MAX_SUPPRESSION = 0.05  # share of records achieve_k may suppress before it generalises further

_QI_TABLE = "cl_risk_qi"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Generalisation:
    """How coarse the quasi-identifiers are: age band width in years, and what is kept of the address."""

    age_band_years: int = 5
    geography: Geography = "zip3"

    def __post_init__(self) -> None:
        if self.age_band_years not in AGE_BAND_YEARS:
            raise ConfigError(
                f"age bands of {self.age_band_years!r} years are not supported",
                hint=f"choose one of: {', '.join(map(str, AGE_BAND_YEARS))}",
            )
        if self.geography not in GEOGRAPHIES:
            raise ConfigError(f"unknown geography {self.geography!r}", hint=f"choose one of: {', '.join(GEOGRAPHIES)}")

    @property
    def level(self) -> int:
        """Generalisation steps taken from the finest (5-year bands, ZIP3): 0 to 4."""
        return AGE_BAND_YEARS.index(self.age_band_years) + GEOGRAPHIES.index(self.geography)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RiskReport:
    """k-anonymity and l-diversity figures of the patients under one generalisation of the quasi-identifiers.

    Histogram bins whose record count is a small cell have ``classes`` and ``records`` set to ``None``.
    """

    k: int
    l: int | None  # noqa: E741 (the l of l-diversity)
    quasi_identifiers: tuple[str, ...]
    sensitive: str | None
    as_of: str
    engine: str
    generalisation: Generalisation
    records: int
    classes: int
    min_class_size: int
    unique_records: int  # records alone in their class
    classes_below_k: int
    records_below_k: int
    share_below_k: float
    max_risk: float  # prosecutor model: 1 / smallest class size
    average_risk: float  # prosecutor model: mean of 1 / class size over records = classes / records
    min_l: int | None
    classes_below_l: int | None
    share_below_l: float | None
    distinct: dict[str, int]  # distinct values per quasi-identifier
    histogram: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["quasi_identifiers"] = list(self.quasi_identifiers)
        return out


@dataclass
class KAnonymityPlan:
    """How to make the patients k-anonymous: a generalisation, then the records still to suppress.

    Nothing is applied: the de-identification stage generalises with ``generalisation`` and drops
    ``suppressed_ids`` (Patient record ids). ``candidates`` records every generalisation tried, in order.
    ``to_dict`` leaves the ids out; it is the plan's summary.
    """

    k: int
    quasi_identifiers: tuple[str, ...]
    as_of: str
    engine: str
    max_suppression: float
    generalisation: Generalisation
    records: int
    records_suppressed: int
    achieved_k: int | None  # smallest class left; None when nothing is left
    achieved_l: int | None  # fewest distinct sensitive values in a class left
    within_budget: bool  # records_suppressed <= max_suppression * records
    candidates: list[dict[str, Any]]
    suppressed_ids: list[str] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("suppressed_ids")
        out["quasi_identifiers"] = list(self.quasi_identifiers)
        return out


def reidentification_risk(
    lake: Lake,
    *,
    quasi_identifiers: Sequence[str] = QUASI_IDENTIFIERS,
    sensitive: Sensitive | None = "condition",
    k: int = 11,
    l: int = 2,  # noqa: E741
    as_of: str | date | None = None,
    generalisation: Generalisation | None = None,
    engine: str | Engine = "duckdb",
) -> RiskReport:
    """Measure how identifiable the patients are: class sizes against ``k``, sensitive diversity against ``l``.

    ``as_of`` (YYYY-MM-DD) dates the ages; by default the lake's latest clinical time not in the future.
    ``sensitive=None`` skips l-diversity. ``generalisation`` measures the risk after coarsening.
    """
    qis = _check_options(quasi_identifiers, sensitive, k, l)
    gen = generalisation or Generalisation()
    with _QiTable(lake, engine, as_of, sensitive) as table:
        classes = table.classes(qis, gen)
        return _report(classes, qis, gen, k=k, l=l, sensitive=sensitive, as_of=table.as_of, engine=table.name)


def equivalence_classes(
    lake: Lake,
    *,
    quasi_identifiers: Sequence[str] = QUASI_IDENTIFIERS,
    sensitive: Sensitive | None = "condition",
    as_of: str | date | None = None,
    generalisation: Generalisation | None = None,
    engine: str | Engine = "duckdb",
) -> pa.Table:
    """The equivalence classes themselves, to see which values make records rare: one row per class with its
    quasi-identifier values, ``records`` and ``distinct_sensitive``, sorted by the quasi-identifiers.

    Small classes are listed as they are: this is for the data steward, not for publication.
    """
    import pyarrow as pa

    qis = _check_options(quasi_identifiers, sensitive, 1, 1)
    with _QiTable(lake, engine, as_of, sensitive) as table:
        rows = table.classes(qis, generalisation or Generalisation())
    rows.sort(key=lambda r: tuple(r[q] for q in qis))
    columns: dict[str, Any] = {q: pa.array([r[q] for r in rows], pa.string()) for q in qis}
    columns["records"] = pa.array([r["n"] for r in rows], pa.int64())
    columns["distinct_sensitive"] = pa.array([r["l"] if sensitive else None for r in rows], pa.int64())
    return pa.table(columns)


def achieve_k(
    lake: Lake,
    *,
    k: int,
    quasi_identifiers: Sequence[str] = QUASI_IDENTIFIERS,
    sensitive: Sensitive | None = "condition",
    max_suppression: float = MAX_SUPPRESSION,
    as_of: str | date | None = None,
    engine: str | Engine = "duckdb",
) -> KAnonymityPlan:
    """Plan k-anonymity: generalise as little as needed, then suppress the records still in classes below k.

    Generalisations are tried from the finest, one step at a time (age bands 5 → 10 → 20 years; ZIP3 →
    state → no geography), widening age before geography at the same step; the first one that leaves at
    most ``max_suppression`` of the records in classes below ``k`` is chosen. When none does, the one that
    suppresses fewest records is. Nothing is written: the plan says what the de-identification stage does.
    """
    qis = _check_options(quasi_identifiers, sensitive, k, 1)
    share = max_suppression
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise ConfigError(
            f"max_suppression must be a share between 0 and 1, not {max_suppression!r}",
            hint="e.g. 0.05 to suppress at most 5% of the records",
        )
    ages = AGE_BAND_YEARS if "age_band" in qis else AGE_BAND_YEARS[:1]
    places = GEOGRAPHIES if "zip3" in qis else GEOGRAPHIES[:1]
    ladder = sorted(
        (Generalisation(a, g) for a in ages for g in places),
        key=lambda gen: (gen.level, GEOGRAPHIES.index(gen.geography)),
    )
    with _QiTable(lake, engine, as_of, sensitive) as table:
        candidates: list[dict[str, Any]] = []
        best: tuple[int, Generalisation, list[dict[str, Any]]] | None = None
        for gen in ladder:
            classes = table.classes(qis, gen)
            records = sum(c["n"] for c in classes)
            dropped = sum(c["n"] for c in classes if c["n"] < k)
            candidates.append({**gen.to_dict(), "classes": len(classes), "records_suppressed": dropped})
            if best is None or dropped < best[0]:
                best = (dropped, gen, classes)
            if dropped <= max_suppression * records:
                best = (dropped, gen, classes)
                break
        assert best is not None  # the ladder always holds the finest generalisation
        dropped, gen, classes = best
        records = sum(c["n"] for c in classes)
        kept = [c for c in classes if c["n"] >= k]
        ids = table.ids_below_k(qis, gen, k) if dropped else []
        return KAnonymityPlan(
            k=k,
            quasi_identifiers=qis,
            as_of=table.as_of,
            engine=table.name,
            max_suppression=float(max_suppression),
            generalisation=gen,
            records=records,
            records_suppressed=dropped,
            achieved_k=min((c["n"] for c in kept), default=None),
            achieved_l=min((c["l"] for c in kept), default=None) if sensitive else None,
            within_budget=dropped <= max_suppression * records,
            candidates=candidates,
            suppressed_ids=ids,
        )


def _check_options(quasi_identifiers: Sequence[str], sensitive: str | None, k: int, l: int) -> tuple[str, ...]:  # noqa: E741
    """Validate the options once, before any query; return the quasi-identifiers as a tuple."""
    qis = (quasi_identifiers,) if isinstance(quasi_identifiers, str) else tuple(quasi_identifiers)
    allowed = ", ".join(QUASI_IDENTIFIERS)
    if not qis:
        raise ConfigError("no quasi-identifiers given", hint=f"choose one or more of: {allowed}")
    for name in qis:
        if name not in QUASI_IDENTIFIERS:
            close = difflib.get_close_matches(str(name), QUASI_IDENTIFIERS, n=1)
            raise ConfigError(
                f"unknown quasi-identifier {name!r}; allowed: {allowed}",
                hint=f"did you mean {close[0]!r}?" if close else "use the names above",
            )
    if len(set(qis)) != len(qis):
        raise ConfigError(f"quasi-identifiers repeat a name: {', '.join(qis)}", hint="name each one once")
    if sensitive is not None and sensitive not in SENSITIVE:
        raise ConfigError(
            f"unknown sensitive attribute {sensitive!r}; allowed: {', '.join(SENSITIVE)}",
            hint="or pass sensitive=None to skip l-diversity",
        )
    for name, value in (("k", k), ("l", l)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}", hint=f"e.g. {name}=11")
    return qis


class _QiTable:
    """The per-patient quasi-identifiers and sensitive value, computed once and kept in a temporary folder."""

    def __init__(self, lake: Lake, engine: str | Engine, as_of: str | date | None, sensitive: str | None) -> None:
        self.lake, self.engine, self.sensitive = lake, engine, sensitive
        self.as_of = _check_as_of(as_of)

    def __enter__(self) -> _QiTable:
        from carelake.fhir import compile_view, standard_views
        from carelake.fhir._materialize import fresh_views

        if "fhir_resources" not in self.lake.catalog.tables:
            raise ConfigError("the lake has no FHIR data to assess", hint="run `carelake ingest fhir PATH` first")
        self._tmp = tempfile.TemporaryDirectory(prefix="carelake-risk-")
        try:
            self.eng = self.lake.connect(self.engine)
            self.name = self.eng.name
            views = [v for v in standard_views() if v["name"] in ("patients", "conditions")]
            fresh = fresh_views(self.lake, views)
            for view in views:  # stale or missing silver tables: read the views as of now instead
                if view["name"] not in fresh:
                    self.eng.create_view(view["name"], compile_view(view))
            if self.as_of is None:
                self.as_of = _latest_date(self.eng)
            files = self.eng.write_parquet(_qi_sql(self.as_of, self.sensitive), Path(self._tmp.name) / "qi")
            self.eng.register_parquet(_QI_TABLE, files)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if isinstance(self.engine, str) and hasattr(self, "eng"):
            self.eng.close()
        self._tmp.cleanup()

    def classes(self, qis: tuple[str, ...], gen: Generalisation) -> list[dict[str, Any]]:
        """One row per equivalence class: its quasi-identifier values, size ``n`` and distinct sensitive ``l``."""
        names = ", ".join(qis)
        sql = (
            f"SELECT {names}, count(*) AS n, count(DISTINCT sensitive) AS l "
            f"FROM ({_generalised(qis, gen)}) AS g GROUP BY {names}"
        )
        return self.eng.query(sql).to_pylist()

    def ids_below_k(self, qis: tuple[str, ...], gen: Generalisation, k: int) -> list[str]:
        """Patient record ids in classes smaller than ``k``, sorted."""
        names = ", ".join(qis)
        sql = (
            f"SELECT id FROM (SELECT id, count(*) OVER (PARTITION BY {names}) AS n "
            f"FROM ({_generalised(qis, gen)}) AS g) AS c WHERE n < {int(k)} ORDER BY id"
        )
        return self.eng.query(sql).column("id").to_pylist()


def _check_as_of(as_of: str | date | None) -> str | None:
    if as_of is None:
        return None
    text = as_of.isoformat()[:10] if isinstance(as_of, date) else str(as_of)
    if not _DATE.fullmatch(text):
        raise ConfigError(f"as-of {as_of!r} is not a date", hint="give it as YYYY-MM-DD")
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"as-of {as_of!r} is not a calendar date", hint="give it as YYYY-MM-DD") from exc
    return text


def _latest_date(eng: Engine) -> str:
    """The lake's latest clinical date that is not in the future (future-dated records are faults); else today."""
    today = datetime.now(UTC).date().isoformat()
    rows = eng.query(
        f"SELECT max(CAST(clinical_time AS DATE)) AS latest FROM resources "
        f"WHERE CAST(clinical_time AS DATE) <= DATE '{today}'"
    ).to_pylist()
    latest = rows[0]["latest"] if rows else None
    return latest.isoformat() if latest is not None else today


def _qi_sql(as_of: str, sensitive: str | None) -> str:
    """One row per Patient record: id, age in completed years, sex, zip3, state, race, ethnicity, sensitive."""
    death = "substr(CAST(deceased_date AS VARCHAR), 1, 10)"
    if sensitive == "condition":
        code = "coalesce(snomed_code, code)"
        values = f"""(SELECT patient_id, code FROM (
              SELECT patient_id, code, row_number() OVER (PARTITION BY patient_id ORDER BY n DESC, code) AS rn
              FROM (SELECT patient_id, {code} AS code, count(*) AS n FROM conditions
                    WHERE patient_id IS NOT NULL AND {code} IS NOT NULL
                      AND coalesce(verification_status, '') NOT IN ('entered-in-error', 'refuted')
                    GROUP BY patient_id, {code}) AS c) AS r
            WHERE rn = 1)"""
        join, value = f"LEFT JOIN {values} AS s ON s.patient_id = a.id", "coalesce(s.code, 'none')"
    else:
        join, value = "", "CAST(NULL AS VARCHAR)"
    return f"""
        WITH p AS (
          SELECT id, CAST(birth_date AS VARCHAR) AS birth,
                 CASE WHEN length({death}) = 10 AND {death} < '{as_of}' THEN {death} ELSE '{as_of}' END AS ref,
                 gender, trim(postal_code) AS postal_code, state, race, ethnicity
          FROM patients
        ), b AS (
          SELECT *,
                 CASE WHEN length(birth) >= 4 THEN TRY_CAST(substr(birth, 1, 4) AS INTEGER) END AS birth_year,
                 CASE WHEN length(birth) >= 10 THEN substr(birth, 6, 5)
                      WHEN length(birth) >= 7 THEN concat(substr(birth, 6, 2), '-01') ELSE '01-01' END AS birth_md
          FROM p
        ), a AS (
          SELECT *, CAST(substr(ref, 1, 4) AS INTEGER) - birth_year
                    - CASE WHEN substr(ref, 6, 5) < birth_md THEN 1 ELSE 0 END AS age
          FROM b
        )
        SELECT a.id AS id,
               CASE WHEN a.age >= 0 THEN a.age END AS age,
               coalesce(a.gender, 'unknown') AS sex,
               CASE WHEN length(a.postal_code) >= 3 THEN substr(a.postal_code, 1, 3) ELSE 'unknown' END AS zip3,
               coalesce(a.state, 'unknown') AS state,
               coalesce(a.race, 'unknown') AS race,
               coalesce(a.ethnicity, 'unknown') AS ethnicity,
               {value} AS sensitive
        FROM a {join}"""


def _generalised(qis: tuple[str, ...], gen: Generalisation) -> str:
    """The QI table with each quasi-identifier at the generalisation's coarseness."""
    width = gen.age_band_years
    low = f"(age - age % {width})"
    high = f"least({low} + {width - 1}, {OLDEST_BAND - 1})"
    expressions = {
        "age_band": (
            f"CASE WHEN age IS NULL THEN 'unknown' WHEN age >= {OLDEST_BAND} THEN '{OLDEST_BAND}+' "
            f"ELSE concat(CAST({low} AS VARCHAR), '-', CAST({high} AS VARCHAR)) END"
        ),
        "sex": "sex",
        "zip3": {"zip3": "zip3", "state": "state", "none": "'*'"}[gen.geography],
        "race": "race",
        "ethnicity": "ethnicity",
    }
    columns = ", ".join(f"{expressions[q]} AS {q}" for q in qis)
    return f"SELECT id, {columns}, sensitive FROM {_QI_TABLE}"


def _bins(k: int, largest: int) -> list[tuple[int, int | None]]:
    """Class-size bins: 1, 2, 3–4, 5–(k-1), then k, 2k, 5k, 10k, … so the bins below k add up to 'below k'."""
    starts = {1, 2, 3, 5}
    scale = k
    while scale <= max(largest, k):
        starts.update({scale, 2 * scale, 5 * scale})
        scale *= 10
    ordered = sorted(s for s in starts if s <= max(largest, k))  # the bins up to k show, even when empty
    return [(s, ordered[i + 1] - 1 if i + 1 < len(ordered) else None) for i, s in enumerate(ordered)]


def _histogram(sizes: list[int], k: int) -> list[dict[str, Any]]:
    out = []
    for low, high in _bins(k, max(sizes, default=1)):
        inside = [n for n in sizes if n >= low and (high is None or n <= high)]
        records = suppressed(sum(inside))
        label = f"{low}+" if high is None else (str(low) if high == low else f"{low}–{high}")
        out.append(
            {
                "label": label,
                "from": low,
                "to": high,
                "below_k": high is not None and high < k,
                "classes": None if records is None else len(inside),
                "records": records,
            }
        )
    return out


def _report(
    classes: list[dict[str, Any]],
    qis: tuple[str, ...],
    gen: Generalisation,
    *,
    k: int,
    l: int,  # noqa: E741
    sensitive: str | None,
    as_of: str,
    engine: str,
) -> RiskReport:
    sizes = [c["n"] for c in classes]
    records = sum(sizes)
    below_k = [n for n in sizes if n < k]
    below_l = [c["n"] for c in classes if c["l"] < l] if sensitive else None
    return RiskReport(
        k=k,
        l=l if sensitive else None,
        quasi_identifiers=qis,
        sensitive=sensitive,
        as_of=as_of,
        engine=engine,
        generalisation=gen,
        records=records,
        classes=len(classes),
        min_class_size=min(sizes, default=0),
        unique_records=sum(1 for n in sizes if n == 1),
        classes_below_k=len(below_k),
        records_below_k=sum(below_k),
        share_below_k=sum(below_k) / records if records else 0.0,
        max_risk=1 / min(sizes) if sizes else 0.0,
        average_risk=len(classes) / records if records else 0.0,
        min_l=min((c["l"] for c in classes), default=None) if sensitive else None,
        classes_below_l=len(below_l) if below_l is not None else None,
        share_below_l=(sum(below_l) / records if records else 0.0) if below_l is not None else None,
        distinct={q: len({c[q] for c in classes}) for q in qis},
        histogram=_histogram(sizes, k),
    )
