"""Posture collection on estates real users have, against a real moto server.

One mixed account (hundreds of untagged buckets around a few in-scope ones, a single-Statement policy, an
authenticated-read ACL, a VPC-endpoint-only policy, DSSE-KMS with Object Lock in compliance mode, a bucket in
another region, AWS-managed policies through a group, more roles than one IAM page) plus AccessDenied answers
injected on one client (moto does not enforce IAM): what the collector reads must become the right verdict,
and a denied answer must become ``unknown``, never ``pass``. The wrong verdicts found in review are fixed;
their tests stay as regressions.
"""
from __future__ import annotations

import json

import pytest
from botocore.awsrequest import AWSResponse

from s3sync.posture import Clients, Status, collect, parse_config, run_checks
from tests.integration.test_posture_moto import ACCOUNT, _egress_sg, _instance, _tags

pytestmark = pytest.mark.integration

BULK = 250
ROLES = 120
ALL_CONFIG_READS = {"GetBucketPolicy", "GetBucketPolicyStatus", "GetBucketAcl", "GetPublicAccessBlock",
                    "GetBucketEncryption", "GetObjectLockConfiguration", "GetBucketVersioning", "GetBucketLogging"}
PUBLISHER = f"arn:aws:iam::{ACCOUNT}:role/publisher"
TOML = {"posture": {"allowed_principals": [PUBLISHER]}}


def deny_s3(client, operations, buckets):
    """Make this S3 client get AccessDenied for these operations on these buckets (moto enforces no IAM)."""
    def remember(params, context, **_):
        context["posture_test_bucket"] = params.get("Bucket")

    def short_circuit(model, context, **_):
        if model.name in operations and context.get("posture_test_bucket") in buckets:
            return (AWSResponse("https://denied.invalid", 403, {}, None),
                    {"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                     "ResponseMetadata": {"HTTPStatusCode": 403}})
        return None

    client.meta.events.register("before-parameter-build.s3", remember)
    client.meta.events.register("before-call.s3", short_circuit)


def _in_scope(s3, name, cls="synthetic-media", **create):
    s3.create_bucket(Bucket=name, **create)
    s3.put_bucket_tagging(Bucket=name, Tagging=_tags(synthguard__class=cls))


def build_mixed(m):
    s3, iam, kms, ct = m.client("s3"), m.client("iam"), m.client("kms"), m.client("cloudtrail")
    for i in range(BULK):
        s3.create_bucket(Bucket=f"bulk-{i:04d}")
    _in_scope(s3, "sg-single")
    s3.put_bucket_policy(Bucket="sg-single", Policy=json.dumps({"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::sg-single/*"}}))
    _in_scope(s3, "sg-authread", ACL="authenticated-read")
    _in_scope(s3, "sg-vpce")
    s3.put_bucket_policy(Bucket="sg-vpce", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::sg-vpce/*",
         "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}}}]}))
    _in_scope(s3, "sg-acl-ignored")
    s3.put_bucket_acl(Bucket="sg-acl-ignored", ACL="public-read")
    s3.put_public_access_block(Bucket="sg-acl-ignored", PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": False})
    key = kms.create_key()["KeyMetadata"]["Arn"]
    kms.enable_key_rotation(KeyId=key)
    _in_scope(s3, "sg-train-dsse", "training-data", ObjectLockEnabledForBucket=True)
    s3.put_bucket_encryption(Bucket="sg-train-dsse", ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse", "KMSMasterKeyID": key},
         "BucketKeyEnabled": True}]})
    s3.put_object_lock_configuration(Bucket="sg-train-dsse", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}}})
    _in_scope(s3, "sg-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    _in_scope(s3, "sg-denied", "training-data")
    _in_scope(s3, "sg-hidden")                       # tagged, but its tags will be unreadable
    _in_scope(s3, "sg-put-acl")
    s3.put_bucket_policy(Bucket="sg-put-acl", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObjectAcl", "Resource": "arn:aws:s3:::sg-put-acl/*"}]}))
    # a single-region trail in us-east-1 that records every S3 data event of its region
    s3.create_bucket(Bucket="trail-logs")
    ct.create_trail(Name="regional", S3BucketName="trail-logs", IsMultiRegionTrail=False)
    ct.put_event_selectors(TrailName="regional", EventSelectors=[
        {"ReadWriteType": "All", "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}])
    ct.start_logging(Name="regional")
    # IAM: an AWS-managed policy through a group; more roles than one page; an allowed role anyone can assume
    iam.create_user(UserName="viewer")
    iam.create_group(GroupName="viewers")
    iam.add_user_to_group(GroupName="viewers", UserName="viewer")
    iam.attach_group_policy(GroupName="viewers", PolicyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    for i in range(ROLES):
        iam.create_role(RoleName=f"r{i:03d}", AssumeRolePolicyDocument="{}")
    iam.put_role_policy(RoleName=f"r{ROLES - 5:03d}", PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}))
    boundary = iam.create_policy(PolicyName="boundary", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::sg-vpce/*"}]}))["Policy"]["Arn"]
    iam.create_role(RoleName="publisher", PermissionsBoundary=boundary, AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="publisher", PolicyName="read", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                 "Resource": "arn:aws:s3:::sg-vpce/*"}]}))


@pytest.fixture(scope="module")
def mixed(moto_server):
    moto_server.reset()
    build_mixed(moto_server)
    clients = Clients(endpoint_url=moto_server.endpoint_url)
    deny_s3(clients("s3"), ALL_CONFIG_READS, {"sg-denied"})
    deny_s3(clients("s3"), {"GetBucketPolicyStatus"}, {"sg-put-acl"})
    deny_s3(clients("s3"), {"GetBucketTagging"}, {"sg-hidden"})
    snap = collect(clients, parse_config(TOML))
    return snap, run_checks(snap)


def _v(findings, check, bucket):
    got = [f for f in findings if f.check == check and f.resource == f"arn:aws:s3:::{bucket}"]
    assert len(got) == 1, got
    return got[0]


def test_scope_over_hundreds_of_buckets(mixed):
    snap, _ = mixed
    assert set(snap.buckets) == {"sg-single", "sg-authread", "sg-vpce", "sg-acl-ignored", "sg-train-dsse", "sg-eu",
                                 "sg-denied", "sg-put-acl"}
    assert sum(n.startswith("bulk-") for n in snap.out_of_scope) == BULK
    # a bucket whose tags are unreadable is not silently dropped: its scope is reported as undecided
    assert "sg-hidden" in snap.out_of_scope and "AccessDenied" in snap.scope_errors["sg-hidden"]


@pytest.mark.parametrize("bucket,expected", [("sg-single", "fail"), ("sg-authread", "fail"), ("sg-vpce", "pass"),
                                             ("sg-acl-ignored", "pass"), ("sg-train-dsse", "pass")])
def test_public_access_verdicts(mixed, bucket, expected):
    assert _v(mixed[1], "s3.public_access", bucket).status.value == expected


def test_collected_shapes_become_the_right_verdicts(mixed):
    _, fs = mixed
    assert _v(fs, "s3.public_access", "sg-authread").evidence["acl_public_grants"][0]["Grantee"]["URI"].endswith(
        "AuthenticatedUsers")
    assert _v(fs, "s3.block_public_access", "sg-acl-ignored").evidence["missing"] == [
        "BlockPublicPolicy", "RestrictPublicBuckets"]
    assert _v(fs, "s3.kms_encryption", "sg-train-dsse").status is Status.PASS
    assert _v(fs, "s3.object_lock", "sg-train-dsse").status is Status.PASS
    assert [f.status for f in fs if f.check == "kms.rotation"] == [Status.PASS]
    assert _v(fs, "cloudtrail.s3_data_events", "sg-single").status is Status.PASS   # same-region bucket


def test_denied_bucket_configuration_is_unknown_never_pass(mixed):
    _, fs = mixed
    mine = {f.check: f for f in fs if f.resource == "arn:aws:s3:::sg-denied"}
    for check in ("s3.public_access", "s3.block_public_access", "s3.kms_encryption", "s3.object_lock",
                  "s3.versioning", "s3.access_logging"):
        assert mine[check].status is Status.UNKNOWN, (check, mine[check].evidence)
        assert "AccessDenied" in mine[check].evidence["reason"]


def test_iam_managed_group_policy_and_many_roles(mixed):
    snap, fs = mixed
    assert len([p for p in snap.principals if p["type"] == "role"]) == ROLES + 1
    readers = {f.resource.rsplit("/", 1)[-1] for f in fs if f.check == "iam.broad_get_object" and f.failed}
    # publisher is allowed, but anyone may assume it (its trust policy): see the test below
    assert readers == {"viewer", f"r{ROLES - 5:03d}", "publisher"}
    viewer = [f for f in fs if f.check == "iam.broad_get_object" and f.resource.endswith(":user/viewer")]
    assert "AmazonS3ReadOnlyAccess" in viewer[0].evidence["why"]


def test_public_put_object_acl_with_denied_policy_status_is_not_pass(mixed):
    assert _v(mixed[1], "s3.public_access", "sg-put-acl").status is not Status.PASS


def test_bucket_in_another_region_is_not_covered_by_a_single_region_trail(mixed):
    assert _v(mixed[1], "cloudtrail.s3_data_events", "sg-eu").status is Status.FAIL


def test_allowed_role_with_public_trust_policy_is_reported(mixed):
    publisher = [f for f in mixed[1] if f.resource == PUBLISHER]
    assert {f.check for f in publisher} == {"iam.broad_get_object", "iam.permission_boundary"}
    assert any(f.failed for f in publisher), [(f.check, f.status.value) for f in publisher]


def test_workers_without_in_scope_buckets_still_get_an_egress_verdict(moto_server, mixed):
    moto_server.reset()   # after `mixed` (module fixture) so the shared estate is not wiped under it
    try:
        ec2 = moto_server.client("ec2")
        _instance(ec2, _egress_sg(ec2, "worker-open", True), "alice")
        snap = collect(Clients(endpoint_url=moto_server.endpoint_url))
        fs = run_checks(snap, checks=["ec2.*"])
        assert [f.status for f in fs] == [Status.FAIL]
    finally:
        moto_server.reset()   # leave the shared server empty for the next module
