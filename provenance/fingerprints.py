"""Perceptual fingerprints that survive what leaks do to training assets.

Design (measured in ``bench/bench_fingerprint.py``, tables in BENCHMARKS.md under ``## Fingerprints``):

* **Hash**: 256 bits per part: the border-trimmed grey image is squashed to 192 x 192, each window
  resized to 32 x 32 and band-passed (difference of Gaussians, sigma 1 and 3) into ``f``. The hash is
  **flip-invariant** by construction: 128 bits compare two fixed points (5-25 % of a side apart) of the
  mirror-symmetric part ``f + mirror(f)``, 128 bits compare the magnitude of the antisymmetric part
  ``|f - mirror(f)|`` at two fixed points. Both are unchanged by a horizontal flip, so a flipped copy
  hashes exactly like the original and no mirrored parts are stored (``synthguard-fp/1`` stored every
  window twice). Measured: the symmetric half alone loses too much (T 33, off-centre crops -18 points);
  the antisymmetric magnitudes restore it. (A canonical-orientation hash was tried before: it failed
  when the left-right asymmetry of a crop changed sign.)
* **Borders**: uniform letterbox / padding rows and columns are trimmed before hashing (on both sides of
  a comparison), so a 20 px black border does not shift the frame.
* **Crops (multi-part)**: besides the full frame, every fingerprint carries hashes of 54 windows of
  the frame (squares of side 0.84 on a 7 x 5 grid and 0.92 on a 3 x 3 grid, 1 x 0.77 / 1 x 0.7 strips
  both ways) plus the full frame rotated +-3 deg: 57 parts (1.8 kB per image; fp/1 had 166), so 1M
  indexed hashes hold ~17,500 assets. A leaked crop that keeps >= 70 % of the area looks like one of
  those windows. The distance that decides a match is
  ``min(d(a.full, any part of b), d(any part of a, b.full))``: full frame against windows in both
  directions, never window against window (that would multiply false positives for nothing).
* **Threshold**: ``THRESHOLD`` is calibrated on the shared 1,665-image corpus so that distinct images
  match at a rate <= 1e-4 under this multi-part distance.

``fingerprint(x)`` accepts RGB arrays, paths, bytes and binary streams (decoded by
``provenance.media.decode_image``). ``video_fingerprints`` samples keyframes with PyAV.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .media import MediaError, Source, decode_image

__all__ = [
    "Fingerprint", "fingerprint", "video_fingerprints", "hash_parts", "THRESHOLD", "ALGORITHM", "HASH_BITS",
    "HASH_BYTES", "WINDOWS", "ROTATIONS", "confidence_for", "hamming", "full_hash", "fingerprint_media", "video_matches",
    "MEDIA_EXTENSIONS",
]

HASH_BITS = 256
HASH_BYTES = HASH_BITS // 8
_SIGMA = 1.0             # band-pass (difference of Gaussians) of the 32 x 32 thumbnail: fine scale
_SIGMA_BG = 3.0          # ... and the background it is compared against (removes global gradients)
_WORK = 192              # square grey working image the windows are cut from
_TRIM_MAX = 0.25         # never trim more than this fraction of a side as "border"

# Calibrated on the shared corpus (bench/bench_fingerprint.py --calibrate): largest T whose
# false-match rate between distinct images stays <= 1e-4 under the multi-part distance.
THRESHOLD = 50
# Bumped when hashes change meaning (stored registry rows and cached audit matches must be redone).
ALGORITHM = "synthguard-fp/2"

# Windows as (x0, y0, w, h) fractions of the (border-trimmed) frame; row 0 is the full frame.
def _grid(w: float, h: float, steps: int = 3, steps_y: int | None = None) -> list[tuple[float, float, float, float]]:
    sy = steps if steps_y is None else steps_y
    xs = [0.0] if w >= 1.0 else [i * (1.0 - w) / (steps - 1) for i in range(steps)]
    ys = [0.0] if h >= 1.0 else [i * (1.0 - h) / (sy - 1) for i in range(sy)]
    return [(x, y, w, h) for y in ys for x in xs]


# 55 windows. A square crop keeping 70 % of the area (side 0.84) must be within ~2 % of the frame side
# of a 0.84 window: a 4 x 4 grid there dropped centre-crop recall from 98 % to 39 %. The flip-invariant
# hash compares each point with its mirror image, so a horizontal shift counts about twice: the 0.84
# grid is 7 x-offsets by 5 y-offsets (5 x 5 left off-centre crops 2.6 points and the registry test's
# 70 % corner crop at distance 58 > T). The 0.77 / 0.70 squares of fp/1 bought little; the strips serve
# free-aspect crops (2 per side instead of 3 + 2: -7 points there). Measured (stage A corpus, same
# hash): 41 parts 93.0 % mean recall, 47 parts 93.7 %, 53 parts 93.9 %, these 57 parts 93.9 %.
WINDOWS: tuple[tuple[float, float, float, float], ...] = tuple(
    [(0.0, 0.0, 1.0, 1.0)]
    + _grid(0.84, 0.84, 7, 5) + _grid(0.92, 0.92, 3)
    + _grid(1.0, 0.77) + _grid(0.77, 1.0) + _grid(1.0, 0.70, 2) + _grid(0.70, 1.0, 2)
)
# Full frame rotated by these angles (black corners, like a rotated copy): extends rotation tolerance
# from about +-2 deg to about +-5 deg (measured in bench stage A: rotate 2/3/5 deg).
ROTATIONS: tuple[float, ...] = (-3.0, 3.0)

_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Bit count over the last axis of a uint8 array."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).sum(axis=-1, dtype=np.int32)
    return _POP8[x].sum(axis=-1, dtype=np.int32)


def popcount_rows64(x: np.ndarray) -> np.ndarray:
    """Bit count per row of an (N, W) uint64 array (numpy >= 2 popcount, else a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).sum(axis=1, dtype=np.int32)
    return _POP8[np.ascontiguousarray(x).view(np.uint8)].reshape(len(x), -1).sum(axis=1, dtype=np.int32)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance between packed uint8 hashes (broadcasting over leading axes)."""
    x = np.bitwise_xor(a, b)
    if x.shape[-1] % 8 == 0 and hasattr(np, "bitwise_count"):
        x = np.ascontiguousarray(x).view(np.uint64)          # 4 popcounts per 256-bit hash, not 32
        return np.bitwise_count(x).sum(axis=-1, dtype=np.int32)
    return _popcount(x)


# --------------------------------------------------------------------------------------- hashing
def _to_gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    a = np.asarray(rgb)
    if a.ndim == 2:
        g = a
    elif a.shape[2] == 4:
        g = cv2.cvtColor(np.ascontiguousarray(a[..., :3]), cv2.COLOR_RGB2GRAY)
    elif a.shape[2] == 3:
        g = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)
    elif a.shape[2] == 1:
        g = a[..., 0]
    else:
        raise MediaError(f"unsupported image shape {a.shape}")
    if g.dtype != np.uint8:
        g = np.clip(g, 0, 255).astype(np.uint8)
    h, w = g.shape
    if h < 8 or w < 8:
        raise MediaError(f"image too small to fingerprint ({w}x{h}, need at least 8x8)")
    # Bound the cost: everything downstream works on <= 512 px.
    s = 512.0 / max(h, w)
    if s < 1.0:
        g = cv2.resize(g, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    return g


def _trim_borders(g: np.ndarray) -> np.ndarray:
    """Drop uniform rows/columns at the edges (letterboxing, padding, solid frames)."""
    h, w = g.shape
    f = g.astype(np.float32)

    def run(lines: np.ndarray, limit: int) -> int:
        # lines: (n, L) from the edge inward; a border line is flat and the same tone as the edge.
        ref = float(np.median(lines[0]))
        n = 0
        for line in lines[:limit]:
            if float(line.std()) < 3.0 and abs(float(line.mean()) - ref) < 6.0:
                n += 1
            else:
                break
        return n

    ty, tx = int(h * _TRIM_MAX), int(w * _TRIM_MAX)
    top = run(f, ty)
    bottom = run(f[::-1], ty)
    left = run(f.T, tx)
    right = run(f.T[::-1], tx)
    if top + bottom >= h - 8 or left + right >= w - 8:
        return g
    return g[top:h - bottom, left:w - right]


def _work_image(rgb: np.ndarray) -> np.ndarray:
    import cv2

    g = _trim_borders(_to_gray(rgb))
    return cv2.resize(g, (_WORK, _WORK), interpolation=cv2.INTER_AREA).astype(np.float32)


def _make_pairs(n: int = HASH_BITS // 2, g: int = 32, rmin: float = 0.05, rmax: float = 0.25,
                seed: int = 0x5EED1234):
    """Fixed point pairs on the g x g thumbnail (deterministic LCG, so hashes never change with numpy).

    For mirror-symmetric maps: the first point is taken in the left half (a pair and its mirror image
    would give the same bit), a pair whose points mirror each other (constant bit) is dropped, and no
    pair repeats."""
    state = seed

    def rnd() -> float:
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (state >> 11) / float(1 << 53)

    out: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    lo, hi = 2, g - 3
    while len(out) < n:
        ax, ay = lo + int(rnd() * (hi - lo + 1)), lo + int(rnd() * (hi - lo + 1))
        ang, r = rnd() * 2 * math.pi, (rmin + (rmax - rmin) * rnd()) * g
        bx, by = int(round(ax + r * math.cos(ang))), int(round(ay + r * math.sin(ang)))
        if not (lo <= bx <= hi and lo <= by <= hi and (ax, ay) != (bx, by)):
            continue
        if ax > (g - 1) / 2:
            ax, bx = g - 1 - ax, g - 1 - bx
        if (bx, by) == (g - 1 - ax, ay):
            continue
        key = (ay * g + ax, by * g + bx)
        if key in seen:
            continue
        seen.add(key)
        out.append(key)
    a = np.array(out, dtype=np.intp)
    return a[:, 0], a[:, 1]


_THUMB = 32
_PA, _PB = _make_pairs(g=_THUMB)                      # on the symmetric part
_QA, _QB = _make_pairs(g=_THUMB, seed=0xA5A5F00D)     # on the antisymmetric magnitude


def _dog(t: np.ndarray) -> np.ndarray:
    """Band-pass (difference of Gaussians) of a thumbnail: drops global gradients shared by many photos."""
    import cv2

    return cv2.GaussianBlur(t, (0, 0), _SIGMA) - cv2.GaussianBlur(t, (0, 0), _SIGMA_BG)


def _bits(f: np.ndarray) -> np.ndarray:
    """256 flip-invariant bits from a band-passed g x g thumbnail: 128 comparisons of fixed point pairs
    (5-25 % of a side apart) of ``f + mirror(f)``, then 128 of ``|f - mirror(f)|``.

    Why not a DCT sign hash: measured on the corpus, a 2 % shift of the window flips ~25 % of a 256-bit
    DCT hash (16 x 16 block) but ~6 % of these bits, and the crop design depends on shift tolerance.
    Comparisons are invariant to any monotonic tone change (gamma, brightness, grayscale).
    """
    m = f[:, ::-1]
    s = (f + m).ravel()
    d = np.abs(f - m).ravel()
    return np.packbits(np.concatenate([s[_PA] > s[_PB], d[_QA] > d[_QB]]))


def hash_parts(rgb: np.ndarray, windows: Sequence[tuple[float, float, float, float]] = WINDOWS, *,
               rotations: Sequence[float] = ROTATIONS) -> np.ndarray:
    """The part hashes of an RGB (or grey) array as an N x 32 uint8 array; row 0 is the full frame.

    Rows 0..K-1 are the windows, then the full frame rotated by each of ``rotations``. The hash is
    flip-invariant, so a flipped copy's full frame equals row 0 (and a flipped crop's full frame the
    hash of the mirror-position window) with no mirrored rows stored.
    """
    import cv2

    w = _work_image(rgb)
    k_n = len(windows)
    rows: list[np.ndarray] = [np.empty(0, np.uint8)] * k_n
    for k, (x0, y0, ww, hh) in enumerate(windows):
        xa, ya = int(round(x0 * _WORK)), int(round(y0 * _WORK))
        xb, yb = min(_WORK, int(round((x0 + ww) * _WORK))), min(_WORK, int(round((y0 + hh) * _WORK)))
        f = _dog(cv2.resize(w[ya:yb, xa:xb], (_THUMB, _THUMB), interpolation=cv2.INTER_AREA))
        rows[k] = _bits(f)
    c = (_WORK - 1) / 2.0
    for ang in rotations:
        m = cv2.getRotationMatrix2D((c, c), float(ang), 1.0)
        r = cv2.warpAffine(w, m, (_WORK, _WORK), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0)
        f = _dog(cv2.resize(r, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA))
        rows.append(_bits(f))
    return np.stack(rows)


def full_hash(rgb: np.ndarray) -> np.ndarray:
    """The 32-byte full-frame hash alone (what a query needs when only the index is searched)."""
    return hash_parts(rgb, WINDOWS[:1], rotations=())[0]


# --------------------------------------------------------------------------------------- value
# False-match rate between distinct corpus images at each distance (multi-part distance), used for
# the calibrated confidence; see bench/bench_fingerprint.py --calibrate. Index = distance.
_FPR_AT: tuple[float, ...] = (
    0.0, 0.0, 0.0, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07,
    7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07,
    1.44e-06, 1.44e-06, 2.17e-06, 2.89e-06, 2.89e-06, 3.61e-06, 4.33e-06, 4.33e-06, 5.78e-06, 5.78e-06,
    6.5e-06, 6.5e-06, 7.94e-06, 8.66e-06, 8.66e-06, 1.01e-05, 1.3e-05, 1.52e-05, 1.95e-05, 2.17e-05,
    2.6e-05, 2.74e-05, 3.03e-05, 3.68e-05, 4.12e-05, 4.55e-05, 5.2e-05, 5.85e-05, 7.15e-05, 7.8e-05,
    9.17e-05, 0.000107, 0.000123, 0.000141, 0.000168, 0.000202, 0.000238, 0.000269, 0.000326, 0.00038,
    0.000448, 0.000542, 0.000644, 0.000757, 0.000908, 0.0011, 0.00131, 0.00156, 0.0019, 0.00228,
    0.00276, 0.00331, 0.004, 0.00481, 0.00577, 0.00695, 0.00842, 0.0102, 0.0124, 0.015,
    0.0182, 0.0223, 0.0271, 0.0332, 0.0407, 0.0499, 0.0611, 0.0746, 0.0909, 0.111,
    0.134, 0.161, 0.194, 0.231, 0.273, 0.321, 0.372, 0.429, 0.488, 0.548,
)


def confidence_for(distance: int) -> float:
    """Calibrated confidence that a pair at ``distance`` is the same picture: 1 - the rate at which
    distinct images come this close (0 beyond the threshold's neighbourhood)."""
    d = int(distance)
    if _FPR_AT:
        fpr = _FPR_AT[min(d, len(_FPR_AT) - 1)]
    else:  # binomial tail for unrelated 256-bit hashes, a conservative stand-in
        fpr = _binom_cdf(d, HASH_BITS)
    return round(max(0.0, min(1.0, 1.0 - fpr)), 6)


def _binom_cdf(k: int, n: int) -> float:
    return float(sum(math.comb(n, i) for i in range(0, min(k, n) + 1)) / 2.0 ** n)


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """Perceptual fingerprint of one image: K part hashes (row 0 = full frame), 256 bits each.

    ``a - b`` is the distance that decides a match (full frame vs any part, both directions);
    ``a.matches(b)`` is ``a - b <= threshold`` and is symmetric.
    """

    parts: np.ndarray  # (K, 32) uint8, read-only

    def __post_init__(self) -> None:
        p = np.ascontiguousarray(np.asarray(self.parts, dtype=np.uint8))
        if p.ndim == 1:
            p = p.reshape(1, -1)
        if p.ndim != 2 or p.shape[1] != HASH_BYTES or len(p) == 0:
            raise ValueError(f"fingerprint parts must be K x {HASH_BYTES} bytes, got {p.shape}")
        p = p.copy()
        p.setflags(write=False)
        object.__setattr__(self, "parts", p)

    # -- comparisons
    @property
    def full(self) -> np.ndarray:
        """The full-frame hash (what a query is compared with)."""
        return self.parts[0]

    def distance(self, other: "Fingerprint") -> int:
        a, b = self.parts, other.parts
        d1 = int(hamming(a[0], b).min())
        d2 = int(hamming(a, b[0]).min())
        return min(d1, d2)

    def __sub__(self, other: "Fingerprint") -> int:
        if not isinstance(other, Fingerprint):
            return NotImplemented
        return self.distance(other)

    def matches(self, other: "Fingerprint", threshold: int | None = None) -> bool:
        return self.distance(other) <= (THRESHOLD if threshold is None else int(threshold))

    def confidence(self, other: "Fingerprint") -> float:
        return confidence_for(self.distance(other))

    # -- serialisation
    def to_hex(self) -> str:
        return self.parts.tobytes().hex()

    @classmethod
    def from_hex(cls, text: str) -> "Fingerprint":
        t = text.strip().lower()
        if not t or len(t) % (2 * HASH_BYTES):
            raise ValueError(f"fingerprint hex must be a multiple of {2 * HASH_BYTES} hex digits")
        try:
            raw = bytes.fromhex(t)
        except ValueError as exc:
            raise ValueError(f"invalid fingerprint hex: {exc}") from None
        return cls(np.frombuffer(raw, np.uint8).reshape(-1, HASH_BYTES))

    def to_bytes(self) -> bytes:
        return self.parts.tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Fingerprint":
        if not raw or len(raw) % HASH_BYTES:
            raise ValueError(f"fingerprint bytes must be a multiple of {HASH_BYTES}")
        return cls(np.frombuffer(raw, np.uint8).reshape(-1, HASH_BYTES))

    def to_dict(self) -> dict:
        return {"bits": HASH_BITS, "parts": len(self.parts), "full": self.full.tobytes().hex(),
                "hex": self.to_hex()}

    # -- value semantics
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fingerprint) and self.parts.shape == other.parts.shape and \
            bool(np.array_equal(self.parts, other.parts))

    def __hash__(self) -> int:
        return hash(self.parts.tobytes())

    def __len__(self) -> int:
        return len(self.parts)

    def __repr__(self) -> str:
        return f"Fingerprint({self.full.tobytes().hex()[:16]}..., parts={len(self.parts)})"

    def __str__(self) -> str:
        return self.full.tobytes().hex()


def fingerprint(source: Source | np.ndarray) -> Fingerprint:
    """Fingerprint an image given as an RGB array, a path, bytes or a binary stream."""
    rgb = source if isinstance(source, np.ndarray) else decode_image(source)
    return Fingerprint(hash_parts(rgb))


# --------------------------------------------------------------------------------------- video
def video_fingerprints(source: Source, max_frames: int = 16) -> list[Fingerprint]:
    """Fingerprints of up to ``max_frames`` frames sampled evenly over a video (path, bytes or stream).

    Keyframes are preferred: when the container has enough of them they are decoded alone (fast);
    otherwise frames are sampled evenly from the decoded stream.
    """
    import io

    import av

    from .media import read_source

    if max_frames < 1:
        raise ValueError("max_frames must be >= 1")
    data, name = read_source(source)
    if not data:
        raise MediaError(f"{name or 'input'}: empty file")
    try:
        frames = _sample_frames(av, io.BytesIO(data), max_frames)
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises its own error family for bad input
        raise MediaError(f"{name or 'input'}: cannot decode video: {exc}") from None
    if not frames:
        raise MediaError(f"{name or 'input'}: no decodable video frames")
    return [Fingerprint(hash_parts(f)) for f in frames]


def _sample_frames(av, stream, max_frames: int) -> list[np.ndarray]:
    with av.open(stream) as container:
        if not container.streams.video:
            raise MediaError("no video stream")
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        total = int(vs.frames or 0)
        picked: list[np.ndarray] = []
        if total <= 0:
            # Unknown length: one pass with a doubling stride keeps memory bounded (<= 2 * max_frames
            # frames held) and leaves an even sample of the whole stream.
            kept: list[np.ndarray] = []
            stride = 1
            for i, frame in enumerate(container.decode(vs)):
                if i % stride == 0:
                    kept.append(frame.to_ndarray(format="rgb24"))
                    if len(kept) >= 2 * max_frames:
                        kept = kept[::2]
                        stride *= 2
            return _even(kept, max_frames)
        want = set(np.linspace(0, total - 1, num=min(max_frames, total)).round().astype(int).tolist())
        for i, frame in enumerate(container.decode(vs)):
            if i in want:
                picked.append(frame.to_ndarray(format="rgb24"))
                if len(picked) == len(want):
                    break
        return picked


def _even(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    idx = np.linspace(0, len(items) - 1, num=n).round().astype(int)
    return [items[i] for i in idx]


def video_matches(query: Iterable[Fingerprint], reference: Iterable[Fingerprint], *,
                  threshold: int | None = None, min_fraction: float = 0.5) -> tuple[bool, int, int]:
    """Whether a sampled video matches a reference: at least ``min_fraction`` of the query frames
    match some reference frame. Returns (matched, matched_frames, query_frames)."""
    q, r = list(query), list(reference)
    if not q or not r:
        return False, 0, len(q)
    t = THRESHOLD if threshold is None else int(threshold)
    hit = sum(1 for a in q if min(a - b for b in r) <= t)
    return hit >= max(1, math.ceil(min_fraction * len(q))), hit, len(q)


# --------------------------------------------------------------------------------------- any media
_VIDEO_EXT = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"}
_IMAGE_EXT = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".gif", ".bmp", ".heic", ".heif", ".avif"}
MEDIA_EXTENSIONS = frozenset(_VIDEO_EXT | _IMAGE_EXT)


def fingerprint_media(source: Source, name: str | None = None, *, max_frames: int = 16) -> tuple[str, list[Fingerprint]]:
    """``("image", [fp])`` or ``("video", [fp, ...])`` for any supported media, by content sniffing."""
    from .media import read_source, sniff_mime

    data, src_name = read_source(source)
    name = name or src_name
    if not data:
        raise MediaError(f"{name or 'input'}: empty file")
    mime = sniff_mime(data, name) or ""
    if mime.startswith("video/"):
        return "video", video_fingerprints(data, max_frames=max_frames)
    if mime and not mime.startswith("image/"):
        raise MediaError(f"{name or 'input'}: not an image or video ({mime})")
    try:
        rgb = decode_image(data)
    except MediaError as exc:
        raise MediaError(str(exc).replace("input:", f"{name}:", 1) if name else str(exc)) from None
    return "image", [fingerprint(rgb)]
