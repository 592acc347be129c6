"""Every error carelake raises on purpose, so callers can catch one root.

Each error says what went wrong, where, and how to fix it (``hint``). Messages
name records by locator (file:line, resource type/id), never by content.

    CarelakeError                      (Exception)
    ├── ConfigError                    (ValueError)     bad option, setting or argument
    ├── InputError                     (ValueError)     a whole input cannot be used (missing path, bad manifest)
    ├── LakeError                      (RuntimeError)   the lake folder is missing, damaged or not a lake
    │   └── LakeBusyError                               another job holds the lake's write lock
    ├── EngineError                    (RuntimeError)   an engine is unavailable or rejected a query
    │   └── MissingDependencyError     (ImportError)    an optional extra is not installed
    ├── QueryError                     (ValueError)     a user's SQL failed to parse, translate or run
    └── StrictModeError                (RuntimeError)   --strict and something was quarantined; nothing committed
"""

from __future__ import annotations

__all__ = [
    "CarelakeError",
    "ConfigError",
    "EngineError",
    "InputError",
    "LakeBusyError",
    "LakeError",
    "MissingDependencyError",
    "QueryError",
    "StrictModeError",
]


class CarelakeError(Exception):
    """Root of every deliberate carelake error; ``hint`` tells the user what to do next."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class ConfigError(CarelakeError, ValueError):
    """An option, setting or argument is invalid."""


class InputError(CarelakeError, ValueError):
    """A whole input cannot be used (missing path, unreadable manifest)."""


class LakeError(CarelakeError, RuntimeError):
    """The lake folder is missing, damaged or not a carelake lake."""


class LakeBusyError(LakeError):
    """Another job holds the lake's write lock."""


class EngineError(CarelakeError, RuntimeError):
    """An engine is unavailable or failed."""


class MissingDependencyError(EngineError, ImportError):
    """An optional extra is needed and not installed."""


class QueryError(CarelakeError, ValueError):
    """A query failed to parse, translate or run."""


class StrictModeError(CarelakeError, RuntimeError):
    """Strict mode refused to commit because records were quarantined; ``summary`` says which."""

    summary: dict[str, object] | None = None
