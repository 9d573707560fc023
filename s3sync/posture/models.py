"""Value objects of the posture room: a check's metadata and the finding it produces.

A :class:`Finding` is what every output (table, JSON, CSV, SARIF, OCSF, ASFF) serialises, so it is
defined once here. Findings are frozen so that they compare, hash and sort the same everywhere.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping


class Status(str, Enum):
    """pass: the evidence shows the control; fail: it shows the gap; unknown: the API did not answer."""

    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"

    def __str__(self) -> str:  # "fail", not "Status.FAIL"
        return self.value


SEVERITIES: tuple[str, ...] = ("informational", "low", "medium", "high", "critical")


def severity_rank(severity: str) -> int:
    """0 (informational) .. 4 (critical); raises ValueError for an unknown name."""
    try:
        return SEVERITIES.index(severity.lower())
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}: use one of {', '.join(SEVERITIES)}") from None


@dataclass(frozen=True)
class CheckMeta:
    """What a check is, independent of any run: its contract id, wording and default severity."""

    id: str
    title: str
    severity: str
    service: str
    resource_type: str
    risk: str
    remediation: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "severity": self.severity, "service": self.service,
                "resource_type": self.resource_type, "risk": self.risk, "remediation": self.remediation}


def _freeze(evidence: Mapping[str, Any] | None) -> str:
    return json.dumps(evidence or {}, sort_keys=True, default=str)


@dataclass(frozen=True, eq=False)
class Finding:
    """One check's verdict on one resource.

    ``resource`` is the ARN; ``evidence`` is the API answer that decided the status (kept as given,
    JSON-serialisable); ``owner`` is the bucket's ``owner`` tag or the config's.
    """

    check: str
    resource: str
    status: Status
    severity: str
    owner: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    remediation: str = ""
    title: str = ""
    region: str = ""
    account: str = ""
    resource_type: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        severity_rank(self.severity)

    # equality/hash over the serialised form, so a dict in evidence does not make it unhashable
    def _key(self) -> tuple:
        return (self.check, self.resource, self.status.value, self.severity, self.owner or "",
                _freeze(self.evidence), self.remediation, self.title, self.region, self.account,
                self.resource_type)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Finding) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: "Finding") -> bool:
        order = {Status.FAIL: 0, Status.UNKNOWN: 1, Status.PASS: 2}
        return ((order[self.status], -severity_rank(self.severity), self.check, self.resource)
                < (order[other.status], -severity_rank(other.severity), other.check, other.resource))

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL

    @property
    def uid(self) -> str:
        """A stable id for this (check, resource) pair: the same across runs, so tools update, not duplicate."""
        import hashlib

        return hashlib.sha256(f"{self.check}|{self.resource}".encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "resource": self.resource, "status": self.status.value,
                "severity": self.severity, "owner": self.owner, "evidence": json.loads(_freeze(self.evidence)),
                "remediation": self.remediation, "title": self.title, "region": self.region,
                "account": self.account, "resource_type": self.resource_type}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Finding":
        """The inverse of :meth:`to_dict` (findings stored in the audit's state DB come back as dicts).

        Raises ValueError/KeyError/TypeError for a dict that is not a finding (unknown severity, no check)."""
        names = ("check", "resource", "status", "severity", "owner", "evidence", "remediation", "title", "region",
                 "account", "resource_type")
        kw = {k: d[k] for k in names if d.get(k) is not None}
        return cls(**kw)

    def __str__(self) -> str:
        return f"{self.status.value.upper():7} {self.severity:8} {self.check:32} {self.resource}"
