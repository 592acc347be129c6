"""Users, tokens and roles for the web application: deny by default, least privilege, no secret stored.

A token is 256 random bits shown once when the user is added; only its SHA-256 is kept (tokens are random, so
a fast hash is enough: there is nothing to brute-force offline). The users file lives in the lake under
``web/users.json``, mode 0600, replaced atomically. Roles:

- ``admin``: manages users and reads the audit log; sees no patient-level data.
- ``analyst``: de-identified, aggregate data only.
- ``clinician``: identified, patient-level data (worklists, timelines, the FHIR API).
- ``patient``: their own record only (``--patient ID``).

Failed logins are counted per client address and per user name; after ``MAX_FAILURES`` within
``LOCKOUT_SECONDS`` further attempts are refused until the window passes (brute-force protection).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from carelake.errors import ConfigError, LakeError

Role = Literal["admin", "analyst", "clinician", "patient"]
ROLES: tuple[Role, ...] = ("admin", "analyst", "clinician", "patient")
USERS_FILE = Path("web") / "users.json"
MAX_FAILURES = 5
LOCKOUT_SECONDS = 900
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")


@dataclass(frozen=True)
class User:
    """Someone who may sign in; ``patient`` is the patient id a patient-role user may see."""

    name: str
    role: str
    token_sha256: str
    created: str
    patient: str | None = None


class Users:
    """The users file of a lake: add, list, revoke, and check a presented token."""

    def __init__(self, lake_root: str | Path) -> None:
        self.path = Path(lake_root) / USERS_FILE
        self._lock = threading.Lock()
        self._read: tuple[tuple[int, int], list[User]] | None = None

    def all(self) -> list[User]:
        """Every user; the file is re-read only when it changed (a server checks a token on every request)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._read is not None and self._read[0] == stamp:
            return self._read[1]
        try:
            users = [User(**u) for u in json.loads(self.path.read_text(encoding="utf-8"))["users"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise LakeError(f"{self.path}: not a carelake users file ({exc})", hint="restore it or remove it") from None
        self._read = (stamp, users)
        return users

    def add(self, name: str, role: str, *, patient: str | None = None) -> str:
        """Add (or replace) a user and return their new token, which is shown once and never stored."""
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}", hint=f"one of {', '.join(ROLES)}")
        if not _NAME.match(name):
            raise ConfigError(f"user name {name!r} is not valid", hint="2-64 letters, digits, '.', '_' or '-'")
        if (role == "patient") != (patient is not None):
            raise ConfigError(
                "a patient user needs --patient ID, and only a patient user takes one",
                hint="carelake users add jane --role patient --patient <patient id>",
            )
        token = secrets.token_urlsafe(32)
        user = User(name=name, role=role, token_sha256=_digest(token), created=_now(), patient=patient)
        with self._lock:
            users = [u for u in self.all() if u.name != name] + [user]
            self._write(users)
        return token

    def revoke(self, name: str) -> bool:
        with self._lock:
            users = self.all()
            kept = [u for u in users if u.name != name]
            self._write(kept)
        return len(kept) != len(users)

    def check(self, token: str | None, *, name: str | None = None) -> User | None:
        """The user holding ``token`` (and named ``name`` when given), else None; constant-time comparison."""
        if not token:
            return None
        digest = _digest(token)
        found = None
        for user in self.all():
            if hmac.compare_digest(user.token_sha256, digest) and (name is None or user.name == name):
                found = user
        return found

    def _write(self, users: list[User]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"users": [asdict(u) for u in users]}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.path)


class Throttle:
    """Failed sign-ins per key (client address, user name) in a sliding window."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = LOCKOUT_SECONDS) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                failures = self._failures[key]
                while failures and now - failures[0] > self.window:
                    failures.popleft()
                if len(failures) >= self.limit:
                    return True
        return False

    def fail(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures[key].append(time.monotonic())

    def succeed(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def user_summary(user: User) -> dict[str, Any]:
    """A user as shown to an admin: never the token hash."""
    return {"name": user.name, "role": user.role, "patient": user.patient, "created": user.created}
