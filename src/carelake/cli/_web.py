"""``carelake serve``, ``carelake users`` and ``carelake audit``: the web application and its access control."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import emit_json, say
from carelake.cli._options import JsonOption

users_app = typer.Typer(help="Web users: add (prints a one-time token), list, revoke.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log: verify its hash chain, export it as FHIR AuditEvents.",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")


class RoleChoice(StrEnum):
    admin = "admin"
    analyst = "analyst"
    clinician = "clinician"
    patient = "patient"


@app.command("serve", epilog="Example:  carelake --lake demo/lake serve --analysis-lake demo/lake-deid --port 8000")
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    analysis_lake: Annotated[
        Path | None, typer.Option("--analysis-lake", help="The de-identified lake analysts' aggregates come from.")
    ] = None,
    secure_cookies: Annotated[
        bool, typer.Option("--secure-cookies", help="Mark the session cookie Secure (behind HTTPS).")
    ] = False,
) -> None:
    """Serve the dashboards, patient portal, JSON API (/api, OpenAPI at /openapi.json) and read-only FHIR API
    (/fhir). Sign in with a token from `carelake users add`."""
    import logging

    import uvicorn

    from carelake.web import Settings, create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    application = create_app(Settings(lake=state.lake, analysis_lake=analysis_lake, secure_cookies=secure_cookies))
    say(f"serving {state.lake} on http://{host}:{port} (Ctrl+C to stop)")
    # uvicorn's access log prints full URLs, which can hold patient ids: carelake logs route templates instead.
    uvicorn.run(application, host=host, port=port, access_log=False, log_level="warning")


@users_app.command("add", epilog="Example:  carelake users add ana --role analyst")
def users_add(
    name: Annotated[str, typer.Argument(help="The user's sign-in name.")],
    role: Annotated[RoleChoice, typer.Option("--role", help="What the user may see.")],
    patient: Annotated[str | None, typer.Option("--patient", help="For --role patient: their patient id.")] = None,
    json: JsonOption = False,
) -> None:
    """Add a user (or replace their token) and print a one-time token; only its hash is stored."""
    from carelake.lake import open_lake
    from carelake.web import Users

    lake = open_lake(state.lake, create=False)
    token = Users(lake.root).add(name, role.value, patient=patient)
    _audit_admin(lake.root, f"user {name} added with role {role.value}")
    if json:
        emit_json({"name": name, "role": role.value, "patient": patient, "token": token})
    say(f"user {name} ({role.value}) added; their token (shown once, store it safely):")
    if not json:
        sys.stdout.write(token + "\n")


@users_app.command("list", epilog="Example:  carelake users list --json")
def users_list(json: JsonOption = False) -> None:
    """List users and roles (never tokens)."""
    from carelake.web import Users
    from carelake.web._auth import user_summary

    rows = [user_summary(u) for u in Users(state.lake).all()]
    if json:
        emit_json(rows)
    for row in rows:
        say(f"{row['name']:20s} {row['role']:10s} {row['patient'] or ''}")


@users_app.command("revoke", epilog="Example:  carelake users revoke ana")
def users_revoke(name: Annotated[str, typer.Argument(help="The user to remove.")]) -> None:
    """Remove a user; their token stops working at once."""
    from carelake.errors import ConfigError
    from carelake.web import Users

    if not Users(state.lake).revoke(name):
        raise ConfigError(f"no user {name!r}", hint="carelake users list")
    _audit_admin(state.lake, f"user {name} revoked")
    say(f"user {name} removed")


@audit_app.command("verify", epilog="Example:  carelake --lake carelake-demo/lake audit verify --json")
def audit_verify(json: JsonOption = False) -> None:
    """Check the audit log's hash chain: any edited, removed or reordered event is found. Exit 1 if so."""
    from carelake.web import AuditLog

    check = AuditLog(state.lake).verify()
    if json:
        emit_json(check.to_dict())
    if check.ok:
        say(f"audit log intact: {check.events:,} events, hash chain verified")
    else:
        say(f"audit log BROKEN at line {check.line}: {check.problem}")
        raise typer.Exit(1)


@audit_app.command("export", epilog="Example:  carelake audit export --format fhir --out audit.ndjson")
def audit_export(
    format: Annotated[str, typer.Option("--format", help="Only 'fhir': AuditEvent NDJSON (IHE BALP).")] = "fhir",
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: stdout).")] = None,
) -> None:
    """Export the audit log as FHIR R4 AuditEvent NDJSON following IHE Basic Audit Log Patterns."""
    import orjson

    from carelake.errors import ConfigError
    from carelake.web import AuditLog

    if format != "fhir":
        raise ConfigError(f"unknown format {format!r}", hint="--format fhir")
    lines = (orjson.dumps(event) + b"\n" for event in AuditLog(state.lake).to_fhir())
    if out is None:
        for line in lines:
            sys.stdout.buffer.write(line)
        return
    n = 0
    with out.open("wb") as f:
        for line in lines:
            f.write(line)
            n += 1
    say(f"wrote {n:,} AuditEvents to {out}")


def _audit_admin(lake: Path, detail: str) -> None:
    """User changes from the command line are audited too, under the operating-system account that made them."""
    import getpass

    from carelake.web import AuditLog

    AuditLog(lake).record(who=getpass.getuser(), role="operator", action="admin", outcome="success",
                          client="command line", detail=detail)  # fmt: skip
