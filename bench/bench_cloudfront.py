"""Benchmark CloudFront origin resolution and edge sampling against real local servers.

What it measures (all in one run, so the anchors share the machine's load):
- ``resolve_targets("cloudfront:all")`` over D distributions on a moto server (paginated listing +
  one GetDistributionConfig each), against the bare boto3 calls it makes (the ceiling);
- ``sample_edge`` over N C2PA-signed JPEGs served by a local edge (half passed through, half
  re-encoded), against plain urllib GETs of the same URLs with the same thread count (the fetch
  ceiling), so the table shows what the C2PA check adds per sample.

Usage: ``.venv/bin/python bench/bench_cloudfront.py [--objects 60] [--distributions 40]``; writes the
``## CloudFront edge sampling`` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import http.server
import io
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._report import machine_line, md_table, write_section  # noqa: E402

TITLE = "CloudFront edge sampling"


class _Edge(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, bodies: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies = bodies


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        body = self.server.bodies.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def _jpeg(rgb, size: int, quality: int = 88) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).resize((size, size)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _median_times(fns, repeats: int) -> list[float]:
    """Median wall time of each function, run alternately (after one warm-up each) so both see the
    same load on this shared machine."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def bench_resolve(n_dist: int, repeats: int) -> list[list[object]]:
    from s3sync.cloudfront import resolve_targets
    from s3sync.localserver import MotoServer

    with MotoServer() as moto:
        cf = moto.client("cloudfront")
        for i in range(n_dist):
            origin = {"Id": "o", "DomainName": f"bench-bucket-{i}.s3.us-east-1.amazonaws.com", "OriginPath": "/gen",
                      "S3OriginConfig": {"OriginAccessIdentity": ""}}
            cf.create_distribution(DistributionConfig={
                "CallerReference": f"b{i}", "Comment": "", "Enabled": True,
                "Origins": {"Quantity": 1, "Items": [origin]},
                "DefaultCacheBehavior": {"TargetOriginId": "o", "ViewerProtocolPolicy": "allow-all", "MinTTL": 0,
                                         "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                         "TrustedSigners": {"Enabled": False, "Quantity": 0}}})

        def bare():
            ids = [d["Id"] for page in cf.get_paginator("list_distributions").paginate()
                   for d in page["DistributionList"].get("Items", [])]
            for i in ids:
                cf.get_distribution_config(Id=i)

        found: list = []

        def ours():
            found[:] = resolve_targets("cloudfront:all", cf)

        t_bare, t_ours = _median_times([bare, ours], repeats)
        assert len(found) == n_dist, f"resolved {len(found)} of {n_dist}"
    return [[f"resolve cloudfront:all ({n_dist} distributions)", f"{t_ours * 1000:.0f} ms",
             f"{t_bare * 1000:.0f} ms (bare boto3 list + get config)", f"{t_bare / t_ours * 100:.0f} %"]]


def bench_sampling(n_obj: int, workers: int, repeats: int) -> tuple[list[list[object]], dict[str, int]]:
    from PIL import Image
    from skimage import data

    from provenance import Signer, certs, sign
    from s3sync.cloudfront import OriginTarget, sample_edge, summarize

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    with tempfile.TemporaryDirectory() as tmp:
        keys = certs.init_keys(tmp)
        signer = Signer.from_files(keys.signer_cert, keys.signer_key)
        bodies: dict[str, bytes] = {}
        results = []
        for i in range(n_obj):
            signed = sign(_jpeg(photos[i % len(photos)], 512 + (i % 7) * 16), signer=signer, mime="image/jpeg")
            key = f"gen/{i:04d}.jpg"
            if i % 2:  # the edge resizes odd objects (manifest stripped)
                img = Image.open(io.BytesIO(signed))
                out = io.BytesIO()
                img.resize((img.width // 2, img.height // 2)).save(out, format="JPEG", quality=80)
                bodies[f"/{i:04d}.jpg"] = out.getvalue()
            else:
                bodies[f"/{i:04d}.jpg"] = signed
            results.append({"bucket": "media", "key": key, "version_id": None, "etag": None,
                            "size": len(signed), "content_type": "image/jpeg", "status": "ok",
                            "c2pa": {"state": "trusted", "codes": []}, "watermark": None, "error": None})
        edge = _Edge(bodies)
        th = threading.Thread(target=edge.serve_forever, daemon=True)
        th.start()
        try:
            base = f"http://127.0.0.1:{edge.server_address[1]}"
            origin = OriginTarget(distribution_id="EBENCH", domain_name="dbench.cloudfront.net", origin_id="o",
                                  bucket="media", prefix="gen/", kind="rest", cloudfront_domain="dbench.cloudfront.net")
            urls = [base + p for p in bodies]
            anchors = keys.root.read_bytes()

            def plain():
                def get(u):
                    with urllib.request.urlopen(u, timeout=20) as r:
                        return len(r.read())
                with ThreadPoolExecutor(workers) as pool:
                    assert all(pool.map(get, urls))

            samples: list = []

            def ours():
                samples[:] = sample_edge(origin, results, n_obj, edge_url_map={"*": base},
                                         trust_anchors=anchors, workers=workers)

            t_plain, t_ours = _median_times([plain, ours], repeats)  # warm-up fills the C2PA trust context
        finally:
            edge.shutdown()
            edge.server_close()
    summary = summarize(samples)
    assert summary["edge_samples"] == n_obj and summary["edge_provenance_not_preserved"] == n_obj // 2, summary
    rows = [[f"sample_edge, {n_obj} JPEGs (512-608 px), {workers} fetch threads",
             f"{n_obj / t_ours:.0f} samples/s ({t_ours * 1000 / n_obj:.1f} ms each)",
             f"{n_obj / t_plain:.0f} GET/s (plain urllib, same URLs and threads)",
             f"{t_plain / t_ours * 100:.0f} %"]]
    return rows, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=60)
    ap.add_argument("--distributions", type=int, default=40)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = ap.parse_args(argv)
    rows = bench_resolve(args.distributions, args.repeats)
    sample_rows, summary = bench_sampling(args.objects, args.workers, args.repeats)
    rows += sample_rows
    table = md_table(["operation", "synthguard", "anchor (same run)", "synthguard / anchor speed"], rows)
    md = (f"{machine_line()}\n\n{table}\n\n"
          f"Median of {args.repeats} runs. Edge sampling found {summary['edge_provenance_not_preserved']} of "
          f"{summary['edge_samples']} edge copies without their origin's C2PA manifest (every re-encoded one, "
          "none of the passed-through ones). The difference to the plain GETs is the C2PA validation of each "
          "edge copy (`provenance.verify`), run in the calling thread. Script: `bench/bench_cloudfront.py`.")
    print(md)
    if not args.no_write:
        write_section(TITLE, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
