"""SARIF 2.1.0: code-scanning dashboards (GitHub, Azure DevOps) show each problem object as a result.

Rules are the audit statuses (one rule per status that signals a problem); objects that are ``ok``
produce no result. Locations are the ``s3://`` URIs of the objects.
"""
from __future__ import annotations

import json
from typing import Any

from ..models import AuditResult

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

RULES: dict[str, tuple[str, str, str]] = {
    # status: (id, short description, level)
    "leaked_training_asset": ("SG-S3-LEAK", "Object matches a registered training asset", "error"),
    "invalid_provenance": ("SG-S3-INVALID", "C2PA manifest present but invalid (tampered)", "error"),
    "missing_provenance": ("SG-S3-MISSING", "Media object without C2PA manifest or watermark", "error"),
    "untrusted": ("SG-S3-UNTRUSTED", "C2PA manifest valid but signer not trusted", "warning"),
    "unreadable": ("SG-S3-UNREADABLE", "Object could not be fetched or decoded", "warning"),
    "watermark_only": ("SG-S3-WATERMARK-ONLY", "Watermark found but no C2PA manifest", "note"),
}


def to_sarif(result: AuditResult, **_: Any) -> str:
    rules = [{"id": rid, "name": status, "shortDescription": {"text": text},
              "defaultConfiguration": {"level": level},
              "properties": {"status": status}} for status, (rid, text, level) in RULES.items()]
    index = {status: i for i, status in enumerate(RULES)}
    results = []
    for o in result.objects:
        if o.status not in RULES:
            continue
        rid, _text, level = RULES[o.status]
        uri = o.uri + (f"?versionId={o.version_id}" if o.version_id else "")
        results.append({
            "ruleId": rid, "ruleIndex": index[o.status], "level": level,
            "message": {"text": f"{o.status}: {o.uri}" + (f" ({o.reason})" if o.reason else "")},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
            "partialFingerprints": {"objectEtag": f"{o.bucket}/{o.key}/{o.version_id or ''}/{o.etag or ''}"},
            "properties": {"bucket": o.bucket, "key": o.key, "versionId": o.version_id, "etag": o.etag,
                           "contentType": o.content_type, "c2pa": o.c2pa, "watermark": o.watermark,
                           "trainingMatch": o.training_match, "ownerTags": dict(o.owner_tags)},
        })
    for f in result.findings:
        d = f.to_dict() if hasattr(f, "to_dict") else dict(f)
        rid = str(d.get("check") or d.get("id") or "SG-FINDING")
        results.append({"ruleId": rid, "level": _level(d.get("severity")),
                        "message": {"text": str(d.get("title") or d.get("message") or d.get("status") or rid)},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": str(d.get("resource", ""))}}}],
                        "properties": d})
    doc = {
        "$schema": SCHEMA, "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "synthguard", "informationUri": "https://github.com/synthguard/synthguard",
                                "version": _version(), "rules": rules}},
            "automationDetails": {"id": f"synthguard-audit/{result.run_id}"},
            "results": results,
            "properties": {"summary": dict(result.summary)},
        }],
    }
    return json.dumps(doc, indent=2, default=str) + "\n"


def _level(sev: Any) -> str:
    s = str(sev or "").lower()
    return {"critical": "error", "high": "error", "medium": "warning", "low": "note"}.get(s, "warning")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("synthguard")
    except Exception:
        return "0+unknown"
