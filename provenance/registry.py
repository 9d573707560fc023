"""A SQLite registry of training-asset fingerprints with a fast in-memory index.

Why SQLite: one file that survives restarts, opens from many worker processes, and migrates in place
(``schema_version`` table; each migration only adds, never drops user data). The search index is
built lazily in memory from SQLite the first time a lookup needs it and rebuilt when rows change
(this connection's writes, or another process's, seen through ``PRAGMA data_version``).

Lookup: a query matches an asset when ``query - asset <= THRESHOLD`` (see ``provenance.fingerprints``):
the query's full frame against every stored part, and the query's parts against every stored full
frame. Small registries are searched by vectorised popcount over packed hashes (exact); large ones
(>= MIH_MIN_ROWS part hashes) by multi-index hashing: 32 tables keyed by 16-bit byte pairs, candidates
share at least one key, then the true distance is computed. Measured (bench stage C, 1,000,000 hashes,
T=50, synthguard-fp/2, one core): 10,400 queries/s in batches (``match_many``), ~930/s one query at a
time, 89.1 % of all true matches <= T and 100 % of best matches found (exact up to distance 15); 16
tables ran at 15,400 queries/s but found 79.1 % / 97.8 %, numpy brute force 26 queries/s.

Size: an image stores 57 part hashes (1.8 kB; synthguard-fp/1 stored 166), so 1,000,000 indexed hashes
are ~17,500 images; the index adds ~4 bytes per hash per table. Videos store every sampled frame's parts.
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

from .fingerprints import HASH_BYTES, THRESHOLD, Fingerprint, confidence_for, hamming, popcount_rows64

__all__ = ["Registry", "Match", "SCHEMA_VERSION", "MIH_MIN_ROWS", "SourceItem", "iter_sources", "parse_s3_uri"]

SCHEMA_VERSION = 2
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


_MIGRATIONS = [None, _migrate_1_to_2]


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
            self.starts.append(np.searchsorted(col[order], np.arange(65537), side="left").astype(np.int64))

    def candidates(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows sharing at least one table key with the query rows q (Q, 32): (query index, row,
        the query's code as 4 uint64 per candidate)."""
        q = np.ascontiguousarray(q)
        q64 = q.view(np.uint64)
        ar = np.arange(len(q))
        qis, rows, qcodes = [], [], []
        for j, (a, b) in enumerate(self.keys):
            k = (q[:, a].astype(np.int64) << 8) | q[:, b]
            s, e = self.starts[j][k], self.starts[j][k + 1]
            n = e - s
            tot = int(n.sum())
            if not tot:
                continue
            off = np.arange(tot) - np.repeat(np.cumsum(n) - n, n)
            rows.append(self.perm[j][np.repeat(s, n) + off])
            qis.append(np.repeat(ar, n))
            qcodes.append(np.repeat(q64, n, axis=0))
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.int32), np.empty((0, 4), np.uint64)
        return np.concatenate(qis), np.concatenate(rows), np.concatenate(qcodes)

    def range_search(self, q: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (query index, row, distance) with distance <= t among the candidates, each pair once."""
        q = np.ascontiguousarray(q, dtype=np.uint8)
        qi, rows, qc = self.candidates(q)
        if len(rows) == 0:
            return qi, rows, np.empty(0, np.int32)
        d = popcount_rows64(self.codes64[rows] ^ qc)
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
        for fid, (owner, frame, blob) in enumerate(frames):
            p = np.frombuffer(blob, np.uint8).reshape(-1, HASH_BYTES)
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
        self.frame_owner = np.asarray([f[0] for f in frames], np.int32)
        big = len(self.codes) >= MIH_MIN_ROWS
        self.mih_parts = _MIH(self.codes) if big else None
        self.mih_full = _MIH(self.full) if big else None

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
        for f, d in zip(np.concatenate([fwd_frames, rev_frames]).tolist(), np.concatenate([fwd_d, rev_d]).tolist()):
            if d < out.get(f, 1 << 30):
                out[f] = d
        return out


class Registry:
    """Training assets and their fingerprints in one SQLite file.

    ``with Registry("assets.db") as reg: reg.add("img-1", fingerprint(path), label="faces-v2")``
    then ``reg.best_match(fingerprint(upload))``. Safe to open from several processes; each keeps
    its own lazily built in-memory index.
    """

    def __init__(self, path: str | os.PathLike, *, threshold: int | None = None) -> None:
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
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.path}: not a synthguard registry ({exc})") from None
        self._lock = threading.RLock()
        self._index: _Index | None = None
        self._data_version: int | None = None

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
        return f"Registry({str(self.path)!r}, assets={len(self)})"

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

    # ------------------------------------------------------------------ index
    def _current_index(self) -> _Index:
        with self._lock:
            dv = int(self._con.execute("PRAGMA data_version").fetchone()[0])
            if self._index is None or dv != self._data_version:
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
        qq = np.concatenate([qi, np.repeat(np.arange(len(q)), sizes)[pi]])
        oo = np.concatenate([idx.owner[rows], idx.full_owner[frows]])
        dd = np.concatenate([d, d2])
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
        if self.uri.startswith("s3://"):
            bucket, _, key = self.uri[5:].partition("/")
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return Path(self.name).read_bytes()


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
