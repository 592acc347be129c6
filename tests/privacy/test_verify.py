"""The leak sweep: known identifiers read off the source lake, and every file of an output searched for them.

Expected identifiers of the Synthea patient below were read off its JSON in
../shared/testdata/synthea-fhir-r4/bulk-ndjson-10-patients/Patient.000.ndjson by hand, not computed by carelake.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import carelake as cl
from carelake.errors import ConfigError, InputError
from carelake.privacy import _verify
from carelake.privacy._known import COMMON_WORDS, known_identifiers, known_views, written_forms
from carelake.privacy._verify import Hit, VerifyResult, verify

SYNTHEA_PATIENT = "a5cb8ce9-cec6-6b23-0990-cbaf753578a4"
SYNTHEA_IDENTIFIERS = {
    ("address", "66801"),
    ("address", "826 Orn Branch"),
    ("address", "Emporia"),
    ("birth_date", "1927-05-21"),
    ("identifier", "999-56-7727"),
    ("identifier", "S99979112"),
    ("identifier", "X83974334X"),
    ("identifier", SYNTHEA_PATIENT),
    ("name", "Donetta1"),
    ("name", "Elisa944"),
    ("name", "Johnson679"),
    ("name", "Ondricka197"),
    ("name", "Elisa944 Johnson679"),
    ("name", "Elisa944 Ondricka197"),
    ("name", "Johnson679, Elisa944"),
    ("name", "Ondricka197, Elisa944"),
    ("name", "Elisa944 Donetta1 Johnson679"),
    ("name", "Elisa944 Donetta1 Ondricka197"),
    ("name", "Elisa944 D. Johnson679"),
    ("name", "Elisa944 D. Ondricka197"),
    ("name", "Mrs. Johnson679"),
    ("name", "Mrs. Ondricka197"),
    ("name", "Leigh689 Adams676"),  # mother's maiden name
    ("phone", "555-849-9756"),
}

# Hand-made people whose names are ordinary words, with a contact and a related person.
HANDMADE = [
    {
        "resourceType": "Patient",
        "id": "hm-1",
        "name": [{"family": "Brown", "given": ["Will"], "prefix": ["Mr."]}],
        "telecom": [{"system": "phone", "value": "n/a"}, {"system": "email", "value": "will.brown@example.org"}],
        "birthDate": "1980-06",
        "address": [{"line": ["12 Quarry Lane"], "city": "Normal", "postalCode": "61761"}],
        "contact": [
            {"name": {"family": "Brown", "given": ["Jo"]}, "telecom": [{"system": "sms", "value": "3095550123"}]}
        ],
    },
    {
        "resourceType": "RelatedPerson",
        "id": "rp-1",
        "patient": {"reference": "Patient/hm-1"},
        "name": [{"text": "Ottilie Brown"}],
        "telecom": [{"system": "url", "value": "https://ottilie.example.org"}],
        "address": [{"line": ["7 Wren Court"]}],
    },
]


@pytest.fixture(scope="module")
def synthea(tmp_path_factory: pytest.TempPathFactory, testdata: Path) -> cl.Lake:
    path = tmp_path_factory.mktemp("verify-synthea") / "lake"
    cl.ingest_fhir([testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients" / "Patient.000.ndjson"], lake=path)
    return cl.open_lake(path)


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory) -> cl.Lake:
    folder = tmp_path_factory.mktemp("verify-handmade")
    source = folder / "people.ndjson"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in HANDMADE))
    cl.ingest_fhir([source], lake=folder / "lake")
    return cl.open_lake(folder / "lake")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, cl.Lake]:
    folder = tmp_path_factory.mktemp("verify-synthetic")
    cl.generate_fhir(folder / "export", patients=30, seed=5)
    cl.ingest_fhir([folder / "export"], lake=folder / "lake")
    return folder / "export", cl.open_lake(folder / "lake")


def rows(table: pa.Table, patient: str) -> set[tuple[str, str]]:
    return {(r["category"], r["value"]) for r in table.to_pylist() if r["patient_id"] == patient}


def where(result: VerifyResult) -> set[tuple[str, str, str]]:
    return {(h.file, h.location, h.category) for h in result.hits}


# --------------------------------------------------------------------------- known identifiers


def test_known_identifiers_of_a_synthea_patient(synthea: cl.Lake) -> None:
    table = known_identifiers(synthea)
    assert table.column_names == ["patient_id", "category", "value"]
    assert rows(table, SYNTHEA_PATIENT) == SYNTHEA_IDENTIFIERS
    assert len(set(table.column("patient_id").to_pylist())) == 13  # the file holds 13 Patient lines
    assert table.num_rows == len(set(map(tuple, (r.values() for r in table.to_pylist()))))  # distinct


def test_known_identifiers_cover_contacts_and_related_persons(handmade: cl.Lake) -> None:
    found = rows(known_identifiers(handmade), "hm-1")
    assert {("name", "Will"), ("name", "Brown"), ("name", "Will Brown"), ("name", "Brown, Will")} <= found
    assert {("name", "Jo Brown"), ("phone", "3095550123")} <= found  # the contact
    assert {("name", "Ottilie Brown"), ("url", "https://ottilie.example.org"), ("address", "7 Wren Court")} <= found
    assert {("email", "will.brown@example.org"), ("birth_date", "1980-06"), ("address", "Normal")} <= found


def test_the_views_are_plain_view_definitions() -> None:
    assert [(v["name"], v["resource"]) for v in known_views()] == [
        ("known_identifiers", "Patient"),
        ("known_identifiers_telecom_address", "Patient"),
        ("known_identifiers_related", "RelatedPerson"),
    ]


@pytest.mark.parametrize(
    ("category", "value", "forms"),
    [
        (
            "birth_date",
            "2019-03-04",
            ["2019-03-04", "03/04/2019", "3/4/2019", "March 4, 2019", "4 March 2019", "Mar 4, 2019"],
        ),
        ("birth_date", "1980-06", ["1980-06"]),
        (
            "phone",
            "+1 (555) 810-7203",
            [
                "+1 (555) 810-7203",
                "5558107203",
                "(555) 810-7203",
                "555-810-7203",
                "555.810.7203",
                "555 810 7203",
                "(555)810-7203",
                "15558107203",
            ],
        ),
        ("phone", "555-0123", ["555-0123", "5550123"]),
        ("identifier", "999-56-7727", ["999-56-7727", "999567727"]),
        ("identifier", "S99979112", ["S99979112"]),
        ("name", "  Elisa944 Johnson679 ", ["Elisa944 Johnson679"]),
        ("email", "", []),
    ],
)
def test_written_forms(category: str, value: str, forms: list[str]) -> None:
    assert written_forms(category, value) == forms


# --------------------------------------------------------------------------- the sweep


def plant(out: Path) -> None:
    """A leaky output folder: the Synthea patient's phone, birth date and name, each in another place and form."""
    notes = pa.table(
        {
            "note_id": ["n1", "n2", "n3"],
            "text": ["no identifiers here", "unremarkable", "call back on (555) 849-9756 after lunch"],
            "tags": pa.array([["follow-up"], ["x", "Elisa944 Johnson679"], []], pa.list_(pa.string())),
            "code": pa.array([1, 2, 3], pa.int64()),
        }
    )
    (out / "silver" / "notes").mkdir(parents=True)
    pq.write_table(notes, out / "silver" / "notes" / "part-0.parquet", row_group_size=2)
    (out / "reports").mkdir()
    (out / "reports" / "summary.html").write_text(
        "<html>\n<body>\n<p>Born 05/21/1927.</p>\n</body>\n</html>\n", encoding="utf-8"
    )


def test_a_planted_leak_is_found_with_its_place(tmp_path: Path, synthea: cl.Lake) -> None:
    plant(tmp_path / "out")
    result = verify(tmp_path / "out", synthea)
    assert where(result) == {
        ("silver/notes/part-0.parquet", "column=text, row=2", "phone"),
        ("silver/notes/part-0.parquet", "column=tags, row=1", "name"),
        ("reports/summary.html", "byte offset 22, line 3", "birth_date"),
    }
    assert not result.passed
    assert result.hit_count == 3
    assert result.files_scanned == 2
    assert result.values_scanned == 3 + 3 + 3  # note ids, note texts and tag elements
    assert result.identifiers > len(SYNTHEA_IDENTIFIERS)


def test_a_report_never_holds_the_identifier(tmp_path: Path, synthea: cl.Lake) -> None:
    plant(tmp_path / "out")
    result = verify(tmp_path / "out", synthea)
    shown = json.dumps(result.to_dict()) + repr(result.hits)
    for secret in ("849-9756", "8499756", "05/21/1927", "1927", "Elisa944", "Johnson679"):
        assert secret not in shown
    assert result.to_dict()["hits_by_category"] == {"birth_date": 1, "name": 1, "phone": 1}
    assert set(Hit.__dataclass_fields__) == {"file", "location", "category"}


def test_a_clean_folder_passes(tmp_path: Path, synthea: cl.Lake) -> None:
    out = tmp_path / "out"
    out.mkdir()
    codes = pa.table(
        {
            "code": ["38341003", "44054006", "2339-0"],
            "display": ["Hypertension", "Diabetes mellitus type 2", "Glucose [Mass/volume] in Blood"],
            "onset": pa.array([18000, 18400, 19000], pa.date32()),
            "synonyms": pa.array([["HTN", "high blood pressure"], [], None], pa.list_(pa.string())),
            "patients": [12, 40, 9],
        }
    )
    pq.write_table(codes, out / "codes.parquet")
    (out / "counts.json").write_text(json.dumps({"patients": 10, "cities": 1, "born_before_1950": 4}))
    with gzip.open(out / "log.txt.gz", "wt") as log:
        log.write("run 20240101 finished: 10 patients, 0 quarantined\n" * 50)
    result = verify(out, synthea)
    assert result.passed, result.hits
    assert result.to_dict()["passed"] is True
    assert result.files_scanned == 3
    assert result.values_scanned == 3 + 3 + 3 + 2  # code, display, onset dates, synonym elements


def test_csv_cells_are_searched_by_column_and_key_columns_are_not_zip_codes(tmp_path: Path, synthea: cl.Lake) -> None:
    # From 10,000 rows on, an export's surrogate keys equal ZIP codes of the source: OMOP's visit_occurrence_id
    # 66801 is a row number, not Emporia's ZIP. The same ZIP in any other column, or inside a key's text, is a hit.
    table = (
        "visit_occurrence_id,person_id,visit_source_value,zip,preceding_visit_occurrence_id\n"
        '66801,1,"AMB",,66801\n'
        '2,66801,"Emporia",66801,\n'
        '3,2,"seen at ""826 Orn Branch"",\nEmporia",,\n'  # a quoted newline: rows are rows, not lines
        "V-66801,3,,,\n"
    )
    expected = {
        ("column=visit_source_value, row=1", "address"),
        ("column=zip, row=1", "address"),
        ("column=visit_source_value, row=2", "address"),
        ("column=visit_occurrence_id, row=3", "address"),
    }
    out = tmp_path / "out"
    out.mkdir()
    (out / "visit_occurrence.csv").write_text(table)
    with gzip.open(out / "visit_occurrence.csv.gz", "wt") as packed:
        packed.write(table)
    (out / "visit_occurrence.tsv").write_text(table.replace(",", "\t"))
    result = verify(out, synthea)
    for name in ("visit_occurrence.csv", "visit_occurrence.csv.gz", "visit_occurrence.tsv"):
        assert {(h.location, h.category) for h in result.hits if h.file == name} == expected, name
    assert result.hit_count == 3 * 4
    assert result.values_scanned == 3 * 4 * 5


def test_a_csv_that_is_not_a_table_is_searched_as_bytes(tmp_path: Path, synthea: cl.Lake) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "ragged.csv").write_text("visit_occurrence_id,zip\n66801,1\n2,66801,extra\n")
    (out / "Elisa944.csv").write_text("")
    (out / "names.csv").write_text("person_id,Johnson679\n1,x\n")
    result = verify(out, synthea)
    assert where(result) == {
        ("ragged.csv", "byte offset 24, line 2", "address"),  # no table, so no key columns: every ZIP is a hit
        ("ragged.csv", "byte offset 34, line 3", "address"),
        ("[name].csv", "file name", "name"),
        ("names.csv", "header", "name"),
    }
    assert result.hit_count == 4 and result.files_scanned == 3


def test_matches_inside_longer_tokens_are_not_hits(tmp_path: Path, synthea: cl.Lake) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "near-misses.txt").write_text(
        "Emporiana X5558499756 Johnson6790 xElisa944 S99979112A 1927-05-21T08:00:00Z 105/21/1927 "
        "ref 999-56-77270 zip 668012 weight=0.66801 gain 66801.5\n"  # digits of a ZIP inside decimal numbers
    )
    assert verify(out, synthea).passed
    (out / "hits.txt").write_text("Emporia, (Johnson679) 1927-05-21 / s99979112 ELISA944 zip 66801.\n")
    hits = verify(out, synthea).hits
    assert sorted(h.category for h in hits) == ["address", "address", "birth_date", "identifier", "name", "name"]
    assert {h.file for h in hits} == {"hits.txt"}


def test_common_words_alone_are_not_hits_but_full_names_are(tmp_path: Path, handmade: cl.Lake) -> None:
    assert {"will", "brown", "normal", "may"} <= COMMON_WORDS
    out = tmp_path / "out"
    out.mkdir()
    (out / "note.txt").write_text("Patient will return in May. Brown discharge. Normal exam. Jo called.\n")
    assert verify(out, handmade).passed  # 'Will', 'Brown', 'Normal' (the city) and 'Jo' are not searched alone
    (out / "leak.txt").write_text("seen with WILL BROWN\nMr. Brown\nBrown, Will\nOttilie\n7 Wren Court\n")
    result = verify(out, handmade)
    assert sorted(h.location for h in result.hits) == [
        "byte offset 10, line 1",
        "byte offset 21, line 2",
        "byte offset 31, line 3",
        "byte offset 51, line 5",
    ]
    assert [h.category for h in result.hits] == ["name", "name", "name", "address"]


def test_matches_across_chunk_boundaries(tmp_path: Path, synthea: cl.Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    note = b"Elisa944 Johnson679 was born 1927-05-21; phone 555.849.9756; SSN 999567727.\n"
    line = b'{"attachment": {"data": "' + base64.b64encode(note * 3) + b'"}}\n'
    (out / "export.ndjson").write_bytes(b"filler line\n" * 3 + line + note * 2)
    with gzip.open(out / "export.ndjson.gz", "wb") as packed:
        packed.write(b"filler line\n" * 3 + line + note * 2)
    expected = where(verify(out, synthea))
    assert len([w for w in expected if "base64" in w[1]]) == 2 * 4  # once per run: name, date, phone, SSN
    assert len([w for w in expected if "base64" not in w[1]]) == 2 * 2 * 4
    for chunk in (1, 7, 64):
        monkeypatch.setattr(_verify, "_CHUNK", chunk)
        assert where(verify(out, synthea)) == expected, chunk


def test_generated_notes_are_searched_inside_base64_attachments(synthetic: tuple[Path, cl.Lake]) -> None:
    export, lake = synthetic
    result = verify(export, lake, categories=["phone", "birth_date"])
    in_notes = {h.category for h in result.hits if h.file == "DocumentReference.ndjson"}
    assert in_notes == {"phone", "birth_date"}
    assert all("(base64-encoded text)" in h.location for h in result.hits if h.file == "DocumentReference.ndjson")
    assert {h.category for h in result.hits if h.file == "Patient.ndjson"} == {"phone", "birth_date"}


def test_progress_advances_by_the_bytes_swept(tmp_path: Path, synthea: cl.Lake) -> None:
    plant(tmp_path / "out")

    class Recorder:
        def __init__(self) -> None:
            self.total: float | None = None
            self.done = 0.0
            self.stopped = False

        def start(self, description: str, total: float | None) -> None:
            self.total = total

        def advance(self, amount: float) -> None:
            self.done += amount

        def stop(self) -> None:
            self.stopped = True

    recorder = Recorder()
    verify(tmp_path / "out", synthea, progress=recorder)
    size = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert recorder.total == size
    assert recorder.done == pytest.approx(size)
    assert recorder.stopped


def test_hits_beyond_max_hits_are_counted_not_kept(tmp_path: Path, synthea: cl.Lake) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "many.txt").write_text("Elisa944\n" * 20)
    result = verify(out, synthea, max_hits=5)
    assert (len(result.hits), result.hit_count, result.to_dict()["hit_count"]) == (5, 20, 20)
    assert result.to_dict()["hits_by_category"] == {"name": 20}


def test_a_file_name_that_holds_an_identifier_is_a_hit_shown_redacted(tmp_path: Path, synthea: cl.Lake) -> None:
    out = tmp_path / "out"
    (out / "bundles").mkdir(parents=True)
    (out / "bundles" / f"Elisa944_Johnson679_{SYNTHEA_PATIENT}.json").write_text("{}")
    result = verify(out, synthea)
    assert where(result) == {
        ("bundles/[name]_[name]_[identifier].json", "file name", "identifier"),
        ("bundles/[name]_[name]_[identifier].json", "file name", "name"),
    }


def test_bad_input(tmp_path: Path, synthea: cl.Lake, handmade: cl.Lake) -> None:
    with pytest.raises(InputError, match="does not exist"):
        verify(tmp_path / "missing", synthea)
    with pytest.raises(ConfigError, match="unknown identifier categories"):
        verify(tmp_path, synthea, categories=["names"])
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(InputError, match=r"cannot read Parquet file broken\.parquet") as caught:
        verify(tmp_path, synthea)
    assert caught.value.hint
    empty = cl.open_lake(tmp_path / "empty-lake")
    with pytest.raises(InputError, match="no identifiers"):
        verify(tmp_path / "empty-lake", empty)


# --------------------------------------------------------------------------- engines


def test_known_identifiers_are_equal_on_both_engines(engine: str, tmp_path: Path, testdata: Path) -> None:
    people = tmp_path / "people.ndjson"
    people.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in HANDMADE))
    patients = testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients" / "Patient.000.ndjson"
    cl.ingest_fhir([patients, people], lake=tmp_path / "lake")
    lake = cl.open_lake(tmp_path / "lake")
    table = known_identifiers(lake, engine=engine)
    assert table.equals(known_identifiers(lake))
    assert {"hm-1", SYNTHEA_PATIENT} <= set(table.column("patient_id").to_pylist())
