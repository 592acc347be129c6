"""Where the CLI writes: people read stderr, scripts read stdout (``--json``)."""

from __future__ import annotations

import sys
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

err = Console(stderr=True)
out = Console()


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
