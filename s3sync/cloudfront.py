"""CloudFront origins and edge sampling: which buckets a distribution serves, and what the edge serves.

Why this exists: a bucket can be perfectly signed while the CDN in front of it serves something
else. Image resizing and format conversion at the edge (Lambda@Edge, CloudFront Functions with an
image handler, "optimisation" services) re-encode the pixels and drop the C2PA manifest, so the asset
a customer downloads carries no provenance even though the origin does. Two steps:

1. :func:`resolve_targets` turns ``cloudfront:DIST_ID`` / ``cloudfront:all`` into
   :class:`OriginTarget` values (bucket + prefix from the origin domain and origin path), so the
   S3 audit can audit the origin buckets exactly like ``s3://`` targets. Origins that are not S3
   (an API, a load balancer) are listed in ``.skipped`` with the reason, never silently dropped.
2. :func:`sample_edge` / :func:`sample_edges` fetch a deterministic sample of the audited origin
   objects through the distribution's domain (plain HTTPS, like a browser: not through boto3) and
   check that the bytes served still carry the provenance the origin object has.

The domain -> base URL mapping is overridable (``--edge-url-map DOMAIN=URL`` or the
``SYNTHGUARD_EDGE_URL_MAP`` variable), so tests and staging can point a distribution at a local
HTTP server.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from . import contentenc

EDGE_URL_MAP_ENV = "SYNTHGUARD_EDGE_URL_MAP"
SPEC_PREFIX = "cloudfront:"
DEFAULT_TIMEOUT = 20.0
MAX_EDGE_BYTES = 64 * 1024 * 1024  # memory bound per sample: larger edge objects are reported, not read
# What a browser sends: edges that convert formats (AVIF/WebP) decide on Accept, so sample with it.
BROWSER_ACCEPT = "image/avif,image/webp,image/apng,image/*,video/*,*/*;q=0.8"

# C2PA states that mean "no manifest to compare" (the spellings of `synthguard verify` and aliases).
_NO_MANIFEST_STATES = frozenset({"", "none", "missing", "absent", "no_manifest", "not_found", "unsigned"})
_UNUSABLE_STATES = frozenset({"error", "unreadable", "unsupported"})

_REGION = r"(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d+)"
_SUFFIX = r"\.amazonaws\.com(?:\.cn)?"
# Virtual-hosted REST endpoints: bucket.s3[-fips][.dualstack][.REGION | -REGION | -external-1].amazonaws.com
_REST_RE = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.\-_]{1,254})\.s3(?:-fips)?"
                      r"(?:\.dualstack)?(?:[.-]" + _REGION + r"|-external-1)?" + _SUFFIX + r"$")
# Static website endpoints: bucket.s3-website-REGION / bucket.s3-website.REGION
_WEBSITE_RE = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.\-_]{1,254})\.s3-website[.-]" + _REGION + _SUFFIX + r"$")
# Path-style host with the bucket as the first segment of the origin path.
_PATH_STYLE_RE = re.compile(r"^s3(?:-fips)?(?:\.dualstack)?(?:[.-]" + _REGION + r"|-external-1)?" + _SUFFIX + r"$")
# S3 hosts that do not name a bucket (access points, Object Lambda, accelerate, Outposts).
_OTHER_S3_RE = re.compile(r"\.(s3-accesspoint|s3-object-lambda|s3-accelerate|s3-outposts)[.-]")


class CloudFrontError(ValueError):
    """A CloudFront target that cannot be resolved: printed by the CLI as one line (exit 2)."""


# ----------------------------------------------------------------------------- values
@dataclass(frozen=True)
class OriginTarget:
    """One S3 origin of one distribution: the bucket and prefix the audit must cover.

    ``domain_name`` is the address viewers use (first alias, else ``*.cloudfront.net``);
    ``routes`` is the distribution's ordered (path pattern, origin ids) table so :meth:`serves`
    can tell whether a key is reachable through this origin at all.
    """

    distribution_id: str
    domain_name: str
    origin_id: str
    bucket: str
    prefix: str
    kind: str  # "rest" | "website"
    origin_domain: str = ""
    region: str | None = None
    cloudfront_domain: str = ""
    aliases: tuple[str, ...] = ()
    enabled: bool = True
    routes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def s3_uri(self) -> str:
        """The ``s3://bucket/prefix`` target the audit runs for this origin."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def spec(self) -> str:
        return f"{SPEC_PREFIX}{self.distribution_id}"

    def domains(self) -> tuple[str, ...]:
        """Every name viewers can use for this distribution (for the URL map lookup)."""
        out = [self.domain_name, self.cloudfront_domain, *self.aliases]
        return tuple(dict.fromkeys(d for d in out if d))

    def url_path(self, key: str) -> str | None:
        """The viewer path of an origin key (origin path stripped), or None if outside the prefix."""
        if self.prefix and not key.startswith(self.prefix):
            return None
        rest = key[len(self.prefix):]
        return "/" + urllib.parse.quote(rest, safe="/~!$&'()*+,;=:@")

    def serves(self, key: str) -> bool:
        """True when the key lies under the origin path and the cache behaviours route it here."""
        path = self.url_path(key)
        if path is None:
            return False
        if not self.routes:
            return True
        raw = "/" + key[len(self.prefix):]
        for pattern, origin_ids in self.routes:
            if pattern == "*" or _path_match(pattern, raw):
                return self.origin_id in origin_ids
        return False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        d["routes"] = [{"path_pattern": p, "origin_ids": list(ids)} for p, ids in self.routes]
        d["s3_uri"] = self.s3_uri
        return d

    def __str__(self) -> str:
        return f"{self.spec} {self.origin_id} -> {self.s3_uri} ({self.kind})"


@dataclass(frozen=True)
class SkippedOrigin:
    """An origin that is not an S3 bucket (or cannot be mapped to one), with the reason."""

    distribution_id: str
    origin_id: str
    origin_domain: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OriginTargets(list):
    """The list of :class:`OriginTarget` :func:`resolve_targets` returns, plus ``.skipped`` origins.

    A plain list for callers that only iterate; ``skipped`` keeps the origins that were not audited.
    """

    def __init__(self, targets: Iterable[OriginTarget] = (), skipped: Iterable[SkippedOrigin] = ()) -> None:
        super().__init__(targets)
        self.skipped: list[SkippedOrigin] = list(skipped)

    def to_dict(self) -> dict[str, Any]:
        return {"targets": [t.to_dict() for t in self], "skipped": [s.to_dict() for s in self.skipped]}


@dataclass(frozen=True)
class EdgeSample:
    """One object fetched through the edge and compared with what the origin audit found."""

    distribution_id: str
    origin_id: str
    bucket: str
    key: str
    url: str
    origin_status: str | None
    origin_c2pa_state: str | None
    origin_watermark: str | None  # payload hex when the origin had a watermark
    http_status: int | None = None
    edge_content_type: str | None = None
    edge_size: int | None = None
    edge_c2pa_state: str | None = None
    edge_c2pa_codes: tuple[str, ...] = ()
    edge_watermark_detected: bool | None = None
    edge_watermark: str | None = None
    bytes_identical: bool | None = None  # None when the ETag is not a plain MD5
    provenance_preserved: bool = False
    reason: str = ""
    error: str | None = None
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["edge_c2pa_codes"] = list(self.edge_c2pa_codes)
        return d

    def __str__(self) -> str:
        flag = "preserved" if self.provenance_preserved else "NOT preserved"
        return f"{self.url}: {flag}: {self.reason}"


# ----------------------------------------------------------------------------- resolving origins
def is_cloudfront_spec(spec: str) -> bool:
    return isinstance(spec, str) and spec.lower().startswith(SPEC_PREFIX)


def parse_origin_domain(domain: str, origin_path: str = "") -> tuple[str, str, str | None, str] | str:
    """Map an origin domain (+ origin path) to ``(bucket, prefix, region, kind)``, or a skip reason.

    REST endpoints (``b.s3.amazonaws.com``, ``b.s3.REGION...``, ``b.s3-REGION...``, dualstack),
    website endpoints (``b.s3-website-REGION...``, ``b.s3-website.REGION...``) and path-style hosts
    (``s3.REGION.amazonaws.com`` with ``/bucket/...`` as origin path) are S3; anything else is not.
    """
    host = (domain or "").strip().lower().rstrip(".")
    path = (origin_path or "").strip("/")
    if not host:
        return "origin has no domain name"
    m = _WEBSITE_RE.match(host)
    kind = "website"
    if not m:
        if _OTHER_S3_RE.search("." + host):
            return f"S3 access point / Object Lambda / accelerate origin {host!r} does not name a bucket"
        m = _REST_RE.match(host)
        kind = "rest"
    if m:
        return m.group("bucket"), (path + "/") if path else "", m.groupdict().get("region"), kind
    m = _PATH_STYLE_RE.match(host)
    if m:
        bucket, _, rest = path.partition("/")
        if not bucket:
            return f"path-style S3 origin {host!r} without a bucket in the origin path"
        return bucket, (rest.strip("/") + "/") if rest.strip("/") else "", m.group("region"), "rest"
    return f"custom origin {host!r} is not an S3 bucket endpoint"


def _path_match(pattern: str, path: str) -> bool:
    """CloudFront path patterns: case-sensitive, ``*`` and ``?`` wildcards, leading slash optional."""
    if not pattern.startswith("/"):
        pattern = "/" + pattern
    return fnmatch.fnmatchcase(path, pattern)


def _items(block: Any) -> list:
    return list((block or {}).get("Items") or [])


def _routes(config: Mapping[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Ordered (pattern, origin ids) from the cache behaviours; origin groups expand to members."""
    groups: dict[str, tuple[str, ...]] = {}
    for g in _items(config.get("OriginGroups")):
        groups[g.get("Id", "")] = tuple(m.get("OriginId", "") for m in _items(g.get("Members")))

    def ids(target: str) -> tuple[str, ...]:
        return groups.get(target, (target,))

    out: list[tuple[str, tuple[str, ...]]] = []
    for cb in _items(config.get("CacheBehaviors")):
        out.append((cb.get("PathPattern", ""), ids(cb.get("TargetOriginId", ""))))
    default = (config.get("DefaultCacheBehavior") or {}).get("TargetOriginId")
    if default:
        out.append(("*", ids(default)))
    return tuple(out)


def _cloudfront_client(clients: Any):
    """Accept a ClientFactory/boto3 Session (``.client(name)``), a callable, or a CloudFront client."""
    if clients is None:
        from s3sync.aws import ClientFactory

        return ClientFactory().client("cloudfront")
    if hasattr(clients, "list_distributions"):
        return clients
    if hasattr(clients, "client"):
        return clients.client("cloudfront")
    if callable(clients):
        return clients("cloudfront")
    raise TypeError(f"clients must provide .client('cloudfront'), got {type(clients).__name__}")


def _endpoint_of(cf: Any) -> str:
    try:
        return str(cf.meta.endpoint_url)
    except Exception:
        return "the CloudFront endpoint"


def _explain(exc: BaseException, spec: str, cf: Any, what: str) -> CloudFrontError:
    """A one-line, actionable message for a failed CloudFront call."""
    from botocore.exceptions import (ClientError, EndpointConnectionError, NoCredentialsError,
                                     BotoCoreError)

    endpoint = _endpoint_of(cf)
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        msg = err.get("Message") or ""
        if code == "NoSuchDistribution":
            return CloudFrontError(f"{spec}: no such CloudFront distribution ({what}); "
                                   "list them with 'aws cloudfront list-distributions'")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation") or status == 403:
            return CloudFrontError(f"{spec}: access denied to CloudFront {what} ({msg or code}); the audit needs "
                                   "cloudfront:ListDistributions and cloudfront:GetDistributionConfig")
        if code in ("InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidAccessKeyId"):
            return CloudFrontError(f"{spec}: AWS credentials rejected by CloudFront ({code}: {msg})")
        return CloudFrontError(f"{spec}: the endpoint {endpoint} did not answer {what} as CloudFront "
                               f"(HTTP {status}, {code or 'no error code'}{': ' + msg if msg else ''}); "
                               "if --endpoint-url points at an S3-only server, set AWS_ENDPOINT_URL_CLOUDFRONT")
    if isinstance(exc, NoCredentialsError):
        return CloudFrontError(f"{spec}: no AWS credentials found for CloudFront (set a profile or AWS_* variables)")
    if isinstance(exc, EndpointConnectionError):
        return CloudFrontError(f"{spec}: cannot connect to the CloudFront endpoint {endpoint}")
    if isinstance(exc, BotoCoreError):
        return CloudFrontError(f"{spec}: the endpoint {endpoint} did not answer {what} as CloudFront "
                               f"({type(exc).__name__}: {exc}); if --endpoint-url points at an S3-only server, "
                               "set AWS_ENDPOINT_URL_CLOUDFRONT")
    return CloudFrontError(f"{spec}: CloudFront {what} failed: {type(exc).__name__}: {exc}")


def _list_distributions(cf: Any, spec: str) -> list[tuple[str, str]]:
    """(id, ``*.cloudfront.net`` domain) of every distribution, all pages."""
    ids: list[tuple[str, str]] = []
    try:
        for page in cf.get_paginator("list_distributions").paginate():
            dl = page.get("DistributionList")
            if dl is None:
                raise CloudFrontError(f"{spec}: the endpoint {_endpoint_of(cf)} answered ListDistributions "
                                      "without a DistributionList; it is not CloudFront "
                                      "(set AWS_ENDPOINT_URL_CLOUDFRONT)")
            ids.extend((item["Id"], item.get("DomainName") or "") for item in _items(dl))
    except CloudFrontError:
        raise
    except Exception as exc:
        raise _explain(exc, spec, cf, "ListDistributions") from None
    return ids


def resolve_origins(spec: str, clients: Any = None) -> OriginTargets:
    """Resolve ``cloudfront:DIST_ID`` or ``cloudfront:all`` to S3 origins (and skipped origins).

    Reads ``ListDistributions`` (all pages, for ``all``) and ``GetDistributionConfig`` per
    distribution. The origin is classified by its domain name, not by ``S3OriginConfig``: website
    endpoints need a custom-origin config and some APIs (moto) drop ``S3OriginConfig``.
    Raises :class:`CloudFrontError` (a ValueError) with a one-line message on any failure.
    """
    if not is_cloudfront_spec(spec):
        raise CloudFrontError(f"{spec!r} is not a CloudFront target (expected cloudfront:DIST_ID or cloudfront:all)")
    ident = spec[len(SPEC_PREFIX):].strip()
    if not ident:
        raise CloudFrontError(f"{spec!r}: missing distribution id (cloudfront:DIST_ID or cloudfront:all)")
    if ident.lower() != "all" and not re.fullmatch(r"[A-Za-z0-9]{1,64}", ident):
        raise CloudFrontError(f"{spec!r}: a distribution id is letters and digits (e.g. E2QWRUHEXAMPLE)")
    cf = _cloudfront_client(clients)
    ids = _list_distributions(cf, spec) if ident.lower() == "all" else [(ident, None)]
    targets: list[OriginTarget] = []
    skipped: list[SkippedOrigin] = []
    unreadable: list[CloudFrontError] = []
    for dist_id, cf_domain in ids:
        try:
            resp = cf.get_distribution_config(Id=dist_id)
        except Exception as exc:
            err = _explain(exc, f"{SPEC_PREFIX}{dist_id}", cf, "GetDistributionConfig")
            if cf_domain is None:  # the distribution the user named: its error is the answer
                raise err from None
            # cloudfront:all: one distribution we may not read (resource-level IAM) is reported,
            # and the others are still audited.
            unreadable.append(err)
            skipped.append(SkippedOrigin(dist_id, "*", cf_domain, f"configuration not readable: {err}"))
            continue
        config = resp.get("DistributionConfig") or {}
        if cf_domain is None:
            cf_domain = _distribution_domain(cf, dist_id)
        t, s = _origins_of(dist_id, config, cf_domain)
        targets.extend(t)
        skipped.extend(s)
    if unreadable and len(unreadable) == len(ids):  # not one readable: a permission problem, not an estate
        raise unreadable[0]
    return OriginTargets(targets, skipped)


def resolve_targets(spec: str, clients: Any = None) -> OriginTargets:
    """The audit's entry point: ``cloudfront:...`` -> list of :class:`OriginTarget` (+ ``.skipped``)."""
    return resolve_origins(spec, clients)


def _distribution_domain(cf: Any, dist_id: str) -> str:
    """The ``*.cloudfront.net`` name: GetDistributionConfig lacks it, GetDistribution has it.

    Without that permission the first alias still names the distribution, so this never raises.
    """
    try:
        return str(cf.get_distribution(Id=dist_id)["Distribution"].get("DomainName") or "")
    except Exception:
        return ""


def _origins_of(dist_id: str, config: Mapping[str, Any], cf_domain: str
                ) -> tuple[list[OriginTarget], list[SkippedOrigin]]:
    aliases = tuple(_items(config.get("Aliases")))
    # A wildcard alias ("*.example.com") names no host a client can fetch.
    viewer = next((a for a in aliases if "*" not in a), None) or cf_domain
    routes = _routes(config)
    enabled = bool(config.get("Enabled", True))
    targets, skipped = [], []
    for origin in _items(config.get("Origins")):
        oid = origin.get("Id", "")
        dom = origin.get("DomainName", "")
        parsed = parse_origin_domain(dom, origin.get("OriginPath", ""))
        if isinstance(parsed, str):
            skipped.append(SkippedOrigin(dist_id, oid, dom, parsed))
            continue
        bucket, prefix, region, kind = parsed
        targets.append(OriginTarget(distribution_id=dist_id, domain_name=viewer or dom, origin_id=oid,
                                    bucket=bucket, prefix=prefix, kind=kind, origin_domain=dom, region=region,
                                    cloudfront_domain=cf_domain, aliases=aliases, enabled=enabled,
                                    routes=routes))
    return targets, skipped


# ----------------------------------------------------------------------------- edge URLs
def parse_edge_url_map(items: Iterable[str] | str | None = None, *, env: Mapping[str, str] | None = None
                       ) -> dict[str, str]:
    """``DOMAIN=URL`` pairs (repeatable option values, or comma/space separated) -> {domain: base URL}.

    Entries from ``SYNTHGUARD_EDGE_URL_MAP`` come first and explicit ``items`` override them. A key
    may be a viewer domain, a ``*.cloudfront.net`` name, a distribution id, or ``*`` (any).
    """
    environ = os.environ if env is None else env
    raw: list[str] = []
    if environ.get(EDGE_URL_MAP_ENV):
        raw.extend(re.split(r"[,\s]+", environ[EDGE_URL_MAP_ENV]))
    if isinstance(items, str):
        items = [items]
    for item in items or ():
        raw.extend(re.split(r"[,\s]+", item))
    out: dict[str, str] = {}
    for entry in raw:
        if not entry:
            continue
        domain, sep, url = entry.partition("=")
        domain, url = domain.strip().lower(), url.strip()
        if not sep or not domain or not url:
            raise ValueError(f"edge URL map entry {entry!r}: expected DOMAIN=URL (e.g. d1.cloudfront.net=http://127.0.0.1:8080)")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"edge URL map entry {entry!r}: {url!r} is not an http(s) URL")
        out[domain] = url.rstrip("/")
    return out


def edge_base_url(origin: OriginTarget, edge_url_map: Mapping[str, str] | None = None) -> str:
    """The base URL viewers reach the distribution at (``https://DOMAIN`` unless mapped)."""
    mapping = {k.lower(): v for k, v in (edge_url_map or {}).items()}
    for name in (*origin.domains(), origin.distribution_id, "*"):
        if name and name.lower() in mapping:
            return mapping[name.lower()].rstrip("/")
    return f"https://{origin.domain_name}"


def edge_url(origin: OriginTarget, key: str, edge_url_map: Mapping[str, str] | None = None) -> str | None:
    """The edge URL of an origin key (``PREFIX/rest`` -> ``BASE/rest``), or None outside the prefix."""
    path = origin.url_path(key)
    return None if path is None else edge_base_url(origin, edge_url_map) + path


# ----------------------------------------------------------------------------- reading ObjectResults
def _field(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _origin_c2pa_state(res: Any) -> str | None:
    state = _field(_field(res, "c2pa"), "state")
    return None if state is None else str(state)


def _origin_watermark(res: Any) -> str | None:
    """The origin's watermark payload as hex when one was detected (else None)."""
    wm = _field(res, "watermark")
    if not _field(wm, "detected", False):
        return None
    payload = _field(wm, "payload")
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload).hex()
    return str(payload) if payload is not None else ""


def _has_manifest(state: str | None) -> bool:
    return state is not None and state.lower() not in _NO_MANIFEST_STATES | _UNUSABLE_STATES


def _is_media(res: Any) -> bool:
    from provenance.media import MEDIA_MIMES, mime_from_name, normalize_mime

    mime = normalize_mime(_field(res, "content_type"))
    return (mime in MEDIA_MIMES) or (mime_from_name(_field(res, "key", "")) in MEDIA_MIMES)


def _rank(origin: OriginTarget, res: Any) -> tuple:
    """Sort key: objects with provenance first, readable before unreadable, then a stable hash.

    The hash (not the key order) makes the sample spread across prefixes and stay the same between
    runs of an unchanged bucket.
    """
    status = str(_field(res, "status", "") or "")
    has_prov = _has_manifest(_origin_c2pa_state(res)) or _origin_watermark(res) is not None
    unreadable = status in ("unreadable", "skipped") or bool(_field(res, "error"))
    digest = hashlib.sha256(f"{origin.distribution_id}\0{_field(res, 'key', '')}".encode()).hexdigest()
    return (not has_prov, unreadable, not _is_media(res), digest)


def candidates(origin: OriginTarget, object_results: Iterable[Any]) -> list[Any]:
    """The origin's results that viewers can reach through this origin, best sample first."""
    out = [r for r in object_results
           if _field(r, "bucket") == origin.bucket and origin.serves(str(_field(r, "key", "")))
           and _is_media(r)]
    out.sort(key=lambda r: _rank(origin, r))
    return out


# ----------------------------------------------------------------------------- sampling the edge
def sample_edge(origin: OriginTarget, object_results: Iterable[Any], n: int, *,
                edge_url_map: Mapping[str, str] | None = None, trust_anchors: Any = None,
                watermark_key: Any = None, timeout: float = DEFAULT_TIMEOUT, workers: int = 4,
                accept: str = BROWSER_ACCEPT) -> list[EdgeSample]:
    """Fetch ``n`` of the origin's audited objects through the edge and compare provenance.

    ``object_results`` are the audit's ObjectResults (or dicts of the same shape). Fetch failures
    and timeouts become samples with ``error`` set; this never raises for network trouble.
    """
    picked = [(origin, r) for r in candidates(origin, object_results)[:max(0, int(n))]]
    return _run_samples(picked, edge_url_map, trust_anchors, watermark_key, timeout, workers, accept)


def sample_edges(origins: Sequence[OriginTarget], object_results: Iterable[Any], n: int, *,
                 edge_url_map: Mapping[str, str] | None = None, trust_anchors: Any = None,
                 watermark_key: Any = None, timeout: float = DEFAULT_TIMEOUT, workers: int = 4,
                 accept: str = BROWSER_ACCEPT) -> list[EdgeSample]:
    """``n`` samples per distribution, drawn across its S3 origins (the CLI's ``--sample-edge N``).

    Disabled distributions serve nothing and are not sampled. One viewer URL is sampled once even
    when several origins (an origin group, object versions) could answer it.
    """
    results = list(object_results)
    by_dist: dict[str, list[OriginTarget]] = {}
    for o in origins:
        if o.enabled:
            by_dist.setdefault(o.distribution_id, []).append(o)
    picked: list[tuple[OriginTarget, Any]] = []
    for dist_origins in by_dist.values():
        pool: list[tuple[tuple, OriginTarget, Any]] = []
        for o in dist_origins:
            for r in candidates(o, results):
                pool.append((_rank(o, r), o, r))
        pool.sort(key=lambda t: t[0])
        seen: set[str | None] = set()
        unique: list[tuple[tuple, OriginTarget, Any]] = []
        for item in pool:
            path = item[1].url_path(str(_field(item[2], "key", "")))
            if path not in seen:
                seen.add(path)
                unique.append(item)
        picked.extend((o, r) for _, o, r in unique[:max(0, int(n))])
    return _run_samples(picked, edge_url_map, trust_anchors, watermark_key, timeout, workers, accept)


def summarize(samples: Sequence[EdgeSample]) -> dict[str, int]:
    """Counts for the audit summary: samples, not preserved (errors included), errors."""
    return {"edge_samples": len(samples),
            "edge_provenance_not_preserved": sum(1 for s in samples if not s.provenance_preserved),
            "edge_errors": sum(1 for s in samples if s.error)}


def _run_samples(picked: list[tuple[OriginTarget, Any]], edge_url_map, trust_anchors, watermark_key,
                 timeout: float, workers: int, accept: str) -> list[EdgeSample]:
    if not picked:
        return []
    # Fetch concurrently (I/O), verify in this thread: the C2PA library serialises native calls anyway.
    with ThreadPoolExecutor(max_workers=max(1, min(int(workers), len(picked)))) as pool:
        fetched = list(pool.map(lambda p: _fetch(edge_url(p[0], str(_field(p[1], "key")), edge_url_map) or "",
                                                  timeout, accept), picked))
    return [_check(o, r, f, trust_anchors, watermark_key) for (o, r), f in zip(picked, fetched)]


@dataclass
class _Fetched:
    url: str
    status: int | None = None
    content_type: str | None = None
    data: bytes = b""
    error: str | None = None
    elapsed_ms: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def _fetch(url: str, timeout: float, accept: str) -> _Fetched:
    """GET ``url`` with plain urllib; every failure is returned as ``error``, never raised."""
    out = _Fetched(url=url)
    t0 = time.perf_counter()
    req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "synthguard-edge-sample/1"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only, checked in map
            out.status = resp.status
            out.content_type = resp.headers.get("Content-Type")
            out.headers = {k.lower(): v for k, v in resp.headers.items()}
            expected = resp.headers.get("Content-Length")
            if expected and expected.isdigit() and int(expected) > MAX_EDGE_BYTES:
                out.error = f"edge object of {expected} bytes is larger than {MAX_EDGE_BYTES}; not checked"
                return _done(out, t0)
            out.data = _read_bounded(resp, t0 + timeout * 5)
            if len(out.data) > MAX_EDGE_BYTES:
                out.error = f"edge object larger than {MAX_EDGE_BYTES} bytes; not checked"
            elif expected and expected.isdigit() and int(expected) != len(out.data):
                # read(amt) returns short data instead of raising when the edge drops the connection
                out.error = (f"cannot fetch from the edge: connection closed after {len(out.data)} "
                             f"of {expected} bytes")
            elif contentenc.codings(resp.headers.get("Content-Encoding")):
                # what a browser shows: the body with its Content-Encoding undone (as for the origin)
                try:
                    out.data = contentenc.decode(out.data, resp.headers.get("Content-Encoding"),
                                                 limit=MAX_EDGE_BYTES, max_inline=MAX_EDGE_BYTES)
                except contentenc.ContentEncodingError as exc:
                    out.error = f"edge object: {exc}"
    except urllib.error.HTTPError as exc:
        out.status = exc.code
        out.content_type = exc.headers.get("Content-Type") if exc.headers else None
        out.error = f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        out.error = f"cannot fetch from the edge: {exc.reason}"
    except (TimeoutError, OSError) as exc:
        out.error = f"cannot fetch from the edge: {type(exc).__name__}: {exc}"
    except Exception as exc:  # http.client.IncompleteRead, RemoteDisconnected, ...
        out.error = f"cannot fetch from the edge: {type(exc).__name__}: {exc}"
    return _done(out, t0)


def _done(out: _Fetched, t0: float) -> _Fetched:
    out.elapsed_ms = round((time.perf_counter() - t0) * 1000.0, 2)
    return out


def _read_bounded(resp: Any, deadline: float) -> bytes:
    """Read at most MAX_EDGE_BYTES + 1 in chunks; the socket timeout bounds each read, the
    deadline bounds the whole body (an edge that trickles bytes cannot hold the audit forever)."""
    chunks: list[bytes] = []
    total = 0
    while total <= MAX_EDGE_BYTES:
        # read1: what one receive brings (up to 1 MiB); read() would wait for the full MiB, so a
        # trickling edge would only meet the deadline check after a megabyte.
        chunk = resp.read1(min(1 << 20, MAX_EDGE_BYTES + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if time.perf_counter() > deadline:
            raise TimeoutError("the edge body took longer than the download deadline")
    return b"".join(chunks)


def _etag_md5(res: Any) -> str | None:
    """The object's MD5 when its ETag is a plain MD5 (not multipart, not SSE-KMS: unknown)."""
    etag = str(_field(res, "etag", "") or "").strip('"').lower()
    return etag if re.fullmatch(r"[0-9a-f]{32}", etag) else None


def _verify(data: bytes, mime: str | None, trust_anchors: Any) -> tuple[str, tuple[str, ...]]:
    """C2PA state + codes of the edge bytes through provenance.verify (the audit's own check)."""
    from provenance.verification import verify

    v = verify(data, mime=mime, trust_anchors=trust_anchors)
    codes = _field(v, "codes", ()) or ()
    return str(_field(v, "state")), tuple(str(c) for c in codes)


def _detect(data: bytes, watermark_key: Any) -> tuple[bool, str | None]:
    from provenance.media import decode_image
    from watermark import detect

    pixels = decode_image(data)
    d = detect(pixels, key=watermark_key)  # the same call as the origin audit (s3sync.checks)
    payload = _field(d, "payload")
    if isinstance(payload, (bytes, bytearray)):
        payload = bytes(payload).hex()
    detected = bool(_field(d, "detected", False))
    return detected, (str(payload) if detected and payload is not None else None)


def _check(origin: OriginTarget, res: Any, f: _Fetched, trust_anchors: Any, watermark_key: Any) -> EdgeSample:
    from provenance.media import IMAGE_MIMES, mime_from_name, normalize_mime, sniff_mime

    key = str(_field(res, "key", ""))
    o_state = _origin_c2pa_state(res)
    o_wm = _origin_watermark(res)
    base = dict(distribution_id=origin.distribution_id, origin_id=origin.origin_id, bucket=origin.bucket, key=key,
                url=f.url, origin_status=_field(res, "status"), origin_c2pa_state=o_state, origin_watermark=o_wm,
                http_status=f.status, edge_content_type=f.content_type, elapsed_ms=f.elapsed_ms)
    if f.error or f.status != 200:
        err = f.error or f"HTTP {f.status}"
        return EdgeSample(**base, error=err, provenance_preserved=False,
                          reason=f"could not check the edge copy: {err}")
    data = f.data
    base["edge_size"] = len(data)
    md5 = _etag_md5(res)
    identical = (hashlib.md5(data).hexdigest() == md5) if md5 else None  # noqa: S324 - ETag comparison
    base["bytes_identical"] = identical
    origin_mime = normalize_mime(_field(res, "content_type")) or mime_from_name(key)
    served = normalize_mime(f.content_type)
    if sniff_mime(data, None) is None and served and served.startswith(("text/", "application/json",
                                                                        "application/xml", "application/xhtml")):
        # A 200 with an error or login page instead of the object: not a copy that lost provenance.
        err = f"edge served {served} ({len(data)} bytes), not the media (an error or login page?)"
        return EdgeSample(**base, error=err, provenance_preserved=False, reason=f"could not check the edge copy: {err}")
    edge_mime = sniff_mime(data, key) or served
    t0 = time.perf_counter()
    try:
        e_state, e_codes = _verify(data, edge_mime, trust_anchors)
    except Exception as exc:  # verify reports states; anything raised is a reading failure
        return EdgeSample(**base, error=f"C2PA check failed: {type(exc).__name__}: {exc}",
                          provenance_preserved=False, reason="could not read the edge copy's C2PA state")
    e_wm_detected: bool | None = None
    e_wm: str | None = None
    wm_error: str | None = None
    if o_wm is not None:
        if edge_mime in IMAGE_MIMES:
            try:
                e_wm_detected, e_wm = _detect(data, watermark_key)
            except Exception as exc:
                wm_error = f"watermark check failed: {type(exc).__name__}: {exc}"
        else:
            wm_error = f"watermark check skipped: edge served {edge_mime or 'unknown type'}"
    base.update(edge_c2pa_state=e_state, edge_c2pa_codes=e_codes, edge_watermark_detected=e_wm_detected,
                edge_watermark=e_wm, elapsed_ms=round(f.elapsed_ms + (time.perf_counter() - t0) * 1000, 2))
    preserved, reason = _judge(o_state, o_wm, e_state, e_codes, e_wm_detected, e_wm, identical,
                               origin_mime, edge_mime, wm_error)
    return EdgeSample(**base, provenance_preserved=preserved, reason=reason, error=wm_error)


def _judge(o_state: str | None, o_wm: str | None, e_state: str, e_codes: tuple[str, ...],
           e_wm_detected: bool | None, e_wm: str | None, identical: bool | None,
           origin_mime: str | None, edge_mime: str | None, wm_error: str | None) -> tuple[bool, str]:
    """Did the edge keep what the origin had? Returns (preserved, one-line reason)."""
    o_manifest = _has_manifest(o_state)
    if not o_manifest and o_wm is None:
        return True, "origin object carries no provenance; nothing to preserve"
    problems: list[str] = []
    if o_manifest:
        if not _has_manifest(e_state):
            how = "unchanged bytes" if identical else "re-encoded bytes" if identical is False else "bytes"
            if origin_mime and edge_mime and origin_mime != edge_mime:
                problems.append(f"edge served {edge_mime} instead of {origin_mime} without the C2PA manifest "
                                "(format conversion at the edge strips it)")
            elif identical:
                problems.append("edge served the origin bytes but no C2PA manifest was found")
            else:
                problems.append(f"edge served {how} without the C2PA manifest (image resizing at the edge strips it)")
        elif e_state.lower() != str(o_state).lower():
            codes = f" ({', '.join(e_codes)})" if e_codes else ""
            problems.append(f"C2PA state changed from {o_state} at the origin to {e_state} at the edge{codes}"
                            + (": the edge modified the signed bytes" if e_state.lower() == "invalid" else ""))
    wm_note = ""
    if o_wm is not None:
        if wm_error:
            problems.append(wm_error)
        elif not e_wm_detected:
            problems.append(f"watermark {o_wm} not detected at the edge")
        elif o_wm and e_wm and e_wm != o_wm:
            problems.append(f"edge watermark payload {e_wm} differs from the origin's {o_wm}")
        else:
            wm_note = f"watermark {o_wm} survived"
    if problems:
        if wm_note:
            problems.append(wm_note)
        return False, "; ".join(problems)
    parts = []
    if o_manifest:
        parts.append(f"C2PA {e_state} at the edge as at the origin")
    if wm_note:
        parts.append(wm_note)
    if identical:
        parts.append("bytes identical to the origin")
    return True, "; ".join(parts)
