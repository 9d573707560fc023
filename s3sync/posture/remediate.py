"""Remediation (explicit flags only): legal holds, scope tags, bucket Block Public Access.

:func:`plan` derives the exact API calls from a fresh snapshot, so applying is idempotent by
construction: once applied, the next snapshot shows the desired state and the plan is empty.
:func:`apply` performs the calls one by one and appends one JSON line per call to a log.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .clients import Unavailable
from .config import CLASS_TAG
from .s3_constants import PAB_ALL

ACTIONS = ("legal-hold", "tag", "block-public-access")


@dataclass(frozen=True)
class Action:
    """One API call: ``service``/``operation`` are boto3 names (``s3``, ``put_object_legal_hold``)."""

    kind: str
    service: str
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)
    resource: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "operation": self.operation, "params": json.loads(json.dumps(self.params)),
                "remediation": self.kind, "resource": self.resource, "reason": self.reason}

    def to_json_line(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)


@dataclass(frozen=True)
class Skipped:
    kind: str
    resource: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"remediation": self.kind, "resource": self.resource, "skipped": self.reason}


def parse_actions(value: str | Iterable[str]) -> list[str]:
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    bad = [v for v in items if v not in ACTIONS]
    if bad or not items:
        raise ValueError(f"unknown remediation {', '.join(bad) or '(none)'}: use a comma list of {', '.join(ACTIONS)}")
    return list(dict.fromkeys(items))


def plan(snapshot: Any, actions: Iterable[str]) -> tuple[list[Action], list[Skipped]]:
    """The calls that would bring the in-scope buckets to the desired state, and what cannot be fixed."""
    acts, skipped = [], []
    kinds = parse_actions(list(actions))
    for b in sorted(snapshot.buckets.values(), key=lambda x: x.name):
        if "legal-hold" in kinds and b.under_investigation:
            acts_b, sk = _legal_hold(b)
            acts += acts_b
            skipped += sk
        if "tag" in kinds:
            a = _tag(b, snapshot)
            if isinstance(a, Action):
                acts.append(a)
            elif a is not None:
                skipped.append(a)
        if "block-public-access" in kinds:
            pab = b.public_access_block
            if not (isinstance(pab, dict) and all(pab.get(k) is True for k in PAB_ALL)):
                acts.append(Action("block-public-access", "s3", "put_public_access_block",
                                   {"Bucket": b.name, "PublicAccessBlockConfiguration": dict(PAB_ALL)},
                                   b.arn, "current: " + (pab.reason if isinstance(pab, Unavailable) else json.dumps(pab))))
    return acts, skipped


def _legal_hold(b: Any) -> tuple[list[Action], list[Skipped]]:
    if isinstance(b.legal_holds, Unavailable):
        return [], [Skipped("legal-hold", b.arn, b.legal_holds.reason)]
    lock = b.object_lock
    if not (isinstance(lock, dict) and lock.get("ObjectLockEnabled") == "Enabled"):
        why = lock.reason if isinstance(lock, Unavailable) else "Object Lock is not enabled on the bucket " \
                                                                   "(it can only be enabled on a new or versioned bucket)"
        if any(o.get("status") not in (None, "ON") or "error" in o for o in b.legal_holds):
            return [], [Skipped("legal-hold", b.arn, why)]
        return [], []
    acts = []
    for o in b.legal_holds:
        if o.get("status") in (None, "ON"):
            continue  # held already, or not an object answer (missing prefix, truncation, error)
        params = {"Bucket": b.name, "Key": o["key"], "LegalHold": {"Status": "ON"}}
        acts.append(Action("legal-hold", "s3", "put_object_legal_hold", params, f"{b.arn}/{o['key']}",
                           "object under investigation has no legal hold"))
    return acts, []


def _tag(b: Any, snapshot: Any) -> Action | Skipped | None:
    entry = snapshot.config.bucket(b.name)
    if entry is None:
        return None  # tags already put it in scope; nothing the config asks to add
    if isinstance(b.tags, Unavailable):
        return Skipped("tag", b.arn, b.tags.reason)
    want = {CLASS_TAG: entry.cls or b.cls}
    if entry.owner:
        want["owner"] = entry.owner
    current = dict(b.tags)
    if all(current.get(k) == v for k, v in want.items()):
        return None
    merged = dict(current, **want)  # keep every existing tag: PutBucketTagging replaces the whole set
    return Action("tag", "s3", "put_bucket_tagging",
                  {"Bucket": b.name, "Tagging": {"TagSet": [{"Key": k, "Value": v} for k, v in sorted(merged.items())]}},
                  b.arn, f"set {', '.join(f'{k}={v}' for k, v in want.items() if current.get(k) != v)}")


def apply(actions: Iterable[Action], clients: Any, log_path: str | Path | None = None) -> list[dict[str, Any]]:
    """Perform the calls; each result (ok or the error) is returned and appended to ``log_path`` as JSON."""
    from botocore.exceptions import BotoCoreError, ClientError

    results = []
    log = None
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8")
    try:
        for a in actions:
            rec = dict(a.to_dict(), time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            try:
                getattr(clients(a.service), a.operation)(**a.params)
                rec["result"] = "ok"
            except (ClientError, BotoCoreError) as exc:
                from s3sync.aws import describe_error

                rec["result"] = "error"
                rec["error"] = describe_error(exc)
            results.append(rec)
            if log:
                log.write(json.dumps(rec) + "\n")
                log.flush()
    finally:
        if log:
            log.close()
    return results
