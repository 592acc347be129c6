"""The public API: every name in ``__all__`` exists, and every public module-level name is in ``__all__``."""

from __future__ import annotations

import subprocess
import sys

import carelake


def test_all_names_resolve() -> None:
    for name in carelake.__all__:
        assert getattr(carelake, name) is not None, name


def test_all_is_complete() -> None:
    public = {n for n in dir(carelake) if not n.startswith("_")} | {"__version__"}
    assert public == set(carelake.__all__)


def test_import_and_help_stay_light() -> None:
    # `carelake --help` must answer fast: no engine, Arrow or Spark at import time.
    code = (
        "import sys, carelake, carelake.cli; carelake.cli._app._register_commands();"
        "heavy = [m for m in ('duckdb', 'pyarrow', 'pyspark', 'numpy') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
