"""A SQLite registry of training-asset fingerprints with a fast in-memory index.

Why SQLite: one file that survives restarts, opens from many worker processes, and migrates in place
(``schema_version`` table; each migration only adds, never drops user data). The search index is
built lazily in memory from SQLite the first time a lookup needs it and rebuilt when rows change
(this connection's writes, or another process's, seen through ``PRAGMA data_version``).

Algorithm: the ``meta`` table records ``provenance.fingerprints.ALGORITHM`` of the stored hashes. A
registry made by another algorithm (or rows from before it was recorded) is refused when opened, added
to or searched (``AlgorithmMismatchError``, a ``ValueError``) until ``Registry.rehash()`` (CLI:
``synthguard fingerprint rehash --registry DB``) recomputes every asset from its recorded source.

Lookup: a query matches an asset when ``query - asset <= THRESHOLD`` (see ``provenance.fingerprints``):
the query's full frame against every stored part, the query's parts against every stored full
frame, and the query's PDQ row against every stored PDQ row (one per frame, at ``pdq_threshold``).
Small registries are searched by vectorised popcount over packed hashes (exact); large ones
(>= MIH_MIN_ROWS part hashes) by multi-index hashing: 32 tables keyed by 16-bit byte pairs over the
parts (128 over the PDQ rows, ``_PDQ_KEYS``), candidates share at least one key, then the true distance
is computed 64 bits at a time with early exit. Measured (bench stage C, 1,000,000 part hashes = 17,543
assets, T=49, synthguard-fp/3, one core, two runs): 10,000 queries in 0.56-0.77 s CPU (13,000-17,700
queries/s; full frames vs parts 0.43-0.57 s, PDQ 0.13-0.20 s), best match found for 98.9 % of the
queries that have one (3 of 282 missed by the parts MIH, which is exact only up to distance 15); the
reverse direction (the queries' parts vs stored full frames, also in ``match_many``) takes another
0.53-0.78 s. One query at a time (``match``: PDQ rows brute force) 500-620 queries/s; numpy brute
force over everything 13-14 queries/s.

Size: an image stores 57 part hashes and a PDQ row (1.9 kB; synthguard-fp/1 stored 166 parts), so
1,000,000 indexed part hashes are ~17,500 images; the index adds ~4 bytes per hash per table. Videos
store every sampled frame's rows.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import fingerprints as _fpm
from .fingerprints import (HASH_BYTES, THRESHOLD, Fingerprint, confidence_for, hamming, pdq_scaled, pdq_threshold,
                           popcount_rows64)

__all__ = ["Registry", "Match", "SCHEMA_VERSION", "MIH_MIN_ROWS", "SourceItem", "iter_sources", "parse_s3_uri",
           "AlgorithmMismatchError", "RehashResult"]

SCHEMA_VERSION = 3
MIH_MIN_ROWS = 65_536     # below this, brute force is exact and already fast

# Migrations: index i brings the schema from version i to i + 1. Never drop or rewrite user data.
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS assets (
    asset_id    TEXT PRIMARY KEY,
    label       TEXT,
    source_uri  TEXT,
    fingerprint TEXT NOT NULL          -- hex of the full-frame hash (v1: the only hash stored)
);
"""


def _migrate_1_to_2(con: sqlite3.Connection) -> None:
    """v2: kind / change-detection columns, and every frame's part hashes as a BLOB."""
    for col, decl in (("kind", "TEXT NOT NULL DEFAULT 'image'"), ("etag", "TEXT"), ("size", "INTEGER"),
                      ("mtime", "REAL"), ("added_at", "REAL")):
        con.execute(f"ALTER TABLE assets ADD COLUMN {col} {decl}")
    con.execute("""CREATE TABLE IF NOT EXISTS frames (
        asset_id TEXT NOT NULL REFERENCES assets(asset_id) ON DELETE CASCADE,
        frame    INTEGER NOT NULL,
        parts    BLOB NOT NULL,
        PRIMARY KEY (asset_id, frame))""")
    con.execute("CREATE INDEX IF NOT EXISTS assets_source_uri ON assets(source_uri)")
    rows = con.execute("SELECT asset_id, fingerprint FROM assets").fetchall()
    for asset_id, hx in rows:  # v1 rows carried the full-frame hash only: keep it as a 1-part frame
        try:
            raw = bytes.fromhex(hx)
        except (TypeError, ValueError):
            continue
        if raw and len(raw) % HASH_BYTES == 0:
            con.execute("INSERT OR IGNORE INTO frames(asset_id, frame, parts) VALUES (?, 0, ?)", (asset_id, raw))


def _migrate_2_to_3(con: sqlite3.Connection) -> None:
    """v3: a ``meta`` key/value table that records the fingerprint algorithm of the stored hashes, and a
    staging table for ``Registry.rehash`` (resumable: rows computed before an interruption are kept).

    Rows written before v3 carry no algorithm: an empty registry gets the current one recorded (see
    ``Registry._init_algorithm``); one with rows stays unrecorded and is refused until rehashed."""
    con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("""CREATE TABLE IF NOT EXISTS rehash_frames (
        asset_id  TEXT NOT NULL,
        frame     INTEGER NOT NULL,
        parts     BLOB NOT NULL,
        kind      TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        PRIMARY KEY (asset_id, frame))""")


_MIGRATIONS = [None, _migrate_1_to_2, _migrate_2_to_3]


class AlgorithmMismatchError(ValueError):
    """The registry's hashes were made by another fingerprint algorithm than this synthguard computes:
    distances between them mean nothing, so adding and matching are refused until ``rehash``."""

    def __init__(self, path, recorded: str | None, current: str) -> None:
        self.path, self.recorded, self.current = str(path), recorded, current
        made = f"'{recorded}'" if recorded else "an older synthguard (algorithm not recorded)"
        super().__init__(
            f"{path}: fingerprints were made with {made}, this synthguard computes '{current}'; recompute them "
            f"from their sources with 'synthguard fingerprint rehash --registry {path}' (or register the assets "
            f"again into a new registry file with 'synthguard fingerprint add')")


@dataclass
class RehashResult:
    """What ``Registry.rehash`` did: ``applied`` is True when the registry now holds only hashes of
    the current algorithm (and records it)."""

    algorithm: str
    rehashed: list[str]
    reused: list[str]
    failed: list[dict]
    dropped: list[str]
    applied: bool

    def to_dict(self) -> dict:
        return {"algorithm": self.algorithm, "rehashed": self.rehashed, "reused_staged": self.reused,
                "failed": self.failed, "dropped": self.dropped, "applied": self.applied}


@dataclass(frozen=True, order=True)
class Match:
    """One registered asset that a query matched."""

    distance: int
    asset_id: str
    label: str | None = None
    source_uri: str | None = None
    confidence: float = 0.0
    kind: str = "image"
    frames_matched: int | None = None
    frames_total: int | None = None

    def to_dict(self) -> dict:
        d = {"asset_id": self.asset_id, "distance": self.distance, "confidence": self.confidence,
             "label": self.label, "source_uri": self.source_uri, "kind": self.kind}
        if self.frames_total is not None:
            d["frames_matched"], d["frames_total"] = self.frames_matched, self.frames_total
        return d


# Multi-index hashing tables: each keyed by a pair of code bytes (16 bits). The first 16 tables cover
# the code once (pigeonhole: every code within distance 15 shares a whole key, so MIH is exact there);
# the next 16 pair the bytes differently, which lifts recall near the threshold (a match at distance
# ~38 leaves ~9 of 32 bytes untouched, and two pairings make it far likelier that two of them share
# a key). Measured in bench/bench_fingerprint.py stage C.
_MIH_KEYS: tuple[tuple[int, int], ...] = tuple((2 * j, 2 * j + 1) for j in range(16)) + \
    tuple((j, j + 16) for j in range(16))


def _pdq_keys(n: int = 128) -> tuple[tuple[int, int], ...]:
    """Byte pairs for the PDQ index: the 32 of ``_MIH_KEYS``, then pairs (j, j + s) for growing s.

    The PDQ index holds one code per frame (~17,500 for 1,000,000 part hashes), so a 16-bit bucket
    holds ~0.3 codes and more tables are cheap; they are needed because a PDQ match sits at distance
    up to ~67 (26 % of the bits). Measured on the corpus copies with PDQ distance <= 67: a shared key in
    90 % (32 tables), 98 % (128 tables), 99.7 % (all 496 pairs: 0.3 s per 10,000 queries, ~130 MB of
    tables). Bench stage C: 128 tables find 99.5 % of the PDQ rows within 67 in 0.2 s per 10,000 queries."""
    out = list(_MIH_KEYS)
    seen = {tuple(sorted(k)) for k in out}
    s = 1
    while len(out) < n and s < 32:
        for j in range(32):
            k = tuple(sorted((j, (j + s) % 32)))
            if k not in seen and len(out) < n:
                seen.add(k)
                out.append(k)
        s += 1
    return tuple(out)


_PDQ_KEYS = _pdq_keys()


class _MIH:
    """Multi-index hashing over packed 256-bit codes: tables keyed by 16-bit byte pairs."""

    def __init__(self, codes: np.ndarray, keys: Sequence[tuple[int, int]] = _MIH_KEYS) -> None:
        self.codes = np.ascontiguousarray(codes)
        self.codes64 = self.codes.view(np.uint64)
        self.keys = tuple(keys)
        self.perm = []
        self.starts = []
        for a, b in self.keys:
            col = (codes[:, a].astype(np.uint16) << 8) | codes[:, b]
            order = np.argsort(col, kind="stable").astype(np.int32)
            self.perm.append(order)
            self.starts.append(np.searchsorted(col[order], np.arange(65537), side="left").astype(np.int32))

    def candidates(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows sharing at least one table key with the query rows q (Q, 32): (query index, row)."""
        q = np.ascontiguousarray(q)
        ar = np.arange(len(q), dtype=np.int32)
        qis, rows = [], []
        for j, (a, b) in enumerate(self.keys):
            k = (q[:, a].astype(np.int64) << 8) | q[:, b]
            s, e = self.starts[j][k], self.starts[j][k + 1]
            n = (e - s).astype(np.int64)
            tot = int(n.sum())
            if not tot:
                continue
            off = np.arange(tot) - np.repeat(np.cumsum(n) - n, n)
            rows.append(self.perm[j][np.repeat(s, n) + off])
            qis.append(np.repeat(ar, n))
        if not rows:
            return np.empty(0, np.int32), np.empty(0, np.int32)
        return np.concatenate(qis), np.concatenate(rows)

    def range_search(self, q: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (query index, row, distance) with distance <= t among the candidates, each pair once.

        The distance is computed 64 bits at a time and candidates are dropped as soon as the partial
        distance exceeds t (half of a random candidate's 256 bits already do), so most candidates cost
        two word gathers, not a 32-byte row copy."""
        q = np.ascontiguousarray(q, dtype=np.uint8)
        q64 = q.view(np.uint64)
        qi, rows = self.candidates(q)
        if len(rows) == 0:
            return qi, rows, np.empty(0, np.int32)
        c = self.codes64
        d = np.bitwise_count(c[rows, 0] ^ q64[qi, 0]).astype(np.int32) if hasattr(np, "bitwise_count") else None
        if d is None:  # numpy < 2: one pass with the byte table
            d = popcount_rows64(c[rows] ^ q64[qi])
        else:
            d += np.bitwise_count(c[rows, 1] ^ q64[qi, 1])
            keep = d <= t
            qi, rows, d = qi[keep], rows[keep], d[keep]
            for w in (2, 3):
                d += np.bitwise_count(c[rows, w] ^ q64[qi, w])
        keep = d <= t
        qi, rows, d = qi[keep], rows[keep], d[keep]
        if len(rows):  # a row found through several tables is reported once
            key = qi.astype(np.int64) * (len(self.codes) + 1) + rows
            _, first = np.unique(key, return_index=True)
            qi, rows, d = qi[first], rows[first], d[first]
        return qi, rows, d


class _Index:
    """Everything a lookup needs, as arrays: part codes and full-frame codes with their owners."""

    def __init__(self, assets: list[tuple], frames: list[tuple[int, int, bytes]]) -> None:
        self.asset_ids = [a[0] for a in assets]
        self.labels = [a[1] for a in assets]
        self.uris = [a[2] for a in assets]
        self.kinds = [a[3] for a in assets]
        n_frames = np.zeros(len(assets), np.int32)
        part_chunks, part_owner, part_frame, full, full_owner, full_frame = [], [], [], [], [], []
        pdq = []
        for fid, (owner, frame, blob) in enumerate(frames):
            rows = np.frombuffer(blob, np.uint8).reshape(-1, HASH_BYTES)
            p = rows[:-1]                       # parts; the last row is the PDQ component
            pdq.append(rows[-1])
            part_chunks.append(p)
            part_owner.append(np.full(len(p), owner, np.int32))
            part_frame.append(np.full(len(p), fid, np.int32))
            full.append(p[0])
            full_owner.append(owner)
            full_frame.append(fid)
            n_frames[owner] += 1
        self.n_frames = n_frames
        self.codes = np.ascontiguousarray(np.concatenate(part_chunks)) if part_chunks else np.zeros((0, HASH_BYTES), np.uint8)
        self.owner = np.concatenate(part_owner) if part_owner else np.zeros(0, np.int32)
        self.frame_of = np.concatenate(part_frame) if part_frame else np.zeros(0, np.int32)
        self.full = np.ascontiguousarray(np.stack(full)) if full else np.zeros((0, HASH_BYTES), np.uint8)
        self.full_owner = np.asarray(full_owner, np.int32)
        self.full_frame = np.asarray(full_frame, np.int32)
        self.pdq = np.ascontiguousarray(np.stack(pdq)) if pdq else np.zeros((0, HASH_BYTES), np.uint8)
        self.frame_owner = np.asarray([f[0] for f in frames], np.int32)
        big = len(self.codes) >= MIH_MIN_ROWS
        self.mih_parts = _MIH(self.codes) if big else None
        self.mih_full = _MIH(self.full) if big else None
        self.mih_pdq = _MIH(self.pdq, _PDQ_KEYS) if big else None

    def frame_distances(self, fp: Fingerprint, t: int) -> dict[int, int]:
        """{frame id: distance} for every stored frame within t of the query (both directions)."""
        out: dict[int, int] = {}
        q = np.ascontiguousarray(fp.parts)
        if self.mih_parts is not None:
            _, rows, d = self.mih_parts.range_search(q[:1], t)
            fwd_frames, fwd_d = self.frame_of[rows], d
        else:
            d = hamming(self.codes, q[0]) if len(self.codes) else np.zeros(0, np.int32)
            keep = d <= t
            fwd_frames, fwd_d = self.frame_of[keep], d[keep]
        if self.mih_full is not None and len(q) * len(self.full) > 200_000:
            _, rows, d = self.mih_full.range_search(q, t)
            rev_frames, rev_d = self.full_frame[rows], d
        elif len(self.full):
            d = hamming(q[:, None, :], self.full[None, :, :]).min(axis=0)
            keep = d <= t
            rev_frames, rev_d = self.full_frame[keep], d[keep]
        else:
            rev_frames, rev_d = np.zeros(0, np.int32), np.zeros(0, np.int32)
        # PDQ component: one code per frame, exact (a single query against ~17,500 codes is ~0.1 ms)
        if len(self.pdq):
            d = hamming(self.pdq, fp.pdq)
            keep = d <= pdq_threshold(t)
            pdq_frames, pdq_d = np.flatnonzero(keep).astype(np.int32), pdq_scaled(d[keep])
        else:
            pdq_frames, pdq_d = np.zeros(0, np.int32), np.zeros(0, np.int32)
        for f, d in zip(np.concatenate([fwd_frames, rev_frames, pdq_frames]).tolist(),
                        np.concatenate([fwd_d, rev_d, pdq_d]).tolist()):
            if d < out.get(f, 1 << 30):
                out[f] = d
        return out


class Registry:
    """Training assets and their fingerprints in one SQLite file.

    ``with Registry("assets.db") as reg: reg.add("img-1", fingerprint(path), label="faces-v2")``
    then ``reg.best_match(fingerprint(upload))``. Safe to open from several processes; each keeps
    its own lazily built in-memory index.
    """

    def __init__(self, path: str | os.PathLike, *, threshold: int | None = None,
                 check_algorithm: bool = True) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"{self.path}: is a directory, expected a registry database file")
        if self.path.parent and not self.path.parent.exists():
            raise ValueError(f"{self.path.parent}: directory does not exist")
        self.threshold = THRESHOLD if threshold is None else int(threshold)
        try:
            self._con = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
            self._con.execute("PRAGMA foreign_keys=ON")
            self._con.execute("PRAGMA busy_timeout=30000")
            tables = {r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "assets" not in tables:  # another SQLite file (an audit state?): never write into it
                self._con.close()
                raise ValueError(f"{self.path}: not a synthguard registry (an SQLite file without its tables)")
            self._migrate()
            self._init_algorithm()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.path}: not a synthguard registry ({exc})") from None
        self._lock = threading.RLock()
        self._index: _Index | None = None
        self._data_version: int | None = None
        if check_algorithm:
            try:
                self.check_algorithm()
            except AlgorithmMismatchError:
                self._con.close()
                raise

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        con = self._con
        with con:
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = con.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise ValueError(f"{self.path}: registry schema v{version} is newer than this synthguard "
                                 f"(v{SCHEMA_VERSION}); upgrade synthguard")
            if version == 0:
                con.execute(_SCHEMA_V1.strip().rstrip(";"))
                version = 1
                con.execute("INSERT INTO schema_version(version) VALUES (1)")
            while version < SCHEMA_VERSION:
                _MIGRATIONS[version](con)
                version += 1
                con.execute("INSERT INTO schema_version(version) VALUES (?)", (version,))

    @property
    def schema_version(self) -> int:
        return int(self._con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # ------------------------------------------------------------------ fingerprint algorithm
    def _init_algorithm(self) -> None:
        """A registry without a recorded algorithm and without rows (new, or an empty legacy file) gets
        the current one; one with rows keeps none recorded (its hashes' algorithm is unknown)."""
        con = self._con
        with con:
            if self._recorded_algorithm() is None and \
                    con.execute("SELECT 1 FROM assets LIMIT 1").fetchone() is None:
                con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('algorithm', ?)", (_fpm.ALGORITHM,))

    def _recorded_algorithm(self) -> str | None:
        row = self._con.execute("SELECT value FROM meta WHERE key='algorithm'").fetchone()
        return str(row[0]) if row else None

    @property
    def algorithm(self) -> str | None:
        """The fingerprint algorithm of the stored hashes (``None``: rows from before it was recorded)."""
        return self._recorded_algorithm()

    def check_algorithm(self) -> None:
        """Raise ``AlgorithmMismatchError`` unless the stored hashes are the current algorithm's."""
        rec = self._recorded_algorithm()
        if rec != _fpm.ALGORITHM:
            raise AlgorithmMismatchError(self.path, rec, _fpm.ALGORITHM)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM assets").fetchone()[0])

    def __contains__(self, asset_id: object) -> bool:
        return self._con.execute("SELECT 1 FROM assets WHERE asset_id=?", (str(asset_id),)).fetchone() is not None

    def __repr__(self) -> str:
        try:
            return f"Registry({str(self.path)!r}, assets={len(self)})"
        except sqlite3.Error:
            return f"Registry({str(self.path)!r}, closed)"

    # ------------------------------------------------------------------ writes
    def add(self, asset_id: str, fingerprint: Fingerprint, *, source_uri: str | None = None,
            label: str | None = None, etag: str | None = None, size: int | None = None,
            mtime: float | None = None) -> None:
        """Register (or replace) an image asset."""
        self.add_frames(asset_id, [fingerprint], kind="image", source_uri=source_uri, label=label,
                        etag=etag, size=size, mtime=mtime)

    def add_video(self, asset_id: str, fingerprints: Sequence[Fingerprint], **kw) -> None:
        """Register (or replace) a video asset from its sampled keyframe fingerprints."""
        self.add_frames(asset_id, fingerprints, kind="video", **kw)

    def add_frames(self, asset_id: str, fingerprints: Sequence[Fingerprint], *, kind: str = "image",
                   source_uri: str | None = None, label: str | None = None, etag: str | None = None,
                   size: int | None = None, mtime: float | None = None) -> None:
        if not asset_id:
            raise ValueError("asset_id must be a non-empty string")
        fps = list(fingerprints)
        if not fps or not all(isinstance(f, Fingerprint) for f in fps):
            raise ValueError("expected one or more Fingerprint values")
        with self._lock, self._con as con:
            self.check_algorithm()       # never mix hashes of two algorithms in one registry
            con.execute("DELETE FROM frames WHERE asset_id=?", (asset_id,))
            con.execute(
                "INSERT INTO assets(asset_id, label, source_uri, fingerprint, kind, etag, size, mtime, added_at) "
                "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(asset_id) DO UPDATE SET label=excluded.label, "
                "source_uri=excluded.source_uri, fingerprint=excluded.fingerprint, kind=excluded.kind, "
                "etag=excluded.etag, size=excluded.size, mtime=excluded.mtime, added_at=excluded.added_at",
                (asset_id, label, source_uri, fps[0].full.tobytes().hex(), kind, etag, size, mtime, time.time()))
            con.executemany("INSERT INTO frames(asset_id, frame, parts) VALUES (?,?,?)",
                            [(asset_id, i, f.to_bytes()) for i, f in enumerate(fps)])
            self._index = None

    def remove(self, asset_id: str) -> bool:
        with self._lock, self._con as con:
            con.execute("DELETE FROM frames WHERE asset_id=?", (asset_id,))
            n = con.execute("DELETE FROM assets WHERE asset_id=?", (asset_id,)).rowcount
            self._index = None
        return bool(n)

    def unchanged(self, source_uri: str, *, etag: str | None = None, size: int | None = None,
                  mtime: float | None = None) -> bool:
        """True when ``source_uri`` is registered with the same ETag (or size and mtime)."""
        row = self._con.execute("SELECT etag, size, mtime FROM assets WHERE source_uri=? LIMIT 1",
                                (source_uri,)).fetchone()
        if row is None:
            return False
        if etag is not None:
            return row[0] == etag
        return size is not None and mtime is not None and row[1] == size and \
            row[2] is not None and abs(float(row[2]) - float(mtime)) < 1e-6

    def get(self, asset_id: str) -> dict | None:
        row = self._con.execute("SELECT asset_id, label, source_uri, kind, etag, size, mtime, added_at "
                                "FROM assets WHERE asset_id=?", (asset_id,)).fetchone()
        if row is None:
            return None
        keys = ("asset_id", "label", "source_uri", "kind", "etag", "size", "mtime", "added_at")
        return dict(zip(keys, row))

    def fingerprints(self, asset_id: str) -> list[Fingerprint]:
        rows = self._con.execute("SELECT parts FROM frames WHERE asset_id=? ORDER BY frame", (asset_id,)).fetchall()
        return [Fingerprint.from_bytes(r[0]) for r in rows]

    # ------------------------------------------------------------------ rehash
    def rehash(self, *, s3=None, max_frames: int = 16, drop_unreadable: bool = False,
               progress=None) -> RehashResult:
        """Recompute every asset's fingerprints with the current algorithm from its ``source_uri``
        (a local path or ``file://`` URI; ``s3://`` with an S3 client ``s3``, or a zero-argument callable
        that makes one, called on the first ``s3://`` source) and record the algorithm.

        Nothing changes until every asset is rehashed: sources that cannot be read or decoded are
        listed in ``failed`` and the registry is left as it was (``applied`` False) unless
        ``drop_unreadable`` removes those assets. Computed hashes are staged in the file, so running
        it again after an interruption or after fixing the sources only computes what is missing.
        ``progress(done, total)`` is called after each asset."""
        from .fingerprints import fingerprint_media
        from .media import MediaError

        alg = _fpm.ALGORITHM
        con = self._con
        with self._lock, con:
            con.execute("DELETE FROM rehash_frames WHERE algorithm<>? OR asset_id NOT IN "
                        "(SELECT asset_id FROM assets)", (alg,))
        assets = con.execute("SELECT asset_id, source_uri FROM assets ORDER BY rowid").fetchall()
        staged = {r[0] for r in con.execute("SELECT DISTINCT asset_id FROM rehash_frames")}
        client = [None if s3 is None or callable(s3) and not hasattr(s3, "get_object") else s3]

        def s3_client():
            if client[0] is None and s3 is not None:
                client[0] = s3()
            return client[0]

        rehashed: list[str] = []
        reused: list[str] = []
        failed: list[dict] = []
        for n, (asset_id, uri) in enumerate(assets, 1):
            if asset_id in staged:
                reused.append(asset_id)
            else:
                try:
                    data = _read_source_uri(uri, s3_client() if uri and uri.startswith("s3://") else None)
                    kind, fps = fingerprint_media(data, uri, max_frames=max_frames)
                except Exception as exc:  # one unreadable source must not stop the others
                    if not isinstance(exc, (MediaError, OSError, ValueError)) and \
                            not type(exc).__module__.startswith("botocore"):
                        raise
                    failed.append({"asset_id": asset_id, "source_uri": uri, "error": str(exc)})
                else:
                    with self._lock, con:
                        con.execute("DELETE FROM rehash_frames WHERE asset_id=?", (asset_id,))
                        con.executemany(
                            "INSERT INTO rehash_frames(asset_id, frame, parts, kind, algorithm) VALUES (?,?,?,?,?)",
                            [(asset_id, i, f.to_bytes(), kind, alg) for i, f in enumerate(fps)])
                    rehashed.append(asset_id)
            if progress is not None:
                progress(n, len(assets))
        dropped: list[str] = []
        if failed and not drop_unreadable:
            return RehashResult(alg, rehashed, reused, failed, dropped, False)
        with self._lock, con:
            for f in failed:
                con.execute("DELETE FROM frames WHERE asset_id=?", (f["asset_id"],))
                con.execute("DELETE FROM assets WHERE asset_id=?", (f["asset_id"],))
                dropped.append(f["asset_id"])
            missing = con.execute("SELECT COUNT(*) FROM assets WHERE asset_id NOT IN "
                                  "(SELECT asset_id FROM rehash_frames)").fetchone()[0]
            if missing:  # assets registered meanwhile by an older synthguard: run again
                con.rollback()
                return RehashResult(alg, rehashed, reused, failed, [], False)
            con.execute("DELETE FROM frames")
            con.execute("INSERT INTO frames(asset_id, frame, parts) SELECT asset_id, frame, parts "
                        "FROM rehash_frames ORDER BY asset_id, frame")
            con.execute("UPDATE assets SET "
                        "kind=(SELECT r.kind FROM rehash_frames r WHERE r.asset_id=assets.asset_id AND r.frame=0), "
                        "fingerprint=(SELECT lower(hex(substr(r.parts, 1, ?))) FROM rehash_frames r "
                        "WHERE r.asset_id=assets.asset_id AND r.frame=0)", (HASH_BYTES,))
            con.execute("DELETE FROM rehash_frames")
            con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('algorithm', ?)", (alg,))
            self._index = None
        return RehashResult(alg, rehashed, reused, failed, dropped, True)

    # ------------------------------------------------------------------ index
    def _current_index(self) -> _Index:
        with self._lock:
            dv = int(self._con.execute("PRAGMA data_version").fetchone()[0])
            if self._index is None or dv != self._data_version:
                self.check_algorithm()   # cached with the index: a lookup costs no extra query
                assets = self._con.execute(
                    "SELECT asset_id, label, source_uri, kind FROM assets ORDER BY rowid").fetchall()
                pos = {a[0]: i for i, a in enumerate(assets)}
                frames = [(pos[a], f, blob) for a, f, blob in self._con.execute(
                    "SELECT asset_id, frame, parts FROM frames ORDER BY asset_id, frame") if a in pos]
                self._index = _Index(assets, frames)
                self._data_version = dv
            return self._index

    def match(self, fp: Fingerprint, k: int = 10, *, threshold: int | None = None) -> list[Match]:
        """Up to ``k`` registered assets within the threshold of ``fp``, nearest first."""
        t = self.threshold if threshold is None else int(threshold)
        idx = self._current_index()
        per_frame = idx.frame_distances(fp, t)
        best: dict[int, int] = {}
        for f, d in per_frame.items():
            o = int(idx.frame_owner[f])
            if d < best.get(o, 1 << 30):
                best[o] = d
        out = [self._match(idx, o, d) for o, d in best.items()]
        out.sort(key=lambda m: (m.distance, m.asset_id))
        return out[:max(0, int(k))]

    def best_match(self, fp: Fingerprint, *, threshold: int | None = None) -> Match | None:
        m = self.match(fp, k=1, threshold=threshold)
        return m[0] if m else None

    def match_video(self, fps: Sequence[Fingerprint], *, min_fraction: float = 0.5, k: int = 10,
                    threshold: int | None = None) -> list[Match]:
        """Assets matched by at least ``min_fraction`` of the query frames (video: enough frames match).

        The distance reported is the median distance of the matched frames."""
        t = self.threshold if threshold is None else int(threshold)
        q = list(fps)
        if not q:
            return []
        idx = self._current_index()
        hits: dict[int, list[int]] = {}
        for fp in q:
            best: dict[int, int] = {}
            for f, d in idx.frame_distances(fp, t).items():
                o = int(idx.frame_owner[f])
                best[o] = min(d, best.get(o, 1 << 30))
            for o, d in best.items():
                hits.setdefault(o, []).append(d)
        need = max(1, int(np.ceil(min_fraction * len(q))))
        out = []
        for o, ds in hits.items():
            if len(ds) >= need:
                d = int(np.median(ds))
                m = self._match(idx, o, d)
                out.append(Match(d, m.asset_id, m.label, m.source_uri, m.confidence, m.kind, len(ds), len(q)))
        out.sort(key=lambda m: (-(m.frames_matched or 0), m.distance, m.asset_id))
        return out[:k]

    def match_many(self, fps: Iterable[Fingerprint], *, threshold: int | None = None) -> list[Match | None]:
        """Best match for each query. On a large registry the queries go through the index as one
        batch (numpy per table, not per query): that is the >= 10,000 queries/s path."""
        t = self.threshold if threshold is None else int(threshold)
        q = list(fps)
        idx = self._current_index()
        if not q or idx.mih_parts is None or idx.mih_full is None:
            return [self.best_match(fp, threshold=t) for fp in q]
        out: list[Match | None] = [None] * len(q)
        qi, rows, d = idx.mih_parts.range_search(np.stack([fp.parts[0] for fp in q]), t)
        sizes = np.array([len(fp.parts) for fp in q])
        pi, frows, d2 = idx.mih_full.range_search(np.concatenate([fp.parts for fp in q]), t)
        zi, zrows, d3 = idx.mih_pdq.range_search(np.stack([fp.pdq for fp in q]), pdq_threshold(t))
        qq = np.concatenate([qi, np.repeat(np.arange(len(q)), sizes)[pi], zi])
        oo = np.concatenate([idx.owner[rows], idx.full_owner[frows], idx.frame_owner[zrows]])
        dd = np.concatenate([d, d2, pdq_scaled(d3)])
        if len(qq):
            order = np.lexsort((oo, dd, qq))                  # per query: nearest first
            qq, oo, dd = qq[order], oo[order], dd[order]
            first = np.flatnonzero(np.r_[True, qq[1:] != qq[:-1]])
            for k in first.tolist():
                out[int(qq[k])] = self._match(idx, int(oo[k]), int(dd[k]))
        return out

    @staticmethod
    def _match(idx: _Index, owner: int, d: int) -> Match:
        return Match(distance=int(d), asset_id=idx.asset_ids[owner], label=idx.labels[owner],
                     source_uri=idx.uris[owner], confidence=confidence_for(d), kind=idx.kinds[owner])


# ---------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class SourceItem:
    """One media file or S3 object to fingerprint: where it is and what identifies its content."""

    uri: str
    name: str
    size: int | None = None
    mtime: float | None = None
    etag: str | None = None

    def read(self, s3=None) -> bytes:
        return _read_source_uri(self.uri, s3) if self.uri.startswith("s3://") else Path(self.name).read_bytes()


def _read_source_uri(uri: str | None, s3=None) -> bytes:
    """The bytes behind a registered ``source_uri``: a local path, a ``file://`` URI or (with an S3
    client) an ``s3://`` URI."""
    if not uri:
        raise ValueError("no source recorded for this asset")
    if uri.startswith("s3://"):
        if s3 is None:
            raise ValueError("an S3 client is needed to read s3:// sources")
        bucket, key = parse_s3_uri(uri)
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if uri.startswith("file://"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        u = urlparse(uri)
        if u.netloc not in ("", "localhost"):
            raise ValueError(f"{uri}: not a local file")
        return Path(url2pathname(u.path)).read_bytes()       # url2pathname unquotes
    if "://" in uri:
        raise ValueError(f"{uri}: cannot read sources of this kind (local paths, file:// and s3:// only)")
    return Path(uri).read_bytes()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise ValueError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix


def iter_sources(target: str, s3=None, *, extensions: Iterable[str] | None = None) -> list[SourceItem]:
    """Media files under a local path (recursive) or objects under an S3 prefix, sorted by name.

    Only known image/video extensions are listed from directories and prefixes; a single file named
    explicitly is always included (its content decides whether it is media).
    """
    from .fingerprints import MEDIA_EXTENSIONS

    exts = {e.lower() for e in (extensions or MEDIA_EXTENSIONS)}
    if target.startswith("s3://"):
        if s3 is None:
            raise ValueError("an S3 client is needed for s3:// targets")
        bucket, prefix = parse_s3_uri(target)
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []) or []:
                key = obj["Key"]
                if key.endswith("/") or Path(key).suffix.lower() not in exts:
                    continue
                out.append(SourceItem(f"s3://{bucket}/{key}", key, int(obj.get("Size", 0)),
                                      None, str(obj.get("ETag", "")).strip('"') or None))
        return out
    p = Path(target)
    if not p.exists():
        raise FileNotFoundError(f"{target}: no such file or directory")
    if p.is_file():
        st = p.stat()
        return [SourceItem(p.resolve().as_uri(), str(p), st.st_size, st.st_mtime)]
    out = []
    for f in sorted(p.rglob("*")):
        if f.is_file() and f.suffix.lower() in exts:
            st = f.stat()
            out.append(SourceItem(f.resolve().as_uri(), str(f), st.st_size, st.st_mtime))
    return out
