"""C2PA sign and verify: synthguard's API against raw c2pa-python, same settings, same run.

Both sides use the same native Signer settings (ES256 dev leaf, no thumbnail, no TSA), the same
manifest content and in-memory streams; measurements alternate raw / synthguard per iteration so
machine noise hits both alike. Writes the ``## Provenance (C2PA)`` section of BENCHMARKS.md.

    .venv/bin/python bench/bench_provenance.py [--quick]
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import c2pa  # noqa: E402

from bench._report import machine_line, md_table, write_section  # noqa: E402
from fixtures import make_media  # noqa: E402
from provenance import Signer, certs, sign, verify  # noqa: E402
from provenance.signing import TRAINED_ALGORITHMIC_MEDIA, build_manifest  # noqa: E402

TITLE = "Provenance (C2PA)"


def assets(quick: bool) -> list[tuple[str, str, bytes]]:
    mp4_kw = dict(size=(1280, 720), seconds=4, fps=24, bit_rate=20_000_000, noise=12.0)
    if quick:
        mp4_kw.update(seconds=1)
    return [
        ("1024x1024 JPEG", "image/jpeg", make_media.image_bytes("jpeg", size=(1024, 1024), seed=1)),
        ("1024x1024 PNG", "image/png", make_media.image_bytes("png", size=(1024, 1024), seed=2)),
        ("MP4 1280x720 H.264+AAC", "video/mp4", make_media.video_bytes("mp4", **mp4_kw)),
    ]


def raw_sign_fn(keys: certs.KeyPaths):
    """What a careful direct c2pa-python user writes: one Signer and Context, a Builder per asset."""
    chain = keys.signer_cert.read_bytes()
    key = keys.signer_key.read_bytes()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", chain, key, None))
    ctx = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})

    def run(data: bytes, mime: str) -> bytes:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest = build_manifest(title=None, model="bench-model", model_version="1", prompt="a prompt",
                                  watermark_payload=None, when=when)
        builder = c2pa.Builder(json.dumps(manifest), context=ctx)
        builder.add_action(json.dumps({"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                                       "when": when, "softwareAgent": {"name": "bench-model", "version": "1"}}))
        out = io.BytesIO()
        builder.sign(signer, mime, io.BytesIO(data), out)
        builder.close()
        return out.getvalue()
    return run


def raw_verify_fn(root_pem: bytes):
    ctx = c2pa.Context.from_dict({"trust": {"user_anchors": root_pem.decode()}})

    def run(data: bytes, mime: str) -> str:
        reader = c2pa.Reader(mime, io.BytesIO(data), context=ctx)
        try:
            store = json.loads(reader.json())
        finally:
            reader.close()
        return store["validation_state"]
    return run


def median_pair(fa, fb, n: int) -> tuple[float, float, float, float]:
    """Median wall and CPU seconds of fa and fb: ``(wall_a, wall_b, cpu_a, cpu_b)``.

    Rounds alternate which goes first. CPU time (process_time, all threads) is reported next to
    wall time because this machine is shared: other jobs inflate wall time at random, CPU much less.
    """
    wa, wb, ca, cb = [], [], [], []
    for i in range(n):
        order = ((fa, wa, ca), (fb, wb, cb)) if i % 2 == 0 else ((fb, wb, cb), (fa, wa, ca))
        for f, wacc, cacc in order:
            c, t = time.process_time(), time.perf_counter()
            f()
            wacc.append(time.perf_counter() - t)
            cacc.append(time.process_time() - c)
    med = statistics.median
    return med(wa), med(wb), med(ca), med(cb)


def glue_costs(data: bytes, signed: bytes, mime: str, signer: Signer, root: str) -> tuple[float, float]:
    """Seconds per call of the Python work synthguard adds around the native calls (min of 5 x 200).

    Sign: reading the source, sniffing and checking the type, looking up the cached native Signer and
    Context. Verify: trust-anchor lookup, sniffing, mapping the parsed store to a ``Verification``.
    This is the overhead without the machine noise that swamps sub-millisecond differences here.
    """
    import timeit

    from provenance.media import read_source, sniff_mime
    from provenance.signing import builder_context, resolve_mime
    from provenance.verification import _from_reader, reader_context

    store = json.loads(c2pa.Reader(mime, io.BytesIO(signed), context=reader_context(root)).json())

    def sign_glue() -> None:
        d, n = read_source(data)
        resolve_mime(d, n, None)
        signer.native(None)
        builder_context(False)

    def verify_glue() -> None:
        reader_context(root)
        d, n = read_source(signed)
        sniff_mime(d[:1024], n)
        _from_reader(store, mime)

    per = lambda f: min(timeit.repeat(f, number=200, repeat=5)) / 200  # noqa: E731
    return per(sign_glue), per(verify_glue)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and a shorter video")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        keys = certs.init_keys(tmp)
        sg_signer = Signer.from_files(keys.signer_cert, keys.signer_key)
        raw_sign = raw_sign_fn(keys)
        raw_verify = raw_verify_fn(keys.root.read_bytes())
        root = str(keys.root)
        rows = []
        for label, mime, data in assets(args.quick):
            n = (9 if args.quick else 61) if len(data) < 5_000_000 else (5 if args.quick else 21)
            signed = sign(data, signer=sg_signer, model="bench-model", model_version="1", prompt="a prompt")
            assert verify(signed, trust_anchors=root).state == "trusted"
            assert raw_verify(raw_sign(data, mime), mime) == "Trusted"
            for _ in range(2):  # warm both paths
                raw_sign(data, mime)
                sign(data, signer=sg_signer, model="bench-model", model_version="1", prompt="a prompt")
            rs, ss, rsc, ssc = median_pair(
                lambda: raw_sign(data, mime),
                lambda: sign(data, signer=sg_signer, model="bench-model", model_version="1", prompt="a prompt"),
                n)
            rv, sv, rvc, svc = median_pair(lambda: raw_verify(signed, mime),
                                           lambda: verify(signed, trust_anchors=root), n)
            gs, gv = glue_costs(data, signed, mime, sg_signer, root)
            pct = lambda a, b: f"{(b / a - 1) * 100:+.1f} %"  # noqa: E731
            glue = lambda g, base: f"{g * 1e6:.0f} µs ({g / base * 100:.1f} %)"  # noqa: E731
            rows.append([label, f"{len(data) / 1e6:.2f} MB", n,
                         f"{rs * 1e3:.2f}", f"{ss * 1e3:.2f}", pct(rs, ss), pct(rsc, ssc), glue(gs, rs),
                         f"{rv * 1e3:.2f}", f"{sv * 1e3:.2f}", pct(rv, sv), pct(rvc, svc), glue(gv, rv)])
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
    table = md_table(["asset", "size", "runs", "sign raw ms", "sign synthguard ms", "sign overhead (wall)",
                      "sign overhead (CPU)", "sign glue", "verify raw ms", "verify synthguard ms",
                      "verify overhead (wall)", "verify overhead (CPU)", "verify glue"], rows)
    md = (f"{machine_line()}\n\n"
          f"c2pa-python {_pkg_version('c2pa-python')} (c2pa-rs {c2pa.sdk_version()}). Median wall time per "
          "call from bytes in memory. *Raw* is direct c2pa-python with one reused Signer and Context, a "
          "Builder per asset (same manifest: generator assertion, c2pa.created with "
          "trainedAlgorithmicMedia, no thumbnail, no TSA) and `Reader` + `json()` for verification "
          "with the dev root as user anchor; *synthguard* is `provenance.sign(...)` / "
          "`provenance.verify(..., trust_anchors=root.pem)`, which also sniff the type, check input, "
          "hash the prompt and build the `Verification` value. Calls alternate raw/synthguard each "
          "round. Times are median wall ms; the overhead columns compare medians of wall time and of "
          "process CPU time (less disturbed by other jobs on this shared 2-core machine). *Glue* is the "
          "Python work synthguard adds around the native calls, timed on its own (min of 5 x 200 calls) "
          "and shown as a share of the raw median: the overhead without the noise. "
          "Target: overhead < 10 %.\n\n" + table + "\n")
    if not args.no_write:
        write_section(TITLE, md)
        print(f"wrote ## {TITLE} in BENCHMARKS.md")
    return 0


def _pkg_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
