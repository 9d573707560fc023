#!/usr/bin/env python3
"""S3 audit throughput on a real SeaweedFS: synthguard audit vs a plain boto3 GET thread pool.

Seeds a bucket of --objects small JPEG/PNG objects (mostly 50-150 KB; signed + watermarked,
signed only, plain), then, in the same run:

- listing time of the whole bucket (ListObjectsV2, every page);
- the ceiling: a plain boto3 thread pool doing the same GETs (no checks) on a sample prefix;
- `synthguard audit` on that sample with every check on (C2PA + watermark: the default
  `--watermark-search auto`, `full` and `own`), with `--watermark-trust-manifest`, and C2PA only;
- the CPU seconds per object of each (client and S3 server apart): on a small machine that
  shares its cores with the server, this bounds what any auditor can reach;
- a first C2PA-only audit of the whole bucket, then the second, unchanged run (nothing downloaded)
  against the listing time;
- where the time goes per object (fetch, C2PA, decode, watermark) from the audit's own timings.

Writes the `## S3 audit` section of BENCHMARKS.md. Takes a few minutes.

    .venv/bin/python bench/bench_audit.py [--objects 10000] [--sample 300] [--workers 16] [--processes 2]
                                          [--scaling 2,4,8,14]

``--scaling`` adds a row per process count (the checks are CPU work that scales with processes;
the parent's own CPU per object is what a many-core machine is left with): on a 2-core machine it
can only show 1 -> 2.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKET = "bench-audit"


def _media_pool(paths, n_distinct: int = 24):
    """Distinct encoded images: (bytes, ext, kind). ~50-150 KB JPEGs, some PNGs."""
    import numpy as np

    import watermark
    from fixtures.make_media import encode_image, image_array
    from provenance import Signer, sign

    signer = Signer.from_files(paths.signer_cert, paths.signer_key)
    key, _ = watermark.resolve_key(str(paths.watermark_key))
    rng = np.random.default_rng(0)
    pool = []
    for i in range(n_distinct):
        w = int(rng.integers(560, 900))
        h = int(w * 3 / 4)
        rgb = image_array((w, h), seed=i)
        kind = ("signed+watermarked", "signed+watermarked", "signed", "plain")[i % 4]
        payload = bytes([0x53, 0x47, 0, 0, 0, 0, 0, i])
        if kind == "signed+watermarked":
            rgb = watermark.embed(rgb, payload, key=key)
        if i % 6 == 5:
            data, ext = encode_image(rgb[: h // 2, : w // 2], "png"), "png"
        else:
            data, ext = encode_image(rgb, "jpeg", quality=int(rng.integers(85, 95))), "jpg"
        if kind.startswith("signed"):  # the watermarked ones record their payload (c2pa.soft-binding)
            data = sign(data, signer=signer, model="bench-gen",
                        watermark_payload=payload if kind == "signed+watermarked" else None)
        pool.append((data, ext, kind))
    return pool


def _thumbs(paths) -> list[bytes]:
    """Four 80x60 JPEG thumbnails, two signed: below the watermark's readable size (short side
    < watermark.MIN_DETECT_SHORT), so their checks are C2PA and a decode: about a millisecond."""
    from fixtures.make_media import encode_image, image_array
    from provenance import Signer, sign

    signer = Signer.from_files(paths.signer_cert, paths.signer_key)
    out = []
    for i in range(4):
        data = encode_image(image_array((80, 60), seed=100 + i), "jpeg", quality=85)
        out.append(sign(data, signer=signer, model="bench-gen") if i % 2 == 0 else data)
    return out


def _seed(client, n: int, pool) -> tuple[list[str], float, int]:
    keys = []
    items = []
    for i in range(n):
        data, ext, _kind = pool[i % len(pool)]
        k = f"media/{i // 1000:03d}/{i:06d}.{ext}"
        keys.append(k)
        items.append((k, data))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(32) as ex:
        list(ex.map(lambda kv: client.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), items))
    return keys, time.perf_counter() - t0, sum(len(d) for _, d in items)


def _list_time(client, prefix: str = "") -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix,
                                                                 PaginationConfig={"PageSize": 1000}):
        n += page.get("KeyCount", 0)
    return n, time.perf_counter() - t0


def _plain_gets(factory, keys: list[str], threads: int) -> float:
    """The ceiling: the same GETs from a plain boto3 thread pool (one client per thread), no checks."""
    def get(k):
        c = factory.client("s3")
        body = c.get_object(Bucket=BUCKET, Key=k)["Body"]
        n = len(body.read())
        body.close()
        return n

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(get, keys))
    return len(keys) / (time.perf_counter() - t0)


def _group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in process group ``pgid`` (the S3 server)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(f[2]) == pgid:  # fields after "comm)": state ppid pgrp ... utime(12) stime(13)
            total += (int(f[11]) + int(f[12])) / tick
    return total


class CpuMeter:
    """CPU seconds spent by this process (every thread) and by the S3 server's processes over a
    ``with`` block. The audit's check processes are forkserver grandchildren that ``os.times``
    never sees: their CPU comes from each object's own ``check_cpu_ms``."""

    def __init__(self, server_pgid: int) -> None:
        self.pgid = server_pgid

    def __enter__(self) -> "CpuMeter":
        t = os.times()
        self._c0 = t.user + t.system
        self._s0 = _group_cpu(self.pgid)
        return self

    def __exit__(self, *exc) -> None:
        t = os.times()
        self.client = t.user + t.system - self._c0
        self.server = _group_cpu(self.pgid) - self._s0


def _audit(endpoint, paths, target, state, meter_pgid=None, **kw):
    import s3sync

    t0 = time.perf_counter()
    if endpoint is not None:
        kw["endpoint_url"] = endpoint
    with CpuMeter(meter_pgid or 0) as m:
        res = s3sync.audit([target], trust_anchors=paths.root,
                           watermark_key_file=paths.watermark_key, state=state, **kw)
    object.__setattr__(res, "cpu", m)  # AuditResult is a frozen value; the meter rides along
    return res, time.perf_counter() - t0


def _checks_cpu_s(res) -> float:
    """CPU seconds the audit's check processes spent (each object's own ``check_cpu_ms``)."""
    return sum(o.timings.get("check_cpu_ms", 0.0) for o in res.objects) / 1000


def _stage_means(res) -> dict[str, float]:
    out = {}
    for k in ("fetch_ms", "c2pa_ms", "decode_ms", "watermark_ms", "check_ms", "check_cpu_ms"):
        vals = [o.timings[k] for o in res.objects if k in o.timings]
        if vals:
            out[k] = round(statistics.mean(vals), 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--sample", type=int, default=300, help="objects audited with every check on")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--scaling", default="",
                    help="comma-separated --processes values: also audit the sample (default checks) with each, "
                         "against the same ceiling (e.g. 2,4,8,14 on a 16-core machine)")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    a = ap.parse_args(argv)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="synthguard-bench-audit-"))
    try:
        return _run(a, work, load_before)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def _run(a, work: Path, load_before) -> int:
    from bench._report import machine_line, md_table, write_section
    from provenance.certs import init_keys
    from s3sync.aws import ClientFactory
    from s3sync.localserver import SeaweedS3

    paths = init_keys(work / "keys")
    print("generating media ...", flush=True)
    pool = _media_pool(paths)
    sizes = sorted(len(d) for d, _, _ in pool)
    rows: list[list[object]] = []
    notes: dict[str, object] = {}
    with SeaweedS3() as server:
        os.environ.update(server.env())
        factory = ClientFactory(endpoint_url=server.endpoint_url, max_pool=max(a.workers, 32) + 4)
        client = factory.client("s3")
        client.create_bucket(Bucket=BUCKET)
        print(f"seeding {a.objects} objects ...", flush=True)
        keys, up_s, nbytes = _seed(client, a.objects, pool)
        print(f"  {a.objects / up_s:.0f} PUT/s, {nbytes / 1e6:.0f} MB", flush=True)
        n_listed, list_s = _list_time(client)
        assert n_listed == a.objects, n_listed
        sample_n = min(a.sample, a.objects)
        # The sample is a prefix of whole 1,000-key folders when possible, else the first keys.
        sample_keys = keys[:sample_n]
        prefix = "media/000/" if sample_n == min(1000, a.objects) else None
        target = f"s3://{BUCKET}/{prefix}" if prefix else None
        if target is None:  # audit exactly the sample: copy it under its own prefix
            for k in sample_keys:
                client.copy_object(Bucket=BUCKET, Key="sample/" + k, CopySource={"Bucket": BUCKET, "Key": k})
            target = f"s3://{BUCKET}/sample/"
            sample_keys = ["sample/" + k for k in sample_keys]

        pgid = server.proc.pid  # the server runs in its own process group
        # Warm the server's caches and the client pool equally for both sides.
        _plain_gets(factory, sample_keys[:100], a.workers)
        with CpuMeter(pgid) as ceil_cpu:
            ceil = _plain_gets(factory, sample_keys, a.workers)
        print(f"plain boto3 GET ceiling: {ceil:.0f} objects/s", flush=True)
        run = dict(workers=a.workers, processes=a.processes, full=True, meter_pgid=pgid)
        res_all, t_all = _audit(server.endpoint_url, paths, target, work / "all.db", **run)
        rate_all = len(res_all.objects) / t_all
        print(f"audit, C2PA + watermark (--watermark-search auto): {rate_all:.1f} objects/s", flush=True)
        res_fs, t_fs = _audit(server.endpoint_url, paths, target, work / "fs.db", watermark_search="full", **run)
        rate_fs = len(res_fs.objects) / t_fs
        print(f"audit, C2PA + watermark, --watermark-search full: {rate_fs:.1f} objects/s", flush=True)
        res_own, t_own = _audit(server.endpoint_url, paths, target, work / "own.db", watermark_search="own", **run)
        rate_own = len(res_own.objects) / t_own
        print(f"audit, C2PA + watermark, --watermark-search own: {rate_own:.1f} objects/s", flush=True)
        res_tm, t_tm = _audit(server.endpoint_url, paths, target, work / "tm.db", watermark_trust_manifest=True,
                              **run)
        rate_tm = len(res_tm.objects) / t_tm
        print(f"audit, C2PA + watermark, --watermark-trust-manifest: {rate_tm:.1f} objects/s", flush=True)
        ceil2 = _plain_gets(factory, sample_keys, a.workers)
        res_c2, t_c2 = _audit(server.endpoint_url, paths, target, work / "c2pa.db", watermark=False, **run)
        rate_c2 = len(res_c2.objects) / t_c2
        print(f"audit, C2PA only: {rate_c2:.1f} objects/s (ceiling re-measured {ceil2:.0f}/s)", flush=True)
        ceiling = (ceil + ceil2) / 2

        scaling = []
        for n in [int(x) for x in a.scaling.split(",") if x.strip()]:
            res_n, t_n = _audit(server.endpoint_url, paths, target, work / f"scale{n}.db",
                                **(run | {"processes": n}))
            per = 1000 / len(res_n.objects)
            scaling.append((n, len(res_n.objects) / t_n, _checks_cpu_s(res_n) * per, res_n.cpu.client * per))
            print(f"--processes {n}: {scaling[-1][1]:.1f} objects/s", flush=True)

        # The pipeline's own cost: thumbnails whose checks cost ~1 ms, so the audit is bound by its
        # parent (listing, GETs, bookkeeping) and the server, as the plain pool is.
        thumbs = _thumbs(paths)
        thumb_keys = [f"thumbs/{i:05d}.jpg" for i in range(sample_n)]
        with ThreadPoolExecutor(32) as ex:
            list(ex.map(lambda ik: client.put_object(Bucket=BUCKET, Key=ik[1], Body=thumbs[ik[0] % len(thumbs)]),
                        enumerate(thumb_keys)))
        _plain_gets(factory, thumb_keys[:100], a.workers)
        with CpuMeter(pgid) as thumb_cpu:
            ceil_t = _plain_gets(factory, thumb_keys, a.workers)
        res_t, t_t = _audit(server.endpoint_url, paths, f"s3://{BUCKET}/thumbs/", work / "thumbs.db", **run)
        rate_t = len(res_t.objects) / t_t
        print(f"thumbnails: GET ceiling {ceil_t:.0f}/s, audit {rate_t:.1f}/s", flush=True)

        # Whole bucket: first run (C2PA only, to keep the bench minutes long), then the unchanged rerun.
        full_state = work / "full.db"
        res_first, t_first = _audit(server.endpoint_url, paths, f"s3://{BUCKET}/media/", full_state,
                                    workers=a.workers, processes=a.processes, watermark=False)
        n_list2, list_s2 = _list_time(client, "media/")
        # Warm clients on both sides (the listing's client is warm too): per-run setup is not per object.
        res_second, t_second = _audit(None, paths, f"s3://{BUCKET}/media/", full_state, clients=factory,
                                      workers=a.workers, processes=a.processes, watermark=False)
        n_list3, list_s3 = _list_time(client, "media/")
        list_ref = (list_s2 + list_s3) / 2
        print(f"whole bucket: first {t_first:.1f} s, unchanged rerun {t_second:.1f} s, listing {list_ref:.1f} s",
              flush=True)
        assert res_second.summary["downloaded"] == 0, res_second.summary

    stages_all = _stage_means(res_all)
    stages_fs = _stage_means(res_fs)
    stages_own = _stage_means(res_own)
    stages_c2 = _stage_means(res_c2)
    stages_tm = _stage_means(res_tm)
    ncpu = os.cpu_count() or 1

    def cpu_row(name, n, parent_s, checks_s, server_s, rate, ceiling_rate):
        per = (parent_s + checks_s + server_s) / n * 1000
        return [name, f"{parent_s / n * 1000:.1f}", f"{checks_s / n * 1000:.1f}" if checks_s else "-",
                f"{server_s / n * 1000:.1f}", f"{per:.1f}", f"{ncpu / per * 1000:.0f}", f"{rate:.0f}",
                f"{0.8 * ceiling_rate * per / 1000:.1f}"]

    cpu_rows = [cpu_row("plain boto3 GET pool (ceiling)", sample_n, ceil_cpu.client, 0.0, ceil_cpu.server, ceil,
                        ceiling)]
    for name, res, rate in (("audit, C2PA + watermark (auto)", res_all, rate_all),
                            ("audit, --watermark-search full", res_fs, rate_fs),
                            ("audit, --watermark-search own", res_own, rate_own),
                            ("audit, --watermark-trust-manifest", res_tm, rate_tm),
                            ("audit, C2PA only", res_c2, rate_c2)):
        cpu_rows.append(cpu_row(name, len(res.objects), res.cpu.client, _checks_cpu_s(res), res.cpu.server, rate, ceiling))
    cpu_rows.append(cpu_row("plain GET pool, thumbnails", len(thumb_keys), thumb_cpu.client, 0.0, thumb_cpu.server,
                            ceil_t, ceil_t))
    cpu_rows.append(cpu_row("audit, every check on, thumbnails", len(res_t.objects), res_t.cpu.client,
                            _checks_cpu_s(res_t), res_t.cpu.server, rate_t, ceil_t))
    counts = {k: v for k, v in res_all.summary["counts"].items() if v}
    load_after = os.getloadavg()
    rows = [
        ["plain boto3 thread pool, GET only (ceiling)", f"{sample_n}", f"{ceiling:.0f}", "100 %", "-"],
        ["synthguard audit, C2PA + watermark (default: --watermark-search auto)", f"{len(res_all.objects)}",
         f"{rate_all:.1f}", f"{rate_all / ceiling * 100:.0f} %",
         "trusted manifests: own-position watermark check; everything else: full search"],
        ["synthguard audit, C2PA + watermark, --watermark-search full", f"{len(res_fs.objects)}",
         f"{rate_fs:.1f}", f"{rate_fs / ceiling * 100:.0f} %", "full geometric search on every image"],
        ["synthguard audit, C2PA + watermark, --watermark-search own", f"{len(res_own.objects)}",
         f"{rate_own:.1f}", f"{rate_own / ceiling * 100:.0f} %",
         "own-position check everywhere: no crop/rotation search"],
        ["synthguard audit, --watermark-trust-manifest", f"{len(res_tm.objects)}", f"{rate_tm:.1f}",
         f"{rate_tm / ceiling * 100:.0f} %", "trusted manifests' soft binding reported, pixels not searched"],
        ["synthguard audit, C2PA only (--no-watermark)", f"{len(res_c2.objects)}", f"{rate_c2:.1f}",
         f"{rate_c2 / ceiling * 100:.0f} %", "-"],
        ["plain boto3 thread pool, GET only, 80x60 thumbnails (ceiling)", f"{len(thumb_keys)}", f"{ceil_t:.0f}",
         "100 %", "same pool and server; objects of ~3-20 KB"],
        ["synthguard audit, every check on, 80x60 thumbnails", f"{len(res_t.objects)}", f"{rate_t:.1f}",
         f"{rate_t / ceil_t * 100:.0f} %", "too small for a watermark (< 64 px): C2PA + decode, ~1 ms; the rest is the pipeline's own cost"],
        [f"first audit of the whole bucket (C2PA only)", f"{len(res_first.objects)}",
         f"{len(res_first.objects) / t_first:.1f}", f"{len(res_first.objects) / t_first / ceiling * 100:.0f} %", "-"],
    ]
    second = [
        ["ListObjectsV2 of the same prefix, every page (plain boto3)", f"{n_list2}", f"{list_ref:.2f} s", "-"],
        ["second audit, nothing changed", f"{len(res_second.objects)}", f"{t_second:.2f} s",
         f"{(t_second - list_ref) / list_ref * 100:+.0f} % vs plain listing (its listing keeps timestamps "
         f"as strings); downloaded "
         f"{res_second.summary['downloaded']}"],
    ]
    stage_rows = [[k, stages_all.get(k, "-"), stages_fs.get(k, "-"), stages_own.get(k, "-"), stages_tm.get(k, "-"),
                   stages_c2.get(k, "-")]
                  for k in ("fetch_ms", "c2pa_ms", "decode_ms", "watermark_ms", "check_ms", "check_cpu_ms")]
    md = "\n".join([
        machine_line() + f" Load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} "
        "(the machine is shared by six engineers: absolute numbers are noisy; compare rows of this run).",
        "",
        f"SeaweedFS on 127.0.0.1 (`weed mini`), {a.objects} objects seeded ({nbytes / 1e6:.0f} MB, "
        f"{a.objects / up_s:.0f} PUT/s): {len(pool)} distinct images repeated, JPEG {sizes[0] // 1024}-"
        f"{sizes[-1] // 1024} KB and PNG; signed + watermarked, signed only, plain. "
        f"Audit: `--workers {a.workers} --processes {a.processes}`, in-process API (what the CLI wraps). "
        f"Sample verdicts: {json.dumps(counts)}.",
        "",
        "### Throughput (same run, same objects)",
        "",
        md_table(["what", "objects", "objects/s", "of the GET ceiling", "note"], rows),
        "",
        "### Second, unchanged run vs listing (whole bucket)",
        "",
        md_table(["what", "objects", "time", "note"], second),
        "",
        "### Where the time goes (mean per object, ms; CPU stages run in the process pool)",
        "",
        md_table(["stage", "C2PA + watermark (auto)", "--watermark-search full", "--watermark-search own",
                  "--watermark-trust-manifest",
                  "C2PA only"], stage_rows),
        "",
        "### CPU per object (parent = the auditing process, its GETs and bookkeeping; checks = its check "
        "processes; server = SeaweedFS)",
        "",
        f"On {ncpu} cores shared by the client and the S3 server, a CPU-bound run cannot exceed "
        f"{ncpu} cores / (CPU ms per object): the bound sits next to the measured rate. The last column is "
        "arithmetic, not a measurement: the cores that CPU per object needs at 80 % of the GET ceiling "
        "measured here.",
        "",
        md_table(["what", "parent CPU ms/object", "checks CPU ms/object", "server CPU ms/object",
                  "total CPU ms/object", f"bound on {ncpu} cores, objects/s", "measured objects/s",
                  "cores for 80 % of the ceiling"], cpu_rows),
    ])
    if scaling:
        md += "\n".join([
            "", "", "### Scaling with --processes (same sample, same ceiling, default checks)", "",
            md_table(["--processes", "objects/s", "of the GET ceiling", "check CPU ms/object", "parent CPU ms/object"],
                     [[str(n), f"{r:.1f}", f"{r / ceiling * 100:.0f} %", f"{c:.1f}" if n > 1 else "inline",
                       f"{p:.1f}" + (" (checks included)" if n <= 1 else "")] for n, r, c, p in scaling]),
        ])
    print(md)
    if not a.no_write:
        write_section("S3 audit", md)
        print("written to BENCHMARKS.md (## S3 audit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
