"""Where the CLI writes: people read stderr, scripts read stdout (``--json``)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

# soft_wrap: long lines (paths, commands to copy) are never broken, whatever the terminal width.
err = Console(stderr=True, soft_wrap=True)
out = Console()


def say(text: str) -> None:
    """A plain line for people on stderr: no markup or highlighting, so values with brackets print as they are."""
    err.print(text, highlight=False, markup=False)


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout for scripts."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
    sys.stdout.flush()


class RichProgress:
    """A terminal progress bar with rate, shown only when stderr is a terminal."""

    def __init__(self, *, unit_bytes: bool = True) -> None:
        self.unit_bytes = unit_bytes
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, description: str, total: float | None) -> None:
        self.stop()
        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
        if self.unit_bytes and total is not None:
            columns += [DownloadColumn(), TransferSpeedColumn()]
        else:
            columns += [TextColumn("{task.completed:,.0f}/{task.total:,.0f}" if total else "")]
        columns.append(TimeElapsedColumn())
        self._progress = Progress(*columns, console=err, transient=True, disable=not err.is_terminal)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, amount: float) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class TableFormat(StrEnum):
    """How a result table is written: for people (table) or for other tools."""

    table = "table"
    csv = "csv"
    ndjson = "ndjson"
    json = "json"
    parquet = "parquet"


def _flat(result: Any) -> Any:
    """The table with each list, struct or map column as JSON text: CSV cells hold text only."""
    import pyarrow as pa

    for i, field in enumerate(result.schema):
        if pa.types.is_nested(field.type):
            cells = [None if v is None else orjson.dumps(v, default=str).decode() for v in result.column(i).to_pylist()]
            result = result.set_column(i, field.name, pa.array(cells, pa.string()))
    return result


def write_table(result: Any, format: TableFormat, target: Path | None = None) -> None:
    """Write an Arrow table to stdout or a file; the row count goes to stderr."""
    from carelake.errors import InputError

    if format is TableFormat.parquet:
        import pyarrow.parquet as pq

        if target is None:
            raise InputError("--format parquet needs --out FILE", hint="add --out rows.parquet")
        pq.write_table(result, target)
    elif format is TableFormat.csv:
        import pyarrow.csv as pacsv

        pacsv.write_csv(_flat(result), str(target) if target else sys.stdout.buffer)
        sys.stdout.flush()
    elif format in (TableFormat.ndjson, TableFormat.json):
        rows = result.to_pylist()
        if format is TableFormat.json:
            data = orjson.dumps(rows, option=orjson.OPT_INDENT_2, default=str) + b"\n"
        else:
            data = b"".join(orjson.dumps(r, default=str) + b"\n" for r in rows)
        if target:
            target.write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
    else:
        from rich.table import Table

        table = Table()
        for name in result.column_names:
            table.add_column(name)
        for row in result.to_pylist():
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        out.print(table)
    where = f" to {target}" if target else ""
    if target or format is TableFormat.table:
        err.print(f"{result.num_rows:,} row(s){where}", highlight=False, markup=False)
