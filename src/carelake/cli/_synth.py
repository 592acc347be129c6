"""``carelake synth``: synthetic populations with known ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carelake.cli._app import app
from carelake.cli._console import RichProgress, emit_json, err
from carelake.cli._options import JsonOption

synth_app = typer.Typer(help="Generate synthetic data with known ground truth.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")


@synth_app.command("fhir", epilog="Example:  carelake synth fhir --patients 500 --seed 7 --out synthetic/")
def synth_fhir_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the FHIR Bulk Data export and ground_truth/.")],
    patients: Annotated[int, typer.Option("--patients", min=1, help="How many people.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 7,
    faults: Annotated[
        float,
        typer.Option("--faults", min=0.0, max=1.0, help="Share of resources given an injected data-quality fault."),
    ] = 0.0,
    duplicates: Annotated[
        float,
        typer.Option(
            "--duplicates", min=0.0, max=1.0, help="Share of patients that also appear as a second Patient record."
        ),
    ] = 0.0,
    start: Annotated[int, typer.Option("--start", help="First year of history.")] = 2015,
    end: Annotated[int, typer.Option("--end", help="Last year of history.")] = 2025,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes to simulate with (same bytes).")] = 1,
    json: JsonOption = False,
) -> None:
    """Write a synthetic FHIR R4 population (NDJSON per type + $export manifest) and its ground truth."""
    from carelake.synth import generate_fhir

    summary = generate_fhir(
        out,
        patients=patients,
        seed=seed,
        faults=faults,
        duplicates=duplicates,
        start_year=start,
        end_year=end,
        progress=RichProgress(unit_bytes=False),
        workers=workers,
    )
    data = summary.to_dict()
    if json:
        emit_json(data)
    err.print(f"wrote {patients:,} patients to {out} in {data.get('seconds', 0):.1f} s", highlight=False)
    err.print(f"next: carelake ingest fhir {out}", highlight=False, markup=False)
