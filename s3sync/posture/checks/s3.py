"""S3 checks over in-scope buckets (class from tags or synthguard.toml)."""
from __future__ import annotations

from typing import Any, Iterable

from ..clients import Unavailable
from ..models import CheckMeta, Finding, Status
from ..policy import PolicyError, parse_policy, public_grants
from ._base import check, make, unknown

PUBLIC_URIS = ("http://acs.amazonaws.com/groups/global/AllUsers",
               "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")
PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")

PUBLIC = CheckMeta(
    "s3.public_access", "Synthetic-media bucket is readable by the public", "critical", "s3", "AwsS3Bucket",
    "Anyone on the internet (or any AWS account) can list or fetch synthetic media or training data.",
    "Remove Allow statements with Principal \"*\" (or add aws:SourceVpce/aws:PrincipalOrgID conditions), "
    "remove ACL grants to AllUsers/AuthenticatedUsers, and enable Block Public Access.")
BPA = CheckMeta(
    "s3.block_public_access", "Block Public Access is not fully enabled", "high", "s3", "AwsS3Bucket",
    "Without all four Block Public Access settings a later policy or ACL change can expose the bucket.",
    "Enable BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy and RestrictPublicBuckets on the bucket "
    "(s3:PutPublicAccessBlock) or the account (s3control:PutPublicAccessBlock); each setting counts when on at "
    "either level.")
KMS = CheckMeta(
    "s3.kms_encryption", "Bucket default encryption is not SSE-KMS", "medium", "s3", "AwsS3Bucket",
    "Without a KMS key, reads are not gated by a key policy nor logged as kms:Decrypt; for training data "
    "SSE-S3 is not enough.",
    "Set default encryption to aws:kms with a customer managed key and enable S3 Bucket Keys "
    "(s3:PutBucketEncryption).")
LOCK = CheckMeta(
    "s3.object_lock", "Training-data bucket has no Object Lock", "high", "s3", "AwsS3Bucket",
    "Training sets can be deleted or overwritten during an investigation.",
    "Enable Object Lock (s3:PutObjectLockConfiguration with ObjectLockEnabled=Enabled) with a default "
    "GOVERNANCE or COMPLIANCE retention.")
HOLD = CheckMeta(
    "s3.legal_hold", "Objects under investigation carry no legal hold", "high", "s3", "AwsS3Bucket",
    "Evidence can be deleted or overwritten while a leak is being investigated.",
    "Put a legal hold on every object version under investigation (s3:PutObjectLegalHold Status=ON); "
    "`synthguard posture --remediate legal-hold --apply` does this.")
VERS = CheckMeta(
    "s3.versioning", "Bucket versioning is not enabled", "medium", "s3", "AwsS3Bucket",
    "Overwritten or deleted media cannot be recovered or proven.",
    "Enable versioning (s3:PutBucketVersioning Status=Enabled).")
LOGS = CheckMeta(
    "s3.access_logging", "Server access logging is off", "medium", "s3", "AwsS3Bucket",
    "Without access logs nobody can say who downloaded which asset.",
    "Enable server access logging to a separate log bucket (s3:PutBucketLogging).")


def acl_public_grants(acl: Any) -> list[dict]:
    if not isinstance(acl, dict):
        return []
    return [g for g in acl.get("Grants", []) if (g.get("Grantee") or {}).get("URI") in PUBLIC_URIS]


def public_state(b: Any, snap: Any) -> tuple[Status, dict[str, Any]]:
    """Is the bucket public? Combines GetBucketPolicyStatus, our own policy evaluation, ACLs and BPA."""
    ev: dict[str, Any] = {}
    acct = snap.account_public_access_block
    pabs = [p for p in (b.public_access_block, acct) if isinstance(p, dict)]
    restrict = any(p.get("RestrictPublicBuckets") for p in pabs)
    ignore_acls = any(p.get("IgnorePublicAcls") for p in pabs)
    grants: list | None = None
    if isinstance(b.policy, Unavailable):
        ev["policy"] = b.policy
    elif b.policy is not None:
        try:
            grants = public_grants(parse_policy(b.policy), b.name)
        except PolicyError as exc:
            ev["policy_error"] = str(exc)
    else:
        grants = []
    ev["public_statements"] = grants
    ev["policy_status"] = b.policy_status
    ev["acl_public_grants"] = acl_public_grants(b.acl) if not isinstance(b.acl, Unavailable) else b.acl
    ev["restrict_public_buckets"], ev["ignore_public_acls"] = restrict, ignore_acls
    status_public = isinstance(b.policy_status, dict) and bool(b.policy_status.get("IsPublic"))
    by_policy = (bool(grants) or status_public) and not restrict
    by_acl = bool(acl_public_grants(b.acl)) and not ignore_acls
    if by_policy or by_acl:
        why = []
        if grants and not restrict:
            why.append("bucket policy grants " + ", ".join(sorted({a for g in grants for a in g["actions"]})) + " to *")
        elif status_public and not restrict:
            why.append("GetBucketPolicyStatus says IsPublic")
        if by_acl:
            why.append("ACL grants to " + ", ".join(sorted({g["Grantee"]["URI"].rsplit("/", 1)[-1]
                                                            for g in acl_public_grants(b.acl)})))
        ev["why"] = "; ".join(why)
        return Status.FAIL, ev
    policy_known = grants is not None or isinstance(b.policy_status, dict)
    acl_known = not isinstance(b.acl, Unavailable) or ignore_acls
    if not policy_known and not restrict:
        return Status.UNKNOWN, ev
    if not acl_known:
        return Status.UNKNOWN, ev
    return Status.PASS, ev


def _reason(ev: dict) -> str:
    parts = [v.reason for v in ev.values() if isinstance(v, Unavailable)]
    if "policy_error" in ev:
        parts.append("bucket policy could not be parsed: " + ev["policy_error"])
    return "; ".join(parts) or "not enough answers to decide"


@check(PUBLIC)
def s3_public_access(snap: Any) -> Iterable[Finding]:
    for b in snap.buckets.values():
        st, ev = public_state(b, snap)
        if st is Status.UNKNOWN:
            ev["reason"] = _reason(ev)
        yield make(PUBLIC, snap, b.arn, st, dict(ev, bucket_class=b.cls), owner=b.owner)


def effective_pab(bucket_pab: Any, account_pab: Any) -> dict[str, bool]:
    """Per flag, on at the bucket or the account level: S3 applies the most restrictive combination."""
    levels = [p for p in (bucket_pab, account_pab) if isinstance(p, dict)]
    return {f: any(p.get(f) is True for p in levels) for f in PAB_FLAGS}


@check(BPA)
def s3_block_public_access(snap: Any) -> Iterable[Finding]:
    acct = snap.account_public_access_block
    for b in snap.buckets.values():
        ev = {"bucket": b.public_access_block, "account": acct}
        missing = [f for f, on in effective_pab(b.public_access_block, acct).items() if not on]
        if not missing:
            yield make(BPA, snap, b.arn, Status.PASS, ev, owner=b.owner)
        elif isinstance(b.public_access_block, Unavailable) or isinstance(acct, Unavailable):
            reasons = "; ".join(x.reason for x in (b.public_access_block, acct) if isinstance(x, Unavailable))
            yield make(BPA, snap, b.arn, Status.UNKNOWN, dict(ev, reason=reasons), owner=b.owner)
        else:
            yield make(BPA, snap, b.arn, Status.FAIL, dict(ev, missing=missing, why="off: " + ", ".join(missing)),
                       owner=b.owner)


def _algorithms(enc: dict) -> list[dict]:
    return [r.get("ApplyServerSideEncryptionByDefault") or {} for r in enc.get("Rules", [])]


@check(KMS)
def s3_kms_encryption(snap: Any) -> Iterable[Finding]:
    for b in snap.buckets.values():
        sev = "high" if b.cls == "training-data" else None
        if isinstance(b.encryption, Unavailable):
            yield unknown(KMS, snap, b.arn, b.encryption, owner=b.owner)
            continue
        if b.encryption is None:
            yield make(KMS, snap, b.arn, Status.FAIL, {"encryption": None, "why": "no default encryption"},
                       owner=b.owner, severity=sev)
            continue
        algs = _algorithms(b.encryption)
        ev = {"encryption": b.encryption, "bucket_class": b.cls}
        if any(a.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse") for a in algs):
            yield make(KMS, snap, b.arn, Status.PASS, ev, owner=b.owner)
        elif b.cls == "training-data":
            yield make(KMS, snap, b.arn, Status.FAIL, dict(ev, why="SSE-S3 (AES256) on training data"),
                       owner=b.owner, severity=sev)
        elif any(a.get("SSEAlgorithm") == "AES256" for a in algs):
            yield make(KMS, snap, b.arn, Status.PASS, dict(ev, note="SSE-S3 accepted for synthetic media"),
                       owner=b.owner)
        else:
            yield make(KMS, snap, b.arn, Status.FAIL, dict(ev, why="no recognised default algorithm"), owner=b.owner)


@check(LOCK)
def s3_object_lock(snap: Any) -> Iterable[Finding]:
    for b in snap.buckets.values():
        if b.cls != "training-data":
            continue
        if isinstance(b.object_lock, Unavailable):
            yield unknown(LOCK, snap, b.arn, b.object_lock, owner=b.owner)
        elif (b.object_lock or {}).get("ObjectLockEnabled") == "Enabled":
            yield make(LOCK, snap, b.arn, Status.PASS, {"object_lock": b.object_lock}, owner=b.owner)
        else:
            yield make(LOCK, snap, b.arn, Status.FAIL, {"object_lock": b.object_lock, "why": "Object Lock not enabled"},
                       owner=b.owner)


@check(HOLD)
def s3_legal_hold(snap: Any) -> Iterable[Finding]:
    for b in snap.buckets.values():
        if not b.under_investigation:
            continue
        ev: dict[str, Any] = {"under_investigation": list(b.under_investigation)}
        if isinstance(b.legal_holds, Unavailable):
            yield unknown(HOLD, snap, b.arn, b.legal_holds, owner=b.owner, **ev)
            continue
        held = [o["key"] for o in b.legal_holds if o.get("status") == "ON"]
        off = [o["key"] for o in b.legal_holds if o.get("status") not in (None, "ON")]
        errs = [o for o in b.legal_holds if "error" in o]
        missing = [o["key"] for o in b.legal_holds if o.get("missing")]
        truncated = [o["key"] for o in b.legal_holds if o.get("truncated")]
        ev.update(held=len(held), without_hold=off[:50], without_hold_count=len(off), errors=errs[:20],
                  prefixes_without_objects=missing)
        lock_off = isinstance(b.object_lock, dict) and b.object_lock.get("ObjectLockEnabled") != "Enabled" \
            or b.object_lock is None
        if off or (errs and lock_off):
            ev["why"] = f"{len(off)} object(s) under investigation without legal hold"
            if errs and lock_off:
                ev["why"] = "Object Lock is not enabled on the bucket, so no legal hold can exist"
            yield make(HOLD, snap, b.arn, Status.FAIL, ev, owner=b.owner)
        elif errs or missing or truncated:
            ev["reason"] = "; ".join([e["error"] for e in errs[:3]] +
                                     [f"no objects under {m!r}" for m in missing] +
                                     [f"more than {len(b.legal_holds) - len(truncated) - len(missing)} objects under "
                                      f"{t!r}: only the first were checked" for t in truncated])
            yield make(HOLD, snap, b.arn, Status.UNKNOWN, ev, owner=b.owner)
        else:
            yield make(HOLD, snap, b.arn, Status.PASS, ev, owner=b.owner)


@check(VERS)
def s3_versioning(snap: Any) -> Iterable[Finding]:
    for b in snap.buckets.values():
        if isinstance(b.versioning, Unavailable):
            yield unknown(VERS, snap, b.arn, b.versioning, owner=b.owner)
        else:
            ok = (b.versioning or {}).get("Status") == "Enabled"
            ev = {"versioning": b.versioning or {}}
            if not ok:
                ev["why"] = f"versioning {(b.versioning or {}).get('Status') or 'never enabled'}"
            yield make(VERS, snap, b.arn, Status.PASS if ok else Status.FAIL, ev, owner=b.owner)


@check(LOGS)
def s3_access_logging(snap: Any) -> Iterable[Finding]:
    for b in snap.buckets.values():
        if isinstance(b.logging, Unavailable):
            yield unknown(LOGS, snap, b.arn, b.logging, owner=b.owner)
        elif b.logging and b.logging.get("TargetBucket"):
            ev = {"logging": b.logging}
            if b.logging["TargetBucket"] == b.name:
                ev["note"] = "logs are delivered into the bucket itself"
            yield make(LOGS, snap, b.arn, Status.PASS, ev, owner=b.owner)
        else:
            yield make(LOGS, snap, b.arn, Status.FAIL, {"logging": b.logging, "why": "server access logging off"},
                       owner=b.owner)
