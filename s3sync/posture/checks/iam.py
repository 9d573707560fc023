"""IAM: who can read in-scope objects, judged by our own policy evaluation (no simulator needed)."""
from __future__ import annotations

from typing import Any, Iterable

from ..clients import Unavailable
from ..models import CheckMeta, Finding, Status
from ..policy import (PolicyError, action_matches, allows, broad_principal_scopes, condition_holds, deny_names,
                      glob_match, parse_policy, principal_arns, principal_is_public, public_trust,
                      resource_reaches)
from ._base import check, make, unknown

BROAD = CheckMeta(
    "iam.broad_get_object", "Principal outside the allowed list can read synthetic media", "high", "iam",
    "AwsIamRole",
    "Roles and users whose policies allow s3:GetObject or s3:GetObjectVersion (directly or via s3:*, s3:Get*, *) "
    "on these buckets, and that the bucket policy does not deny, can copy media and training data out; generic "
    "scanners only flag admin-level policies. Named principals (other accounts included) granted reads by the "
    "bucket policy, and \"*\" grants limited only to an account or organisation, are reported too, as are reader "
    "roles (allowed or not) whose trust policy lets any AWS principal assume them. Service-linked "
    "roles are skipped (AWS owns their policies).",
    "Scope the statement's Resource away from the bucket, add an explicit Deny, or list the principal in "
    "allowed_principals of synthguard.toml if it is meant to read; attach a permission boundary; replace "
    "account/organisation-wide \"*\" grants with the roles that need them.")
BOUNDARY = CheckMeta(
    "iam.permission_boundary", "Principal that can read synthetic media has no permission boundary", "medium",
    "iam", "AwsIamRole",
    "Without a boundary, anyone who can edit the principal's policies can widen its access to these buckets.",
    "Attach the boundary from `synthguard controls generate` (iam:PutRolePermissionsBoundary / "
    "iam:PutUserPermissionsBoundary).")

# Object reads that return data: s3:GetObjectVersion downloads any version, the current one included.
READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")


def grants_read(st: dict) -> bool:
    """Does the statement mention any object read (so it may matter to the reader checks)?"""
    return any(action_matches(st, a) for a in READ_ACTIONS)


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


def _bucket_denies(b: Any, snap: Any) -> list[dict]:
    """Deny statements about reads in the bucket's policy, parsed once per snapshot (many principals ask)."""
    cache = snap.__dict__.setdefault("_bucket_denies_cache", {})
    if b.name not in cache:
        try:
            stmts = parse_policy(b.policy) if isinstance(b.policy, dict) else []
        except PolicyError:
            stmts = []  # s3.public_access reports the unparsable policy; no Deny is relied upon
        cache[b.name] = [st for st in stmts if st["Effect"] == "Deny" and grants_read(st)]
    return cache[b.name]


def _first_read(policies: list, bparsed: list, principal: dict, target: str) -> tuple[str, list] | None:
    """The first read action allowed on ``target`` (by identity policies, within the boundary, not denied).

    Each read action is judged on its own, as AWS authorises it: a Deny of s3:GetObject alone
    leaves s3:GetObjectVersion (every version, the current one included) readable.
    """
    ctx = {"aws:PrincipalArn": principal["arn"]}
    for action in READ_ACTIONS:
        ok, allow_m, _deny_m = allows(policies, action, target, ctx)
        if not ok:
            continue
        if principal.get("boundary") and bparsed and not allows(bparsed, action, target, ctx)[0]:
            continue  # an unreadable boundary is assumed not to limit (conservative)
        return action, allow_m
    return None


def _readable(principal: dict, snap: Any) -> tuple[list[dict], list[str]]:
    parsed, problems = _statements(principal.get("policies", []))
    bparsed: list = []
    if principal.get("boundary"):
        bparsed, bprob = _statements([[principal["boundary"], principal.get("boundary_doc")]])
        problems += [f"boundary {p}" for p in bprob]
    # only statements about object reads matter; filter once, not once per bucket
    parsed = [(src, [st for st in sts if grants_read(st)]) for src, sts in parsed]
    parsed = [(src, sts) for src, sts in parsed if sts]
    out: list[dict] = []
    if not parsed:
        return out, problems
    for b in snap.buckets.values():
        # the bucket policy's Denies bind the principal too (lockdown policies: Deny unless aws:PrincipalArn)
        denies = [st for st in _bucket_denies(b, snap) if deny_names(st, principal["arn"])]
        policies = parsed + ([(f"bucket policy of {b.name}", denies)] if denies else [])
        for target in b.targets():
            hit = _first_read(policies, bparsed, principal, target)
            if hit is None:
                continue
            out.append({"bucket": b.name, "target": target, "owner": b.owner, "action": hit[0],
                        "allowed_principal": is_allowed(principal["arn"], b.allowed_principals),
                        "statements": [m.to_dict() for m in hit[1][:5]]})
            break
    return out, problems


def _public_trust(principal: dict) -> list[str]:
    """The trust-policy statements that let anyone assume this role ([] for users, or a trust policy
    that is missing or unreadable: only a policy we read can convict)."""
    doc = principal.get("trust")
    if principal.get("type") != "role" or not doc:
        return []
    try:
        return public_trust(parse_policy(doc))
    except PolicyError:
        return []


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
                       {"bucket": g["bucket"], "action": g["action"], "via": "bucket policy", "sid": g["sid"],
                        "why": g["why"], "conditional": g["conditional"], "cross_account": g["cross_account"]},
                       owner=g["owner"], resource_type="Other")
    for p in _principals(snap):
        reads, problems = readable(p, snap)
        rtype = "AwsIamRole" if p["type"] == "role" else "AwsIamUser"
        opened = _public_trust(p) if reads else []
        if opened:
            # anyone may become this reader: its grants are as open as a public one, allowed or not
            r = reads[0]
            yield make(BROAD, snap, p["arn"], Status.FAIL,
                       {"bucket": r["bucket"], "target": r["target"], "action": r["action"],
                        "trust_statements": opened, "why": f"any AWS principal may assume this role "
                        f"(trust policy {', '.join(opened)}) and {r['action']} in {r['bucket']}"},
                       owner=r["owner"], resource_type=rtype)
            continue
        bad = [r for r in reads if not r["allowed_principal"]]
        for r in bad:
            yield make(BROAD, snap, p["arn"], Status.FAIL,
                       {"bucket": r["bucket"], "target": r["target"], "action": r["action"],
                        "statements": r["statements"], "permission_boundary": p.get("boundary"),
                        "why": f"can {r['action']} in {r['bucket']} via " + ", ".join(
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


def _reader(principal: str, b: Any, st: dict, action: str, why: str, cross_account: bool) -> dict:
    return {"principal": principal, "bucket": b.name, "owner": b.owner, "sid": st.get("Sid", ""), "action": action,
            "why": why, "allowed_principal": is_allowed(principal, b.allowed_principals),
            "conditional": bool(st.get("Condition")), "cross_account": cross_account}


def _statement_readers(st: dict, b: Any, snap: Any) -> list[dict]:
    """Who one Allow statement of the bucket policy lets read: named principals, or a whole account/org."""
    action = next(a for a in READ_ACTIONS if action_matches(st, a))
    grant = f"bucket policy of {b.name} grants {action}"
    out = []
    if principal_is_public(st):
        # public grants belong to s3.public_access; those pinned to accounts/orgs reach all their principals
        for scope in broad_principal_scopes(st.get("Condition")):
            out.append(_reader(scope, b, st, action, f"{grant} to every principal of {scope}",
                               not scope.startswith(f"arn:aws:iam::{snap.account_id}:")))
        return out
    for p in principal_arns(st):
        arn = f"arn:aws:iam::{p}:root" if p.isdigit() else p
        if condition_holds(st.get("Condition"), {"aws:PrincipalArn": arn}) is False:
            continue
        out.append(_reader(arn, b, st, action, grant, bool(snap.account_id) and f"::{snap.account_id}:" not in arn))
    return out


def bucket_policy_readers(snap: Any) -> list[dict]:
    """Principals a bucket policy lets read objects: named ones (other accounts included), and "*" grants
    limited only by aws:PrincipalAccount / aws:PrincipalOrgID (every principal of the account or org).

    Public grants belong to s3.public_access; service principals (CloudFront OAC) are skipped.
    """
    out = []
    for b in snap.buckets.values():
        if not isinstance(b.policy, dict):
            continue
        try:
            stmts = parse_policy(b.policy)
        except PolicyError:
            continue
        for st in stmts:
            if st["Effect"] != "Allow" or not grants_read(st):
                continue
            if any(resource_reaches(st, t) for t in b.targets()):
                out += _statement_readers(st, b, snap)
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
