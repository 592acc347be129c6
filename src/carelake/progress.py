"""The seam between long jobs and whoever watches them (a terminal bar, a log, nothing)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives a job's progress; the CLI renders it with rich, the API defaults to silence."""

    def start(self, description: str, total: float | None) -> None: ...

    def advance(self, amount: float) -> None: ...

    def stop(self) -> None: ...


class NoProgress:
    """Progress that goes nowhere: the default for library calls."""

    def start(self, description: str, total: float | None) -> None:
        return None

    def advance(self, amount: float) -> None:
        return None

    def stop(self) -> None:
        return None
