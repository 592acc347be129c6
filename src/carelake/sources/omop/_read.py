"""Find an OMOP CDM's tables (CSV or TSV, gzipped or not, Parquet or a DuckDB database) and stream their rows as
text: for ingestion, and for the vocabulary an export maps codes with.

Every value is read as the text it was written as, so checking it against the CDM types is one SQL step for
all formats, and a value that does not fit is quarantined with its line rather than lost in a parser.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa

from carelake.errors import InputError

BATCH_ROWS = 50_000
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz")
PARQUET_SUFFIXES = (".parquet",)
DATABASE_SUFFIXES = (".duckdb", ".db")
FILE_INDEX, LINE = "cl_file_index", "cl_line"

Kind = Literal["csv", "parquet", "duckdb"]


@dataclass(frozen=True)
class TableSource:
    """Where one CDM table's rows are: a file, or a table inside a database file."""

    table: str
    path: Path
    kind: Kind
    relation: str | None = None  # the schema-qualified table name inside a database

    @property
    def name(self) -> str:
        """How locators name it: the file, or ``database.duckdb#schema.table``."""
        return f"{self.path}#{self.relation}" if self.relation else str(self.path)


@dataclass(frozen=True)
class BadRow:
    line: int
    rule: str
    message: str
    record: str


def discover(path: Path, known: set[str]) -> tuple[list[TableSource], list[tuple[str, str]]]:
    """The CDM tables under ``path`` (a folder of files, or a database file) and the files passed over, with why."""
    if not path.exists():
        raise InputError(f"no such file or directory: {path}", hint="pass a folder of CDM tables or a DuckDB file")
    if path.is_file():
        if not path.name.lower().endswith(DATABASE_SUFFIXES):
            raise InputError(
                f"{path} is not a folder of CDM tables nor a DuckDB database (.duckdb, .db)",
                hint="pass the folder holding person.csv, visit_occurrence.csv, ... or the database file",
            )
        return _database_tables(path, known), []
    found: list[TableSource] = []
    skipped: list[tuple[str, str]] = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        lower = file.name.lower()
        kind: Kind | None = (
            "csv" if lower.endswith(CSV_SUFFIXES) else "parquet" if lower.endswith(PARQUET_SUFFIXES) else None
        )
        stem = lower.split(".")[0]
        if kind is None:
            skipped.append((str(file), "not a CSV or Parquet file"))
        elif stem not in known:
            skipped.append((str(file), f"{stem!r} is not a table of this CDM version"))
        else:
            found.append(TableSource(stem, file, kind))
    if not found:
        raise InputError(
            f"no OMOP CDM tables found in {path}",
            hint="files must be named after their table: person.csv, PERSON.csv.gz, measurement.parquet, ...",
        )
    return found, skipped


def _database_tables(path: Path, known: set[str]) -> list[TableSource]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables ORDER BY table_schema = 'main' DESC, 1, 2"
        ).fetchall()
    tables: dict[str, TableSource] = {}
    for schema, name in rows:
        if name.lower() in known and name.lower() not in tables:
            tables[name.lower()] = TableSource(name.lower(), path, "duckdb", f'"{schema}"."{name}"')
    if not tables:
        raise InputError(f"{path} holds no OMOP CDM tables", hint="the database needs tables such as person")
    return list(tables.values())


def _dialect(path: Path) -> dict[str, object]:
    """How the CSV is written: comma-separated and quoted, or tab-separated without quoting (Athena's vocabulary
    downloads, whose names hold bare quotes)."""
    with _open_text(path) as handle:
        first = handle.readline()
    return {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if "\t" in first else {}


def header(source: TableSource) -> list[str]:
    """The table's column names, lower-cased, as written."""
    if source.kind == "csv":
        with _open_text(source.path) as handle:
            first = next(csv.reader(handle, **_dialect(source.path)), None)
        if not first:
            raise InputError(f"{source.path}:1: empty file, no header", hint="CDM CSV files start with a header line")
        return [c.strip().lower() for c in first]
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        return [c.lower() for c in pq.read_schema(source.path).names]
    import duckdb

    with duckdb.connect(str(source.path), read_only=True) as con:
        return [d[0].lower() for d in con.execute(f"SELECT * FROM {source.relation} LIMIT 0").description]


def read_rows(
    source: TableSource, columns: list[str], bad: Callable[[BadRow], None], advance: Callable[[float], None]
) -> Iterator[pa.RecordBatch]:
    """The table's rows as batches of text columns named ``columns`` plus the line (or row) number.

    ``columns`` is the table's own header; rows that cannot be split into it go to ``bad``.
    """
    if source.kind == "csv":
        yield from _csv_rows(source, columns, bad, advance)
    else:
        yield from _arrow_rows(source, columns, advance)


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")  # noqa: SIM115 - the wrapper closes it
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")


def _csv_rows(
    source: TableSource, columns: list[str], bad: Callable[[BadRow], None], advance: Callable[[float], None]
) -> Iterator[pa.RecordBatch]:
    width = len(columns)
    values: list[list[str | None]] = [[] for _ in columns]
    lines: list[int] = []
    with _open_text(source.path) as handle:
        reader = csv.reader(handle, **_dialect(source.path))
        try:
            next(reader)
            start = reader.line_num + 1
            for row in reader:
                if len(row) != width:
                    if row:  # a blank line is not a record
                        bad(
                            BadRow(
                                start,
                                "omop-field-count",
                                f"{len(row)} fields where the header has {width}",
                                ",".join(row),
                            )
                        )
                else:
                    lines.append(start)
                    for column, value in zip(values, row, strict=True):
                        column.append(value if value != "" else None)
                    if len(lines) >= BATCH_ROWS:
                        yield _batch(columns, values, lines)
                        advance(len(lines))
                        values, lines = [[] for _ in columns], []
                start = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(
                f"{source.path}:{start}: cannot read the CSV ({exc})",
                hint="the file must be UTF-8 CSV with a header line; check quoting near that line",
            ) from exc
    if lines:
        yield _batch(columns, values, lines)
        advance(len(lines))


def _batch(columns: list[str], values: list[list[str | None]], lines: list[int]) -> pa.RecordBatch:
    arrays = [pa.array(lines, type=pa.int64()), *(pa.array(v, type=pa.string()) for v in values)]
    return pa.record_batch(arrays, names=[LINE, *columns])


def _arrow_rows(source: TableSource, columns: list[str], advance: Callable[[float], None]) -> Iterator[pa.RecordBatch]:
    """Parquet and database rows, numbered from 1 in the order stored, every value cast to text."""
    import pyarrow.compute as pc

    if source.kind == "parquet":
        import pyarrow.parquet as pq

        batches: Iterator[pa.RecordBatch] = pq.ParquetFile(source.path).iter_batches(BATCH_ROWS)
        con = None
    else:
        import duckdb

        con = duckdb.connect(str(source.path), read_only=True)
        batches = iter(con.sql(f"SELECT * FROM {source.relation}").to_arrow_reader(BATCH_ROWS))
    seen = 0
    try:
        for batch in batches:
            arrays = [pa.array(range(seen + 1, seen + 1 + batch.num_rows), type=pa.int64())]
            for column in batch.columns:
                text = pc.cast(column, pa.string())
                arrays.append(pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text))
            seen += batch.num_rows
            yield pa.record_batch(arrays, names=[LINE, *columns])
            advance(batch.num_rows)
    finally:
        if con is not None:
            con.close()
