"""Value objects of the S3 audit: what was listed, what each object turned out to be, the whole run.

They are small frozen dataclasses with ``to_dict()`` so the library, the CLI, the SQLite state and
every report format serialise the same thing (never ad-hoc dicts).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Iterable, Mapping

# Every status an audited object can end in, in the order reports list them (worst first).
STATUSES: tuple[str, ...] = (
    "leaked_training_asset",
    "invalid_provenance",
    "unreadable",
    "missing_provenance",
    "untrusted",
    "watermark_only",
    "ok",
)
# --fail-on names -> the statuses they cover.
FAIL_ON: dict[str, frozenset[str]] = {
    "missing": frozenset({"missing_provenance"}),
    "invalid": frozenset({"invalid_provenance"}),
    "untrusted": frozenset({"untrusted"}),
    "leak": frozenset({"leaked_training_asset"}),
    "unreadable": frozenset({"unreadable"}),
    "watermark_only": frozenset({"watermark_only"}),
    # not an object status: a CloudFront edge sample that lost its origin's provenance
    "edge": frozenset(),
}
SEVERITY: dict[str, str] = {
    "leaked_training_asset": "critical", "invalid_provenance": "high", "unreadable": "medium",
    "missing_provenance": "high", "untrusted": "medium", "watermark_only": "low", "ok": "none",
}
# Exposure of the object's bucket (see :class:`Exposure`).
EXPOSURE_STATES: tuple[str, ...] = ("public", "private", "unknown")


def object_severity(status: str, exposure: str = "unknown") -> str:
    """The one rule for an audited object's severity: by status, and for a leaked training asset by
    the exposure of its bucket (issue 5): ``critical`` when the bucket is public or served through
    CloudFront, ``high`` when it is known not to be public, ``critical`` when that is unknown."""
    if status == "leaked_training_asset" and exposure == "private":
        return "high"
    return SEVERITY.get(status, "medium")


@dataclass(frozen=True)
class Exposure:
    """Whether an audited object can be fetched by the public: ``state`` is one of
    :data:`EXPOSURE_STATES`, ``why`` one human line with the evidence (``bucket is public: ...``,
    ``served by CloudFront distribution ...``, ``exposure unknown: ...``)."""

    state: str
    why: str

    def to_dict(self) -> dict[str, str]:
        return {"state": self.state, "why": self.why}


class _S3Object:
    """``uri`` and ``ident`` of anything with ``bucket``, ``key`` and ``version_id`` (one definition)."""

    __slots__ = ()
    bucket: str
    key: str
    version_id: str | None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def ident(self) -> tuple[str, str, str]:
        """The identity in the state DB: (bucket, key, version or '')."""
        return (self.bucket, self.key, self.version_id or "")


@dataclass(frozen=True, order=True)
class ObjectRef(_S3Object):
    """One listed object (or object version) to audit."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    content_type: str | None = None  # ListObjectsV2 does not return it; HEAD/GET fill it in
    last_modified: str | None = None
    is_latest: bool = True
    delete_marker: bool = False
    origin: str | None = None  # "cloudfront:DIST/origin-id" when it came from a distribution
    storage_class: str | None = None

    def with_(self, **kw: Any) -> "ObjectRef":
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id, "etag": self.etag,
                "size": self.size, "content_type": self.content_type, "last_modified": self.last_modified,
                "is_latest": self.is_latest, "delete_marker": self.delete_marker, "origin": self.origin,
                "storage_class": self.storage_class}


def _freeze(d: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...] | None:
    if d is None:
        return None
    return tuple(sorted((str(k), json.dumps(v, sort_keys=True, default=str)) for k, v in d.items()))


@dataclass(frozen=True)
class ObjectResult(_S3Object):
    """The audit verdict for one object, with the evidence behind it.

    ``c2pa`` is ``{"state", "codes", "reason", ...}`` (the states of ``synthguard verify``),
    ``watermark`` is ``{"detected", "payload" (hex), ...}``, ``training_match`` is the registry's
    best match or None. ``cached`` tells the object was not downloaded again in this run because
    its ETag/version had not changed since the last completed check.
    """

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size: int | None
    content_type: str | None
    status: str
    c2pa: Mapping[str, Any] | None = None
    watermark: Mapping[str, Any] | None = None
    training_match: Mapping[str, Any] | None = None
    error: str | None = None
    media_type: str | None = None
    owner_tags: Mapping[str, str] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    checked_at: str | None = None
    cached: bool = False
    origin: str | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectResult):
            return NotImplemented
        return self._cmp_key() == other._cmp_key()

    def __hash__(self) -> int:
        return hash(self._cmp_key())

    def _cmp_key(self) -> tuple:
        # Timings, check time and the cache flag describe *how* we got the verdict, not the verdict.
        return (self.bucket, self.key, self.version_id, self.etag, self.size, self.content_type, self.status,
                _freeze(self.c2pa), _freeze(self.watermark), _freeze(self.training_match), self.error,
                self.media_type, _freeze(dict(self.owner_tags)), self.origin)

    @property
    def severity(self) -> str:
        """The severity without knowing the bucket's exposure (a leak is then ``critical``);
        :meth:`AuditResult.severity_of` knows it and is what the reports use."""
        return object_severity(self.status)

    @property
    def reason(self) -> str:
        """One human line: why this status."""
        if self.error:
            return self.error
        parts = []
        if self.training_match:
            tm = self.training_match
            parts.append(f"matches training asset {tm.get('asset_id')} (distance {tm.get('distance')})")
        if self.c2pa:
            st = self.c2pa.get("state")
            codes = [c for c in (self.c2pa.get("codes") or []) if c]
            parts.append(f"c2pa {st}" + (f" ({', '.join(codes[:3])})" if codes and st != "trusted" else ""))
        if self.watermark is not None:
            if self.watermark.get("detected"):
                parts.append(f"watermark {self.watermark.get('payload') or 'detected'}")
            elif self.watermark.get("skipped"):
                parts.append(f"watermark not checked ({self.watermark.get('skipped')})")
            else:
                parts.append("no watermark")
        return "; ".join(parts)

    def with_(self, **kw: Any) -> "ObjectResult":
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket, "key": self.key, "version_id": self.version_id, "etag": self.etag,
            "size": self.size, "content_type": self.content_type, "media_type": self.media_type,
            "status": self.status,
            "c2pa": dict(self.c2pa) if self.c2pa is not None else None,
            "watermark": dict(self.watermark) if self.watermark is not None else None,
            "training_match": dict(self.training_match) if self.training_match is not None else None,
            "error": self.error, "owner_tags": dict(self.owner_tags), "timings": dict(self.timings),
            "checked_at": self.checked_at, "cached": self.cached, "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ObjectResult":
        names = cls.__dataclass_fields__.keys()
        kw = {k: d.get(k) for k in names if k in d}
        kw["owner_tags"] = dict(d.get("owner_tags") or {})
        kw["timings"] = dict(d.get("timings") or {})
        kw["cached"] = bool(d.get("cached", False))
        return cls(**kw)

    def __str__(self) -> str:
        return f"{self.status:22} {self.uri}" + (f"  [{self.reason}]" if self.reason else "")


@dataclass(frozen=True)
class Skipped:
    """An object that was listed but not audited, and why (not media, delete marker, ...)."""

    bucket: str
    key: str
    version_id: str | None
    reason: str
    etag: str | None = None
    content_type: str | None = None
    last_modified: str | None = None  # as listed: a cached skip holds only while it is unchanged

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id, "reason": self.reason,
                "etag": self.etag, "content_type": self.content_type, "last_modified": self.last_modified}


def count_statuses(results: Iterable[ObjectResult]) -> dict[str, int]:
    counts = {s: 0 for s in STATUSES}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


@dataclass(frozen=True)
class AuditResult:
    """A whole audit run: a summary (counts by status, skipped with reasons, timings), every object's
    result, and room for findings other checks add (``findings``: posture results, edge samples)."""

    run_id: str
    summary: Mapping[str, Any]
    objects: tuple[ObjectResult, ...]
    skipped: tuple[Skipped, ...] = ()
    findings: tuple[Any, ...] = ()  # posture Findings (issue 6) or plain dicts; rendered by every report
    edge_samples: tuple[Any, ...] = ()  # CloudFront edge checks (cloudfront.sample_edge)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.summary.get("counts", {}))

    @cached_property
    def _exposures(self) -> Any:
        from .auditposture import ExposureMap

        return ExposureMap(self.findings, self.summary)

    def exposure_of(self, o: ObjectResult) -> Exposure:
        """How exposed ``o`` is, from this run's posture findings and CloudFront origins."""
        return self._exposures.of(o.bucket, o.key, o.origin)

    def severity_of(self, o: ObjectResult) -> str:
        """``o``'s severity in this run (:func:`object_severity` with its bucket's exposure)."""
        return object_severity(o.status, self.exposure_of(o).state)

    def object_dict(self, o: ObjectResult) -> dict[str, Any]:
        """``o.to_dict()`` plus its ``severity`` and ``exposure`` in this run (JSON, JSON Lines)."""
        exp = self.exposure_of(o)
        return {**o.to_dict(), "severity": object_severity(o.status, exp.state), "exposure": exp.to_dict()}

    def failed(self, fail_on: Iterable[str]) -> list[Any]:
        """Objects whose status is covered by the ``--fail-on`` names (see :data:`FAIL_ON`), and with
        ``edge``, the edge samples whose copy lost the origin's provenance (checked, not errors)."""
        statuses: set[str] = set()
        names = set(fail_on)
        for name in names:
            statuses |= FAIL_ON.get(name, frozenset({name}))
        out: list[Any] = [o for o in self.objects if o.status in statuses]
        if "edge" in names:
            out += self.edge_losses()
        return out

    def edge_losses(self) -> list[dict[str, Any]]:
        """Edge samples (as dicts) whose copy lost the origin's provenance: checked ones, not the
        samples that could not be checked (those carry an error)."""
        return [d for d in map(_as_dict, self.edge_samples) if not d.get("provenance_preserved") and not d.get("error")]

    def failed_findings(self, severity: str | None) -> list[Any]:
        """Failed posture findings at or above ``severity`` (``--fail-severity``; None or "none": never).

        Findings may be :class:`~s3sync.posture.models.Finding` values or the dicts the state DB
        gives back; both are judged by their ``status`` and ``severity``."""
        if severity is None or str(severity).lower() == "none":
            return []
        from .posture.models import severity_rank

        floor = severity_rank(severity)
        out = []
        for f in self.findings:
            d = _as_dict(f)
            if not isinstance(d, Mapping) or str(d.get("status")) != "fail":
                continue
            try:
                if severity_rank(str(d.get("severity"))) >= floor:
                    out.append(f)
            except ValueError:  # a finding without a known severity cannot pass a severity gate
                out.append(f)
        return out

    def to_dict(self, *, include_skipped: int = 100) -> dict[str, Any]:
        """JSON shape: {"run_id", "summary", "objects": [...], "findings": [...], ...}."""
        d: dict[str, Any] = {"run_id": self.run_id, "summary": dict(self.summary),
                             "objects": [self.object_dict(o) for o in self.objects],
                             "findings": [_as_dict(f) for f in self.findings]}
        if self.edge_samples:
            d["edge_samples"] = [_as_dict(e) for e in self.edge_samples]
        if include_skipped and self.skipped:
            d["skipped"] = [s.to_dict() for s in self.skipped[:include_skipped]]
        return d

    def with_(self, **kw: Any) -> "AuditResult":
        return replace(self, **kw)


def _as_dict(x: Any) -> Any:
    if hasattr(x, "to_dict"):
        return x.to_dict()
    return x
