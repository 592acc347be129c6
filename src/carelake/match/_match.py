"""Probabilistic patient matching: Splink's Fellegi-Sunter model, trained by EM, on DuckDB or Spark.

The fields come from one ViewDefinition, the model from ``_model``; Splink generates the SQL and runs it on
the engine's own connection (DuckDB) or session (Spark). Pairs and person keys are committed in one
transaction, replacing the previous run's tables.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from carelake.errors import ConfigError, EngineError, InputError
from carelake.fhir import compile_view
from carelake.match import _model
from carelake.match._fields import FIELDS_VIEW, keys_sql
from carelake.progress import NoProgress, Progress, StageTimer

if TYPE_CHECKING:
    from carelake.engine import Engine
    from carelake.lake import Lake

log = logging.getLogger("carelake.match")

STAGE = "match-patients"
PAIRS_TABLE = "patient_match_pairs"
LINKS_TABLE = "patient_links"
FIELDS_TABLE = "patient_match_fields"  # the view's rows, in this run's staging area only
INPUT_VIEW = "patient_match_input"  # the rows with match keys: what Splink reads
SEED = 7  # u sampling is a hash of the patient id and this seed: same input, same sample
U_MAX_PAIRS = 2e6  # random pairs for u; below ~2,000 records that is every pair, so engines agree exactly
U_ONE_CHUNK_UP_TO = 20_000  # records
EM_MAX_PAIRS = 2e6  # pairs per EM pass on large inputs (a deterministic hash sample of records)
EM_SAMPLE_ABOVE = 100_000  # records; smaller inputs train EM on every blocked pair
HISTOGRAM_BINS = 20
M_U_FLOOR = 1e-300  # Splink's clamp of m and u before log2(m/u)
STEPS = ("fields", "prior", "u", "em-1", "em-2", "predict", "cluster", "write")


@dataclass
class MatchSummary:
    """What one matching run found, and the trained model that decided it (no patient data)."""

    run_id: str
    engine: str
    threshold: float
    records: int
    candidate_pairs: int
    matched_pairs: int
    clusters: int
    persons_with_multiple_records: int
    records_in_multi_record_persons: int
    largest_cluster: int
    probability_two_random_records_match: float
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)
    blocking_rules: list[str] = field(default_factory=list)
    histogram: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "records_per_s": round(self.records_per_s, 1)}


def match_patients(
    lake: Lake | str | os.PathLike[str],
    *,
    threshold: float = 0.9,
    engine: str = "duckdb",
    progress: Progress | None = None,
) -> MatchSummary:
    """Link Patient records that describe the same person; write pairs and person keys to the lake.

    Every current Patient is compared on name, birth date, sex, address, phone, e-mail and identifiers
    within the blocks of ``_model.prediction_blocking_rules``; m and u probabilities are estimated without
    labels (u by sampling random pairs, m by expectation maximisation). Pairs at or above ``threshold``
    (a match probability) go to silver ``patient_match_pairs``; their connected components give every
    Patient a ``person_key`` (the smallest patient id of its cluster) in silver ``patient_links``.
    Both tables are replaced in one commit, so re-running never duplicates rows.

    Examples:
        >>> import carelake as cl
        >>> from carelake.match import match_patients
        >>> summary = match_patients(cl.open_lake("my-lake"), threshold=0.95)  # doctest: +SKIP
        >>> summary.persons_with_multiple_records                              # doctest: +SKIP
        78
    """
    from carelake.lake import Lake, open_lake

    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise ConfigError(
            f"threshold must be a match probability between 0 and 1 (exclusive), got {threshold!r}",
            hint="use e.g. --threshold 0.9",
        )
    if engine not in ("duckdb", "spark"):
        raise ConfigError(f"unknown engine {engine!r}", hint="choose one of: duckdb, spark")
    lake = lake if isinstance(lake, Lake) else open_lake(lake, create=False)
    if "resources" not in lake.catalog.views:
        raise InputError(
            f"the lake at {lake.root} holds no FHIR resources", hint="ingest first: carelake ingest fhir PATH"
        )
    progress = progress or NoProgress()
    started = time.perf_counter()
    timer = StageTimer()
    parameters = {"threshold": threshold, "engine": engine, "seed": SEED}
    progress.start("matching patients", len(STEPS))
    try:
        with lake.transaction(STAGE, parameters=parameters) as tx, _quiet_splink():
            eng = lake.connect(engine)
            run = _Run(eng, threshold=threshold, progress=progress, timer=timer)
            try:
                with timer("fields"):
                    view_files = eng.write_parquet(compile_view(FIELDS_VIEW), tx.staging / "fields-view")
                    eng.register_parquet(FIELDS_TABLE, view_files)
                    files = eng.write_parquet(keys_sql(FIELDS_TABLE), tx.staging / "fields")
                    eng.register_parquet(INPUT_VIEW, files)
                    records = _scalar(eng, f"SELECT count(*) FROM {INPUT_VIEW}")
                progress.advance(1)
                with _translate_errors(engine):
                    pairs_sql, links_sql, found = run.link(records)
                with timer("write"):
                    pair_files = eng.write_parquet(pairs_sql, tx.staging / PAIRS_TABLE)
                    link_files = eng.write_parquet(links_sql, tx.staging / LINKS_TABLE)
                    tx.replace(PAIRS_TABLE, layer="silver", files=pair_files, rows=found["matched_pairs"])
                    tx.replace(LINKS_TABLE, layer="silver", files=link_files, rows=records)
                progress.advance(1)
            finally:
                run.release()
                eng.close()
            summary = MatchSummary(
                run_id=tx.run_id,
                engine=engine,
                threshold=threshold,
                records=records,
                **found,
                seconds=round(time.perf_counter() - started, 3),
                stage_seconds=timer.seconds,
            )
            tx.summary = {k: v for k, v in summary.to_dict().items() if k not in ("comparisons", "histogram")}
    finally:
        progress.stop()
    log.info(
        "matched %d Patient records: %d pairs at >= %.3f, %d persons with more than one record",
        summary.records,
        summary.matched_pairs,
        threshold,
        summary.persons_with_multiple_records,
    )
    return summary


class _Run:
    """One training and scoring pass of Splink over the registered input."""

    def __init__(self, eng: Engine, *, threshold: float, progress: Progress, timer: StageTimer) -> None:
        self.eng = eng
        self.records = 0
        self.threshold = threshold
        self.progress = progress
        self.timer = timer
        self.api: Any = None
        self.spark_before = _spark_state(eng)

    def link(self, records: int) -> tuple[str, str, dict[str, Any]]:
        """Train, score and cluster ``records`` inputs; return the SQL of both output tables and the figures."""
        self.records = records
        if self.records < 2:
            self.progress.advance(len(STEPS) - 2)
            return self._no_pairs()
        from splink import Linker

        self.api = _splink_api(self.eng)
        data = self.api.register(INPUT_VIEW)
        with self.timer("prior"):
            prior = self._prior(Linker(data, _model.settings(), log_level=None))
        self.progress.advance(1)
        linker = Linker(data, _model.settings(prior), log_level=None)
        with self.timer("u"):
            # Every chunk is counted (no early stop), so the estimate does not depend on chunk order;
            # chunking only bounds memory, and a small sample needs none.
            linker.training.estimate_u_using_random_sampling(
                max_pairs=U_MAX_PAIRS,
                seed=SEED,
                min_count_per_level=None,
                num_chunks=1 if self.records <= U_ONE_CHUNK_UP_TO else 10,
            )
        self.progress.advance(1)
        training = []
        for i, rule in enumerate(_model.training_blocking_rules(), start=1):
            with self.timer(f"em-{i}"):
                linker, trained = self._em(linker, data, rule)
                training.append(trained)
            self.progress.advance(1)
        with self.timer("predict"):
            predictions = linker.inference.predict()
            scored = predictions.physical_name
            candidates = _scalar(self.eng, f"SELECT count(*) FROM {scored}")
            histogram = self._histogram(scored)
        self.progress.advance(1)
        with self.timer("cluster"):
            clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
                predictions, threshold_match_probability=self.threshold
            )
            links_sql = _links_sql(clusters.physical_name)
            sizes = self.eng.query(
                f"SELECT count(*) AS n FROM ({links_sql}) AS l GROUP BY person_key ORDER BY n DESC"
            ).column("n")
        self.progress.advance(1)
        model = linker.misc.save_model_to_json()
        comparisons = _comparisons(linker)
        pairs_sql = _pairs_sql(scored, self.threshold, comparisons)
        counts = [n.as_py() for n in sizes]
        found = {
            "candidate_pairs": candidates,
            "matched_pairs": _scalar(self.eng, f"SELECT count(*) FROM ({pairs_sql}) AS p"),
            "clusters": len(counts),
            "persons_with_multiple_records": sum(n > 1 for n in counts),
            "records_in_multi_record_persons": sum(n for n in counts if n > 1),
            "largest_cluster": max(counts, default=0),
            "probability_two_random_records_match": model["probability_two_random_records_match"],
            "comparisons": comparisons,
            "training": training,
            "blocking_rules": [_rule_text(r) for r in _model.prediction_blocking_rules()],
            "histogram": histogram,
        }
        return pairs_sql, links_sql, found

    def _prior(self, linker: Any) -> float:
        """How likely two random records are the same person, from near-certain rules; never exactly 0."""
        pairs = self.records * (self.records - 1) / 2
        floor = 1 / (_model.PRIOR_RECALL * pairs)  # as if the rules had found one pair
        try:
            linker.training.estimate_probability_two_random_records_match(
                _model.prior_rules(), recall=_model.PRIOR_RECALL
            )
        except ValueError:
            # The rules found more pairs than the assumed recall allows: a tiny input that is mostly one person.
            return 0.5
        estimated = float(linker.misc.save_model_to_json()["probability_two_random_records_match"])
        return min(max(estimated, floor), 0.5)

    def _em(self, linker: Any, data: Any, rule: Any) -> tuple[Any, dict[str, Any]]:
        """One EM pass; the linker to go on with (a failed pass leaves the model as it was) and what happened."""
        from splink import Linker
        from splink.internals.exceptions import EMTrainingException

        sql = _rule_text(rule)
        max_pairs = EM_MAX_PAIRS if self.records > EM_SAMPLE_ABOVE else None
        before = linker.misc.save_model_to_json()
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(rule, max_pairs=max_pairs)
        except EMTrainingException:
            # No pair shares the block (tiny or very clean inputs): the comparisons keep their other estimates.
            return linker, {"blocking_rule": sql, "trained": False, "reason": "no pairs in this block"}
        except ValueError as exc:
            # EM can collapse onto a handful of pairs and drive a level's m probability towards 0; Splink (5.0)
            # refuses such a value mid-session, after it has already changed the model. The pass is discarded
            # and the model restored, so the comparisons keep the estimates they had.
            if "below the minimum allowed value" not in str(exc):
                raise
            reason = "EM collapsed (a level's m probability fell below 1e-300); estimates kept from before"
            return Linker(data, before, log_level=None), {"blocking_rule": sql, "trained": False, "reason": reason}
        return linker, {"blocking_rule": sql, "trained": True, "sampled": max_pairs is not None}

    def _histogram(self, scored: str) -> list[dict[str, Any]]:
        rows = self.eng.query(
            f"SELECT least(CAST(floor(match_probability * {HISTOGRAM_BINS}) AS INTEGER), {HISTOGRAM_BINS - 1}) AS bin,"
            f" count(*) AS pairs FROM {scored} GROUP BY 1 ORDER BY 1"
        ).to_pylist()
        counts = {r["bin"]: r["pairs"] for r in rows}
        return [
            {"from": b / HISTOGRAM_BINS, "to": (b + 1) / HISTOGRAM_BINS, "pairs": counts.get(b, 0)}
            for b in range(HISTOGRAM_BINS)
        ]

    def _no_pairs(self) -> tuple[str, str, dict[str, Any]]:
        pairs_sql = _pairs_sql(None, self.threshold, [])
        links_sql = f"SELECT patient_id, patient_id AS person_key FROM {INPUT_VIEW} ORDER BY patient_id"
        found = {
            "candidate_pairs": 0,
            "matched_pairs": 0,
            "clusters": self.records,
            "persons_with_multiple_records": 0,
            "records_in_multi_record_persons": 0,
            "largest_cluster": min(self.records, 1),
            "probability_two_random_records_match": 0.0,
        }
        return pairs_sql, links_sql, found

    def release(self) -> None:
        """Drop what Splink made in the engine: a shared Spark session outlives the job (DuckDB's closes)."""
        if self.api is not None:
            self.api.delete_tables_created_by_splink_from_db()
        if self.eng.name != "spark":
            return
        views, cached = _spark_state(self.eng)
        spark = self.eng.spark  # type: ignore[attr-defined]
        for name in views - self.spark_before[0]:
            spark.catalog.dropTempView(name)  # also uncaches the view's data
        # Splink replaces some cached views by name, which leaves the replaced data cached: free it too.
        rdds = spark.sparkContext._jsc.getPersistentRDDs()
        for rdd_id in cached - self.spark_before[1]:
            if rdds.containsKey(rdd_id):
                rdds.get(rdd_id).unpersist(False)


def _splink_api(eng: Engine) -> Any:
    """Splink's database API on the engine's own connection or session, so both read the same views."""
    if eng.name == "duckdb":
        from splink import DuckDBAPI

        return DuckDBAPI(connection=eng.connection)  # type: ignore[attr-defined]
    if eng.name == "spark":
        from splink.backends.spark import SparkAPI

        # Only functions Spark has natively are used (see _model), so Splink's optional jar is not needed.
        return SparkAPI(
            spark_session=eng.spark,  # type: ignore[attr-defined]
            break_lineage_method="persist",
            register_udfs_automatically=False,
        )
    raise EngineError(f"patient matching does not run on the {eng.name!r} engine", hint="use duckdb or spark")


def _spark_state(eng: Engine) -> tuple[set[str], set[int]]:
    """Splink's temporary views and the cached RDDs in a Spark session; nothing to track on DuckDB."""
    if eng.name != "spark":
        return set(), set()
    spark = eng.spark  # type: ignore[attr-defined]
    views = {t.name for t in spark.catalog.listTables() if t.isTemporary and t.name.startswith("__splink__")}
    return views, {int(i) for i in spark.sparkContext._jsc.getPersistentRDDs().keySet()}


def _comparisons(linker: Any) -> list[dict[str, Any]]:
    """The trained comparisons as plain data: each level's label, m, u and the match weight Splink scores with.

    Read from the linker's settings rather than the saved model, which leaves out the m or u of a level
    that was never observed in training although scoring still uses a value for it.
    """
    result = []
    for comparison in linker._settings_obj.comparisons:
        levels = []
        for level in comparison.comparison_levels:
            null = bool(level.is_null_level)
            m, u = (None, None) if null else (level.m_probability, level.u_probability)
            if null:
                weight = 0.0
            elif m is None or u is None:
                weight = None
            else:  # Splink's own formula (ComparisonLevel._match_weight), clamped the same way
                weight = math.log2(max(m, M_U_FLOOR) / max(u, M_U_FLOOR))
            levels.append(
                {
                    "gamma": int(level.comparison_vector_value),
                    "label": level.label_for_charts,
                    "null": null,
                    "m_probability": m,
                    "u_probability": u,
                    "match_weight": weight,
                    "trained": True if null else bool(level._m_is_trained and level._u_is_trained),
                }
            )
        name = comparison.output_column_name
        result.append({"name": name, "description": _model.DESCRIPTIONS.get(name, ""), "levels": levels})
    return result


def _pairs_sql(scored: str | None, threshold: float, comparisons: list[dict[str, Any]]) -> str:
    """Pairs at or above the threshold, with the level each comparison reached and which ones agreed."""
    names = [c["name"] for c in comparisons] or list(_model.COMPARISON_NAMES)
    if scored is None:
        level_columns = ", ".join(f"CAST(NULL AS VARCHAR) AS {n}_level" for n in names)
        return (
            "SELECT CAST(NULL AS VARCHAR) AS patient_id_l, CAST(NULL AS VARCHAR) AS patient_id_r,"
            " CAST(NULL AS DOUBLE) AS match_probability, CAST(NULL AS DOUBLE) AS match_weight,"
            f" CAST(NULL AS VARCHAR) AS agreed, {level_columns}, CAST(NULL AS VARCHAR) AS blocking_rule"
            " WHERE 1 = 0"
        )
    labels, agreed = [], []
    for c in comparisons:
        cases = " ".join(f"WHEN {lv['gamma']} THEN {_literal(lv['label'])}" for lv in c["levels"])
        labels.append(f"CASE gamma_{c['name']} {cases} END AS {c['name']}_level")
        positive = [str(lv["gamma"]) for lv in c["levels"] if (lv["match_weight"] or 0.0) > 0]
        if positive:
            agreed.append(f"CASE WHEN gamma_{c['name']} IN ({', '.join(positive)}) THEN {_literal(c['name'])} END")
    rules = [_rule_text(r) for r in _model.prediction_blocking_rules()]
    rule_case = " ".join(f"WHEN '{i}' THEN {_literal(sql)}" for i, sql in enumerate(rules))
    return f"""
        SELECT patient_id_l, patient_id_r, match_probability, match_weight,
               concat_ws(',', {", ".join(agreed) or "NULL"}) AS agreed,
               {", ".join(labels)},
               CASE CAST(match_key AS VARCHAR) {rule_case} END AS blocking_rule
        FROM {scored}
        WHERE match_probability >= {threshold!r}
        ORDER BY patient_id_l, patient_id_r"""


def _rule_text(rule: Any) -> str:
    """A blocking rule as people read it: ``l.ssn = r.ssn``."""
    return str(rule.get_blocking_rule("duckdb").blocking_rule_sql).replace('"', "")


def _links_sql(clusters: str) -> str:
    """One row per Patient: its person key is the smallest patient id in its cluster."""
    return f"""
        SELECT patient_id, min(patient_id) OVER (PARTITION BY cluster_id) AS person_key
        FROM {clusters}
        ORDER BY person_key, patient_id"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _scalar(eng: Engine, sql: str) -> int:
    return int(eng.query(sql).column(0)[0].as_py())


@contextmanager
def _translate_errors(engine: str) -> Iterator[None]:
    """Splink's and the engine's exceptions become an EngineError that names the step, not the data.

    Their text is left out of the message: an engine error can quote a field value (a name, a date).
    """
    import duckdb
    from splink.internals.exceptions import SplinkException

    errors: tuple[type[BaseException], ...] = (SplinkException, duckdb.Error)
    if engine == "spark":
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        errors = (*errors, PySparkException, Py4JError)
    try:
        yield
    except errors as exc:
        raise EngineError(
            f"patient matching failed on {engine} inside Splink ({type(exc).__name__})",
            hint="rerun with --verbose for the engine's message (it may quote record values)",
        ) from exc


@contextmanager
def _quiet_splink() -> Iterator[None]:
    """Splink warns about untrained levels on its own logger; carelake reports them in the summary instead.

    Only a logger nobody configured is quietened, and it is restored afterwards.
    """
    splink_log = logging.getLogger("splink")
    if splink_log.level != logging.NOTSET or splink_log.handlers:
        yield
        return
    splink_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        splink_log.setLevel(logging.NOTSET)
