"""Benchmarks write their figures into the docs, between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``."""

from __future__ import annotations

from pathlib import Path


def fill(path: Path, name: str, text: str) -> None:
    """Replace the block ``name`` of a Markdown file with ``text``; the prose around it stays as written."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    document = path.read_text(encoding="utf-8")
    if start not in document or end not in document:
        raise SystemExit(f"{path} has no {start} … {end} block to fill")
    head, rest = document.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}", encoding="utf-8")
