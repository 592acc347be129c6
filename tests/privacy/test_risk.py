"""Re-identification risk: exact classes on a hand-made lake, k and l checked against an independent pandas
computation from the resources' JSON (generated and Synthea data), the k-anonymity plan, bad options, the
report section, the small-cell rule, and equal results on DuckDB and Spark."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import carelake as cl
import carelake.views as views
from carelake.errors import ConfigError
from carelake.privacy._cells import SMALL_CELL, SMALL_CELL_HAVING, show_count, suppressed
from carelake.privacy._risk import (
    QUASI_IDENTIFIERS,
    Generalisation,
    achieve_k,
    equivalence_classes,
    reidentification_risk,
)

AS_OF = "2025-06-30"
SNOMED = "http://snomed.info/sct"
RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"


# -- a hand-made lake: nine patients whose classes are worked out by hand -------------------------------------------
def _patient(id_: str, gender: str | None = None, birth: str | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": id_}
    if gender:
        resource["gender"] = gender
    if birth:
        resource["birthDate"] = birth
    if "zip" in extra:
        resource["address"] = [{"state": extra.pop("state"), "postalCode": extra.pop("zip")}]
    if "race" in extra:
        text = extra.pop("race")
        resource["extension"] = [{"url": RACE, "extension": [{"url": "text", "valueString": text}]}]
    resource.update(extra)
    return resource


def _condition(id_: str, patient: str, code: str, onset: str, status: str = "confirmed") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id_,
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "verificationStatus": {"coding": [{"code": status}]},
        "onsetDateTime": onset,
    }


TINY_PATIENTS = [
    _patient("p1", "female", "1990-01-15", zip="02139", state="MA"),  # 35 on AS_OF
    _patient("p2", "female", "1988-07-01", zip="02139-4307", state="MA"),  # 36: birthday is the day after AS_OF
    _patient("p3", "female", "1986-08-01", zip="02140", state="MA"),  # 38
    _patient("p9", "female", "1990", zip="02141", state="MA"),  # partial date: counts from 1990-01-01, 35
    _patient("p4", "male", "1930-02-02", zip="10001", state="NY", race="White"),  # 95 -> 90+
    _patient("p5", "male", "1935-06-30", zip="10002", state="NY", race="White"),  # 90 exactly -> 90+
    _patient("p6", "male", "1935-07-01", zip="10003", state="NY"),  # 89 -> 85-89
    _patient("p7", "female", "1920-01-01", zip="60601", state="IL", deceasedDateTime="2000-01-01"),  # 80 at death
    _patient("p8"),  # nothing known
]
TINY_CONDITIONS = [
    _condition("c1", "p1", "44054006", "2020-01-01"),
    _condition("c2", "p1", "44054006", "2021-01-01"),
    _condition("c3", "p1", "38341003", "2022-01-01"),  # p1: 44054006 is the most frequent
    _condition("c4", "p2", "40055000", "2023-01-01"),
    _condition("c5", "p2", "38341003", "2025-05-20"),  # p2: a tie, the smallest code wins; the latest date
    _condition("c6", "p9", "44054006", "2024-01-01", status="entered-in-error"),  # left out: p9 has none
    _condition("c7", "p4", "195662009", "2019-01-01"),
    _condition("c8", "p5", "195662009", "2018-01-01"),
    _condition("c9", "p6", "10509002", "2999-01-01"),  # future-dated: not the lake's latest date
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> cl.Lake:
    """Ingested, views not materialised: the risk functions read the standard views as of now."""
    root = tmp_path_factory.mktemp("tiny")
    for name, resources in (("Patient", TINY_PATIENTS), ("Condition", TINY_CONDITIONS)):
        (root / f"{name}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    lake = cl.open_lake(root / "lake")
    summary = cl.ingest_fhir([root / "Patient.ndjson", root / "Condition.ndjson"], lake=lake)
    assert summary.stored == len(TINY_PATIENTS) + len(TINY_CONDITIONS)
    return lake


def test_tiny_lake_classes_by_hand(tiny: cl.Lake) -> None:
    classes = equivalence_classes(tiny, as_of=AS_OF, sensitive=None).to_pylist()
    u = "unknown"
    assert [tuple(c.values()) for c in classes] == [
        ("35-39", "female", "021", u, u, 4, None),
        ("80-84", "female", "606", u, u, 1, None),  # age at death, not 105 today
        ("85-89", "male", "100", u, u, 1, None),
        ("90+", "male", "100", "White", u, 2, None),  # 95 and 90 share the collapsed band
        (u, u, u, u, u, 1, None),
    ]
    assert list(classes[0]) == [*QUASI_IDENTIFIERS, "records", "distinct_sensitive"]


def test_tiny_lake_ninety_plus_and_zip3(tiny: cl.Lake) -> None:
    def sizes(qi: str, **options: Any) -> dict[str, int]:
        table = equivalence_classes(tiny, quasi_identifiers=[qi], sensitive=None, as_of=AS_OF, **options)
        return dict(zip(table.column(qi).to_pylist(), table.column("records").to_pylist(), strict=True))

    assert sizes("age_band") == {"35-39": 4, "80-84": 1, "85-89": 1, "90+": 2, "unknown": 1}
    assert sizes("age_band", generalisation=Generalisation(20, "zip3")) == {
        "20-39": 4,
        "80-89": 2,  # 20-year bands stop at 89 too
        "90+": 2,
        "unknown": 1,
    }
    assert sizes("zip3") == {"021": 4, "100": 3, "606": 1, "unknown": 1}  # 02139-4307 is 021 as well
    assert sizes("zip3", generalisation=Generalisation(5, "state")) == {"MA": 4, "NY": 3, "IL": 1, "unknown": 1}
    assert sizes("zip3", generalisation=Generalisation(5, "none")) == {"*": 9}


def test_tiny_lake_risk_figures(tiny: cl.Lake) -> None:
    risk = reidentification_risk(tiny, k=2, l=2, as_of=date(2025, 6, 30))
    assert (risk.records, risk.classes, risk.min_class_size, risk.unique_records) == (9, 5, 1, 3)
    assert (risk.classes_below_k, risk.records_below_k, risk.share_below_k) == (3, 3, 3 / 9)
    assert (risk.max_risk, risk.average_risk) == (1.0, 5 / 9)
    # l: the 35-39 class holds 44054006 (p1), 38341003 (p2, the smallest of a tie) and none (p3; p9's only
    # condition was entered in error); every other class has one value.
    assert (risk.min_l, risk.classes_below_l, risk.share_below_l) == (1, 4, 5 / 9)
    assert risk.distinct == {"age_band": 5, "sex": 3, "zip3": 4, "race": 2, "ethnicity": 1}
    assert [b["label"] for b in risk.histogram] == ["1", "2", "3", "4+"]  # k=2: 1, 2, 3, then 2k on
    assert [(b["classes"], b["records"]) for b in risk.histogram] == [(None, None), (None, None), (0, 0), (None, None)]
    assert reidentification_risk(tiny, k=5, as_of=AS_OF).records_below_k == 9
    classes = equivalence_classes(tiny, as_of=AS_OF)
    assert classes.column("distinct_sensitive").to_pylist() == [3, 1, 1, 1, 1]


def test_default_as_of_is_the_latest_date_not_in_the_future(tiny: cl.Lake) -> None:
    assert reidentification_risk(tiny).as_of == "2025-05-20"


def test_achieve_k_on_tiny_lake(tiny: cl.Lake) -> None:
    plan = achieve_k(tiny, k=2, max_suppression=0.0, as_of=AS_OF)
    # No generalisation joins p6, p7 or p8 to anyone: all suppress 3, so the finest one is kept.
    assert [c["records_suppressed"] for c in plan.candidates] == [3] * 9
    assert plan.generalisation == Generalisation(5, "zip3")
    assert (plan.suppressed_ids, plan.records_suppressed, plan.achieved_k, plan.within_budget) == (
        ["p6", "p7", "p8"],
        3,
        2,
        False,
    )
    assert plan.achieved_l == 1  # p4 and p5 share their condition
    only_sex = achieve_k(tiny, k=2, quasi_identifiers=["sex"], as_of=AS_OF)
    assert len(only_sex.candidates) == 1  # nothing to generalise
    assert (only_sex.suppressed_ids, only_sex.achieved_k) == (["p8"], 3)
    assert "suppressed_ids" not in only_sex.to_dict()
    assert json.dumps(plan.to_dict())


# -- independent computation from the resources' JSON --------------------------------------------------------------
def _reference_key(reference: str) -> str:
    return reference.rsplit("/", 1)[-1].removeprefix("urn:uuid:")


def _expected_records(lake: cl.Lake, as_of: str) -> pd.DataFrame:
    """One row per Patient: quasi-identifiers and most frequent condition, from the JSON with plain Python."""
    rows = lake.sql("SELECT resource_type, resource FROM resources WHERE resource_type IN ('Patient', 'Condition')")
    patients, counts = [], {}
    for kind, text in zip(*rows.to_pydict().values(), strict=True):
        r = json.loads(text)
        if kind == "Condition":
            codings = r.get("code", {}).get("coding", [])
            code = next((c["code"] for c in codings if c.get("system") == SNOMED and "code" in c), None)
            code = code or next((c["code"] for c in codings if "code" in c), None)
            status = next((c.get("code") for c in r.get("verificationStatus", {}).get("coding", [])), None)
            subject = r.get("subject", {}).get("reference")
            if code and subject and status not in ("entered-in-error", "refuted"):
                key = (_reference_key(subject), code)
                counts[key] = counts.get(key, 0) + 1
            continue
        birth, death = r.get("birthDate"), r.get("deceasedDateTime", "")[:10]
        ref = date.fromisoformat(death if len(death) == 10 and death < as_of else as_of)
        age = None
        if birth:
            born = date.fromisoformat((birth + "-01-01")[:10] if len(birth) == 4 else (birth + "-01")[:10])
            age = ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day))
        address = r.get("address", [])
        postal = next((a["postalCode"] for a in address if "postalCode" in a), None)

        def text_of(url: str, r: dict = r) -> str:
            for ext in r.get("extension", []):
                if ext.get("url") == url:
                    for sub in ext.get("extension", []):
                        if sub.get("url") == "text":
                            return sub["valueString"]
            return "unknown"

        patients.append(
            {
                "id": r["id"],
                "age": age if age is not None and age >= 0 else None,
                "sex": r.get("gender", "unknown"),
                "zip3": postal.strip()[:3] if postal and len(postal.strip()) >= 3 else "unknown",
                "state": next((a["state"] for a in address if "state" in a), "unknown"),
                "race": text_of(RACE),
                "ethnicity": text_of(ETHNICITY),
            }
        )
    best: dict[str, tuple[int, str]] = {}
    for (patient, code), n in counts.items():
        if patient not in best or (-n, code) < (-best[patient][0], best[patient][1]):
            best[patient] = (n, code)
    frame = pd.DataFrame(patients)
    frame["sensitive"] = [best[p][1] if p in best else "none" for p in frame["id"]]
    return frame


def _generalise(frame: pd.DataFrame, gen: Generalisation) -> pd.DataFrame:
    def band(age: float | None) -> str:
        if age is None or pd.isna(age):
            return "unknown"
        if age >= 90:
            return "90+"
        low = int(age) // gen.age_band_years * gen.age_band_years
        return f"{low}-{min(low + gen.age_band_years - 1, 89)}"

    out = frame.copy()
    out["age_band"] = [band(a) for a in frame["age"].astype(object)]
    out["zip3"] = {"zip3": frame["zip3"], "state": frame["state"], "none": "*"}[gen.geography]
    return out


def _expected_classes(frame: pd.DataFrame, qis: list[str], gen: Generalisation) -> pd.DataFrame:
    grouped = _generalise(frame, gen).groupby(qis, dropna=False)["sensitive"]
    out = pd.concat([grouped.size().rename("records"), grouped.nunique().rename("distinct_sensitive")], axis=1)
    return out.reset_index().sort_values(qis).reset_index(drop=True)


def _assert_same_classes(lake: cl.Lake, frame: pd.DataFrame, qis: list[str], gen: Generalisation) -> None:
    got = equivalence_classes(lake, quasi_identifiers=qis, as_of=AS_OF, generalisation=gen).to_pandas()
    expected = _expected_classes(frame, qis, gen)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> cl.Lake:
    """A few hundred generated patients, their conditions, and the two standard views they need."""
    root = tmp_path_factory.mktemp("generated")
    cl.generate_fhir(root / "fhir", patients=400, seed=23)
    lake = cl.open_lake(root / "lake")
    cl.ingest_fhir([root / "fhir" / "Patient.ndjson", root / "fhir" / "Condition.ndjson"], lake=lake)
    views.materialize([v for v in views.standard() if v["name"] in ("patients", "conditions")], lake=lake)
    return lake


def test_tiny_lake_matches_independent_computation(tiny: cl.Lake) -> None:
    frame = _expected_records(tiny, AS_OF)
    for gen in (Generalisation(), Generalisation(10, "state"), Generalisation(20, "none")):
        _assert_same_classes(tiny, frame, list(QUASI_IDENTIFIERS), gen)


def test_generated_lake_k_and_l_match_independent_computation(generated: cl.Lake) -> None:
    frame = _expected_records(generated, AS_OF)
    assert len(frame) == 400 and (frame["sensitive"] != "none").sum() > 300
    for qis, gen in [
        (list(QUASI_IDENTIFIERS), Generalisation()),
        (["age_band", "sex", "zip3"], Generalisation(10, "state")),
        (["age_band", "sex", "race"], Generalisation(20, "none")),
    ]:
        _assert_same_classes(generated, frame, qis, gen)
        classes = _expected_classes(frame, qis, gen)
        sizes, diversity = classes["records"], classes["distinct_sensitive"]
        risk = reidentification_risk(generated, quasi_identifiers=qis, k=11, l=2, as_of=AS_OF, generalisation=gen)
        assert risk.records == 400 and risk.classes == len(classes)
        assert risk.min_class_size == sizes.min()
        assert risk.records_below_k == sizes[sizes < 11].sum()
        assert risk.share_below_k == pytest.approx(sizes[sizes < 11].sum() / 400)
        assert risk.classes_below_k == (sizes < 11).sum()
        assert risk.unique_records == (sizes == 1).sum()
        assert risk.min_l == diversity.min()
        assert risk.classes_below_l == (diversity < 2).sum()
        assert risk.share_below_l == pytest.approx(sizes[diversity < 2].sum() / 400)
        assert risk.distinct == {q: _generalise(frame, gen)[q].nunique() for q in qis}
        shown = [b for b in risk.histogram if b["records"] is not None]
        assert all(b["records"] == 0 or b["records"] >= SMALL_CELL for b in risk.histogram if b in shown)
        for b in shown:
            inside = sizes[(sizes >= b["from"]) & ((sizes <= b["to"]) if b["to"] else True)]
            assert (b["classes"], b["records"]) == (len(inside), inside.sum())
        covered = sum(sizes[(sizes >= b["from"]) & (sizes <= (b["to"] or 10**9))].sum() for b in risk.histogram)
        assert covered == 400  # the bins cover every class once


def test_achieve_k_reaches_the_target(generated: cl.Lake) -> None:
    frame = _expected_records(generated, AS_OF)
    for k, qis, budget in [(5, list(QUASI_IDENTIFIERS), 0.05), (5, ["age_band", "sex", "zip3"], 0.2)]:
        plan = achieve_k(generated, k=k, quasi_identifiers=qis, max_suppression=budget, as_of=AS_OF)
        assert plan.achieved_k is not None and plan.achieved_k >= k
        coarse = _generalise(frame, plan.generalisation)
        size = coarse.groupby(qis)["id"].transform("size")
        assert plan.suppressed_ids == sorted(coarse.loc[size < k, "id"])  # exactly the records in small classes
        assert plan.records_suppressed == len(plan.suppressed_ids)
        left = coarse[~coarse["id"].isin(plan.suppressed_ids)]
        assert left.groupby(qis).size().min() == plan.achieved_k
        # The first candidate within budget is chosen, and none before it was within budget.
        tried = [(c["age_band_years"], c["geography"]) for c in plan.candidates]
        chosen = tried.index((plan.generalisation.age_band_years, plan.generalisation.geography))
        if plan.within_budget:
            assert chosen == len(tried) - 1
            assert all(c["records_suppressed"] > budget * 400 for c in plan.candidates[:-1])
        else:
            assert len(tried) == 9 and plan.records_suppressed == min(c["records_suppressed"] for c in plan.candidates)
        after = reidentification_risk(
            generated, quasi_identifiers=qis, k=k, as_of=AS_OF, generalisation=plan.generalisation
        )
        assert after.records_below_k == plan.records_suppressed
    assert plan.within_budget  # three quasi-identifiers generalise to k=5 within a fifth of the records


def test_bad_options_are_config_errors(tiny: cl.Lake) -> None:
    with pytest.raises(ConfigError, match=r"unknown quasi-identifier 'zip5'; allowed: age_band, sex, zip3") as err:
        reidentification_risk(tiny, quasi_identifiers=["age_band", "zip5"])
    assert "did you mean 'zip3'" in str(err.value)
    with pytest.raises(ConfigError, match="unknown quasi-identifier 'postcode'"):
        achieve_k(tiny, k=5, quasi_identifiers=("postcode",))
    with pytest.raises(ConfigError, match="no quasi-identifiers"):
        reidentification_risk(tiny, quasi_identifiers=[])
    with pytest.raises(ConfigError, match="repeat"):
        reidentification_risk(tiny, quasi_identifiers=["sex", "sex"])
    with pytest.raises(ConfigError, match="unknown sensitive attribute 'diagnosis'; allowed: condition"):
        reidentification_risk(tiny, sensitive="diagnosis")
    with pytest.raises(ConfigError, match="k must be a whole number"):
        reidentification_risk(tiny, k=0)
    with pytest.raises(ConfigError, match="as-of '2025-13-01' is not a calendar date"):
        reidentification_risk(tiny, as_of="2025-13-01")
    with pytest.raises(ConfigError, match="max_suppression"):
        achieve_k(tiny, k=5, max_suppression=1.5)
    with pytest.raises(ConfigError, match="age bands of 7 years"):
        Generalisation(7)
    with pytest.raises(ConfigError, match="unknown geography 'county'"):
        Generalisation(5, "county")  # type: ignore[arg-type]


def test_small_cell_rule() -> None:
    assert [suppressed(n) for n in (0, 1, 10, 11, 500)] == [0, None, None, 11, 500]
    assert suppressed(4, threshold=4) == 4 and suppressed(4, threshold=5) is None
    assert [show_count(n) for n in (0, 3, 11)] == [0, f"< {SMALL_CELL}", 11]
    assert SMALL_CELL == 11 and SMALL_CELL_HAVING == "HAVING count(*) >= 11"
    import carelake.reports._lake as lake_report
    import carelake.reports._views as views_report

    assert lake_report.SMALL_CELL is SMALL_CELL and views_report.SMALL_CELL is SMALL_CELL  # one rule, one place


def test_risk_section_renders(generated: cl.Lake, tmp_path: Path) -> None:
    from carelake.reports import Report
    from carelake.reports._privacy import risk_section

    risk = reidentification_risk(generated, as_of=AS_OF)
    plan = achieve_k(generated, k=5, as_of=AS_OF)
    report = Report("Privacy")
    risk_section(report, risk, plan=plan)
    kinds = [s["kind"] for s in report.sections]
    assert kinds[:3] == ["heading", "text", "metrics"] and "figure" in kinds and kinds.count("table") == 2
    headline = next(s for s in report.sections if s["kind"] == "table")
    assert ["smallest class size", risk.min_class_size] in headline["rows"]
    assert ["distinct values of zip3", risk.distinct["zip3"]] in headline["rows"]
    html = report.save(tmp_path / "privacy.html").read_text()
    assert "Re-identification risk" in html and "plotly" in html
    if any(b["records"] is None for b in risk.histogram):
        assert f"&lt; {SMALL_CELL}" in html


# -- a corpus we did not generate ------------------------------------------------------------------------------------
def test_synthea_corpus_matches_independent_computation(tmp_path: Path, testdata: Path) -> None:
    lake = cl.open_lake(tmp_path / "lake")
    cl.ingest_fhir([testdata / "synthea-fhir-r4"], lake=lake)
    frame = _expected_records(lake, AS_OF)
    assert len(frame) >= 10 and (frame["sensitive"] != "none").any() and (frame["zip3"] != "unknown").any()
    for gen in (Generalisation(), Generalisation(20, "state")):
        _assert_same_classes(lake, frame, list(QUASI_IDENTIFIERS), gen)
    risk = reidentification_risk(lake, as_of=AS_OF, k=2)
    assert risk.records == len(frame) and risk.share_below_k > 0.5  # a handful of people: nearly all unique
    plan = achieve_k(lake, k=2, as_of=AS_OF)
    assert plan.achieved_k is None or plan.achieved_k >= 2
    assert set(plan.suppressed_ids) <= set(frame["id"])


# -- engines ---------------------------------------------------------------------------------------------------------
def test_engines_agree(engine: str, generated: cl.Lake, tiny: cl.Lake) -> None:
    # The generated lake's silver tables are current; the tiny lake's views are read as of now.
    risk, baseline = (
        reidentification_risk(generated, as_of=AS_OF, engine=engine),
        reidentification_risk(generated, as_of=AS_OF),
    )
    assert (risk.engine, baseline.engine) == (engine, "duckdb")
    assert {**risk.to_dict(), "engine": "duckdb"} == baseline.to_dict()
    plan, base_plan = achieve_k(tiny, k=2, engine=engine), achieve_k(tiny, k=2)
    assert plan.as_of == base_plan.as_of == "2025-05-20"  # the default: the latest date not in the future
    assert plan.suppressed_ids == base_plan.suppressed_ids and plan.suppressed_ids
    assert {**plan.to_dict(), "engine": "duckdb"} == base_plan.to_dict()
