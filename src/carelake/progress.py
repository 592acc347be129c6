"""The seam between long jobs and whoever watches them (a terminal bar, a log, nothing)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
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


class StageTimer:
    """Seconds per stage of a job, for its summary: users tune what they can see."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time a block; a stage timed again adds up."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._last = time.perf_counter()
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + self._last - start, 3)

    def lap(self, stage: str) -> dict[str, float]:
        """End ``stage`` now: it took the time since the last lap or timed block (or the timer's start)."""
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 3)
        self._last = now
        return self.seconds
