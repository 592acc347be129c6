"""The MEDS export: valid against the ``meds`` schemas, sharded by subject, counts reconciled, reproducible."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import meds
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import carelake as cl
from carelake.errors import ConfigError, EngineError, LakeError
from carelake.fhir import materialize_views, standard_views
from carelake.fhir._events import VOCABULARIES, VOCABULARY_OF_SYSTEM, register_events
from carelake.interop import _meds
from carelake.interop._ids import register_person_ids
from carelake.interop._meds import MedsSummary, export_meds, validate_meds

SHARD_SUBJECTS = 7


@pytest.fixture(scope="module")
def synthetic(viewed_lake: Callable[[int, int], tuple[Path, Any, str]]) -> cl.Lake:
    return viewed_lake(30, 11)[1]


@pytest.fixture(scope="module")
def exported(synthetic: cl.Lake, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MedsSummary]:
    out = tmp_path_factory.mktemp("meds") / "export"
    return out, export_meds(synthetic, out, shard_subjects=SHARD_SUBJECTS)


def shards(out: Path) -> list[Path]:
    return sorted((out / "data").glob("*.parquet"))


def expected_counts(lake: cl.Lake) -> dict[str, int]:
    """Rows per domain, counted straight from the export's inputs (not from anything the export computes)."""
    with closing(lake.connect()) as eng:
        register_events(eng)
        events = eng.query("SELECT domain, count(*) AS n FROM cl_events WHERE is_primary GROUP BY domain")
        people = eng.query("""
            SELECT count(birth_date) AS birth, count(deceased_date) AS death,
                   count(gender) + count(race_code) + count(ethnicity_code) AS demographics
            FROM patients""").to_pylist()[0]
    counts = {r["domain"]: r["n"] for r in events.to_pylist()} | {k: v for k, v in people.items() if v}
    return dict(sorted(counts.items()))


def check_export(out: Path, summary: MedsSummary, lake: cl.Lake, *, shard_subjects: int) -> pa.Table:
    """Everything a MEDS reader relies on, checked on the files; returns all rows, shard by shard."""
    validate_meds(out)  # every file against the meds schemas
    tables = [pq.read_table(f) for f in shards(out)]
    assert len(tables) == summary.shards
    seen: set[int] = set()
    for table in tables:
        meds.DataSchema.validate(table)
        rows = list(zip(table["subject_id"].to_pylist(), table["time"].to_pylist(), strict=True))
        ids = [s for s, _ in rows]
        assert ids == sorted(ids)
        keys = [(s, t is not None, t) for s, t in rows]  # within a subject: static rows (no time) first
        assert keys == sorted(keys)
        subjects = set(ids)
        assert not subjects & seen  # each subject in one shard only
        assert len(subjects) <= shard_subjects
        seen |= subjects
    data = pa.concat_tables(tables)
    assert data.num_rows == summary.events
    assert len(seen) == summary.subjects
    assert summary.by_domain == expected_counts(lake)
    assert summary.events == sum(expected_counts(lake).values())
    with closing(lake.connect()) as eng:
        register_person_ids(eng)
        people = eng.query("SELECT person_id FROM cl_person_ids").column(0).to_pylist()
    assert seen == set(people)  # the OMOP export's numbering; every patient has a row
    splits = pq.read_table(out / meds.subject_splits_filepath)
    assert sorted(splits["subject_id"].to_pylist()) == sorted(seen)
    assert set(splits["split"].to_pylist()) <= {meds.train_split, meds.tuning_split, meds.held_out_split}
    codes = pq.read_table(out / meds.code_metadata_filepath)["code"].to_pylist()
    assert codes == sorted(set(data["code"].to_pylist())) and len(codes) == summary.codes
    return data


def test_export_is_valid_sharded_and_reconciled(synthetic: cl.Lake, exported: tuple[Path, MedsSummary]) -> None:
    out, summary = exported
    data = check_export(out, summary, synthetic, shard_subjects=SHARD_SUBJECTS)
    assert summary.subjects == 30 and summary.shards == 5 and summary.skipped == {}
    assert set(MedsSummary.__dataclass_fields__) <= set(summary.to_dict())
    assert summary.to_dict()["events_per_s"] > 0
    codes = data["code"].to_pylist()
    assert codes.count(meds.birth_code) == 30
    prefixes = {c.split("/")[0] for c in codes if "/" in c}
    assert prefixes <= {*VOCABULARIES, "ENCOUNTER", "GENDER", "RACE", "ETHNICITY"}
    assert {"SNOMED", "LOINC", "RxNorm", "CVX", "ENCOUNTER", "GENDER"} <= prefixes
    rows = data.to_pylist()
    # Screening answers: the question as the code, the answer code as text.
    assert any(r["code"].startswith("LOINC/") and r["text_value"] for r in rows)
    assert all(r["time"] is None for r in rows if r["code"].startswith(("GENDER/", "RACE/", "ETHNICITY/")))
    assert any(r["numeric_value"] is not None for r in rows if r["code"].startswith("LOINC/"))
    metadata = json.loads((out / meds.dataset_metadata_filepath).read_text())
    assert metadata["dataset_name"] == synthetic.root.name
    assert metadata["dataset_version"] == str(synthetic.catalog.version)
    assert (metadata["etl_name"], metadata["etl_version"]) == ("carelake", cl.__version__)
    assert metadata["meds_version"] == meds.__version__
    splits = pq.read_table(out / meds.subject_splits_filepath)["split"].to_pylist()
    assert [splits.count(s) for s in ("train", "tuning", "held_out")] == [24, 3, 3]


def test_a_rerun_writes_the_same_bytes_and_replaces_the_export(
    synthetic: cl.Lake, exported: tuple[Path, MedsSummary], tmp_path: Path
) -> None:
    out, _ = exported
    again = tmp_path / "again"
    export_meds(synthetic, again, shard_subjects=SHARD_SUBJECTS)
    files = [p.relative_to(out) for p in sorted(out.rglob("*.parquet"))]
    assert files == [p.relative_to(again) for p in sorted(again.rglob("*.parquet"))]
    assert all((out / f).read_bytes() == (again / f).read_bytes() for f in files)
    # A previous export is replaced whole, and nothing is left beside it.
    summary = export_meds(synthetic, again, shard_subjects=100)
    assert summary.shards == 1 and len(shards(again)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["again"]


def test_splits_depend_only_on_the_subject_ids() -> None:
    # Rank order: (id mod p) * m mod p, so consecutive ids land spread over the order, not in one block.
    ids = list(range(1, 101))
    order = sorted(ids, key=lambda i: ((i % _meds.SPLIT_PRIME) * _meds.SPLIT_MULTIPLIER % _meds.SPLIT_PRIME, i))
    held_out = order[90:]
    assert max(held_out) - min(held_out) > 50
    assert _meds._round(30 * 0.8) == 24 and _meds._round(30 * (0.8 + 0.1)) == 27 and _meds._round(2.5) == 3


def test_synthea_corpus_exports_and_reconciles(testdata: Path, tmp_path: Path) -> None:
    lake = cl.open_lake(tmp_path / "synthea")
    cl.ingest_fhir([testdata / "synthea-fhir-r4"], lake=lake)
    materialize_views(standard_views(), lake=lake)
    summary = export_meds(lake, tmp_path / "meds", shard_subjects=5)
    data = check_export(tmp_path / "meds", summary, lake, shard_subjects=5)
    # Counted from the resources' JSON, not from carelake's views.
    raw = lake.sql("""
        SELECT count(*) AS patients, count(json_extract_string(resource, '$.deceasedDateTime')) AS deaths
        FROM Patient""").to_pylist()[0]
    encounters = lake.sql("SELECT count(*) FROM Encounter").column(0)[0].as_py()
    codes = data["code"].to_pylist()
    assert summary.subjects == raw["patients"] > 10
    assert codes.count(meds.death_code) == raw["deaths"] > 0
    assert sum(c.startswith("ENCOUNTER/") for c in codes) == encounters
    assert summary.skipped == {}


def test_events_that_cannot_be_rows_are_counted_by_reason(tmp_path: Path) -> None:
    source = tmp_path / "fhir"
    source.mkdir()
    p1, p2 = {"reference": "Patient/p1"}, {"reference": "Patient/p2"}
    snomed = {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}
    local = "urn:example:local"
    resources = {
        "Patient": [
            {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980"},
            {"resourceType": "Patient", "id": "p2", "deceasedBoolean": True},  # no date of death: no MEDS_DEATH
        ],
        "Condition": [
            {"resourceType": "Condition", "id": "c1", "subject": p1, "code": snomed},  # no time
            {"resourceType": "Condition", "id": "c2", "subject": p1, "code": snomed,
             "onsetDateTime": "2020-02-03T04:05:06+02:00"},
        ],
        "Procedure": [
            {"resourceType": "Procedure", "id": id_, "status": "completed", "subject": subject,
             "performedDateTime": "2021-01-01", "code": {"coding": [coding]}}
            for id_, subject, coding in [
                ("x1", p2, {"code": "1"}),  # no code system
                ("x2", {"reference": "Patient/ghost"}, {"system": local, "code": "2"}),  # no such patient
                ("x3", p2, {"system": local, "code": "3"}),
            ]
        ],
    }  # fmt: skip
    for name, items in resources.items():
        (source / f"{name}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in items))
    lake = cl.open_lake(tmp_path / "lake")
    cl.ingest_fhir([source], lake=lake)
    materialize_views(standard_views(), lake=lake)
    summary = export_meds(lake, tmp_path / "meds")
    assert summary.skipped == {"no_code": 1, "no_subject": 1, "no_time": 1}
    assert summary.by_domain == {"birth": 1, "condition": 1, "demographics": 1, "procedure": 1}
    rows = [(r["code"], r["time"]) for r in pq.read_table(shards(tmp_path / "meds")[0]).to_pylist()]
    assert rows == [
        ("GENDER/female", None),
        (meds.birth_code, datetime(1980, 1, 1)),  # a partial date counts from its first day
        ("SNOMED/44054006", datetime(2020, 2, 3, 2, 5, 6)),  # in UTC
        ("urn:example:local/3", datetime(2021, 1, 1)),  # an unknown system keeps its URI
    ]


def test_bad_targets_and_options_are_refused(synthetic: cl.Lake, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no MEDS export"):
        export_meds(synthetic, busy)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    with pytest.raises(ConfigError, match="add up to 1"):
        export_meds(synthetic, tmp_path / "x", split=(0.8, 0.1, 0.2))
    with pytest.raises(ConfigError, match="shard_subjects"):
        export_meds(synthetic, tmp_path / "x", shard_subjects=0)
    with pytest.raises(LakeError, match="carelake view materialize --standard"):
        export_meds(cl.open_lake(tmp_path / "empty"), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_failed_export_leaves_the_previous_one(
    synthetic: cl.Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "meds"
    export_meds(synthetic, out, shard_subjects=100)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(root: Path) -> None:
        raise EngineError("invalid")

    monkeypatch.setattr(_meds, "validate_meds", broken)
    with pytest.raises(EngineError, match="invalid"):
        export_meds(synthetic, out, shard_subjects=SHARD_SUBJECTS)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["meds"]


def test_invalid_files_fail_validation(exported: tuple[Path, MedsSummary], tmp_path: Path) -> None:
    out, _ = exported
    broken = tmp_path / "broken"
    for file in out.rglob("*"):
        if file.is_file():
            (broken / file.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
            (broken / file.relative_to(out)).write_bytes(file.read_bytes())
    validate_meds(broken)
    table = pq.read_table(shards(broken)[0])
    pq.write_table(table.set_column(0, "subject_id", table["subject_id"].cast(pa.string())), shards(broken)[0])
    with pytest.raises(EngineError, match=r"data/00000.parquet is not valid MEDS: .*subject_id"):
        validate_meds(broken)


def test_progress_follows_the_rows(synthetic: cl.Lake, exported: tuple[Path, MedsSummary], tmp_path: Path) -> None:
    calls: list[tuple[str, float | None]] = []

    class Recorder:
        def start(self, description: str, total: float | None) -> None:
            calls.append((description, total))

        def advance(self, amount: float) -> None:
            calls.append(("advance", amount))

        def stop(self) -> None:
            calls.append(("stop", None))

    summary = export_meds(synthetic, tmp_path / "meds", progress=Recorder())
    writing = next(total for description, total in calls if description == "MEDS: writing shards")
    assert writing == summary.events == sum(a for d, a in calls if d == "advance")
    assert calls[-1] == ("stop", None)


def test_vocabularies_are_one_table_read_both_ways() -> None:
    assert len(VOCABULARY_OF_SYSTEM) == len(VOCABULARIES)
    assert VOCABULARY_OF_SYSTEM["http://snomed.info/sct"] == "SNOMED"
    assert VOCABULARIES["RxNorm"] == "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.mark.spark
def test_spark_exports_the_same_rows(synthetic: cl.Lake, exported: tuple[Path, MedsSummary], tmp_path: Path) -> None:
    out, duck = exported
    summary = export_meds(synthetic, tmp_path / "spark", engine="spark", shard_subjects=SHARD_SUBJECTS)
    volatile = ("out", "seconds", "events_per_s")
    assert {k: v for k, v in summary.to_dict().items() if k not in volatile} == {
        k: v for k, v in duck.to_dict().items() if k not in volatile
    }
    validate_meds(tmp_path / "spark")
    for file in sorted(out.rglob("*.parquet")):
        assert pq.read_table(tmp_path / "spark" / file.relative_to(out)).equals(pq.read_table(file)), file.name
