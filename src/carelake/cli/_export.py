"""``carelake export``: the lake as an OMOP CDM v5.4 database or a MEDS dataset (docs/interop.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import RichProgress, emit_json, err
from carelake.cli._options import EngineChoice, EngineOption, JsonOption

export_app = typer.Typer(help="Write the lake in another community format (OMOP CDM, MEDS).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command(
    "omop",
    epilog="Example:  carelake export omop --out omop/ --vocab ../shared/testdata/omop-eunomia-gibleed/cdm_v5.3",
)
def export_omop_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write (new, empty, or an earlier OMOP export).")],
    vocab: Annotated[
        Path | None,
        typer.Option("--vocab", help="Folder with the OMOP vocabulary (CONCEPT, CONCEPT_RELATIONSHIP) to map codes."),
    ] = None,
    output_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """Export the lake as OMOP CDM v5.4 tables (person, visits, conditions, drugs, procedures, measurements, ...).

    Concept ids come from the data when it came from OMOP, else from --vocab; codes without one get concept 0
    and are listed in unmapped_codes.csv.
    """
    from carelake.interop import export_omop
    from carelake.lake import open_lake

    summary = export_omop(
        open_lake(state.lake, create=False),
        out,
        vocab=vocab,
        engine=engine.value,
        format=output_format,
        progress=RichProgress(),
    ).to_dict()
    if json:
        emit_json(summary)
    rows = ", ".join(f"{t} {n:,}" for t, n in summary["rows"].items())
    err.print(f"OMOP CDM 5.4 in {summary['out']}: {rows}", highlight=False, markup=False)
    unmapped = {t: n for t, n in summary["unmapped"].items() if n}
    if unmapped:
        err.print(
            "concept 0 (no mapping): "
            + ", ".join(f"{t} {n:,}" for t, n in unmapped.items())
            + " — see unmapped_codes.csv",
            highlight=False,
            markup=False,
        )
    err.print(f"[{summary['rows_per_s']:,.0f} rows/s, {summary['seconds']} s]", highlight=False, markup=False)


@export_app.command("meds", epilog="Example:  carelake export meds --out meds/ --json")
def export_meds_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write (new, empty, or an earlier MEDS export).")],
    shard_subjects: Annotated[int, typer.Option("--shard-subjects", help="Subjects per data shard.")] = 10_000,
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """Export the lake as a MEDS dataset: data/*.parquet sorted by subject and time, codes, splits, metadata.

    Validated against the `meds` package's schemas before it is moved into place.
    """
    from carelake.interop import export_meds
    from carelake.lake import open_lake

    summary = export_meds(
        open_lake(state.lake, create=False),
        out,
        engine=engine.value,
        shard_subjects=shard_subjects,
        progress=RichProgress(),
    ).to_dict()
    if json:
        emit_json(summary)
    err.print(
        f"MEDS in {summary['out']}: {summary['subjects']:,} subjects, {summary['events']:,} events in "
        f"{summary['shards']} shard(s), {summary['codes']:,} codes [{summary['events_per_s']:,.0f} events/s]",
        highlight=False,
        markup=False,
    )
