"""Leak-exposure posture of synthetic-media estates (issue 6).

Collect once (:func:`collect`), check many (:func:`run_checks`); :func:`run_posture` does both and
is what ``synthguard posture`` and ``synthguard audit`` call.
"""
from __future__ import annotations

from typing import Any, Iterable

from .checks import CHECK_IDS, REGISTRY, needs_for, run_checks
from .clients import Clients, Unavailable
from .collect import BucketSnapshot, Snapshot, collect
from .config import BucketScope, PostureConfig, load_config, parse_config
from .models import SEVERITIES, CheckMeta, Finding, Status, severity_rank


def run_posture(buckets: Iterable[str] | None = None, config: PostureConfig | str | None = None,
                clients: Clients | None = None, session: Any = None, endpoint_url: str | None = None,
                region: str | None = None, profile: str | None = None, checks: Iterable[str] | None = None,
                exclude: Iterable[str] | None = None, snapshot_out: list | None = None,
                factory: Any = None) -> list[Finding]:
    """Collect the posture of the in-scope buckets and return every check's findings (sorted).

    ``buckets`` limits the run to these names (the audit passes the buckets it audited; they are
    still scoped by tags/config). ``config`` is a :class:`PostureConfig` or a path to synthguard.toml.
    Pass ``snapshot_out=[]`` to receive the collected :class:`Snapshot` as its only element, and
    ``factory`` (an :class:`s3sync.aws.ClientFactory`) to reuse the audit's endpoint/profile/region.
    """
    cfg = config if isinstance(config, PostureConfig) else load_config(config)
    clients = clients or Clients(session=session, endpoint_url=endpoint_url, region=region or cfg.region,
                                 profile=profile, factory=factory)
    snap = collect(clients, cfg, buckets=buckets, needs=needs_for(checks, exclude))
    if snapshot_out is not None:
        snapshot_out.append(snap)
    return run_checks(snap, checks=checks, exclude=exclude)


def failed_at_or_above(findings: Iterable[Finding], severity: str | None) -> list[Finding]:
    """Failed findings at or above ``severity`` (None or "none": never)."""
    if severity is None or severity.lower() == "none":
        return []
    floor = severity_rank(severity)
    return [f for f in findings if f.failed and severity_rank(f.severity) >= floor]


__all__ = ["BucketScope", "BucketSnapshot", "CHECK_IDS", "CheckMeta", "Clients", "Finding", "PostureConfig",
           "REGISTRY", "SEVERITIES", "Snapshot", "Status", "Unavailable", "collect", "failed_at_or_above",
           "load_config", "parse_config", "run_checks", "run_posture", "severity_rank"]
