"""A lake as the web server reads it: one DuckDB database, a cursor per request thread, results cached.

``Lake.sql`` opens a fresh engine per query, which is right for a command but not for a server answering
dozens of requests a second: connection set-up would dominate, and every concurrent request would hold its own
memory budget. The reader keeps one engine per lake (one memory limit for all requests), hands each thread a
cursor on it, and rebuilds it when the catalog file changes (another process committed). Aggregates are cached
per catalog state: they change only when the lake does.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from carelake.errors import QueryError
from carelake.lake._catalog import CATALOG_FILE

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from carelake.lake import Lake
    from carelake.lake._catalog import Catalog


class LakeReader:
    """Read-only, thread-safe access to a committed lake for the web application."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stamp: tuple[int, int] | None = None
        self._engine: Any = None
        self._catalog: Catalog | None = None
        self._generation = 0
        self._cache: dict[str, Any] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self._opened: list[Any] = []  # engines and cursors, closed before the interpreter tears down
        atexit.register(self.close)

    @property
    def root(self) -> Path:
        return self.lake.root

    @property
    def catalog(self) -> Catalog:
        self._refresh()
        assert self._catalog is not None
        return self._catalog

    def status(self) -> dict[str, Any]:
        return self.lake.status()

    def sql(self, query: str) -> pa.Table:
        """Run a read-only query on this thread's cursor of the current engine."""
        self._refresh()
        local = self._local
        if getattr(local, "generation", None) != self._generation:
            local.cursor, local.generation = self._engine.connection.cursor(), self._generation
            with self._lock:
                self._opened.append(local.cursor)
        try:
            return local.cursor.sql(query).to_arrow_table()
        except Exception as exc:  # duckdb.Error, without importing duckdb here
            raise QueryError(f"query failed on duckdb: {str(exc).splitlines()[0]}") from exc

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per catalog state (aggregates change only when the lake does); concurrent callers
        wait for the one computing instead of all computing at once."""
        self._refresh()
        generation = self._generation
        entry = self._cache.get(key)
        if entry is not None and entry[0] == generation:
            return entry[1]
        with self._key_locks.setdefault(key, threading.Lock()):
            entry = self._cache.get(key)
            if entry is None or entry[0] != generation:
                entry = (generation, compute())
                self._cache[key] = entry
        return entry[1]

    def _refresh(self) -> None:
        catalog_file = self.lake.root / CATALOG_FILE
        stat = catalog_file.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            # The previous engine stays open: other threads may still be reading from it.
            self._engine = self.lake.connect()
            self._opened.append(self._engine)
            self._catalog = self.lake.catalog
            self._generation += 1
            self._stamp = stamp
            self._cache.clear()

    def close(self) -> None:
        """Close every cursor, then the engines. Run at exit: DuckDB aborts the process when a connection is
        destroyed during interpreter teardown while request threads still hold cursors on it."""
        with self._lock:
            opened, self._opened = self._opened, []
        for handle in reversed(opened):  # cursors were opened after their engine
            with contextlib.suppress(Exception):  # already closed, or its database gone: nothing to release
                handle.close()
