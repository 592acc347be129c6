"""``carelake deid``: keys, de-identification runs, leak verification and re-identification risk."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import RichProgress, emit_json, say
from carelake.cli._options import EngineChoice, EngineOption, JsonOption

deid_app = typer.Typer(
    help="De-identification: a separate lake without identifiers, verified for leaks.", no_args_is_help=True
)
app.add_typer(deid_app, name="deid")


class PolicyChoice(StrEnum):
    safe_harbor = "safe-harbor"
    limited_dataset = "limited-dataset"


class DateModeChoice(StrEnum):
    year = "year"
    shift = "shift"
    keep = "keep"


@deid_app.command("keygen", epilog="Example:  carelake deid keygen --out ~/.carelake/deid.key")
def keygen_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the key (outside every lake).")],
    json: JsonOption = False,
) -> None:
    """Make a new random 256-bit key, readable only by you. Keep it outside every lake; back it up."""
    from carelake.privacy import keygen

    fingerprint = keygen(out)
    if json:
        emit_json({"key_file": str(out), "fingerprint": fingerprint})
    say(f"key written to {out} (fingerprint {fingerprint}); keep it secret and outside every lake")


@deid_app.command(
    "run",
    epilog="Example:  carelake --lake lake deid run --policy safe-harbor --key-file ~/.carelake/deid.key "
    "--out lake-deid --json",
)
def run_command(
    out: Annotated[Path, typer.Option("--out", help="The de-identified lake to write (replaced on re-runs).")],
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Key from `carelake deid keygen` (outside every lake).")
    ] = None,
    policy: Annotated[PolicyChoice, typer.Option("--policy", help="What to remove and generalise.")] = (
        PolicyChoice.safe_harbor
    ),
    date_mode: Annotated[
        DateModeChoice | None,
        typer.Option(
            "--date-mode",
            help="year: keep only years (Safe Harbor); shift: move each patient's dates by one secret offset "
            "(keeps intervals; not Safe Harbor); keep: exact dates (limited data set only). "
            "Default: year for safe-harbor, keep for limited-dataset.",
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date ages are measured at (YYYY-MM-DD); default: latest event.")
    ] = None,
    opt_out: Annotated[
        Path | None, typer.Option("--opt-out", help="File of patient ids (one per line) to leave out entirely.")
    ] = None,
    keep_extension: Annotated[
        list[str] | None, typer.Option("--keep-extension", help="Also keep extensions with this URL (repeatable).")
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "--k",
            min=2,
            help="Make patients k-anonymous (age band, sex, ZIP3, race, ethnicity): coarsen ZIP codes "
            "and leave out patients still in classes smaller than k.",
        ),
    ] = None,
    views: Annotated[bool, typer.Option("--views/--no-views", help="Materialise the standard views.")] = True,
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """De-identify the whole lake into a separate lake.

    Names, contacts, identifiers and street addresses are removed, dates generalised or shifted, ids replaced by
    keyed pseudonyms, free text scrubbed, and patients who opted out left out with all their data. The output
    lake's manifest counts every change by category and holds the key's fingerprint, never the key."""
    from carelake.lake import open_lake
    from carelake.privacy import Policy, deidentify

    mode = date_mode.value if date_mode else None
    chosen = Policy.of(policy.value, mode, keep_extensions=tuple(keep_extension or ()))
    summary = deidentify(
        open_lake(state.lake, create=False),
        out,
        key_file=key_file,
        policy=chosen,
        as_of=as_of,
        opt_out=opt_out,
        k=k,
        engine=engine.value,
        views=views,
        progress=RichProgress(unit_bytes=False),
    )
    if json:
        emit_json(summary.to_dict())
    excluded = ", ".join(f"{n:,} by {why.replace('_', '-')}" for why, n in summary.patients_excluded.items() if n)
    say(
        f"deid {summary.run_id} ({chosen.name}, dates: {chosen.date_mode}): {summary.read:,} resources read, "
        f"{summary.written:,} written, {summary.excluded:,} left out, {summary.quarantined:,} quarantined "
        f"({summary.seconds:,.1f} s)"
    )
    if excluded:
        say(f"patients left out: {excluded}")
    if not chosen.safe_harbor and chosen.name == "safe-harbor":
        say("note: shifted dates are not Safe Harbor (they keep day and month); use --date-mode year for it")
    say(f"de-identified lake: {summary.out} (key {summary.key_fingerprint})")


@deid_app.command("verify", epilog="Example:  carelake deid verify lake-deid --source lake --json")
def verify_command(
    out: Annotated[Path, typer.Argument(help="The de-identified lake (or any folder of outputs) to sweep.")],
    source: Annotated[Path, typer.Option("--source", help="The identified lake the output was made from.")],
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """Sweep every file under OUT for identifiers the SOURCE lake knows; exit 1 on any hit.

    Every Parquet value and every byte of other files (JSON, reports, logs) is searched for names, identifier
    values, phones, emails, street lines and birth dates. A hit names the file and place, never the value."""
    from carelake.lake import open_lake
    from carelake.privacy import verify
    from carelake.privacy._run import output_policy

    policy = output_policy(out)
    # Shifted or kept dates fill the output with ISO dates, some equal to somebody's birth date by chance.
    iso_dates = policy is None or policy["date_mode"] == "year"
    if not iso_dates:
        say(f"dates in {out} are {policy['date_mode']}: birth dates are searched in their written forms only")
    result = verify(
        out, open_lake(source, create=False), engine=engine.value, iso_dates=iso_dates, progress=RichProgress()
    )
    if json:
        emit_json(result.to_dict())
    say(
        f"swept {result.files_scanned:,} files ({result.bytes_scanned / 1e6:,.1f} MB, {result.values_scanned:,} "
        f"Parquet values) for {result.identifiers:,} known identifier forms"
    )
    if result.passed:
        say("no identifier of the source found")
        return
    say(f"LEAK: {result.hit_count:,} identifier(s) found")
    for hit in result.hits[:20]:
        say(f"  {hit.file}: {hit.location} ({hit.category})")
    raise typer.Exit(1)


@deid_app.command("risk", epilog="Example:  carelake --lake lake-deid deid risk --k 11 --report risk.html --json")
def risk_command(
    k: Annotated[int, typer.Option("--k", min=2, help="Smallest class size wanted (k-anonymity).")] = 11,
    l_diversity: Annotated[
        int, typer.Option("--l", min=1, help="Fewest distinct conditions wanted per class (l-diversity).")
    ] = 2,
    quasi: Annotated[
        list[str] | None,
        typer.Option("--quasi", help="Quasi-identifier (repeatable): age_band, sex, zip3, race, ethnicity."),
    ] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Date ages are measured at (YYYY-MM-DD).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Also write an HTML report here.")] = None,
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """Re-identification risk: k-anonymity and l-diversity of the lake's patients.

    Reports the share of patients in classes smaller than k on the quasi-identifiers, and the fewest distinct
    conditions in a class. Reads the standard views (patients, conditions)."""
    from carelake.lake import open_lake
    from carelake.privacy import QUASI_IDENTIFIERS, reidentification_risk

    lake = open_lake(state.lake, create=False)
    risk = reidentification_risk(
        lake, quasi_identifiers=tuple(quasi or QUASI_IDENTIFIERS), k=k, l=l_diversity, as_of=as_of, engine=engine.value
    )
    written = None
    if report is not None:
        from carelake.reports import Report
        from carelake.reports._privacy import risk_section

        page = Report("carelake re-identification risk", subtitle=f"lake {lake.root.name}, as of {risk.as_of}")
        risk_section(page, risk)
        written = page.save(report)
    if json:
        emit_json(risk.to_dict() | {"report": str(written) if written else None})
    say(
        f"{risk.records:,} patients in {risk.classes:,} classes of ({', '.join(risk.quasi_identifiers)}); "
        f"smallest {risk.min_class_size}; {risk.share_below_k:.1%} of patients in classes below k={k}"
    )
    if risk.min_l is not None:
        say(f"l-diversity: fewest distinct conditions in a class {risk.min_l}; {risk.share_below_l:.1%} below l")
    if written:
        say(f"report {written}")
