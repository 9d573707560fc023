"""Findings writers (JSON, CSV, SARIF 2.1.0, OCSF 2004, ASFF), generated controls and remediation plans."""
from __future__ import annotations

import csv
import io
import json

import pytest

from s3sync.posture import parse_config, run_checks
from s3sync.posture import controls as ctl
from s3sync.posture.checks import CHECK_IDS
from s3sync.posture.clients import Unavailable
from s3sync.posture.policy import evaluate, parse_policy
from s3sync.posture.remediate import parse_actions, plan
from s3sync.posture.reports import render, to_asff, to_ocsf, to_sarif

from test_posture_checks import ACCT, clean

M = "arn:aws:s3:::media"


def findings():
    s = clean()
    s.buckets["media"].versioning = {}
    s.buckets["media"].logging = Unavailable("s3:GetBucketLogging", "NotImplemented", "no logging here")
    return run_checks(s)


def test_json_contract():
    fs = findings()
    doc = json.loads(render(fs, "json", out_of_scope=3))
    assert len(doc["findings"]) == len(fs)
    for d in doc["findings"]:
        assert {"check", "resource", "status", "severity", "owner", "evidence", "remediation"} <= set(d)
        assert d["resource"].startswith("arn:") and d["status"] in ("pass", "fail", "unknown")
    assert doc["summary"]["fail"] == 1 and doc["summary"]["unknown"] == 1 and doc["summary"]["buckets_out_of_scope"] == 3
    v = next(d for d in doc["findings"] if d["check"] == "s3.versioning" and d["resource"] == M)
    assert v["status"] == "fail" and v["owner"] == "alice"
    u = next(d for d in doc["findings"] if d["check"] == "s3.access_logging" and d["resource"] == M)
    assert u["status"] == "unknown" and "NotImplemented" in u["evidence"]["reason"]


def test_csv_and_table():
    fs = findings()
    rows = list(csv.DictReader(io.StringIO(render(fs, "csv"))))
    assert len(rows) == len(fs) and rows[0]["status"] == "fail" and json.loads(rows[0]["evidence"])
    table = render(fs, "table")
    assert "s3.versioning" in table and "1 failed, 1 unknown" in table


def test_sarif_structure():
    fs = findings()
    doc = to_sarif(fs)
    assert doc["version"] == "2.1.0" and len(doc["runs"]) == 1
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(CHECK_IDS)
    assert all(0 < float(r["properties"]["security-severity"]) <= 10 for r in rules)
    for r in run["results"]:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert r["kind"] in ("pass", "fail", "review")
        assert (r["level"] == "none") == (r["kind"] != "fail")         # SARIF: level only for kind=fail
        assert r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"].startswith("arn:")
    fail = [r for r in run["results"] if r["kind"] == "fail"]
    assert len(fail) == 1 and fail[0]["level"] == "warning" and fail[0]["ruleId"] == "s3.versioning"


def test_ocsf_detection_finding():
    fs = findings()
    out = to_ocsf(fs, now=1_700_000_000)
    assert len(out) == len(fs)
    for e in out:
        assert e["class_uid"] == 2004 and e["category_uid"] == 2 and e["type_uid"] == 200401
        assert e["type_uid"] == e["class_uid"] * 100 + e["activity_id"]
        assert e["severity_id"] in range(1, 6) and e["status_id"] in (1, 4)
        assert e["metadata"]["product"]["name"] == "synthguard" and e["metadata"]["version"]
        assert e["finding_info"]["uid"] and e["finding_info"]["title"] and e["time"] == 1_700_000_000_000
        assert e["resources"][0]["uid"].startswith("arn:") and e["cloud"]["account"]["uid"] == ACCT
    f = next(e for e in out if e["status_code"] == "FAIL")
    assert f["severity"] == "Medium" and f["severity_id"] == 3 and f["resources"][0]["owner"] == {"name": "alice"}


def test_asff_shape():
    fs = findings()
    out = to_asff(fs, now=1_700_000_000)
    ids = [a["Id"] for a in out]
    assert len(set(ids)) == len(ids)
    for a in out:
        assert a["SchemaVersion"] == "2018-10-08" and a["AwsAccountId"] == ACCT
        assert a["ProductArn"] == f"arn:aws:securityhub:us-east-1:{ACCT}:product/{ACCT}/default"
        assert a["CreatedAt"].endswith("Z") and all(t.count("/") <= 2 for t in a["Types"])
        assert a["Compliance"]["Status"] in ("PASSED", "FAILED", "NOT_AVAILABLE") and len(a["Description"]) <= 1024
    # validated against the botocore model of BatchImportFindings
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model("securityhub").operation_model(
        "BatchImportFindings").input_shape
    report = ParamValidator().validate({"Findings": out}, shape)
    assert not report.has_errors(), report.generate_report()


def test_unknown_format():
    with pytest.raises(ValueError):
        render([], "xml")


CFG = parse_config({"posture": {"allowed_principals": [f"arn:aws:iam::{ACCT}:role/pub"],
                                "macie_regexes": {"model-id": "sg-model-[0-9]{6}"},
                                "buckets": [{"name": "media", "class": "synthetic-media"},
                                            {"name": "train", "class": "training-data"}]}})


def test_controls_validate_against_botocore_models():
    out = ctl.generate(CFG)
    assert set(out) == set(ctl.FILES)
    assert ctl.validate(out, CFG) == []
    assert len(out["macie-custom-data-identifiers.json"]) == 3
    broken = json.loads(json.dumps(out))
    broken["config-rules.json"][0]["ConfigRule"]["Source"]["Owner"] = 7
    broken["contributor-insights-rule.json"]["RuleDefinition"] = json.dumps({"Schema": {"Name": "X"}})
    broken["macie-custom-data-identifiers.json"][0]["regex"] = "("
    errs = ctl.validate(broken)
    assert any("PutConfigRule" in e for e in errs) and any("RuleDefinition" in e for e in errs)
    assert any("does not compile" in e for e in errs)


def test_generated_policies_behave():
    out = ctl.generate(CFG)
    boundary = [("b", parse_policy(out["permission-boundary.json"]["PolicyDocument"]))]
    worker = [("w", parse_policy(out["worker-readonly-policy.json"]["PolicyDocument"]))]
    other = {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:role/analyst"}
    allowed = {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:role/pub"}
    assert evaluate(boundary, "s3:GetObject", "arn:aws:s3:::train/x", other) == "Deny"
    assert evaluate(boundary, "s3:GetObject", "arn:aws:s3:::train/x", allowed) == "Allow"
    assert evaluate(boundary, "s3:GetObject", "arn:aws:s3:::elsewhere/x", other) == "Allow"
    assert evaluate(boundary, "iam:DeleteRolePermissionsBoundary", "*", other) == "Deny"
    assert evaluate(worker, "s3:GetObject", "arn:aws:s3:::media/a.png") == "Allow"
    assert evaluate(worker, "s3:GetObject", "arn:aws:s3:::elsewhere/a.png") == "ImplicitDeny"
    for write in ("s3:PutObject", "s3:DeleteObject", "s3:PutBucketPolicy", "iam:CreateRole", "kms:Encrypt"):
        assert evaluate(worker, write, "arn:aws:s3:::media/a.png") != "Allow"
    with pytest.raises(ValueError):
        ctl.generate(parse_config({"posture": {}}))


def test_remediation_plan_from_snapshot():
    s = clean(config=CFG)
    t = s.buckets["train"]
    t.legal_holds = [{"key": "leak/a", "status": "ON"}, {"key": "leak/b", "status": "OFF"}]
    s.buckets["media"].public_access_block = None
    s.buckets["media"].tags = {"synthguard:class": "synthetic-media"}
    t.tags = Unavailable("s3:GetBucketTagging", "AccessDenied", "no")
    acts, skipped = plan(s, ["legal-hold", "tag", "block-public-access"])
    calls = [(a.operation, a.params.get("Key")) for a in acts]
    assert calls == [("put_public_access_block", None), ("put_object_legal_hold", "leak/b")]
    assert [k.kind for k in skipped] == ["tag"]
    line = json.loads(acts[1].to_json_line())
    assert line["service"] == "s3" and line["params"] == {"Bucket": "train", "Key": "leak/b",
                                                          "LegalHold": {"Status": "ON"}}
    t.object_lock = None
    acts, skipped = plan(s, ["legal-hold"])
    assert acts == [] and "Object Lock" in skipped[0].reason
    with pytest.raises(ValueError):
        parse_actions("legal-hold,delete-everything")
