"""The trust report: one self-contained HTML file (figures embedded) plus ``audit.json``."""

from trusttango.report.html import Figure, Section, render_html, write_report

__all__ = ["Figure", "Section", "render_html", "write_report"]
