"""Benchmark patient matching (Splink on DuckDB) against a naive exact-key match, on >= 1 M Patient records.

    python bench/match.py                        # 1,000,000 Patient records (input and lake cached)
    python bench/match.py --patients 50000       # a quicker look

The input: ``carelake.generate_fhir`` makes ``--base`` people with ``duplicates=0.05`` once (its
ground truth lists each person's second record), and copies of those Patient resources are written as
NDJSON until there are ``--patients`` records. Each copy is a different set of people: new ids, and a
copy-specific family-name suffix, birth-date shift, SSN, MRN, phone, e-mail and house number, applied the
same way to both records of a duplicate pair so the generator's changes between them (nickname, typo,
swapped birth date, move, new phone, missing SSN) survive. The truth is the generator's, copied.

Prints, for carelake (``match_patients``, DuckDB) and the peer measured in the same run, a plain
deterministic match in DuckDB SQL (records equal on lower-cased given name, family name and birth date,
what one writes without a linkage tool): seconds, records/s, peak RSS (process tree) and pairs, precision
and recall against the truth; then the ratios. Ingestion is timed separately. Writes bench/out/match.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
from pathlib import Path

from _measure import measure  # bench/ is on sys.path when a benchmark runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Copy k of the population gets family-name suffix SUFFIXES[k % n] + SUFFIXES[k // n % n] (copy 0: none).
SUFFIXES = ["", "son", "berg", "ley", "ton", "man", "field", "wood", "ford", "well", "by", "er", "ski", "ez",
            "ini", "ov", "sen", "stein", "dale", "more", "ham", "croft", "ard", "ing", "worth"]  # fmt: skip


def base_population(out: Path, people: int, seed: int) -> Path:
    """Generate the base people once; keep only their Patient records and the duplicates' truth."""
    import carelake as cl

    folder = out / f"match-base-{people}-seed{seed}"
    if (folder / "Patient.ndjson").exists() and (folder / "duplicates.parquet").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    generated = out / f"match-base-{people}-seed{seed}.generated"
    print(f"generating {people:,} people (once) ...", flush=True)
    cl.generate_fhir(generated, patients=people, seed=seed, duplicates=0.05)
    folder.mkdir(parents=True)
    shutil.move(generated / "Patient.ndjson", folder / "Patient.ndjson")
    shutil.move(generated / "ground_truth" / "duplicates.parquet", folder / "duplicates.parquet")
    shutil.rmtree(generated)
    return folder


def _vary(resource: dict, copy: int) -> dict:
    """The same person shifted into copy ``copy``: a different person, the same within-pair differences."""
    if copy == 0:
        return resource
    r = dict(resource)
    r["id"] = _copy_id(resource["id"], copy)
    suffix = SUFFIXES[copy % len(SUFFIXES)] + SUFFIXES[copy // len(SUFFIXES) % len(SUFFIXES)]
    r["name"] = [{**n, "family": n["family"] + suffix} if "family" in n else n for n in resource.get("name", [])]
    if "birthDate" in resource:
        born = dt.date.fromisoformat(resource["birthDate"]) - dt.timedelta(days=(copy * 97) % 7300)
        r["birthDate"] = born.isoformat()
    identifiers = []
    for ident in resource.get("identifier", []):
        value = ident.get("value", "")
        if ident.get("system") == "http://hl7.org/fhir/sid/us-ssn":
            digits = (int(value.replace("-", "")) + copy * 7_919_333) % 10**9
            value = f"{digits // 10**6:03d}-{digits // 10**4 % 100:02d}-{digits % 10**4:04d}"
        else:
            value = f"{value}{copy:03d}"
        identifiers.append({**ident, "value": value})
    r["identifier"] = identifiers
    telecom = []
    for t in resource.get("telecom", []):
        value = t.get("value", "")
        if t.get("system") == "phone" and len(value) == 14:  # (217) 555-8958
            local = (int(value[6:9] + value[10:]) + copy * 1_000_003) % 10**7
            value = f"{value[:6]}{local // 10**4:03d}-{local % 10**4:04d}"
        elif t.get("system") == "email":
            value = f"c{copy}.{value}"
        telecom.append({**t, "value": value})
    r["telecom"] = telecom
    addresses = []
    for a in resource.get("address", []):
        number, _, street = (a.get("line") or [""])[0].partition(" ")
        line = f"{int(number) + copy * 10_000} {street}" if number.isdigit() else f"{number} {street}"
        addresses.append({**a, "line": [line]})
    r["address"] = addresses
    return r


def _copy_id(patient_id: str, copy: int) -> str:
    return f"{patient_id[:24]}{copy:012d}" if copy else patient_id


def build_input(out: Path, base: Path, records: int) -> tuple[Path, Path, int]:
    """Patient NDJSON with ``records`` records and the truth pairs (cached by base and size)."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    stem = f"{base.name}-{records}"
    target, truth_path = out / f"{stem}.ndjson", out / f"{stem}-truth.parquet"
    if target.exists() and truth_path.exists():
        return target, truth_path, pq.read_metadata(truth_path).num_rows
    resources = [orjson.loads(line) for line in (base / "Patient.ndjson").read_bytes().splitlines() if line]
    truth = pq.read_table(base / "duplicates.parquet").to_pylist()
    partial = target.with_suffix(".partial")
    written, copy, left, right = 0, 0, [], []
    with partial.open("wb") as f:
        while written < records:
            take = resources[: records - written]
            f.write(b"".join(orjson.dumps(_vary(r, copy)) + b"\n" for r in take))
            kept = {r["id"] for r in take}
            for t in truth:
                if t["patient_id"] in kept and t["duplicate_patient_id"] in kept:
                    left.append(_copy_id(t["patient_id"], copy))
                    right.append(_copy_id(t["duplicate_patient_id"], copy))
            written += len(take)
            copy += 1
    partial.rename(target)
    pq.write_table(pa.table({"patient_id": left, "duplicate_patient_id": right}), truth_path)
    return target, truth_path, len(left)


def ingest(out: Path, source: Path, records: int) -> tuple[Path, float | None]:
    lake = out / f"{source.stem}-lake"
    if (lake / "carelake.json").exists():
        return lake, None
    shutil.rmtree(lake, ignore_errors=True)
    seconds, _, stdout = measure(
        "import carelake as cl, json; "
        f"s = cl.ingest_fhir([{str(source)!r}], lake={str(lake)!r}, keep_raw=False); print(json.dumps(s.to_dict()))"
    )
    summary = json.loads(stdout)
    if summary["stored"] != records:
        raise SystemExit(f"ingest stored {summary['stored']:,} of {records:,} Patient records")
    return lake, seconds


def accuracy(pairs: list[Path], truth: Path) -> dict[str, float]:
    """Precision and recall of predicted pairs (patient_id_l, patient_id_r) against the truth pairs."""
    import duckdb

    con = duckdb.connect()
    source = f"read_parquet({[str(p) for p in pairs]!r})"
    row = con.sql(f"""
        WITH p AS (SELECT DISTINCT least(patient_id_l, patient_id_r) AS a, greatest(patient_id_l, patient_id_r) AS b
                   FROM {source}),
             t AS (SELECT least(patient_id, duplicate_patient_id) AS a, greatest(patient_id, duplicate_patient_id) AS b
                   FROM read_parquet('{truth}'))
        SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM t), (SELECT count(*) FROM p JOIN t USING (a, b))
    """).fetchall()[0]
    predicted, true, hits = row
    return {
        "pairs": predicted,
        "true_pairs": true,
        "true_positives": hits,
        "precision": hits / predicted if predicted else 0.0,
        "recall": hits / true if true else 0.0,
    }


BASELINE = """
import sys, carelake as cl
lake = cl.open_lake(sys.argv[1] if len(sys.argv) > 1 else {lake!r}, create=False)
eng = lake.connect("duckdb")
eng.connection.execute('''
COPY (
  WITH k AS (
    SELECT id,
           lower(json_extract_string(resource, '$.name[0].given[0]')) AS given,
           lower(json_extract_string(resource, '$.name[0].family')) AS family,
           json_extract_string(resource, '$.birthDate') AS born
    FROM Patient)
  SELECT a.id AS patient_id_l, b.id AS patient_id_r
  FROM k AS a JOIN k AS b ON a.given = b.given AND a.family = b.family AND a.born = b.born AND a.id < b.id
) TO {target!r} (FORMAT parquet)''')
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000, help="Patient records to match")
    parser.add_argument("--base", type=int, default=20_000, help="people generated once and copied")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import carelake as cl

    base = base_population(args.out, args.base, args.seed)
    source, truth, true_pairs = build_input(args.out, base, args.patients)
    print(f"input: {source} {source.stat().st_size / 1e6:,.0f} MB, {args.patients:,} Patient records, "
          f"{true_pairs:,} true duplicate pairs", flush=True)  # fmt: skip
    lake, ingest_seconds = ingest(args.out, source, args.patients)
    if ingest_seconds is not None:
        print(f"ingest: {ingest_seconds:,.1f} s ({args.patients / ingest_seconds:,.0f} records/s)", flush=True)

    results: dict[str, dict[str, float]] = {}
    print(f"{'tool':<34}{'seconds':>9}{'records/s':>11}{'peak RSS MiB':>14}{'pairs':>10}{'precision':>11}{'recall':>8}")

    def record(name: str, seconds: float, rss: float, acc: dict[str, float], extra: dict | None = None) -> None:
        results[name] = {"seconds": seconds, "records_s": args.patients / seconds, "peak_rss_mib": rss, **acc}
        results[name].update(extra or {})
        r = results[name]
        print(f"{name:<34}{seconds:>9.1f}{r['records_s']:>11,.0f}{rss:>14,.0f}{r['pairs']:>10,}"
              f"{r['precision']:>11.4f}{r['recall']:>8.4f}", flush=True)  # fmt: skip

    seconds, rss, stdout = measure(
        "import carelake as cl, json; from carelake.match import match_patients; "
        f"s = match_patients(cl.open_lake({str(lake)!r}, create=False), threshold={args.threshold!r}); "
        "print(json.dumps(s.to_dict()))"
    )
    summary = json.loads(stdout)
    acc = accuracy(cl.open_lake(lake, create=False).files("patient_match_pairs"), truth)
    record(
        "carelake match_patients (duckdb)",
        seconds,
        rss,
        acc,
        {
            "candidate_pairs": summary["candidate_pairs"],
            "persons_with_multiple_records": summary["persons_with_multiple_records"],
            "stage_seconds": summary["stage_seconds"],
        },
    )
    print(f"  candidate pairs scored: {summary['candidate_pairs']:,}; stages (s): {summary['stage_seconds']}")

    target = args.out / f"{source.stem}-baseline.parquet"
    seconds, rss, _ = measure(BASELINE.format(lake=str(lake), target=str(target)))
    record("exact key: name + birth date (SQL)", seconds, rss, accuracy([target], truth))

    ours, peer = results["carelake match_patients (duckdb)"], results["exact key: name + birth date (SQL)"]
    print(f"carelake / exact-key SQL: {ours['records_s'] / peer['records_s']:.2f}x the speed, "
          f"recall {ours['recall']:.3f} vs {peer['recall']:.3f}, precision {ours['precision']:.3f} vs "
          f"{peer['precision']:.3f}")  # fmt: skip
    print(f"targets: precision >= 0.95 {'met' if ours['precision'] >= 0.95 else 'NOT met'}, "
          f"recall >= 0.90 {'met' if ours['recall'] >= 0.90 else 'NOT met'}")  # fmt: skip
    report = {
        "patients": args.patients,
        "base_people": args.base,
        "true_pairs": true_pairs,
        "input_mb": source.stat().st_size / 1e6,
        "ingest_seconds": ingest_seconds,
        "results": results,
    }
    (args.out / "match.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
