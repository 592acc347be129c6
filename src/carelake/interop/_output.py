"""An export's output folder: written beside its target and moved into place whole, or not at all."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from carelake.errors import ConfigError


@contextmanager
def export_folder(out: Path, *, kind: str, marker: str) -> Iterator[Path]:
    """A fresh work folder that replaces ``out`` when the block succeeds and vanishes when it fails.

    ``out`` may be new, empty, or an earlier export of this ``kind`` (it holds ``marker``); any other folder is
    refused, so an export never deletes what it did not write.
    """
    _check_target(out, kind, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.{kind.lower()}-{os.getpid()}-{time.time_ns()}"
    work.mkdir()
    try:
        yield work
        _replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _check_target(out: Path, kind: str, marker: str) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder", hint=f"choose a new or empty folder for the {kind} export")
    if any(out.iterdir()) and not (out / marker).is_file():
        raise ConfigError(
            f"{out} is not empty and holds no {kind} export",
            hint=f"choose a new or empty folder; a previous {kind} export there is replaced",
        )


def _replace(work: Path, out: Path) -> None:
    """Move the finished export into place; a previous one is moved aside first and removed after."""
    old = None
    if out.exists():
        if any(out.iterdir()):
            old = out.parent / f"{work.name}.old"
            out.rename(old)
        else:
            out.rmdir()
    work.rename(out)
    if old is not None:
        shutil.rmtree(old)
