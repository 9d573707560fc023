"""Posture checks on estates real users have (hand-built snapshots, no server).

Policy shapes (single Statement object, Action strings, wildcards, NotPrincipal/NotAction, Condition blocks
that do or do not make a public grant safe), ACL and Block Public Access combinations, SSE-S3 / SSE-KMS /
DSSE-KMS, Object Lock modes, logging into the bucket itself, IAM wildcard grants and denies, CloudTrail
selectors, open egress and AccessDenied everywhere. The wrong verdicts found in review are fixed; their
tests stay as regressions.
"""
from __future__ import annotations

import time

import pytest

from s3sync.posture import Status, run_checks
from tests.test_posture_checks import ACCT, NOPE, PAB, M, TR, _principal, bucket, clean, status, verdicts

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
ANALYST = f"arn:aws:iam::{ACCT}:role/analyst"
OBJ = "arn:aws:s3:::media/*"


def _public_stmt(**kw):
    st = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": OBJ}
    st.update(kw)
    return st


def _exposed(policy=None, acl=None, pab=None, account_pab=None, policy_status=None):
    """s3.public_access of bucket `media` with these answers (everything else clean)."""
    s = clean(account_public_access_block=account_pab)
    b = s.buckets["media"]
    b.policy, b.policy_status, b.public_access_block = policy, policy_status, pab
    if acl is not None:
        b.acl = acl
    return status(s, "s3.public_access", M)


# ----------------------------------------------------------------------------- bucket policies
@pytest.mark.parametrize("policy,expected", [
    pytest.param({"Statement": _public_stmt()}, "fail", id="single-statement-object"),
    pytest.param({"Statement": [_public_stmt(Principal={"AWS": ["*"]})]}, "fail", id="principal-aws-star-list"),
    pytest.param({"Statement": [_public_stmt(Principal={"CanonicalUser": "*"})]}, "fail", id="canonical-user-star"),
    pytest.param({"Statement": [_public_stmt(Action=["s3:ListBucket", "s3:GetObject"])]}, "fail", id="action-list"),
    pytest.param({"Statement": [_public_stmt(Action="s3:*")]}, "fail", id="action-s3-star"),
    pytest.param({"Statement": [_public_stmt(Action="*")]}, "fail", id="action-star"),
    pytest.param({"Statement": [_public_stmt(Resource="arn:aws:s3:::med*")]}, "fail", id="resource-bucket-prefix-glob"),
    pytest.param({"Version": "2008-10-17", "Id": "old", "Statement": [_public_stmt()]}, "fail", id="version-2008-with-id"),
    pytest.param({"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": f"arn:aws:iam::{ACCT}:root"},
                                 "Action": "s3:GetObject", "Resource": OBJ}]}, "fail", id="allow-notprincipal"),
    pytest.param({"Statement": [{"Effect": "Allow", "Principal": "*", "NotAction": "s3:Delete*", "Resource": OBJ}]},
                 "fail", id="allow-notaction"),
    # conditions that do NOT make it safe
    pytest.param({"Statement": [_public_stmt(Condition={"Bool": {"aws:SecureTransport": "true"}})]}, "fail",
                 id="securetransport-only"),
    pytest.param({"Statement": [_public_stmt(), {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": OBJ,
                                                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]},
                 "fail", id="deny-insecure-transport-does-not-close-public-allow"),
    pytest.param({"Statement": [_public_stmt(Condition={"StringLike": {"aws:Referer": "https://example.com/*"}})]},
                 "fail", id="referer-is-spoofable"),
    pytest.param({"Statement": [_public_stmt(Condition={"IpAddress": {"aws:SourceIp": "::/0"}})]}, "fail",
                 id="sourceip-any-ipv6"),
    pytest.param({"Statement": [_public_stmt(Condition={"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1"}})]},
                 "fail", id="sourcevpce-ifexists"),
    pytest.param({"Statement": [_public_stmt(Condition={"StringNotEquals": {"aws:PrincipalOrgID": "o-1"}})]},
                 "fail", id="not-in-org"),
    # conditions that DO make it non-public (AWS's fixed-value keys)
    pytest.param({"Statement": [_public_stmt(Condition={"StringEquals": {"aws:SourceVpce": "vpce-1"}})]}, "pass",
                 id="sourcevpce"),
    pytest.param({"Statement": [_public_stmt(Condition={"StringEquals": {"AWS:SOURCEVPCE": "vpce-1"}})]}, "pass",
                 id="condition-key-case-insensitive"),
    pytest.param({"Statement": [_public_stmt(Condition={"StringEquals": {"aws:PrincipalOrgID": "o-1"}})]}, "pass",
                 id="principal-org-id"),
    pytest.param({"Statement": [_public_stmt(Condition={"ArnEquals": {
        "aws:SourceArn": f"arn:aws:cloudfront::{ACCT}:distribution/E1"}})]}, "pass", id="source-arn"),
    pytest.param({"Statement": [_public_stmt(Condition={"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}})]}, "pass",
                 id="sourceip-fixed-cidr"),
    pytest.param({"Statement": [_public_stmt(Principal={"AWS": f"arn:aws:iam::{ACCT}:root"})]}, "pass",
                 id="named-account-root"),
])
def test_public_policy_shapes(policy, expected):
    assert _exposed(policy=policy).status.value == expected


def test_public_put_object_acl_with_policy_status_denied_is_not_pass():
    f = _exposed(policy={"Statement": [_public_stmt(Action="s3:PutObjectAcl")]}, policy_status=NOPE)
    assert f.status is not Status.PASS


# ----------------------------------------------------------------------------- ACLs and Block Public Access
@pytest.mark.parametrize("kw,expected", [
    pytest.param(dict(acl={"Grants": [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]},
                      pab={"BlockPublicAcls": True}), "fail", id="allusers-read-blockpublicacls-only"),
    pytest.param(dict(acl={"Grants": [{"Grantee": {"Type": "Group", "URI": AUTH_USERS}, "Permission": "READ"}]}),
                 "fail", id="authenticated-users-read"),
    pytest.param(dict(acl={"Grants": [{"Grantee": {"Type": "Group", "URI": AUTH_USERS}, "Permission": "READ"}]},
                      account_pab={"IgnorePublicAcls": True}), "pass", id="account-ignore-public-acls"),
    pytest.param(dict(acl={"Grants": [{"Grantee": {"Type": "Group", "URI":
                                                   "http://acs.amazonaws.com/groups/s3/LogDelivery"},
                                       "Permission": "WRITE"}]}), "pass", id="log-delivery-is-not-public"),
    pytest.param(dict(policy={"Statement": [_public_stmt()]}, account_pab={"RestrictPublicBuckets": True}), "pass",
                 id="account-restrict-public-buckets"),
    pytest.param(dict(policy={"Statement": [_public_stmt()]}, pab={"BlockPublicPolicy": True}), "fail",
                 id="block-public-policy-does-not-neutralise-existing-policy"),
    pytest.param(dict(policy_status={"IsPublic": True}), "fail", id="endpoint-says-public"),
])
def test_acl_and_block_public_access_combinations(kw, expected):
    assert _exposed(**kw).status.value == expected


def test_block_public_access_split_between_bucket_and_account_is_effective():
    s = clean(account_public_access_block={"BlockPublicAcls": False, "IgnorePublicAcls": False,
                                           "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s.buckets["media"].public_access_block = {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                              "BlockPublicPolicy": False, "RestrictPublicBuckets": False}
    assert status(s, "s3.block_public_access", M).status is Status.PASS


def test_block_public_access_account_or_bucket():
    s = clean(account_public_access_block=dict(PAB))
    s.buckets["media"].public_access_block = None
    assert status(s, "s3.block_public_access", M).status is Status.PASS          # account-wide is enough
    s.buckets["media"].public_access_block = NOPE
    assert status(s, "s3.block_public_access", M).status is Status.PASS          # account decides despite denial
    s.account_public_access_block = None
    assert status(s, "s3.block_public_access", M).status is Status.UNKNOWN
    s.buckets["media"].public_access_block = {"BlockPublicAcls": True}
    s.account_public_access_block = NOPE
    assert status(s, "s3.block_public_access", M).status is Status.UNKNOWN       # partial + unreadable account


# ----------------------------------------------------------------------------- AccessDenied everywhere
def test_bucket_whose_configuration_is_denied_is_unknown_never_pass():
    s = clean()
    for b in s.buckets.values():
        for fld in ("policy", "policy_status", "acl", "public_access_block", "encryption", "object_lock",
                    "versioning", "logging"):
            setattr(b, fld, NOPE)
    s.buckets["train"].legal_holds = [{"key": "leak/a", "error": "s3:GetObjectLegalHold: AccessDenied: no",
                                       "code": "AccessDenied"}]
    bucket_checks = ("s3.public_access", "s3.block_public_access", "s3.kms_encryption", "s3.object_lock",
                     "s3.legal_hold", "s3.versioning", "s3.access_logging")
    got = {(f.check, f.resource): f for f in run_checks(s, checks=list(bucket_checks))}
    assert {f.status for f in got.values()} == {Status.UNKNOWN}, [(k, f.status.value) for k, f in got.items()]
    assert all("AccessDenied" in f.evidence["reason"] for f in got.values())
    # ... unless the account-level settings decide it: RestrictPublicBuckets + IgnorePublicAcls make it private
    s.account_public_access_block = dict(PAB)
    assert status(s, "s3.public_access", M).status is Status.PASS


def test_oac_is_not_pass_when_the_bucket_public_state_is_unknown():
    s = clean()
    b = s.buckets["media"]
    b.public_access_block, b.policy, b.policy_status = None, NOPE, NOPE
    assert status(s, "s3.public_access", M).status is Status.UNKNOWN
    assert status(s, "cloudfront.origin_access_control").status is not Status.PASS


def test_oac_grant_without_source_arn_condition_fails():
    s = clean()
    s.buckets["media"].policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "AllowCloudFrontServicePrincipal", "Effect": "Allow",
         "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject", "Resource": OBJ}]}
    assert status(s, "cloudfront.origin_access_control").failed


def test_oac_grant_with_source_arn_passes():
    s = clean()
    s.buckets["media"].policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
         "Resource": OBJ, "Condition": {"StringEquals": {
             "AWS:SourceArn": f"arn:aws:cloudfront::{ACCT}:distribution/D1"}}}]}
    assert status(s, "cloudfront.origin_access_control").status is Status.PASS
    assert status(s, "s3.public_access", M).status is Status.PASS
    assert not [f for f in run_checks(s, checks=["iam.broad_get_object"]) if f.failed]


# ----------------------------------------------------------------------------- encryption, lock, logging
KMS_DSSE = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse",
                                                              "KMSMasterKeyID": "k2"}}]}
KMS_AWS_KEY = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                          "BucketKeyEnabled": True}]}
SSE_S3_BK = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]}


@pytest.mark.parametrize("enc,media,train", [
    pytest.param(KMS_DSSE, "pass", "pass", id="dsse-kms"),
    pytest.param(KMS_AWS_KEY, "pass", "pass", id="aws-managed-kms-key-with-bucket-key"),
    pytest.param(SSE_S3_BK, "pass", "fail", id="sse-s3-bucket-key-flag-is-still-sse-s3"),
    pytest.param({"Rules": []}, "fail", "fail", id="no-rules"),
])
def test_encryption_variants(enc, media, train):
    s = clean()
    s.buckets["media"].encryption = enc
    s.buckets["train"].encryption = enc
    assert status(s, "s3.kms_encryption", M).status.value == media
    assert status(s, "s3.kms_encryption", TR).status.value == train


@pytest.mark.parametrize("lock,expected", [
    ({"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}, "pass"),
    ({"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}}, "pass"),
    ({"ObjectLockEnabled": "Enabled"}, "pass"),   # enabled without default retention: accepted today
    ({}, "fail"),
    (None, "fail"),
])
def test_object_lock_modes(lock, expected):
    s = clean()
    s.buckets["train"].object_lock = lock
    assert verdicts(s, "s3.object_lock") == [(TR, expected)]


def test_logging_into_the_bucket_itself_passes_with_a_note():
    s = clean()
    s.buckets["media"].logging = {"TargetBucket": "media", "TargetPrefix": "logs/"}
    f = status(s, "s3.access_logging", M)
    assert f.status is Status.PASS and "itself" in f.evidence["note"]
    s.buckets["media"].logging = {"TargetBucket": "", "TargetPrefix": ""}
    assert status(s, "s3.access_logging", M).failed


# ----------------------------------------------------------------------------- IAM
def _analyst(stmts, boundary=None, boundary_doc=None):
    s = clean()
    p = _principal(ANALYST, stmts, boundary=boundary)
    p["boundary_doc"] = boundary_doc
    s.principals.append(p)
    return s


def _analyst_reads(s):
    return sorted((f.status.value, f.evidence.get("bucket")) for f in run_checks(s, checks=["iam.broad_get_object"])
                  if f.resource == ANALYST)


BOTH = [("fail", "media"), ("fail", "train")]
NONE = [("pass", None)]


@pytest.mark.parametrize("stmts,expected", [
    pytest.param([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::med*"}],
                 [("fail", "media")], id="resource-bucket-name-glob"),
    pytest.param([{"Effect": "Allow", "Action": ["s3:getobject"], "Resource": ["arn:aws:s3:::*/*"]}], BOTH,
                 id="lowercase-action-any-bucket"),
    pytest.param({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}, BOTH, id="single-statement-object"),
    pytest.param([{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}], BOTH, id="allow-notaction"),
    pytest.param([{"Effect": "Allow", "Action": "s3:GetObject*", "Resource": "*"}], BOTH, id="action-suffix-glob"),
    pytest.param([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
                   "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}}}], BOTH,
                 id="conditional-allow-still-counts"),
    pytest.param([{"Effect": "Allow", "Action": "*", "Resource": "*"},
                  {"Effect": "Deny", "NotAction": "s3:List*", "Resource": "*"}], NONE, id="deny-notaction"),
    pytest.param([{"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                  {"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::other/*"}], NONE,
                 id="deny-notresource"),
    pytest.param([{"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                  {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
                   "Condition": {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/pub"}}}], NONE,
                 id="deny-decided-by-principal-arn"),
    pytest.param([{"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                  {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
                   "Condition": {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/pub"},
                                 "Bool": {"aws:SecureTransport": "false"}}}], BOTH,
                 id="deny-with-undecidable-condition-not-relied-upon"),
    pytest.param([{"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                   "Condition": {"StringEquals": {"aws:PrincipalArn": "arn:aws:iam::1:role/other"}}}], NONE,
                 id="allow-for-another-principal-arn"),
])
def test_iam_identity_policy_shapes(stmts, expected):
    assert _analyst_reads(_analyst(stmts)) == expected


def test_iam_permission_boundary_as_single_statement_caps_the_grant():
    s = _analyst([{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}], boundary="arn:aws:iam::1:policy/b",
                 boundary_doc={"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::other/*"}})
    assert _analyst_reads(s) == NONE


def test_iam_get_object_version_grant_is_a_read():
    s = _analyst([{"Effect": "Allow", "Action": ["s3:GetObjectVersion", "s3:ListBucketVersions"], "Resource": "*"}])
    assert _analyst_reads(s) == BOTH


@pytest.mark.parametrize("deny", [
    pytest.param({"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject*", "Resource": OBJ,
                  "Condition": {"ArnNotLike": {"aws:PrincipalArn": [f"arn:aws:iam::{ACCT}:role/pub"]}}},
                 id="deny-unless-principal-arn"),
    pytest.param({"Effect": "Deny", "NotPrincipal": {"AWS": [f"arn:aws:iam::{ACCT}:role/pub"]}, "Action": "s3:*",
                  "Resource": ["arn:aws:s3:::media", OBJ]}, id="deny-notprincipal"),
])
def test_iam_bucket_policy_lockdown_deny_is_credited(deny):
    s = _analyst([{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}])
    s.buckets["media"].policy = {"Version": "2012-10-17", "Statement": [deny]}
    assert _analyst_reads(s) == [("fail", "train")]


@pytest.mark.parametrize("condition", [
    pytest.param({"StringEquals": {"aws:PrincipalAccount": ACCT}}, id="principal-account"),
    pytest.param({"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}, id="principal-org-id"),
])
def test_account_or_org_wide_bucket_policy_grant_is_reported(condition):
    s = _analyst([{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}])
    s.buckets["media"].policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": OBJ,
         "Condition": condition}]}
    assert status(s, "s3.public_access", M).status is Status.PASS
    assert [f for f in run_checks(s, checks=["iam.broad_get_object"]) if f.failed]


def test_named_cross_account_principal_in_bucket_policy_is_reported():
    s = clean()
    oai = "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E2ABC"
    s.buckets["media"].policy = {"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "s3:*",
         "Resource": ["arn:aws:s3:::media", OBJ]},
        {"Effect": "Allow", "Principal": {"AWS": oai}, "Action": "s3:GetObject", "Resource": OBJ}]}
    fails = {f.resource: f.evidence["cross_account"] for f in run_checks(s, checks=["iam.broad_get_object"])
             if f.failed}
    assert fails["arn:aws:iam::111122223333:root"] is True   # (the legacy OAI is reported too today: a judgement call)


# ----------------------------------------------------------------------------- CloudTrail selectors
def _advanced(*extra):
    s = clean()
    s.trails[0]["selectors"] = {"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
        *extra]}]}
    return {v for _, v in verdicts(s, "cloudtrail.s3_data_events")}


@pytest.mark.parametrize("extra,expected", [
    pytest.param((), {"pass"}, id="all-data-events"),
    pytest.param(({"Field": "readOnly", "Equals": ["true"]},), {"pass"}, id="reads-only"),
    pytest.param(({"Field": "readOnly", "Equals": ["false"]},), {"fail"}, id="writes-only"),
    pytest.param(({"Field": "resources.ARN", "EndsWith": [".png"]},), {"fail"}, id="arn-endswith-not-whole-bucket"),
])
def test_cloudtrail_advanced_selectors(extra, expected):
    assert _advanced(*extra) == expected


@pytest.mark.parametrize("extra", [
    pytest.param({"Field": "eventName", "Equals": ["PutObject", "DeleteObject"]}, id="eventName-writes"),
    pytest.param({"Field": "readOnly", "NotEquals": ["true"]}, id="readOnly-NotEquals-true"),
])
def test_cloudtrail_write_only_advanced_selectors_fail(extra):
    assert _advanced(extra) == {"fail"}


def test_cloudtrail_trail_states():
    s = clean(trails=[])
    assert {v for _, v in verdicts(s, "cloudtrail.s3_data_events")} == {"fail"}          # no trail at all
    s = clean()
    s.trails[0]["selectors"] = {"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True,
                                                    "DataResources": []}]}
    assert {v for _, v in verdicts(s, "cloudtrail.s3_data_events")} == {"fail"}          # management events only
    s.trails[0]["selectors"] = NOPE
    assert {v for _, v in verdicts(s, "cloudtrail.s3_data_events")} == {"unknown"}       # selectors denied


def test_cloudtrail_single_region_trail_and_bucket_region():
    s = clean()
    s.trails[0]["trail"].update(IsMultiRegionTrail=False, HomeRegion="us-east-1")
    s.buckets["media"].region = "eu-west-1"
    s.buckets["train"].region = NOPE
    got = dict(verdicts(s, "cloudtrail.s3_data_events"))
    assert got == {M: "fail", TR: "unknown"}                       # other region; region unreadable
    s.trails[0]["trail"]["IsMultiRegionTrail"] = True
    assert {v for _, v in verdicts(s, "cloudtrail.s3_data_events")} == {"pass"}


# ----------------------------------------------------------------------------- egress
@pytest.mark.parametrize("rule,expected", [
    ({"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}, ("fail", "high")),
    ({"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, ("fail", "high")),
    ({"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, ("fail", "medium")),
    ({"IpProtocol": "-1", "PrefixListIds": [{"PrefixListId": "pl-1"}]}, ("pass", "high")),
    ({"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-2"}]}, ("pass", "high")),
])
def test_egress_rules(rule, expected):
    s = clean()
    s.security_groups["sg-1"]["IpPermissionsEgress"] = [rule]
    f = status(s, "ec2.unrestricted_egress")
    assert (f.status.value, f.severity) == expected


# ----------------------------------------------------------------------------- scale
def test_hundreds_of_buckets_and_principals_stay_fast_and_exact():
    s = clean()
    for i in range(300):
        name = f"b{i:03d}"
        s.buckets[name] = bucket(name, "training-data" if i % 2 else "synthetic-media")
    for j in range(150):
        s.principals.append(_principal(f"arn:aws:iam::{ACCT}:role/r{j}", [
            {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": [f"arn:aws:s3:::b{j:03d}/*"]},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b000/*"}]))
    t0 = time.monotonic()
    fs = run_checks(s)
    assert time.monotonic() - t0 < 30
    reads = {(f.resource.rsplit("/", 1)[-1], f.evidence["bucket"]) for f in fs
             if f.check == "iam.broad_get_object" and f.failed}
    assert reads == {(f"r{j}", f"b{j:03d}") for j in range(1, 150)}                   # r0 is denied on b000
    assert sum(f.check == "s3.public_access" for f in fs) == 302


@pytest.mark.parametrize("trust, failed", [
    pytest.param({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}, True, id="anyone"),
    pytest.param({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole",
                  "Condition": {"StringEquals": {"sts:ExternalId": "s3cr3t"}}}, True, id="external-id-only"),
    pytest.param({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole",
                  "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}}, False, id="org-pinned"),
    pytest.param({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"},
                 False, id="service"),
])
def test_reader_role_anyone_may_assume_fails(trust, failed):
    """An allowed reader whose trust policy lets any AWS principal assume it is as open as a public grant."""
    s = _analyst([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}])
    role = s.principals[-1]
    s.buckets["media"].allowed_principals = [role["arn"]]
    s.buckets["train"].allowed_principals = [role["arn"]]
    role["trust"] = {"Statement": [trust]}
    got = [f.status.value for f in run_checks(s, checks=["iam.broad_get_object"]) if f.resource == role["arn"]]
    assert ("fail" in got) is failed, got
