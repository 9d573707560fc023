"""IAM: who can read in-scope objects, judged by our own policy evaluation (no simulator needed)."""
from __future__ import annotations

from typing import Any, Iterable

from ..clients import Unavailable
from ..models import CheckMeta, Finding, Status
from ..policy import PolicyError, allows, glob_match, parse_policy
from ._base import check, make, unknown

BROAD = CheckMeta(
    "iam.broad_get_object", "Principal outside the allowed list can read synthetic media", "high", "iam",
    "AwsIamRole",
    "Roles and users whose policies allow s3:GetObject (directly or via s3:*, s3:Get*, *) on these buckets can "
    "copy media and training data out; generic scanners only flag admin-level policies. Named principals "
    "(other accounts included) granted reads by the bucket policy are reported too. Service-linked roles "
    "are skipped (AWS owns their policies).",
    "Scope the statement's Resource away from the bucket, add an explicit Deny, or list the principal in "
    "allowed_principals of synthguard.toml if it is meant to read; attach a permission boundary.")
BOUNDARY = CheckMeta(
    "iam.permission_boundary", "Principal that can read synthetic media has no permission boundary", "medium",
    "iam", "AwsIamRole",
    "Without a boundary, anyone who can edit the principal's policies can widen its access to these buckets.",
    "Attach the boundary from `synthguard controls generate` (iam:PutRolePermissionsBoundary / "
    "iam:PutUserPermissionsBoundary).")

READ_ACTION = "s3:GetObject"


def _statements(policies: list) -> tuple[list[tuple[str, list]], list[str]]:
    parsed, problems = [], []
    for source, doc in policies:
        if isinstance(doc, Unavailable):
            problems.append(f"{source}: {doc.reason}")
        elif isinstance(doc, dict) and "unavailable" in doc:
            problems.append(f"{source}: {doc['unavailable']}")
        else:
            try:
                parsed.append((source, parse_policy(doc)))
            except PolicyError as exc:
                problems.append(f"{source}: {exc}")
    return parsed, problems


def is_allowed(arn: str, allowed: Iterable[str]) -> bool:
    """Allowed principals may be ARNs with wildcards, or names matched against the ARN's last part."""
    for a in allowed:
        if glob_match(a, arn) or ("/" not in a and ":" not in a and glob_match(a, arn.rsplit("/", 1)[-1])):
            return True
    return False


def readable(principal: dict, snap: Any) -> tuple[list[dict], list[str]]:
    """The in-scope buckets this principal may read (with the deciding statements), and problems seen.

    Memoised on the snapshot: both IAM checks ask the same question of every principal.
    """
    cache = snap.__dict__.setdefault("_readable_cache", {})
    key = (principal["arn"], id(principal))
    if key not in cache:
        cache[key] = _readable(principal, snap)
    return cache[key]


def _readable(principal: dict, snap: Any) -> tuple[list[dict], list[str]]:
    parsed, problems = _statements(principal.get("policies", []))
    bparsed: list = []
    if principal.get("boundary"):
        bparsed, bprob = _statements([[principal["boundary"], principal.get("boundary_doc")]])
        problems += [f"boundary {p}" for p in bprob]
    from ..policy import action_matches

    # only statements about s3:GetObject matter; filter once, not once per bucket
    parsed = [(src, [st for st in sts if action_matches(st, READ_ACTION)]) for src, sts in parsed]
    parsed = [(src, sts) for src, sts in parsed if sts]
    out = []
    if not parsed:
        return out, problems
    for b in snap.buckets.values():
        for target in b.targets():
            ctx = {"aws:PrincipalArn": principal["arn"]}
            ok, allow_m, deny_m = allows(parsed, READ_ACTION, target, ctx)
            if not ok:
                continue
            if principal.get("boundary") and bparsed:
                bok, _, _ = allows(bparsed, READ_ACTION, target, ctx)
                if not bok:
                    continue
            elif principal.get("boundary") and not bparsed:
                pass  # boundary unreadable: assume it does not limit (conservative)
            out.append({"bucket": b.name, "target": target, "owner": b.owner,
                        "allowed_principal": is_allowed(principal["arn"], b.allowed_principals),
                        "statements": [m.to_dict() for m in allow_m[:5]]})
            break
    return out, problems


def _principals(snap: Any) -> list[dict]:
    return [p for p in snap.principals if not str(p.get("path", "")).startswith("/aws-service-role/")]


@check(BROAD)
def iam_broad_get_object(snap: Any) -> Iterable[Finding]:
    if not snap.buckets:
        return
    if isinstance(snap.principals, Unavailable):
        yield unknown(BROAD, snap, f"arn:aws:iam::{snap.account_id}:*", snap.principals)
        return
    for g in bucket_policy_readers(snap):
        if not g["allowed_principal"]:
            yield make(BROAD, snap, g["principal"], Status.FAIL,
                       {"bucket": g["bucket"], "action": READ_ACTION, "via": "bucket policy", "sid": g["sid"],
                        "why": f"bucket policy of {g['bucket']} grants s3:GetObject",
                        "conditional": g["conditional"], "cross_account": g["cross_account"]},
                       owner=g["owner"], resource_type="Other")
    for p in _principals(snap):
        reads, problems = readable(p, snap)
        rtype = "AwsIamRole" if p["type"] == "role" else "AwsIamUser"
        bad = [r for r in reads if not r["allowed_principal"]]
        for r in bad:
            yield make(BROAD, snap, p["arn"], Status.FAIL,
                       {"bucket": r["bucket"], "target": r["target"], "action": READ_ACTION,
                        "statements": r["statements"], "permission_boundary": p.get("boundary"),
                        "why": f"can s3:GetObject in {r['bucket']} via " + ", ".join(
                            sorted({s['source'] for s in r['statements']}))},
                       owner=r["owner"], resource_type=rtype)
        if bad:
            continue
        ev = {"readable_as_allowed": [r["bucket"] for r in reads]}
        if problems:
            yield make(BROAD, snap, p["arn"], Status.UNKNOWN, dict(ev, reason="; ".join(problems)[:500]),
                       resource_type=rtype)
        else:
            yield make(BROAD, snap, p["arn"], Status.PASS, ev, resource_type=rtype)


def bucket_policy_readers(snap: Any) -> list[dict]:
    """Named AWS principals a bucket policy lets read objects (cross-account ones included).

    Anonymous grants belong to s3.public_access; service principals (CloudFront OAC) are skipped.
    """
    from ..policy import action_matches, condition_holds, principal_arns, resource_reaches

    out = []
    for b in snap.buckets.values():
        if not isinstance(b.policy, dict):
            continue
        try:
            stmts = parse_policy(b.policy)
        except PolicyError:
            continue
        for st in stmts:
            if st["Effect"] != "Allow" or not action_matches(st, READ_ACTION):
                continue
            if not any(resource_reaches(st, t) for t in b.targets()):
                continue
            for p in principal_arns(st):
                if p == "*":
                    continue
                arn = f"arn:aws:iam::{p}:root" if p.isdigit() else p
                if condition_holds(st.get("Condition"), {"aws:PrincipalArn": arn}) is False:
                    continue
                out.append({"principal": arn, "bucket": b.name, "owner": b.owner, "sid": st.get("Sid", ""),
                            "allowed_principal": is_allowed(arn, b.allowed_principals),
                            "conditional": bool(st.get("Condition")),
                            "cross_account": bool(snap.account_id) and f"::{snap.account_id}:" not in arn})
    return out


@check(BOUNDARY)
def iam_permission_boundary(snap: Any) -> Iterable[Finding]:
    if not snap.buckets:
        return
    if isinstance(snap.principals, Unavailable):
        yield unknown(BOUNDARY, snap, f"arn:aws:iam::{snap.account_id}:*", snap.principals)
        return
    for p in _principals(snap):
        reads, _ = readable(p, snap)
        if not reads:
            continue
        from ._base import owners

        rtype = "AwsIamRole" if p["type"] == "role" else "AwsIamUser"
        ev = {"buckets": [r["bucket"] for r in reads], "permission_boundary": p.get("boundary")}
        if not p.get("boundary"):
            ev["why"] = "reads " + ", ".join(ev["buckets"]) + " without a permission boundary"
        yield make(BOUNDARY, snap, p["arn"], Status.PASS if p.get("boundary") else Status.FAIL, ev,
                   owner=owners(r["owner"] for r in reads), resource_type=rtype)
