"""The audit under trouble: a throttling / connection-dropping proxy in front of SeaweedFS, and a
SIGKILL in the middle of a run followed by a restart."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import s3sync
from s3sync.aws import ClientFactory

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")


class FaultProxy:
    """A loopback HTTP proxy to an S3 endpoint that injects faults into object GETs.

    Per key, the first attempts fail in a way chosen by a hash of the key: 503 SlowDown, a connection
    dropped before any response, or a body cut in half; later attempts pass. Keys containing
    ``always-503`` fail every time. ``delay`` slows every GET (to make a run last long enough to kill).
    """

    def __init__(self, upstream: str, *, faults: bool = True, delay: float = 0.0) -> None:
        self.upstream = urlsplit(upstream)
        self.faults = faults
        self.delay = delay
        self.attempts: dict[str, int] = {}
        self.injected = {"503": 0, "drop": 0, "truncate": 0}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _any(self):
                proxy.handle(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def _fault(self, h: BaseHTTPRequestHandler) -> str | None:
        path = h.path.split("?", 1)[0]
        parts = path.lstrip("/").split("/", 1)
        if h.command != "GET" or len(parts) < 2 or not parts[1]:
            return None  # listings, HEADs, bucket calls pass
        if self.delay:
            time.sleep(self.delay)
        if not self.faults:
            return None
        key = parts[1]
        with self.lock:
            n = self.attempts[key] = self.attempts.get(key, 0) + 1
        if "always-503" in key:
            return "503"
        kind = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 4
        if n == 1:
            return ("503", "drop", "truncate", None)[kind]
        if n == 2 and kind == 0:
            return "503"  # twice in a row for some keys
        return None

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        fault = self._fault(h)
        if fault:
            with self.lock:
                self.injected[fault] += 1
        if fault == "503":
            h.send_response(503, "Slow Down")
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(SLOWDOWN)))
            h.end_headers()
            h.wfile.write(SLOWDOWN)
            return
        if fault == "drop":
            h.close_connection = True
            h.connection.shutdown(2)
            return
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP}
            conn.request(h.command, h.path, body=body, headers=headers)  # Host kept: SigV4 still valid
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        h.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command == "HEAD":
            return
        if fault == "truncate" and len(data) > 10:
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        h.wfile.write(data)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from provenance import Signer
    from provenance.certs import init_keys

    paths = init_keys(tmp_path_factory.mktemp("resil-keys") / "k")
    return paths, Signer.from_files(paths.signer_cert, paths.signer_key)


def _seed(seaweed, bucket: str, n: int, signer, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    from botocore.config import Config

    from fixtures.make_media import image_bytes
    from provenance import sign

    c = seaweed.client(config=Config(max_pool_connections=32, s3={"addressing_style": "path"}))
    c.create_bucket(Bucket=bucket)
    plain = [image_bytes("jpeg", size=(64, 64), seed=s) for s in range(3)]
    signed = [sign(p, signer=signer) for p in plain]
    objs: dict[str, bytes] = {}
    for i in range(n):
        kind = i % 3
        objs[f"p{i % 4}/obj-{i:04d}.jpg"] = (signed[i % 3], plain[i % 3], plain[i % 3][:300])[kind]
    objs.update(extra or {})
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: c.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), objs.items()))
    return objs


def test_throttling_and_dropped_connections_are_retried(seaweed, keys, tmp_path):
    paths, signer = keys
    from fixtures.make_media import image_bytes

    objs = _seed(seaweed, "audit-throttle", 32, signer,
                 extra={"bad/always-503.jpg": image_bytes("jpeg", size=(64, 64), seed=7)})
    direct = s3sync.audit(["s3://audit-throttle"], endpoint_url=seaweed.endpoint_url, trust_anchors=paths.root,
                          state=tmp_path / "direct.db", workers=8, watermark=False)
    with FaultProxy(seaweed.endpoint_url) as proxy:
        # Fewer botocore attempts than the default keep the persistent failure quick to give up on.
        factory = ClientFactory(endpoint_url=proxy.endpoint_url, max_attempts=2, max_pool=12)
        res = s3sync.audit(["s3://audit-throttle"], clients=factory, trust_anchors=paths.root,
                           state=tmp_path / "proxy.db", workers=8, watermark=False)
    assert min(proxy.injected.values()) >= 3, proxy.injected
    assert res.summary["completed"] and len(res.objects) == len(objs)
    got = {o.key: (o.status, o.error) for o in res.objects}
    bad = got.pop("bad/always-503.jpg")
    assert bad[0] == "unreadable" and "SlowDown" in bad[1]  # persistent throttling: reported, run goes on
    want = {o.key: (o.status, o.error) for o in direct.objects if o.key != "bad/always-503.jpg"}
    assert got == want  # every transient fault was retried to the same verdict
    assert res.summary["retries"] >= proxy.injected["503"] - 4  # botocore's retries, counted


def _audit_cmd(endpoint: str, state: Path, root: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "audit", "s3://audit-crash", "--endpoint-url", endpoint,
            "--state", str(state), "--trust-anchors", str(root), "--workers", "2", "--processes", "0",
            "--format", "json", "--no-watermark", *extra]  # resumability, not the detector, is under test


def _wait_for_rows(proc: subprocess.Popen, state: Path, n: int, what: str) -> None:
    """Wait (60 s at most) until the running audit ``proc`` recorded ``n`` objects in ``state``;
    it must still be running then, or the test cannot ``what`` it mid-run."""
    deadline = time.monotonic() + 60
    while _rows(state) < n and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"the audit finished before it could be {what}"


def _rows(state: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM run_objects").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_sigkill_mid_run_then_resume_finishes_without_redownloading(seaweed, keys, tmp_path):
    paths, signer = keys
    objs = _seed(seaweed, "audit-crash", 90, signer)
    env = dict(os.environ, **seaweed.env())
    state = tmp_path / "crash.db"
    with FaultProxy(seaweed.endpoint_url, faults=False, delay=0.04) as slow:
        proc = subprocess.Popen(_audit_cmd(slow.endpoint_url, state, paths.root), env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_for_rows(proc, state, 20, "killed")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            proc.stderr.close()
    done_before = _rows(state)
    assert 20 <= done_before < len(objs)

    r = subprocess.run(_audit_cmd(seaweed.endpoint_url, state, paths.root), env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    resumed = json.loads(r.stdout)
    s = resumed["summary"]
    assert s["resumed"] is True and s["completed"] is True
    assert s["resumed_objects"] == done_before
    assert s["downloaded"] == len(objs) - done_before  # nothing finished before the kill is fetched again

    clean = subprocess.run(_audit_cmd(seaweed.endpoint_url, tmp_path / "clean.db", paths.root), env=env,
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    ref = json.loads(clean.stdout)
    keys_resumed = [o["key"] for o in resumed["objects"]]
    assert len(keys_resumed) == len(set(keys_resumed)) == len(objs)  # none lost, none counted twice
    assert {o["key"]: o["status"] for o in resumed["objects"]} == {o["key"]: o["status"] for o in ref["objects"]}
    assert s["counts"] == ref["summary"]["counts"]
