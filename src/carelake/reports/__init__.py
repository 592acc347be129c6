"""HTML reports with plots, built from the same tables a job writes as data."""

from carelake.reports._html import Report
from carelake.reports._lake import lake_overview
from carelake.reports._match import match_overview
from carelake.reports._quality import quality_overview
from carelake.reports._views import views_overview

__all__ = ["Report", "lake_overview", "match_overview", "quality_overview", "views_overview"]
