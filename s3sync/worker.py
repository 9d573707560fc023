"""The audit worker: list -> (reuse | fetch -> check -> classify) -> record, concurrently and resumably.

Shape of a run:
- The calling thread lists targets page by page (a generator: millions of keys never sit in
  memory), decides per object whether the state DB already holds a result for this exact
  content (ETag + version + check config: then nothing is downloaded), and is the only thread that
  writes SQLite (every fresh result is committed on its own, so a SIGKILL loses nothing finished).
- ``workers`` I/O threads, each with its own boto3 client, fetch objects: small ones into memory
  with one GET, large ones to a temporary file with ranged GETs (bounded memory, and a dropped
  connection costs one part, not the object). botocore's adaptive retries handle throttling and
  5xx; errors while streaming a body are retried here. What still fails is ``unreadable``.
- The CPU checks (decode, C2PA, watermark, registry) run inline (``processes=0``) or in
  ``processes`` check processes fed with the bytes through pipes (:class:`CheckProcesses`); at
  most ``workers`` objects are in flight. One check process is worth its pipe even on one CPU: a
  decoder that crashes or hangs on hostile bytes costs that object, not the run.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import queue
import random
import signal
import tempfile
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from provenance.media import MEDIA_MIMES, mime_from_name

from . import checks as _checks
from . import contentenc
from .aws import ClientFactory, describe_error, is_stream_error
from .classify import classify
from .cloudfront import SkippedOrigin, is_cloudfront_spec
from .listing import ARCHIVED_CLASSES, S3Target, bucket_tags, list_pages, parse_s3_uri, prefetched
from .models import AuditResult, ObjectRef, ObjectResult, Skipped
from .state import DEFAULT_STATE, State, now_iso

MiB = 1024 * 1024
DEFAULT_WORKERS = 16
DEFAULT_MAX_INLINE = 16 * MiB  # larger objects go to a temp file: memory stays under workers x this
DEFAULT_PART_SIZE = 8 * MiB
# One object's checks in a check process (inline checks, processes=0, have no limit).
# Generous: a long video's watermark scan takes minutes; a decoder stuck on hostile bytes must
# not stall the run forever.
DEFAULT_CHECK_TIMEOUT = 600.0

# Skip reasons the worker gives itself (others: "delete marker", "archived ...", "not media ...").
DELETED = "deleted since listing"
FOLDER_MARKER = "folder marker (empty object whose key ends in /)"
MAX_EXPANSION = 200  # a Content-Encoding that inflates an object more than this is a bomb, not media

WATERMARK_SEARCHES = ("auto", "full", "own")  # see CheckConfig.watermark_search

ProgressFn = Callable[[dict[str, Any]], None]


class AuditError(ValueError):
    """A user-facing problem with the audit's inputs (bad target, missing file): one line, exit 2."""


@dataclass
class AuditStats:
    """Counters of this invocation (a resumed run also reports what it found already done)."""

    listed: int = 0
    downloaded: int = 0
    reused: int = 0
    resumed: int = 0
    skipped: int = 0
    bytes_read: int = 0
    retries: int = 0
    done: int = 0
    listing_done: bool = False
    started: float = field(default_factory=time.monotonic)
    list_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        el = max(time.monotonic() - self.started, 1e-9)
        return {"listed": self.listed, "downloaded": self.downloaded, "reused": self.reused,
                "resumed": self.resumed, "skipped": self.skipped, "bytes_read": self.bytes_read,
                "retries": self.retries, "elapsed_s": round(el, 3), "list_s": round(self.list_seconds, 3),
                "objects_per_s": round(self.done / el, 1)}


_Headers = tuple[str | None, str | None]  # (Content-Type, Content-Encoding) of a GET response


@dataclass
class _Fetched:
    """One object's download: its bytes in memory or in a temp file (decoded), or why not."""

    ref: ObjectRef
    content_type: str | None = None
    data: bytes | None = None
    path: str | None = None
    error: str | None = None
    skipped: str | None = None
    mime: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _target_list(targets: Iterable[Any] | str) -> list[Any]:
    if isinstance(targets, (str, S3Target)):
        return [targets]
    return list(targets)


class Auditor:
    """One audit run. Iterate :meth:`run` for per-object results; :meth:`result` afterwards.

    Read-only: it only lists, heads and gets objects (and reads bucket tags and CloudFront
    configuration); it never writes to the buckets.
    """

    def __init__(self, targets: Iterable[Any] | str, *, endpoint_url: str | None = None,
                 profile: str | None = None, region: str | None = None, clients: ClientFactory | None = None,
                 trust_anchors: str | os.PathLike | bytes | None = None,
                 watermark_key_file: str | os.PathLike | None = None, watermark: bool = True,
                 watermark_trust_manifest: bool = False, watermark_search: str = "auto",
                 registry: str | os.PathLike | None = None, state: str | os.PathLike | State = DEFAULT_STATE,
                 workers: int = DEFAULT_WORKERS, processes: int = 0, full: bool = False,
                 versions: bool = False, resume: bool = True, max_inline_bytes: int = DEFAULT_MAX_INLINE,
                 part_size: int = DEFAULT_PART_SIZE, fetch_attempts: int = 4,
                 check_timeout: float | None = DEFAULT_CHECK_TIMEOUT, sample_edge: int = 0,
                 edge_url_map: Any = None, tmp_dir: str | None = None,
                 posture: bool | None = False, posture_config: Any = None,
                 progress: ProgressFn | None = None) -> None:
        self.targets_in = _target_list(targets)
        if not self.targets_in:
            raise AuditError("no targets: give s3://bucket[/prefix] or cloudfront:DIST_ID|all")
        self.workers = max(1, int(workers))
        self.processes = max(0, int(processes))
        self.factory = clients or ClientFactory(endpoint_url=endpoint_url, profile=profile, region=region,
                                                max_pool=self.workers + 4)
        self.full = full
        self.versions = versions
        self.resume = resume
        self.max_inline = int(max_inline_bytes)
        self.part_size = int(part_size)
        self.fetch_attempts = max(1, int(fetch_attempts))
        self.check_timeout = float(check_timeout) if check_timeout else None
        self.sample_edge = int(sample_edge or 0)
        self.edge_url_map = edge_url_map
        if self.sample_edge and any(is_cloudfront_spec(str(t)) or hasattr(t, "distribution_id")
                                    for t in self.targets_in):
            from .cloudfront import parse_edge_url_map

            try:  # a bad map is a usage error now, not after the whole audit ran
                self._edge_map = parse_edge_url_map(edge_url_map)
            except ValueError as exc:
                raise AuditError(f"--edge-url-map: {exc}") from None
        self.tmp_dir = tmp_dir
        self.progress = progress
        # Posture (issue 6) of the audited buckets: False off, True every audited bucket (CloudFront
        # origins included), None the buckets of s3:// targets only (the CLI's default).
        self.posture = posture
        self._posture_cfg = None
        if posture is not False:
            from .auditposture import load_posture_config

            try:  # a bad synthguard.toml is a usage error now, not after the whole audit ran
                self._posture_cfg = load_posture_config(posture_config)
            except (OSError, ValueError) as exc:
                raise AuditError(f"--posture-config: {exc}") from None
        self._posture_job: cf.Future | None = None
        # The key matters (and the watermark room is imported) only when the watermark is checked.
        wm_key = (_watermark_key(watermark_key_file) if watermark or watermark_key_file is not None
                  else {"watermark_key": None, "watermark_key_kind": None})
        if watermark_search not in WATERMARK_SEARCHES:
            raise AuditError(f"watermark search must be one of {', '.join(WATERMARK_SEARCHES)}, "
                             f"got {watermark_search!r}")
        self.cfg = _checks.CheckConfig(trust_anchors=_read_anchors(trust_anchors), **wm_key, watermark=watermark,
                                       watermark_when_trusted=not watermark_trust_manifest,
                                       watermark_search=watermark_search,
                                       registry_path=_registry_path(registry))
        self.cfg_fp = self.cfg.fingerprint()
        self._state_arg = state
        self.stats = AuditStats()
        self.run_id: str | None = None
        self.origins: list[Any] = []
        self.skipped_origins: list[Any] = []
        self._tags: dict[str, dict[str, str]] = {}
        self._result: AuditResult | None = None
        self._s3_targets: list[S3Target] | None = None
        self._lock = threading.Lock()
        self.want_objects = True  # audit() sets False: reused results need not be parsed to be yielded

    # ------------------------------------------------------------------ targets
    def resolve_targets(self) -> list[S3Target]:
        """``s3://`` URIs as they are; ``cloudfront:`` specs through ``s3sync.cloudfront``."""
        if self._s3_targets is not None:
            return self._s3_targets
        out: list[S3Target] = []
        for t in self.targets_in:
            if isinstance(t, S3Target):
                out.append(t)
            elif hasattr(t, "bucket") and hasattr(t, "distribution_id"):  # an OriginTarget
                self.origins.append(t)
                out.append(S3Target(t.bucket, t.prefix or "", origin=f"cloudfront:{t.distribution_id}/{t.origin_id}"))
            elif isinstance(t, str) and is_cloudfront_spec(t):
                from . import cloudfront

                resolved = cloudfront.resolve_targets(t, self.factory)
                self.skipped_origins.extend(getattr(resolved, "skipped", []) or [])
                for o in resolved:
                    self.origins.append(o)
                    out.append(S3Target(o.bucket, o.prefix or "", origin=f"cloudfront:{o.distribution_id}/{o.origin_id}"))
            elif isinstance(t, str):
                try:
                    out.append(parse_s3_uri(t))
                except ValueError as exc:
                    raise AuditError(str(exc)) from None
            else:
                raise AuditError(f"unsupported target: {t!r}")
        # The same bucket+prefix reached twice (two distributions on one bucket) is audited once.
        seen: dict[tuple[str, str], S3Target] = {}
        for s in out:
            seen.setdefault((s.bucket, s.prefix), s)
        self._s3_targets = list(seen.values())
        return self._s3_targets

    # ------------------------------------------------------------------ the run
    def run(self) -> Iterator[ObjectResult]:
        """Audit every object; yield each ObjectResult as it is recorded (cached ones included)."""
        targets = self.resolve_targets()
        own_state = not isinstance(self._state_arg, State)
        st = State(self._state_arg) if own_state else self._state_arg
        self.state = st
        options = {"workers": self.workers, "processes": self.processes, "full": self.full,
                   "versions": self.versions, "checks": self.cfg.describe()}
        self.run_id, resumed = st.begin_run([t.uri for t in targets] + [str(t) for t in self.targets_in
                                                                         if is_cloudfront_spec(str(t))],
                                            options, self.cfg_fp, resume=self.resume)
        self._resumed = resumed
        done_before = st.run_members(self.run_id) if resumed else set()
        self.stats = AuditStats()
        self._batched = 0
        self._not_latest: set[tuple[str, str, str]] = set()
        self._start_posture(targets)
        self._s3 = self._fetch_client()
        targets = self._check_listable(targets)
        _checks.init_process(self.cfg)  # inline checks (and the edge sampler) use it too
        pool: CheckProcesses | None = None  # started with the first download: a run that
        # finds nothing changed never pays for starting processes
        io = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="s3audit")
        inflight: set[cf.Future] = set()
        finished: queue.SimpleQueue[cf.Future] = queue.SimpleQueue()  # inflight futures as they complete
        # Only overlapping targets can list an object twice; one target never does (no memory cost).
        seen: set[tuple[str, str, str]] | None = set() if len(targets) > 1 else None
        completed = False
        try:
            for ref in self._iter_refs(targets):
                if seen is not None:
                    if ref.ident in seen:
                        continue
                    seen.add(ref.ident)
                self.stats.listed += 1
                if ref.version_id and not ref.is_latest:
                    # An edge serves only the latest version: older ones are never edge samples.
                    self._not_latest.add(ref.ident)
                if ref.ident in done_before:
                    self.stats.resumed += 1
                    self.stats.done += 1
                    continue
                if ref.delete_marker:
                    self._record_skip(Skipped(ref.bucket, ref.key, ref.version_id, "delete marker"))
                    continue
                if ref.key.endswith("/") and not ref.size:
                    self._record_skip(Skipped(ref.bucket, ref.key, ref.version_id, FOLDER_MARKER))
                    continue
                if ref.storage_class in ARCHIVED_CLASSES:
                    # A GET would fail with InvalidObjectState; the audit never starts restores.
                    self._record_skip(Skipped(ref.bucket, ref.key, ref.version_id,
                                              f"archived ({ref.storage_class}): needs a restore to be read",
                                              etag=ref.etag, last_modified=ref.last_modified))
                    continue
                cached = None if self.full else st.lookup_status(ref.bucket, ref.key, ref.version_id, ref.etag,
                                                                 self.cfg_fp)
                if cached == "skipped" and not self._skip_holds(ref):
                    cached = None
                if cached is not None and cached != "unreadable":
                    # Unchanged since the last completed check: record it for this run, download nothing.
                    st.record_reuse(self.run_id, self.cfg_fp, ref.bucket, ref.key, ref.version_id, ref.etag, cached)
                    self._count_batched()
                    if cached == "skipped":
                        self.stats.skipped += 1
                        continue
                    self.stats.reused += 1
                    self.stats.done += 1
                    self._tick()
                    if self.want_objects:
                        payload = st.lookup(ref.bucket, ref.key, ref.version_id, ref.etag, self.cfg_fp)[1]
                        yield ObjectResult.from_dict(payload).with_(cached=True, origin=ref.origin,
                                                                    owner_tags=self._owner_tags(ref.bucket))
                    continue
                while len(inflight) >= self.workers * 2:
                    yield from self._drain(inflight, finished, block=True)
                if pool is None and self.processes >= 1:
                    pool = self._make_process_pool()
                fut = io.submit(self._process, ref, pool)
                inflight.add(fut)
                fut.add_done_callback(finished.put)
                yield from self._drain(inflight, finished, block=False)
            self.stats.listing_done = True
            while inflight:
                yield from self._drain(inflight, finished, block=True)
            st.commit()
            completed = True
        finally:
            try:
                st.commit()  # every row written is complete on its own: keep them
            except Exception:
                pass
            for f in inflight:
                f.cancel()
            io.shutdown(wait=True, cancel_futures=True)
            if pool is not None:
                pool.close()
            if not completed and own_state:
                st.close()  # a failed or abandoned run leaves no open connection (nor -wal/-shm files)
        self._finish(targets)
        if own_state:
            st.close()

    def _start_posture(self, targets: Sequence[S3Target]) -> None:
        """Run the posture checks of the audited buckets in a background thread: a few API calls
        per bucket and account that overlap the audit's own I/O instead of adding to it."""
        if self.posture is False:
            return
        scoped = [t for t in targets if self.posture or not t.origin]
        if not scoped:
            return
        from .auditposture import run_for_audit

        job: cf.Future = cf.Future()

        def work() -> None:
            try:
                job.set_result(run_for_audit(scoped, self.factory, self._posture_cfg))
            except BaseException as exc:  # pragma: no cover - run_for_audit catches what it can
                job.set_exception(exc)

        # A daemon thread: an audit that stops early (a listing error, Ctrl-C) exits without waiting
        # for API calls whose answers nobody will read.
        threading.Thread(target=work, name="s3audit-posture", daemon=True).start()
        self._posture_job = job

    def _drain(self, inflight: set[cf.Future], finished: queue.SimpleQueue, *,
               block: bool) -> Iterator[ObjectResult]:
        """Record and yield what the I/O threads finished (waiting for one result when ``block``).

        Futures arrive in ``finished`` from their done-callbacks, so a drain costs what finished,
        not a scan of every in-flight future after each submit (``done()`` and ``cf.wait`` take
        each future's lock). The fresh results of one drain are committed together, before any of
        them is yielded: a SIGKILL after the commit never costs their downloads again, and one
        commit instead of one per result saves the parent CPU (measured ~0.07 ms per commit).
        """
        if not inflight:
            return
        done = [finished.get()] if block else []
        while True:
            try:
                done.append(finished.get_nowait())
            except queue.Empty:
                break
        st = self.state
        fresh: list[ObjectResult] = []
        for f in done:
            inflight.discard(f)
            item = f.result()
            if isinstance(item, Skipped):
                self._record_skip(item)
                continue
            if not st.db.in_transaction:
                st.begin()
            st.record(self.run_id, self.cfg_fp, item, commit=False)
            fresh.append(item)
        if not fresh:
            return
        st.commit()  # with any batched reuse/skip rows before them
        self._batched = 0
        for item in fresh:
            self.stats.done += 1
            self._tick()
            yield item

    def _skip_holds(self, ref: ObjectRef) -> bool:
        """Whether a cached skip of this ETag still stands. "Not media" was decided from the content
        type, which a metadata rewrite (a Content-Type fixed in place with CopyObject) changes
        without changing the ETag; LastModified changes with it, so the skip holds only while the
        listing shows the same LastModified as when it was decided."""
        payload = self.state.lookup(ref.bucket, ref.key, ref.version_id, ref.etag, self.cfg_fp)
        return payload is not None and payload[1].get("last_modified") == ref.last_modified

    def _record_skip(self, sk: Skipped, reused: bool = False) -> None:
        self._record_batched(sk, reused=reused)
        self.stats.skipped += 1

    def _record_batched(self, item: ObjectResult | Skipped, reused: bool) -> None:
        """Rows that cost no download (reuse, skips) are committed in batches: losing a batch to a
        crash only means re-deciding them from the listing, never re-downloading anything."""
        st = self.state
        if not st.db.in_transaction:
            st.begin()
        st.record(self.run_id, self.cfg_fp, item, reused=reused, commit=False)
        self._count_batched()

    def _count_batched(self) -> None:
        self._batched += 1
        if self._batched >= 1000:
            self.state.commit()
            self._batched = 0

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress(self.stats.to_dict() | {"done": self.stats.done, "listing_done": self.stats.listing_done})

    def _check_listable(self, targets: list[S3Target]) -> list[S3Target]:
        """With several targets, list one key of each before any download: a mistyped or
        forbidden bucket among the ``s3://`` targets is the same clear error as for a single
        target, not an abort after the earlier targets were downloaded and checked. A CloudFront
        origin bucket that cannot be listed (deleted, another account's) is a skipped origin with
        the reason, and the other origins are audited. (One target needs no probe: its listing is
        the first request.) Returns the targets to audit."""
        if len(targets) < 2:
            return targets
        keep: list[S3Target] = []
        for t in targets:
            kw = {"Prefix": t.prefix} if t.prefix else {}
            try:
                self._s3.list_objects_v2(Bucket=t.bucket, MaxKeys=1, **kw)
            except Exception as exc:
                why = f"cannot list {t.uri}: {describe_error(exc)}"
                if not t.origin:
                    raise AuditError(why) from None
                self._skip_origins_of(t, why)
                continue
            keep.append(t)
        if not keep:
            raise AuditError("no target could be listed: " + "; ".join(
                f"{s.distribution_id}/{s.origin_id}: {s.reason}" for s in self.skipped_origins[-3:]))
        self._s3_targets = keep
        return keep

    def _skip_origins_of(self, target: S3Target, why: str) -> None:
        """Every CloudFront origin behind ``target`` (one bucket can serve several distributions)
        becomes a skipped origin: not audited, not sampled at the edge."""
        behind = [o for o in self.origins if (o.bucket, o.prefix or "") == (target.bucket, target.prefix)]
        self.origins = [o for o in self.origins if o not in behind]
        self.skipped_origins.extend(SkippedOrigin(o.distribution_id, o.origin_id, o.origin_domain, why)
                                    for o in behind)

    def _iter_refs(self, targets: Sequence[S3Target]) -> Iterator[ObjectRef]:
        if isinstance(self.factory, ClientFactory):
            client = self.factory.client("s3", raw_timestamps=True)
        else:  # any object with .client(service)
            client = self.factory.client("s3")
        for t in targets:
            self._owner_tags(t.bucket)
            t0 = time.monotonic()
            # The next pages are fetched while this one is decided (list_seconds: time spent waiting).
            it = prefetched(list_pages(client, t, versions=self.versions))
            try:
                while True:
                    try:
                        page = next(it)
                    except StopIteration:
                        self.stats.list_seconds += time.monotonic() - t0
                        break
                    except Exception as exc:  # NoSuchBucket, AccessDenied, endpoint down: one clear line
                        raise AuditError(f"cannot list {t.uri}: {describe_error(exc)}") from None
                    self.stats.list_seconds += time.monotonic() - t0
                    yield from page
                    t0 = time.monotonic()
            finally:
                it.close()

    def _owner_tags(self, bucket: str) -> dict[str, str]:
        if bucket not in self._tags:
            self._tags[bucket] = bucket_tags(self.factory.client("s3"), bucket)
        return self._tags[bucket]

    # ------------------------------------------------------------------ per object (I/O threads)
    def _process(self, ref: ObjectRef, pool: CheckProcesses | None) -> ObjectResult | Skipped:
        fetched = self._fetch(ref)
        if fetched.skipped:
            # A deletion seen mid-run is not a property of these bytes: without an ETag the skip is
            # never reused, and the key is looked at again next run.
            return Skipped(ref.bucket, ref.key, ref.version_id, fetched.skipped,
                           etag=None if fetched.skipped == DELETED else ref.etag,
                           content_type=fetched.content_type, last_modified=ref.last_modified)
        ref = fetched.ref
        try:
            if fetched.error:
                outcome = _checks.CheckOutcome(error=fetched.error, mime=fetched.mime)
            else:
                source = fetched.data if fetched.data is not None else fetched.path
                if pool is None:
                    outcome = _checks.check_task(source, fetched.mime, ref.key)
                else:
                    outcome = pool.check(source, fetched.mime, ref.key)
        except Exception as exc:  # a crashed check (e.g. a dead worker process) must not end the run
            outcome = _checks.CheckOutcome(error=f"check failed: {type(exc).__name__}: {exc}", mime=fetched.mime)
        finally:
            if fetched.path:
                try:
                    os.unlink(fetched.path)
                except OSError:
                    pass
        c2pa = outcome.c2pa
        wm = outcome.watermark
        status = classify(c2pa.get("state") if c2pa else None, bool(wm and wm.get("detected")),
                          outcome.training_match, outcome.error)
        timings = dict(fetched.timings)
        timings.update(outcome.timings)
        return ObjectResult(bucket=ref.bucket, key=ref.key, version_id=ref.version_id, etag=ref.etag,
                            size=ref.size, content_type=fetched.content_type, status=status, c2pa=c2pa,
                            watermark=wm, training_match=outcome.training_match, error=outcome.error,
                            media_type=outcome.mime or fetched.mime, owner_tags=self._tags.get(ref.bucket, {}),
                            timings=timings, checked_at=now_iso(), origin=ref.origin)

    def _fetch_client(self) -> Any:
        """One S3 client for every I/O thread: boto3 clients are thread-safe and its urllib3 pool
        holds ``workers`` connections, so nothing is serialised; creating one client per thread cost
        ~30 ms of CPU each per run, and one client means one adaptive rate limiter for the run (a
        SlowDown slows every thread, not just the one that saw it)."""
        f = self.factory
        if isinstance(f, ClientFactory):
            # raw timestamps: the GET's Last-Modified header is never read, and parsing it was ~8 %
            # of the parent's CPU per object (profiled).
            return f.new_client("s3", raw_timestamps=True,
                                config=f.config("s3", max_pool_connections=max(f.max_pool, self.workers + 4)))
        return f.client("s3")  # any object with .client(service)

    def _fetch(self, ref: ObjectRef) -> _Fetched:
        client = self._s3
        out = _Fetched(ref=ref)
        by_name = mime_from_name(ref.key)
        vkw = {"VersionId": ref.version_id} if ref.version_id else {}
        t0 = time.perf_counter()
        if by_name not in MEDIA_MIMES:
            # Only the content type can make it media: HEAD it (no bytes) before deciding.
            try:
                head = client.head_object(Bucket=ref.bucket, Key=ref.key, **vkw)
                self._count_retries(head)
            except Exception as exc:
                if _not_found(exc):
                    out.skipped = DELETED
                    return out
                out.error = f"HEAD failed: {describe_error(exc)}"
                out.mime = None
                return out
            out.content_type = head.get("ContentType")
            claimed = _checks.claimed_mime(ref.key, out.content_type)
            if claimed is None:
                out.skipped = "not media (extension and content type)"
                return out
            if ref.etag is None or ref.size is None:
                out.ref = ref.with_(etag=(head.get("ETag") or "").strip('"') or None,
                                    size=head.get("ContentLength"))
        size = out.ref.size or 0
        try:
            if size > self.max_inline:
                out.path, (ct, encoding) = self._get_to_file(client, out.ref, vkw)
            else:
                out.data, (ct, encoding) = self._get_bytes(client, out.ref, vkw)
            out.content_type = out.content_type or ct
            with self._lock:
                self.stats.downloaded += 1
            if contentenc.codings(encoding):
                self._undo_encoding(out, encoding)
        except Exception as exc:
            if _not_found(exc):
                out.skipped = DELETED
                return out
            why = describe_error(exc)
            if "PreconditionFailed" in why or "412" in why:
                why = "the object changed while it was being audited (ETag differs from the listing); rechecked next run"
            out.error = f"fetch failed: {why}"
        out.mime = _checks.claimed_mime(ref.key, out.content_type) or by_name
        out.timings["fetch_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    def _undo_encoding(self, out: _Fetched, encoding: str) -> None:
        """Check what HTTP clients see: the bytes with their Content-Encoding (gzip, deflate) undone;
        bounded (MAX_EXPANSION x the stored size, at least ``max_inline``), else ``unreadable``."""
        limit = max(self.max_inline, MAX_EXPANSION * int(out.ref.size or 0))
        try:
            decoded = contentenc.decode(out.data if out.path is None else out.path, encoding, limit=limit,
                                        max_inline=self.max_inline, tmp_dir=self.tmp_dir)
        except contentenc.ContentEncodingError as exc:
            out.error = str(exc)
            decoded = None
        if out.path is not None and decoded != out.path:
            os.unlink(out.path)
        out.data, out.path = (decoded, None) if isinstance(decoded, bytes) else (None, decoded)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Retry what botocore does not (a body that breaks while being read), with jittered backoff.

        Throttling, 5xx, resets before a response and timeouts are botocore's adaptive retries'
        job; retrying those here too would multiply the attempts.
        """
        for attempt in range(self.fetch_attempts):
            try:
                return fn()
            except Exception as exc:
                if attempt + 1 >= self.fetch_attempts or not is_stream_error(exc):
                    raise
                with self._lock:
                    self.stats.retries += 1
                time.sleep(min(2.0, 0.05 * (2 ** attempt)) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _count_retries(self, resp: dict[str, Any]) -> None:
        n = int(resp.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)
        if n:
            with self._lock:
                self.stats.retries += n

    def _get_once(self, client: Any, ref: ObjectRef, vkw: dict[str, str],
                  span: tuple[int, int] | None = None) -> tuple[bytes, _Headers]:
        """One GET of the object (or of the byte range ``span``, inclusive), read whole and checked
        for length: a short body raises ConnectionError, which :meth:`_call` retries."""
        kw = dict(vkw)
        if ref.etag and not ref.version_id:
            kw["IfMatch"] = f'"{ref.etag}"'  # the bytes we check are the ETag we record
        if span is not None:
            kw["Range"] = f"bytes={span[0]}-{span[1]}"
        resp = client.get_object(Bucket=ref.bucket, Key=ref.key, **kw)
        self._count_retries(resp)
        body = resp["Body"]
        try:
            data = body.read()
        finally:
            body.close()
        want = span[1] - span[0] + 1 if span is not None else resp.get("ContentLength")
        if want is not None and len(data) != int(want):
            where = f" at {span[0]}" if span is not None else ""
            raise ConnectionError(f"short read{where}: {len(data)} of {want} bytes")
        with self._lock:
            self.stats.bytes_read += len(data)
        return data, (resp.get("ContentType"), resp.get("ContentEncoding"))

    def _get_bytes(self, client: Any, ref: ObjectRef, vkw: dict[str, str]) -> tuple[bytes, _Headers]:
        return self._call(lambda: self._get_once(client, ref, vkw))

    def _get_to_file(self, client: Any, ref: ObjectRef, vkw: dict[str, str]) -> tuple[str, _Headers]:
        """Ranged GETs of ``part_size`` into a temp file: bounded memory, retries per part."""
        size = int(ref.size or 0)
        suffix = Path(ref.key).suffix[:10]
        fd, path = tempfile.mkstemp(prefix="synthguard-audit-", suffix=suffix, dir=self.tmp_dir)
        headers: _Headers = (None, None)
        try:
            with os.fdopen(fd, "wb") as fh:
                for start in range(0, size, self.part_size):
                    span = (start, min(size, start + self.part_size) - 1)
                    data, headers = self._call(lambda span=span: self._get_once(client, ref, vkw, span))
                    fh.write(data)
        except BaseException:
            os.unlink(path)
            raise
        return path, headers

    # ------------------------------------------------------------------ process pool, finish
    def _make_process_pool(self) -> CheckProcesses:
        # The processes start (and import the checkers) now, while the first GETs run, instead of
        # when the first objects are waiting.
        return CheckProcesses(self.processes, self.cfg, timeout=self.check_timeout)

    def _finish(self, targets: Sequence[S3Target]) -> None:
        st = self.state
        counts = st.counts(self.run_id)
        n_skipped = counts.pop("skipped", 0)
        stats = self.stats.to_dict()
        summary: dict[str, Any] = {
            "run_id": self.run_id, "targets": [t.uri for t in targets], "completed": True,
            "resumed": self._resumed, "objects": sum(counts.values()), "counts": counts,
            "skipped": {"count": n_skipped, "reasons": st.skipped_reasons(self.run_id)},
            "downloaded": stats["downloaded"], "reused": stats["reused"], "resumed_objects": stats["resumed"],
            "listed": stats["listed"], "bytes_read": stats["bytes_read"], "retries": stats["retries"],
            "elapsed_s": stats["elapsed_s"], "list_s": stats["list_s"], "objects_per_s": stats["objects_per_s"],
            "checks": self.cfg.describe(),
        }
        if self.origins or self.skipped_origins:
            summary["cloudfront_origins"] = [o.to_dict() if hasattr(o, "to_dict") else str(o) for o in self.origins]
            if self.skipped_origins:
                summary["cloudfront_skipped_origins"] = [o.to_dict() if hasattr(o, "to_dict") else str(o)
                                                         for o in self.skipped_origins]
        edge: list[Any] = []
        if self.sample_edge and self.origins:
            from . import cloudfront

            objects = [o for o in st.iter_run_objects(self.run_id)
                       if isinstance(o, ObjectResult) and o.ident not in self._not_latest]
            edge = cloudfront.sample_edges(self.origins, objects, self.sample_edge,
                                           edge_url_map=self._edge_map,
                                           trust_anchors=self.cfg.trust_anchors, watermark_key=self.cfg.watermark_key)
            summary.update(cloudfront.summarize(edge))
            st.add_findings(self.run_id, "edge", edge, replace=True)
        if self._posture_job is not None:
            findings, summary["posture"] = self._posture_job.result()  # run_for_audit never raises
            st.add_findings(self.run_id, "posture", findings, replace=True)
        st.finish_run(self.run_id, summary)
        self.summary = summary

    def result(self) -> AuditResult:
        """The finished run (runs it first if :meth:`run` was not iterated), read back from the state."""
        if self._result is None:
            if self.run_id is None or not hasattr(self, "summary"):
                for _ in self.run():
                    pass
            with State(self._state_arg) if not isinstance(self._state_arg, State) else _nullctx(self._state_arg) as st:
                self._result = st.load_run(self.run_id)
        return self._result


class CheckProcessDied(RuntimeError):
    """A check process died while checking this object, and again on a fresh process (a decoder
    crash on hostile bytes, or the OOM killer): the object is ``unreadable`` with the reason."""


class CheckTimedOut(RuntimeError):
    """A check ran past the audit's ``check_timeout`` (a decoder stuck on hostile bytes): its
    process was stopped and replaced; the object is ``unreadable`` with the reason."""


class CheckProcesses:
    """``n`` check processes, each behind its own pipe: the I/O thread that needs a check takes an
    idle process, sends it the bytes and waits for the outcome itself.

    Why not ``concurrent.futures.ProcessPoolExecutor``: its round trip goes through a manager
    thread and a queue-feeder thread (a wake-up pipe and four thread hand-offs per task): ~0.43 ms
    of the parent's CPU per task against ~0.17 ms here (16 threads, 2 processes, a no-op check),
    and on a many-core machine the parent (one GIL) is what bounds the audit. And a process that
    dies breaks the executor for good (every later object would be ``unreadable``); here it is
    replaced and the object it was checking is tried once more on the fresh process: bytes that
    crash a decoder twice make only that object ``unreadable`` (:class:`CheckProcessDied`). Only
    when processes keep dying with no check succeeding in between (a broken installation) is the
    pool given up: every later check raises ``BrokenProcessPool`` at once.
    """

    def __init__(self, n: int, cfg: _checks.CheckConfig, target: Callable[[Any, Any], None] | None = None,
                 timeout: float | None = None) -> None:
        """``target``: each process's main loop (default :func:`_check_process`; tests pass one that
        dies). ``timeout``: seconds one check may take before its process is stopped (None: no limit)."""
        self._timeout = timeout or None
        # forkserver: children start from a clean process, not a fork of one with live boto3 threads.
        self._ctx = multiprocessing.get_context("forkserver")
        self._cfg = cfg
        self._target = target or _check_process
        self._n = max(1, n)
        self._slots: list[tuple[Any, Any]] = []  # (parent's end of the pipe, process)
        self._idle: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._deaths_in_a_row = 0
        self._broken = False
        for i in range(self._n):
            self._slots.append(self._spawn())
            self._idle.put(i)

    def _spawn(self) -> tuple[Any, Any]:
        mine, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=self._target, args=(theirs, self._cfg), name="s3audit-check", daemon=True)
        proc.start()
        theirs.close()
        return mine, proc

    def check(self, source: bytes | str, mime: str | None, key: str) -> _checks.CheckOutcome:
        """``checks.check_task(source, mime, key)`` in an idle process (waits for one)."""
        i = self._idle.get()
        try:
            for attempt in (1, 2):
                if self._broken:
                    raise BrokenProcessPool("check processes keep dying at start; no checks were run")
                conn, proc = self._slots[i]
                try:
                    conn.send((source, mime, key))
                    if self._timeout is not None and not conn.poll(self._timeout):
                        proc.kill()  # stuck: not retried (that would double the wait)
                        self._replace(i, died=False)
                        raise CheckTimedOut(f"the check took longer than {self._timeout:g} s; its process was "
                                            "stopped")
                    ok, value = conn.recv()
                except (EOFError, OSError):  # the process died (EOF, broken pipe)
                    why = self._replace(i)
                    if attempt == 2:
                        raise CheckProcessDied(f"the check process died twice on this object ({why})") from None
                    continue
                with self._lock:
                    self._deaths_in_a_row = 0
                if not ok:
                    raise value
                return value
        finally:
            self._idle.put(i)
        raise AssertionError("unreachable")

    def _replace(self, i: int, died: bool = True) -> str:
        """Reap slot ``i``'s dead process, start a fresh one there; say how the old one ended.
        ``died=False``: stopped by us (a timeout), not counted towards giving the pool up."""
        conn, proc = self._slots[i]
        conn.close()
        proc.join(5)
        code = proc.exitcode
        if code is None:  # the pipe broke but the process lives on: it cannot be trusted
            proc.kill()
            proc.join()
            why = "its pipe broke"
        elif code < 0:
            try:
                why = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                why = f"killed by signal {-code}"
        else:
            why = f"exit code {code}"
        with self._lock:
            self._deaths_in_a_row += died
            if self._deaths_in_a_row > 2 * self._n + 2:
                self._broken = True
        if not self._broken:
            self._slots[i] = self._spawn()
        return why

    def close(self) -> None:
        """Stop the processes (the caller has no check in flight): each ends at the EOF of its pipe."""
        for conn, _ in self._slots:
            conn.close()
        for _, proc in self._slots:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join()


def _check_process(conn: Any, cfg: _checks.CheckConfig) -> None:
    """A check process of :class:`CheckProcesses`: (source, mime, key) in, (ok, outcome or exception) out."""
    _checks.init_process(cfg, True)
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent closed its end: the run is over
            return
        try:
            reply = (True, _checks.check_task(*task))
        except BaseException as exc:  # the parent raises it in the I/O thread, as the executor did
            reply = (False, exc)
        del task
        try:
            conn.send(reply)
        except Exception as exc:  # an outcome or exception that does not pickle: send why
            conn.send((False, exc))


class _nullctx:
    def __init__(self, v: Any) -> None:
        self.v = v

    def __enter__(self) -> Any:
        return self.v

    def __exit__(self, *exc: Any) -> None:
        pass


def _not_found(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in ("NoSuchKey", "404", "NotFound", "NoSuchVersion")
    return False


def _read_anchors(value: Any) -> bytes | None:
    """Trust-anchor PEM bytes (path, PEM text or bytes) through ``provenance.certs.read_pem``,
    checked once here so a wrong file is a usage error before anything is listed."""
    if value is None:
        return None
    from provenance.certs import read_pem

    try:
        data = read_pem(bytes(value) if isinstance(value, bytearray) else value)
    except FileNotFoundError:
        raise AuditError(f"trust anchors file not found: {value}") from None
    except (OSError, ValueError) as exc:
        raise AuditError(f"trust anchors: {exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise AuditError(f"{value if not isinstance(value, (bytes, bytearray)) else 'trust anchors'}: "
                         "no PEM certificate in the trust anchors file")
    return data


def _watermark_key(path: Any) -> dict[str, Any]:
    if path is None:  # the watermark room's default: $SYNTHGUARD_WATERMARK_KEY_FILE, else its public key
        try:
            import watermark

            key, kind = watermark.resolve_key(None)
            return {"watermark_key": key, "watermark_key_kind": kind}
        except (ImportError, AttributeError):
            return {"watermark_key": None, "watermark_key_kind": None}
        except (OSError, ValueError) as exc:
            raise AuditError(f"watermark key: {exc}") from None
    p = Path(path)
    if not p.is_file():
        raise AuditError(f"watermark key file not found: {p}")
    try:
        import watermark

        key, kind = watermark.resolve_key(str(p))
    except (ImportError, AttributeError):  # the watermark room without its key helper yet
        raw = p.read_bytes().strip()
        try:
            key, kind = bytes.fromhex(raw.decode("ascii")), "hex"
        except ValueError:
            key, kind = raw, "raw"
    except (OSError, ValueError) as exc:
        raise AuditError(f"--watermark-key-file {p}: {exc}") from None
    return {"watermark_key": key, "watermark_key_kind": kind}


def _registry_path(value: Any) -> str | None:
    if value is None:
        return None
    p = Path(value)
    try:
        import provenance.registry  # noqa: F401  (issue 5)
    except ImportError:
        raise AuditError("--registry: the training-asset registry is not available in this build "
                         "(provenance.registry missing)") from None
    if not p.is_file():
        raise AuditError(f"registry DB not found: {p}")
    try:  # a wrong file is a usage error now, not an 'unreadable' verdict on every object
        from provenance.registry import Registry

        Registry(p).close()
    except ValueError as exc:
        raise AuditError(f"--registry: {exc}") from None
    return str(p.resolve())


def iter_audit(targets: Iterable[Any] | str, **options: Any) -> Iterator[ObjectResult]:
    """Audit S3 / CloudFront targets, yielding one ObjectResult per media object as it is done.

    Options are those of :class:`Auditor` (``endpoint_url``, ``trust_anchors``, ``state``, ...).
    """
    yield from Auditor(targets, **options).run()


def audit(targets: Iterable[Any] | str, **options: Any) -> AuditResult:
    """Audit S3 / CloudFront targets and return the whole run (summary, objects, findings)."""
    auditor = Auditor(targets, **options)
    auditor.want_objects = False  # the result is read back from the state once, at the end
    return auditor.result()
