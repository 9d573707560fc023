"""s3sync: audit S3 buckets and CloudFront origins for media without provenance.

Python API (the CLI wraps it)::

    import s3sync
    result = s3sync.audit(["s3://bucket/prefix"], endpoint_url=..., trust_anchors="root.pem")
    for obj in s3sync.iter_audit(["s3://bucket"], state=".synthguard/state.db"):
        print(obj.status, obj.uri)

Heavy modules load on first use, so ``import s3sync.localserver`` stays light.
"""
from __future__ import annotations

from typing import Any

__all__ = ["audit", "iter_audit", "Auditor", "AuditError", "AuditResult", "ObjectResult", "ObjectRef",
           "Skipped", "ClientFactory", "State", "STATUSES"]

_LAZY = {
    "audit": "worker", "iter_audit": "worker", "Auditor": "worker", "AuditError": "worker",
    "AuditResult": "models", "ObjectResult": "models", "ObjectRef": "models", "Skipped": "models",
    "STATUSES": "models", "ClientFactory": "aws", "State": "state",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 's3sync' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value
