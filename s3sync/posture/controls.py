"""``synthguard controls generate``: detective and preventive controls as JSON AWS accepts.

Each file holds the *input* of one AWS API call (or a list of them), so it can be applied with the
AWS CLI (``--cli-input-json``) or boto3 unchanged:

- ``config-rules.json``: ``config:PutConfigRule`` inputs (KMS encryption, public read, Object Lock, logging)
- ``contributor-insights-rule.json``: ``cloudwatch:PutInsightRule`` (principals reading these buckets)
- ``macie-custom-data-identifiers.json``: ``macie2:CreateCustomDataIdentifier`` inputs
- ``permission-boundary.json``: ``iam:CreatePolicy`` (boundary denying object reads to non-allowed principals)
- ``worker-readonly-policy.json``: ``iam:CreatePolicy`` (least privilege for the synthguard worker)

:func:`validate` checks every file against botocore's service models (the same shapes AWS
validates) plus what the models cannot express: the Contributor Insights rule body and the policy
documents (parsed by our own evaluator).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .config import PostureConfig
from .policy import evaluate, parse_policy, validate_identity_policy

OBJECT_READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes", "s3:GetObjectVersionAttributes",
                       "s3:GetObjectTorrent", "s3:GetObjectVersionTorrent", "s3:RestoreObject"]
BOUNDARY_GUARD_ACTIONS = ["iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary",
                          "iam:PutRolePermissionsBoundary", "iam:PutUserPermissionsBoundary"]
WORKER_OBJECT_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging",
                         "s3:GetObjectLegalHold", "s3:GetObjectRetention", "s3:GetObjectAttributes"]
WORKER_BUCKET_ACTIONS = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketTagging", "s3:GetBucketPolicy",
                         "s3:GetBucketPolicyStatus", "s3:GetBucketAcl", "s3:GetBucketPublicAccessBlock",
                         "s3:GetEncryptionConfiguration", "s3:GetBucketObjectLockConfiguration",
                         "s3:GetBucketVersioning", "s3:GetBucketLogging", "s3:GetBucketLocation",
                         "s3:GetInventoryConfiguration"]
WORKER_POSTURE_ACTIONS = ["s3:ListAllMyBuckets", "s3:GetAccountPublicAccessBlock", "sts:GetCallerIdentity",
                          "cloudtrail:DescribeTrails", "cloudtrail:GetEventSelectors", "cloudtrail:GetTrailStatus",
                          "cloudfront:ListDistributions", "cloudfront:GetDistributionConfig",
                          "iam:GetAccountAuthorizationDetails", "iam:GetPolicy", "iam:GetPolicyVersion",
                          "iam:GetRole", "iam:GetUser", "ec2:DescribeInstances", "ec2:DescribeSecurityGroups",
                          "kms:DescribeKey", "kms:GetKeyRotationStatus", "guardduty:ListDetectors",
                          "guardduty:GetDetector", "macie2:GetMacieSession", "macie2:ListCustomDataIdentifiers",
                          "config:DescribeConfigRules", "config:DescribeConfigurationRecorderStatus",
                          "cloudwatch:DescribeInsightRules"]

CONFIG_RULES = [
    ("synthguard-s3-default-encryption-kms", "S3_DEFAULT_ENCRYPTION_KMS",
     "S3 buckets must encrypt by default with AWS KMS (synthetic media, training data)."),
    ("synthguard-s3-bucket-public-read-prohibited", "S3_BUCKET_PUBLIC_READ_PROHIBITED",
     "S3 buckets must not allow public read access."),
    ("synthguard-s3-bucket-default-lock-enabled", "S3_BUCKET_DEFAULT_LOCK_ENABLED",
     "S3 buckets holding training data must have Object Lock enabled."),
    ("synthguard-s3-bucket-logging-enabled", "S3_BUCKET_LOGGING_ENABLED",
     "S3 buckets must have server access logging enabled."),
]

UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
DEFAULT_IDENTIFIERS = [
    ("synthguard-c2pa-manifest-id", f"urn:(?:c2pa|uuid):{UUID}", ["c2pa", "jumbf", "manifest"],
     "C2PA manifest identifiers: the object carries (or referenced) Content Credentials."),
    ("synthguard-class-marker", r"synthguard:class[=:]\s*(?:synthetic-media|training-data)", ["synthguard"],
     "synthguard classification markers copied out of tags into object data or logs."),
]

FILES = ("config-rules.json", "contributor-insights-rule.json", "macie-custom-data-identifiers.json",
         "permission-boundary.json", "worker-readonly-policy.json")


def _bucket_names(config: PostureConfig) -> list[str]:
    names = [b.name for b in config.buckets]
    if not names:
        raise ValueError("controls generate needs the buckets listed in synthguard.toml ([[posture.buckets]])")
    return names


def _allowed(config: PostureConfig) -> list[str]:
    out = list(config.allowed_principals)
    for b in config.buckets:
        out += [p for p in b.allowed_principals if p not in out]
    return [p for p in out if p.startswith("arn:")]


def boundary_document(config: PostureConfig) -> dict[str, Any]:
    deny: dict[str, Any] = {"Sid": "DenySyntheticMediaObjectReads", "Effect": "Deny", "Action": OBJECT_READ_ACTIONS,
                            "Resource": [f"arn:aws:s3:::{n}/*" for n in _bucket_names(config)]}
    allowed = _allowed(config)
    if allowed:
        deny["Condition"] = {"ArnNotLike": {"aws:PrincipalArn": allowed}}
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "AllowWithinBoundary", "Effect": "Allow", "Action": "*", "Resource": "*"},
        deny,
        {"Sid": "DenyBoundaryTampering", "Effect": "Deny", "Action": BOUNDARY_GUARD_ACTIONS, "Resource": "*"},
    ]}


def worker_document(config: PostureConfig, region: str) -> dict[str, Any]:
    names = _bucket_names(config)
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadInScopeObjects", "Effect": "Allow", "Action": WORKER_OBJECT_ACTIONS,
         "Resource": [f"arn:aws:s3:::{n}/*" for n in names]},
        {"Sid": "InspectInScopeBuckets", "Effect": "Allow", "Action": WORKER_BUCKET_ACTIONS,
         "Resource": [f"arn:aws:s3:::{n}" for n in names]},
        {"Sid": "PostureReadOnly", "Effect": "Allow", "Action": WORKER_POSTURE_ACTIONS, "Resource": "*"},
        {"Sid": "DecryptViaS3Only", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
    ]}


def insight_rule_definition(config: PostureConfig) -> dict[str, Any]:
    return {"Schema": {"Name": "CloudWatchLogRule", "Version": 1},
            "LogGroupNames": [config.cloudtrail_log_group],
            "LogFormat": "JSON",
            "Contribution": {"Keys": ["$.userIdentity.arn"],
                             "Filters": [{"Match": "$.eventSource", "In": ["s3.amazonaws.com"]},
                                         {"Match": "$.eventName", "In": ["GetObject"]},
                                         {"Match": "$.requestParameters.bucketName", "In": _bucket_names(config)}]},
            "AggregateOn": "Count"}


def generate(config: PostureConfig, region: str | None = None) -> dict[str, Any]:
    """File name -> JSON content, for the buckets and principals in ``config``."""
    region = region or config.region or "us-east-1"
    cdis = [{"name": n, "description": d, "regex": r, "keywords": k, "maximumMatchDistance": 50,
             "tags": {"synthguard": "generated"}} for n, r, k, d in DEFAULT_IDENTIFIERS]
    cdis += [{"name": f"synthguard-{n}"[:128], "description": f"synthguard.toml macie_regexes.{n}", "regex": r,
              "tags": {"synthguard": "generated"}} for n, r in sorted(config.macie_regexes.items())]
    return {
        "config-rules.json": [{"ConfigRule": {"ConfigRuleName": name, "Description": desc,
                                              "Scope": {"ComplianceResourceTypes": ["AWS::S3::Bucket"]},
                                              "Source": {"Owner": "AWS", "SourceIdentifier": ident}},
                               "Tags": [{"Key": "synthguard", "Value": "generated"}]}
                              for name, ident, desc in CONFIG_RULES],
        "contributor-insights-rule.json": {"RuleName": "synthguard-s3-object-readers", "RuleState": "ENABLED",
                                           "RuleDefinition": json.dumps(insight_rule_definition(config))},
        "macie-custom-data-identifiers.json": cdis,
        "permission-boundary.json": {"PolicyName": "synthguard-synthetic-media-boundary", "Path": "/synthguard/",
                                     "Description": "Permission boundary: no object reads of synthetic-media and "
                                                    "training-data buckets unless allowed in synthguard.toml",
                                     "PolicyDocument": json.dumps(boundary_document(config))},
        "worker-readonly-policy.json": {"PolicyName": f"{config.worker_role}-readonly", "Path": "/synthguard/",
                                        "Description": "Least-privilege read-only policy for the synthguard worker",
                                        "PolicyDocument": json.dumps(worker_document(config, region))},
    }


# ----------------------------------------------------------------------------- validation
def _validate_params(service: str, operation: str, params: dict[str, Any]) -> list[str]:
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model(service).operation_model(operation)
    report = ParamValidator().validate(params, model.input_shape)
    return [f"{service}.{operation}: {report.generate_report()}"] if report.has_errors() else []


_RULE_OPS = {"In", "NotIn", "StartsWith", "GreaterThan", "LessThan", "EqualTo", "NotEqualTo", "IsPresent"}


def validate_insight_rule(definition: str) -> list[str]:
    """The CloudWatchLogRule schema (v1) that PutInsightRule enforces but botocore's model does not describe."""
    errs = []
    if len(definition) > 8192:
        errs.append("RuleDefinition longer than 8192 characters")
    try:
        d = json.loads(definition)
    except json.JSONDecodeError as exc:
        return [f"RuleDefinition is not JSON: {exc}"]
    if d.get("Schema") != {"Name": "CloudWatchLogRule", "Version": 1}:
        errs.append("Schema must be {Name: CloudWatchLogRule, Version: 1}")
    groups = d.get("LogGroupNames") or d.get("LogGroupARNs")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, str) and g for g in groups):
        errs.append("LogGroupNames must be a non-empty list of names")
    if d.get("LogFormat") not in ("JSON", "CLF"):
        errs.append("LogFormat must be JSON or CLF")
    c = d.get("Contribution") or {}
    keys = c.get("Keys")
    if not isinstance(keys, list) or not 1 <= len(keys) <= 4:
        errs.append("Contribution.Keys must list 1-4 keys")
    elif d.get("LogFormat") == "JSON" and not all(isinstance(k, str) and k.startswith("$.") for k in keys):
        errs.append("JSON rule keys must be JSON paths ($.field)")
    for i, f in enumerate(c.get("Filters", []) or []):
        ops = set(f) - {"Match"}
        if not isinstance(f.get("Match"), str) or len(ops) != 1 or not ops <= _RULE_OPS:
            errs.append(f"Contribution.Filters[{i}] needs Match and exactly one operator of {sorted(_RULE_OPS)}")
    if d.get("AggregateOn") not in ("Count", "Sum"):
        errs.append("AggregateOn must be Count or Sum")
    if d.get("AggregateOn") == "Sum" and not c.get("ValueOf"):
        errs.append("AggregateOn Sum needs Contribution.ValueOf")
    extra = set(d) - {"Schema", "LogGroupNames", "LogGroupARNs", "LogFormat", "Fields", "Contribution", "AggregateOn"}
    if extra:
        errs.append(f"unknown top-level key(s): {sorted(extra)}")
    return errs


def _validate_cdi(c: dict[str, Any]) -> list[str]:
    errs = []
    if len(c.get("regex", "")) > 512:
        errs.append(f"{c.get('name')}: regex longer than 512 characters")
    try:
        re.compile(c.get("regex", ""))
    except re.error as exc:
        errs.append(f"{c.get('name')}: regex does not compile: {exc}")
    if len(c.get("name", "")) > 128:
        errs.append(f"{c.get('name')}: name longer than 128 characters")
    for k in c.get("keywords", []) or []:
        if not 3 <= len(k) <= 90:
            errs.append(f"{c.get('name')}: keyword {k!r} must be 3-90 characters")
    return errs


def validate(outputs: dict[str, Any], config: PostureConfig | None = None) -> list[str]:
    """Every problem found in the generated files (empty: AWS will accept them)."""
    errs: list[str] = []
    for item in outputs["config-rules.json"]:
        errs += _validate_params("config", "PutConfigRule", item)
    rule = outputs["contributor-insights-rule.json"]
    errs += _validate_params("cloudwatch", "PutInsightRule", rule)
    errs += [f"PutInsightRule.RuleDefinition: {e}" for e in validate_insight_rule(rule["RuleDefinition"])]
    for c in outputs["macie-custom-data-identifiers.json"]:
        errs += _validate_params("macie2", "CreateCustomDataIdentifier", c)
        errs += _validate_cdi(c)
    for name in ("permission-boundary.json", "worker-readonly-policy.json"):
        item = outputs[name]
        errs += _validate_params("iam", "CreatePolicy", item)
        if len(item["PolicyDocument"]) > 6144:
            errs.append(f"{name}: managed policy document longer than 6144 characters")
        try:
            validate_identity_policy(item["PolicyDocument"])
        except ValueError as exc:
            errs.append(f"{name}: {exc}")
    if config is not None and config.buckets and not errs:
        errs += _behaviour(outputs, config)
    return errs


def _behaviour(outputs: dict[str, Any], config: PostureConfig) -> list[str]:
    """The generated policies do what they claim, per our evaluator (a cheap guard against edits)."""
    errs = []
    b = [("boundary", parse_policy(outputs["permission-boundary.json"]["PolicyDocument"]))]
    w = [("worker", parse_policy(outputs["worker-readonly-policy.json"]["PolicyDocument"]))]
    first = config.buckets[0].name
    outsider = {"aws:PrincipalArn": "arn:aws:iam::000000000000:role/not-allowed-synthguard-probe"}
    if evaluate(b, "s3:GetObject", f"arn:aws:s3:::{first}/x", outsider) != "Deny":
        errs.append("boundary does not deny s3:GetObject on in-scope buckets to non-allowed principals")
    if evaluate(w, "s3:PutObject", f"arn:aws:s3:::{first}/x") == "Allow" or \
            evaluate(w, "s3:DeleteObject", f"arn:aws:s3:::{first}/x") == "Allow":
        errs.append("worker policy allows writes")
    if evaluate(w, "s3:GetObject", f"arn:aws:s3:::{first}/x") != "Allow":
        errs.append("worker policy cannot read in-scope objects")
    return errs


def write(outputs: dict[str, Any], out_dir: str | Path) -> list[Path]:
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in outputs.items():
        p = d / name
        p.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        paths.append(p)
    return paths
