"""Find FHIR inputs and read them record by record, turning every failure into a located problem."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import orjson

from carelake.errors import InputError
from carelake.sources.fhir._records import Problem

BOM = b"\xef\xbb\xbf"
NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
JSON_SUFFIXES = (".json", ".json.gz")
PROGRESS_EVERY = 2000

Kind = Literal["ndjson", "json"]


@dataclass(frozen=True)
class SourceFile:
    """One input file and how to read it."""

    path: Path
    kind: Kind

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0


@dataclass(frozen=True)
class Record:
    """One record read from a file: a parsed object, or a problem, with where it was found."""

    line: int | None
    byte_offset: int | None
    value: Any = None
    text: bytes | None = None
    problem: Problem | None = None


def _kind_of(path: Path) -> Kind | None:
    name = path.name.lower()
    if name.endswith(NDJSON_SUFFIXES):
        return "ndjson"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    return None


def discover(paths: Iterable[str | Path]) -> tuple[list[SourceFile], list[tuple[str, str]]]:
    """Expand paths (files, folders recursively, Bulk Data manifests) into an ordered, de-duplicated file list.

    Returns the files and the files passed over with the reason (shown in the summary, never silently).
    """
    found: dict[Path, SourceFile] = {}
    skipped: list[tuple[str, str]] = []
    for given in paths:
        path = Path(given)
        if not path.exists() and not path.is_symlink():
            raise InputError(f"no such file or directory: {path}", hint="check the path; folders are read recursively")
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink()):
                if any(part.startswith(".") for part in child.relative_to(path).parts):
                    skipped.append((str(child), "hidden file"))
                    continue
                kind = _kind_of(child)
                if kind is None:
                    skipped.append((str(child), "not a FHIR file by its extension (.ndjson, .jsonl, .json, .gz)"))
                    continue
                _add(found, child, kind)
        else:
            _add(found, path, _kind_of(path) or _sniff(path))
    return list(found.values()), skipped


def _add(found: dict[Path, SourceFile], path: Path, kind: Kind) -> None:
    key = path.resolve()
    if key in found:
        return
    if kind == "json" and _is_manifest(path):
        for output in _manifest_outputs(path):
            _add(found, output, _kind_of(output) or "ndjson")
        return
    found[key] = SourceFile(key, kind)


def _sniff(path: Path) -> Kind:
    """A file named without a known extension: NDJSON if its first line is a whole JSON value."""
    try:
        with path.open("rb") as handle:
            first = handle.readline(1 << 20)
    except OSError:
        return "json"
    try:
        orjson.loads(first.removeprefix(BOM))
    except orjson.JSONDecodeError:
        return "json"
    return "ndjson"


def _is_manifest(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return b'"transactionTime"' in head and b'"output"' in head and b'"resourceType"' not in head


def _manifest_outputs(manifest: Path) -> list[Path]:
    """The local files a Bulk Data ``$export`` completion manifest points at."""
    try:
        data = orjson.loads(manifest.read_bytes().removeprefix(BOM))
        outputs = data["output"]
        urls = [item["url"] for item in outputs]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(
            f"{manifest}: not a valid Bulk Data manifest ({type(exc).__name__})",
            hint="a manifest needs an 'output' array of {type, url} objects",
        ) from exc
    files = []
    for index, url in enumerate(urls):
        parsed = urlparse(str(url))
        if parsed.scheme == "file":
            candidate = Path(unquote(parsed.path))
        elif parsed.scheme in ("http", "https"):
            candidate = manifest.parent / Path(unquote(parsed.path)).name
        else:
            candidate = manifest.parent / unquote(str(url))
        if not candidate.exists():
            raise InputError(
                f"{manifest}: output[{index}] points at {candidate}, which does not exist",
                hint="download the export's files next to the manifest (carelake reads local files only)",
            )
        files.append(candidate)
    return files


def file_sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def read_records(source: SourceFile, progress: Callable[[int], None]) -> Iterator[Record]:
    """Yield every record of a file; unreadable, empty, truncated and malformed input become problems."""
    reader = _read_ndjson if source.kind == "ndjson" else _read_json
    try:
        yield from reader(source.path, progress)
    except OSError as exc:
        if isinstance(exc, PermissionError | IsADirectoryError | FileNotFoundError):
            yield Record(None, None, problem=Problem("unreadable-file", f"cannot read the file: {exc.strerror}"))
        else:
            raise


def _open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def _read_ndjson(path: Path, progress: Callable[[int], None]) -> Iterator[Record]:
    line = 0
    offset = 0
    reported = 0
    seen_content = False
    with _open(path) as handle:
        raw_handle = getattr(handle, "fileobj", None)
        try:
            for raw in handle:
                line += 1
                start = offset
                offset += len(raw)
                body = raw[:-1] if raw.endswith(b"\n") else raw
                if body.endswith(b"\r"):
                    body = body[:-1]
                if line == 1:
                    body = body.removeprefix(BOM)
                if not body.strip():
                    yield Record(
                        line,
                        start,
                        problem=Problem("blank-line", "the line is empty; NDJSON has one resource per line"),
                    )
                    continue
                seen_content = True
                try:
                    value = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    yield Record(line, start, text=body, problem=_json_problem(exc, single_line=True))
                    continue
                yield Record(line, start, value=value, text=body)
                if line % PROGRESS_EVERY == 0:
                    position = raw_handle.tell() if raw_handle is not None else offset
                    progress(position - reported)
                    reported = position
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            yield Record(
                line + 1,
                offset,
                problem=Problem(
                    "truncated-file",
                    f"the compressed file is damaged or cut short ({type(exc).__name__}); "
                    "records before this point were read",
                ),
            )
            seen_content = True
    if not seen_content and line == 0:
        yield Record(None, 0, problem=Problem("empty-file", "the file is empty"))
    progress(max(path.stat().st_size - reported, 0))


def _read_json(path: Path, progress: Callable[[int], None]) -> Iterator[Record]:
    try:
        with _open(path) as handle:
            data = handle.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        yield Record(
            None,
            None,
            problem=Problem("truncated-file", f"the compressed file is damaged or cut short ({type(exc).__name__})"),
        )
        return
    progress(path.stat().st_size)
    body = data.removeprefix(BOM)
    if not body.strip():
        yield Record(None, 0, problem=Problem("empty-file", "the file is empty"))
        return
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        yield Record(exc.lineno, exc.pos + (len(data) - len(body)), problem=_json_problem(exc, single_line=False))
        return
    yield Record(1, 0, value=value, text=body)


def _json_problem(exc: orjson.JSONDecodeError, *, single_line: bool) -> Problem:
    where = f"column {exc.colno}" if single_line else f"line {exc.lineno} column {exc.colno}"
    return Problem("invalid-json", f"invalid JSON at {where}: {exc.msg}")
