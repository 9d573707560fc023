"""Report formats of an audit run: table (rich), json, jsonl, csv, sarif (2.1.0), html.

Every renderer takes an :class:`s3sync.models.AuditResult` and returns text, so the CLI, the
``audit report`` command and library users produce identical output from a live run or from the
state DB. Findings other checks attach (``result.findings``: posture, edge samples) are rendered by
every format.
"""
from __future__ import annotations

from typing import Any, Callable

from ..models import AuditResult

FORMATS = ("table", "json", "jsonl", "csv", "sarif", "html")


def render(result: AuditResult, fmt: str = "table", **kw: Any) -> str:
    """Render ``result`` as ``fmt`` (one of :data:`FORMATS`)."""
    fn = _renderer(fmt)
    return fn(result, **kw)


def _renderer(fmt: str) -> Callable[..., str]:
    fmt = fmt.lower()
    if fmt == "json":
        from .jsonfmt import to_json
        return to_json
    if fmt == "jsonl":
        from .jsonfmt import to_jsonl
        return to_jsonl
    if fmt == "csv":
        from .csvfmt import to_csv
        return to_csv
    if fmt == "sarif":
        from .sarif import to_sarif
        return to_sarif
    if fmt == "html":
        from .html import to_html
        return to_html
    if fmt == "table":
        from .table import to_table
        return to_table
    raise ValueError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")


def finding_fields(f: Any) -> dict[str, Any]:
    """A finding (posture Finding, edge sample, or dict) as a flat dict for tables and rows."""
    d = f.to_dict() if hasattr(f, "to_dict") else dict(f) if isinstance(f, dict) else {"value": str(f)}
    return d
