"""Collect once, check many: turn AWS API answers into a plain :class:`Snapshot`.

Every field holds either the API's answer (plain dicts/lists, as boto3 returned them), ``None``
for "not configured" (e.g. no bucket policy), or :class:`~s3sync.posture.clients.Unavailable`
with the reason. Checks read only the snapshot, so they are pure and unit-testable.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any, Iterable

from .clients import Clients, Unavailable, call, paginate
from .config import CLASS_TAG, CLASSES, INVESTIGATION_TAG, OWNER_TAGS, PostureConfig

MAX_INVESTIGATION_OBJECTS = 1000
ACCOUNT_PARTS = ("account_public_access_block", "trails", "distributions", "principals", "ec2", "kms_keys",
                 "guardduty", "macie", "config_rules", "config_recorders", "insight_rules")
# Read even with no bucket in scope: workers tagged synthetic-media may process media kept in another account.
BUCKETLESS_PARTS = {"ec2"}


@dataclass
class BucketSnapshot:
    name: str
    cls: str | None = None
    owner: str | None = None
    prefixes: tuple[str, ...] = ()
    allowed_principals: tuple[str, ...] = ()
    under_investigation: tuple[str, ...] = ()
    tags: Any = field(default_factory=dict)
    policy: Any = None               # parsed policy document | None | Unavailable
    policy_status: Any = None        # {"IsPublic": bool} | None | Unavailable
    acl: Any = None                  # {"Owner":..., "Grants": [...]} | Unavailable
    public_access_block: Any = None  # PublicAccessBlockConfiguration | None | Unavailable
    encryption: Any = None           # ServerSideEncryptionConfiguration | None | Unavailable
    object_lock: Any = None          # ObjectLockConfiguration | None | Unavailable
    versioning: Any = None           # {"Status": ..., "MFADelete": ...} | Unavailable
    logging: Any = None              # LoggingEnabled | None | Unavailable
    legal_holds: Any = field(default_factory=list)  # [{"key","version_id","status"|"error"}] | Unavailable
    region: Any = None               # "eu-west-1" | None (not collected) | Unavailable

    @property
    def arn(self) -> str:
        return f"arn:aws:s3:::{self.name}"

    def targets(self) -> list[str]:
        """Object-ARN globs that matter: the listed prefixes, else the whole bucket."""
        return [f"arn:aws:s3:::{self.name}/{p}*" for p in self.prefixes] or [f"arn:aws:s3:::{self.name}/*"]


@dataclass
class Snapshot:
    account_id: str = ""
    region: str = "us-east-1"
    collected_at: float = 0.0   # epoch seconds when collection started
    duration_s: float = 0.0
    config: PostureConfig = field(default_factory=PostureConfig)
    buckets: dict[str, BucketSnapshot] = field(default_factory=dict)
    out_of_scope: list[str] = field(default_factory=list)
    scope_errors: dict[str, str] = field(default_factory=dict)
    account_public_access_block: Any = None
    trails: Any = field(default_factory=list)          # [{"trail":..., "selectors":..., "status":...}]
    distributions: Any = field(default_factory=list)   # DistributionSummary items
    principals: Any = field(default_factory=list)      # [{"arn","name","type","boundary","policies":[[src, doc]]}]
    instances: Any = field(default_factory=list)       # [{"id","arn","owner","security_groups":[...]}]
    security_groups: Any = field(default_factory=dict) # id -> SecurityGroup
    kms_keys: dict[str, Any] = field(default_factory=dict)  # key ref -> {"metadata", "rotation"} | Unavailable
    guardduty: Any = field(default_factory=list)       # [get_detector answers + DetectorId]
    macie: Any = None                                  # {"session", "custom_data_identifiers"} | Unavailable
    config_rules: Any = field(default_factory=list)
    config_recorders: Any = field(default_factory=list)
    insight_rules: Any = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (for --snapshot output and debugging)."""
        def conv(v: Any) -> Any:
            if isinstance(v, Unavailable):
                return v.to_dict()
            if isinstance(v, BucketSnapshot):
                return {f.name: conv(getattr(v, f.name)) for f in fields(v)}
            if isinstance(v, PostureConfig):
                return v.to_dict()
            if isinstance(v, dict):
                return {str(k): conv(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [conv(x) for x in v]
            return v
        return json.loads(json.dumps({f.name: conv(getattr(self, f.name)) for f in fields(self)}, default=str))


# ----------------------------------------------------------------------------- scope
def _tags_of(s3: Any, bucket: str) -> dict[str, str] | Unavailable:
    resp = call(s3.get_bucket_tagging, "s3:GetBucketTagging", absent=("NoSuchTagSet", "NoSuchTagSetError"),
                Bucket=bucket)
    if resp is None:
        return {}
    if isinstance(resp, Unavailable):
        return resp
    return {t["Key"]: t["Value"] for t in resp.get("TagSet", [])}


def _scope(name: str, tags: dict | Unavailable, config: PostureConfig) -> BucketSnapshot | None:
    entry = config.bucket(name)
    tagd = tags if isinstance(tags, dict) else {}
    tag_cls = tagd.get(CLASS_TAG)
    cls = (entry.cls if entry and entry.cls else None) or (tag_cls if tag_cls in CLASSES else None)
    if entry is None and cls is None:
        return None
    owner = (entry.owner if entry else None) or next((tagd[t] for t in OWNER_TAGS if tagd.get(t)), None)
    inv = list(entry.under_investigation if entry else ())
    for part in (tagd.get(INVESTIGATION_TAG) or "").replace(",", " ").split():
        if part not in inv:
            inv.append(part)
    allowed = tuple(config.allowed_principals) + (entry.allowed_principals if entry else ())
    return BucketSnapshot(name=name, cls=cls or "synthetic-media", owner=owner,
                          prefixes=entry.prefixes if entry else (), allowed_principals=allowed,
                          under_investigation=tuple(inv), tags=tags)


# ----------------------------------------------------------------------------- per bucket
def _collect_bucket(s3: Any, b: BucketSnapshot) -> BucketSnapshot:
    n = b.name
    pol = call(s3.get_bucket_policy, "s3:GetBucketPolicy", absent=("NoSuchBucketPolicy",), Bucket=n)
    if isinstance(pol, dict):
        try:
            pol = json.loads(pol.get("Policy") or "{}")
        except json.JSONDecodeError as exc:
            pol = Unavailable("s3:GetBucketPolicy", "MalformedPolicy", str(exc))
    b.policy = pol
    st = call(s3.get_bucket_policy_status, "s3:GetBucketPolicyStatus", absent=("NoSuchBucketPolicy",), Bucket=n)
    b.policy_status = st.get("PolicyStatus") if isinstance(st, dict) else st
    b.acl = call(s3.get_bucket_acl, "s3:GetBucketAcl", Bucket=n)
    pab = call(s3.get_public_access_block, "s3:GetPublicAccessBlock",
               absent=("NoSuchPublicAccessBlockConfiguration",), Bucket=n)
    b.public_access_block = pab.get("PublicAccessBlockConfiguration") if isinstance(pab, dict) else pab
    enc = call(s3.get_bucket_encryption, "s3:GetBucketEncryption",
               absent=("ServerSideEncryptionConfigurationNotFoundError",), Bucket=n)
    b.encryption = enc.get("ServerSideEncryptionConfiguration") if isinstance(enc, dict) else enc
    lock = call(s3.get_object_lock_configuration, "s3:GetObjectLockConfiguration",
                absent=("ObjectLockConfigurationNotFoundError",), Bucket=n)
    b.object_lock = lock.get("ObjectLockConfiguration") if isinstance(lock, dict) else lock
    b.versioning = call(s3.get_bucket_versioning, "s3:GetBucketVersioning", Bucket=n)
    log = call(s3.get_bucket_logging, "s3:GetBucketLogging", Bucket=n)
    b.logging = (log.get("LoggingEnabled") if isinstance(log, dict) else log)
    b.legal_holds = _legal_holds(s3, b) if b.under_investigation else []
    b.region = _bucket_region(s3, n)
    return b


def _bucket_region(s3: Any, name: str) -> str | Unavailable:
    """The bucket's region: a single-region trail records data events of its home region only."""
    loc = call(s3.get_bucket_location, "s3:GetBucketLocation", Bucket=name)
    if isinstance(loc, Unavailable):
        return loc
    constraint = (loc or {}).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(constraint, constraint)


def _legal_holds(s3: Any, b: BucketSnapshot) -> list[dict] | Unavailable:
    out: list[dict] = []
    for prefix in b.under_investigation:
        room = MAX_INVESTIGATION_OBJECTS - len(out)
        if room <= 0:
            out.append({"key": prefix, "truncated": True})
            continue
        objs = paginate(s3, "list_objects_v2", "Contents", "s3:ListObjectsV2", Bucket=b.name, Prefix=prefix,
                        PaginationConfig={"MaxItems": room + 1})
        if isinstance(objs, Unavailable):
            return objs
        if len(objs) > room:
            out.append({"key": prefix, "truncated": True})
        for o in objs[:room]:
            r = call(s3.get_object_legal_hold, "s3:GetObjectLegalHold",
                     absent=("NoSuchObjectLockConfiguration", "NoSuchObjectLegalHold"), Bucket=b.name, Key=o["Key"])
            if isinstance(r, Unavailable):
                out.append({"key": o["Key"], "error": r.reason, "code": r.code})
            else:
                out.append({"key": o["Key"], "status": ((r or {}).get("LegalHold") or {}).get("Status", "OFF")})
        if not objs:
            out.append({"key": prefix, "missing": True})
    return out


# ----------------------------------------------------------------------------- account level
def _trails(c: Clients) -> list | Unavailable:
    ct = c("cloudtrail")
    resp = call(ct.describe_trails, "cloudtrail:DescribeTrails", includeShadowTrails=True)
    if isinstance(resp, Unavailable):
        return resp
    out = []
    for t in resp.get("trailList", []):
        name = t.get("TrailARN") or t["Name"]
        out.append({"trail": t,
                    "selectors": call(ct.get_event_selectors, "cloudtrail:GetEventSelectors", TrailName=name),
                    "status": call(ct.get_trail_status, "cloudtrail:GetTrailStatus", Name=name)})
    return out


def _principals(c: Clients) -> list | Unavailable:
    iam = c("iam")
    details: dict[str, list] = {"UserDetailList": [], "GroupDetailList": [], "RoleDetailList": []}
    marker = None
    while True:  # one pass over the pages, all three lists at once
        kw = {"Marker": marker} if marker else {}
        page = call(iam.get_account_authorization_details, "iam:GetAccountAuthorizationDetails",
                    Filter=["Role", "User", "Group"], **kw)
        if isinstance(page, Unavailable):
            return page
        for key in details:
            details[key] += page.get(key, []) or []
        marker = page.get("Marker")
        if not page.get("IsTruncated") or not marker:
            break
    managed: dict[str, Any] = {}

    def managed_doc(arn: str) -> Any:
        if arn not in managed:
            pol = call(iam.get_policy, "iam:GetPolicy", PolicyArn=arn)
            if isinstance(pol, Unavailable):
                managed[arn] = pol
            else:
                ver = call(iam.get_policy_version, "iam:GetPolicyVersion", PolicyArn=arn,
                           VersionId=pol["Policy"]["DefaultVersionId"])
                managed[arn] = ver if isinstance(ver, Unavailable) else _doc(ver["PolicyVersion"]["Document"])
        return managed[arn]

    groups = {g["GroupName"]: g for g in details["GroupDetailList"]}
    out = []
    for kind, key, inline_key in (("role", "RoleDetailList", "RolePolicyList"), ("user", "UserDetailList", "UserPolicyList")):
        for p in details[key]:
            pols: list = [[f"inline:{x['PolicyName']}", _doc(x["PolicyDocument"])] for x in p.get(inline_key, [])]
            pols += [[m["PolicyArn"], managed_doc(m["PolicyArn"])] for m in p.get("AttachedManagedPolicies", [])]
            for gname in p.get("GroupList", []) if kind == "user" else []:
                g = groups.get(gname, {})
                pols += [[f"group:{gname}:inline:{x['PolicyName']}", _doc(x["PolicyDocument"])]
                         for x in g.get("GroupPolicyList", [])]
                pols += [[m["PolicyArn"], managed_doc(m["PolicyArn"])] for m in g.get("AttachedManagedPolicies", [])]
            boundary = (p.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
            name = p.get("RoleName") or p.get("UserName")
            if boundary is None:  # some endpoints omit it from the bulk answer: ask the principal itself
                one = (call(iam.get_role, "iam:GetRole", RoleName=name) if kind == "role"
                       else call(iam.get_user, "iam:GetUser", UserName=name))
                if isinstance(one, dict):
                    boundary = ((one.get("Role") or one.get("User") or {}).get("PermissionsBoundary") or {}) \
                        .get("PermissionsBoundaryArn")
            tags = {t["Key"]: t["Value"] for t in p.get("Tags", []) or []}
            out.append({"arn": p["Arn"], "name": name, "type": kind, "path": p.get("Path", "/"), "tags": tags,
                        "boundary": boundary, "boundary_doc": managed_doc(boundary) if boundary else None,
                        "policies": pols,
                        # who may assume the role: a reader anyone can become is as open as a public grant
                        "trust": _doc(p.get("AssumeRolePolicyDocument")) if kind == "role" else None})
    return out


def _doc(d: Any) -> Any:
    if isinstance(d, str):
        from urllib.parse import unquote

        try:
            return json.loads(d)
        except json.JSONDecodeError:
            return json.loads(unquote(d))
    return d


def _ec2(c: Clients, account: str, region: str) -> tuple[Any, Any]:
    ec2 = c("ec2")
    res = paginate(ec2, "describe_instances", "Reservations", "ec2:DescribeInstances",
                   Filters=[{"Name": f"tag:{CLASS_TAG}", "Values": ["synthetic-media"]}])
    if isinstance(res, Unavailable):
        return res, {}
    instances, sg_ids = [], set()
    for r in res:
        for i in r.get("Instances", []):
            if (i.get("State") or {}).get("Name") in ("terminated", "shutting-down"):
                continue
            groups = {g["GroupId"] for g in i.get("SecurityGroups", [])}
            for eni in i.get("NetworkInterfaces", []):
                groups |= {g["GroupId"] for g in eni.get("Groups", [])}
            tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            instances.append({"id": i["InstanceId"], "arn": f"arn:aws:ec2:{region}:{account}:instance/{i['InstanceId']}",
                              "owner": next((tags[t] for t in OWNER_TAGS if tags.get(t)), None),
                              "security_groups": sorted(groups)})
            sg_ids |= groups
    sgs: Any = {}
    if sg_ids:
        got = paginate(ec2, "describe_security_groups", "SecurityGroups", "ec2:DescribeSecurityGroups",
                       GroupIds=sorted(sg_ids))
        sgs = got if isinstance(got, Unavailable) else {g["GroupId"]: g for g in got}
    return instances, sgs


def _kms(c: Clients, buckets: Iterable[BucketSnapshot]) -> dict[str, Any]:
    kms = c("kms")
    keys: dict[str, Any] = {}
    for b in buckets:
        if not isinstance(b.encryption, dict):
            continue
        for rule in b.encryption.get("Rules", []):
            d = rule.get("ApplyServerSideEncryptionByDefault") or {}
            if d.get("SSEAlgorithm") not in ("aws:kms", "aws:kms:dsse"):
                continue
            ref = d.get("KMSMasterKeyID") or "alias/aws/s3"
            if ref in keys:
                continue
            meta = call(kms.describe_key, "kms:DescribeKey", KeyId=ref)
            if isinstance(meta, Unavailable):
                keys[ref] = {"metadata": None, "rotation": meta} if ref != "alias/aws/s3" else \
                    {"metadata": {"KeyManager": "AWS", "Arn": None}, "rotation": None}
                continue
            md = meta["KeyMetadata"]
            rot: Any = None
            if md.get("KeyManager") == "CUSTOMER":
                rot = call(kms.get_key_rotation_status, "kms:GetKeyRotationStatus", KeyId=md["KeyId"])
            keys[ref] = {"metadata": md, "rotation": rot}
    return keys


def _guardduty(c: Clients) -> list | Unavailable:
    gd = c("guardduty")
    ids = paginate(gd, "list_detectors", "DetectorIds", "guardduty:ListDetectors")
    if isinstance(ids, Unavailable):
        return ids
    out = []
    for d in ids:
        det = call(gd.get_detector, "guardduty:GetDetector", DetectorId=d)
        out.append(det if isinstance(det, Unavailable) else dict(det, DetectorId=d))
    return out


def _macie(c: Clients) -> Any:
    m = c("macie2")
    sess = call(m.get_macie_session, "macie2:GetMacieSession")
    if isinstance(sess, Unavailable):
        # Macie answers "not enabled" with these codes: that is a state, not an outage
        if sess.code == "ResourceNotFoundException" or "not enabled" in sess.message.lower():
            return {"session": {"status": "DISABLED", "reason": sess.reason}, "custom_data_identifiers": None}
        return sess
    cdi = None
    if sess.get("status") == "ENABLED":
        cdi = paginate(m, "list_custom_data_identifiers", "items", "macie2:ListCustomDataIdentifiers")
    return {"session": sess, "custom_data_identifiers": cdi}


# ----------------------------------------------------------------------------- entry point
def collect(clients: Clients, config: PostureConfig | None = None, buckets: Iterable[str] | None = None,
            max_workers: int = 8, account_level: bool = True, needs: Iterable[str] | None = None) -> Snapshot:
    """Build the snapshot: scope the buckets, then read everything the checks need, in parallel.

    ``needs`` names the account-level parts to read (see ``checks.NEEDS``; default all);
    ``account_level=False`` reads only the buckets (enough for remediation planning). Parts not
    read hold Unavailable("NotCollected"), so a check run over them says unknown, never pass.
    """
    config = config or PostureConfig()
    t0 = time.time()
    snap = Snapshot(config=config, collected_at=t0)
    s3 = clients("s3")
    snap.region = config.region or clients.region or s3.meta.region_name or "us-east-1"
    ident = call(clients("sts").get_caller_identity, "sts:GetCallerIdentity")
    snap.account_id = config.account_id or (ident.get("Account", "") if isinstance(ident, dict) else "")

    wanted = list(dict.fromkeys(buckets)) if buckets is not None else None
    if wanted is None:
        listed = paginate(s3, "list_buckets", "Buckets", "s3:ListBuckets")
        if isinstance(listed, Unavailable):
            snap.scope_errors["*"] = listed.reason
            names = [b.name for b in config.buckets]
        else:
            names = list(dict.fromkeys([b["Name"] for b in listed] + [b.name for b in config.buckets]))
    else:
        names = wanted

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        tags = dict(zip(names, pool.map(lambda n: _tags_of(s3, n), names)))
        scoped = []
        for n in names:
            b = _scope(n, tags[n], config)
            if b is None:
                snap.out_of_scope.append(n)
                if isinstance(tags[n], Unavailable):
                    snap.scope_errors[n] = tags[n].reason
            else:
                scoped.append(b)
        snap.buckets = {b.name: b for b in pool.map(lambda b: _collect_bucket(s3, b), scoped)}

        wanted_parts = set(ACCOUNT_PARTS if needs is None else needs) if account_level else set()
        if not snap.buckets:
            wanted_parts &= BUCKETLESS_PARTS
        skip = Unavailable("collect", "NotCollected", "not collected for the selected checks")
        for name in set(ACCOUNT_PARTS) - wanted_parts:
            if name == "ec2":
                snap.instances, snap.security_groups = skip, skip
            elif name == "kms_keys":
                snap.kms_keys = {}
            else:
                setattr(snap, name, skip)
        jobs = {
            "account_public_access_block": lambda: _account_pab(clients, snap.account_id),
            "trails": lambda: _trails(clients),
            "distributions": lambda: _distributions(clients),
            "principals": lambda: _principals(clients),
            "ec2": lambda: _ec2(clients, snap.account_id, snap.region),
            "kms_keys": lambda: _kms(clients, list(snap.buckets.values())),
            "guardduty": lambda: _guardduty(clients),
            "macie": lambda: _macie(clients),
            "config_rules": lambda: paginate(clients("config"), "describe_config_rules", "ConfigRules",
                                             "config:DescribeConfigRules"),
            "config_recorders": lambda: paginate(clients("config"), "describe_configuration_recorder_status",
                                                 "ConfigurationRecordersStatus",
                                                 "config:DescribeConfigurationRecorderStatus"),
            "insight_rules": lambda: paginate(clients("cloudwatch"), "describe_insight_rules", "InsightRules",
                                              "cloudwatch:DescribeInsightRules"),
        }
        futs = {k: pool.submit(fn) for k, fn in jobs.items() if k in wanted_parts}
        for k, f in futs.items():
            v = f.result()
            if k == "ec2":
                snap.instances, snap.security_groups = v
            else:
                setattr(snap, k, v)
    snap.duration_s = time.time() - t0
    return snap


def _distributions(c: Clients) -> Any:
    """DistributionSummary items (origins and behaviours included), all pages."""
    cf = c("cloudfront")
    out: list = []
    marker = None
    while True:
        kw = {"Marker": marker} if marker else {}
        r = call(cf.list_distributions, "cloudfront:ListDistributions", **kw)
        if isinstance(r, Unavailable):
            return r
        dl = r.get("DistributionList") or {}
        out.extend(dl.get("Items") or [])
        marker = dl.get("NextMarker")
        if not dl.get("IsTruncated") or not marker:
            return out


def _account_pab(c: Clients, account: str) -> Any:
    if not account:
        return Unavailable("s3control:GetPublicAccessBlock", "NoAccountId", "the account id is unknown")
    r = call(c("s3control").get_public_access_block, "s3control:GetPublicAccessBlock",
             absent=("NoSuchPublicAccessBlockConfiguration",), AccountId=account)
    return r.get("PublicAccessBlockConfiguration") if isinstance(r, dict) else r
