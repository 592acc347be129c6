"""The lake's write lock: one writing job at a time, readers never wait."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import IO

from carelake.errors import LakeBusyError

LOCK_FILE = ".lock"


class WriteLock:
    """An exclusive ``flock`` on ``<lake>/.lock``; the kernel drops it if the process dies."""

    def __init__(self, root: Path, *, run_id: str, wait_seconds: float) -> None:
        self.path = root / LOCK_FILE
        self.run_id = run_id
        self.wait_seconds = wait_seconds
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+", encoding="utf-8")
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(self.path)
                    handle.close()
                    raise LakeBusyError(
                        f"the lake {self.path.parent} is being written by another job ({holder})",
                        hint="wait for it to finish, or pass --wait SECONDS to queue behind it",
                    ) from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "run_id": self.run_id, "since": time.time()}))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "unknown holder"
    if not info:
        return "unknown holder"
    return f"run {info.get('run_id')}, pid {info.get('pid')}"
