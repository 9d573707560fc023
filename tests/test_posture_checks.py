"""Every check on hand-built snapshots: pass on a clean estate, fail on its misconfiguration,
unknown (with the reason) when the API did not answer."""
from __future__ import annotations

import json

import pytest

from s3sync.posture import Finding, Status, failed_at_or_above, parse_config, run_checks
from s3sync.posture.checks import CHECK_IDS, REGISTRY
from s3sync.posture.clients import Unavailable
from s3sync.posture.collect import BucketSnapshot, Snapshot

ACCT = "123456789012"
PAB = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/k1"
NOPE = Unavailable("x:Op", "AccessDenied", "denied")


def bucket(name="media", cls="synthetic-media", **kw):
    b = BucketSnapshot(name=name, cls=cls, owner="alice", allowed_principals=(f"arn:aws:iam::{ACCT}:role/pub",),
                       policy=None, policy_status=None, acl={"Grants": []}, public_access_block=dict(PAB),
                       encryption={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                                                      "KMSMasterKeyID": KEY}}]},
                       object_lock={"ObjectLockEnabled": "Enabled"} if cls == "training-data" else None,
                       versioning={"Status": "Enabled"}, logging={"TargetBucket": "logs", "TargetPrefix": ""})
    for k, v in kw.items():
        setattr(b, k, v)
    return b


def clean(**kw) -> Snapshot:
    rules = [{"ConfigRuleName": i, "Source": {"Owner": "AWS", "SourceIdentifier": i},
              "Scope": {"ComplianceResourceTypes": ["AWS::S3::Bucket"]}}
             for i in ("S3_DEFAULT_ENCRYPTION_KMS", "S3_BUCKET_PUBLIC_READ_PROHIBITED",
                       "S3_BUCKET_DEFAULT_LOCK_ENABLED", "S3_BUCKET_LOGGING_ENABLED")]
    rule_def = {"Schema": {"Name": "CloudWatchLogRule", "Version": 1}, "LogGroupNames": ["t"], "LogFormat": "JSON",
                "Contribution": {"Keys": ["$.userIdentity.arn"], "Filters": [
                    {"Match": "$.eventSource", "In": ["s3.amazonaws.com"]}]}, "AggregateOn": "Count"}
    s = Snapshot(
        account_id=ACCT, region="us-east-1",
        buckets={"media": bucket(), "train": bucket("train", "training-data", under_investigation=("leak/",),
                                                   legal_holds=[{"key": "leak/a", "status": "ON"}])},
        account_public_access_block=None,
        trails=[{"trail": {"Name": "t", "TrailARN": "arn:t"}, "status": {"IsLogging": True},
                 "selectors": {"EventSelectors": [{"ReadWriteType": "All", "DataResources": [
                     {"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]}}],
        distributions=[{"Id": "D1", "ARN": f"arn:aws:cloudfront::{ACCT}:distribution/D1", "Origins": {"Items": [
            {"Id": "o", "DomainName": "media.s3.us-east-1.amazonaws.com", "OriginAccessControlId": "E1",
             "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
            "DefaultCacheBehavior": {"TargetOriginId": "o", "ViewerProtocolPolicy": "redirect-to-https"}}],
        principals=[{"arn": f"arn:aws:iam::{ACCT}:role/pub", "name": "pub", "type": "role", "path": "/",
                     "boundary": f"arn:aws:iam::{ACCT}:policy/b",
                     "boundary_doc": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
                     "policies": [["inline:r", {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                               "Resource": "arn:aws:s3:::media/*"}]}]]}],
        instances=[{"id": "i-1", "arn": "arn:i-1", "owner": "alice", "security_groups": ["sg-1"]}],
        security_groups={"sg-1": {"GroupId": "sg-1", "IpPermissionsEgress": [
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]}},
        kms_keys={KEY: {"metadata": {"Arn": KEY, "KeyManager": "CUSTOMER"}, "rotation": {"KeyRotationEnabled": True}}},
        guardduty=[{"DetectorId": "d", "Status": "ENABLED", "DataSources": {"S3Logs": {"Status": "ENABLED"}}}],
        macie={"session": {"status": "ENABLED"}, "custom_data_identifiers": [{"name": "c2pa"}]},
        config_rules=rules, config_recorders=[{"name": "default", "recording": True}],
        insight_rules=[{"Name": "r", "State": "ENABLED", "Definition": json.dumps(rule_def)}])
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def verdicts(snap, check):
    return [(f.resource, f.status.value) for f in run_checks(snap, checks=[check])]


def status(snap, check, resource=None):
    fs = [f for f in run_checks(snap, checks=[check]) if resource is None or f.resource == resource]
    assert len(fs) == 1, fs
    return fs[0]


def test_registry_matches_contract():
    assert set(REGISTRY) == set(CHECK_IDS) and len(CHECK_IDS) == 18
    for cid, (meta, _) in REGISTRY.items():
        assert meta.id == cid and meta.remediation and meta.risk and meta.severity in (
            "low", "medium", "high", "critical")


def test_clean_snapshot_passes_everything():
    fs = run_checks(clean())
    assert {f.check for f in fs} == set(CHECK_IDS)
    assert [(f.check, f.resource, f.evidence) for f in fs if f.status is not Status.PASS] == []


M = "arn:aws:s3:::media"
TR = "arn:aws:s3:::train"


def test_public_access():
    s = clean()
    s.buckets["media"].policy = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:Get*",
                                                "Resource": "arn:aws:s3:::media/*"}]}
    s.buckets["media"].public_access_block = {}
    f = status(s, "s3.public_access", M)
    assert f.failed and f.owner == "alice" and f.evidence["public_statements"][0]["actions"] == ["s3:GetObject", "s3:GetObjectVersion"]
    # RestrictPublicBuckets neutralises a public policy
    s.buckets["media"].public_access_block = dict(PAB)
    assert status(s, "s3.public_access", M).status is Status.PASS
    # ACL grant to AllUsers
    s = clean()
    s.buckets["media"].public_access_block = None
    s.buckets["media"].acl = {"Grants": [{"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                                          "Permission": "READ"}]}
    assert status(s, "s3.public_access", M).failed
    # the endpoint says public even if our evaluation finds nothing
    s = clean()
    s.buckets["media"].public_access_block = None
    s.buckets["media"].policy_status = {"IsPublic": True}
    assert status(s, "s3.public_access", M).failed
    # nothing answered
    s = clean()
    s.buckets["media"].public_access_block = None
    s.buckets["media"].policy, s.buckets["media"].policy_status = NOPE, NOPE
    f = status(s, "s3.public_access", M)
    assert f.status is Status.UNKNOWN and "AccessDenied" in f.evidence["reason"]


def test_block_public_access_bucket_or_account():
    s = clean()
    s.buckets["media"].public_access_block = dict(PAB, IgnorePublicAcls=False)
    f = status(s, "s3.block_public_access", M)
    assert f.failed and f.evidence["missing"] == ["IgnorePublicAcls"]
    s.account_public_access_block = dict(PAB)
    assert status(s, "s3.block_public_access", M).status is Status.PASS
    s.account_public_access_block = Unavailable("s3control:GetPublicAccessBlock", "NotImplemented", "501")
    s.buckets["media"].public_access_block = Unavailable("s3:GetPublicAccessBlock", "NotImplemented", "501")
    assert status(s, "s3.block_public_access", M).status is Status.UNKNOWN


def test_kms_encryption_per_class():
    s = clean()
    sse_s3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    s.buckets["media"].encryption = sse_s3
    s.buckets["train"].encryption = sse_s3
    assert status(s, "s3.kms_encryption", M).status is Status.PASS      # SSE-S3 is fine for synthetic media
    f = status(s, "s3.kms_encryption", TR)
    assert f.failed and f.severity == "high"                             # ... not for training data
    s.buckets["media"].encryption = None
    assert status(s, "s3.kms_encryption", M).failed
    s.buckets["media"].encryption = NOPE
    assert status(s, "s3.kms_encryption", M).status is Status.UNKNOWN


def test_object_lock_only_for_training_data():
    s = clean()
    assert verdicts(s, "s3.object_lock") == [(TR, "pass")]
    s.buckets["train"].object_lock = None
    assert verdicts(s, "s3.object_lock") == [(TR, "fail")]
    s.buckets["train"].object_lock = NOPE
    assert verdicts(s, "s3.object_lock") == [(TR, "unknown")]


def test_legal_hold():
    s = clean()
    s.buckets["train"].legal_holds = [{"key": "leak/a", "status": "ON"}, {"key": "leak/b", "status": "OFF"}]
    f = status(s, "s3.legal_hold", TR)
    assert f.failed and f.evidence["without_hold"] == ["leak/b"]
    s.buckets["train"].legal_holds = [{"key": "leak/a", "error": "x: InvalidRequest: no lock", "code": "InvalidRequest"}]
    s.buckets["train"].object_lock = None
    assert status(s, "s3.legal_hold", TR).failed                         # no Object Lock: no hold can exist
    s.buckets["train"].object_lock = {"ObjectLockEnabled": "Enabled"}
    assert status(s, "s3.legal_hold", TR).status is Status.UNKNOWN
    s.buckets["train"].legal_holds = [{"key": "leak/a", "status": "ON"}, {"key": "leak/", "truncated": True}]
    f = status(s, "s3.legal_hold", TR)
    assert f.status is Status.UNKNOWN and "only the first were checked" in f.evidence["reason"]
    s.buckets["train"].legal_holds = NOPE
    assert status(s, "s3.legal_hold", TR).status is Status.UNKNOWN


@pytest.mark.parametrize("check,field,bad", [("s3.versioning", "versioning", {"Status": "Suspended"}),
                                             ("s3.access_logging", "logging", None)])
def test_versioning_and_logging(check, field, bad):
    s = clean()
    setattr(s.buckets["media"], field, bad)
    assert status(s, check, M).failed
    setattr(s.buckets["media"], field, NOPE)
    assert status(s, check, M).status is Status.UNKNOWN


def test_cloudtrail_data_events():
    s = clean()
    s.trails[0]["status"] = {"IsLogging": False}
    assert status(s, "cloudtrail.s3_data_events", M).failed
    s = clean()
    s.trails[0]["selectors"] = {"EventSelectors": [{"ReadWriteType": "WriteOnly", "DataResources": [
        {"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]}
    assert status(s, "cloudtrail.s3_data_events", M).failed
    s.trails[0]["selectors"] = {"EventSelectors": [{"ReadWriteType": "All", "DataResources": [
        {"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::media/"]}]}]}
    assert status(s, "cloudtrail.s3_data_events", M).status is Status.PASS
    assert status(s, "cloudtrail.s3_data_events", TR).failed
    adv = {"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
        {"Field": "resources.ARN", "NotStartsWith": ["arn:aws:s3:::train/"]}]}]}
    s.trails[0]["selectors"] = adv
    assert status(s, "cloudtrail.s3_data_events", M).status is Status.PASS
    assert status(s, "cloudtrail.s3_data_events", TR).failed
    s.trails = NOPE
    assert status(s, "cloudtrail.s3_data_events", M).status is Status.UNKNOWN


def test_cloudfront():
    s = clean()
    o = s.distributions[0]["Origins"]["Items"][0]
    o["OriginAccessControlId"] = ""
    assert status(s, "cloudfront.origin_access_control").failed
    del o["OriginAccessControlId"], o["S3OriginConfig"]                  # what moto returns
    f = status(s, "cloudfront.origin_access_control")
    assert f.status is Status.UNKNOWN and "moto" in f.evidence["reason"]
    s.buckets["media"].public_access_block = None
    s.buckets["media"].policy_status = {"IsPublic": True}                  # public bucket behind the CDN: fail anyway
    assert status(s, "cloudfront.origin_access_control").failed
    s = clean()
    s.distributions[0]["Origins"]["Items"][0]["DomainName"] = "media.s3-website-us-east-1.amazonaws.com"
    assert status(s, "cloudfront.origin_access_control").failed
    s = clean()
    s.distributions[0]["DefaultCacheBehavior"]["ViewerProtocolPolicy"] = "allow-all"
    f = status(s, "cloudfront.https_only")
    assert f.failed and f.owner == "alice"
    s.distributions[0]["Origins"]["Items"][0]["DomainName"] = "elsewhere.example.com"
    assert verdicts(s, "cloudfront.https_only") == []                    # not serving an in-scope bucket
    s.distributions = NOPE
    assert status(s, "cloudfront.https_only").status is Status.UNKNOWN


def _principal(arn, stmts, boundary=None, path="/"):
    return {"arn": arn, "name": arn.rsplit("/", 1)[-1], "type": "role", "path": path, "boundary": boundary,
            "boundary_doc": None, "policies": [["inline:x", {"Statement": stmts}]]}


@pytest.mark.parametrize("action", ["s3:*", "s3:Get*", "*", "s3:GetObject"])
def test_iam_broad_get_object(action):
    s = clean()
    arn = f"arn:aws:iam::{ACCT}:role/analyst"
    s.principals.append(_principal(arn, [{"Effect": "Allow", "Action": action, "Resource": "*"}]))
    fs = [f for f in run_checks(s, checks=["iam.broad_get_object"]) if f.resource == arn]
    assert {(f.status.value, f.evidence["bucket"]) for f in fs} == {("fail", "media"), ("fail", "train")}
    assert {f.owner for f in fs} == {"alice"} and fs[0].resource_type == "AwsIamRole"
    b = [f for f in run_checks(s, checks=["iam.permission_boundary"]) if f.resource == arn]
    assert len(b) == 1 and b[0].failed
    # the allowed principal with a boundary passes both
    pub = f"arn:aws:iam::{ACCT}:role/pub"
    assert status(s, "iam.broad_get_object", pub).status is Status.PASS
    assert status(s, "iam.permission_boundary", pub).status is Status.PASS


def test_iam_denies_boundaries_and_unknowns():
    s = clean()
    arn = f"arn:aws:iam::{ACCT}:role/analyst"
    p = _principal(arn, [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                         {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*"}])
    s.principals.append(p)
    # AWS authorises s3:GetObjectVersion on its own: denying GetObject alone leaves every version readable
    assert (arn, "fail") in verdicts(s, "iam.broad_get_object")
    p["policies"][0][1]["Statement"][1]["Action"] = ["s3:GetObject", "s3:GetObjectVersion"]
    assert status(s, "iam.broad_get_object", arn).status is Status.PASS
    assert verdicts(s, "iam.permission_boundary") == [(f"arn:aws:iam::{ACCT}:role/pub", "pass")]
    p["policies"] = [["inline:x", {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}]]
    p["boundary"], p["boundary_doc"] = "arn:b", {"Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}
    assert status(s, "iam.broad_get_object", arn).status is Status.PASS  # boundary caps it
    p["boundary"], p["boundary_doc"] = None, None
    p["policies"].append(["arn:aws:iam::aws:policy/X", NOPE])
    assert set(verdicts(s, "iam.broad_get_object")) >= {(arn, "fail")}  # what we could read already grants
    assert (arn, "pass") not in verdicts(s, "iam.broad_get_object")
    p["policies"] = [["arn:aws:iam::aws:policy/X", NOPE]]
    assert status(s, "iam.broad_get_object", arn).status is Status.UNKNOWN
    s.principals.append(_principal(f"arn:aws:iam::{ACCT}:role/aws-service-role/macie", [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}], path="/aws-service-role/"))
    assert all("aws-service-role" not in f.resource for f in run_checks(s, checks=["iam.*"]))
    s.principals = NOPE
    assert [f.status for f in run_checks(s, checks=["iam.*"])] == [Status.UNKNOWN, Status.UNKNOWN]


def test_bucket_policy_grants_to_named_principals():
    s = clean()
    s.buckets["media"].policy = {"Statement": [
        {"Sid": "X", "Effect": "Allow", "Principal": {"AWS": ["111122223333", f"arn:aws:iam::{ACCT}:role/pub"]},
         "Action": "s3:GetObject", "Resource": "arn:aws:s3:::media/*"},
        {"Sid": "CF", "Effect": "Allow", "Principal": {"Service": "cloudfront.amazonaws.com"},
         "Action": "s3:GetObject", "Resource": "arn:aws:s3:::media/*"}]}
    fs = [f for f in run_checks(s, checks=["iam.broad_get_object"]) if f.failed]
    assert [(f.resource, f.evidence["via"], f.evidence["cross_account"]) for f in fs] == [
        ("arn:aws:iam::111122223333:root", "bucket policy", True)]
    assert status(s, "s3.public_access", M).status is Status.PASS       # named principals are not "public"


def test_ec2_egress():
    s = clean()
    s.security_groups["sg-1"]["IpPermissionsEgress"].append({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]})
    f = status(s, "ec2.unrestricted_egress")
    assert f.failed and f.severity == "high" and f.evidence["instances"] == ["i-1"] and f.owner == "alice"
    assert f.resource == f"arn:aws:ec2:us-east-1:{ACCT}:security-group/sg-1"
    s = clean()
    s.security_groups["sg-1"]["IpPermissionsEgress"] = [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                                                         "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]
    f = status(s, "ec2.unrestricted_egress")
    assert f.failed and f.severity == "medium"
    s.security_groups = NOPE
    assert status(s, "ec2.unrestricted_egress").status is Status.UNKNOWN
    s.instances = []
    assert verdicts(s, "ec2.unrestricted_egress") == []


def test_kms_rotation():
    s = clean()
    s.kms_keys[KEY]["rotation"] = {"KeyRotationEnabled": False}
    f = status(s, "kms.rotation")
    assert f.failed and f.resource == KEY and f.owner == "alice"
    s.kms_keys[KEY]["rotation"] = NOPE
    assert status(s, "kms.rotation").status is Status.UNKNOWN
    s.kms_keys[KEY] = {"metadata": {"Arn": KEY, "KeyManager": "AWS"}, "rotation": None}
    assert status(s, "kms.rotation").status is Status.PASS


def test_detective_controls():
    s = clean(guardduty=[{"DetectorId": "d", "Status": "ENABLED", "DataSources": {"S3Logs": {"Status": "DISABLED"}}}])
    assert status(s, "guardduty.s3_protection").failed
    s.guardduty = [{"DetectorId": "d", "Status": "ENABLED", "Features": [{"Name": "S3_DATA_EVENTS", "Status": "ENABLED"}]}]
    assert status(s, "guardduty.s3_protection").status is Status.PASS
    s.guardduty = []
    assert status(s, "guardduty.s3_protection").evidence["why"] == "no detector"
    s.macie = {"session": {"status": "DISABLED"}, "custom_data_identifiers": None}
    assert status(s, "macie.enabled").failed
    s.macie = {"session": {"status": "ENABLED"}, "custom_data_identifiers": []}
    assert status(s, "macie.enabled").failed
    s.macie = {"session": {"status": "ENABLED"}, "custom_data_identifiers": Unavailable("m", "404", "not implemented")}
    assert status(s, "macie.enabled").status is Status.UNKNOWN
    s.config_rules = s.config_rules[:2]
    f = status(s, "config.rules")
    assert f.failed and f.evidence["missing"] == ["S3_BUCKET_DEFAULT_LOCK_ENABLED", "S3_BUCKET_LOGGING_ENABLED"]
    s = clean(config_recorders=[{"name": "default", "recording": False}])
    assert status(s, "config.rules").failed
    s.config_recorders = NOPE
    assert status(s, "config.rules").status is Status.UNKNOWN


def test_contributor_insights():
    s = clean()
    d = json.loads(s.insight_rules[0]["Definition"])
    d["Contribution"]["Filters"].append({"Match": "$.requestParameters.bucketName", "In": ["media"]})
    s.insight_rules[0]["Definition"] = json.dumps(d)
    assert set(verdicts(s, "cloudwatch.contributor_insights")) == {(M, "pass"), (TR, "fail")}
    s.insight_rules[0]["State"] = "DISABLED"
    assert {v for _, v in verdicts(s, "cloudwatch.contributor_insights")} == {"fail"}
    s.insight_rules = NOPE
    assert {v for _, v in verdicts(s, "cloudwatch.contributor_insights")} == {"unknown"}


def test_unlisted_estate_is_unknown_not_pass():
    s = Snapshot(account_id=ACCT, scope_errors={"*": "s3:ListBuckets: AccessDenied: no"})
    fs = run_checks(s)
    assert len(fs) == len(CHECK_IDS) and {f.status for f in fs} == {Status.UNKNOWN}
    assert run_checks(Snapshot(account_id=ACCT)) == []                   # nothing in scope, nothing to say


def test_a_crashing_check_becomes_unknown():
    s = clean()
    s.distributions = [{"Id": "D", "Origins": {"Items": [None]}}]         # malformed answer
    f = run_checks(s, checks=["cloudfront.https_only"])
    assert len(f) == 1 and f[0].status is Status.UNKNOWN and "raised" in f[0].evidence["reason"]


def test_selection_and_fail_severity():
    s = clean()
    s.buckets["media"].versioning = {}
    fs = run_checks(s, checks=["s3.*"], exclude=["s3.legal_hold"])
    assert {f.check.split(".")[0] for f in fs} == {"s3"} and not any(f.check == "s3.legal_hold" for f in fs)
    assert [f.check for f in failed_at_or_above(fs, "medium")] == ["s3.versioning"]
    assert failed_at_or_above(fs, "high") == [] and failed_at_or_above(fs, "none") == []
    with pytest.raises(ValueError):
        run_checks(s, checks=["s3.nope"])


def test_finding_value_semantics():
    a = Finding("s3.versioning", M, "fail", "medium", "alice", {"versioning": {}}, "fix")
    b = Finding("s3.versioning", M, Status.FAIL, "medium", "alice", {"versioning": {}}, "fix")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1 and a.uid == b.uid
    d = a.to_dict()
    assert {"check", "resource", "status", "severity", "owner", "evidence", "remediation"} <= set(d)
    assert d["status"] == "fail" and json.loads(json.dumps(d)) == d and "FAIL" in str(a)
    with pytest.raises(ValueError):
        Finding("x", "y", "maybe", "low")


def test_config_scope_rules():
    cfg = parse_config({"posture": {"buckets": [{"name": "b", "class": "training-data", "owner": "o",
                                                 "prefixes": ["p/"]}]}})
    assert cfg.bucket("b").prefixes == ("p/",)
    for bad in ({"posture": {"buckets": [{"name": "b", "class": "nope"}]}},
                {"posture": {"buckets": [{"class": "training-data"}]}},
                {"posture": {"buckets": [{"name": "b", "colour": "x"}]}},
                {"posture": {"bukets": []}},
                {"posture": {"buckets": [{"name": "b"}, {"name": "b"}]}}):
        with pytest.raises(ValueError):
            parse_config(bad)


def test_api_errors_become_unavailable():
    from botocore.exceptions import ClientError, EndpointConnectionError

    from s3sync.posture.clients import _strip_account_host_prefix, call

    def denied(**_):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetBucketPolicy")

    def html404(**_):
        raise ClientError({"Error": {"Code": "404", "Message": "<!doctype html><title>404</title>"}}, "X")

    def down(**_):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    def missing(**_):
        raise ClientError({"Error": {"Code": "NoSuchBucketPolicy", "Message": "none"}}, "GetBucketPolicy")

    u = call(denied, "s3:GetBucketPolicy")
    assert isinstance(u, Unavailable) and u.reason == "s3:GetBucketPolicy: AccessDenied: no"
    assert call(html404, "x").message == "the endpoint does not implement this API"
    assert call(down, "x").code == "EndpointConnectionError"
    assert call(missing, "s3:GetBucketPolicy", absent=("NoSuchBucketPolicy",)) is None
    assert call(lambda **_: {"A": 1, "ResponseMetadata": {}}, "x") == {"A": 1}

    class Req:
        url = "http://123456789012.127.0.0.1:5000/v20180820/configuration/publicAccessBlock"
    r = Req()
    _strip_account_host_prefix(r)
    assert r.url == "http://127.0.0.1:5000/v20180820/configuration/publicAccessBlock"
