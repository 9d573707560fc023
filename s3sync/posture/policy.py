"""A small, conservative IAM / bucket policy evaluator.

moto (and any offline review) cannot simulate policies, and the questions here are narrower than
IAM's full logic: "can this identity read *some* object of this bucket?" and "does this bucket
policy let anonymous principals in?". The evaluator therefore works on glob patterns:

- ``Action``/``NotAction`` match case-insensitively with ``*`` and ``?`` (``s3:*``, ``s3:Get*``, ``*``).
- ``Resource``/``NotResource`` are compared with the target as glob *intersection* (an Allow on
  ``arn:aws:s3:::b/public/*`` reaches part of ``arn:aws:s3:::b/*``) and *coverage* (a Deny only
  counts when it covers the whole target).
- Conditions are never assumed to hold against the caller's favour: an Allow with a Condition still
  counts as a possible grant (flagged ``conditional``); a Deny with a Condition is not relied upon.
  For anonymous access, conditions on the source network, VPC, organisation, account or ARN make
  a grant non-public, as AWS's own "IsPublic" logic does.

Over-reporting is the intended failure mode: a leak detector must not miss a grant.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence


class PolicyError(ValueError):
    """A policy document that is not valid JSON or not shaped like an IAM policy."""


_STATEMENT_KEYS = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
                   "NotResource", "Condition"}

# Condition keys whose fixed values restrict who can use a grant (AWS's "non-public" keys).
RESTRICTING_KEYS = {"aws:sourceip", "aws:sourcevpc", "aws:sourcevpce", "aws:principalorgid",
                    "aws:principalaccount", "aws:sourceaccount", "aws:sourcearn", "aws:userid",
                    "aws:principalarn", "aws:sourceowner", "aws:principalorgpaths", "s3:dataaccesspointarn",
                    "s3:dataaccesspointaccount", "aws:principalservicename"}


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_policy(document: str | Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Statements of a policy document (JSON text or a dict), normalised to lists; [] for None."""
    if document is None:
        return []
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"policy is not valid JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise PolicyError("policy must be a JSON object")
    stmts = document.get("Statement")
    if stmts is None:
        raise PolicyError("policy has no Statement")
    out = []
    for i, st in enumerate(_as_list(stmts)):
        if not isinstance(st, Mapping):
            raise PolicyError(f"Statement[{i}] is not an object")
        unknown = set(st) - _STATEMENT_KEYS
        if unknown:
            raise PolicyError(f"Statement[{i}] has unknown key(s): {', '.join(sorted(unknown))}")
        if st.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(f"Statement[{i}] Effect must be Allow or Deny")
        if ("Action" in st) == ("NotAction" in st):
            raise PolicyError(f"Statement[{i}] needs exactly one of Action / NotAction")
        if ("Resource" in st) and ("NotResource" in st):
            raise PolicyError(f"Statement[{i}] has both Resource and NotResource")
        n = dict(st)
        for k in ("Action", "NotAction", "Resource", "NotResource"):
            if k in n:
                n[k] = [str(v) for v in _as_list(n[k])]
        out.append(n)
    return out


def validate_identity_policy(document: str | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Parse and check the rules IAM enforces on identity policies (Version, Resource, no Principal)."""
    doc = json.loads(document) if isinstance(document, str) else document
    if doc.get("Version") != "2012-10-17":
        raise PolicyError('identity policy Version must be "2012-10-17"')
    stmts = parse_policy(doc)
    for i, st in enumerate(stmts):
        if "Principal" in st or "NotPrincipal" in st:
            raise PolicyError(f"Statement[{i}]: identity policies take no Principal")
        if "Resource" not in st and "NotResource" not in st:
            raise PolicyError(f"Statement[{i}] needs Resource or NotResource")
        for a in st.get("Action", []) + st.get("NotAction", []):
            if a != "*" and ":" not in a:
                raise PolicyError(f"Statement[{i}]: action {a!r} is not service:Action")
    return stmts


# ----------------------------------------------------------------------------- glob algebra
@lru_cache(maxsize=65536)
def glob_match(pattern: str, value: str, case_insensitive: bool = False) -> bool:
    """IAM wildcard match (``*`` any run, ``?`` one character) of a concrete value."""
    if case_insensitive:
        pattern, value = pattern.lower(), value.lower()
    return globs_intersect(pattern, value.replace("*", "\x00").replace("?", "\x01"))


@lru_cache(maxsize=65536)
def globs_intersect(a: str, b: str) -> bool:
    """True when some string matches both glob patterns (``*`` and ``?`` in either)."""
    if a == "*" or b == "*" or a == b:
        return True
    pa, pb = _literal_prefix(a), _literal_prefix(b)
    if not (pa.startswith(pb) or pb.startswith(pa)):
        return False  # both strings would have to start with both literal prefixes
    if a.endswith("*") and len(pa) == len(a) - 1 and b.endswith("*") and len(pb) == len(b) - 1:
        return True  # "prefix*" against "prefix*" with compatible prefixes: the longer one is common
    la, lb = len(a), len(b)

    @lru_cache(maxsize=None)
    def f(i: int, j: int) -> bool:
        if i == la and j == lb:
            return True
        if i < la and a[i] == "*":
            if f(i + 1, j):
                return True
            if j < lb:
                return f(i, j + 1) if b[j] != "*" else (f(i, j + 1) or f(i + 1, j))
            return False
        if j < lb and b[j] == "*":
            if f(i, j + 1):
                return True
            return f(i + 1, j) if i < la else False
        if i == la or j == lb:
            return False
        if a[i] == "?" or b[j] == "?" or a[i] == b[j]:
            return f(i + 1, j + 1)
        return False

    return f(0, 0)


def _literal_prefix(p: str) -> str:
    for k, ch in enumerate(p):
        if ch in "*?":
            return p[:k]
    return p


def glob_covers(p: str, q: str) -> bool:
    """Conservative: True only when every string matching ``q`` surely matches ``p``."""
    if p == "*" or p == q:
        return True
    if "*" not in q and "?" not in q:
        return glob_match(p, q)
    if p.endswith("*") and "*" not in p[:-1] and "?" not in p[:-1]:
        return _literal_prefix(q).startswith(p[:-1])
    return False


# ----------------------------------------------------------------------------- statements
def action_matches(st: Mapping[str, Any], action: str) -> bool:
    if "Action" in st:
        return any(glob_match(p, action, True) for p in st["Action"])
    return not any(glob_match(p, action, True) for p in st["NotAction"])


def resource_reaches(st: Mapping[str, Any], target: str) -> bool:
    """Does the statement apply to at least part of the target glob?"""
    if "Resource" in st:
        return any(globs_intersect(p, target) for p in st["Resource"])
    if "NotResource" in st:
        return not any(glob_covers(p, target) for p in st["NotResource"])
    return True  # resource policies may omit Resource only in invalid docs; be conservative


def resource_covers(st: Mapping[str, Any], target: str) -> bool:
    """Does the statement apply to all of the target glob?"""
    if "Resource" in st:
        return any(glob_covers(p, target) for p in st["Resource"])
    if "NotResource" in st:
        return not any(globs_intersect(p, target) for p in st["NotResource"])
    return False


@dataclass(frozen=True)
class Match:
    """A statement that decided something, with where it came from (policy name/ARN)."""

    source: str
    sid: str
    effect: str
    conditional: bool
    statement: str  # compact JSON of the statement

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "sid": self.sid, "effect": self.effect, "conditional": self.conditional,
                "statement": json.loads(self.statement)}


def _match(st: Mapping[str, Any], source: str) -> Match:
    return Match(source=source, sid=str(st.get("Sid", "")), effect=st["Effect"], conditional=bool(st.get("Condition")),
                 statement=json.dumps(st, sort_keys=True))


_CONTEXT_OPS = {"arnlike": (True, True), "arnequals": (True, True), "stringequals": (True, False),
                "stringlike": (True, True), "arnnotlike": (False, True), "arnnotequals": (False, True),
                "stringnotequals": (False, False), "stringnotlike": (False, True)}


def condition_holds(condition: Mapping[str, Any] | None, context: Mapping[str, str] | None) -> bool | None:
    """True/False when every condition can be decided from ``context`` (e.g. aws:PrincipalArn), else None."""
    if not condition:
        return True
    ctx = {k.lower(): v for k, v in (context or {}).items()}
    result = True
    for op, block in condition.items():
        spec = _CONTEXT_OPS.get(op.lower())
        if spec is None or not isinstance(block, Mapping):
            return None
        positive, wild = spec
        for key, values in block.items():
            if key.lower() not in ctx:
                return None
            v = ctx[key.lower()]
            hit = any(glob_match(str(p), v) if wild else str(p) == v for p in _as_list(values))
            result = result and (hit if positive else not hit)
    return result


def allows(policies: Iterable[tuple[str, Sequence[Mapping[str, Any]]]], action: str,
           target: str, context: Mapping[str, str] | None = None) -> tuple[bool, list[Match], list[Match]]:
    """Could ``action`` be allowed on some part of ``target`` (a resource glob)?

    ``policies`` are (source, statements) pairs evaluated together (the identity's policies, or a
    permission boundary). Returns (allowed, allow matches, deny matches that cover the target).
    Conditions decidable from ``context`` (e.g. ``aws:PrincipalArn``) are evaluated; any other
    conditional Deny is not relied upon, and any other conditional Allow counts.
    """
    allow_m: list[Match] = []
    deny_m: list[Match] = []
    for source, stmts in policies:
        for st in stmts:
            if not action_matches(st, action):
                continue
            holds = condition_holds(st.get("Condition"), context)
            if st["Effect"] == "Allow" and holds is not False and resource_reaches(st, target):
                allow_m.append(_match(st, source))
            elif st["Effect"] == "Deny" and holds is True and resource_covers(st, target):
                deny_m.append(_match(st, source))
    return (bool(allow_m) and not deny_m, allow_m, deny_m)


def evaluate(policies: Iterable[tuple[str, Sequence[Mapping[str, Any]]]], action: str, resource: str,
             context: Mapping[str, str] | None = None) -> str:
    """"Allow", "Deny" (explicit) or "ImplicitDeny" for one concrete request.

    Conditions decidable from ``context`` are evaluated; undecidable ones are assumed to hold.
    Used to check generated policies (boundary, worker policy) behave as intended.
    """
    decision = "ImplicitDeny"
    for _source, stmts in policies:
        for st in stmts:
            if condition_holds(st.get("Condition"), context) is False:
                continue
            if action_matches(st, action) and resource_reaches(st, resource):
                if st["Effect"] == "Deny":
                    return "Deny"
                decision = "Allow"
    return decision


# ----------------------------------------------------------------------------- principals
def principal_is_public(st: Mapping[str, Any]) -> bool:
    """Principal "*" / {"AWS": "*"} (or an Allow with NotPrincipal, i.e. everyone but a few)."""
    if "NotPrincipal" in st:
        return st["Effect"] == "Allow"
    p = st.get("Principal")
    if p == "*":
        return True
    if isinstance(p, Mapping):
        return "*" in _as_list(p.get("AWS")) or "*" in _as_list(p.get("CanonicalUser"))
    return False


def deny_names(st: Mapping[str, Any], arn: str) -> bool:
    """Does a resource-policy Deny surely apply to the principal ``arn``?

    Principal "*" (or {"AWS": "*"}) and the principal's own ARN do; a NotPrincipal Deny does unless it
    lists the principal or its account. Anything else is not relied upon (a Deny must be certain).
    """
    if "NotPrincipal" in st:
        excluded = st["NotPrincipal"]
        if excluded == "*":
            return False
        account = arn.split(":")[4] if arn.count(":") >= 5 else ""
        listed = principal_arns({"Principal": excluded})
        return not any(glob_match(p, arn) or p in (account, f"arn:aws:iam::{account}:root") for p in listed)
    if principal_is_public(st):
        return True
    return any(glob_match(p, arn) for p in principal_arns(st))


def principal_arns(st: Mapping[str, Any]) -> list[str]:
    """The AWS principals a statement names (ARNs or bare account ids)."""
    p = st.get("Principal")
    if isinstance(p, Mapping):
        return [str(v) for v in _as_list(p.get("AWS"))]
    return []


def principal_services(st: Mapping[str, Any]) -> list[str]:
    """The service principals a statement names (e.g. cloudfront.amazonaws.com)."""
    p = st.get("Principal")
    return [str(v) for v in _as_list(p.get("Service"))] if isinstance(p, Mapping) else []


def condition_restricts(condition: Mapping[str, Any] | None) -> list[str]:
    """Condition keys that pin a grant to known networks/accounts/orgs (empty: no restriction)."""
    found = []
    for op, block in (condition or {}).items():
        if not isinstance(block, Mapping):
            continue
        if op.lower().startswith("forallvalues") or op.lower().endswith("ifexists") or op.lower() == "null":
            continue  # ...IfExists and ForAllValues pass when the key is absent: no restriction
        for key, values in block.items():
            if key.lower() not in RESTRICTING_KEYS:
                continue
            vals = [str(v) for v in _as_list(values)]
            if not vals or any(v in ("*", "0.0.0.0/0", "::/0") or ("*" in v and "like" in op.lower()) for v in vals):
                continue
            if op.lower().startswith("stringnot") or op.lower().startswith("notip") or op.lower().startswith("arnnot"):
                continue  # "anyone except ..." does not restrict
            found.append(key)
    return found


# Keys that pin a grant to "every principal of an account / organisation": not public, but broad.
BROAD_PRINCIPAL_KEYS = {"aws:principalaccount": "arn:aws:iam::{}:*",
                        "aws:principalorgid": "arn:aws:organizations::*:organization/{}",
                        "aws:principalorgpaths": "arn:aws:organizations::*:organization/{}"}


def broad_principal_scopes(condition: Mapping[str, Any] | None) -> list[str]:
    """Principal globs a "*" grant is limited to when only account/organisation keys restrict it, else [].

    Such a grant reaches every role and user of those accounts without any identity policy of theirs.
    """
    keys = {k.lower() for k in condition_restricts(condition)}
    if not keys or not keys <= set(BROAD_PRINCIPAL_KEYS):
        return []
    return sorted({BROAD_PRINCIPAL_KEYS[k.lower()].format(v)
                   for op, block in (condition or {}).items() if isinstance(block, Mapping)
                   for k, vals in block.items() if k.lower() in keys for v in _as_list(vals)})


# Named in the evidence when a public statement opens them; any other S3 action granted to "*" is public too
# (AWS's definition) and is reported by the statement's own Action pattern.
PUBLIC_OBJECT_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:PutObjectAcl",
                         "s3:PutObjectVersionAcl")
PUBLIC_BUCKET_ACTIONS = ("s3:ListBucket", "s3:ListBucketVersions", "s3:PutBucketPolicy", "s3:PutBucketAcl",
                         "s3:DeleteBucket")


def opened_actions(st: Mapping[str, Any], bucket: str) -> list[str]:
    """The S3 actions an Allow statement opens on the bucket or its objects.

    Well-known actions are named; any other S3 action the statement grants is listed by its own pattern
    (``NotAction`` as "NotAction ..."), so that no grant, however unusual, is silently dropped.
    """
    obj, bkt = f"arn:aws:s3:::{bucket}/*", f"arn:aws:s3:::{bucket}"
    on_obj, on_bkt = resource_reaches(st, obj), resource_reaches(st, bkt)
    named = [a for a in PUBLIC_OBJECT_ACTIONS if on_obj and action_matches(st, a)]
    named += [a for a in PUBLIC_BUCKET_ACTIONS if on_bkt and action_matches(st, a)]
    if not (on_obj or on_bkt):
        return named
    if "Action" in st:
        return named + [p for p in st["Action"] if globs_intersect(p.lower(), "s3:*")
                        and not any(glob_match(p, a, True) for a in named)]
    if named or any(glob_covers(p.lower(), "s3:*") for p in st["NotAction"]):
        return named
    return ["NotAction " + ", ".join(st["NotAction"])]


ASSUME_ACTIONS = ("sts:AssumeRole", "sts:AssumeRoleWithWebIdentity", "sts:AssumeRoleWithSAML")


def public_trust(statements: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sids (or "#n") of a role trust policy's Allow statements that let any AWS principal assume
    the role: principal "*" with no fixed-value condition pinning accounts, orgs or networks
    (sts:ExternalId does not pin anyone: whoever knows it may assume)."""
    return [st.get("Sid") or f"#{i}" for i, st in enumerate(statements)
            if st["Effect"] == "Allow" and principal_is_public(st) and not condition_restricts(st.get("Condition"))
            and any(action_matches(st, a) for a in ASSUME_ACTIONS)]


def public_grants(statements: Sequence[Mapping[str, Any]], bucket: str) -> list[dict[str, Any]]:
    """Allow statements of a bucket policy that reach anonymous principals, with the actions they open.

    Like AWS's "IsPublic", every action counts (s3:PutObjectAcl to "*" lets anyone make objects public),
    unless a fixed-value condition pins the grant to known networks, accounts or organisations.
    """
    out = []
    for st in statements:
        if st["Effect"] != "Allow" or not principal_is_public(st):
            continue
        if condition_restricts(st.get("Condition")):
            continue
        acts = opened_actions(st, bucket)
        if acts:
            out.append({"sid": st.get("Sid", ""), "actions": acts, "conditional": bool(st.get("Condition")),
                        "statement": dict(st)})
    return out
