"""Findings writers: table, JSON, CSV, SARIF 2.1.0, OCSF Detection Finding (class 2004) and ASFF.

Every writer serialises :class:`~s3sync.posture.models.Finding` values (``to_dict``), never ad-hoc
dicts, so the formats cannot drift apart.
"""
from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timezone
from typing import Any, Sequence

from .checks import CHECK_IDS, REGISTRY
from .models import Finding, Status

FORMATS = ("table", "json", "csv", "sarif", "ocsf", "asff")
TOOL_URI = "https://github.com/synthguard/synthguard"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("synthguard")
    except Exception:
        return "0+unknown"


def summary(findings: Sequence[Finding], out_of_scope: int | None = None,
            scope_errors: dict[str, str] | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"total": len(findings)}
    for st in Status:
        s[st.value] = sum(1 for f in findings if f.status is st)
    s["failed_by_severity"] = {sev: n for sev in ("critical", "high", "medium", "low", "informational")
                               if (n := sum(1 for f in findings if f.failed and f.severity == sev))}
    if out_of_scope is not None:
        s["buckets_out_of_scope"] = out_of_scope
    if scope_errors:
        s["scope_errors"] = dict(scope_errors)  # buckets whose tags could not be read: scope undecided
    return s


# ----------------------------------------------------------------------------- table / json / csv
def to_table(findings: Sequence[Finding], width: int = 200) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="synthguard posture", show_lines=False)
    for col in ("status", "severity", "check", "resource", "owner", "detail"):
        t.add_column(col, overflow="fold")
    colour = {"fail": "red", "unknown": "yellow", "pass": "green"}
    for f in findings:
        ev = f.evidence or {}
        detail = ev.get("reason") or ev.get("why") or ev.get("note") or ""
        t.add_row(f"[{colour[f.status.value]}]{f.status.value}[/]", f.severity, f.check, f.resource,
                  f.owner or "", str(detail)[:120])
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(t)
    s = summary(findings)
    buf.write(f"{s['fail']} failed, {s['unknown']} unknown, {s['pass']} passed\n")
    return buf.getvalue()


def to_json(findings: Sequence[Finding], out_of_scope: int | None = None,
            scope_errors: dict[str, str] | None = None) -> str:
    return json.dumps({"findings": [f.to_dict() for f in findings],
                       "summary": summary(findings, out_of_scope, scope_errors)}, indent=2) + "\n"


CSV_COLUMNS = ("check", "resource", "status", "severity", "owner", "title", "region", "account", "resource_type",
               "remediation", "evidence")


def to_csv(findings: Sequence[Finding]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for f in findings:
        d = f.to_dict()
        d["evidence"] = json.dumps(d["evidence"], sort_keys=True)
        d["owner"] = d["owner"] or ""
        w.writerow({k: d[k] for k in CSV_COLUMNS})
    return buf.getvalue()


# ----------------------------------------------------------------------------- SARIF 2.1.0
_SARIF_SCORE = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "informational": "0.0"}
_SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "informational": "note"}


def sarif_skeleton(tool_name: str, version: str, rules: list[dict], results: list[dict],
                   information_uri: str = TOOL_URI) -> dict[str, Any]:
    """The minimal valid SARIF 2.1.0 log around one run (shared shape for any synthguard SARIF)."""
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": tool_name, "version": version, "informationUri": information_uri,
                                          "rules": rules}},
                      "results": results}]}


def to_sarif(findings: Sequence[Finding]) -> dict[str, Any]:
    rules, index = [], {}
    for i, cid in enumerate(CHECK_IDS):
        meta = REGISTRY[cid][0]
        index[cid] = i
        rules.append({"id": cid, "name": cid.replace(".", "_"), "shortDescription": {"text": meta.title},
                      "fullDescription": {"text": meta.risk}, "help": {"text": meta.remediation},
                      "defaultConfiguration": {"level": _SARIF_LEVEL[meta.severity]},
                      "properties": {"security-severity": _SARIF_SCORE[meta.severity],
                                     "tags": ["security", "synthguard", meta.service]}})
    results = []
    for f in findings:
        kind = {"fail": "fail", "pass": "pass", "unknown": "review"}[f.status.value]
        ev = f.evidence or {}
        msg = f"{f.title or f.check}: {f.resource}"
        if ev.get("reason") or ev.get("why"):
            msg += f" ({ev.get('reason') or ev.get('why')})"
        results.append({"ruleId": f.check, "ruleIndex": index.get(f.check, -1), "kind": kind,
                        "level": _SARIF_LEVEL[f.severity] if kind == "fail" else "none",
                        "message": {"text": msg},
                        # physicalLocation too: code-scanning uploads (GitHub) require one; the ARN is a valid URI
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": f.resource}},
                                       "logicalLocations": [{"fullyQualifiedName": f.resource, "kind": "resource"}]}],
                        "partialFingerprints": {"synthguardFinding/v1": f.uid},
                        "properties": {"status": f.status.value, "severity": f.severity, "owner": f.owner,
                                       "evidence": f.to_dict()["evidence"]}})
    return sarif_skeleton("synthguard-posture", _version(), rules, results)


# ----------------------------------------------------------------------------- OCSF Detection Finding
_OCSF_SEVERITY = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
OCSF_VERSION = "1.1.0"


def to_ocsf(findings: Sequence[Finding], now: float | None = None) -> list[dict[str, Any]]:
    """OCSF 1.1 Detection Finding (class_uid 2004, activity Create) per finding."""
    ms = int((now if now is not None else time.time()) * 1000)
    out = []
    for f in findings:
        d = f.to_dict()
        ev = d["evidence"]
        sev_id = _OCSF_SEVERITY[f.severity]
        passed = f.status is Status.PASS
        resource: dict[str, Any] = {"uid": f.resource, "type": f.resource_type or "Other", "region": f.region,
                                    "cloud_partition": "aws", "data": {"evidence": ev}}
        if f.owner:
            resource["owner"] = {"name": f.owner}
        out.append({
            "class_uid": 2004, "class_name": "Detection Finding", "category_uid": 2, "category_name": "Findings",
            "activity_id": 1, "activity_name": "Create", "type_uid": 200401, "type_name": "Detection Finding: Create",
            "time": ms, "severity_id": sev_id, "severity": f.severity.capitalize(),
            "status_id": 4 if passed else 1, "status": "Resolved" if passed else "New",
            "status_code": f.status.value.upper(),
            "status_detail": str(ev.get("reason") or ev.get("why") or ev.get("note") or ""),
            "message": f.title or f.check,
            "metadata": {"version": OCSF_VERSION, "event_code": f.check, "uid": f.uid,
                         "product": {"name": "synthguard", "vendor_name": "synthguard", "uid": "synthguard-posture",
                                     "version": _version()}},
            "finding_info": {"uid": f.uid, "title": f.title or f.check, "desc": f"{f.check} on {f.resource}",
                             "types": [f.check.split(".")[0]], "created_time": ms},
            "resources": [resource],
            "cloud": {"provider": "AWS", "region": f.region,
                      "account": {"uid": f.account, "type": "AWS Account", "type_id": 10}},
            "remediation": {"desc": f.remediation},
            "unmapped": {"check": f.check, "owner": f.owner},
        })
    return out


# ----------------------------------------------------------------------------- ASFF (Security Hub)
_ASFF_LABEL = {"informational": "INFORMATIONAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH", "critical": "CRITICAL"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def to_asff(findings: Sequence[Finding], account_id: str | None = None, region: str | None = None,
            now: float | None = None) -> list[dict[str, Any]]:
    """AWS Security Finding Format, ready for securityhub:BatchImportFindings (product = the account's default)."""
    stamp = _iso(now if now is not None else time.time())
    out = []
    for f in findings:
        acct = f.account or account_id or "000000000000"
        reg = f.region or region or "us-east-1"
        ev = f.to_dict()["evidence"]
        detail = ev.get("reason") or ev.get("why") or ev.get("note") or ""
        desc = f"{f.title or f.check}. Resource {f.resource}. Status {f.status.value}." + (f" {detail}" if detail else "")
        item: dict[str, Any] = {
            "SchemaVersion": "2018-10-08",
            "Id": f"synthguard/{reg}/{f.check}/{f.uid}",
            "ProductArn": f"arn:aws:securityhub:{reg}:{acct}:product/{acct}/default",
            "ProductName": "synthguard", "CompanyName": "synthguard",
            "GeneratorId": f"synthguard-{f.check}",
            "AwsAccountId": acct,
            "Types": ["Software and Configuration Checks/AWS Security Best Practices/synthguard"],
            "CreatedAt": stamp, "UpdatedAt": stamp,
            "Severity": {"Label": _ASFF_LABEL[f.severity], "Original": f.severity},
            "Title": (f.title or f.check)[:256],
            "Description": desc[:1024],
            "Remediation": {"Recommendation": {"Text": f.remediation[:512]}},
            "ProductFields": {"synthguard/check": f.check, "synthguard/status": f.status.value,
                              "synthguard/owner": f.owner or ""},
            "Resources": [{"Type": f.resource_type or "Other", "Id": f.resource, "Partition": "aws", "Region": reg}],
            "Compliance": {"Status": {"pass": "PASSED", "fail": "FAILED", "unknown": "NOT_AVAILABLE"}[f.status.value]},
            "Workflow": {"Status": "RESOLVED" if f.status is Status.PASS else "NEW"},
            "RecordState": "ACTIVE",
        }
        out.append(item)
    return out


def import_to_security_hub(asff: Sequence[dict[str, Any]], client: Any) -> dict[str, Any]:
    """Send ASFF findings in batches of 100 (the API's limit); returns success and failure counts."""
    ok, failed = 0, []
    for i in range(0, len(asff), 100):
        r = client.batch_import_findings(Findings=list(asff[i:i + 100]))
        ok += r.get("SuccessCount", 0)
        failed += r.get("FailedFindings", [])
    return {"success": ok, "failed": failed}


def render(findings: Sequence[Finding], fmt: str, out_of_scope: int | None = None,
           account_id: str | None = None, region: str | None = None,
           scope_errors: dict[str, str] | None = None) -> str:
    """One text for --out/stdout in the chosen format."""
    if fmt == "table":
        return to_table(findings)
    if fmt == "json":
        return to_json(findings, out_of_scope, scope_errors)
    if fmt == "csv":
        return to_csv(findings)
    if fmt == "sarif":
        return json.dumps(to_sarif(findings), indent=2) + "\n"
    if fmt == "ocsf":
        return json.dumps(to_ocsf(findings), indent=2) + "\n"
    if fmt == "asff":
        return json.dumps(to_asff(findings, account_id, region), indent=2) + "\n"
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
