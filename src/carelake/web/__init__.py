"""The web application: dashboards per role, a patient portal, a JSON API, a read-only FHIR API, token auth
with roles and a tamper-evident audit log. ``carelake serve`` runs it; see docs/web.md and docs/security.md.

    >>> from carelake.web import Settings, create_app
    >>> app = create_app(Settings(lake=Path("carelake-lake")))   # doctest: +SKIP
"""

from carelake.web._app import Settings, create_app
from carelake.web._audit import AuditLog
from carelake.web._auth import ROLES, Users

__all__ = ["ROLES", "AuditLog", "Settings", "Users", "create_app"]
