"""The web application as its users meet it: roles, refusals, the FHIR API, the audit trail, and Chromium.

The lake is a generated population with a trained readmission model and its worklist; the FHIR API is also
read over the public Synthea corpus. Pages are driven in Debian's headless Chromium through Playwright.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import carelake as cl
from carelake.cohorts import build_cohort
from carelake.features import build_features
from carelake.models import score_model, train_model
from carelake.web import AuditLog, Settings, Users, create_app

CHROMIUM = Path("/usr/bin/chromium")


class Site:
    """A served lake: its app, a test client, tokens per role, and two patients to tamper between."""

    def __init__(self, root: Path, lake: cl.Lake) -> None:
        self.lake = lake
        users = Users(lake.root)
        # Patient A: on the worklist if anyone is, with vital signs to chart; patient B: anyone else.
        ranked = (
            lake.sql("""
            SELECT o.patient_id FROM observations o LEFT JOIN worklist_readmission_30d w ON w.patient_id = o.patient_id
            WHERE o.loinc_code = '8480-6' GROUP BY o.patient_id, w.rank
            ORDER BY w.rank NULLS LAST, count(*) DESC, o.patient_id LIMIT 1""")
            .column(0)
            .to_pylist()
        )
        others = lake.sql("SELECT id FROM patients ORDER BY id LIMIT 2").column(0).to_pylist()
        self.patient_a = ranked[0]
        self.patient_b = next(p for p in others if p != self.patient_a)
        self.tokens = {
            "admin": users.add("ada", "admin"),
            "analyst": users.add("ana", "analyst"),
            "clinician": users.add("cleo", "clinician"),
            "patient": users.add("pat", "patient", patient=self.patient_a),
        }
        self.names = {"admin": "ada", "analyst": "ana", "clinician": "cleo", "patient": "pat"}
        self.app = create_app(Settings(lake=lake.root))
        self.client = TestClient(self.app)
        self.audit = AuditLog(lake.root)

    def get(self, path: str, role: str | None = None, **kwargs: Any) -> Any:
        headers = {"accept": "text/html"} | kwargs.pop("headers", {})
        if role is not None:
            headers["authorization"] = f"Bearer {self.tokens[role]}"
        return self.client.get(path, headers=headers, follow_redirects=False, **kwargs)


@pytest.fixture(scope="module")
def site(viewed_lake: Callable[[int, int], tuple[Path, cl.Lake, str]]) -> Site:
    root, lake, as_of = viewed_lake(1500, 43)
    build_cohort("readmission-30d", lake=lake, as_of=as_of)
    build_features("readmission-30d", lake=lake)
    train_model("readmission-30d", lake=lake)
    score_model("readmission-30d", lake=lake)
    return Site(root, lake)


PAGES = ["/", "/outcomes", "/quality", "/models", "/worklist", "/me", "/admin", "/api/overview", "/api/models",
         "/api/worklist"]  # fmt: skip
ALLOWED = {
    "admin": {"/", "/quality", "/admin", "/api/overview"},
    "analyst": {"/", "/outcomes", "/quality", "/models", "/api/overview", "/api/models"},
    "clinician": {"/", "/outcomes", "/models", "/worklist", "/api/overview", "/api/models", "/api/worklist"},
    "patient": {"/me"},
}


def test_deny_by_default(site: Site) -> None:
    """No route but sign-in, static files, the OpenAPI document and FHIR metadata answers without a token."""
    public = {"/login", "/static/{name}", "/favicon.ico", "/openapi.json", "/fhir/metadata"}
    for route in site.app.routes:
        path = getattr(route, "path", "")
        if path in public or "GET" not in getattr(route, "methods", {"GET"}):
            continue
        url = path.replace("{patient_id}", site.patient_a).replace("{resource_type}", "Patient")
        url = url.replace("{resource_id}", site.patient_a)
        response = site.get(url)
        assert response.status_code in (303, 401), (path, response.status_code)
    assert site.get("/", headers={"authorization": "Bearer not-a-token"}).status_code == 303


@pytest.mark.parametrize("role", ["admin", "analyst", "clinician", "patient"])
def test_each_role_sees_only_its_pages(site: Site, role: str) -> None:
    for page in PAGES:
        status = site.get(page, role).status_code
        if page in ALLOWED[role]:
            assert status == 200, (role, page, status)
        else:
            assert status in (303, 403), (role, page, status)  # the patient's "/" sends them to their record


def test_url_tampering_is_refused_and_audited(site: Site) -> None:
    before = sum(1 for _ in site.audit.events())
    a, b = site.patient_a, site.patient_b
    attempts = [
        ("patient", f"/patients/{b}"),
        ("patient", f"/fhir/Patient/{b}"),
        ("patient", f"/fhir/Observation?patient={b}"),
        ("patient", f"/fhir/Patient/{b}/$everything"),
        ("analyst", f"/patients/{a}"),
        ("analyst", f"/fhir/Patient/{a}"),
        ("admin", f"/fhir/Observation?patient={a}"),
    ]
    for role, url in attempts:
        response = site.get(url, role)
        assert response.status_code == 403, (role, url)
        if url.startswith("/fhir"):
            assert response.json()["resourceType"] == "OperationOutcome"
    events = list(site.audit.events())[before:]
    assert len(events) == len(attempts) and all(e["outcome"] == "denied" for e in events)
    # A patient's own record is theirs to read.
    assert site.get(f"/fhir/Patient/{a}", "patient").status_code == 200


def test_every_patient_data_request_writes_exactly_one_event(site: Site) -> None:
    a = site.patient_a
    requests = [
        ("clinician", f"/patients/{a}", "read"),
        ("clinician", "/worklist", "search"),
        ("clinician", "/api/worklist", "search"),
        ("clinician", f"/fhir/Patient/{a}", "read"),
        ("clinician", f"/fhir/Encounter?patient={a}&_count=2", "search"),
        ("clinician", f"/fhir/Patient/{a}/$everything", "export"),
        ("clinician", "/fhir/Patient/no-such-patient", "read"),
        ("patient", "/me", "read"),
        ("patient", "/fhir/Observation", "search"),
    ]
    for role, url, action in requests:
        before = sum(1 for _ in site.audit.events())
        response = site.get(url, role)
        events = list(site.audit.events())[before:]
        assert len(events) == 1, (url, events)
        event = events[0]
        assert event["action"] == action and event["who"] == site.names[role] and event["role"] == role
        assert event["outcome"] == ("failure" if response.status_code == 404 else "success"), url
    # Aggregate pages are not patient data: no event.
    before = sum(1 for _ in site.audit.events())
    site.get("/outcomes", "analyst")
    assert sum(1 for _ in site.audit.events()) == before
    check = site.audit.verify()
    assert check.ok, check.problem


def test_fhir_api_reads_searches_pages_and_answers_errors_as_operation_outcomes(site: Site) -> None:
    a = site.patient_a
    metadata = site.client.get("/fhir/metadata").json()
    assert metadata["resourceType"] == "CapabilityStatement" and metadata["fhirVersion"] == "4.0.1"
    assert {"Patient", "Observation", "Encounter"} <= {r["type"] for r in metadata["rest"][0]["resource"]}
    patient = site.get(f"/fhir/Patient/{a}", "clinician")
    assert patient.headers["content-type"].startswith("application/fhir+json") and patient.json()["id"] == a
    observations = site.lake.sql(f"SELECT count(*) FROM resources WHERE resource_type = 'Observation' "
                                 f"AND patient_id = '{a}'").column(0)[0].as_py()  # fmt: skip
    page = site.get(f"/fhir/Observation?patient=Patient/{a}&_count=2", "clinician").json()
    assert page["type"] == "searchset" and page["total"] == observations and len(page["entry"]) == min(2, observations)
    if observations > 2:
        next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
        second = site.get(next_url, "clinician").json()
        assert {e["resource"]["id"] for e in second["entry"]}.isdisjoint({e["resource"]["id"] for e in page["entry"]})
    everything = site.get(f"/fhir/Patient/{a}/$everything?_count=500", "clinician").json()
    owned = site.lake.sql(f"SELECT count(*) FROM resources WHERE patient_id = '{a}' OR "
                          f"(resource_type = 'Patient' AND id = '{a}')").column(0)[0].as_py()  # fmt: skip
    assert everything["total"] == owned and any(e["resource"]["resourceType"] == "Patient" for e in everything["entry"])
    future = site.get(f"/fhir/Observation?patient={a}&_lastUpdated=gt2999-01-01", "clinician").json()
    assert future["total"] == 0
    for url, status in [
        ("/fhir/Observation?colour=blue", 400),
        ("/fhir/Observation/nope", 404),
        ("/fhir/Observation/nope%0A", 400),  # "nope\n" is not a FHIR id, though re's $ would let it through
        ("/fhir/Observation?_count=lots", 400),
        ("/fhir/Observation?_lastUpdated=yesterday", 400),
    ]:
        response = site.get(url, "clinician")
        assert response.status_code == status and response.json()["resourceType"] == "OperationOutcome", url


def test_sign_in_sets_a_safe_cookie_and_brute_force_is_stopped(site: Site) -> None:
    client = TestClient(site.app)
    ok = client.post("/login", data={"name": "ana", "token": site.tokens["analyst"]}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/", headers={"accept": "text/html"})
    assert page.status_code == 200
    for header, value in [("x-frame-options", "DENY"), ("x-content-type-options", "nosniff")]:
        assert page.headers[header] == value
    assert "script-src 'self'" in page.headers["content-security-policy"] and "<script>" not in page.text
    target = Users(site.lake.root).add("bruno", "clinician")  # locked out below: not a user other tests sign in as
    attacker = TestClient(site.app)
    statuses = [attacker.post("/login", data={"name": "bruno", "token": f"guess-{i}"}).status_code for i in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
    # The lockout holds even for the right token, and every attempt was audited.
    right = attacker.post("/login", data={"name": "bruno", "token": target})
    assert right.status_code == 429
    logins = [e for e in site.audit.events() if e["action"] == "login" and e["who"] == "bruno"]
    assert [e["outcome"] for e in logins][-8:] == ["failure"] * 5 + ["denied"] * 3


def test_server_logs_carry_route_templates_never_patient_ids(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="carelake.web"):
        site.get(f"/patients/{site.patient_a}", "clinician")
        site.get(f"/fhir/Observation?patient={site.patient_a}", "clinician")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "/patients/{patient_id}" in messages and site.patient_a not in messages


def test_users_and_audit_from_the_command_line(site: Site, capsys: pytest.CaptureFixture) -> None:
    from carelake.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--lake", str(site.lake.root), "users", "add", "nurse", "--role", "clinician", "--json"])
    assert done.value.code in (0, None)
    token = json.loads(capsys.readouterr().out)["token"]
    assert len(token) >= 40 and token not in (site.lake.root / "web" / "users.json").read_text()
    assert oct((site.lake.root / "web" / "users.json").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(SystemExit) as done:
        main(["--lake", str(site.lake.root), "audit", "verify", "--json"])
    assert done.value.code in (0, None) and json.loads(capsys.readouterr().out)["ok"]
    with pytest.raises(SystemExit) as done:
        main(["--lake", str(site.lake.root), "audit", "export", "--format", "fhir"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events and all(e["resourceType"] == "AuditEvent" for e in events)


def test_fhir_api_over_the_synthea_corpus(testdata: Path, tmp_path: Path) -> None:
    lake = cl.open_lake(tmp_path / "synthea")
    cl.ingest_fhir([testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients"], lake=lake)
    token = Users(lake.root).add("cleo", "clinician")
    client = TestClient(create_app(Settings(lake=lake.root)))
    headers = {"authorization": f"Bearer {token}"}
    patient = "a5cb8ce9-cec6-6b23-0990-cbaf753578a4"
    source = testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients"
    # Counted from the NDJSON by hand: this patient's encounters reference them as subject.
    lines = (source / "Encounter.000.ndjson").read_text().splitlines()
    encounters = sum(f"Patient/{patient}" in line for line in lines)
    bundle = client.get(f"/fhir/Encounter?subject=Patient/{patient}&_count=500", headers=headers).json()
    assert bundle["total"] == encounters > 0
    read = client.get(f"/fhir/Patient/{patient}", headers=headers).json()
    assert read["resourceType"] == "Patient" and read["id"] == patient


# -- the browser ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(site: Site) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, for the browser."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(site.app, host="127.0.0.1", port=port, access_log=False,
                                          log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def _sign_in(browser: Any, base: str, name: str, token: str) -> Any:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{base}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.errors = errors
    return page


def _charts_drawn(page: Any) -> int:
    """How many Plotly charts the page drew as SVG (each shipped figure must become one)."""
    page.wait_for_load_state("load")
    page.wait_for_selector("footer", state="attached")
    shipped = page.locator("script.plotly-data").count()
    if shipped:
        page.wait_for_function(f"document.querySelectorAll('.plot .main-svg').length >= {shipped}", timeout=20_000)
    return page.locator(".plot").count()


@pytest.mark.browser
@pytest.mark.slow
def test_each_role_in_chromium(site: Site, served: str, browser: Any) -> None:
    visits = {
        "analyst": ["/", "/outcomes", "/quality", "/models"],
        "clinician": ["/worklist", f"/patients/{site.patient_a}", "/models"],
        "patient": ["/me"],
        "admin": ["/admin", "/"],
    }
    for role, paths in visits.items():
        page = _sign_in(browser, served, site.names[role], site.tokens[role])
        for path in paths:
            response = page.goto(served + path)
            assert response.status == 200 and page.url == served + path, (role, path, page.url)
            drawn = _charts_drawn(page)
            if path in ("/", "/outcomes", "/models", "/me") or path.startswith("/patients/"):
                assert drawn > 0, (role, path)  # charts were drawn, not just shipped as data
        assert not page.errors, (role, page.errors)  # no CSP violation, no script error
        page.close()


@pytest.mark.browser
@pytest.mark.slow
def test_tampering_in_chromium_is_refused(site: Site, served: str, browser: Any) -> None:
    page = _sign_in(browser, served, "pat", site.tokens["patient"])
    assert page.url.endswith("/me")
    response = page.goto(f"{served}/patients/{site.patient_b}")
    assert response.status == 403 and "may not see this patient" in page.content()
    page.close()
    page = _sign_in(browser, served, "ana", site.tokens["analyst"])
    response = page.goto(f"{served}/patients/{site.patient_a}")
    assert response.status == 403 and "may not see" in page.content()
    page.close()


# -- the OpenAPI contract ---------------------------------------------------------------------------------------------


def test_the_api_keeps_its_openapi_contract(site: Site) -> None:
    """Schemathesis generates requests from /openapi.json: no 5xx, every 200 response as documented."""
    import schemathesis

    schema = schemathesis.openapi.from_asgi("/openapi.json", site.app)
    failures = []
    for role in ("analyst", "clinician", "patient"):
        for operation in schema.get_all_operations():
            op = operation.ok()
            try:
                _contract_check(op, {"authorization": f"Bearer {site.tokens[role]}"})()
            except AssertionError as exc:
                failures.append(f"{role} {op.method.upper()} {op.path}: {str(exc)[:300]}")
    assert not failures, failures


def _contract_check(op: Any, headers: dict[str, str]) -> Callable[[], None]:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def check(case: Any) -> None:
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.path, response.status_code)
        if response.status_code == 200:
            case.validate_response(response)

    return check
