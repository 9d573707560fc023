"""The check registry: each check is a pure function ``snapshot -> Iterable[Finding]`` plus metadata."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from ..clients import Unavailable
from ..models import CheckMeta, Finding, Status

CheckFn = Callable[[Any], Iterable[Finding]]
REGISTRY: dict[str, tuple[CheckMeta, CheckFn]] = {}


def check(meta: CheckMeta) -> Callable[[CheckFn], CheckFn]:
    """Register a check under its contract id (ids are stable: users suppress and route by them)."""
    def deco(fn: CheckFn) -> CheckFn:
        if meta.id in REGISTRY:
            raise RuntimeError(f"duplicate check id {meta.id}")
        REGISTRY[meta.id] = (meta, fn)
        fn.meta = meta  # type: ignore[attr-defined]
        return fn
    return deco


def make(meta: CheckMeta, snap: Any, resource: str, status: Status | str, evidence: Mapping[str, Any],
         owner: str | None = None, severity: str | None = None, resource_type: str | None = None) -> Finding:
    """A Finding with the check's metadata filled in (severity may be raised/lowered per resource)."""
    return Finding(check=meta.id, resource=resource, status=Status(status), severity=severity or meta.severity,
                   owner=owner, evidence=_plain(evidence), remediation=meta.remediation, title=meta.title,
                   region=getattr(snap, "region", ""), account=getattr(snap, "account_id", ""),
                   resource_type=resource_type or meta.resource_type)


def unknown(meta: CheckMeta, snap: Any, resource: str, why: Unavailable | str, owner: str | None = None,
            **extra: Any) -> Finding:
    reason = why.reason if isinstance(why, Unavailable) else str(why)
    ev: dict[str, Any] = {"reason": reason}
    if isinstance(why, Unavailable):
        ev["error_code"] = why.code
    ev.update(extra)
    return make(meta, snap, resource, Status.UNKNOWN, ev, owner=owner)


def _plain(v: Any) -> Any:
    if isinstance(v, Unavailable):
        return v.to_dict()
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_plain(x) for x in v]
    if hasattr(v, "to_dict"):
        return v.to_dict()
    return v


def owners(values: Iterable[str | None]) -> str | None:
    """Several owners (a key used by many buckets) become one comma-separated field."""
    got = sorted({v for v in values if v})
    return ", ".join(got) if got else None
