"""JSON (one document) and JSON Lines (a summary line, then one line per object / finding)."""
from __future__ import annotations

import json
from typing import Any

from ..models import AuditResult


def to_json(result: AuditResult, *, include_skipped: int = 100, **_: Any) -> str:
    return json.dumps(result.to_dict(include_skipped=include_skipped), indent=2, default=str) + "\n"


def to_jsonl(result: AuditResult, **_: Any) -> str:
    """Streams well into log pipelines: ``{"type": "summary"}``, ``{"type": "object"}``, ..."""
    lines = [json.dumps({"type": "summary", "run_id": result.run_id, **dict(result.summary)}, default=str)]
    for o in result.objects:
        lines.append(json.dumps({"type": "object", "run_id": result.run_id, **result.object_dict(o)}, default=str))
    for f in result.findings:
        d = f.to_dict() if hasattr(f, "to_dict") else f
        lines.append(json.dumps({"type": "finding", "run_id": result.run_id, **d}, default=str))
    for e in result.edge_samples:
        d = e.to_dict() if hasattr(e, "to_dict") else e
        lines.append(json.dumps({"type": "edge_sample", "run_id": result.run_id, **d}, default=str))
    return "\n".join(lines) + "\n"
