"""Posture checks inside the audit (issue 6 in issue 4), against real local servers: findings in the
audit's JSON/CSV/SARIF, APIs the endpoint lacks as ``unknown`` (never a crash), ``--fail-severity``."""
from __future__ import annotations

import csv
import io
import json

import pytest

import s3sync

pytestmark = pytest.mark.integration
SHAPE = {"check", "resource", "status", "severity", "owner", "evidence", "remediation"}


def _seed(client, bucket: str, tags: dict[str, str] | None = None, public: bool = False) -> None:
    from fixtures.make_media import image_bytes

    client.create_bucket(Bucket=bucket)
    if tags:
        client.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
    client.put_object(Bucket=bucket, Key="gen/a.jpg", Body=image_bytes("jpeg", size=(96, 64), seed=1))
    client.put_object(Bucket=bucket, Key="gen/notes.txt", Body=b"not media")
    if public:
        client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}))


def test_cli_audit_json_carries_posture_findings_on_seaweedfs(seaweed, tmp_path, capsys):
    import cli

    b = "audit-posture-sw"
    _seed(seaweed.client("s3"), b, tags={"owner": "media-team"}, public=True)  # no synthguard:class tag
    state = str(tmp_path / "state.db")
    base = ["audit", f"s3://{b}", "--endpoint-url", seaweed.endpoint_url, "--state", state, "--processes", "0",
            "--no-watermark"]
    assert cli.main(base + ["--format", "json"]) == 0  # posture findings never fail the audit by default
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["summary"]["counts"]["missing_provenance"] == 1
    by = {(f["check"], f["resource"]): f for f in doc["findings"]}
    assert doc["findings"] and all(SHAPE <= set(f) for f in doc["findings"])
    # the audited bucket is in scope although untagged (the user named it), owner from its tag
    pub = by[("s3.public_access", f"arn:aws:s3:::{b}")]
    assert pub["status"] == "fail" and pub["severity"] == "critical" and pub["owner"] == "media-team"
    # SeaweedFS has no Block Public Access API (501) and no IAM: unknown with the reason, not a crash
    bpa = by[("s3.block_public_access", f"arn:aws:s3:::{b}")]
    assert bpa["status"] == "unknown" and bpa["evidence"]["reason"]
    assert any(f["check"] == "iam.broad_get_object" and f["status"] == "unknown" for f in doc["findings"])
    p = doc["summary"]["posture"]
    assert p["buckets"] == [b] and p["fail"] >= 1 and p["unknown"] >= 1 and p["total"] == len(doc["findings"])
    assert "warning" not in out.err

    # gate on posture like 'synthguard posture --fail-severity'; the stored run gates the same way
    assert cli.main(base + ["--format", "json", "--fail-severity", "critical"]) == 1
    capsys.readouterr()
    assert cli.main(["audit", "report", "--state", state, "--fail-severity", "high", "--format", "sarif",
                     "--out", str(tmp_path / "r.sarif")]) == 1
    sarif = json.loads((tmp_path / "r.sarif").read_text())
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    fres = [r for r in run["results"] if r["ruleId"] == "s3.public_access"]
    assert fres and fres[0]["kind"] == "fail" and rules[fres[0]["ruleIndex"]]["id"] == "s3.public_access"
    assert {"SG-S3-MISSING", "s3.block_public_access"} <= {r["ruleId"] for r in run["results"]}
    # CSV: objects in the report, findings next to it
    assert cli.main(["audit", "report", "--state", state, "--format", "csv", "--out", str(tmp_path / "r.csv")]) == 0
    assert "findings written to" in capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    frows = list(csv.DictReader(io.StringIO((tmp_path / "r.findings.csv").read_text())))
    assert [r["key"] for r in rows] == ["gen/a.jpg"] and len(frows) == len(doc["findings"])
    assert cli.main(["audit", "report", "--state", state, "--fail-severity", "bogus"]) == 2

    # --no-posture: no findings, nothing else changes
    assert cli.main(base + ["--format", "json", "--no-posture", "--no-resume"]) == 0
    doc2 = json.loads(capsys.readouterr().out)
    assert doc2["findings"] == [] and "posture" not in doc2["summary"]
    assert doc2["summary"]["counts"] == doc["summary"]["counts"]


def test_library_audit_with_posture_on_moto(moto_server, tmp_path):
    """moto answers the account-level APIs too: tag class and config decide the scope details."""
    b = "audit-posture-moto"
    s3 = moto_server.client("s3")
    _seed(s3, b, tags={"synthguard:class": "training-data"})
    toml = tmp_path / "synthguard.toml"
    toml.write_text('[posture]\n[[posture.buckets]]\nname = "audit-posture-moto"\nowner = "data-team"\n')
    res = s3sync.audit([f"s3://{b}/gen/"], endpoint_url=moto_server.endpoint_url, state=tmp_path / "s.db",
                       processes=0, watermark=False, posture=True, posture_config=toml)
    assert [o.key for o in res.objects] == ["gen/a.jpg"]
    checks = {f["check"] for f in res.findings}
    assert {"s3.object_lock", "s3.versioning", "cloudtrail.s3_data_events", "guardduty.s3_protection"} <= checks
    lock = next(f for f in res.findings if f["check"] == "s3.object_lock")
    assert lock["status"] == "fail" and lock["owner"] == "data-team"  # training data without Object Lock
    assert res.summary["posture"]["buckets"] == [b]
    assert res.failed_findings("high") and not res.failed_findings("none")


def test_posture_failure_never_costs_the_audit(seaweed, tmp_path, monkeypatch):
    b = "audit-posture-crash"
    _seed(seaweed.client("s3"), b)
    import s3sync.posture

    def boom(**_):
        raise RuntimeError("collector exploded")

    monkeypatch.setattr(s3sync.posture, "run_posture", boom)
    res = s3sync.audit([f"s3://{b}"], endpoint_url=seaweed.endpoint_url, state=tmp_path / "s.db", processes=0,
                       watermark=False, posture=True)
    assert res.summary["completed"] and [o.status for o in res.objects] == ["missing_provenance"]
    assert res.findings == () and "collector exploded" in res.summary["posture"]["error"]


def test_bad_posture_config_is_a_usage_error_before_listing(tmp_path, capsys):
    import cli

    bad = tmp_path / "bad.toml"
    bad.write_text("[posture]\nbogus = 1\n")
    for cfg, needle in ((bad, "bogus"), (tmp_path / "missing.toml", "not found")):
        assert cli.main(["audit", "s3://never-listed", "--endpoint-url", "http://127.0.0.1:9", "--posture-config",
                         str(cfg), "--state", str(tmp_path / "s.db")]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err


# ----------------------------------------------------------------------------- leak severity by exposure (issue 5)
def _leak_world(s3, tmp_path, buckets: dict[str, str]) -> str:
    """Each bucket gets a derived copy of one registered training image; ``buckets``: name -> ACL."""
    from fixtures.make_media import encode_image, image_array
    from provenance import Registry, fingerprint

    reg = tmp_path / "training.db"
    with Registry(reg) as r:
        r.add("train-0041", fingerprint(image_array((320, 240), seed=41)), source_uri="s3://training/0041.png")
    copy = encode_image(image_array((320, 240), seed=41)[::2, ::2], "jpeg", quality=85)
    for name, acl in buckets.items():
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="cdn/leak.jpg", Body=copy)
        if acl != "private":
            s3.put_bucket_acl(Bucket=name, ACL=acl)
    return str(reg)


def _leaks(doc) -> dict[str, tuple[str, str, str]]:
    return {o["bucket"]: (o["severity"], o["exposure"]["state"], o["exposure"]["why"]) for o in doc["objects"]
            if o["status"] == "leaked_training_asset"}


def test_leak_severity_public_vs_private_bucket_on_moto(moto_server, tmp_path, capsys):
    import cli

    moto_server.reset()
    s3 = moto_server.client("s3")
    reg = _leak_world(s3, tmp_path, {"leak-public": "public-read", "leak-private": "private",
                                     "leak-cdn": "private"})
    moto_server.client("cloudfront").create_distribution(DistributionConfig={
        "CallerReference": "leak-cdn", "Comment": "", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "media", "DomainName": "leak-cdn.s3.us-east-1.amazonaws.com",
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "media", "ViewerProtocolPolicy": "https-only", "MinTTL": 0,
                                 "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                 "TrustedSigners": {"Enabled": False, "Quantity": 0}}})
    state = str(tmp_path / "s.db")
    base = ["audit", "s3://leak-public", "s3://leak-private", "s3://leak-cdn", "--registry", reg,
            "--endpoint-url", moto_server.endpoint_url, "--state", state, "--processes", "0", "--no-watermark"]
    assert cli.main(base + ["--format", "json"]) == 0
    leaks = _leaks(json.loads(capsys.readouterr().out))
    assert leaks["leak-public"] == ("critical", "public", "bucket is public: ACL grants to AllUsers")
    assert leaks["leak-private"] == ("high", "private", "bucket is not public")
    assert leaks["leak-cdn"][:2] == ("critical", "public") and "served by CloudFront distribution" in leaks["leak-cdn"][2]
    # the stored run renders the same severities (SARIF: properties and level)
    assert cli.main(["audit", "report", "--state", state, "--format", "sarif", "--out", str(tmp_path / "r.sarif")]) == 0
    capsys.readouterr()
    res = [r for r in json.loads((tmp_path / "r.sarif").read_text())["runs"][0]["results"]
           if r["ruleId"].startswith("SG-S3-LEAK")]
    assert {r["properties"]["bucket"]: r["properties"]["severity"] for r in res} == {
        "leak-public": "critical", "leak-private": "high", "leak-cdn": "critical"}
    # no posture: the exposure is unknown, so every leak is critical and says why
    assert cli.main(base + ["--format", "json", "--no-posture", "--no-resume"]) == 0
    leaks = _leaks(json.loads(capsys.readouterr().out))
    assert set(leaks.values()) == {("critical", "unknown", "exposure unknown: posture checks were not run (--no-posture)")}
    moto_server.reset()


def test_leak_severity_public_vs_private_bucket_on_seaweedfs(seaweed, tmp_path):
    """SeaweedFS answers ACLs but not CloudFront: public-read is critical (public); for the private bucket
    nobody can say whether a distribution serves it, so the leak stays critical, with that reason."""
    s3 = seaweed.client("s3")
    reg = _leak_world(s3, tmp_path, {"leak-sw-public": "public-read", "leak-sw-private": "private"})
    res = s3sync.audit(["s3://leak-sw-public", "s3://leak-sw-private"], endpoint_url=seaweed.endpoint_url,
                       registry=reg, state=tmp_path / "s.db", processes=0, watermark=False, posture=None)
    leaks = _leaks(res.to_dict())
    assert leaks["leak-sw-public"] == ("critical", "public", "bucket is public: ACL grants to AllUsers")
    sev, state, why = leaks["leak-sw-private"]
    assert (sev, state) == ("critical", "unknown") and "bucket is not public" in why and "CloudFront" in why
