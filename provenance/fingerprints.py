"""Perceptual fingerprints that survive what leaks do to training assets.

Design (measured in ``bench/bench_fingerprint.py``, tables in BENCHMARKS.md under ``## Fingerprints``):

* **Hash**: 256 bits per part: the border-trimmed grey image is squashed to 192 x 192, each window
  resized to 32 x 32 and band-passed (difference of Gaussians, sigma 1 and 3); each bit compares two
  fixed points 5-25 % of a side apart. 256 bits give headroom that 64-bit pHash lacks.
* **Flips**: every window is also hashed mirrored (stored parts), so a flipped copy's full frame equals
  a stored part. (A canonical-orientation hash was tried first: it failed when the left-right asymmetry
  of a crop changed sign, a catastrophic ~50 % bit error; storing both orientations costs ~1 bit of T.)
* **Borders**: uniform letterbox / padding rows and columns are trimmed before hashing (on both sides of
  a comparison), so a 20 px black border does not shift the frame.
* **Crops (multi-part)**: besides the full frame, every fingerprint carries hashes of 80 windows of
  the frame (squares of side 0.92, 0.84, 0.77, 0.7 and 1 x 0.84 / 1 x 0.7 strips on offset grids with
  steps <= 0.1), each also mirrored, plus the full frame rotated +-3 deg: 166 parts (5.3 kB per image). A leaked crop that
  keeps >= 70 % of the area looks like one of those windows. The distance that decides a match is
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
THRESHOLD = 39
# Bumped when hashes change meaning (stored registry rows and cached audit matches must be redone).
ALGORITHM = "synthguard-fp/1"

# Windows as (x0, y0, w, h) fractions of the (border-trimmed) frame; row 0 is the full frame.
def _grid(w: float, h: float, steps: int = 3) -> list[tuple[float, float, float, float]]:
    xs = [0.0] if w >= 1.0 else [i * (1.0 - w) / (steps - 1) for i in range(steps)]
    ys = [0.0] if h >= 1.0 else [i * (1.0 - h) / (steps - 1) for i in range(steps)]
    return [(x, y, w, h) for y in ys for x in xs]


# 81 windows: a crop keeping >= 70 % of the area, anywhere in the frame, is within ~2 % of the frame
# side of one of them (the hash tolerates that shift: a 2 % shift flips ~6 % of the bits). Measured:
# 119 windows (finer grids, 0.92 x 0.77 rectangles) lowered T from 39 to 36 and off-centre crop
# recall from 91 % to 85 %, so more windows is not better.
WINDOWS: tuple[tuple[float, float, float, float], ...] = tuple(
    [(0.0, 0.0, 1.0, 1.0)]
    + _grid(0.92, 0.92, 3) + _grid(0.84, 0.84, 5) + _grid(0.77, 0.77, 4) + _grid(0.70, 0.70, 4)
    + _grid(1.0, 0.84) + _grid(0.84, 1.0) + _grid(1.0, 0.70, 4) + _grid(0.70, 1.0, 4)
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


def _make_pairs(n: int = HASH_BITS, g: int = 32, rmin: float = 0.05, rmax: float = 0.25):
    """Fixed point pairs on the g x g thumbnail (deterministic LCG, so hashes never change with numpy)."""
    state = 0x5EED1234

    def rnd() -> float:
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (state >> 11) / float(1 << 53)

    out: list[tuple[int, int, int, int]] = []
    lo, hi = 2, g - 3
    while len(out) < n:
        ax, ay = lo + int(rnd() * (hi - lo + 1)), lo + int(rnd() * (hi - lo + 1))
        ang, r = rnd() * 2 * math.pi, (rmin + (rmax - rmin) * rnd()) * g
        bx, by = int(round(ax + r * math.cos(ang))), int(round(ay + r * math.sin(ang)))
        if lo <= bx <= hi and lo <= by <= hi and (ax, ay) != (bx, by):
            out.append((ay * g + ax, by * g + bx))
    a = np.array(out, dtype=np.intp)
    return a[:, 0], a[:, 1]


_THUMB = 32
_PA, _PB = _make_pairs(g=_THUMB)


def _dog(t: np.ndarray) -> np.ndarray:
    """Band-pass (difference of Gaussians) of a thumbnail: drops global gradients shared by many photos."""
    import cv2

    return cv2.GaussianBlur(t, (0, 0), _SIGMA) - cv2.GaussianBlur(t, (0, 0), _SIGMA_BG)


def _bits(f: np.ndarray) -> np.ndarray:
    """256 bits from a band-passed g x g thumbnail: comparisons of fixed point pairs 5-25 % of a side apart.

    Why not a DCT sign hash: measured on the corpus, a 2 % shift of the window flips ~25 % of a 256-bit
    DCT hash (16 x 16 block) but ~6 % of these bits, and the crop design depends on shift tolerance.
    Comparisons are invariant to any monotonic tone change (gamma, brightness, grayscale).
    """
    v = f.ravel()
    return np.packbits(v[_PA] > v[_PB])


def hash_parts(rgb: np.ndarray, windows: Sequence[tuple[float, float, float, float]] = WINDOWS, *,
               mirrored: bool = True, rotations: Sequence[float] = ROTATIONS) -> np.ndarray:
    """The part hashes of an RGB (or grey) array as an N x 32 uint8 array; row 0 is the full frame.

    Rows 0..K-1 are the windows; with ``mirrored`` rows K..2K-1 are the same windows of the mirror
    image (the flip of a band-passed thumbnail is the band-passed thumbnail of the flipped window, so
    each costs one extra gather), so a flipped copy's full frame equals a stored part with no
    orientation guess that could go wrong. Then the full frame rotated by each of ``rotations``
    (and mirrored).
    """
    import cv2

    w = _work_image(rgb)
    k_n = len(windows)
    rows: list[np.ndarray] = [np.empty(0, np.uint8)] * (2 * k_n if mirrored else k_n)
    for k, (x0, y0, ww, hh) in enumerate(windows):
        xa, ya = int(round(x0 * _WORK)), int(round(y0 * _WORK))
        xb, yb = min(_WORK, int(round((x0 + ww) * _WORK))), min(_WORK, int(round((y0 + hh) * _WORK)))
        f = _dog(cv2.resize(w[ya:yb, xa:xb], (_THUMB, _THUMB), interpolation=cv2.INTER_AREA))
        rows[k] = _bits(f)
        if mirrored:
            rows[k_n + k] = _bits(np.ascontiguousarray(f[:, ::-1]))
    c = (_WORK - 1) / 2.0
    for ang in rotations:
        m = cv2.getRotationMatrix2D((c, c), float(ang), 1.0)
        r = cv2.warpAffine(w, m, (_WORK, _WORK), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0)
        f = _dog(cv2.resize(r, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA))
        rows.append(_bits(f))
        if mirrored:
            rows.append(_bits(np.ascontiguousarray(f[:, ::-1])))
    return np.stack(rows)


def full_hash(rgb: np.ndarray) -> np.ndarray:
    """The 32-byte full-frame hash alone (what a query needs when only the index is searched)."""
    return hash_parts(rgb, WINDOWS[:1], mirrored=False, rotations=())[0]


# --------------------------------------------------------------------------------------- value
# False-match rate between distinct corpus images at each distance (multi-part distance), used for
# the calibrated confidence; see bench/bench_fingerprint.py --calibrate. Index = distance.
_FPR_AT: tuple[float, ...] = (
    7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07,
    7.22e-07, 7.22e-07, 7.22e-07, 7.22e-07, 1.44e-06, 1.44e-06, 2.17e-06, 5.05e-06, 5.05e-06, 5.05e-06,
    6.5e-06, 7.22e-06, 1.01e-05, 1.01e-05, 1.16e-05, 1.23e-05, 1.37e-05, 1.59e-05, 1.88e-05, 2.17e-05,
    2.6e-05, 2.96e-05, 3.39e-05, 3.83e-05, 5.13e-05, 5.78e-05, 6.93e-05, 7.8e-05, 8.52e-05, 9.39e-05,
    0.000105, 0.000123, 0.000144, 0.000171, 0.000209, 0.000243, 0.000286, 0.000316, 0.00037, 0.000433,
    0.000504, 0.000587, 0.000673, 0.000778, 0.000897, 0.00102, 0.00116, 0.00133, 0.00154, 0.00173,
    0.00201, 0.00232, 0.00268, 0.00309, 0.00358, 0.00412, 0.00478, 0.00558, 0.00652, 0.00753, 0.00876,
    0.0102, 0.0119, 0.014, 0.0164, 0.0194, 0.023, 0.0273, 0.0325, 0.0389, 0.0466, 0.0559, 0.0674,
    0.0812, 0.0976, 0.117, 0.141, 0.168, 0.2, 0.238, 0.28, 0.328, 0.38, 0.437, 0.498, 0.561,
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
