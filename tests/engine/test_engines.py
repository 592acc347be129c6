"""The engine layer: one SQL text, two engines, same answers; untranslatable SQL is a named error."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import carelake as cl
from carelake.engine import make_engine, to_dialect
from carelake.errors import QueryError


def test_translation_to_spark() -> None:
    assert to_dialect("SELECT list_value(1, 2) AS xs", "spark") == "SELECT ARRAY(1, 2) AS xs"
    assert to_dialect("SELECT 1", "duckdb") == "SELECT 1"


def test_unparsable_sql_is_a_query_error() -> None:
    with pytest.raises(cl.QueryError, match="cannot translate this SQL to spark"):
        to_dialect("SELECT FROM WHERE (", "spark")


def test_unknown_engine_is_a_config_error() -> None:
    with pytest.raises(cl.ConfigError, match="choose one of: duckdb, spark"):
        make_engine("oracle")


def test_register_query_and_write(engine: str, tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    ts = pa.array([0, 86_400_000_000], type=pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"k": ["a", "b"], "v": [1, 2], "t": ts}), source)
    eng = make_engine(engine)
    eng.register_parquet("t_in", [source])
    eng.create_view("doubled", "SELECT k, v * 2 AS v2, t FROM t_in")
    result = eng.query("SELECT k, v2, t FROM doubled ORDER BY k")
    assert result.column("v2").to_pylist() == [2, 4]
    assert result.schema.field("t").type == pa.timestamp("us", tz="UTC")
    files = eng.write_parquet("SELECT k, v2 FROM doubled WHERE v2 > 2", tmp_path / "out")
    assert pa.concat_tables([pq.read_table(f) for f in files]).column("k").to_pylist() == ["b"]
    with pytest.raises(cl.QueryError):
        eng.query("SELECT missing_column FROM doubled")


JSON_SAMPLES = [
    '{"resourceType": "Patient", "id": "a", "meta": {"versionId": "2"}, "identifier": [{"system": "s", "value": "v"}]}',
    '{"id": 12, "meta": null, "identifier": {"system": "one", "value": "object"}}',
    '{"id": null, "x": [1, 2], "b": true, "n": 1.5}',
    "[1, 2]",
    '"just a string"',
    "{not json",
    '{"resourceType": "Pat\\"ient\\u00e9", "id": "b", "meta": {"versionId": 3, "tag": [{"code": "x"}]}}',
]


def test_carelake_json_functions_agree(engine: str, tmp_path: Path) -> None:
    source = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"i": list(range(len(JSON_SAMPLES))), "t": JSON_SAMPLES}), source)
    eng = make_engine(engine)
    eng.register_parquet("docs", [source])
    rows = eng.query("""
        SELECT i, cl_json_valid(t) AS valid,
               CASE WHEN cl_json_valid(t) THEN cl_json_kinds(t, ['$.id', '$.meta', '$.x', '$.b', '$.n', '$.nope']) END
                 AS kinds,
               CASE WHEN cl_json_valid(t) THEN cl_json_strings(t, ['$.resourceType', '$.id', '$.meta.versionId']) END
                 AS strings,
               CASE WHEN cl_json_valid(t) THEN cl_json_strings(t, ['$.x', '$.b', '$.n', '$.meta', '$.meta.tag']) END
                 AS texts,
               CASE WHEN cl_json_valid(t) THEN cl_json_identifiers(t) END AS idents
        FROM docs ORDER BY i""").to_pylist()
    assert [r["valid"] for r in rows] == [True, True, True, True, True, False, True]
    assert rows[0]["kinds"] == ["string", "object", None, None, None, None]
    assert rows[1]["kinds"][:2] == ["number", "null"]
    assert rows[2]["kinds"] == ["null", None, "array", "boolean", "number", None]
    assert rows[0]["strings"] == ["Patient", "a", "2"]
    # Strings unescaped; numbers, booleans, arrays and objects as compact JSON text; JSON null and absent as NULL.
    assert rows[1]["strings"] == [None, "12", None] and rows[6]["strings"] == ['Pat"ienté', "b", "3"]
    assert rows[2]["texts"] == ["[1,2]", "true", "1.5", None, None]
    assert rows[6]["texts"] == [None, None, None, '{"versionId":3,"tag":[{"code":"x"}]}', '[{"code":"x"}]']
    assert rows[0]["idents"] == [{"system": "s", "value": "v"}]
    assert rows[1]["idents"] == [{"system": "one", "value": "object"}]
    assert rows[2]["idents"] is None


def test_a_statement_beyond_the_memory_limit_is_retried_then_a_clear_error(tmp_path: Path) -> None:
    from carelake.engine._duckdb import DuckDBEngine

    eng = DuckDBEngine(threads=2, memory_limit="64MB")
    try:
        # A list aggregate cannot spill: it exceeds 64 MB on any number of threads, so the retry fails too.
        big = "SELECT i % 2 AS g, list(repeat('x', 64) || i) AS l FROM range(400000) t(i) GROUP BY g"
        with pytest.raises(QueryError, match="Out of Memory"):
            eng.write_parquet(big, tmp_path / "big")
        assert list((tmp_path / "big").iterdir()) == []  # no partial file is left behind
        assert eng.query("SELECT current_setting('threads') AS t").column("t")[0].as_py() == 2  # restored
        with pytest.raises(QueryError, match="Out of Memory"):  # a query is retried on one thread the same way
            eng.query(big.replace("400000", "1000000"))  # (its result needs no Parquet buffers, so more rows)
        assert eng.query("SELECT current_setting('threads') AS t").column("t")[0].as_py() == 2
        small = eng.write_parquet("SELECT 1 AS x", tmp_path / "small")
        assert eng.query(f"SELECT * FROM '{small[0]}'").column("x").to_pylist() == [1]
    finally:
        eng.close()


@pytest.mark.spark
def test_the_spark_function_jar_is_built_once_and_needs_javac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    from carelake.engine._spark_jar import udf_jar

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    jar = udf_jar()
    assert jar is not None and jar.parent == tmp_path / "cache" / "carelake" / "spark"
    assert zipfile.ZipFile(jar).namelist() == ["carelake/spark/VariantScale.class"]
    built = jar.stat().st_mtime_ns
    assert udf_jar() == jar and jar.stat().st_mtime_ns == built  # cached: javac runs once
    assert [p.name for p in jar.parent.iterdir()] == [jar.name]  # no temporary folder left behind

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert udf_jar() is None  # a JRE only: no jar, and the engine still starts

    broken = tmp_path / "jdk" / "bin" / "javac"  # a javac that fails: a loud, named error, not a silent gap
    broken.parent.mkdir(parents=True)
    broken.write_text("#!/bin/sh\necho 'error: invalid target release: 17' >&2\nexit 2\n")
    broken.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(cl.EngineError, match="invalid target release") as caught:
        udf_jar()
    assert "JDK 17" in (caught.value.hint or "")
    assert list((tmp_path / "empty" / "carelake" / "spark").iterdir()) == []  # no half-built jar left


@pytest.mark.spark
def test_a_spark_session_without_the_function_says_what_to_install(capfd: pytest.CaptureFixture[str]) -> None:
    from pyspark.sql.types import IntegerType

    from carelake.engine._spark_jar import CLASS, FUNCTION

    eng = make_engine("spark")
    boundary = "SELECT cl_fp_scale(cl_fp_parse('1.50')) AS s"
    assert eng.query(boundary).column("s")[0].as_py() == 2
    eng.spark.sql(f"DROP TEMPORARY FUNCTION {FUNCTION}")  # what a session started without javac lacks
    try:
        with pytest.raises(QueryError, match="needs carelake's Java function") as caught:
            eng.query(boundary)
        assert "install a JDK" in (caught.value.hint or "")
        assert "Exception" not in capfd.readouterr().err  # pyspark's log of the JVM stack trace is silenced
    finally:
        eng.spark.udf.registerJavaFunction(FUNCTION, CLASS, IntegerType())


@pytest.mark.spark
def test_spark_connect_gets_the_java_function_too() -> None:
    # A local Spark Connect server (pyspark starts one for a "local" remote), in a fresh interpreter: pyspark
    # refuses a Connect session beside the classic one this test process holds. The jar travels as an artifact.
    import subprocess
    import sys

    code = (
        "from carelake.engine import make_engine\n"
        "eng = make_engine('spark', spark_remote='local[1]')\n"
        "assert type(eng.spark).__module__.startswith('pyspark.sql.connect')\n"
        "sql = \"SELECT list_transform([cl_fp_parse('2.000'), cl_fp_parse('7')], lambda x: cl_fp_scale(x)) AS s\"\n"
        "print(eng.query(sql).column('s').to_pylist())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[[3, 0]]"
