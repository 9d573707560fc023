"""CSV: one row per audited object (spreadsheets, ticket imports)."""
from __future__ import annotations

import csv
import io
from typing import Any

from ..models import AuditResult

COLUMNS = ("bucket", "key", "version_id", "etag", "size", "content_type", "status", "c2pa_state", "c2pa_codes",
           "watermark_detected", "watermark_payload", "training_match", "error", "owner_tags", "cached", "origin")


def to_csv(result: AuditResult, **_: Any) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for o in result.objects:
        c2 = o.c2pa or {}
        wm = o.watermark or {}
        tm = o.training_match or {}
        w.writerow([o.bucket, o.key, o.version_id or "", o.etag or "", "" if o.size is None else o.size,
                    o.content_type or "", o.status, c2.get("state") or "", " ".join(c2.get("codes") or []),
                    "" if not wm else str(bool(wm.get("detected"))).lower(), wm.get("payload") or "",
                    tm.get("asset_id") or "", o.error or "",
                    ";".join(f"{k}={v}" for k, v in sorted(o.owner_tags.items())), str(o.cached).lower(),
                    o.origin or ""])
    return buf.getvalue()
