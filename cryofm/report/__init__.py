"""Readable reports: one description rendered to self-contained HTML and to Markdown."""

from cryofm.report.document import Report
from cryofm.report.versions import versions

__all__ = ["Report", "versions"]
