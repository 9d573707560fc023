"""SQLite state of the audit: runs, per-object results, resumability and incremental re-runs.

Why SQLite: one file, transactional, WAL lets ``audit report`` read while an audit writes, and a
SIGKILL loses at most the object being written (every fresh result is committed on its own).

Schema (migrated, never dropped and recreated; ``schema_version`` holds the applied version):
- ``runs``: one row per run (id, targets, options, the check-config fingerprint, status
  ``running``/``completed``, the final summary).
- ``results``: one row per distinct object content and check configuration: (bucket, key, version,
  ETag, config fingerprint) -> status + the full ObjectResult JSON. This is what an unchanged object
  reuses on the next run, so it is never downloaded again.
- ``run_objects``: which objects each run covered, and with which status (small rows that point
  at ``results``): the run's summary and report come from here, and a resumed run knows what it
  already finished. Its primary key makes double counting impossible.
- ``findings``: other checks' findings attached to a run (posture, edge samples).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .models import STATUSES, AuditResult, ObjectResult, Skipped

DEFAULT_STATE = os.path.join(".synthguard", "state.db")


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run DDL statements one by one inside the caller's transaction (``executescript`` would
    COMMIT first and make a migration non-atomic)."""
    for stmt in sql.split(";"):
        if stmt.strip():
            db.execute(stmt)


def _m1(db: sqlite3.Connection) -> None:
    _script(db, """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        targets TEXT NOT NULL,
        options TEXT NOT NULL,
        config_fp TEXT NOT NULL,
        summary TEXT
    );
    CREATE TABLE results (
        bucket TEXT NOT NULL, key TEXT NOT NULL, version_id TEXT NOT NULL, etag TEXT NOT NULL,
        config_fp TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT NOT NULL,
        checked_at TEXT NOT NULL,
        run_id TEXT NOT NULL,
        PRIMARY KEY (bucket, key, version_id, etag, config_fp)
    );
    CREATE TABLE run_objects (
        run_id TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, version_id TEXT NOT NULL,
        etag TEXT NOT NULL, config_fp TEXT NOT NULL,
        status TEXT NOT NULL,
        reused INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, bucket, key, version_id)
    );
    """)


def _m2(db: sqlite3.Connection) -> None:
    _script(db, """
    CREATE INDEX run_objects_status ON run_objects (run_id, status);
    CREATE INDEX runs_started ON runs (started_at);
    CREATE TABLE findings (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, finding TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    """)


# Ordered; append only. Index i migrates the schema from version i to i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m1, _m2]
SCHEMA_VERSION = len(MIGRATIONS)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class StateError(ValueError):
    """The state file is unusable (newer schema, not a synthguard DB, ...)."""


class State:
    """The audit's SQLite state. Use from one thread (the worker's collector thread)."""

    def __init__(self, path: str | os.PathLike = DEFAULT_STATE, *, create: bool = True) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            p = Path(self.path)
            if not create and not p.exists():
                raise StateError(f"state DB not found: {self.path}")
            if p.is_dir():
                raise StateError(f"state DB path is a directory: {self.path}")
            # An audit writes as it goes (and SQLite's WAL beside the file): find out now, not at
            # the first result. Reading a run (create=False) needs neither.
            if create and ((p.exists() and not os.access(p, os.W_OK))
                           or (p.parent.is_dir() and not os.access(p.parent, os.W_OK))):
                raise StateError(f"state DB {self.path}: not writable (the audit records its results there)")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"state DB {self.path}: cannot create {p.parent}: {exc.strerror or exc}") from None
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "runs" not in tables:  # another SQLite file (a registry?): never write into it
                self.db.close()
                raise StateError(f"{self.path}: not a synthguard state DB (an SQLite file without its tables)")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=30000")
            self.migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: not a usable synthguard state DB ({exc})") from None

    # ------------------------------------------------------------------ schema
    def schema_version(self) -> int:
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> int:
        """Apply pending migrations in order, each in its own transaction."""
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StateError(f"{self.path}: schema version {current} is newer than this synthguard "
                             f"({SCHEMA_VERSION}); upgrade synthguard")
        for i in range(current, SCHEMA_VERSION):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if self.schema_version() > i:  # another process migrated meanwhile
                    self.db.execute("ROLLBACK")
                    continue
                MIGRATIONS[i](self.db)
                self.db.execute("INSERT INTO schema_version (version) VALUES (?)", (i + 1,))
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        return SCHEMA_VERSION

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "State":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ runs
    def begin_run(self, targets: list[str], options: dict[str, Any], config_fp: str,
                  *, resume: bool = True) -> tuple[str, bool]:
        """Start a run, or resume the last unfinished run with the same targets, config and scope.

        The scope is ``options["versions"]``: a run of every version and a run of the latest
        objects list different things under different identities, so neither can finish the other.
        Returns ``(run_id, resumed)``.
        """
        tjson = json.dumps(sorted(targets))
        if resume:
            rows = self.db.execute(
                "SELECT run_id, options FROM runs WHERE status='running' AND targets=? AND config_fp=? "
                "ORDER BY started_at DESC", (tjson, config_fp)).fetchall()
            for run_id, opts in rows:
                if bool(json.loads(opts).get("versions")) == bool(options.get("versions")):
                    return run_id, True
        run_id = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
        self.db.execute("INSERT INTO runs (run_id, started_at, status, targets, options, config_fp) "
                        "VALUES (?, ?, 'running', ?, ?, ?)",
                        (run_id, now_iso(), tjson, json.dumps(options, default=str), config_fp))
        return run_id, False

    def finish_run(self, run_id: str, summary: dict[str, Any]) -> None:
        self.db.execute("UPDATE runs SET status='completed', finished_at=?, summary=? WHERE run_id=?",
                        (now_iso(), json.dumps(summary, default=str), run_id))

    def run_info(self, run_id: str | None = None) -> dict[str, Any]:
        """A run's row (the latest run when ``run_id`` is None)."""
        if run_id:
            row = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        else:
            row = self.db.execute("SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1").fetchone()
        if not row:
            raise StateError(f"no run {run_id!r} in {self.path}" if run_id else f"no audit runs in {self.path}")
        cols = [d[0] for d in self.db.execute("SELECT * FROM runs LIMIT 0").description]
        info = dict(zip(cols, row))
        info["targets"] = json.loads(info["targets"])
        info["options"] = json.loads(info["options"])
        info["summary"] = json.loads(info["summary"]) if info.get("summary") else None
        return info

    def runs(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT run_id FROM runs ORDER BY started_at, rowid").fetchall()
        return [self.run_info(r[0]) for r in rows]

    def run_members(self, run_id: str) -> set[tuple[str, str, str]]:
        """(bucket, key, version) of every object the run already finished (for resuming)."""
        return {tuple(r) for r in self.db.execute(
            "SELECT bucket, key, version_id FROM run_objects WHERE run_id=?", (run_id,))}

    # ------------------------------------------------------------------ results
    def lookup(self, bucket: str, key: str, version_id: str | None, etag: str | None,
               config_fp: str) -> tuple[str, dict[str, Any]] | None:
        """The last completed check of this exact content (ETag + version) under this config."""
        if not etag:
            return None
        row = self.db.execute(
            "SELECT status, result FROM results WHERE bucket=? AND key=? AND version_id=? AND etag=? AND config_fp=?",
            (bucket, key, version_id or "", etag, config_fp)).fetchone()
        if not row:
            return None
        return row[0], json.loads(row[1])

    def lookup_status(self, bucket: str, key: str, version_id: str | None, etag: str | None,
                      config_fp: str) -> str | None:
        """Just the status of the last completed check of this content (no JSON parsed)."""
        if not etag:
            return None
        row = self.db.execute(
            "SELECT status FROM results WHERE bucket=? AND key=? AND version_id=? AND etag=? AND config_fp=?",
            (bucket, key, version_id or "", etag, config_fp)).fetchone()
        return row[0] if row else None

    def record_reuse(self, run_id: str, config_fp: str, bucket: str, key: str, version_id: str | None,
                     etag: str | None, status: str) -> bool:
        """Count an unchanged object in the run, pointing at its existing result (caller commits)."""
        if not self.db.in_transaction:
            self.db.execute("BEGIN")
        cur = self.db.execute(
            "INSERT OR IGNORE INTO run_objects (run_id, bucket, key, version_id, etag, config_fp, status, reused) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 1)", (run_id, bucket, key, version_id or "", etag or "", config_fp, status))
        return cur.rowcount == 1

    def record(self, run_id: str, config_fp: str, item: ObjectResult | Skipped, *, reused: bool = False,
               commit: bool = True) -> bool:
        """Store one object's outcome for the run. Returns False when the run already had it
        (overlapping targets or a resumed run): it is then not counted twice."""
        if isinstance(item, Skipped):
            status, payload = "skipped", item.to_dict()
        else:
            status, payload = item.status, item.to_dict()
        etag = item.etag or ""
        ver = item.version_id or ""
        if not commit:
            return self._record(run_id, config_fp, item, status, payload, etag, ver, reused)
        self.db.execute("BEGIN")
        try:
            ok = self._record(run_id, config_fp, item, status, payload, etag, ver, reused)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return ok

    def _record(self, run_id, config_fp, item, status, payload, etag, ver, reused) -> bool:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO run_objects (run_id, bucket, key, version_id, etag, config_fp, status, reused) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, item.bucket, item.key, ver, etag, config_fp, status, int(reused)))
        if cur.rowcount == 0:
            return False
        if not reused:
            payload = dict(payload)
            payload.pop("cached", None)
            self.db.execute(
                "INSERT OR REPLACE INTO results (bucket, key, version_id, etag, config_fp, status, result, "
                "checked_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item.bucket, item.key, ver, etag, config_fp, status, json.dumps(payload, default=str),
                 getattr(item, "checked_at", None) or now_iso(), run_id))
        return True

    def begin(self) -> None:
        self.db.execute("BEGIN")

    def commit(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")

    def add_findings(self, run_id: str, kind: str, findings: Iterable[Any], *, replace: bool = False) -> None:
        """Attach other checks' findings (posture, edge samples) to a run.

        ``replace`` first drops the run's findings of this kind, so a resumed run that had already
        stored them before it was interrupted does not list them twice.
        """
        self.commit()
        self.db.execute("BEGIN")
        if replace:
            self.db.execute("DELETE FROM findings WHERE run_id=? AND kind=?", (run_id, kind))
        row = self.db.execute("SELECT COALESCE(MAX(seq), -1) FROM findings WHERE run_id=?", (run_id,)).fetchone()
        seq = int(row[0]) + 1
        for f in findings:
            d = f.to_dict() if hasattr(f, "to_dict") else f
            self.db.execute("INSERT INTO findings (run_id, seq, kind, finding) VALUES (?, ?, ?, ?)",
                            (run_id, seq, kind, json.dumps(d, default=str)))
            seq += 1
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ reading a run back
    def iter_run_objects(self, run_id: str) -> Iterator[ObjectResult | Skipped]:
        """Every object of the run, with its result (joined through ``results``)."""
        q = ("SELECT ro.status, ro.reused, r.result, ro.bucket, ro.key, ro.version_id, ro.etag "
             "FROM run_objects ro LEFT JOIN results r ON r.bucket=ro.bucket AND r.key=ro.key "
             "AND r.version_id=ro.version_id AND r.etag=ro.etag AND r.config_fp=ro.config_fp "
             "WHERE ro.run_id=? ORDER BY ro.bucket, ro.key, ro.version_id")
        for status, reused, result, bucket, key, ver, etag in self.db.execute(q, (run_id,)):
            d = json.loads(result) if result else {}
            if status == "skipped":
                yield Skipped(bucket=bucket, key=key, version_id=ver or None, reason=d.get("reason", "skipped"),
                              etag=etag or None, content_type=d.get("content_type"),
                              last_modified=d.get("last_modified"))
                continue
            if not d:  # result row was replaced by a later re-check of the same content
                d = {"bucket": bucket, "key": key, "version_id": ver or None, "etag": etag or None,
                     "size": None, "content_type": None, "status": status}
            d["status"] = status
            d["cached"] = bool(reused)
            yield ObjectResult.from_dict(d)

    def counts(self, run_id: str) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for status, n in self.db.execute(
                "SELECT status, COUNT(*) FROM run_objects WHERE run_id=? GROUP BY status", (run_id,)):
            counts[status] = n
        return counts

    def skipped_reasons(self, run_id: str) -> dict[str, int]:
        """Skipped objects of a run, counted by reason (in SQL: no result JSON parsed in Python)."""
        q = ("SELECT COALESCE(json_extract(r.result, '$.reason'), 'skipped'), COUNT(*) FROM run_objects ro "
             "LEFT JOIN results r ON r.bucket=ro.bucket AND r.key=ro.key AND r.version_id=ro.version_id "
             "AND r.etag=ro.etag AND r.config_fp=ro.config_fp WHERE ro.run_id=? AND ro.status='skipped' "
             "GROUP BY 1 ORDER BY 2 DESC")
        return {reason: n for reason, n in self.db.execute(q, (run_id,))}

    def load_run(self, run_id: str | None = None) -> AuditResult:
        """The stored run as an AuditResult (the latest run when ``run_id`` is None)."""
        info = self.run_info(run_id)
        rid = info["run_id"]
        objects: list[ObjectResult] = []
        skipped: list[Skipped] = []
        for item in self.iter_run_objects(rid):
            (skipped if isinstance(item, Skipped) else objects).append(item)
        summary = dict(info["summary"] or {})
        if not summary:  # an unfinished (crashed, or still running) run: summarise what is there
            counts = self.counts(rid)
            n_skipped = counts.pop("skipped", 0)
            summary = {"run_id": rid, "targets": info["targets"], "completed": False, "objects": len(objects),
                       "counts": counts, "skipped": skipped_summary(skipped, n_skipped)}
        summary["completed"] = info["status"] == "completed"
        summary.setdefault("run_id", rid)
        findings = []
        edge = []
        for kind, f in self.db.execute("SELECT kind, finding FROM findings WHERE run_id=? ORDER BY seq", (rid,)):
            (edge if kind == "edge" else findings).append(json.loads(f))
        return AuditResult(run_id=rid, summary=summary, objects=tuple(objects), skipped=tuple(skipped),
                           findings=tuple(findings), edge_samples=tuple(edge))


def skipped_summary(skipped: Iterable[Skipped], total: int | None = None) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    n = 0
    for s in skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
        n += 1
    return {"count": total if total is not None else n, "reasons": reasons}
