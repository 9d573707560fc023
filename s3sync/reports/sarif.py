"""SARIF 2.1.0, the one writer: the log skeleton, the severity maps and the finding -> result mapping
shared by the audit report (objects and the findings attached to a run) and ``synthguard posture``.

Audit objects: rules are the audit statuses (one rule per status that signals a problem, and one per
severity where a status's severity depends on the object: a leak in a bucket known private is its own,
high rule); objects that are ``ok`` produce no result; locations are the ``s3://`` URIs. Posture findings: one rule per check
id (from the check registry), results with ``kind`` pass/fail/review and the ARN as location.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from ..models import AuditResult

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_URI = "https://github.com/synthguard/synthguard"

# severity -> SARIF level of a failing result, and GitHub code scanning's numeric "security-severity"
LEVEL: dict[str, str] = {"critical": "error", "high": "error", "medium": "warning", "low": "note",
                         "informational": "note"}
SECURITY_SEVERITY: dict[str, str] = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0",
                                     "informational": "0.0"}
KIND: dict[str, str] = {"fail": "fail", "pass": "pass", "unknown": "review"}

RULES: dict[str, tuple[str, str, str]] = {
    # status: (id, short description, level)
    "leaked_training_asset": ("SG-S3-LEAK", "Object matches a registered training asset", "error"),
    "invalid_provenance": ("SG-S3-INVALID", "C2PA manifest present but invalid (tampered)", "error"),
    "missing_provenance": ("SG-S3-MISSING", "Media object without C2PA manifest or watermark", "error"),
    "untrusted": ("SG-S3-UNTRUSTED", "C2PA manifest valid but signer not trusted", "warning"),
    "unreadable": ("SG-S3-UNREADABLE", "Object could not be fetched or decoded", "warning"),
    "watermark_only": ("SG-S3-WATERMARK-ONLY", "Watermark found but no C2PA manifest", "note"),
}
# A status whose severity depends on the object (a leak is critical where the bucket is exposed, high
# where it is known private) gets a rule per severity: GitHub code scanning reads the severity from
# the rule ("security-severity"), never from the result.
RULE_VARIANTS: dict[tuple[str, str], tuple[str, str]] = {
    ("leaked_training_asset", "high"): ("SG-S3-LEAK-PRIVATE",
                                        "Object matches a registered training asset (bucket known not public)"),
}


# An edge copy (CloudFront --sample-edge) that lost the provenance its origin object carries.
EDGE_RULE = ("SG-CF-EDGE-STRIPPED", "edge_provenance_lost",
             "CloudFront serves a copy without the provenance of its origin object", "high")


def tool_version() -> str:
    """synthguard's installed version (``0+unknown`` when run from a source tree)."""
    try:
        from importlib.metadata import version

        return version("synthguard")
    except Exception:
        return "0+unknown"


def level(severity: Any) -> str:
    """The SARIF level for a severity name (``warning`` for anything unknown)."""
    return LEVEL.get(str(severity or "").lower(), "warning")


def sarif_log(tool_name: str, rules: list[dict], results: list[dict], *, version: str | None = None,
              information_uri: str = TOOL_URI, run_extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The minimal valid SARIF 2.1.0 log around one run (every synthguard SARIF document has this shape)."""
    run: dict[str, Any] = {"tool": {"driver": {"name": tool_name, "version": version or tool_version(),
                                               "informationUri": information_uri, "rules": rules}}}
    run.update(run_extra or {})
    run["results"] = results
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}


# ----------------------------------------------------------------------------- posture findings
def check_rule(meta: Any) -> dict[str, Any]:
    """A posture check's rule (``meta`` is its :class:`~s3sync.posture.models.CheckMeta`)."""
    return {"id": meta.id, "name": meta.id.replace(".", "_"), "shortDescription": {"text": meta.title},
            "fullDescription": {"text": meta.risk}, "help": {"text": meta.remediation},
            "defaultConfiguration": {"level": LEVEL[meta.severity]},
            "properties": {"security-severity": SECURITY_SEVERITY[meta.severity],
                           "tags": ["security", "synthguard", meta.service]}}


def finding_result(f: Any, rule_index: int = -1) -> dict[str, Any]:
    """A posture :class:`~s3sync.posture.models.Finding` as a SARIF result (level only for kind=fail)."""
    kind = KIND[f.status.value]
    ev = f.evidence or {}
    msg = f"{f.title or f.check}: {f.resource}"
    if ev.get("reason") or ev.get("why"):
        msg += f" ({ev.get('reason') or ev.get('why')})"
    return {"ruleId": f.check, "ruleIndex": rule_index, "kind": kind,
            "level": LEVEL[f.severity] if kind == "fail" else "none",
            "message": {"text": msg},
            # physicalLocation too: code-scanning uploads (GitHub) require one; the ARN is a valid URI
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": f.resource}},
                           "logicalLocations": [{"fullyQualifiedName": f.resource, "kind": "resource"}]}],
            "partialFingerprints": {"synthguardFinding/v1": f.uid},
            "properties": {"status": f.status.value, "severity": f.severity, "owner": f.owner,
                           "evidence": f.to_dict()["evidence"]}}


def findings_sarif(findings: Iterable[Any], rules: list[dict], *, all_checks: bool) -> list[dict]:
    """Results for ``findings``, appending check rules to ``rules`` (all of them, or those used).

    Findings may be Finding values or their dicts (as the state DB returns them); a dict that is not
    a finding still becomes a result, under its own rule id, so nothing attached to a run is dropped.
    """
    from ..posture.checks import CHECK_IDS, REGISTRY
    from ..posture.models import Finding

    index = {r["id"]: i for i, r in enumerate(rules)}

    def rule_index(cid: str) -> int:
        if cid not in index and cid in REGISTRY:
            index[cid] = len(rules)
            rules.append(check_rule(REGISTRY[cid][0]))
        return index.get(cid, -1)

    if all_checks:
        for cid in CHECK_IDS:
            rule_index(cid)
    results = []
    for f in findings:
        if not isinstance(f, Finding):
            d = f.to_dict() if hasattr(f, "to_dict") else f
            try:
                f = Finding.from_dict(d)
            except (TypeError, ValueError, KeyError, AttributeError):
                rid = str(d.get("check") or d.get("id") or "SG-FINDING") if isinstance(d, Mapping) else "SG-FINDING"
                d = dict(d) if isinstance(d, Mapping) else {"value": str(d)}
                results.append({"ruleId": rid, "level": level(d.get("severity")),
                                "message": {"text": str(d.get("title") or d.get("message") or d.get("status") or rid)},
                                "locations": [{"physicalLocation": {"artifactLocation": {"uri": str(d.get("resource", ""))}}}],
                                "properties": d})
                continue
        results.append(finding_result(f, rule_index(f.check)))
    return results


# ----------------------------------------------------------------------------- the audit report
def _status_rule(rid: str, status: str, text: str, severity: str) -> dict[str, Any]:
    return {"id": rid, "name": status, "shortDescription": {"text": text},
            "defaultConfiguration": {"level": level(severity)},
            "properties": {"status": status, "security-severity": SECURITY_SEVERITY.get(severity, "5.5"),
                           "tags": ["security", "synthguard"]}}


def _edge_results(losses: Iterable[dict[str, Any]], rules: list[dict]) -> list[dict[str, Any]]:
    """One result per edge sample whose copy lost the origin's provenance
    (:meth:`AuditResult.edge_losses`)."""
    out: list[dict[str, Any]] = []
    rid, name, text, sev = EDGE_RULE
    for d in losses:
        if not any(r["id"] == rid for r in rules):
            rules.append(_status_rule(rid, name, text, sev))
        out.append({"ruleId": rid, "ruleIndex": next(i for i, r in enumerate(rules) if r["id"] == rid),
                    "level": level(sev),
                    "message": {"text": f"{d.get('url')}: {d.get('reason')} (origin "
                                        f"{_object_uri(str(d.get('bucket')), str(d.get('key')), None)})"},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": str(d.get("url"))}}}],
                    "partialFingerprints": {"edgeUrl": str(d.get("url"))},
                    "properties": {**d, "severity": sev, "security-severity": SECURITY_SEVERITY[sev]}})
    return out


def _object_uri(bucket: str, key: str, version_id: str | None) -> str:
    """``s3://bucket/key[?versionId=...]`` as a valid URI: the key percent-encoded (a key may hold
    spaces, '#', '?', '%' or control characters, which SARIF consumers would misread)."""
    uri = f"s3://{bucket}/{quote(key, safe='/')}"
    return uri + (f"?versionId={quote(version_id, safe='')}" if version_id else "")


def to_sarif(result: AuditResult, **_: Any) -> str:
    from ..models import SEVERITY

    rules = [_status_rule(rid, status, text, SEVERITY[status]) for status, (rid, text, _lvl) in RULES.items()]
    rules += [_status_rule(rid, status, text, sev) for (status, sev), (rid, text) in RULE_VARIANTS.items()]
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = []
    for o in result.objects:
        if o.status not in RULES:
            continue
        uri = _object_uri(o.bucket, o.key, o.version_id)
        sev, exp = result.severity_of(o), result.exposure_of(o)
        rid = RULE_VARIANTS.get((o.status, sev), RULES[o.status])[0]
        why = "; ".join(x for x in (o.reason, f"{sev}: {exp.why}" if o.status == "leaked_training_asset" else "")
                        if x)
        results.append({
            "ruleId": rid, "ruleIndex": index[rid], "level": level(sev),
            "message": {"text": f"{o.status}: {o.uri}" + (f" ({why})" if why else "")},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
            "partialFingerprints": {"objectEtag": f"{o.bucket}/{o.key}/{o.version_id or ''}/{o.etag or ''}"},
            "properties": {"bucket": o.bucket, "key": o.key, "versionId": o.version_id, "etag": o.etag,
                           "contentType": o.content_type, "c2pa": o.c2pa, "watermark": o.watermark,
                           "trainingMatch": o.training_match, "ownerTags": dict(o.owner_tags),
                           "severity": sev, "security-severity": SECURITY_SEVERITY.get(sev, "5.5"),
                           "exposure": exp.to_dict()},
        })
    results += _edge_results(result.edge_losses(), rules)
    if result.findings:
        results += findings_sarif(result.findings, rules, all_checks=False)
    doc = sarif_log("synthguard", rules, results,
                    run_extra={"automationDetails": {"id": f"synthguard-audit/{result.run_id}"},
                               "properties": {"summary": dict(result.summary)}})
    return json.dumps(doc, indent=2, default=str) + "\n"
