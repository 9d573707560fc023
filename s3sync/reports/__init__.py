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


# format -> (module of this package, function): imported on first use, so one format costs one import
_RENDERERS: dict[str, tuple[str, str]] = {
    "json": ("jsonfmt", "to_json"), "jsonl": ("jsonfmt", "to_jsonl"), "csv": ("csvfmt", "to_csv"),
    "sarif": ("sarif", "to_sarif"), "html": ("html", "to_html"), "table": ("table", "to_table"),
}


def _renderer(fmt: str) -> Callable[..., str]:
    try:
        module, name = _RENDERERS[fmt.lower()]
    except KeyError:
        raise ValueError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})") from None
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def finding_fields(f: Any) -> dict[str, Any]:
    """A finding (posture Finding, edge sample, or dict) as a flat dict for tables and rows."""
    d = f.to_dict() if hasattr(f, "to_dict") else dict(f) if isinstance(f, dict) else {"value": str(f)}
    return d
