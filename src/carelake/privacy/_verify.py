"""The proof that de-identification worked: no identifier of the source lake appears anywhere in the output.

:func:`verify` takes the known identifiers of the *source* lake (:func:`carelake.privacy.known_identifiers`),
expands each into the forms it is written in (:func:`carelake.privacy.written_forms`), and searches every
file under the output folder for all of them at once (Aho-Corasick, case-insensitive, whole words):

* Parquet files value by value, in record batches: every string, binary and date value, nested ones
  (lists, structs, maps) included, plus the file's column names and key-value metadata;
* CSV and TSV files (by name: ``.csv``, ``.tsv``, compressed or not) cell by cell, header included, so a hit
  can name its column; one that does not parse as a table is searched as bytes instead;
* every other file (JSON, NDJSON, HTML, logs, a DuckDB catalog, …) byte by byte in chunks, with
  matches across chunk boundaries found; ``.gz``, ``.bz2`` and ``.xz`` content is searched decompressed;
* in both, base64 runs of 40 characters or more (FHIR attachments hold clinical notes so) are decoded and
  searched when they decode to text.

A hit names the file, where in it (``column=…, row=…`` for Parquet and CSV, rows counted from 0 after any
header; ``byte offset …,
line …`` otherwise; ``file name`` when the path itself holds an identifier, which is then shown as
``[category]``) and the category of identifier — never the value, so a report can be shared.

What is searched, and what is not, on purpose (to keep false alarms rare):

* a match must not sit inside a longer alphanumeric token (``Ann`` does not hit ``Annual``; a birth date does
  not hit inside a dateTime ``2019-03-14T10:00:00``); case is ignored for ASCII letters only;
* a name or address value that is one word is skipped when shorter than 3 characters or a common English word
  (:data:`COMMON_WORDS`: ``Will``, ``May``, ``Brown``, ``Hill``, …) — the full-name forms
  (``Will Brown``, ``Brown, Will``) are still searched;
* birth dates only when full (``YYYY-MM-DD``), in their full written forms, never a year alone;
* phone numbers with fewer than 7 digits and identifier values shorter than 4 characters are skipped;
* an all-digit value (a ZIP code, a house number) is not matched inside a decimal number (``0.62729``,
  ``62729.5``): model files and metrics are full of them;
* nor as the whole cell of a CSV key column (a name ending in ``_id``, as OMOP's ``visit_occurrence_id``):
  an exported surrogate key numbers rows, and from 10,000 on every ZIP code of the source is one of them.
  Integer Parquet columns are not searched at all, for the same reason.

Known limits: text inside a DuckDB database file is found only where DuckDB stored it uncompressed (keep
de-identified data in Parquet); other archives (zip, zstd) and non-text attachments (PDF, images) are
not opened; HTML entities and JSON ``\\u`` escapes are not decoded. Identifiers are searched across all
patients, so one patient's shifted date can equal another's birth date: a date hit needs a look.
"""

from __future__ import annotations

import binascii
import bz2
import gzip
import lzma
import re
from collections.abc import Collection, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from carelake.errors import ConfigError, InputError
from carelake.privacy._known import _FULL_DATE, CATEGORIES, COMMON_WORDS, known_identifiers, written_forms
from carelake.progress import NoProgress, Progress

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from carelake.lake import Lake

# One-word names and places that are also ordinary English (or clinical) words: searched alone they would
# flag every "may", "will" or "ward" in a note. Their full-name forms are still searched.

_MIN_WORD = 3  # one-word names and places shorter than this are not searched
_MIN_IDENTIFIER = 4
_MIN_PHONE_DIGITS = 7
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_CHUNK = 1 << 20  # bytes read at a time from a file that is not Parquet
_BATCH_ROWS = 2048  # rows read at a time from a Parquet file
_BASE64 = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}")
_HEX = b"0123456789abcdef"  # a run of these alone is a hash or a pseudonym: base64 of text has capitals
_BASE64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_BASE64_MAX = 8 << 20  # a longer base64 run in a stream is decoded in pieces of this size
_TEXT_BYTES = bytes([9, 10, 13, *range(32, 127), *range(128, 256)])
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}  # magic bytes: format
_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_KEY_COLUMN = re.compile(r"(?:^|_)id$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Hit:
    """Where an identifier of the source was found: enough to find and fix it, never the identifier itself."""

    file: str
    location: str
    category: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "location": self.location, "category": self.category}


@dataclass
class VerifyResult:
    """What :func:`verify` searched and found; ``hits`` keeps the first ``max_hits``, ``hit_count`` counts all."""

    files_scanned: int = 0
    values_scanned: int = 0
    bytes_scanned: int = 0
    identifiers: int = 0
    hits: list[Hit] = field(default_factory=list)
    hit_count: int = 0
    library_files: int = 0  # files identical to the plotly.js bundle reports ship, not swept
    hits_by_category: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no known identifier was found anywhere."""
        return self.hit_count == 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for ``--json`` and the run manifest); holds no identifier."""
        return {
            "passed": self.passed,
            "files_scanned": self.files_scanned,
            "values_scanned": self.values_scanned,
            "bytes_scanned": self.bytes_scanned,
            "identifiers": self.identifiers,
            "hit_count": self.hit_count,
            "library_files": self.library_files,
            "hits_by_category": dict(sorted(self.hits_by_category.items())),
            "hits": [hit.to_dict() for hit in self.hits],
        }


def verify(
    out_root: str | Path,
    source: Lake,
    *,
    engine: str = "duckdb",
    categories: Collection[str] | None = None,
    progress: Progress | None = None,
    max_hits: int = 10_000,
    iso_dates: bool = True,
) -> VerifyResult:
    """Search every file under ``out_root`` for every identifier the ``source`` lake knows of its patients.

    De-identification is only trusted once an independent sweep of its whole output, read the way an
    attacker would read it (every byte, not the tables the stage meant to write), finds nothing.
    ``categories`` limits the search to some of ``birth_date``, ``identifier``, ``phone``, ``email``,
    ``url``, ``name``, ``address`` (default: all). ``progress`` advances by bytes of the files swept.
    ``iso_dates=False`` searches birth dates only in the forms people write (03/14/2019, March 14, 2019…): an
    output whose dates are shifted or kept holds thousands of ISO dates, and some equal somebody's birth date
    by chance; a note that leaks a birth date writes it in one of the other forms.

    Examples:
        >>> result = verify("deid-lake", cl.open_lake("my-lake"))  # doctest: +SKIP
        >>> result.passed, [(h.file, h.location, h.category) for h in result.hits][:1]  # doctest: +SKIP
        (False, [('silver/notes/part-0.parquet', 'column=text, row=12', 'phone')])
    """
    root = Path(out_root)
    if not root.exists():
        raise InputError(f"nothing to verify: {root} does not exist", hint="pass the de-identified lake's folder")
    if categories is not None:
        unknown = sorted(set(categories) - set(CATEGORIES))
        if unknown:
            raise ConfigError(f"unknown identifier categories {unknown}", hint=f"choose from {', '.join(CATEGORIES)}")
    if max_hits < 0:
        raise ConfigError("max_hits must be 0 or more", hint="pass max_hits=10_000")
    matcher = _Matcher(_search_forms(known_identifiers(source, engine=engine), categories, iso_dates=iso_dates))
    if not matcher.size:
        raise InputError(
            f"the source lake {source.root} holds no identifiers to search for, so verifying proves nothing",
            hint="pass the lake the de-identified copy was made from (it needs Patient resources)",
        )
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    result = VerifyResult(identifiers=matcher.size)
    sweep = _Sweep(matcher, result, max_hits)
    watcher = progress or NoProgress()
    watcher.start("verifying de-identification", float(sum(p.stat().st_size for p in files)))
    try:
        for path in files:
            rel = path.relative_to(root).as_posix() if root.is_dir() else path.name
            sweep.file(path, rel, watcher)
    finally:
        watcher.stop()
    return result


def _search_forms(known: pa.Table, categories: Collection[str] | None, *, iso_dates: bool = True) -> dict[str, str]:
    """Every searchable written form, lowered, as the Latin-1 text of its UTF-8 bytes, with its category."""
    rank = {category: i for i, category in enumerate(CATEGORIES)}
    forms: dict[str, str] = {}
    for category, value in zip(known.column("category").to_pylist(), known.column("value").to_pylist(), strict=True):
        if categories is not None and category not in categories:
            continue
        if category == "birth_date" and not _FULL_DATE.match(value):
            continue
        for form in written_forms(category, value):
            if not _searchable(category, form) or (category == "birth_date" and not iso_dates and form == value):
                continue
            key = form.encode("utf-8").lower().decode("latin-1")
            if key not in forms or rank.get(category, len(rank)) < rank.get(forms[key], len(rank)):
                forms[key] = category
    return forms


def _searchable(category: str, form: str) -> bool:
    if len(form) < _MIN_WORD:
        return False
    if form.isdigit() and len(set(form)) == 1:  # placeholders such as ZIP 00000 identify no one
        return False
    if category in ("name", "address") and len(form.split()) == 1:
        return form.lower() not in COMMON_WORDS
    if category == "phone":
        return sum(c.isdigit() for c in form) >= _MIN_PHONE_DIGITS
    if category == "identifier":
        return len(form) >= _MIN_IDENTIFIER
    return True


def _in_decimal(text: str, start: int, end: int, lo: int, hi: int) -> bool:
    """Digits that are part of a decimal number (0.62729, 62729.5): a model weight, not a ZIP code or number."""
    after = end + 1 < hi and text[end] == "." and text[end + 1].isdigit()
    before = start - 1 > lo and text[start - 1] == "." and text[start - 2].isdigit()
    return after or before


class _Matcher:
    """All forms in one Aho-Corasick automaton over lowered Latin-1 text, so bytes map 1:1 to characters."""

    def __init__(self, forms: dict[str, str]) -> None:
        import ahocorasick

        self.size = len(forms)
        self.longest = max(map(len, forms), default=0)
        self._automaton = ahocorasick.Automaton()
        for key, category in forms.items():
            self._automaton.add_word(key, (len(key), category, key[0] in _WORD, key[-1] in _WORD, key.isdigit()))
        if forms:
            self._automaton.make_automaton()

    def find(self, text: str, bounds: np.ndarray | None = None) -> list[tuple[int, int, str, int]]:
        """Whole-word matches ``(start, end, category, value)``; ``bounds`` are value offsets when ``text``
        holds many values back to back (a match may not span two). A match inside a longer one is dropped."""
        import numpy as np

        if not self.size or not text:
            return []
        found = []
        for last, (length, category, check_start, check_end, digits) in self._automaton.iter(text):
            start, end = last - length + 1, last + 1
            value, lo, hi = 0, 0, len(text)
            if bounds is not None:
                value = int(np.searchsorted(bounds, start, side="right")) - 1
                lo, hi = int(bounds[value]), int(bounds[value + 1])
                if end > hi:
                    continue
            if check_start and start > lo and text[start - 1] in _WORD:
                continue
            if check_end and end < hi and text[end] in _WORD:
                continue
            if digits and _in_decimal(text, start, end, lo, hi):
                continue
            found.append((start, end, category, value))
        found.sort(key=lambda m: (m[0], -m[1]))
        kept: list[tuple[int, int, str, int]] = []
        for match in found:
            if kept and match[1] <= kept[-1][1]:
                continue  # inside the previous, longer match
            kept.append(match)
        return kept

    def find_in_base64(self, run: bytes) -> list[str]:
        """Categories found in a base64 run that decodes to text (binary attachments are not searched)."""
        usable = len(run) // 4 * 4
        try:
            data = binascii.a2b_base64(run[:usable])
        except binascii.Error:
            return []
        if not _looks_like_text(data):
            return []
        return [category for _, _, category, _ in self.find(data.lower().decode("latin-1"))]


def _looks_like_text(data: bytes) -> bool:
    if len(data.translate(None, _TEXT_BYTES)) * 100 > len(data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Sweep:
    """Walks files into one result: Parquet value by value, anything else as a byte stream."""

    def __init__(self, matcher: _Matcher, result: VerifyResult, max_hits: int) -> None:
        self.matcher = matcher
        self.result = result
        self.max_hits = max_hits
        self._seen: set[tuple[str, str, str]] = set()

    def hit(self, file: str, location: str, category: str) -> None:
        key = (file, location, category)
        if key in self._seen:
            return
        self._seen.add(key)
        self.result.hit_count += 1
        self.result.hits_by_category[category] = self.result.hits_by_category.get(category, 0) + 1
        if len(self.result.hits) < self.max_hits:
            self.result.hits.append(Hit(file, location, category))

    def file(self, path: Path, rel: str, progress: Progress) -> None:
        self._seen.clear()
        rel = self._name(rel)
        if path.stat().st_size == len(_library()) and path.read_bytes() == _library():
            # Byte for byte the public plotly.js that reports ship beside them: code, not output ("smith" is a
            # chart type in it). Any change to the file, however small, gets it swept.
            self.result.library_files += 1
            return
        with path.open("rb") as raw:
            magic = raw.read(6)
            raw.seek(0)
            kind = next((kind for prefix, kind in _COMPRESSED.items() if magic.startswith(prefix)), None)
            if magic.startswith(b"PAR1"):
                self._parquet(path, rel, progress)
            elif not self._delimited(raw, rel, progress, kind):
                raw.seek(0)
                self._stream(raw, rel, progress, kind)
        self.result.files_scanned += 1

    def _name(self, rel: str) -> str:
        """A file's name can leak too (``Jane_Doe_notes.txt``): a hit, and the name shown with it redacted."""
        data = rel.encode("utf-8")
        matches = self.matcher.find(data.lower().decode("latin-1"))
        if not matches:
            return rel
        redacted, at = b"", 0
        for start, end, category, _ in matches:
            if start >= at:  # else it overlaps what was just redacted
                redacted, at = redacted + data[at:start] + f"[{category}]".encode(), end
        shown = (redacted + data[at:]).decode("utf-8", "replace")
        for category in sorted({category for _, _, category, _ in matches}):
            self.hit(shown, "file name", category)
        return shown

    # ------------------------------------------------------------------ Parquet

    def _parquet(self, path: Path, rel: str, progress: Progress) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        size = path.stat().st_size
        swept = 0.0
        try:
            with pq.ParquetFile(path) as parquet:
                schema = parquet.schema_arrow
                self._header(_schema_text(schema), rel, "column names or key-value metadata")
                columns = [f.name for f in schema if _has_text(f.type)]
                rows = parquet.metadata.num_rows
                batches = parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns, use_threads=False)
                base = 0
                for batch in batches if columns and rows else ():
                    for name, column in zip(batch.schema.names, batch.columns, strict=True):
                        for leaf_path, leaf, parents in _leaves(column, name, None):
                            self._values(leaf, parents, base, leaf_path, rel)
                    base += batch.num_rows
                    progress.advance(size * batch.num_rows / rows)
                    swept += size * batch.num_rows / rows
        except (pa.ArrowException, OSError) as exc:
            raise InputError(
                f"cannot read Parquet file {rel}: {type(exc).__name__}",
                hint="a file the verifier cannot read cannot be vouched for: repair or remove it, then verify again",
            ) from exc
        progress.advance(size - swept)

    def _header(self, parts: list[str], rel: str, where: str) -> None:
        """Column names and metadata travel with the file's values: an identifier there is a leak too."""
        data = "\n".join(parts).encode("utf-8")
        self.result.bytes_scanned += len(data)
        for _, _, category, _ in self.matcher.find(data.lower().decode("latin-1")):
            self.hit(rel, where, category)
        for run in _BASE64.finditer(data):
            if not run.group().translate(None, _HEX):
                continue
            for category in self.matcher.find_in_base64(run.group()):
                self.hit(rel, f"{where} (base64-encoded text)", category)

    def _values(
        self, leaf: pa.Array, parents: np.ndarray | None, base: int, column: str, rel: str, *, key: bool = False
    ) -> None:
        """Search one column's values; in a ``key`` column a value that is a whole integer is not a place."""
        import numpy as np
        import pyarrow as pa

        self.result.values_scanned += len(leaf) - leaf.null_count
        buffers = leaf.buffers()
        if len(leaf) == 0 or buffers[2] is None:
            return
        wide = pa.types.is_large_string(leaf.type) or pa.types.is_large_binary(leaf.type)
        offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)[
            leaf.offset : leaf.offset + len(leaf) + 1
        ]
        lo, hi = int(offsets[0]), int(offsets[-1])
        data = buffers[2].slice(lo, hi - lo).to_pybytes()
        bounds = (offsets - lo).astype(np.int64)
        self.result.bytes_scanned += len(data)

        def where(value: int) -> str:
            row = int(parents[value]) if parents is not None else value
            return f"column={column}, row={base + row}"

        for start, end, category, value in self.matcher.find(data.lower().decode("latin-1"), bounds):
            whole = start == bounds[value] and end == bounds[value + 1]
            if key and whole and category == "address" and data[start:end].isdigit():
                continue
            if leaf[value].is_valid:
                self.hit(rel, where(value), category)
        for run in _BASE64.finditer(data):
            if not run.group().translate(None, _HEX):
                continue
            first = int(np.searchsorted(bounds, run.start(), side="right")) - 1
            last = int(np.searchsorted(bounds, run.end() - 1, side="right")) - 1
            for value in range(first, last + 1):  # a run may straddle values stored back to back
                piece = data[max(run.start(), bounds[value]) : min(run.end(), bounds[value + 1])]
                if len(piece) < 40 or not leaf[value].is_valid:
                    continue
                for category in self.matcher.find_in_base64(piece):
                    self.hit(rel, where(value) + " (base64-encoded text)", category)

    # ------------------------------------------------------------------ CSV and TSV

    def _delimited(self, raw: IO[bytes], rel: str, progress: Progress, kind: str | None) -> bool:
        """Sweep a CSV or TSV file cell by cell; False (and nothing counted) when it is not one or does not parse.

        Reading cells lets a hit name its column, and lets the whole-integer cells of key columns go unsearched
        for ZIP codes, as integer Parquet columns are.
        """
        import csv

        import pyarrow as pa
        import pyarrow.csv as pa_csv

        suffixes = [s.lower() for s in Path(rel).suffixes]
        if kind and suffixes:
            suffixes.pop()  # .gz, .bz2, .xz
        delimiter = _DELIMITERS.get(suffixes[-1]) if suffixes else None
        if delimiter is None:
            return False
        trial = _Sweep(self.matcher, VerifyResult(), self.max_hits)  # counts nothing unless the file parses
        read_at = 0
        try:
            with _decompressed(raw, kind) if kind else nullcontext(raw) as stream:
                header = stream.readline()
                names = next(csv.reader([header.decode("utf-8")], delimiter=delimiter), [])
                if not names or len(set(names)) != len(names):
                    return False
                trial._header(names, rel, "header")
                reader = pa_csv.open_csv(
                    stream,
                    read_options=pa_csv.ReadOptions(column_names=names, block_size=_CHUNK),
                    parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                    convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
                )
                base = 0
                for batch in reader:
                    for name, column in zip(names, batch.columns, strict=True):
                        trial._values(column, None, base, name, rel, key=bool(_KEY_COLUMN.search(name)))
                    base += batch.num_rows
                    position = raw.tell()
                    progress.advance(position - read_at)
                    read_at = position
        except (UnicodeDecodeError, pa.ArrowException, OSError, EOFError, lzma.LZMAError):
            progress.advance(-read_at)  # the byte sweep that follows goes over it again
            return False
        self._absorb(trial.result)
        return True

    def _absorb(self, other: VerifyResult) -> None:
        result = self.result
        result.values_scanned += other.values_scanned
        result.bytes_scanned += other.bytes_scanned
        result.hit_count += other.hit_count
        result.hits += other.hits[: max(self.max_hits - len(result.hits), 0)]
        for category, count in other.hits_by_category.items():
            result.hits_by_category[category] = result.hits_by_category.get(category, 0) + count

    # ------------------------------------------------------------------ byte streams

    def _stream(self, raw: IO[bytes], rel: str, progress: Progress, kind: str | None) -> None:
        note = f" of the {kind}-decompressed content" if kind else ""
        try:
            with _decompressed(raw, kind) if kind else nullcontext(raw) as stream:
                self._chunks(stream, raw, rel, note, progress)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise InputError(
                f"cannot read {rel}{note}: {type(exc).__name__}",
                hint="a file the verifier cannot read cannot be vouched for: repair or remove it, then verify again",
            ) from exc

    def _chunks(self, stream: IO[bytes], raw: IO[bytes], rel: str, note: str, progress: Progress) -> None:
        """Search a byte stream chunk by chunk, keeping each chunk's tail so no match or base64 run is cut.

        A match is reported once the ``longest`` bytes after its start are read, so that a longer match
        around it (the full name around a given name) is seen first and the shorter one dropped whatever the
        chunk size; the window keeps ``longest`` bytes before that point for the same reason.
        """
        longest = self.matcher.longest
        window = _Window()
        done = 0  # text matches starting before this offset were reported
        b64_done = 0  # base64 runs starting before this offset were searched
        read_at = 0
        while True:
            chunk = stream.read(_CHUNK)
            eof = not chunk
            window.extend(chunk)
            self.result.bytes_scanned += len(chunk)
            buf, start_at, end_at = window.data, window.start, window.end

            found: list[tuple[int, str, str]] = []  # (offset, what, category), reported in offset order
            limit = end_at + 1 if eof else end_at - longest  # report matches starting before this
            offset = max(done - longest - 1 - start_at, 0)
            for start, _, category, _ in self.matcher.find(buf[offset:].lower().decode("latin-1")):
                if done <= start_at + offset + start < limit:
                    found.append((start_at + offset + start, "", category))
            done = max(done, limit)

            tail = len(buf) if eof else len(buf.rstrip(_BASE64_CHARS))  # a run at the end may go on
            runs = [
                (run.start(), run.group())
                for run in _BASE64.finditer(buf, max(b64_done - start_at, 0), tail)
                if run.group().translate(None, _HEX)
            ]
            if len(buf) - tail >= _BASE64_MAX:  # a huge run: search what is here, go on from a multiple of 4
                cut = tail + (len(buf) - tail) // 4 * 4
                runs.append((tail, buf[tail:cut]))
                tail = cut
            for at, run in runs:
                found += [(start_at + at, " (base64-encoded text)", c) for c in self.matcher.find_in_base64(run)]
            b64_done = start_at + tail
            for at, what, category in sorted(found):
                self.hit(rel, window.where(at, note) + what, category)

            position = raw.tell()
            progress.advance(position - read_at)
            read_at = position
            if eof:
                return
            window.drop_before(min(done - longest - 1, b64_done))


class _Window:
    """The part of a byte stream still needed, its offset, and line numbers counted once, front to back."""

    def __init__(self) -> None:
        self.data = b""
        self.start = 0
        self._mark, self._line = 0, 1  # the line that holds offset _mark

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def extend(self, chunk: bytes) -> None:
        self.data += chunk

    def drop_before(self, offset: int) -> None:
        cut = offset - self.start
        if cut > 0:
            self._line_of(offset)
            self.data, self.start = self.data[cut:], offset

    def where(self, offset: int, note: str) -> str:
        return f"byte offset {offset}{note}, line {self._line_of(offset)}"

    def _line_of(self, offset: int) -> int:
        if offset >= self._mark:
            self._line += self.data.count(b"\n", self._mark - self.start, offset - self.start)
            self._mark = offset
            return self._line
        return self._line - self.data.count(b"\n", offset - self.start, self._mark - self.start)


@cache
def _library() -> bytes:
    """The plotly.js bundle reports write beside their HTML (see carelake.reports._html)."""
    from carelake.reports._html import plotly_js

    return plotly_js()


def _has_text(type_: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(type_):
        return _has_text(type_.value_type)
    if pa.types.is_map(type_):
        return _has_text(type_.key_type) or _has_text(type_.item_type)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
        return _has_text(type_.value_type)
    if pa.types.is_struct(type_):
        return any(_has_text(f.type) for f in type_)
    return (
        _is_flat_text(type_)
        or pa.types.is_string_view(type_)
        or pa.types.is_binary_view(type_)
        or pa.types.is_date(type_)
    )


def _leaves(
    array: pa.Array, path: str, parents: np.ndarray | None
) -> Iterator[tuple[str, pa.Array, np.ndarray | None]]:
    """The string-like arrays nested in ``array``, each with the row of ``array`` every value belongs to."""
    import pyarrow as pa
    import pyarrow.compute as pc

    type_ = array.type
    if pa.types.is_dictionary(type_):
        yield from _leaves(array.dictionary_decode(), path, parents)
    elif _is_flat_text(type_):
        yield path, array, parents
    elif pa.types.is_string_view(type_) or pa.types.is_date(type_):
        yield path, array.cast(pa.large_string()), parents
    elif pa.types.is_binary_view(type_):
        yield path, array.cast(pa.large_binary()), parents
    elif pa.types.is_map(type_):
        entries = pa.list_(pa.struct([type_.key_field, type_.item_field]))
        yield from _leaves(array.cast(entries), path, parents)
    elif pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
        if not _has_text(type_.value_type):
            return
        owners = pc.list_parent_indices(array).to_numpy()
        yield from _leaves(array.flatten(), path, owners if parents is None else parents[owners])
    elif pa.types.is_struct(type_):
        for field_, child in zip(type_, array.flatten(), strict=True):
            if _has_text(field_.type):
                yield from _leaves(child, f"{path}.{field_.name}", parents)


def _is_flat_text(type_: pa.DataType) -> bool:
    """Strings and bytes stored as offsets into one data buffer: the layout the sweep reads directly."""
    import pyarrow as pa

    return (
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_)
    )


def _decompressed(raw: IO[bytes], kind: str) -> IO[bytes]:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)
    if kind == "bz2":
        return bz2.BZ2File(raw)
    return lzma.LZMAFile(raw)


def _schema_text(schema: pa.Schema) -> list[str]:
    """The text a Parquet file holds besides its values: column names, nested ones included, and metadata."""
    parts = _field_names(schema)
    for key, value in (schema.metadata or {}).items():
        parts += [key.decode("utf-8", "replace"), value.decode("utf-8", "replace")]
    return parts


def _field_names(fields: Iterable[pa.Field]) -> list[str]:
    """Every field name in a schema or struct, nested ones included."""
    import pyarrow as pa

    names = []
    for field_ in fields:
        names.append(field_.name)
        type_ = field_.type
        while pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
            type_ = type_.value_type
        if pa.types.is_struct(type_):
            names += _field_names(type_)
    return names
