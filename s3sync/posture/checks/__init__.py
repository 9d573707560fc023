"""Posture checks: importing this package registers every check in :data:`REGISTRY`."""
from __future__ import annotations

from typing import Any, Iterable

from ..models import Finding, Status
from . import detective, iam, network, s3  # noqa: F401  (registration side effects)
from ._base import REGISTRY, check

# The contract order (as the issue lists them); every id here is registered exactly once.
CHECK_IDS: tuple[str, ...] = (
    "s3.public_access", "s3.block_public_access", "s3.kms_encryption", "s3.object_lock", "s3.legal_hold",
    "s3.versioning", "s3.access_logging", "cloudtrail.s3_data_events", "cloudfront.origin_access_control",
    "cloudfront.https_only", "iam.broad_get_object", "iam.permission_boundary", "ec2.unrestricted_egress",
    "kms.rotation", "guardduty.s3_protection", "macie.enabled", "config.rules", "cloudwatch.contributor_insights",
)


# What each check reads beyond the buckets: lets a run collect only what its checks need.
NEEDS: dict[str, tuple[str, ...]] = {
    "s3.public_access": ("account_public_access_block",),
    "s3.block_public_access": ("account_public_access_block",),
    "cloudtrail.s3_data_events": ("trails",),
    "cloudfront.origin_access_control": ("distributions", "account_public_access_block"),
    "cloudfront.https_only": ("distributions",),
    "iam.broad_get_object": ("principals",),
    "iam.permission_boundary": ("principals",),
    "ec2.unrestricted_egress": ("ec2",),
    "kms.rotation": ("kms_keys",),
    "guardduty.s3_protection": ("guardduty",),
    "macie.enabled": ("macie",),
    "config.rules": ("config_rules", "config_recorders"),
    "cloudwatch.contributor_insights": ("insight_rules",),
}


def needs_for(checks: Iterable[str] | None = None, exclude: Iterable[str] | None = None) -> set[str]:
    """The account-level snapshot parts the selected checks read."""
    return {n for cid in _select(checks, exclude) for n in NEEDS.get(cid, ())}


def _select(ids: Iterable[str] | None, exclude: Iterable[str] | None) -> list[str]:
    import fnmatch

    chosen = list(CHECK_IDS)
    if ids:
        pats = list(ids)
        bad = [p for p in pats if not any(fnmatch.fnmatch(c, p) for c in CHECK_IDS)]
        if bad:
            raise ValueError(f"unknown check id(s): {', '.join(bad)} (see `synthguard posture --list-checks`)")
        chosen = [c for c in chosen if any(fnmatch.fnmatch(c, p) for p in pats)]
    if exclude:
        chosen = [c for c in chosen if not any(fnmatch.fnmatch(c, p) for p in exclude)]
    return chosen


def run_checks(snapshot: Any, checks: Iterable[str] | None = None, exclude: Iterable[str] | None = None) -> list[Finding]:
    """Run the selected checks (glob patterns allowed, e.g. ``s3.*``) over one snapshot.

    A check that raises becomes one ``unknown`` finding naming the error: a bug in one check never
    hides the others' results.
    """
    out: list[Finding] = []
    if hasattr(snapshot, "__dict__"):
        snapshot.__dict__.pop("_readable_cache", None)  # memo of one run only: snapshots may be edited
    scope_error = (getattr(snapshot, "scope_errors", {}) or {}).get("*")
    for cid in _select(checks, exclude):
        meta, fn = REGISTRY[cid]
        if scope_error and not snapshot.buckets:
            # the estate could not even be listed: every check is undecided, none passes silently
            out.append(Finding(check=cid, resource="arn:aws:s3:::*", status=Status.UNKNOWN, severity=meta.severity,
                               evidence={"reason": f"buckets could not be listed: {scope_error}"},
                               remediation=meta.remediation, title=meta.title,
                               region=getattr(snapshot, "region", ""), account=getattr(snapshot, "account_id", "")))
            continue
        try:
            out.extend(fn(snapshot))
        except Exception as exc:  # a check bug must not sink the run
            out.append(Finding(check=cid, resource=f"arn:aws:::{getattr(snapshot, 'account_id', '')}",
                               status=Status.UNKNOWN, severity=meta.severity,
                               evidence={"reason": f"check raised {type(exc).__name__}: {exc}"},
                               remediation=meta.remediation, title=meta.title))
    if hasattr(snapshot, "__dict__"):
        snapshot.__dict__.pop("_readable_cache", None)
    return sorted(out)


__all__ = ["CHECK_IDS", "NEEDS", "REGISTRY", "check", "needs_for", "run_checks"]
