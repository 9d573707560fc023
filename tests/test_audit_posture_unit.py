"""The audit <-> posture glue without servers: scope of the audited buckets, the severity gate,
findings read back from the state, and one SARIF writer for both rooms."""
from __future__ import annotations

import json

from s3sync.auditposture import audit_scope
from s3sync.listing import S3Target
from s3sync.models import AuditResult
from s3sync.posture import parse_config
from s3sync.posture.collect import _scope
from s3sync.posture.models import Finding


def test_audited_buckets_are_in_scope_with_their_prefixes():
    cfg = parse_config({"posture": {"buckets": [{"name": "listed", "class": "training-data", "owner": "ops",
                                                 "prefixes": ["keep/"]}]}})
    names, scoped = audit_scope([S3Target("plain", "gen/"), S3Target("plain", "raw/"), S3Target("whole", ""),
                                 S3Target("whole", "sub/"), S3Target("listed", "other/")], cfg)
    assert names == ["plain", "whole", "listed"]
    assert scoped.bucket("plain").prefixes == ("gen/", "raw/")
    assert scoped.bucket("whole").prefixes == ()                       # the whole bucket was audited
    assert scoped.bucket("listed") == cfg.bucket("listed")             # the operator's entry wins untouched
    # untagged: synthetic-media; a class tag still decides the class; owner from the tag
    assert _scope("plain", {}, scoped).cls == "synthetic-media"
    b = _scope("whole", {"synthguard:class": "training-data", "owner": "bob"}, scoped)
    assert (b.cls, b.owner) == ("training-data", "bob")
    assert _scope("plain", {}, cfg) is None                            # outside the audit: tags/config decide


def _findings():
    return (Finding("s3.public_access", "arn:aws:s3:::b", "fail", "critical").to_dict(),
            Finding("s3.versioning", "arn:aws:s3:::b", "fail", "medium").to_dict(),
            Finding("s3.block_public_access", "arn:aws:s3:::b", "unknown", "high",
                    evidence={"reason": "s3:GetPublicAccessBlock: NotImplemented"}).to_dict(),
            {"check": "custom", "note": "not a posture finding"})


def test_fail_severity_gate_on_stored_findings():
    r = AuditResult(run_id="r", summary={}, objects=(), findings=_findings())
    assert [f["check"] for f in r.failed_findings("critical")] == ["s3.public_access"]
    assert [f["check"] for f in r.failed_findings("medium")] == ["s3.public_access", "s3.versioning"]
    assert r.failed_findings("none") == [] and r.failed_findings(None) == []   # unknown never fails the gate


def test_finding_round_trips_through_its_dict():
    f = Finding("s3.versioning", "arn:aws:s3:::b", "fail", "medium", owner="o", evidence={"Status": None})
    assert Finding.from_dict(json.loads(json.dumps(f.to_dict()))) == f


def test_one_sarif_writer_for_audit_and_posture():
    from s3sync.posture.reports import to_sarif as posture_sarif
    from s3sync.reports import render

    doc = json.loads(render(AuditResult(run_id="r", summary={}, objects=(), findings=_findings()), "sarif"))
    pdoc = posture_sarif([Finding.from_dict(d) for d in _findings()[:3]])
    assert doc["$schema"] == pdoc["$schema"] and doc["version"] == pdoc["version"] == "2.1.0"
    run, prun = doc["runs"][0], pdoc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    by_rule = {r["ruleId"]: r for r in run["results"]}
    # the same finding becomes the same result in both documents (rule indexes point into each log)
    for pr in prun["results"]:
        ar = dict(by_rule[pr["ruleId"]])
        assert rules[ar.pop("ruleIndex")]["id"] == pr["ruleId"]
        assert ar == {k: v for k, v in pr.items() if k != "ruleIndex"}
    assert by_rule["s3.block_public_access"]["kind"] == "review" and by_rule["s3.block_public_access"]["level"] == "none"
    assert by_rule["custom"]["properties"]["note"] == "not a posture finding"  # nothing attached is dropped
