"""The de-identification key: pseudonyms and date shifts are HMAC-SHA256 values under it.

The key is the one secret that links a pseudonym back to a person, so it lives outside every lake, is
made by ``carelake deid keygen`` from the operating system's random source, and is refused when it is
missing, short, low in entropy or readable by other users. Only its fingerprint is ever written down.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from carelake.errors import ConfigError, InputError

KEY_BYTES = 32
_HEADER = "carelake-deid-key-v1"
# A day offset in [-SHIFT_DAYS, SHIFT_DAYS], never 0, one per patient.
SHIFT_DAYS = 365
_PSEUDONYMS_KEPT = 100_000  # memoised pseudonyms per key: about 20 MB at most


def keygen(path: str | os.PathLike[str], *, overwrite: bool = False) -> str:
    """Write a new random key readable only by its owner; return its fingerprint."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} already exists", hint="choose a new path; overwriting a key breaks linkage")
    key = secrets.token_bytes(KEY_BYTES)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"{_HEADER}\n{key.hex()}\n")
    os.chmod(target, 0o600)
    return fingerprint(key)


def fingerprint(key: bytes) -> str:
    """A short public name for a key: which key made an output, without revealing it."""
    return "sha256:" + hashlib.sha256(b"carelake-key-fingerprint" + key).hexdigest()[:16]


class DeidKey:
    """A loaded key: pseudonyms for resource ids and per-patient date offsets."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ConfigError(
                f"the key has {len(key)} bytes; at least {KEY_BYTES} are needed",
                hint="make a new one with `carelake deid keygen --out KEY`",
            )
        if len(set(key)) < KEY_BYTES // 2:
            raise ConfigError(
                "the key is not random enough (too few distinct bytes)",
                hint="make a new one with `carelake deid keygen --out KEY`",
            )
        self._key = key
        self.fingerprint = fingerprint(key)
        self._pseudonyms: dict[tuple[str, str], str] = {}  # a patient's resources refer to the same few ids

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None, *, forbidden: tuple[Path, ...] = ()) -> DeidKey:
        """Read a key file; ``forbidden`` folders (the lakes) must not contain it."""
        if path is None:
            raise ConfigError("no key file given", hint="pass --key-file KEY (make one with `carelake deid keygen`)")
        file = Path(path)
        if not file.is_file():
            raise InputError(f"no key file at {file}", hint="make one with `carelake deid keygen --out KEY`")
        resolved = file.resolve()
        for folder in forbidden:
            if resolved.is_relative_to(folder.resolve()):
                raise ConfigError(
                    f"the key file {file} is inside the lake {folder}",
                    hint="keep the key outside every lake; move it and pass its new path",
                )
        if file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"the key file {file} is readable by other users", hint=f"restrict it with `chmod 600 {file}`"
            )
        lines = file.read_text(encoding="ascii", errors="replace").split()
        if len(lines) != 2 or lines[0] != _HEADER:
            raise InputError(f"{file} is not a carelake key file", hint="make one with `carelake deid keygen`")
        try:
            key = bytes.fromhex(lines[1])
        except ValueError:
            raise InputError(f"{file}:2 is not hexadecimal", hint="make a new key: `carelake deid keygen`") from None
        return cls(key)

    def _mac(self, message: str) -> bytes:
        return hmac.digest(self._key, message.encode("utf-8"), "sha256")  # one-shot: no HMAC object per id

    def pseudonym(self, resource_type: str, id_: str) -> str:
        """The id a resource gets: stable under one key, a valid FHIR id (64 hex digits)."""
        found = self._pseudonyms.get((resource_type, id_))
        if found is None:
            if len(self._pseudonyms) >= _PSEUDONYMS_KEPT:
                self._pseudonyms.clear()
            found = self._pseudonyms[resource_type, id_] = self._mac(f"id|{resource_type}/{id_}").hex()
        return found

    def shift_days(self, subject: str) -> int:
        """One date offset per patient (or per resource without a patient), so intervals survive."""
        n = int.from_bytes(self._mac(f"shift|{subject}")[:4], "big") % (2 * SHIFT_DAYS)
        return n - SHIFT_DAYS if n < SHIFT_DAYS else n - SHIFT_DAYS + 1
