"""Fingerprints: robustness at a fixed false-positive rate, hashing speed and lookup speed at 1M hashes.

Three stages, all on the shared corpus (``../shared/bench/phash``; build it first, see bench/README.md):

A. Product distance (what ``Fingerprint.matches`` and ``Registry`` do): every corpus image is
   fingerprinted; T = largest distance with FPR <= 1e-4 over all distinct pairs (full image / own tile
   containment pairs excluded, as the harness does); recall per transform = the harness's 14 transforms
   plus off-centre and free-aspect 70 % crops, flip + crop, rotate -3 deg. pHash and PDQ run on the
   same images and transforms at their own thresholds for the same FPR. ``--calibrate`` prints the
   THRESHOLD and the FPR-by-distance table for provenance/fingerprints.py.
B. The shared harness ``phbench.py`` with anchors (imagehash pHash/dHash, PDQ) in the same run, plus
   two plug-ins: ``SynthguardFull`` (the 256-bit full-frame hash alone, a plain single hash) and
   ``SynthguardMulti`` (all parts, ``multi = True``; NOTE the harness's multi distance is the min over
   ALL part pairs, window-vs-window included, a stricter FPR than the product's full-vs-any distance).
C. Lookup: 1,000,000 part hashes (corpus parts + uniform random fill) in the registry's index; 10,000
   queries (full-frame hashes of transformed copies + random fill) at THRESHOLD, one thread; recall
   against exact brute force.

    .venv/bin/python bench/bench_fingerprint.py [--corpus DIR] [--robust-n 300] [--skip-harness]
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
HARNESS = (ROOT.parent / "shared" / "bench" / "phash").resolve()
if not HARNESS.exists():
    HARNESS = Path("/work/shared/bench/phash")
sys.path.insert(0, str(HARNESS))

TITLE = "Fingerprints"
TARGET_FPR = 1e-4


# ----------------------------------------------------------------------------- harness plug-ins
class SynthguardFull:
    """The full-frame 256-bit hash alone (what a query sends): a plain single hash."""

    name = "sg_full"
    bits = 256
    library = "synthguard provenance.fingerprints (full frame only)"

    def __init__(self) -> None:
        from provenance import fingerprints as f

        self._f = f
        self.threshold = int(f.THRESHOLD)

    def hash(self, rgb):
        return self._f.full_hash(rgb)


class SynthguardMulti(SynthguardFull):
    """All parts (full frame + windows) as a harness multi-hash (min over all part pairs)."""

    name = "sg_multi"
    multi = True
    library = "synthguard provenance.fingerprints (all parts; harness all-pairs distance)"

    def hash(self, rgb):
        return self._f.hash_parts(rgb)


# ----------------------------------------------------------------------------- stage A
def _offcrop(a, r, area=0.7, aspect=False):
    h, w = a.shape[:2]
    if aspect:
        sw = r.uniform(area, 1.0)
        sh = area / sw
        if r.random() < 0.5:
            sw, sh = sh, sw
    else:
        sw = sh = math.sqrt(area)
    cw, ch = max(8, round(w * sw)), max(8, round(h * sh))
    x0, y0 = int(r.integers(0, w - cw + 1)), int(r.integers(0, h - ch + 1))
    return np.ascontiguousarray(a[y0:y0 + ch, x0:x0 + cw])


def transforms():
    import phbench as pb

    extra = [
        ("crop70_offcentre", lambda a, r: _offcrop(a, r)),
        ("crop70_free_aspect", lambda a, r: _offcrop(a, r, aspect=True)),
        ("hflip_crop80_offcentre", lambda a, r: _offcrop(np.ascontiguousarray(a[:, ::-1]), r, 0.8)),
        ("rotate_-3deg", lambda a, r: pb._rotate(a, -3.0)),
        ("rotate_2deg", lambda a, r: pb._rotate(a, 2.0)),
        ("rotate_5deg", lambda a, r: pb._rotate(a, 5.0)),
        ("crop70_offcentre_jpeg60", lambda a, r: pb._jpeg(_offcrop(a, r), 60)),
    ]
    return list(pb.TRANSFORMS) + extra


_ANCH: dict = {}


def _anchor_hash(name, rgb):
    if name == "pdq":
        import pdqhash

        h, _q = pdqhash.compute(np.ascontiguousarray(rgb))
        return np.packbits(np.asarray(h, bool).ravel())
    import imagehash
    from PIL import Image

    return np.packbits(imagehash.phash(Image.fromarray(rgb)).hash.ravel())


def _task(args):
    import phbench as pb
    from provenance import fingerprints as f

    idx, path, robust, anchors = args
    rgb = pb.read_rgb(path)
    versions = [rgb]
    if robust:
        for k, (_tn, fn) in enumerate(transforms()):
            versions.append(fn(rgb, np.random.default_rng([1234, idx, k])))
    t0 = time.process_time()
    ours = [f.hash_parts(v) for v in versions]
    cpu = time.process_time() - t0
    anc = {a: [_anchor_hash(a, v) for v in versions] for a in anchors}
    return idx, ours, anc, cpu


def _t_at(hist, target):
    cum = np.cumsum(hist) / max(1, hist.sum())
    ok = np.nonzero(cum <= target)[0]
    return (int(ok.max()) if len(ok) else -1), cum


def stage_a(corpus: Path, robust_n: int, jobs: int, anchors=("phash", "pdq"), max_images: int = 0):
    import phbench as pb
    from provenance import fingerprints as f

    rows = pb.load_corpus(str(corpus))
    if max_images:
        rows = rows[:max_images]
    n = len(rows)
    robust = set(np.random.default_rng(99).choice(n, size=min(robust_n, n), replace=False).tolist())
    tasks = [(i, str(corpus / r["file"]), i in robust, list(anchors)) for i, r in enumerate(rows)]
    parts, anc, pos_parts, pos_anc, cpu = [None] * n, {a: [None] * n for a in anchors}, {}, {a: {} for a in anchors}, 0.0
    t0 = time.perf_counter()
    with ProcessPoolExecutor(jobs) as ex:
        for k, (idx, ours, an, c) in enumerate(ex.map(_task, tasks, chunksize=4)):
            parts[idx] = ours[0]
            cpu += c
            for a in anchors:
                anc[a][idx] = an[a][0]
            if len(ours) > 1:
                pos_parts[idx] = ours[1:]
                for a in anchors:
                    pos_anc[a][idx] = an[a][1:]
            if (k + 1) % 200 == 0:
                print(f"  stage A: {k + 1}/{n} images in {time.perf_counter() - t0:.0f}s", flush=True)
    P = np.stack(parts)                         # n x K x 32
    F = np.ascontiguousarray(P[:, 0])
    name_to_idx = {r["file"]: i for i, r in enumerate(rows)}
    excl = [(name_to_idx[r["parent"]], i) for i, r in enumerate(rows) if r.get("parent") and r["parent"] in name_to_idx]
    # product distance: min(full_i vs parts_j, parts_i vs full_j)
    D1 = np.empty((n, n), np.int16)
    for i in range(n):
        D1[i] = f.hamming(F[i][None, None, :], P).min(axis=1)
    D = np.minimum(D1, D1.T)

    def hist_of(Dm, bits):
        iu = np.triu_indices(n, 1)
        h = np.bincount(Dm[iu].astype(np.int64), minlength=bits + 1)[:bits + 1]
        for i, j in excl:
            h[int(Dm[i, j])] -= 1
        return h

    res = {"n_images": n, "n_robust": len(pos_parts), "n_pairs": None, "methods": {}}
    h = hist_of(D, 256)
    res["n_pairs"] = int(h.sum())
    T, cum = _t_at(h, TARGET_FPR)
    names = [tn for tn, _ in transforms()]
    idxs = sorted(pos_parts)
    pos = np.array([[f.Fingerprint(P[i]) - f.Fingerprint(q) for q in pos_parts[i]] for i in idxs])
    res["methods"]["synthguard"] = {"T": T, "bits": 256, "parts": int(P.shape[1]), "fpr_at_T": float(cum[T]),
                                    "recall": {tn: float((pos[:, k] <= T).mean()) for k, tn in enumerate(names)},
                                    "median_d": {tn: float(np.median(pos[:, k])) for k, tn in enumerate(names)},
                                    "fpr_by_distance": [float(x) for x in cum[:int(np.searchsorted(cum, 0.5)) + 1]],
                                    "hash_ms_cpu_per_image": 1000 * cpu / (n + len(idxs) * len(names))}
    for a in anchors:
        H = np.stack(anc[a])
        Da = np.stack([f.hamming(H[i][None], H) for i in range(n)])
        bits = H.shape[1] * 8
        ha = hist_of(Da, bits)
        Ta, ca = _t_at(ha, TARGET_FPR)
        pa = np.array([[int(f.hamming(anc[a][i], q)) for q in pos_anc[a][i]] for i in idxs])
        res["methods"][a] = {"T": Ta, "bits": bits, "parts": 1, "fpr_at_T": float(ca[Ta]) if Ta >= 0 else 0.0,
                             "recall": {tn: (float((pa[:, k] <= Ta).mean()) if Ta >= 0 else 0.0) for k, tn in enumerate(names)}}
    return res


# ----------------------------------------------------------------------------- stage B
def stage_b(corpus: Path, robust_n: int, slow_subset: int, jobs: int, out: Path) -> dict:
    cmd = [sys.executable, str(HARNESS / "phbench.py"), "--corpus", str(corpus), "--methods", "phash,dhash,pdq",
           "--hasher", f"{Path(__file__).resolve()}:SynthguardFull", "--hasher", f"{Path(__file__).resolve()}:SynthguardMulti",
           "--robust-n", str(robust_n), "--slow-subset", str(slow_subset), "--jobs", str(jobs), "--skip-lookup",
           "--view-exclude", "", "--out", str(out), "--label", "synthguard fingerprints vs anchors"]
    print("  stage B:", " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(cmd, check=True, cwd=str(ROOT), env=env)
    return json.loads(Path(str(out) + ".json").read_text())


# ----------------------------------------------------------------------------- stage C
def stage_c(corpus: Path, n_index: int, n_queries: int, seed: int = 5, max_images: int = 400) -> dict:
    import phbench as pb
    from provenance import fingerprints as f
    from provenance.registry import _MIH

    rows = pb.load_corpus(str(corpus))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows), size=min(max_images, len(rows)), replace=False)
    real_parts, queries = [], []
    tr = transforms()
    for n, i in enumerate(pick):
        rgb = pb.read_rgb(str(corpus / rows[i]["file"]))
        real_parts.append(f.hash_parts(rgb))
        for k, (_tn, fn) in enumerate(tr):
            queries.append(f.full_hash(fn(rgb, np.random.default_rng([7, int(i), k]))))
    R = np.concatenate(real_parts)
    fill = rng.integers(0, 256, size=(n_index - len(R), f.HASH_BYTES), dtype=np.uint8)
    X = np.ascontiguousarray(np.concatenate([R, fill]))
    Qr = np.stack(queries)
    nq_real = min(len(Qr), n_queries)
    Q = np.concatenate([Qr[rng.choice(len(Qr), nq_real, replace=False)],
                        rng.integers(0, 256, size=(n_queries - nq_real, f.HASH_BYTES), dtype=np.uint8)])
    T = int(f.THRESHOLD)
    res = {"n_index": len(X), "n_real_parts": int(len(R)), "n_queries": len(Q), "n_real_queries": int(nq_real), "T": T}
    # exact brute force (numpy popcount over packed uint64), timed on a subset
    Xw = X.view(np.uint64)
    nb = 300
    t0 = time.perf_counter()
    c0 = time.process_time()
    truth, best_truth = [], []
    for q in Q[:nb]:
        d = np.bitwise_count(Xw ^ q.view(np.uint64)).sum(axis=1)
        truth.append(set(np.nonzero(d <= T)[0].tolist()))
        best_truth.append(int(np.argmin(d)))
    el, cp = time.perf_counter() - t0, time.process_time() - c0
    res["bruteforce"] = {"qps_wall": nb / el, "qps_cpu": nb / cp, "queries_timed": nb}
    # MIH, the registry's large-index path: 16 tables (code covered once) and 32 (two byte pairings)
    from provenance.registry import _MIH_KEYS

    for n_tables in (16, 32):
        t0 = time.perf_counter()
        mih = _MIH(X, _MIH_KEYS[:n_tables])
        r = {"tables": n_tables, "build_s": time.perf_counter() - t0}
        t0, c0 = time.perf_counter(), time.process_time()
        qi_all, rows_all = [], []
        for q0 in range(0, len(Q), 1000):
            qi, rr, _d = mih.range_search(Q[q0:q0 + 1000], T)
            qi_all.append(qi + q0)
            rows_all.append(rr)
        el, cp = time.perf_counter() - t0, time.process_time() - c0
        qi, rr = np.concatenate(qi_all), np.concatenate(rows_all)
        found = [set() for _ in range(nb)]
        for x, y in zip(qi.tolist(), rr.tolist()):
            if x < nb:
                found[x].add(y)
        tot = sum(len(t) for t in truth)
        hit = sum(len(t & g) for t, g in zip(truth, found))
        # best-match recall: is the nearest true row (what best_match reports) found?
        best_hit = sum(1 for t, g, dd in zip(truth, found, best_truth) if t and dd in g)
        r.update({"qps_wall": len(Q) / el, "qps_cpu": len(Q) / cp, "seconds_wall": el, "seconds_cpu": cp,
                  "recall_vs_bruteforce": hit / max(1, tot), "true_matches_checked": tot,
                  "best_match_recall": best_hit / max(1, sum(1 for t in truth if t))})
        t0, c0 = time.perf_counter(), time.process_time()
        for q in Q[:2000]:
            mih.range_search(q[None], T)
        r["single_query_qps_wall"] = 2000 / (time.perf_counter() - t0)
        r["single_query_qps_cpu"] = 2000 / (time.process_time() - c0)
        res[f"mih{n_tables}"] = r
        print(f"  stage C: MIH {n_tables} tables {r}", flush=True)
        del mih
    try:
        res["loadavg"] = "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        pass
    return res


# ----------------------------------------------------------------------------- report
def render(a: dict | None, b: dict | None, c: dict | None, args) -> str:
    from bench._report import machine_line, md_table

    out = [machine_line(), ""]
    if a:
        ms = a["methods"]
        sg = ms["synthguard"]
        out.append(f"### A. Product distance (full frame vs any part, both directions), {a['n_images']} images, "
                   f"{a['n_pairs']:,} distinct pairs, {a['n_robust']} originals x {len(sg['recall'])} transforms\n")
        out.append(f"T = largest distance with FPR <= {TARGET_FPR:g} between distinct images. synthguard: "
                   f"{sg['parts']} parts per image, T={sg['T']} (FPR at T {sg['fpr_at_T']:.2e}); hashing "
                   f"{sg['hash_ms_cpu_per_image']:.1f} ms CPU per image (all parts, corpus images <= 1024 px).\n")
        order = ["synthguard"] + [m for m in ms if m != "synthguard"]
        hdr = ["transform"] + [f"{m} (T={ms[m]['T']}/{ms[m]['bits']})" for m in order]
        rows = []
        for tn in sg["recall"]:
            rows.append([tn] + [f"{100 * ms[m]['recall'][tn]:.1f}" for m in order])
        rows.append(["**mean**"] + [f"**{100 * np.mean(list(ms[m]['recall'].values())):.1f}**" for m in order])
        out += [md_table(hdr, rows), ""]
    if b:
        out.append("### B. Shared harness (phbench.py), anchors in the same run\n")
        roc = b.get("roc") or b.get("methods") or {}
        thr = (b.get("throughput") or {}).get("methods", {})
        names = list(roc)
        hdr = ["method", "bits", "images / distinct pairs for FPR", "T @FPR<=1e-4", "FPR at T", "mean recall %",
               "hash img/s (1 MP, CPU)"]
        rows = []
        for m in names:
            r = roc[m]
            rows.append([m, r.get("bits"), f"{r.get('n_images')} / {r.get('n_distinct_pairs'):,}",
                         r.get("T_at_target_fpr"), f"{r.get('fpr_at_T', 0):.2e}",
                         f"{100 * r.get('mean_recall_at_T', 0):.1f}",
                         f"{thr.get(m, {}).get('hash_only_ips_cpu', float('nan')):.1f}"])
        out += [md_table(hdr, rows), ""]
        tns = list(next(iter(roc.values()))["transforms"]) if roc else []
        hdr = ["transform"] + [f"{m} (T={roc[m].get('T_at_target_fpr')})" for m in names]
        rows = [[tn] + [f"{100 * roc[m]['transforms'][tn]['recall_at_T']:.1f}" for m in names] for tn in tns]
        rows.append(["**mean**"] + [f"**{100 * roc[m].get('mean_recall_at_T', 0):.1f}**" for m in names])
        out += [md_table(hdr, rows), ""]
        out.append("`sg_full` is the full-frame hash alone; `sg_multi` is all parts under the harness's multi "
                   "distance (min over all part pairs of both images, window vs window included), which the "
                   "product does not use: it only compares a full frame with the other image's parts. The "
                   "harness runs multi hashers on its `--slow-subset` of originals, so its FPR resolution is "
                   "coarser. Stage A is the product's own distance on the same corpus and transforms.\n")
    if c:
        out.append(f"### C. Lookup, one thread: {c['n_queries']:,} queries against {c['n_index']:,} hashes at T={c['T']}\n")
        rows = [["numpy brute force (packed uint64 popcount)", "0", f"{c['bruteforce']['qps_cpu']:.0f}",
                 f"{c['bruteforce']['qps_wall']:.0f}", "", "exact", "exact"]]
        for key in ("mih16", "mih32"):
            if key in c:
                m = c[key]
                rows.append([f"multi-index hashing, {m['tables']} x 16-bit tables, batches of 1000",
                             f"{m['build_s']:.1f}", f"{m['qps_cpu']:,.0f}", f"{m['qps_wall']:,.0f}",
                             f"{m['single_query_qps_cpu']:,.0f}",
                             f"{100 * m['recall_vs_bruteforce']:.2f} % of {m['true_matches_checked']}",
                             f"{100 * m['best_match_recall']:.2f} %"])
        out.append(md_table(["structure", "build s", "queries/s (CPU time)", "queries/s (wall)",
                             "one query at a time, q/s (CPU)", "recall of all matches <= T",
                             "recall of the best match"], rows))
        out.append(f"\nIndex = {c['n_real_parts']:,} real part hashes (corpus originals, all parts) + uniform "
                   f"random fill; queries = {c['n_real_queries']:,} full-frame hashes of transformed copies + "
                   "random fill. Recall compares with exact brute force on the first 300 queries. The machine "
                   f"was shared (load average {c.get('loadavg', '?')} on 2 cores): CPU time is the one-core "
                   "figure when wall clock and CPU time disagree. The registry uses 32 tables (recall first, "
                   "still >= 10,000 queries/s in batches via `Registry.match_many`); MIH is exact up to "
                   "distance 15 (pigeonhole over the first 16 tables).\n")
    out.append("Reproduce: build the corpus (bench/README.md), then `.venv/bin/python bench/bench_fingerprint.py "
               f"--corpus {args.corpus} --robust-n {args.robust_n}`.")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(ROOT / "bench" / ".out" / "phash-corpus"))
    ap.add_argument("--robust-n", type=int, default=300)
    ap.add_argument("--harness-robust-n", type=int, default=300)
    ap.add_argument("--slow-subset", type=int, default=150)
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-harness", action="store_true")
    ap.add_argument("--skip-lookup", action="store_true")
    ap.add_argument("--lookup-index", type=int, default=1_000_000)
    ap.add_argument("--lookup-queries", type=int, default=10_000)
    ap.add_argument("--calibrate", action="store_true", help="print THRESHOLD and the FPR table, write nothing")
    ap.add_argument("--out", default=str(ROOT / "bench" / ".out" / "fingerprint"))
    args = ap.parse_args(argv)
    corpus = Path(args.corpus)
    if not (corpus / "manifest.csv").exists():
        print(f"corpus not found at {corpus}: build it first (bench/README.md)", file=sys.stderr)
        return 2
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    a = b = c = None
    if not args.skip_a:
        a = stage_a(corpus, args.robust_n, args.jobs, max_images=args.max_images)
        Path(args.out + "-a.json").write_text(json.dumps(a, indent=1))
        sg = a["methods"]["synthguard"]
        print(f"  stage A: T={sg['T']} mean recall {100 * np.mean(list(sg['recall'].values())):.1f}%", flush=True)
        for tn, v in sg["recall"].items():
            print(f"    {tn:34s} {100 * v:5.1f}  " + "  ".join(
                f"{m}={100 * a['methods'][m]['recall'][tn]:.1f}" for m in a["methods"] if m != "synthguard"), flush=True)
        if args.calibrate:
            fpr = sg["fpr_by_distance"]
            print(f"THRESHOLD = {sg['T']}")
            print("_FPR_AT = (" + ", ".join(f"{x:.3g}" for x in fpr) + ")")
            return 0
    if not args.skip_harness:
        b = stage_b(corpus, args.harness_robust_n, args.slow_subset, args.jobs, Path(args.out + "-harness"))
    if not args.skip_lookup:
        c = stage_c(corpus, args.lookup_index, args.lookup_queries)
        Path(args.out + "-c.json").write_text(json.dumps(c, indent=1))
        print(f"  stage C: {json.dumps(c)}", flush=True)
    # A skipped stage reuses the results a previous run left under the same --out prefix.
    if a is None and Path(args.out + "-a.json").exists():
        a = json.loads(Path(args.out + "-a.json").read_text())
    if b is None and Path(args.out + "-harness.json").exists():
        b = json.loads(Path(args.out + "-harness.json").read_text())
    if c is None and Path(args.out + "-c.json").exists():
        c = json.loads(Path(args.out + "-c.json").read_text())
    from bench._report import write_section

    path = write_section(TITLE, render(a, b, c, args))
    print(f"wrote ## {TITLE} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
