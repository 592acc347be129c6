"""Every kind of bad input is quarantined with file, line, byte offset and rule; nothing else is lost."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import carelake as cl
from conftest import ENGINES

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-02"}
OBS = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "subject": {"reference": "Patient/p1"},
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "effectiveDateTime": "2020-05-01T10:00:00+02:00",
    "valueQuantity": {"value": 72.50, "unit": "/min"},
}


def ndjson(path: Path, *lines: object, newline: bytes = b"\n") -> Path:
    path.write_bytes(b"".join((ln if isinstance(ln, bytes) else orjson.dumps(ln)) + newline for ln in lines))
    return path


def quarantine(lake_path: Path) -> list[dict]:
    return cl.open_lake(lake_path).sql("SELECT * FROM quarantine ORDER BY source_file, line, entry_index").to_pylist()


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        (b'{"resourceType": "Patient", "id": "x"', "invalid-json"),
        (b"[1, 2]", "not-an-object"),
        (b'"text"', "not-an-object"),
        (b'{"id": "a"}', "missing-resourceType"),
        (b'{"resourceType": "Patinet", "id": "a"}', "unknown-resourceType"),
        (b'{"resourceType": 7, "id": "a"}', "invalid-resourceType"),
        (b'{"resourceType": "Patient"}', "missing-id"),
        (b'{"resourceType": "Patient", "id": 12}', "invalid-id"),
        (b'{"resourceType": "Patient", "id": "has space"}', "invalid-id"),
        (b'{"resourceType": "Patient", "id": "a", "meta": "x"}', "invalid-meta"),
        (b"   ", "blank-line"),
        (b'{"resourceType": "Patient", "id": "a", "name": "\xff"}', "invalid-json"),
    ],
)
def test_bad_line_is_quarantined_with_its_locator(tmp_path: Path, line: bytes, rule: str) -> None:
    source = ndjson(tmp_path / "in.ndjson", PATIENT, line, OBS)
    summary = cl.ingest_fhir([source], lake=tmp_path / "lake")
    assert (summary.stored, summary.quarantined, summary.read) == (2, 1, 3)
    [row] = quarantine(tmp_path / "lake")
    assert row["rule"] == rule
    assert (row["line"], row["byte_offset"]) == (2, len(orjson.dumps(PATIENT)) + 1)
    assert row["source_file"] == str(source.resolve())
    assert row["stage"] == "ingest-fhir" and row["run_id"] == summary.run_id


def test_unknown_type_suggests_the_right_one(tmp_path: Path) -> None:
    source = ndjson(tmp_path / "in.ndjson", {"resourceType": "Patinet", "id": "a"})
    cl.ingest_fhir([source], lake=tmp_path / "lake")
    assert "did you mean 'Patient'?" in quarantine(tmp_path / "lake")[0]["message"]


def test_messages_never_quote_record_content(tmp_path: Path) -> None:
    secret = "Zebediah-123-45-6789"
    lines = [
        b'{"resourceType": "Patient", "id": "' + secret.encode() + b' x"}',
        b'{"resourceType": "' + secret.encode() + b'", "id": "a"}',
        b'{"resourceType": "Patient", "name": "' + secret.encode(),
    ]
    source = ndjson(tmp_path / "in.ndjson", *lines)
    summary = cl.ingest_fhir([source], lake=tmp_path / "lake")
    assert summary.quarantined == 3
    assert secret not in json.dumps(summary.to_dict())
    assert all(secret not in row["message"] for row in quarantine(tmp_path / "lake"))


@pytest.mark.parametrize("engine", ENGINES)
def test_bom_and_crlf_are_accepted(engine: str, tmp_path: Path) -> None:
    source = tmp_path / "in.ndjson"
    source.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(PATIENT) + b"\r\n" + orjson.dumps(OBS) + b"\r\r\n")
    summary = cl.ingest_fhir([source], lake=tmp_path / "lake", engine=engine)
    assert (summary.stored, summary.quarantined) == (2, 0)
    lake = cl.open_lake(tmp_path / "lake")
    stored = lake.sql("SELECT resource FROM resources ORDER BY id", engine=engine).column(0).to_pylist()
    assert stored == [orjson.dumps(OBS).decode(), orjson.dumps(PATIENT).decode()]  # no CR kept, nor hashed


def test_empty_files_are_quarantined(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_bytes(b"")
    (tmp_path / "b.json").write_bytes(b"  \n")
    summary = cl.ingest_fhir([tmp_path / "a.ndjson", tmp_path / "b.json"], lake=tmp_path / "lake")
    assert summary.quarantined_by_rule == {"empty-file": 2}


def test_truncated_gzip_keeps_what_came_before(tmp_path: Path) -> None:
    body = b"".join(orjson.dumps({**PATIENT, "id": f"p{i}"}) + b"\n" for i in range(2000))
    whole = gzip.compress(body)
    (tmp_path / "cut.ndjson.gz").write_bytes(whole[: len(whole) * 2 // 3])
    summary = cl.ingest_fhir([tmp_path / "cut.ndjson.gz"], lake=tmp_path / "lake")
    assert summary.quarantined_by_rule.get("truncated-file") == 1
    assert 0 < summary.stored < 2000 and summary.reconciles
    # The file is hashed as it is read, and the parser stops at the damage (here, a megabyte after the gzip data
    # that is not gzip): the hash still covers every byte received, in the quarantine, the stored records'
    # provenance and the raw copy's name.
    damaged = whole + b"x" * (1 << 20)
    (tmp_path / "cut.ndjson.gz").write_bytes(damaged)
    summary = cl.ingest_fhir([tmp_path / "cut.ndjson.gz"], lake=tmp_path / "damaged")
    assert summary.quarantined_by_rule.get("truncated-file") == 1 and summary.reconciles
    received = hashlib.sha256(damaged).hexdigest()
    lake = cl.open_lake(tmp_path / "damaged")
    assert lake.sql("SELECT DISTINCT source_sha256 FROM quarantine").column(0).to_pylist() == [received]
    assert lake.sql("SELECT DISTINCT source_sha256 FROM resources").column(0).to_pylist() == [received]
    assert [f.name for f in (lake.root / "raw").rglob("*.gz")] == [f"{received}.ndjson.gz"]


def test_unreadable_path_is_quarantined(tmp_path: Path) -> None:
    # A dangling symlink named like NDJSON: the file cannot be opened.
    (tmp_path / "gone.ndjson").symlink_to(tmp_path / "nowhere.ndjson")
    summary = cl.ingest_fhir([tmp_path / "gone.ndjson"], lake=tmp_path / "lake")
    assert summary.quarantined_by_rule == {"unreadable-file": 1}


def test_missing_input_is_an_error_not_a_quarantine(tmp_path: Path) -> None:
    with pytest.raises(cl.InputError, match="no such file"):
        cl.ingest_fhir([tmp_path / "absent"], lake=tmp_path / "lake")


def test_duplicates_and_versions(tmp_path: Path, engine: str) -> None:
    lake = tmp_path / "lake"
    first = ndjson(tmp_path / "1.ndjson", PATIENT, OBS, OBS)
    s1 = cl.ingest_fhir([first], lake=lake, engine=engine)
    assert (s1.stored, s1.duplicates, s1.new_versions) == (2, 1, 0)
    # The same record again is a duplicate; changed content (here a changed element, or the same
    # element written differently) is a new version.
    reordered = b'{ "id": "p1", "birthDate": "1970-01-02", "resourceType": "Patient", "gender": "female" }'
    changed = {**PATIENT, "gender": "male"}
    s2 = cl.ingest_fhir([ndjson(tmp_path / "2.ndjson", PATIENT, reordered, changed, OBS)], lake=lake, engine=engine)
    assert (s2.stored, s2.duplicates, s2.new_versions) == (0, 2, 2)
    the_lake = cl.open_lake(lake)
    history = the_lake.sql(
        "SELECT id, version, resource FROM fhir_resources WHERE id = 'p1' ORDER BY version"
    ).to_pylist()
    assert [h["version"] for h in history] == [1, 2, 3]
    current = the_lake.sql("SELECT version, resource FROM Patient").to_pylist()
    assert len(current) == 1 and orjson.loads(current[0]["resource"]) == changed
    # Re-running an old input adds nothing: its content is known.
    s3 = cl.ingest_fhir([first], lake=lake, engine=engine)
    assert (s3.stored, s3.new_versions, s3.duplicates) == (0, 0, 3)
    assert len(the_lake.sql("SELECT * FROM fhir_resources").to_pylist()) == 4


def test_rerun_is_idempotent_including_quarantine(tmp_path: Path, testdata: Path) -> None:
    lake = tmp_path / "lake"
    inputs = [testdata / "synthea-fhir-r4/bulk-ndjson-10-patients", testdata / "fhir-r4-examples/validator-cases"]
    first = cl.ingest_fhir(inputs, lake=lake)
    before = {t: e.rows for t, e in cl.open_lake(lake).catalog.tables.items()}
    again = cl.ingest_fhir(inputs, lake=lake)
    after = {t: e.rows for t, e in cl.open_lake(lake).catalog.tables.items()}
    assert before == after
    assert again.stored == again.new_versions == 0
    assert again.duplicates == first.read - first.quarantined
    assert again.quarantined == first.quarantined  # read again, reported again, stored once


def test_strict_commits_nothing(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    source = ndjson(tmp_path / "in.ndjson", PATIENT, b"{oops")
    with pytest.raises(cl.StrictModeError, match="1 record"):
        cl.ingest_fhir([source], lake=lake, strict=True)
    assert cl.open_lake(lake).status()["tables"][0]["rows"] == 0
    assert "fhir_resources" not in cl.open_lake(lake).catalog.tables


def test_bundle_types_and_entries(tmp_path: Path) -> None:
    entries = [
        {
            "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
            "resource": {"resourceType": "Patient", "gender": "other"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
            "resource": {
                "resourceType": "Encounter",
                "status": "finished",
                "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
            },
            "request": {"method": "POST", "url": "Encounter"},
        },
        {"request": {"method": "DELETE", "url": "Patient/old"}},
        {"resource": {"resourceType": "Observation", "status": "final"}},
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    (tmp_path / "b.json").write_bytes(orjson.dumps(bundle))
    summary = cl.ingest_fhir([tmp_path / "b.json"], lake=tmp_path / "lake")
    assert summary.stored == 2
    assert summary.quarantined_by_rule == {"unsupported-delete": 1, "missing-id": 1}
    rows = (
        cl.open_lake(tmp_path / "lake")
        .sql("SELECT resource_type, id, patient_id, entry_index, resource FROM resources ORDER BY entry_index")
        .to_pylist()
    )
    assert [(r["resource_type"], r["id"], r["patient_id"], r["entry_index"]) for r in rows] == [
        ("Patient", "11111111-1111-1111-1111-111111111111", "11111111-1111-1111-1111-111111111111", 0),
        ("Encounter", "22222222-2222-2222-2222-222222222222", "11111111-1111-1111-1111-111111111111", 1),
    ]
    assert orjson.loads(rows[1]["resource"])["subject"] == {"reference": "Patient/11111111-1111-1111-1111-111111111111"}


@pytest.mark.parametrize("btype", ["collection", "searchset", "batch", "document", "message", "history"])
def test_every_bundle_type_is_unpacked(tmp_path: Path, btype: str) -> None:
    bundle = {"resourceType": "Bundle", "type": btype, "entry": [{"resource": PATIENT}, {"resource": OBS}]}
    (tmp_path / "b.json").write_bytes(orjson.dumps(bundle))
    summary = cl.ingest_fhir([tmp_path / "b.json"], lake=tmp_path / "lake")
    assert summary.stored == 2 and summary.reconciles


@pytest.mark.parametrize("engine", ENGINES)
def test_the_patient_id_comes_from_every_form_of_patient_reference(engine: str, tmp_path: Path) -> None:
    forms = {
        "plain": ("Patient/p-1.a", "p-1.a"),
        "absolute": ("https://ehr.example.org/fhir/Patient/p2", "p2"),
        "versioned": ("Patient/p3/_history/4", "p3"),
        "another type": ("Group/g1", None),
        "too long": ("Patient/" + "x" * 65, None),
        "bad character": ("Patient/p_4", None),
        "trailing newline": ("Patient/p5\n", None),  # Spark's $ once matched before it
    }
    records = [{**OBS, "id": f"o{i}", "subject": {"reference": ref}} for i, (ref, _) in enumerate(forms.values())]
    records.append({**OBS, "id": "o9\n"})  # an id with a newline at its end is no id on either engine
    summary = cl.ingest_fhir([ndjson(tmp_path / "in.ndjson", *records)], lake=tmp_path / "lake", engine=engine)
    assert summary.quarantined_by_rule == {"invalid-id": 1}
    rows = cl.open_lake(tmp_path / "lake").sql("SELECT id, patient_id FROM Observation", engine=engine).to_pylist()
    found = {r["id"]: r["patient_id"] for r in rows}
    assert {name: found[f"o{i}"] for i, name in enumerate(forms)} == {n: want for n, (_, want) in forms.items()}


@pytest.mark.parametrize("engine", ENGINES)
def test_unresolved_references_are_counted_once_each(engine: str, tmp_path: Path) -> None:
    """Counted by target and multiplied back: two references to one missing patient are two unresolved."""
    missing = {"reference": "Patient/nobody"}
    records = [
        PATIENT,
        {**OBS, "id": "o1", "subject": missing},
        {**OBS, "id": "o2", "subject": missing},
        {**OBS, "id": "o3", "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e9"}},
    ]
    summary = cl.ingest_fhir([ndjson(tmp_path / "in.ndjson", *records)], lake=tmp_path / "lake", engine=engine)
    assert summary.references["total"] == 4
    assert summary.references["unresolved_literal"] == 3
    day2 = cl.ingest_fhir(
        [ndjson(tmp_path / "day2.ndjson", {**PATIENT, "id": "nobody"}, {**OBS, "id": "o4", "subject": missing})],
        lake=tmp_path / "lake",
        engine=engine,
    )
    assert (day2.references["total"], day2.references["unresolved_literal"]) == (1, 0)  # found in this run


def test_keys_are_extracted(tmp_path: Path) -> None:
    cl.ingest_fhir([ndjson(tmp_path / "in.ndjson", PATIENT, OBS)], lake=tmp_path / "lake")
    obs = cl.open_lake(tmp_path / "lake").sql("SELECT * FROM Observation").to_pylist()[0]
    assert obs["patient_id"] == "p1"
    assert obs["clinical_time_raw"] == "2020-05-01T10:00:00+02:00"
    assert obs["clinical_time"].isoformat() == "2020-05-01T08:00:00+00:00"
    assert obs["line"] == 2 and obs["version"] == 1
    # The input is kept, gzip-compressed, named by the SHA-256 of the bytes received; zcat gives them back.
    kept = list((cl.open_lake(tmp_path / "lake").root / "raw").rglob("*"))
    files = [f for f in kept if f.is_file()]
    received = (tmp_path / "in.ndjson").read_bytes()
    assert [f.name for f in files] == [f"{hashlib.sha256(received).hexdigest()}.ndjson.gz"]
    assert gzip.decompress(files[0].read_bytes()) == received
    # A lake from before compression holds the plain copy: the same input again adds no second one.
    plain = files[0].with_name(files[0].name.removesuffix(".gz"))
    plain.write_bytes(received)
    files[0].unlink()
    cl.ingest_fhir([tmp_path / "in.ndjson"], lake=tmp_path / "lake")
    assert [f for f in plain.parent.iterdir()] == [plain]


# A record is any JSON value; whatever it is, it is stored or quarantined and the counts add up.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
resources = st.fixed_dictionaries(
    {
        "resourceType": st.sampled_from(["Patient", "Observation", "Nope", 3]),
        "id": st.one_of(
            st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True), st.integers(-1000, 1000), st.just("bad id")
        ),
    },
    optional={"meta": st.one_of(st.just({"versionId": "1"}), st.just([])), "note": json_values},
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.one_of(resources, json_values), min_size=1, max_size=12))
def test_any_input_reconciles_and_round_trips(tmp_path_factory: pytest.TempPathFactory, records: list) -> None:
    folder = tmp_path_factory.mktemp("prop")
    source = ndjson(folder / "in.ndjson", *records)
    summary = cl.ingest_fhir([source], lake=folder / "lake", keep_raw=False)
    assert summary.reconciles and summary.read == len(records)
    for row in cl.open_lake(folder / "lake").sql("SELECT line, resource FROM fhir_resources").to_pylist():
        assert orjson.loads(row["resource"]) == records[row["line"] - 1]
