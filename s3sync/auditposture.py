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
