"""Patient matching: accuracy against the generator's truth, the Synthea corpus, re-runs, the CLI, Spark parity.

Identifiers never appear as literals here: records are named by patient id, and the checks that compare
fields read them from the lake.
"""

from __future__ import annotations

import doctest
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

import carelake as cl
from carelake.errors import ConfigError, InputError
from carelake.match import FIELDS_VIEW, LINKS_TABLE, PAIRS_TABLE, MatchSummary, match_patients

PATIENTS = 1500  # people; 5 % of them get a second record
SYNTHEA_PATIENTS = 17  # 13 in the bulk export, 4 in the transaction bundles


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A generated population's Patient records in a lake, and the truth of who is whom."""
    root = tmp_path_factory.mktemp("population")
    cl.generate_fhir(root / "export", patients=PATIENTS, seed=11, duplicates=0.05)
    cl.ingest_fhir([root / "export" / "Patient.ndjson"], lake=root / "lake")
    return root / "lake", root / "export" / "ground_truth" / "duplicates.parquet"


@pytest.fixture(scope="module")
def matched(population: tuple[Path, Path]) -> MatchSummary:
    return match_patients(cl.open_lake(population[0], create=False))


def _pairs(lake: cl.Lake) -> set[tuple[str, str]]:
    rows = lake.sql(f"SELECT patient_id_l, patient_id_r FROM {PAIRS_TABLE}").to_pylist()
    return {(r["patient_id_l"], r["patient_id_r"]) for r in rows}


def _links(lake: cl.Lake) -> dict[str, str]:
    return {r["patient_id"]: r["person_key"] for r in lake.sql(f"SELECT * FROM {LINKS_TABLE}").to_pylist()}


def test_precision_and_recall_against_ground_truth(population: tuple[Path, Path], matched: MatchSummary) -> None:
    lake_path, truth_path = population
    lake = cl.open_lake(lake_path, create=False)
    truth = {tuple(sorted((r["patient_id"], r["duplicate_patient_id"]))) for r in pq.read_table(truth_path).to_pylist()}
    found = _pairs(lake)
    hits = len(found & truth)
    precision, recall = hits / len(found), hits / len(truth)
    assert len(truth) > 50
    assert precision >= 0.95, (precision, recall)
    assert recall >= 0.90, (precision, recall)
    # Person keys: a true pair shares one, and every cluster is small (no runaway chaining).
    links = _links(lake)
    assert sum(links[a] == links[b] for a, b in truth) / len(truth) >= 0.90
    assert matched.largest_cluster <= 3


@pytest.mark.slow
def test_ten_thousand_patients_keep_their_accuracy(tmp_path: Path) -> None:
    """At this size one EM pass collapses (Splink refuses the m it reaches); the model it had is kept."""
    cl.generate_fhir(tmp_path / "export", patients=10_000, seed=7, duplicates=0.02, workers=2)
    cl.ingest_fhir([tmp_path / "export" / "Patient.ndjson"], lake=tmp_path / "lake")
    summary = match_patients(cl.open_lake(tmp_path / "lake", create=False))
    assert any(t["trained"] for t in summary.training)
    truth = tmp_path / "export" / "ground_truth" / "duplicates.parquet"
    truth_pairs = {
        tuple(sorted((r["patient_id"], r["duplicate_patient_id"]))) for r in pq.read_table(truth).to_pylist()
    }
    found = _pairs(cl.open_lake(tmp_path / "lake", create=False))
    hits = len(found & truth_pairs)
    assert len(truth_pairs) > 150
    assert hits / len(found) >= 0.95 and hits / len(truth_pairs) >= 0.95, (len(found), hits, len(truth_pairs))


def test_summary_reconciles_with_the_tables(population: tuple[Path, Path], matched: MatchSummary) -> None:
    lake = cl.open_lake(population[0], create=False)
    patients = lake.sql("SELECT count(*) AS n FROM Patient").column(0)[0].as_py()
    links = _links(lake)
    assert matched.records == patients == len(links)
    assert matched.matched_pairs == len(_pairs(lake)) <= matched.candidate_pairs
    assert matched.clusters == len(set(links.values()))
    sizes: dict[str, int] = {}
    for key in links.values():
        sizes[key] = sizes.get(key, 0) + 1
    assert matched.persons_with_multiple_records == sum(n > 1 for n in sizes.values())
    assert sum(b["pairs"] for b in matched.histogram) == matched.candidate_pairs
    assert 0 < matched.probability_two_random_records_match < 0.01
    assert all(t["trained"] for t in matched.training)
    document = json.loads(json.dumps(matched.to_dict()))
    assert {c["name"] for c in document["comparisons"]} == {
        "given_name", "family_name", "birth_date", "sex", "address", "phone", "email", "identifiers",
    }  # fmt: skip
    # Agreeing on an identifier is strong evidence, differing SSNs strong evidence against.
    levels = {(c["name"], lv["label"]): lv for c in matched.comparisons for lv in c["levels"]}
    assert levels[("identifiers", "SSN or MRN agrees")]["match_weight"] > 10
    assert levels[("identifiers", "SSNs differ")]["match_weight"] < 0
    assert levels[("birth_date", "exact")]["match_weight"] > levels[("birth_date", "same year")]["match_weight"]


def test_person_key_is_the_smallest_id_of_a_connected_cluster(
    population: tuple[Path, Path], matched: MatchSummary
) -> None:
    lake = cl.open_lake(population[0], create=False)
    links = _links(lake)
    members: dict[str, list[str]] = {}
    for patient, key in links.items():
        members.setdefault(key, []).append(patient)
    assert all(key == min(ids) for key, ids in members.items())
    for a, b in _pairs(lake):
        assert a < b and links[a] == links[b]


def test_pairs_say_which_comparisons_agreed(population: tuple[Path, Path], matched: MatchSummary) -> None:
    """The level written for a pair is the level its fields reach (checked against the fields, not literals)."""
    lake = cl.open_lake(population[0], create=False)
    fields = cl.run_view(FIELDS_VIEW, lake=lake)
    con = duckdb.connect()
    con.register("fields", fields)
    con.register("pairs", lake.sql(f"SELECT * FROM {PAIRS_TABLE}"))
    records = (
        con.sql("""
        SELECT p.*, l.ssn = r.ssn OR l.mrn = r.mrn AS same_id, l.birth_date = r.birth_date AS same_birth,
               l.phone = r.phone AS same_phone
        FROM pairs p JOIN fields l ON l.patient_id = p.patient_id_l JOIN fields r ON r.patient_id = p.patient_id_r
    """)
        .to_arrow_table()
        .to_pylist()
    )
    assert records
    for r in records:
        assert (r["identifiers_level"] == "SSN or MRN agrees") == bool(r["same_id"])
        assert (r["birth_date_level"] == "exact") == bool(r["same_birth"])
        assert (r["phone_level"] == "exact") == bool(r["same_phone"])
        assert r["match_probability"] >= 0.9 and r["blocking_rule"]
        assert set(r["agreed"].split(",")) <= {c["name"] for c in matched.comparisons}


def test_rerun_replaces_the_tables_with_the_same_rows(
    tmp_path: Path, population: tuple[Path, Path], matched: MatchSummary
) -> None:
    path = tmp_path / "lake"
    shutil.copytree(population[0], path)  # already matched once, by the fixture
    lake = cl.open_lake(path, create=False)

    def tables() -> tuple[object, object]:
        return tuple(lake.sql(f"SELECT * FROM {t} ORDER BY ALL") for t in (PAIRS_TABLE, LINKS_TABLE))

    before = tables()
    again = match_patients(lake)
    after = tables()
    assert before[0].equals(after[0]) and before[1].equals(after[1])  # same input, same output
    assert again.comparisons == matched.comparisons and again.histogram == matched.histogram
    status = {t["name"]: t for t in lake.status()["tables"]}
    assert status[PAIRS_TABLE]["rows"] == again.matched_pairs and status[PAIRS_TABLE]["layer"] == "silver"
    assert status[LINKS_TABLE]["rows"] == again.records and status[LINKS_TABLE]["files"] == 1
    assert [r["job"] for r in lake.status()["runs"]].count("match-patients") == 2


# -- the public Synthea corpus ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthea_lake(tmp_path_factory: pytest.TempPathFactory, testdata: Path) -> Path:
    path = tmp_path_factory.mktemp("synthea") / "lake"
    cl.ingest_fhir([testdata / "synthea-fhir-r4"], lake=path)
    return path


def test_distinct_synthea_patients_are_not_matched(synthea_lake: Path) -> None:
    # Three of them share a birth date and two another: the model must not link on that alone.
    lake = cl.open_lake(synthea_lake, create=False)
    summary = match_patients(lake)
    assert summary.records == SYNTHEA_PATIENTS
    assert summary.matched_pairs == 0 and _pairs(lake) == set()
    links = _links(lake)
    assert len(links) == SYNTHEA_PATIENTS and all(patient == key for patient, key in links.items())


def test_a_planted_synthea_duplicate_is_found(tmp_path: Path, synthea_lake: Path, testdata: Path) -> None:
    """A Synthea patient registered again elsewhere: a typo in the family name, new MRN and phone, no SSN."""
    path = tmp_path / "lake"
    shutil.copytree(synthea_lake, path)
    source = testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients" / "Patient.000.ndjson"
    original = orjson.loads(source.read_bytes().splitlines()[3])
    copy = dict(original, id="planted-second-registration")
    name = dict(original["name"][0])
    family = name["family"]
    name["family"] = family[:2] + family[3:]  # one letter dropped
    copy["name"] = [name, *original["name"][1:]]
    copy["identifier"] = [
        {"type": {"coding": [{"code": "MR"}]}, "system": "http://clinic.example.org/mrn", "value": "1"},
    ]
    copy["telecom"] = []
    planted = tmp_path / "planted.ndjson"
    planted.write_bytes(orjson.dumps(copy) + b"\n")
    cl.ingest_fhir([planted], lake=path)

    lake = cl.open_lake(path, create=False)
    summary = match_patients(lake)
    assert summary.records == SYNTHEA_PATIENTS + 1
    assert _pairs(lake) == {tuple(sorted((original["id"], copy["id"])))}
    links = _links(lake)
    assert links[copy["id"]] == links[original["id"]] == min(original["id"], copy["id"])
    assert sum(key == patient for patient, key in links.items()) == SYNTHEA_PATIENTS
    row = lake.sql(f"SELECT family_name_level, identifiers_level, phone_level FROM {PAIRS_TABLE}").to_pylist()[0]
    assert row == {
        "family_name_level": "one typo",
        "identifiers_level": "no SSN on one side",
        "phone_level": "missing on one side",
    }


# -- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0, 1, 1.5, -0.1, True])
def test_threshold_must_be_a_probability(synthea_lake: Path, threshold: float) -> None:
    with pytest.raises(ConfigError, match="threshold") as info:
        match_patients(synthea_lake, threshold=threshold)
    assert info.value.hint


def test_unknown_engine_and_empty_lake(tmp_path: Path, synthea_lake: Path) -> None:
    with pytest.raises(ConfigError, match="engine"):
        match_patients(synthea_lake, engine="sqlite")
    with pytest.raises(InputError, match="no FHIR resources") as info:
        match_patients(cl.open_lake(tmp_path / "empty"))
    assert "ingest" in (info.value.hint or "")


def test_a_single_patient_is_its_own_person(tmp_path: Path) -> None:
    source = tmp_path / "one.ndjson"
    source.write_bytes(orjson.dumps({"resourceType": "Patient", "id": "only-one", "gender": "other"}) + b"\n")
    cl.ingest_fhir([source], lake=tmp_path / "lake")
    lake = cl.open_lake(tmp_path / "lake", create=False)
    summary = match_patients(lake)
    assert (summary.records, summary.candidate_pairs, summary.matched_pairs, summary.clusters) == (1, 0, 0, 1)
    assert _links(lake) == {"only-one": "only-one"} and _pairs(lake) == set()
    assert lake.sql(f"SELECT * FROM {PAIRS_TABLE}").column_names[:4] == [
        "patient_id_l", "patient_id_r", "match_probability", "match_weight",
    ]  # fmt: skip


def test_soundex_examples() -> None:
    from carelake.match import _fields

    assert doctest.testmod(_fields).failed == 0


# -- the CLI ---------------------------------------------------------------------------------------------


def carelake(*args: str, lake: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carelake", "--lake", str(lake), *args], capture_output=True, text=True, timeout=300
    )


def test_cli_json_report_and_no_identifier_in_any_output(tmp_path: Path, synthea_lake: Path) -> None:
    path = tmp_path / "lake"
    shutil.copytree(synthea_lake, path)
    report = tmp_path / "match.html"
    result = carelake("match", "patients", "--threshold", "0.95", "--report", str(report), "--json", lake=path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records"] == SYNTHEA_PATIENTS and summary["threshold"] == 0.95
    assert summary["report"] == str(report) and "Patient records" in result.stderr
    html = report.read_text()
    assert "Patient matching" in html and "Match weights of each comparison level" in html and "plotly" in html
    # No name, birth date, address, phone, e-mail or identifier of any record in what people or scripts see.
    # (City and postal code are geography, not identifiers; plotly.js sits in its own file beside the report.)
    fields = cl.run_view(FIELDS_VIEW, lake=cl.open_lake(path, create=False))
    values = fields.drop(["patient_id", "sex", "city", "postal_code"])
    identifiers = {v for column in values.columns for v in column.to_pylist() if isinstance(v, str) and len(v) >= 4}
    assert len(identifiers) > 5 * SYNTHEA_PATIENTS
    figures = html
    assert (report.parent / "plotly.min.js").exists() and "Plotly.newPlot" in figures
    for text in (result.stdout, result.stderr, figures):
        assert not [v for v in identifiers if v in text.lower()]


def test_cli_errors_are_one_line_with_a_hint(tmp_path: Path, synthea_lake: Path) -> None:
    result = carelake("match", "patients", "--threshold", "1", lake=synthea_lake)
    assert result.returncode == 1 and "threshold" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    result = carelake("match", "patients", lake=tmp_path / "nowhere")
    assert result.returncode == 1 and "hint:" in result.stderr


# -- Spark -----------------------------------------------------------------------------------------------


@pytest.mark.spark
def test_spark_gives_the_same_links_as_duckdb(tmp_path: Path) -> None:
    """The same model on Spark: the same match keys, pairs and person keys; probabilities within float noise."""
    from carelake.fhir import compile_view
    from carelake.match._fields import keys_sql

    cl.generate_fhir(tmp_path / "export", patients=150, seed=3, duplicates=0.1)
    cl.ingest_fhir([tmp_path / "export" / "Patient.ndjson"], lake=tmp_path / "duck")
    shutil.copytree(tmp_path / "duck", tmp_path / "spark")
    keys = {}
    for engine in ("duckdb", "spark"):
        eng = cl.open_lake(tmp_path / "duck", create=False).connect(engine)
        eng.create_view("patient_match_fields", compile_view(FIELDS_VIEW))
        keys[engine] = eng.query(keys_sql("patient_match_fields")).sort_by("patient_id").to_pylist()
    assert keys["duckdb"] == keys["spark"]  # Soundex, date parts and NULLs computed alike

    duck = match_patients(tmp_path / "duck", engine="duckdb")
    spark = match_patients(tmp_path / "spark", engine="spark")
    assert duck.matched_pairs > 5
    lakes = {name: cl.open_lake(tmp_path / name, create=False) for name in ("duck", "spark")}
    assert _links(lakes["duck"]) == _links(lakes["spark"])
    pairs = {
        name: {(r["patient_id_l"], r["patient_id_r"]): r for r in lake.sql(f"SELECT * FROM {PAIRS_TABLE}").to_pylist()}
        for name, lake in lakes.items()
    }
    assert pairs["duck"].keys() == pairs["spark"].keys()
    for key, row in pairs["duck"].items():
        other = pairs["spark"][key]
        assert other["match_probability"] == pytest.approx(row["match_probability"], rel=1e-9, abs=1e-12)
        assert other["match_weight"] == pytest.approx(row["match_weight"], rel=1e-6, abs=1e-6)
        assert {k: v for k, v in other.items() if k.endswith("_level") or k in ("agreed", "blocking_rule")} == {
            k: v for k, v in row.items() if k.endswith("_level") or k in ("agreed", "blocking_rule")
        }
    for a, b in zip(duck.comparisons, spark.comparisons, strict=True):
        for la, lb in zip(a["levels"], b["levels"], strict=True):
            for p in ("m_probability", "u_probability"):
                assert (la[p] is None) == (lb[p] is None)
                if la[p] is not None:
                    assert lb[p] == pytest.approx(la[p], rel=1e-6, abs=1e-12)
    assert (duck.candidate_pairs, duck.clusters, duck.histogram) == (
        spark.candidate_pairs,
        spark.clusters,
        spark.histogram,
    )
