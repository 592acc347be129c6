"""The Bulk Data $export completion manifest describes exactly the files written."""

from __future__ import annotations

import datetime as dt

import orjson


def test_manifest_lists_every_ndjson_file_with_its_count(export) -> None:
    manifest = orjson.loads((export.path / "manifest.json").read_bytes())
    assert dt.datetime.fromisoformat(manifest["transactionTime"].replace("Z", "+00:00")).tzinfo is not None
    assert manifest["transactionTime"] == "2026-01-01T00:00:00Z"
    assert manifest["requiresAccessToken"] is False
    assert manifest["request"].endswith("$export")
    assert manifest["error"] == []
    listed = {item["url"]: item for item in manifest["output"]}
    on_disk = {p.name for p in export.path.glob("*.ndjson")}
    assert set(listed) == on_disk
    for url, item in listed.items():
        assert "/" not in url and url == f"{item['type']}.ndjson"
        lines = (export.path / url).read_bytes().splitlines()
        assert item["count"] == len(lines) == export.summary.resources[item["type"]]
        assert all(orjson.loads(line)["resourceType"] == item["type"] for line in lines[:20])


def test_manifest_records_how_it_was_made(export) -> None:
    manifest = orjson.loads((export.path / "manifest.json").read_bytes())
    made = manifest["extension"]["carelake-synth"]
    assert made["seed"] == 11 and made["patients"] == 250
    assert sorted(made["groundTruth"]) == sorted(f"ground_truth/{name}.parquet" for name in export.truth)
    assert set(export.truth) == {"patients", "readmissions", "diabetes", "duplicates", "faults"}
