"""The lake: one folder of Parquet files, a JSON catalog, runs, quarantine and audit.

Layout (see docs/lake.md)::

    carelake.json      marks the folder as a lake (format version)
    catalog.json       the committed state: tables -> Parquet files, views -> SQL, runs
    raw/               input files as received, content-addressed, immutable (text gzip-compressed)
    bronze/ silver/ gold/ quarantine/   one folder per table, Parquet part files
    runs/              one manifest per committed job
    audit/             append-only access log
    _staging/          work in progress; invisible until committed, cleared on the next write
"""

from carelake.lake._catalog import Catalog, TableEntry, ViewEntry
from carelake.lake._lake import Lake, Transaction, open_lake
from carelake.lake._quarantine import QUARANTINE_SCHEMA, QUARANTINE_TABLE, QuarantineRecord

__all__ = [
    "QUARANTINE_SCHEMA",
    "QUARANTINE_TABLE",
    "Catalog",
    "Lake",
    "QuarantineRecord",
    "TableEntry",
    "Transaction",
    "ViewEntry",
    "open_lake",
]
