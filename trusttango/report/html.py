"""Render audit sections into one self-contained HTML page.

Figures are embedded as base64 data URIs, styles are inline: the page opens offline, with
no external scripts or fonts, and reflows from a laptop to a phone.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from trusttango.report.evidence import evidence_table


@dataclass
class Figure:
    """A PNG on disk and its caption."""

    path: Path
    caption: str


@dataclass
class Section:
    """One pillar's evidence: a headline figure with its verdict, then the detail.

    ``verdict`` is one of :data:`trusttango.report.verdicts.VERDICTS` and ``threshold`` the rule
    it was reached by; ``n/a`` with ``skipped`` saying why the section does not apply.
    """

    key: str
    title: str
    question: str
    headline: str = ""
    verdict: str = "n/a"
    threshold: str = ""
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[object]]]] = field(default_factory=list)
    figures_json: dict = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["figures"] = [{"path": str(f.path.name), "caption": f.caption} for f in self.figures]
        return out


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def render_html(title: str, subtitle: str, sections: list[Section], evidence: dict | None = None) -> str:
    """The report page: a trust card linking to each section, then the sections, then the
    ``evidence`` map (``{"table": (caption, header, rows), "annex_iv": {item: text}}``) if given."""
    env = Environment(loader=PackageLoader("trusttango.report", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["data_uri"] = _data_uri
    env.filters["fmt"] = _fmt
    page = env.get_template("report.html.j2")
    return page.render(title=title, subtitle=subtitle, sections=sections, evidence=evidence)


def write_report(out: Path, title: str, subtitle: str, sections: list[Section], record: dict) -> Path:
    """Write ``index.html`` and ``audit.json`` into ``out``; returns the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    evidence = None
    if "evidence_map" in record:
        evidence = {"table": evidence_table(record["evidence_map"]), "annex_iv": record["annex_iv"]}
    page.write_text(render_html(title, subtitle, sections, evidence), encoding="utf-8")
    document = {**record, "sections": [s.to_dict() for s in sections]}
    (out / "audit.json").write_text(json.dumps(document, indent=2, default=str))
    return page
