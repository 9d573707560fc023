"""Detective controls: CloudTrail data events, GuardDuty S3 protection, Macie, Config rules, Contributor Insights."""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from ..clients import Unavailable
from ..models import CheckMeta, Finding, Status
from ._base import check, make, unknown

TRAIL = CheckMeta(
    "cloudtrail.s3_data_events", "No CloudTrail trail records object reads of the bucket", "medium", "cloudtrail",
    "AwsS3Bucket",
    "Without S3 data events (GetObject) there is no record of who read which synthetic asset.",
    "Add an (advanced) event selector for AWS::S3::Object data events covering the bucket with read events "
    "(readOnly and eventName must admit GetObject) to a logging trail (cloudtrail:PutEventSelectors) that is "
    "multi-region or homed in the bucket's region.")
GUARDDUTY = CheckMeta(
    "guardduty.s3_protection", "GuardDuty S3 protection is off", "medium", "guardduty", "AwsGuardDutyDetector",
    "Anomalous bulk reads or exfiltration from the buckets go undetected.",
    "Enable GuardDuty and its S3 protection (guardduty:UpdateDetector with Features S3_DATA_EVENTS=ENABLED).")
MACIE = CheckMeta(
    "macie.enabled", "Macie is not enabled (or has no custom data identifiers)", "low", "macie2", "Other",
    "Sensitive data and provenance markers in these buckets are not discovered.",
    "Enable Macie (macie2:EnableMacie) and create the custom data identifiers from `synthguard controls generate`.")
CONFIG = CheckMeta(
    "config.rules", "AWS Config rules for these buckets are missing", "low", "config", "Other",
    "Drift (encryption removed, bucket made public, lock or logging disabled) is not recorded or alerted on.",
    "Record configuration (config:PutConfigurationRecorder, StartConfigurationRecorder) and deploy the rules from "
    "`synthguard controls generate` (config:PutConfigRule).")
INSIGHTS = CheckMeta(
    "cloudwatch.contributor_insights", "No Contributor Insights rule watches who reads the bucket", "low",
    "cloudwatch", "AwsS3Bucket",
    "A principal bulk-downloading synthetic media does not stand out anywhere.",
    "Create the Contributor Insights rule from `synthguard controls generate` over the CloudTrail log group "
    "(cloudwatch:PutInsightRule).")

REQUIRED_CONFIG_RULES = {
    "S3_DEFAULT_ENCRYPTION_KMS": "KMS encryption",
    "S3_BUCKET_PUBLIC_READ_PROHIBITED": "public read",
    "S3_BUCKET_DEFAULT_LOCK_ENABLED": "Object Lock",
    "S3_BUCKET_LOGGING_ENABLED": "logging",
}


def _target_prefixes(b: Any) -> list[str]:
    return [f"arn:aws:s3:::{b.name}/{p}" for p in b.prefixes] or [f"arn:aws:s3:::{b.name}/"]


def basic_selectors_cover(selectors: list, b: Any) -> bool:
    for sel in selectors or []:
        if sel.get("ReadWriteType", "All") not in ("All", "ReadOnly"):
            continue
        for dr in sel.get("DataResources", []) or []:
            if dr.get("Type") != "AWS::S3::Object":
                continue
            vals = dr.get("Values", []) or []
            if all(any(t.startswith(v) for v in vals) for t in _target_prefixes(b)):
                return True
    return False


_OPERATORS: dict[str, Callable[[str, list[str]], bool]] = {
    "Equals": lambda v, xs: v in xs, "NotEquals": lambda v, xs: v not in xs,
    "StartsWith": lambda v, xs: any(v.startswith(x) for x in xs),
    "NotStartsWith": lambda v, xs: not any(v.startswith(x) for x in xs),
    "EndsWith": lambda v, xs: any(v.endswith(x) for x in xs),
    "NotEndsWith": lambda v, xs: not any(v.endswith(x) for x in xs),
}

# Field values a GetObject data event of S3 has: a selector records object reads only if it admits all of them.
_GET_OBJECT_EVENT = {"eventCategory": "Data", "resources.type": "AWS::S3::Object", "readOnly": "true",
                     "eventName": "GetObject", "eventSource": "s3.amazonaws.com"}


def field_admits(selector: dict, value: str) -> bool:
    """Does one field selector let an event with this field value through? Its operators are ANDed.

    An operator CloudTrail may add later is not understood: it admits nothing (conservative).
    """
    ops = {k: v for k, v in selector.items() if k != "Field"}
    return all(k in _OPERATORS and _OPERATORS[k](value, list(v or [])) for k, v in ops.items())


def _admits_get_object(fields: dict[str, dict]) -> bool:
    """eventCategory and resources.type must be present; readOnly, eventName and eventSource may narrow it."""
    if "eventCategory" not in fields or "resources.type" not in fields:
        return False
    return all(field_admits(fields[f], v) for f, v in _GET_OBJECT_EVENT.items() if f in fields)


def advanced_selectors_cover(selectors: list, b: Any) -> bool:
    """Does some advanced selector record GetObject on the whole bucket (or its prefixes that matter)?"""
    for sel in selectors or []:
        fields = {f.get("Field"): f for f in sel.get("FieldSelectors", []) or []}
        if not _admits_get_object(fields):
            continue  # e.g. write events only (readOnly false / NotEquals true, eventName PutObject)
        ok = True
        arn = fields.get("resources.ARN")
        if arn:
            known = {"Field", "StartsWith", "NotStartsWith", "Equals"}
            if set(arn) - known or arn.get("Equals"):
                ok = False  # exact-object or unknown operators: not the whole bucket (conservative)
            for t in _target_prefixes(b):
                if arn.get("StartsWith") and not any(t.startswith(v) for v in arn["StartsWith"]):
                    ok = False
                if any(v.startswith(t) or t.startswith(v) for v in arn.get("NotStartsWith", []) or []):
                    ok = False
        if ok:
            return True
    return False


def trail_records_region(trail: dict, region: Any) -> bool | None:
    """Does the trail record data events of a bucket in ``region``? None when the bucket region is unknown.

    A single-region trail logs only its home region; a bucket region or HomeRegion that was never
    collected (hand-built snapshots) is not held against the trail.
    """
    home = trail.get("HomeRegion")
    if trail.get("IsMultiRegionTrail") or not home or region is None:
        return True
    if isinstance(region, Unavailable):
        return None
    return region == home


@check(TRAIL)
def cloudtrail_s3_data_events(snap: Any) -> Iterable[Finding]:
    for b in snap.buckets.values():
        if isinstance(snap.trails, Unavailable):
            yield unknown(TRAIL, snap, b.arn, snap.trails, owner=b.owner)
            continue
        rows, problems = [], []
        covering = None
        for t in snap.trails:
            name = t["trail"].get("TrailARN") or t["trail"].get("Name")
            sel, st = t.get("selectors"), t.get("status")
            if isinstance(sel, Unavailable) or isinstance(st, Unavailable):
                problems += [x.reason for x in (sel, st) if isinstance(x, Unavailable)]
                continue
            in_region = trail_records_region(t["trail"], b.region)
            if in_region is None:
                problems.append(f"{b.region.reason} (needed: {name} records only its home region)")
                continue
            cov = in_region and (basic_selectors_cover((sel or {}).get("EventSelectors"), b) or
                                 advanced_selectors_cover((sel or {}).get("AdvancedEventSelectors"), b))
            logging = bool((st or {}).get("IsLogging"))
            rows.append({"trail": name, "covers_bucket_reads": cov, "is_logging": logging,
                         **({} if in_region else {"note": f"single-region trail of {t['trail'].get('HomeRegion')}; "
                                                          f"bucket in {b.region}"})})
            if cov and logging:
                covering = name
        ev: dict[str, Any] = {"trails": rows}
        if covering:
            yield make(TRAIL, snap, b.arn, Status.PASS, dict(ev, covering_trail=covering), owner=b.owner)
        elif problems:
            yield make(TRAIL, snap, b.arn, Status.UNKNOWN, dict(ev, reason="; ".join(problems)[:500]), owner=b.owner)
        else:
            ev["why"] = "no logging trail records S3 object reads of this bucket"
            yield make(TRAIL, snap, b.arn, Status.FAIL, ev, owner=b.owner)


def _s3_protected(det: dict) -> bool:
    if det.get("Status") != "ENABLED":
        return False
    if ((det.get("DataSources") or {}).get("S3Logs") or {}).get("Status") == "ENABLED":
        return True
    return any(f.get("Name") == "S3_DATA_EVENTS" and f.get("Status") == "ENABLED" for f in det.get("Features") or [])


@check(GUARDDUTY)
def guardduty_s3_protection(snap: Any) -> Iterable[Finding]:
    if not snap.buckets:
        return
    res = f"arn:aws:guardduty:{snap.region}:{snap.account_id}:detector"
    if isinstance(snap.guardduty, Unavailable):
        yield unknown(GUARDDUTY, snap, res, snap.guardduty)
        return
    dets = [d for d in snap.guardduty if isinstance(d, dict)]
    errs = [d for d in snap.guardduty if isinstance(d, Unavailable)]
    rows = [{"detector": d.get("DetectorId"), "status": d.get("Status"), "s3_protection": _s3_protected(d)} for d in dets]
    good = [d for d in dets if _s3_protected(d)]
    if good:
        yield make(GUARDDUTY, snap, f"{res}/{good[0]['DetectorId']}", Status.PASS, {"detectors": rows})
    elif errs:
        yield unknown(GUARDDUTY, snap, res, errs[0], detectors=rows)
    else:
        yield make(GUARDDUTY, snap, res, Status.FAIL,
                   {"detectors": rows, "why": "no detector" if not dets else "S3 protection disabled"})


@check(MACIE)
def macie_enabled(snap: Any) -> Iterable[Finding]:
    if not snap.buckets:
        return
    res = f"arn:aws:macie2:{snap.region}:{snap.account_id}:session"
    m = snap.macie
    if isinstance(m, Unavailable) or m is None:
        yield unknown(MACIE, snap, res, m or "Macie state not collected")
        return
    status = (m.get("session") or {}).get("status")
    cdi = m.get("custom_data_identifiers")
    ev: dict[str, Any] = {"status": status}
    if status != "ENABLED":
        yield make(MACIE, snap, res, Status.FAIL, dict(ev, session=m.get("session"), why="Macie is not enabled"))
    elif isinstance(cdi, Unavailable):
        yield unknown(MACIE, snap, res, cdi, status=status,
                      note="Macie is enabled; custom data identifiers could not be listed")
    elif not cdi:
        yield make(MACIE, snap, res, Status.FAIL, dict(ev, custom_data_identifiers=[],
                                                       why="no custom data identifiers"))
    else:
        yield make(MACIE, snap, res, Status.PASS, dict(ev, custom_data_identifiers=[c.get("name") for c in cdi]))


@check(CONFIG)
def config_rules(snap: Any) -> Iterable[Finding]:
    if not snap.buckets:
        return
    res = f"arn:aws:config:{snap.region}:{snap.account_id}:config-rule/*"
    for v in (snap.config_rules, snap.config_recorders):
        if isinstance(v, Unavailable):
            yield unknown(CONFIG, snap, res, v)
            return
    present = {}
    for r in snap.config_rules:
        src = r.get("Source") or {}
        types = ((r.get("Scope") or {}).get("ComplianceResourceTypes")) or ["AWS::S3::Bucket"]
        if src.get("Owner") == "AWS" and r.get("ConfigRuleState", "ACTIVE") == "ACTIVE" and "AWS::S3::Bucket" in types:
            present[src.get("SourceIdentifier")] = r.get("ConfigRuleName")
    missing = [k for k in REQUIRED_CONFIG_RULES if k not in present]
    recording = [r.get("name") for r in snap.config_recorders if r.get("recording")]
    ev = {"present": {k: present[k] for k in REQUIRED_CONFIG_RULES if k in present}, "missing": missing,
          "recording_recorders": recording}
    if missing or not recording:
        ev["why"] = "missing rules: " + ", ".join(missing)
        if not recording:
            ev["why"] = "no configuration recorder is recording, so rules evaluate nothing"
        yield make(CONFIG, snap, res, Status.FAIL, ev)
    else:
        yield make(CONFIG, snap, res, Status.PASS, ev)


def insight_rule_covers(rule: dict, bucket: str) -> tuple[bool, str]:
    if rule.get("State") != "ENABLED":
        return False, "disabled"
    try:
        d = json.loads(rule.get("Definition") or "{}")
    except json.JSONDecodeError:
        return False, "definition is not JSON"
    keys = (d.get("Contribution") or {}).get("Keys") or []
    if not any("userIdentity" in k for k in keys):
        return False, "contributors are not principals ($.userIdentity...)"
    filters = (d.get("Contribution") or {}).get("Filters") or []
    s3_event = False
    for f in filters:
        m = f.get("Match", "")
        if m == "$.eventSource":
            if "s3.amazonaws.com" not in (f.get("In") or []):
                return False, "eventSource filter excludes S3"
            s3_event = True
        if m == "$.requestParameters.bucketName":
            if "In" in f and bucket not in f["In"]:
                return False, "bucket not in the rule's bucketName filter"
            if "StartsWith" in f and not any(bucket.startswith(x) for x in f["StartsWith"]):
                return False, "bucket not in the rule's bucketName filter"
            s3_event = True
    if not s3_event:
        return False, "the rule does not select S3 events"
    return True, "covers"


@check(INSIGHTS)
def cloudwatch_contributor_insights(snap: Any) -> Iterable[Finding]:
    for b in snap.buckets.values():
        if isinstance(snap.insight_rules, Unavailable):
            yield unknown(INSIGHTS, snap, b.arn, snap.insight_rules, owner=b.owner)
            continue
        rows = []
        for r in snap.insight_rules:
            ok, why = insight_rule_covers(r, b.name)
            rows.append({"rule": r.get("Name"), "covers": ok, "why": why})
        status = Status.PASS if any(r["covers"] for r in rows) else Status.FAIL
        ev = {"rules": rows}
        if status is Status.FAIL:
            ev["why"] = "no enabled rule counts principals reading this bucket"
        yield make(INSIGHTS, snap, b.arn, status, ev, owner=b.owner)
