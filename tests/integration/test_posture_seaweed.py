"""Object-level posture on a real S3 server (SeaweedFS): Object Lock, legal holds, policy status,
and the APIs SeaweedFS lacks (Block Public Access, logging) reported as unknown, never pass."""
from __future__ import annotations

import json

import pytest

from s3sync.posture import Clients, Status, collect, run_checks
from s3sync.posture.remediate import apply, plan

pytestmark = pytest.mark.integration
B = "sg-evidence-posture"


def _s3_status(clients):
    snap = collect(clients, None, buckets=[B], account_level=False)
    return snap, {f.check: f for f in run_checks(snap, checks=["s3.*"])}


def test_legal_hold_remediation_on_seaweedfs(seaweed, tmp_path, monkeypatch):
    s3 = seaweed.client("s3")
    s3.create_bucket(Bucket=B, ObjectLockEnabledForBucket=True)
    s3.put_bucket_tagging(Bucket=B, Tagging={"TagSet": [
        {"Key": "synthguard:class", "Value": "training-data"}, {"Key": "owner", "Value": "bob"},
        {"Key": "synthguard:investigation", "Value": "case-7/"}]})
    for k in ("case-7/a.png", "case-7/b.png", "other/c.png"):
        s3.put_object(Bucket=B, Key=k, Body=b"data " + k.encode())
    s3.put_object_legal_hold(Bucket=B, Key="case-7/a.png", LegalHold={"Status": "ON"})
    s3.put_bucket_policy(Bucket=B, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{B}/*"}]}))
    clients = Clients(endpoint_url=seaweed.endpoint_url)

    snap, by = _s3_status(clients)
    assert snap.buckets[B].owner == "bob"
    assert by["s3.object_lock"].status is Status.PASS
    hold = by["s3.legal_hold"]
    assert hold.failed and hold.evidence["without_hold"] == ["case-7/b.png"] and hold.evidence["held"] == 1
    pub = by["s3.public_access"]
    assert pub.failed and pub.evidence["public_statements"]
    # SeaweedFS has no Block Public Access (501) and, here, no account-level answer: unknown with the reason
    bpa = by["s3.block_public_access"]
    assert bpa.status is Status.UNKNOWN and bpa.evidence["reason"]
    assert by["s3.versioning"].status is Status.PASS                   # Object Lock turned versioning on

    todo, skipped = plan(snap, ["legal-hold"])
    assert [(a.operation, a.params["Key"]) for a in todo] == [("put_object_legal_hold", "case-7/b.png")]
    log = tmp_path / "remediation.jsonl"
    res = apply(todo, clients, log)
    assert [r["result"] for r in res] == ["ok"]
    assert json.loads(log.read_text().splitlines()[0])["operation"] == "put_object_legal_hold"

    snap2, by2 = _s3_status(clients)
    assert by2["s3.legal_hold"].status is Status.PASS
    assert plan(snap2, ["legal-hold"]) == ([], [])                      # idempotent: nothing left to do
    assert s3.get_object_legal_hold(Bucket=B, Key="case-7/b.png")["LegalHold"]["Status"] == "ON"
    # a cap on objects checked never turns into a pass for the unchecked rest
    import sys

    monkeypatch.setattr(sys.modules["s3sync.posture.collect"], "MAX_INVESTIGATION_OBJECTS", 1)
    _, by3 = _s3_status(clients)
    assert by3["s3.legal_hold"].status is Status.UNKNOWN and "first" in by3["s3.legal_hold"].evidence["reason"]
    # the hold is enforced by the server: the version cannot be deleted
    vid = s3.head_object(Bucket=B, Key="case-7/b.png")["VersionId"]
    with pytest.raises(Exception):
        s3.delete_object(Bucket=B, Key="case-7/b.png", VersionId=vid)
