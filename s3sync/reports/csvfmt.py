"""CSV: one row per audited object (spreadsheets, ticket imports); findings and CloudFront edge
samples in CSVs of their own.

:func:`csv_text` is the one CSV writer of synthguard's reports (the posture findings use it too).
"""
from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Sequence

from ..models import AuditResult

COLUMNS = ("bucket", "key", "version_id", "etag", "size", "content_type", "status", "c2pa_state", "c2pa_codes",
           "watermark_detected", "watermark_payload", "training_match", "error", "owner_tags", "cached", "origin",
           "severity", "exposure", "exposure_reason")


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header and the rows as CSV text (``\\n`` line ends, minimal quoting)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue()


def findings_to_csv(result: AuditResult, **_: Any) -> str:
    """The run's findings (posture), one row each, in the columns of ``synthguard posture --format csv``."""
    from ..posture.reports import to_csv as posture_csv

    return posture_csv(list(result.findings))


EDGE_COLUMNS = ("distribution_id", "origin_id", "bucket", "key", "url", "origin_status", "origin_c2pa_state",
                "origin_watermark", "http_status", "edge_content_type", "edge_c2pa_state", "edge_watermark",
                "bytes_identical", "provenance_preserved", "reason", "error")


def edge_samples_to_csv(result: AuditResult, **_: Any) -> str:
    """The run's CloudFront edge samples, one row each."""
    rows = []
    for e in result.edge_samples:
        d = e.to_dict() if hasattr(e, "to_dict") else dict(e)
        rows.append(["" if d.get(c) is None else d.get(c) for c in EDGE_COLUMNS])
    return csv_text(EDGE_COLUMNS, rows)


def to_csv(result: AuditResult, **_: Any) -> str:
    """One row per audited object (findings: :func:`findings_to_csv`)."""
    return csv_text(COLUMNS, (_row(o, result) for o in result.objects))


def _row(o: Any, result: AuditResult) -> list[Any]:
    exp = result.exposure_of(o)
    c2 = o.c2pa or {}
    wm = o.watermark or {}
    tm = o.training_match or {}
    return [o.bucket, o.key, o.version_id or "", o.etag or "", "" if o.size is None else o.size,
            o.content_type or "", o.status, c2.get("state") or "", " ".join(c2.get("codes") or []),
            "" if not wm else str(bool(wm.get("detected"))).lower(), wm.get("payload") or "",
            tm.get("asset_id") or "", o.error or "",
            ";".join(f"{k}={v}" for k, v in sorted(o.owner_tags.items())), str(o.cached).lower(),
            o.origin or "", result.severity_of(o), exp.state, exp.why]
