"""Posture checks (issue 6) for the buckets an audit covered (issue 4): the glue, nothing else.

Why a module of its own: the audit worker only needs "findings for these buckets, never an
exception"; which buckets are in scope, with which class and prefixes, is decided here once.

Scope in the audit: the user named the buckets, so each audited bucket is in scope even without a
``synthguard:class`` tag. It is added to the posture config as a listed bucket (class still from
its tag, else ``synthetic-media``; owner from the config or tags), and the audited prefixes become
the bucket's ``prefixes`` (the parts that matter) unless the config already lists the bucket, in
which case the operator's entry wins untouched.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any, Iterable, Sequence

from .listing import S3Target


def load_posture_config(config: Any) -> Any:
    """A :class:`~s3sync.posture.config.PostureConfig` from a path, a config object or None.

    Raises ValueError / FileNotFoundError with a one-line reason (the audit reports it as a usage
    error before anything is listed)."""
    from .posture.config import PostureConfig, load_config

    if config is None or isinstance(config, PostureConfig):
        return config or PostureConfig()
    return load_config(os.fspath(config))


def audit_scope(targets: Iterable[S3Target], config: Any) -> tuple[list[str], Any]:
    """(bucket names, the config with every audited bucket listed) for :func:`run_posture`."""
    from .posture.config import BucketScope

    prefixes: dict[str, set[str] | None] = {}
    for t in targets:
        have = prefixes.setdefault(t.bucket, set())
        if have is None:
            continue
        if not t.prefix:  # the whole bucket was audited: the whole bucket matters
            prefixes[t.bucket] = None
        else:
            have.add(t.prefix)
    listed = list(config.buckets)
    for name, pref in prefixes.items():
        if config.bucket(name) is None:
            listed.append(BucketScope(name=name, prefixes=tuple(sorted(pref or ()))))
    return list(prefixes), replace(config, buckets=tuple(listed))


def run_for_audit(targets: Sequence[S3Target], factory: Any, config: Any = None) -> tuple[list[Any], dict[str, Any]]:
    """Posture findings for the audited buckets and a summary for ``AuditResult.summary["posture"]``.

    Never raises: APIs the endpoint lacks are ``unknown`` findings (that is ``run_posture``'s
    contract), and anything else that goes wrong becomes ``{"error": ...}`` in the summary, so a
    posture problem can never cost the audit its results.
    """
    from .posture import reports, run_posture

    t0 = time.monotonic()
    buckets: list[str] = []
    try:
        buckets, cfg = audit_scope(targets, load_posture_config(config))
        if not buckets:
            return [], {"buckets": [], "total": 0}
        findings = sorted(run_posture(buckets=buckets, config=cfg, factory=factory))
    except Exception as exc:  # a posture bug or an unexpected endpoint answer: report it, keep the audit
        from .aws import describe_error

        return [], {"buckets": buckets, "error": f"posture checks failed: {describe_error(exc)}",
                    "duration_s": round(time.monotonic() - t0, 3)}
    summary = {"buckets": buckets, **reports.summary(findings), "duration_s": round(time.monotonic() - t0, 3)}
    return findings, summary


# ----------------------------------------------------------------------------- exposure (issue 5)
_PUBLIC_CHECK = "s3.public_access"
_CDN_CHECK = "cloudfront.origin_access_control"


def _bucket_of_arn(arn: str) -> str | None:
    """``arn:aws:s3:::bucket`` (any partition) -> ``bucket``."""
    if ":s3:::" not in arn:
        return None
    return arn.split(":s3:::", 1)[1].split("/", 1)[0] or None


class ExposureMap:
    """Which audited buckets (and CloudFront origins) the public can read, from what the audit
    already collected: the posture findings of the audited buckets (``s3.public_access`` combines
    the bucket policy, ACLs and Block Public Access; ``cloudfront.origin_access_control`` names the
    distributions serving a bucket) and the CloudFront origins of ``cloudfront:`` targets.

    A pure function of ``(findings, summary)``, so a live run and a stored run (``audit report``)
    give every object the same exposure. Findings may be posture ``Finding`` values or their dicts.
    Order of evidence: served through an enabled CloudFront distribution, or a public bucket:
    ``public``; the bucket is known not to be public and the distributions could be read:
    ``private``; anything else (``--no-posture``, an API the endpoint lacks, posture failed):
    ``unknown``, with the reason.
    """

    def __init__(self, findings: Iterable[Any], summary: Any) -> None:
        summary = summary if isinstance(summary, dict) else dict(summary or {})
        posture = summary.get("posture")
        if not isinstance(posture, dict):
            self.no_posture = "posture checks were not run (--no-posture)"
        elif posture.get("error"):
            self.no_posture = str(posture["error"])
        else:
            self.no_posture = None
        self.public: dict[str, tuple[str, str]] = {}  # bucket -> (pass|fail|unknown, why)
        self.served: dict[str, list[tuple[str, str | None]]] = {}  # bucket -> [(distribution, prefix)]
        self.origins: dict[str, bool] = {}  # "cloudfront:DIST/origin-id" -> enabled
        self.cdn_unknown: str | None = None
        for o in summary.get("cloudfront_origins") or ():
            if not isinstance(o, dict) or not o.get("bucket"):
                continue
            enabled = bool(o.get("enabled", True))
            self.origins[f"cloudfront:{o.get('distribution_id')}/{o.get('origin_id')}"] = enabled
            if enabled:
                self.served.setdefault(o["bucket"], []).append((str(o.get("distribution_id")), o.get("prefix") or ""))
        for f in findings or ():
            d = f.to_dict() if hasattr(f, "to_dict") else f
            if not isinstance(d, dict):
                continue
            check, status, ev = d.get("check"), str(d.get("status")), d.get("evidence") or {}
            if check == _PUBLIC_CHECK:
                bucket = _bucket_of_arn(str(d.get("resource") or ""))
                if bucket:
                    self.public[bucket] = (status, str(ev.get("why") or ev.get("reason") or ""))
            elif check == _CDN_CHECK:
                origins = ev.get("origins") or []
                for row in origins:
                    if isinstance(row, dict) and row.get("bucket"):
                        self.served.setdefault(row["bucket"], []).append((str(ev.get("distribution")), None))
                if status == "unknown" and not origins:  # the distributions themselves could not be read
                    self.cdn_unknown = str(ev.get("reason") or "CloudFront distributions could not be read")

    def of(self, bucket: str, key: str = "", origin: str | None = None):
        from .models import Exposure

        if origin and origin.startswith("cloudfront:") and self.origins.get(origin, True):
            return Exposure("public", f"served by CloudFront distribution {origin[11:].split('/', 1)[0]}")
        for dist, prefix in self.served.get(bucket, ()):
            if prefix is None or key.startswith(prefix):
                return Exposure("public", f"served by CloudFront distribution {dist}")
        status, why = self.public.get(bucket, (None, ""))
        if status == "fail":
            return Exposure("public", "bucket is public" + (f": {why}" if why else ""))
        if status == "pass":
            if self.cdn_unknown:
                return Exposure("unknown", "exposure unknown: bucket is not public, but whether CloudFront serves "
                                           f"it is unknown ({self.cdn_unknown})")
            return Exposure("private", "bucket is not public")
        if self.no_posture:
            return Exposure("unknown", f"exposure unknown: {self.no_posture}")
        if status == "unknown":
            return Exposure("unknown", "exposure unknown: " + (why or "the public-access APIs did not answer"))
        return Exposure("unknown", "exposure unknown: no public-access finding for this bucket")
