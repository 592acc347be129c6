"""Find FHIR inputs and read them record by record, turning every failure into a located problem."""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import numpy as np
import orjson
import pyarrow as pa

from carelake.errors import InputError
from carelake.sources.fhir._records import Problem, unpack_bundle
from carelake.sources.fhir._staging import StagingWriter

BOM = b"\xef\xbb\xbf"
NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
JSON_SUFFIXES = (".json", ".json.gz")
CHUNK_BYTES = 32 << 20
BUNDLE_PATTERN = re.compile(rb'"resourceType"\s*:\s*"Bundle"')

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
    """The SHA-256 of a file that is not read here otherwise (OMOP's, which the engine reads); None if unreadable."""
    try:
        with path.open("rb") as handle:
            return _Hashed(handle).hexdigest()
    except OSError:
        return None


def read_file(
    file_index: int, source: SourceFile, writer: StagingWriter, progress: Callable[[int], None]
) -> str | None:
    """Stage every record of a file as JSON text with its locator; unreadable, empty and damaged input
    become problems. Checking the records is left to SQL.

    Returns the SHA-256 of the file's bytes (None when it cannot be opened), taken as they are read for
    parsing: a separate pass read every byte once more, and at a million patients the export does not fit in
    memory, so each pass is a read from disk."""
    reader = _read_ndjson if source.kind == "ndjson" else _read_json
    try:
        with source.path.open("rb") as handle:
            raw = _Hashed(handle)
            reader(file_index, source.path, raw, writer, progress)
            return raw.hexdigest()
    except OSError as exc:
        if not isinstance(exc, PermissionError | IsADirectoryError | FileNotFoundError):
            raise
        writer.add_problem(
            file_index, None, None, None, Problem("unreadable-file", f"cannot read the file: {exc.strerror}"), None
        )
        return None


class _Hashed:
    """A file read through SHA-256; :meth:`hexdigest` first reads what the parser left (after damage)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._digest.update(data)
        return data

    def tell(self) -> int:
        return self._handle.tell()

    def hexdigest(self) -> str:
        while self.read(1 << 22):
            pass
        return self._digest.hexdigest()


def _open(path: Path, raw: _Hashed) -> Any:
    """The file's content: gzip is read through the hash, so the hash is of the bytes received."""
    return gzip.GzipFile(fileobj=raw, mode="rb") if path.name.lower().endswith(".gz") else raw


def _read_ndjson(
    file_index: int, path: Path, raw: _Hashed, writer: StagingWriter, progress: Callable[[int], None]
) -> None:
    """Read NDJSON in large blocks; each block becomes one Arrow batch of lines without copying."""
    next_line = 1
    offset = 0
    carry = b""
    first = True
    position = 0
    compressed = path.name.lower().endswith(".gz")
    handle = _open(path, raw)
    raw_handle = raw if compressed else None  # where the compressed file has been read to
    for block, error in _blocks(handle, piece=1 << 16 if compressed else CHUNK_BYTES):
        if error is not None:
            # The cut-short last line belongs to the damage: it is reported here, not parsed.
            writer.add_problem(
                file_index,
                next_line,
                None,
                offset,
                Problem(
                    "truncated-file",
                    f"the compressed file is damaged or cut short ({type(error).__name__}); "
                    "records before this point were read",
                ),
                None,
            )
            return
        if first:
            first = False
            if not block.strip() and len(block) < CHUNK_BYTES:
                writer.add_problem(file_index, None, None, 0, Problem("empty-file", "the file is empty"), None)
                return
            if block.startswith(BOM):
                block, offset = block[len(BOM) :], len(BOM)
        data = carry + block if carry else block
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        body, carry = data[: cut + 1], data[cut + 1 :]
        next_line += _stage_block(file_index, body, next_line, offset, writer)
        offset += len(body)
        now = raw_handle.tell() if raw_handle is not None else offset
        progress(now - position)
        position = now
    if first:
        writer.add_problem(file_index, None, None, 0, Problem("empty-file", "the file is empty"), None)
    elif carry:
        _stage_block(file_index, carry, next_line, offset, writer)
    progress(max(path.stat().st_size - position, 0))


def _blocks(handle: Any, *, piece: int) -> Iterator[tuple[bytes, BaseException | None]]:
    """Blocks of about CHUNK_BYTES; a damaged compressed stream ends with what was decoded, then the error."""
    pending: list[bytes] = []
    size = 0
    while True:
        try:
            part = handle.read(piece)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            if pending:
                yield b"".join(pending), None
            yield b"", exc
            return
        if not part:
            break
        pending.append(part)
        size += len(part)
        if size >= CHUNK_BYTES:
            yield b"".join(pending), None
            pending, size = [], 0
    if pending:
        yield b"".join(pending), None


def _stage_block(file_index: int, body: bytes, first_line: int, base_offset: int, writer: StagingWriter) -> int:
    """Stage the lines of a block (whole lines only); return how many lines it held."""
    view = np.frombuffer(body, dtype=np.uint8)
    ends = np.flatnonzero(view == 10) + 1
    if not len(ends) or ends[-1] != len(body):
        ends = np.append(ends, len(body))
    count = len(ends)
    if BUNDLE_PATTERN.search(body) or not _is_utf8(body):
        _stage_lines_slowly(file_index, body, first_line, base_offset, writer)
        return count
    offsets = np.concatenate(([0], ends)).astype(np.int64)
    texts = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(body)).cast(pa.string())
    writer.add_lines(
        file_index,
        pa.array(np.arange(first_line, first_line + count, dtype=np.int64)),
        pa.array(base_offset + offsets[:-1]),
        texts,
    )
    return count


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _stage_lines_slowly(file_index: int, body: bytes, first_line: int, base_offset: int, writer: StagingWriter) -> None:
    """Line by line, for blocks holding Bundles (unpacked here) or bytes that are not UTF-8."""
    offset = base_offset
    for number, raw in enumerate(body.split(b"\n"), start=first_line):
        if number > first_line and not raw and offset >= base_offset + len(body):
            break
        start = offset
        offset += len(raw) + 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            writer.add_problem(
                file_index,
                number,
                None,
                start,
                Problem("invalid-json", f"the line is not valid UTF-8 (byte {exc.start + 1})"),
                None,
            )
            continue
        if BUNDLE_PATTERN.search(raw):
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = None
            if isinstance(value, dict) and value.get("resourceType") == "Bundle":
                stage_bundle(file_index, number, start, value, writer)
                continue
        writer.add_record(file_index, number, None, start, text)


def _read_json(
    file_index: int, path: Path, raw: _Hashed, writer: StagingWriter, progress: Callable[[int], None]
) -> None:
    try:
        data = _open(path, raw).read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        writer.add_problem(
            file_index,
            None,
            None,
            None,
            Problem("truncated-file", f"the compressed file is damaged or cut short ({type(exc).__name__})"),
            None,
        )
        return
    progress(path.stat().st_size)
    body = data.removeprefix(BOM)
    skipped = len(data) - len(body)
    if not body.strip():
        writer.add_problem(file_index, None, None, 0, Problem("empty-file", "the file is empty"), None)
        return
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        writer.add_problem(
            file_index,
            exc.lineno,
            None,
            exc.pos + skipped,
            Problem("invalid-json", f"invalid JSON at {where}: {exc.msg}"),
            body,
        )
        return
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        stage_bundle(file_index, 1, skipped, value, writer)
        return
    writer.add_record(file_index, 1, None, skipped, body.decode("utf-8"))


def stage_bundle(file_index: int, line: int, offset: int, bundle: dict[str, Any], writer: StagingWriter) -> None:
    """Stage each entry of a Bundle as its own record, bundle-local references rewritten."""
    entries = list(unpack_bundle(bundle))
    if not entries:
        writer.add_problem(file_index, line, None, offset, Problem("empty-bundle", "the Bundle has no entries"), None)
        return
    for entry in entries:
        if entry.problem is not None:
            text = orjson.dumps(entry.resource).decode() if entry.resource is not None else None
            writer.add_problem(file_index, line, entry.index, offset, entry.problem, text)
        else:
            writer.add_record(
                file_index, line, entry.index, offset, orjson.dumps(entry.resource).decode(), entry.assigned_id
            )
