"""Fingerprints: robustness at a fixed false-positive rate, hashing speed and lookup speed at 1M hashes.

Three stages, all on the shared corpus (``../shared/bench/phash``; build it first, see bench/README.md):

A. Product distance (what ``Fingerprint.matches`` and ``Registry`` do): every corpus image is
   fingerprinted; the distance is min(multi-part distance, scaled PDQ-component distance); T = largest
   distance with FPR <= 1e-4 over all distinct pairs (full image / own tile containment pairs excluded,
   as the harness does); recall per transform = the harness's 14 transforms plus off-centre and
   free-aspect 70 % crops, flip + crop, rotate -3/2/5 deg. pHash and PDQ (full image) run on the same
   images and transforms at their own thresholds for the same FPR; each component is also shown alone.
   ``--calibrate`` prints the THRESHOLD and the FPR-by-distance table for provenance/fingerprints.py.
B. The shared harness ``phbench.py`` with anchors (imagehash pHash/dHash, PDQ) in the same run, plus
   two plug-ins: ``SynthguardFull`` (the 256-bit full-frame hash alone, a plain single hash) and
   ``SynthguardMulti`` (every stored row incl. PDQ, ``multi = True``: its hashing speed is the cost of
   a fingerprint; NOTE the harness's multi distance is the min over ALL row pairs, not the product's).
C. Lookup as ``Registry.match_many`` does it: 1,000,000 part hashes (corpus fingerprints + uniform
   random fill, in assets of K parts plus one PDQ row each); 10,000 queries (fingerprints of
   transformed copies + random fill) at THRESHOLD, one thread; recall against exact brute force.

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
    """Everything a fingerprint stores (full frame + windows + the PDQ row) as a harness multi-hash
    (min over all row pairs): its throughput is the cost of ``provenance.fingerprint``."""

    name = "sg_multi"
    multi = True
    library = "synthguard provenance.fingerprints (all rows incl. PDQ; harness all-pairs distance)"

    def hash(self, rgb):
        return self._f.hash_rows(rgb)


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
    ours = [f.hash_rows(v) for v in versions]
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
    R = np.stack(parts)                         # n x (K + 1) x 32: parts, then the PDQ row
    P = np.ascontiguousarray(R[:, :-1])
    F = np.ascontiguousarray(P[:, 0])
    Z = np.ascontiguousarray(R[:, -1])
    name_to_idx = {r["file"]: i for i, r in enumerate(rows)}
    excl = [(name_to_idx[r["parent"]], i) for i, r in enumerate(rows) if r.get("parent") and r["parent"] in name_to_idx]
    # product distance: min(full_i vs parts_j, parts_i vs full_j)
    D1 = np.empty((n, n), np.int16)
    for i in range(n):
        D1[i] = f.hamming(F[i][None, None, :], P).min(axis=1)
    Dp = np.minimum(D1, D1.T)                   # multi-part distance alone
    Dz = np.stack([f.hamming(Z[i][None], Z) for i in range(n)])      # PDQ component alone
    D = np.minimum(Dp, f.pdq_scaled(Dz)).astype(np.int16)             # what Fingerprint.distance returns

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
    fps = {i: [f.Fingerprint(R[i])] + [f.Fingerprint(q) for q in pos_parts[i]] for i in idxs}
    pos = np.array([[fps[i][0] - q for q in fps[i][1:]] for i in idxs])
    pos_p = np.array([[fps[i][0].part_distance(q) for q in fps[i][1:]] for i in idxs])
    pos_z = np.array([[fps[i][0].pdq_distance(q) for q in fps[i][1:]] for i in idxs])
    hp, hz = hist_of(Dp, 256), hist_of(Dz, 256)
    Tp, cp = _t_at(hp, TARGET_FPR)
    Tz, cz = _t_at(hz, TARGET_FPR)
    tz = f.pdq_threshold(T)
    res["components"] = {
        "parts_alone": {"T": Tp, "recall": {tn: float((pos_p[:, k] <= Tp).mean()) for k, tn in enumerate(names)}},
        "pdq128_alone": {"T": Tz, "recall": {tn: float((pos_z[:, k] <= Tz).mean()) for k, tn in enumerate(names)}},
        "in_union": {"T_parts": T, "T_pdq": tz, "fpr_parts": float(cp[T]), "fpr_pdq": float(cz[tz]),
                     "parts": {tn: float((pos_p[:, k] <= T).mean()) for k, tn in enumerate(names)},
                     "pdq": {tn: float((pos_z[:, k] <= tz).mean()) for k, tn in enumerate(names)}}}
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
def _timed_search(mih, Q, t, batch=1000):
    t0, c0 = time.perf_counter(), time.process_time()
    qi_all, rows_all, d_all = [], [], []
    for q0 in range(0, len(Q), batch):
        qi, rr, dd = mih.range_search(Q[q0:q0 + batch], t)
        qi_all.append(qi + q0)
        rows_all.append(rr)
        d_all.append(dd)
    el, cp = time.perf_counter() - t0, time.process_time() - c0
    return np.concatenate(qi_all), np.concatenate(rows_all), np.concatenate(d_all), el, cp


def stage_c(corpus: Path, n_index: int, n_queries: int, seed: int = 5, max_images: int = 400) -> dict:
    """The registry's batched lookup (``Registry.match_many``) on 1,000,000 part hashes: the queries'
    full frames against every stored part (32 MIH tables), their PDQ components against every stored
    PDQ row (one per asset, 128 tables) and, reported apart, their parts against every stored full
    frame (the reverse direction). Index = real corpus fingerprints + random fill, in assets of K parts."""
    import phbench as pb
    from provenance import fingerprints as f
    from provenance.registry import _MIH, _MIH_KEYS, _PDQ_KEYS

    rows = pb.load_corpus(str(corpus))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows), size=min(max_images, len(rows)), replace=False)
    real, queries = [], []
    tr = transforms()
    for i in pick:
        rgb = pb.read_rgb(str(corpus / rows[i]["file"]))
        real.append(f.hash_rows(rgb))
        for k, (_tn, fn) in enumerate(tr):
            queries.append(f.hash_rows(fn(rgb, np.random.default_rng([7, int(i), k]))))
    K = real[0].shape[0] - 1
    n_assets = n_index // K
    rand = lambda m: rng.integers(0, 256, size=(m, K + 1, f.HASH_BYTES), dtype=np.uint8)  # noqa: E731
    A = np.concatenate([np.stack(real), rand(n_assets - len(real))])       # assets x (K + 1) x 32
    X = np.ascontiguousarray(A[:, :-1].reshape(-1, f.HASH_BYTES))          # every stored part
    Xfull = np.ascontiguousarray(A[:, 0])                                   # every stored full frame
    Z = np.ascontiguousarray(A[:, -1])                                      # every stored PDQ row
    Qr = np.stack(queries)
    nq_real = min(len(Qr), n_queries)
    Q = np.concatenate([Qr[rng.choice(len(Qr), nq_real, replace=False)], rand(n_queries - nq_real)])
    Qfull, Qz = np.ascontiguousarray(Q[:, 0]), np.ascontiguousarray(Q[:, -1])
    Qparts = np.ascontiguousarray(Q[:, :-1])
    T = int(f.THRESHOLD)
    tz = f.pdq_threshold(T)
    res = {"n_index": len(X), "n_assets": int(n_assets), "parts_per_asset": int(K), "n_real_assets": len(real),
           "n_queries": len(Q), "n_real_queries": int(nq_real), "T": T, "T_pdq": tz}
    # exact brute force (numpy popcount over packed uint64) on the first nb queries: best distance per query
    nb = 300
    Xw, Fw, Zw = X.view(np.uint64), Xfull.view(np.uint64), Z.view(np.uint64)
    t0, c0 = time.perf_counter(), time.process_time()
    truth_fwd, truth_z, best_true, best_true_fp, best_src = [], [], [], [], []
    for q in range(nb):
        d = np.bitwise_count(Xw ^ Qfull[q].view(np.uint64)).sum(axis=1)
        dz = np.bitwise_count(Zw ^ Qz[q].view(np.uint64)).sum(axis=1)
        dr = np.bitwise_count(Fw[None, :, :] ^ Qparts[q].view(np.uint64)[:, None, :]).sum(axis=2).min(axis=0)
        truth_fwd.append(set(np.nonzero(d <= T)[0].tolist()))
        truth_z.append(set(np.nonzero(dz <= tz)[0].tolist()))
        best_true_fp.append(int(min(d.min(), f.pdq_scaled(int(dz.min())))))
        best_src.append("parts" if d.min() <= f.pdq_scaled(int(dz.min())) else "pdq")
        best_true.append(int(min(best_true_fp[-1], dr.min())))
    el, cp = time.perf_counter() - t0, time.process_time() - c0
    res["bruteforce"] = {"qps_wall": nb / el, "qps_cpu": nb / cp, "queries_timed": nb}

    t0 = time.perf_counter()
    mih_p = _MIH(X, _MIH_KEYS)
    mih_z = _MIH(Z, _PDQ_KEYS)
    mih_f = _MIH(Xfull, _MIH_KEYS)
    res["build_s"] = time.perf_counter() - t0
    qi, rr, dd, el_p, cp_p = _timed_search(mih_p, Qfull, T)
    zi, zr, zd, el_z, cp_z = _timed_search(mih_z, Qz, tz)
    # reverse: each query's K parts against the stored full frames (1000 queries = 1000 x K rows a batch)
    t0, c0 = time.perf_counter(), time.process_time()
    ri_all, rd_all = [], []
    for q0 in range(0, len(Q), 1000):
        ri, _rr, rd = mih_f.range_search(Qparts[q0:q0 + 1000].reshape(-1, f.HASH_BYTES), T)
        ri_all.append(ri // K + q0)
        rd_all.append(rd)
    el_r, cp_r = time.perf_counter() - t0, time.process_time() - c0
    ri, rd = np.concatenate(ri_all), np.concatenate(rd_all)

    found_fwd = [set() for _ in range(nb)]
    found_z = [set() for _ in range(nb)]
    best_found = [1 << 30] * nb
    for x, y, dist in zip(qi.tolist(), rr.tolist(), dd.tolist()):
        if x < nb:
            found_fwd[x].add(y)
            best_found[x] = min(best_found[x], dist)
    for x, y, dist in zip(zi.tolist(), zr.tolist(), zd.tolist()):
        if x < nb:
            found_z[x].add(y)
            best_found[x] = min(best_found[x], int(f.pdq_scaled(int(dist))))
    for x, dist in zip(ri.tolist(), rd.tolist()):
        if x < nb:
            best_found[x] = min(best_found[x], dist)
    with_match = [q for q in range(nb) if best_true[q] <= T]
    res["parts"] = {"tables": len(_MIH_KEYS), "qps_wall": len(Q) / el_p, "qps_cpu": len(Q) / cp_p,
                    "recall_vs_bruteforce": sum(len(t & g) for t, g in zip(truth_fwd, found_fwd))
                    / max(1, sum(map(len, truth_fwd))),
                    "true_matches_checked": sum(map(len, truth_fwd))}
    res["pdq"] = {"tables": len(_PDQ_KEYS), "qps_wall": len(Q) / el_z, "qps_cpu": len(Q) / cp_z,
                  "recall_vs_bruteforce": sum(len(t & g) for t, g in zip(truth_z, found_z))
                  / max(1, sum(map(len, truth_z))),
                  "true_matches_checked": sum(map(len, truth_z))}
    res["lookup"] = {"seconds_wall": el_p + el_z, "seconds_cpu": cp_p + cp_z, "qps_wall": len(Q) / (el_p + el_z),
                     "qps_cpu": len(Q) / (cp_p + cp_z)}
    res["reverse"] = {"tables": len(_MIH_KEYS), "seconds_wall": el_r, "seconds_cpu": cp_r, "qps_cpu": len(Q) / cp_r}
    with_fp = [q for q in range(nb) if best_true_fp[q] <= T]
    got_fp = {q: _best_fp(q, qi, dd, zi, zd, f) for q in with_fp}
    missed = [q for q in with_fp if got_fp[q] != best_true_fp[q]]
    res["best_match"] = {
        "queries_with_a_match_fwd_pdq": len(with_fp),
        "recall_fwd_pdq": (len(with_fp) - len(missed)) / max(1, len(with_fp)),
        "missed_best_from_parts": sum(1 for q in missed if best_src[q] == "parts"),
        "missed_best_from_pdq": sum(1 for q in missed if best_src[q] == "pdq"),
        "missed_with_a_match_found": sum(1 for q in missed if got_fp[q] <= T),
        "queries_with_a_match": len(with_match),
        "recall_all_three": sum(1 for q in with_match if best_found[q] == best_true[q]) / max(1, len(with_match))}
    t0, c0 = time.perf_counter(), time.process_time()
    for q in range(2000):      # what Registry.match does: MIH over the parts, PDQ rows brute force
        mih_p.range_search(Qfull[q:q + 1], T)
        np.nonzero(f.hamming(Z, Qz[q]) <= tz)
    res["single_query_qps_wall"] = 2000 / (time.perf_counter() - t0)
    res["single_query_qps_cpu"] = 2000 / (time.process_time() - c0)
    print(f"  stage C: {json.dumps(res)}", flush=True)
    try:
        res["loadavg"] = "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        pass
    return res


def _best_fp(q, qi, dd, zi, zd, f):
    """Best distance a query gets from the forward and PDQ searches alone (no reverse direction)."""
    a = dd[qi == q]
    b = zd[zi == q]
    return int(min(a.min() if len(a) else 1 << 30, int(f.pdq_scaled(int(b.min()))) if len(b) else 1 << 30))


# ----------------------------------------------------------------------------- report
def render(a: dict | None, b: dict | None, c: dict | None, args) -> str:
    from bench._report import machine_line, md_table

    out = [machine_line(), ""]
    if a:
        ms = a["methods"]
        sg = ms["synthguard"]
        out.append(f"### A. Product distance (full frame vs any part both directions, or the PDQ component), {a['n_images']} images, "
                   f"{a['n_pairs']:,} distinct pairs, {a['n_robust']} originals x {len(sg['recall'])} transforms\n")
        out.append(f"T = largest distance with FPR <= {TARGET_FPR:g} between distinct images. synthguard: "
                   f"{sg['parts']} parts per image, T={sg['T']} (FPR at T {sg['fpr_at_T']:.2e}); hashing "
                   f"{sg['hash_ms_cpu_per_image']:.1f} ms CPU per image (all parts and the PDQ row, corpus images <= 1024 px).\n")
        order = ["synthguard"] + [m for m in ms if m != "synthguard"]
        hdr = ["transform"] + [f"{m} (T={ms[m]['T']}/{ms[m]['bits']})" for m in order]
        rows = []
        for tn in sg["recall"]:
            rows.append([tn] + [f"{100 * ms[m]['recall'][tn]:.1f}" for m in order])
        rows.append(["**mean**"] + [f"**{100 * np.mean(list(ms[m]['recall'].values())):.1f}**" for m in order])
        out += [md_table(hdr, rows), ""]
        comp = a.get("components")
        if comp:
            u = comp["in_union"]
            out.append(f"The distance is min(multi-part distance, ceil(PDQ-component distance x "
                       f"{'/'.join(map(str, _pdq_weight()))})): at T={sg['T']} a pair matches when its parts are within "
                       f"{u['T_parts']} (distinct pairs alone: FPR {u['fpr_parts']:.2e}) or its PDQ components (PDQ of the "
                       f"image at 128 px) within {u['T_pdq']} (FPR {u['fpr_pdq']:.2e}). What each component finds, at "
                       f"the union's thresholds and alone at its own FPR <= {TARGET_FPR:g}:\n")
            pa, za = comp["parts_alone"], comp["pdq128_alone"]
            hdr = ["transform", f"union (T={sg['T']})", f"parts in union (<= {u['T_parts']})",
                   f"PDQ-128 in union (<= {u['T_pdq']})", f"parts alone (T={pa['T']})", f"PDQ-128 alone (T={za['T']})"]
            rows = [[tn, f"{100 * sg['recall'][tn]:.1f}", f"{100 * u['parts'][tn]:.1f}", f"{100 * u['pdq'][tn]:.1f}",
                     f"{100 * pa['recall'][tn]:.1f}", f"{100 * za['recall'][tn]:.1f}"] for tn in sg["recall"]]
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
        out.append("`sg_full` is the full-frame hash alone; `sg_multi` is every row a fingerprint stores (parts and "
                   "the PDQ row) under the harness's multi distance (min over all row pairs of both images, window "
                   "vs window and PDQ vs part rows included, one threshold for all), which the product does not use: "
                   "it compares a full frame with the other image's parts, and PDQ with PDQ at its own scale. Its "
                   "hashing speed is the cost of `provenance.fingerprint` (all parts + PDQ at 128 px); `pdq` is PDQ "
                   "on the 1 MP image. The harness runs multi hashers on its `--slow-subset` of originals, so its FPR "
                   "resolution is coarser. Stage A is the product's own distance on the same corpus and transforms.\n")
    if c and "lookup" in c:
        out.append(f"### C. Lookup, one thread: {c['n_queries']:,} queries against {c['n_index']:,} part hashes "
                   f"({c['n_assets']:,} assets x {c['parts_per_asset']} parts, plus one PDQ row each) at T={c['T']} "
                   f"(PDQ rows at <= {c['T_pdq']})\n")
        p_, z_, l_, r_, bm = c["parts"], c["pdq"], c["lookup"], c["reverse"], c["best_match"]
        rows = [["numpy brute force, one query at a time (parts + PDQ + reverse)", "", f"{c['bruteforce']['qps_cpu']:.0f}",
                 f"{c['bruteforce']['qps_wall']:.0f}", "exact"],
                [f"query full frame vs all parts: MIH {p_['tables']} x 16-bit tables, batches of 1000",
                 f"{c['n_queries'] / p_['qps_cpu']:.2f}",
                 f"{p_['qps_cpu']:,.0f}", f"{p_['qps_wall']:,.0f}",
                 f"{100 * p_['recall_vs_bruteforce']:.2f} % of {p_['true_matches_checked']} rows <= T"],
                [f"query PDQ vs all PDQ rows: MIH {z_['tables']} x 16-bit tables, batches of 1000",
                 f"{c['n_queries'] / z_['qps_cpu']:.2f}",
                 f"{z_['qps_cpu']:,.0f}", f"{z_['qps_wall']:,.0f}",
                 f"{100 * z_['recall_vs_bruteforce']:.2f} % of {z_['true_matches_checked']} rows <= {c['T_pdq']}"],
                ["**both (the lookup)**", f"**{l_['seconds_cpu']:.2f}**", f"**{l_['qps_cpu']:,.0f}**",
                 f"**{l_['qps_wall']:,.0f}**",
                 f"best match found for {100 * bm['recall_fwd_pdq']:.2f} % of {bm['queries_with_a_match_fwd_pdq']} queries"],
                [f"reverse: the query's {c['parts_per_asset']} parts vs all stored full frames "
                 f"(MIH {r_['tables']} tables; in Registry.match_many, not in the line above)",
                 f"{r_['seconds_cpu']:.2f}", f"{r_['qps_cpu']:,.0f}", "",
                 f"all three: best match found for {100 * bm['recall_all_three']:.2f} % of {bm['queries_with_a_match']}"]]
        out.append(md_table(["search", "seconds for all queries (CPU)", "queries/s (CPU time)", "queries/s (wall)",
                             "recall vs exact brute force"], rows))
        out.append(f"\nBest match found = the smallest distance the search reports equals the exact smallest distance "
                   f"(misses: {bm['missed_best_from_parts']} where the best was a part row, {bm['missed_best_from_pdq']} "
                   f"where it was a PDQ row; {bm['missed_with_a_match_found']} of the misses still got a match <= T). "
                   f"One query at a time (full frame by MIH + PDQ rows brute force, as `Registry.match`): "
                   f"{c['single_query_qps_cpu']:,.0f} queries/s "
                   f"(CPU). Index build {c['build_s']:.1f} s. Index = {c['n_real_assets']} corpus originals' "
                   "fingerprints + uniform random fill; queries = "
                   f"{c['n_real_queries']:,} fingerprints of transformed copies + random fill. Brute-force truth on "
                   "the first 300 queries. The machine was shared (load average "
                   f"{c.get('loadavg', '?')} on 2 cores): CPU time is the one-core figure. Single-query lookups "
                   "(`Registry.match`) search the PDQ rows exactly (brute force); MIH over the parts is exact up "
                   "to distance 15 (pigeonhole over its first 16 tables).\n")
    out.append("Reproduce: build the corpus (bench/README.md), then `.venv/bin/python bench/bench_fingerprint.py "
               f"--corpus {args.corpus} --robust-n {args.robust_n}`.")
    return "\n".join(out)


def _pdq_weight():
    from provenance import fingerprints as f

    return f.PDQ_WEIGHT


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(ROOT / "bench" / ".out" / "phash-corpus"))
    ap.add_argument("--robust-n", type=int, default=300)
    ap.add_argument("--harness-robust-n", type=int, default=300)
    ap.add_argument("--slow-subset", type=int, default=150)
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for stage A and the harness")
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
