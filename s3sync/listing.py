"""Listing: S3 targets -> ObjectRefs, every page (ListObjectsV2, or ListObjectVersions with versions).

Listing is a generator so a bucket of millions of keys never sits in memory; the worker pulls refs
as it has room for them.
"""
from __future__ import annotations

import queue
import re
import threading
from dataclasses import dataclass
from typing import Any, Iterator, TypeVar

from .models import ObjectRef

T = TypeVar("T")

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,254}$", re.I)


@dataclass(frozen=True)
class S3Target:
    """``s3://bucket[/prefix]`` (``origin`` names the CloudFront origin it came from, if any)."""

    bucket: str
    prefix: str = ""
    origin: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __str__(self) -> str:
        return self.uri

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "prefix": self.prefix, "origin": self.origin}


def parse_s3_uri(uri: str) -> S3Target:
    """``s3://bucket/prefix`` -> S3Target; raises ValueError with a clear message otherwise."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 target (expected s3://bucket[/prefix]): {uri}")
    rest = uri[5:]
    bucket, _, prefix = rest.partition("/")
    if not bucket or not _BUCKET_RE.match(bucket):
        raise ValueError(f"invalid bucket name in {uri!r}")
    return S3Target(bucket=bucket, prefix=prefix)


def _etag(v: Any) -> str | None:
    return str(v).strip('"') if v else None


def _iso(v: Any) -> str | None:
    if v is None:
        return None
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def list_objects(client: Any, target: S3Target, *, versions: bool = False,
                 page_size: int = 1000) -> Iterator[ObjectRef]:
    """Yield every object under the target (all pages), "folder" markers included. With
    ``versions``, every version and delete marker (delete markers come back with
    ``delete_marker=True`` so the caller can skip them)."""
    for page in list_pages(client, target, versions=versions, page_size=page_size):
        yield from page


def list_pages(client: Any, target: S3Target, *, versions: bool = False,
               page_size: int = 1000) -> Iterator[list[ObjectRef]]:
    """:func:`list_objects` a page at a time (one list per ListObjects call)."""
    kw: dict[str, Any] = {"Bucket": target.bucket, "PaginationConfig": {"PageSize": page_size}}
    if target.prefix:
        kw["Prefix"] = target.prefix
    if not versions:
        for page in client.get_paginator("list_objects_v2").paginate(**kw):
            refs = []
            for o in page.get("Contents", ()) or ():
                refs.append(ObjectRef(bucket=target.bucket, key=o["Key"], version_id=None, etag=_etag(o.get("ETag")),
                                      size=o.get("Size"), last_modified=_iso(o.get("LastModified")),
                                      origin=target.origin, storage_class=o.get("StorageClass")))
            yield refs
        return
    for page in client.get_paginator("list_object_versions").paginate(**kw):
        refs = []
        for o in page.get("Versions", ()) or ():
            # A "null" version (written before versioning was enabled) is a version like any
            # other here: GetObject with VersionId=null reads it, not the latest object.
            refs.append(ObjectRef(bucket=target.bucket, key=o["Key"], version_id=o.get("VersionId") or None,
                                  etag=_etag(o.get("ETag")), size=o.get("Size"),
                                  last_modified=_iso(o.get("LastModified")),
                                  is_latest=bool(o.get("IsLatest", True)),
                                  origin=target.origin, storage_class=o.get("StorageClass")))
        for o in page.get("DeleteMarkers", ()) or ():
            refs.append(ObjectRef(bucket=target.bucket, key=o["Key"], version_id=o.get("VersionId") or None,
                                  last_modified=_iso(o.get("LastModified")), is_latest=bool(o.get("IsLatest", False)),
                                  delete_marker=True, origin=target.origin))
        yield refs


def prefetched(pages: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run ``pages`` in a background thread, ``depth`` items ahead of the consumer.

    Why: a listing is a chain of round trips, and the audit's work per listed object (a state
    lookup for an unchanged object, a submit for a changed one) would otherwise add to it; with
    the next page already on its way, an unchanged bucket takes its listing time plus one page.
    Exceptions reach the consumer at the point where the failed page would have; a consumer that
    stops early (an error, Ctrl-C) stops the producer at its next page.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in pages:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:  # handed to the consumer
            q.put((done, exc))

    threading.Thread(target=produce, name="s3audit-list", daemon=True).start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()


# Storage classes whose objects cannot be read without a restore (GLACIER_IR can be read directly).
ARCHIVED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


def bucket_tags(client: Any, bucket: str) -> dict[str, str]:
    """The bucket's tags (owner, team, ...) or {} when it has none or we may not read them."""
    try:
        resp = client.get_bucket_tagging(Bucket=bucket)
    except Exception:
        return {}
    return {t["Key"]: t["Value"] for t in resp.get("TagSet", []) or []}
