"""The web application: role dashboards, a patient portal, a JSON API and a read-only FHIR API.

Deny by default: every route but the login page and static files needs a signed-in user, and each route names
the roles it admits. Analysts see aggregates from the analysis (de-identified) lake only; clinicians see the
identified lake; patients see their own record; admins manage users and read the audit log. Every read of
patient-level data, every search, export and sign-in writes exactly one audit event
(:mod:`carelake.web._audit`). Pages render server-side; charts are Plotly figures shipped as JSON and drawn by
one static script, so the Content Security Policy forbids inline scripts. Server logs carry the route template,
never the URL (which may hold a patient id).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from carelake.web import _data, _fhir
from carelake.web._audit import AuditLog
from carelake.web._auth import ROLES, Throttle, User, Users, user_summary
from carelake.web._reader import LakeReader

COOKIE = "carelake_session"
STATIC = Path(__file__).with_name("static")
TEMPLATES = Path(__file__).with_name("templates")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
log = logging.getLogger("carelake.web")

# Which roles may open what; anything not listed is denied.
PAGES = {
    "overview": ("admin", "analyst", "clinician"),
    "outcomes": ("analyst", "clinician"),
    "quality": ("admin", "analyst"),
    "models": ("analyst", "clinician"),
    "worklist": ("clinician",),
    "timeline": ("clinician",),
    "portal": ("patient",),
    "admin": ("admin",),
}
HOME = {"admin": "/admin", "analyst": "/", "clinician": "/worklist", "patient": "/me"}


class FhirResponse(JSONResponse):
    """FHIR's own JSON media type, so the OpenAPI document says what the FHIR routes really return."""

    media_type = _fhir.FHIR_JSON


class Denied(Exception):
    """A refusal: 401 (sign in) or 403/404; pages redirect or explain, the APIs answer in their own format."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def current_user(request: Request) -> User:
    """The signed-in user (bearer token or session cookie), else a 401: deny by default."""
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
    user = request.app.state.users.check(token)
    if user is None:
        raise Denied(401, "sign in first")
    request.state.user = user
    return user


CurrentUser = Annotated[User, Depends(current_user)]


@dataclass
class Settings:
    """What the server serves: the identified lake, and the analysis lake (de-identified) for aggregates."""

    lake: Path
    analysis_lake: Path | None = None
    secure_cookies: bool = False


def create_app(settings: Settings) -> Any:
    """The FastAPI application for ``settings`` (``carelake serve`` runs it under uvicorn)."""
    from fastapi import FastAPI
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from carelake.lake import open_lake

    lake = LakeReader(open_lake(settings.lake, create=False))
    analysis = LakeReader(open_lake(settings.analysis_lake, create=False)) if settings.analysis_lake else lake
    users = Users(settings.lake)
    audit = AuditLog(settings.lake)
    throttle = Throttle()
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))

    app = FastAPI(
        title="carelake",
        description="Dashboards, a patient portal, a JSON API and a read-only FHIR API over a carelake lake.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    app.state.users, app.state.audit, app.state.roles = users, audit, ROLES

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied) -> Response:
        if request.url.path.startswith("/fhir"):
            code = "login" if exc.status == 401 else "forbidden"
            return FhirResponse(_fhir.operation_outcome(code, exc.message), exc.status)
        if request.url.path.startswith("/api") or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": exc.message}, exc.status)
        if exc.status == 401:
            return RedirectResponse("/login", 303)
        return HTMLResponse(page("error.html", None, message=exc.message), exc.status)

    @app.exception_handler(_fhir.FhirError)
    async def fhir_error(request: Request, exc: _fhir.FhirError) -> Response:
        # The request reached patient data with a user allowed to ask: its failure is audited too.
        user = getattr(request.state, "user", None)
        if user is not None:
            action = "export" if request.url.path.endswith("$everything") else (
                "read" if request.url.path.count("/") >= 3 else "search")  # fmt: skip
            audit.record(who=user.name, role=user.role, action=action, outcome="failure", client=client(request),
                         resource=request.scope.get("route").path if request.scope.get("route") else None,
                         detail=exc.message)  # fmt: skip
        return FhirResponse(exc.outcome(), exc.status)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        route = request.scope.get("route")
        log.info("%s %s %s", request.method, getattr(route, "path", "-"), response.status_code)
        return response

    def aggregate(name: str) -> Any:
        """An aggregate page's data, computed once per state of its lake (quality results live in the identified
        lake; everything else comes from the analysis lake)."""
        source = lake if name == "quality" else analysis
        return source.cached(name, lambda: getattr(_data, name)(source))

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def allow(user: User, area: str) -> None:
        if user.role not in PAGES[area]:
            raise Denied(403, f"the {user.role} role may not open this page")

    def page(name: str, user: User | None, **context: Any) -> str:
        return env.get_template(name).render(user=user, pages=PAGES, generated=_data.now(), **context)

    def patient_access(request: Request, user: User, patient: str | None, *, action: str, resource: str) -> None:
        """Clinicians may see any patient, a patient only themself; everyone else is refused (and audited)."""
        ok = user.role == "clinician" or (user.role == "patient" and patient is not None and patient == user.patient)
        if not ok:
            audit.record(who=user.name, role=user.role, action=action, outcome="denied", client=client(request),
                         resource=resource, patient=patient)  # fmt: skip
            raise Denied(403, "you may not see this patient's record")

    # -- sign-in -----------------------------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form() -> str:
        return page("login.html", None)

    @app.post("/login", include_in_schema=False)
    def login(request: Request, name: Annotated[str, Form()], token: Annotated[str, Form()]) -> Response:
        keys = (f"client:{client(request)}", f"user:{name}")
        if throttle.blocked(*keys):
            audit.record(who=name[:64], role="unknown", action="login", outcome="denied", client=client(request),
                         detail="too many failed sign-ins")  # fmt: skip
            return HTMLResponse(page("login.html", None, error="Too many failed sign-ins; wait 15 minutes."), 429)
        user = users.check(token, name=name)
        if user is None:
            throttle.fail(*keys)
            audit.record(who=name[:64], role="unknown", action="login", outcome="failure", client=client(request))
            return HTMLResponse(page("login.html", None, error="Name or token not recognised."), 401)
        throttle.succeed(*keys)
        audit.record(who=user.name, role=user.role, action="login", outcome="success", client=client(request))
        response = RedirectResponse(HOME[user.role], 303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=settings.secure_cookies,
                            max_age=8 * 3600)  # fmt: skip
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, user: CurrentUser) -> Response:
        audit.record(who=user.name, role=user.role, action="logout", outcome="success", client=client(request))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE)
        return response

    # -- pages -------------------------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview_page(user: CurrentUser) -> Response:
        if user.role not in PAGES["overview"]:
            return RedirectResponse(HOME[user.role], 303)
        return HTMLResponse(page("overview.html", user, data=aggregate("overview")))

    @app.get("/outcomes", response_class=HTMLResponse, include_in_schema=False)
    def outcomes_page(user: CurrentUser) -> str:
        allow(user, "outcomes")
        return page("outcomes.html", user, data=aggregate("outcomes"))

    @app.get("/quality", response_class=HTMLResponse, include_in_schema=False)
    def quality_page(user: CurrentUser) -> str:
        allow(user, "quality")
        return page("quality.html", user, data=aggregate("quality"))

    @app.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def models_page(user: CurrentUser) -> str:
        allow(user, "models")
        return page("models.html", user, models=aggregate("models"))

    @app.get("/worklist", response_class=HTMLResponse, include_in_schema=False)
    def worklist_page(request: Request, user: CurrentUser) -> str:
        allow(user, "worklist")
        lists = {task: _data.worklist(lake, task) for task in _data.TASKS}
        audit.record(
            who=user.name,
            role=user.role,
            action="search",
            outcome="success",
            client=client(request),
            resource="worklists",
            detail=", ".join(f"{t}: {len(r)} patients" for t, r in lists.items()),
        )
        return page("worklist.html", user, lists=lists)

    @app.get("/patients/{patient_id}", response_class=HTMLResponse, include_in_schema=False)
    def timeline_page(request: Request, patient_id: str, user: CurrentUser) -> str:
        patient_access(request, user, patient_id, action="read", resource=f"Patient/{patient_id}")
        if not _data.patient_exists(lake, patient_id):
            raise Denied(404, "no such patient")
        data = _data.timeline(lake, patient_id) | {"risks": _data.risks(lake, patient_id)}
        audit.record(who=user.name, role=user.role, action="read", outcome="success", client=client(request),
                     resource=f"Patient/{patient_id}", patient=patient_id)  # fmt: skip
        return page("timeline.html", user, data=data)

    @app.get("/me", response_class=HTMLResponse, include_in_schema=False)
    def portal_page(request: Request, user: CurrentUser) -> str:
        allow(user, "portal")
        data = _data.timeline(lake, str(user.patient)) | {"risks": _data.risks(lake, str(user.patient))}
        audit.record(who=user.name, role=user.role, action="read", outcome="success", client=client(request),
                     resource=f"Patient/{user.patient}", patient=user.patient)  # fmt: skip
        return page("portal.html", user, data=data)

    @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    def admin_page(request: Request, user: CurrentUser) -> str:
        allow(user, "admin")
        events = list(audit.events())[-200:][::-1]
        check = audit.verify()
        return page("admin.html", user, users=[user_summary(u) for u in users.all()], events=events, check=check)

    # -- JSON API ----------------------------------------------------------------------------------------------------
    @app.get("/api/overview", tags=["aggregate"])
    async def api_overview(user: CurrentUser) -> dict[str, Any]:
        """Population counts and recent runs (aggregate; cells under 11 suppressed)."""
        allow(user, "overview")
        data = aggregate("overview")
        return {"counts": data["counts"], "runs": data["runs"]}

    @app.get("/api/outcomes", tags=["aggregate"])
    async def api_outcomes(user: CurrentUser) -> dict[str, Any]:
        """How many months the readmission control chart covers (aggregate)."""
        allow(user, "outcomes")
        return {"months": aggregate("outcomes")["months"]}

    @app.get("/api/models", tags=["aggregate"])
    async def api_models(user: CurrentUser) -> list[dict[str, Any]]:
        """The latest model of each task: metrics, baseline and fairness gaps."""
        allow(user, "models")
        return [{k: m[k] for k in ("task", "kind", "folder", "metrics", "baseline", "fairness")}
                for m in aggregate("models")]  # fmt: skip

    @app.get("/api/worklist", tags=["patient-level"])
    def api_worklist(request: Request, user: CurrentUser) -> list[dict[str, Any]]:
        """The care-coordination worklist (clinicians)."""
        allow(user, "worklist")
        rows = _data.worklist(lake)
        audit.record(who=user.name, role=user.role, action="search", outcome="success", client=client(request),
                     resource="worklist_readmission_30d", detail=f"{len(rows)} patients")  # fmt: skip
        return [{k: (str(v) if k == "index_time" else v) for k, v in r.items()} for r in rows]

    # -- FHIR API ----------------------------------------------------------------------------------------------------
    def fhir_json(data: dict[str, Any], status: int = 200) -> Response:
        return FhirResponse(data, status)

    def fhir_base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/fhir"

    @app.get("/fhir/metadata", tags=["fhir"], response_class=FhirResponse)
    def fhir_metadata(request: Request) -> Response:
        """The CapabilityStatement (no sign-in needed, no patient data)."""
        return fhir_json(_fhir.capability_statement(lake, fhir_base(request)))

    @app.get("/fhir/Patient/{patient_id}/$everything", tags=["fhir"], response_class=FhirResponse)
    def fhir_everything(request: Request, patient_id: str, user: CurrentUser) -> Response:
        """Everything about one patient, as a searchset Bundle."""
        patient_access(request, user, patient_id, action="export", resource=f"Patient/{patient_id}/$everything")
        bundle = _fhir.everything(lake, patient_id, dict(request.query_params), fhir_base(request))
        audit.record(who=user.name, role=user.role, action="export", outcome="success", client=client(request),
                     resource=f"Patient/{patient_id}/$everything", patient=patient_id)  # fmt: skip
        return fhir_json(bundle)

    @app.get("/fhir/{resource_type}/{resource_id}", tags=["fhir"], response_class=FhirResponse)
    def fhir_read(request: Request, resource_type: str, resource_id: str, user: CurrentUser) -> Response:
        """Read one current resource."""
        owner = _fhir.patient_of(lake, resource_type, resource_id)
        patient_access(request, user, owner, action="read", resource=f"{resource_type}/{resource_id}")
        resource = _fhir.read(lake, resource_type, resource_id)
        audit.record(who=user.name, role=user.role, action="read", outcome="success", client=client(request),
                     resource=f"{resource_type}/{resource_id}", patient=owner)  # fmt: skip
        return fhir_json(resource)

    @app.get("/fhir/{resource_type}", tags=["fhir"], response_class=FhirResponse)
    def fhir_search(request: Request, resource_type: str, user: CurrentUser) -> Response:
        """Search current resources of a type by patient/subject, _id and _lastUpdated, with _count paging."""
        params = dict(request.query_params)
        patient = _fhir.search_patient(params)
        if user.role == "patient" and patient is None:
            patient = str(user.patient)  # a patient's search is always about themself
            params["patient"] = patient
        patient_access(request, user, patient if user.role == "patient" else None, action="search",
                       resource=resource_type)  # fmt: skip
        bundle = _fhir.search(lake, resource_type, params, fhir_base(request))
        audit.record(who=user.name, role=user.role, action="search", outcome="success", client=client(request),
                     resource=resource_type, patient=patient, detail=str(request.url.query) or None)  # fmt: skip
        return fhir_json(bundle)

    # -- static files ------------------------------------------------------------------------------------------------
    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name == "plotly.min.js":
            return Response(_plotly(), media_type="text/javascript")
        files = {"charts.js": "text/javascript", "style.css": "text/css"}
        if name not in files:
            raise Denied(404, "not found")
        return Response((STATIC / name).read_bytes(), media_type=files[name])

    # Compute the aggregates once before serving: the first requests find them ready, and the libraries they
    # import (plotly, LightGBM) are loaded before threads race to import them.
    for name in ("overview", "outcomes", "models", "quality"):
        aggregate(name)
    return app


@cache
def _plotly() -> bytes:
    from carelake.reports._html import plotly_js

    return plotly_js()
