"""Findings writers: table, JSON, CSV, SARIF 2.1.0, OCSF Detection Finding (class 2004) and ASFF.

Every writer serialises :class:`~s3sync.posture.models.Finding` values (``to_dict``), never ad-hoc
dicts, so the formats cannot drift apart.
"""
from __future__ import annotations

import io
import json
import time
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from ..reports.csvfmt import csv_text
from ..reports.sarif import findings_sarif, sarif_log, tool_version
from .models import SEVERITIES, Finding, Status, severity_rank

FORMATS = ("table", "json", "csv", "sarif", "ocsf", "asff")


def summary(findings: Sequence[Finding], out_of_scope: int | None = None,
            scope_errors: dict[str, str] | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"total": len(findings)}
    for st in Status:
        s[st.value] = sum(1 for f in findings if f.status is st)
    s["failed_by_severity"] = {sev: n for sev in reversed(SEVERITIES)
                               if (n := sum(1 for f in findings if f.failed and f.severity == sev))}
    if out_of_scope is not None:
        s["buckets_out_of_scope"] = out_of_scope
    if scope_errors:
        s["scope_errors"] = dict(scope_errors)  # buckets whose tags could not be read: scope undecided
    return s


# ----------------------------------------------------------------------------- table / json / csv
def to_table(findings: Sequence[Finding], width: int = 200) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="synthguard posture", show_lines=False)
    for col in ("status", "severity", "check", "resource", "owner", "detail"):
        t.add_column(col, overflow="fold")
    colour = {"fail": "red", "unknown": "yellow", "pass": "green"}
    for f in findings:
        ev = f.evidence or {}
        detail = ev.get("reason") or ev.get("why") or ev.get("note") or ""
        t.add_row(f"[{colour[f.status.value]}]{f.status.value}[/]", f.severity, f.check, escape(f.resource),
                  escape(f.owner or ""), escape(str(detail)[:120]))  # "[...]" in them is not markup
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


def to_csv(findings: Sequence[Finding | Mapping[str, Any]]) -> str:
    """One row per finding (Finding values or their dicts, as the audit's state DB returns them)."""
    rows = []
    for f in findings:
        d = f.to_dict() if hasattr(f, "to_dict") else dict(f)
        d["evidence"] = json.dumps(d.get("evidence") or {}, sort_keys=True)
        rows.append([d.get(k) or "" for k in CSV_COLUMNS])
    return csv_text(CSV_COLUMNS, rows)


# ----------------------------------------------------------------------------- SARIF 2.1.0
def to_sarif(findings: Sequence[Finding]) -> dict[str, Any]:
    """Every check as a rule (registry order), every finding as a result: the shared writer's shape."""
    rules: list[dict] = []
    results = findings_sarif(findings, rules, all_checks=True)
    return sarif_log("synthguard-posture", rules, results)


# ----------------------------------------------------------------------------- OCSF Detection Finding
OCSF_VERSION = "1.1.0"


def to_ocsf(findings: Sequence[Finding], now: float | None = None) -> list[dict[str, Any]]:
    """OCSF 1.1 Detection Finding (class_uid 2004, activity Create) per finding."""
    ms = int((now if now is not None else time.time()) * 1000)
    out = []
    for f in findings:
        d = f.to_dict()
        ev = d["evidence"]
        sev_id = severity_rank(f.severity) + 1  # OCSF: 1 informational .. 5 critical
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
                                     "version": tool_version()}},
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
            "Severity": {"Label": f.severity.upper(), "Original": f.severity},
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
