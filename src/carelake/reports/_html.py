"""A self-contained HTML report: headings, key figures, tables and Plotly charts, readable offline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
{% if plotly %}<script src="{{ plotly }}" charset="utf-8"></script>{% endif %}
<style>
 body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
        padding: 1rem 1.5rem; color: #1d2433; }
 h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #dde3ec; }
 .sub { color: #5b6578; } .metrics { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
 .metric { background: #f3f6fa; border-radius: 8px; padding: .6rem 1rem; min-width: 9rem; }
 .metric b { display: block; font-size: 1.4rem; } .metric span { color: #5b6578; font-size: .85rem; }
 table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
 th, td { border-bottom: 1px solid #e6eaf0; padding: .3rem .7rem; text-align: left; }
 td.num { text-align: right; font-variant-numeric: tabular-nums; }
 .note { color: #5b6578; font-size: .9rem; } .ok { color: #12734b; } .bad { color: #b42318; }
</style></head><body>
<h1>{{ title }}</h1><p class="sub">{{ subtitle }} · generated {{ generated }}</p>
{% for s in sections %}
 {% if s.kind == "heading" %}<h2 id="{{ s.anchor }}">{{ s.text }}</h2>
 {% elif s.kind == "text" %}<p class="note">{{ s.text }}</p>
 {% elif s.kind == "metrics" %}<div class="metrics">{% for k, v in s.pairs %}
   <div class="metric"><b>{{ v }}</b><span>{{ k }}</span></div>{% endfor %}</div>
 {% elif s.kind == "table" %}<table><thead><tr>{% for c in s.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
   <tbody>{% for row in s.rows %}<tr>{% for v in row %}<td{% if v is number %} class="num"{% endif %}>{{
   "{:,}".format(v) if v is number and v is not boolean else v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
 {% elif s.kind == "figure" %}<div class="figure">{{ s.html }}</div>
 {% endif %}
{% endfor %}
</body></html>
"""


PLOTLY_FILE = "plotly.min.js"


@cache
def plotly_js() -> bytes:
    """The plotly.js bundle of the installed plotly package (no CDN: reports work offline)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


@dataclass
class Report:
    """Collect sections, then ``save``; plotly.js is written beside the HTML, so the report works offline.

    The library sits in its own file rather than inline: the leak sweep recognises it byte for byte, and the
    HTML holds only the report's own content.
    """

    title: str
    subtitle: str = ""
    sections: list[dict[str, Any]] = field(default_factory=list)
    _has_figures: bool = False

    def heading(self, text: str) -> None:
        self.sections.append({"kind": "heading", "text": text, "anchor": text.lower().replace(" ", "-")})

    def text(self, text: str) -> None:
        self.sections.append({"kind": "text", "text": text})

    def metrics(self, items: dict[str, Any]) -> None:
        formatted = [(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in items.items()]
        self.sections.append({"kind": "metrics", "pairs": formatted})

    def table(self, columns: list[str], rows: list[list[Any]]) -> None:
        self.sections.append({"kind": "table", "columns": columns, "rows": rows})

    def figure(self, fig: Any) -> None:
        """Add a Plotly figure."""
        html = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})
        self._has_figures = True
        self.sections.append({"kind": "figure", "html": Markup(html)})

    def save(self, path: Path) -> Path:
        env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
        html = env.from_string(_TEMPLATE).render(
            title=self.title,
            subtitle=self.subtitle,
            sections=self.sections,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            plotly=PLOTLY_FILE if self._has_figures else None,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._has_figures:
            library = path.parent / PLOTLY_FILE
            if not library.exists() or library.read_bytes() != plotly_js():
                library.write_bytes(plotly_js())
        path.write_text(html, encoding="utf-8")
        return path
