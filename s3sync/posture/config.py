"""Which resources matter: ``synthguard.toml`` (the ``[posture]`` table) plus bucket tags.

A bucket is in scope when its ``synthguard:class`` tag is ``synthetic-media`` or ``training-data``
or when the config lists it; untagged, unlisted buckets are counted, not checked. The config wins
over tags for class and owner because it is the operator's explicit statement.

Example::

    [posture]
    allowed_principals = ["arn:aws:iam::123456789012:role/synthguard-worker"]
    cloudtrail_log_group = "aws-cloudtrail-logs"

    [[posture.buckets]]
    name = "gen-images"
    class = "synthetic-media"
    owner = "media-team@example.com"
    prefixes = ["outputs/"]
    allowed_principals = ["arn:aws:iam::123456789012:role/publisher"]
    under_investigation = ["outputs/leak-2026-11/"]
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

CLASS_TAG = "synthguard:class"
OWNER_TAGS = ("owner", "synthguard:owner")
INVESTIGATION_TAG = "synthguard:investigation"
CLASSES = ("synthetic-media", "training-data")

_BUCKET_KEYS = {"name", "class", "owner", "prefixes", "allowed_principals", "under_investigation"}
_TOP_KEYS = {"buckets", "allowed_principals", "cloudtrail_log_group", "account_id", "region",
             "macie_regexes", "worker_role"}


@dataclass(frozen=True)
class BucketScope:
    """One listed bucket: its class, owner, the prefixes that matter, who may read it, what is under investigation."""

    name: str
    cls: str | None = None
    owner: str | None = None
    prefixes: tuple[str, ...] = ()
    allowed_principals: tuple[str, ...] = ()
    under_investigation: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class": self.cls, "owner": self.owner, "prefixes": list(self.prefixes),
                "allowed_principals": list(self.allowed_principals),
                "under_investigation": list(self.under_investigation)}


@dataclass(frozen=True)
class PostureConfig:
    buckets: tuple[BucketScope, ...] = ()
    allowed_principals: tuple[str, ...] = ()
    cloudtrail_log_group: str = "aws-cloudtrail-logs"
    account_id: str | None = None
    region: str | None = None
    macie_regexes: Mapping[str, str] = field(default_factory=dict)
    worker_role: str = "synthguard-worker"

    def bucket(self, name: str) -> BucketScope | None:
        for b in self.buckets:
            if b.name == name:
                return b
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"buckets": [b.to_dict() for b in self.buckets], "allowed_principals": list(self.allowed_principals),
                "cloudtrail_log_group": self.cloudtrail_log_group, "account_id": self.account_id,
                "region": self.region, "macie_regexes": dict(self.macie_regexes), "worker_role": self.worker_role}


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def parse_config(data: Mapping[str, Any], source: str = "config") -> PostureConfig:
    """Validate a parsed TOML mapping (the ``[posture]`` table, or the root when it has none)."""
    table = data.get("posture", data) if isinstance(data, Mapping) else None
    if not isinstance(table, Mapping):
        raise ValueError(f"{source}: [posture] must be a table")
    unknown = set(table) - _TOP_KEYS
    if "posture" in data and unknown:
        raise ValueError(f"{source}: unknown [posture] key(s): {', '.join(sorted(unknown))}")
    buckets = []
    seen = set()
    for i, b in enumerate(table.get("buckets", []) or []):
        where = f"{source}: posture.buckets[{i}]"
        if not isinstance(b, Mapping) or not isinstance(b.get("name"), str) or not b["name"]:
            raise ValueError(f"{where}: every bucket needs a name")
        extra = set(b) - _BUCKET_KEYS
        if extra:
            raise ValueError(f"{where}: unknown key(s): {', '.join(sorted(extra))}")
        cls = b.get("class")
        if cls is not None and cls not in CLASSES:
            raise ValueError(f"{where}: class must be one of {', '.join(CLASSES)}, not {cls!r}")
        if b["name"] in seen:
            raise ValueError(f"{where}: bucket {b['name']!r} listed twice")
        seen.add(b["name"])
        owner = b.get("owner")
        if owner is not None and not isinstance(owner, str):
            raise ValueError(f"{where}: owner must be a string")
        buckets.append(BucketScope(name=b["name"], cls=cls, owner=owner,
                                   prefixes=_strs(b.get("prefixes"), f"{where}.prefixes"),
                                   allowed_principals=_strs(b.get("allowed_principals"), f"{where}.allowed_principals"),
                                   under_investigation=_strs(b.get("under_investigation"),
                                                             f"{where}.under_investigation")))
    regexes = table.get("macie_regexes", {}) or {}
    if not isinstance(regexes, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in regexes.items()):
        raise ValueError(f"{source}: posture.macie_regexes must map names to regex strings")
    return PostureConfig(buckets=tuple(buckets),
                         allowed_principals=_strs(table.get("allowed_principals"), f"{source}: allowed_principals"),
                         cloudtrail_log_group=str(table.get("cloudtrail_log_group", "aws-cloudtrail-logs")),
                         account_id=table.get("account_id"), region=table.get("region"),
                         macie_regexes=dict(regexes), worker_role=str(table.get("worker_role", "synthguard-worker")))


def load_config(path: str | Path | None) -> PostureConfig:
    """Read ``synthguard.toml``; ``None`` gives the empty config (tags alone decide the scope)."""
    if path is None:
        return PostureConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not valid TOML: {exc}") from None
    except IsADirectoryError:
        raise ValueError(f"{p}: is a directory, expected a synthguard.toml file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not valid TOML: not UTF-8 text") from None
    return parse_config(data, str(p))
