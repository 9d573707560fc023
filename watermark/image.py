"""Embed and detect the watermark on pixels: a keyed, self-referencing periodic tile.

Why a periodic tile: resizing, cropping, rotation, flips and aspect changes all map a periodic
pattern onto another periodic pattern, whose lattice the detector can *measure* from the image
(autocorrelation peaks) instead of guessing. Once the lattice is known, every period is resampled
onto one canonical tile and averaged ("folded"), which also piles up the signal of all periods.
The remaining ambiguity (which corner is the origin, which of the 8 flips/quarter turns) is
resolved by correlating the folded tile with a keyed sync pattern; the rest of the tile carries
the convolutionally coded payload as keyed +-1 chips (see ``codec.py``, soft Viterbi decoding).
Before any search, the detector tries the lattice the embedder itself used for a picture of that
size (the common case: the picture was only resized, flipped or re-encoded), which is fast and
needs no lattice estimate.

Geometry: the tile is ``CELLS x CELLS`` cells, band-limited (flat spectrum up to the cell
Nyquist: high frequencies meet far less picture interference than low ones), and repeats
``PERIODS`` times across the short side of the image at embedding time, whatever its resolution,
so the pattern lives in a resolution-normalised domain. Strength follows local luminance texture
(perceptual masking) with a low floor on flat areas and less energy in highlights; the whole
image is capped at an RMS that keeps PSNR above 40 dB. The detector front end is a narrow
prediction filter (pixel minus its Gaussian-blurred neighbourhood, sigma 1 px) with local-energy
normalisation, which rejects far more picture content than a wide high-pass.
"""
from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np

from . import codec

CELLS = 32            # tile is CELLS x CELLS chips
FOLD = 64             # samples per tile side when folding at detection
TILE_R = 128          # canonical samples per tile side when embedding
PERIODS = 5.0         # tile periods across the short side at embedding
ROLL_OFF = 1e6        # Gaussian spectral roll-off of the chips, cycles per tile (1e6: flat up to the cell Nyquist)
SYNC_CELLS = 240      # cells of the tile carrying the keyed sync pattern (the rest carry coded bits)
MIN_EMBED_SHORT = 256
# Below this short side no mark is read, and none is searched for: a whole marked picture shrunk
# to S px carries 5 x 32 = 160 chip cells across S (2.5 cells per pixel at 64 px), far beyond
# what the pixels can resolve. Measured on 7 marked 512 px pictures shrunk to S: read 0/7 at
# S = 56, 64 and 68; 1/7 at 72 and 76; 2/7 at 78-96; 5/7 at 112; 6/7 at 128. (A crop of a bigger
# picture has a longer period relative to its size: even less readable at the same size.)
MIN_DETECT_SHORT = 64
DET_SHORT = 256       # detection works on a copy whose short side is at most this
# Strength (luminance levels): floor on flat areas, gain on local std, ceiling, global RMS cap.
A_FLOOR = 1.0
A_GAIN = 0.16
A_MAX = 3.8
RMS_CAP = 2.4
HIGHLIGHT_END = 240.0  # mark strength ramps down from HIGHLIGHT_END - 40 to HIGHLIGHT_END - 10
HIGHLIGHT_RENORM = 1.5
N_LATTICES = 8        # measured lattice candidates folded at detection
PEAKS_PER_ASPECT = 2  # comb-search maxima kept per aspect ratio
SPEC_SCALES = (0.95, 1.35, 0.005)  # spectral comb: period / own period (from, to, step)
SPEC_COARSE_KEEP = 4  # spectral comb: coarse maxima refined on the fine grid
SPEC_ROT, SPEC_ROT_STEP = 8.0, 0.25  # spectral comb: rotation range and step, degrees
# Wide-rotation stage (only after every other stage failed): the spectral comb over rotations
# beyond SPEC_ROT up to 45 deg (a square tile repeats every 90 deg), periods from 0.50x to 1.40x
# the own one: rotating with a grown canvas makes the short side h' = w sin + h cos, so the period
# shrinks relative to it (0.71x for a square picture at 45 deg, 0.61x for 4:3, 0.51x for 16:9).
WIDE_ROT = 45.0
WIDE_SCALES = (0.50, 1.40)
WIDE_KMAX = 12        # its coarse comb uses only the reciprocal points with |k| <= this (2.5x cheaper)
WIDE_COARSE_KEEP = 6  # coarse maxima refined on the fine grid
WIDE_N = 3            # best refined lattices folded (when they pass WIDE_GATE)
WIDE_GATE = 1.15      # fine comb score (mean flattened power on the lattice's lines) below which
                      # nothing is folded: a saving only, the decode decides. Measured: <= 1.13 on
                      # 47 of 48 unmarked cases (a periodic picture: 1.45); >= 1.32 on every rotated,
                      # cropped, rescaled or compressed marked picture that decodes
N_DECODE = 6          # measured (lattice, alignment) candidates decoded, best sync correlation first
N_DIHEDRAL = 3        # (flip/turn, shift) candidates decoded per lattice
INFORMED = True
INFORMED_MARGIN = 1.6
INFORMED_GROWTH = 1.2   # informed embedding may raise the RMS by at most this factor
SYNC_GAIN = 1.5
HP_SIGMA = 1.0        # detector front end: high-pass (prediction) width, pixels at detection scale
ENV_SIGMA = 1.5       # local-energy normalisation window
ENV_EPS = 0.7
FLAT_SIGMA = 3.0      # spectral flattening window, FFT bins (of the 2x padded spectrum)
BAND_MAX = 0.40       # cycles per pixel kept for lattice estimation
P_MIN, P_MAX = 0.13, 0.50   # period search range, fraction of the short side at detection
ROT_MAX = 8.0         # degrees searched either way (flips/quarter turns come free)
ASPECTS = (1.0, 1.08, 1 / 1.08, 1.16, 1 / 1.16, 1.25, 1 / 1.25, 1.34, 1 / 1.34, 1.44, 1 / 1.44)
GAIN_MIN, GAIN_MAX = 0.3, 3.0
# Symmetric shears searched by the comb (square tile; see _family_bases), over rotations up to SHEAR_ROT
# degrees either way: a pure shear s needs a rotation of s / 2 (2.3 deg at 0.08), the rest is margin
# for a rotation on top (and halves the cost of these families).
SHEARS = (0.025, -0.025, 0.05, -0.05)
SHEAR_ROT = 4.0
REFINE_STEPS = ((3, 1),)  # peak fit of the comb's maxima: (peak order, search radius in pixels) steps
# Perspective: the central sub-window (SUB_FRAC of each side) is folded on its own lattice, fitted to
# its own autocorrelation from the own lattices and the SUB_SEEDS best of the whole picture, coarse to
# fine (SUB_STEPS, see _refine_lattices).
SUB_FRAC = 0.5
SUB_SEEDS = 5
SUB_STEPS = ((1, 3), (2, 2), (3, 1))


_SCRATCH = threading.local()


def _scratch(slot: int, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """A reusable per-thread work array. Detection makes many short-lived ~1 MB arrays; fresh ones
    cost page faults (measured: more than the arithmetic), reused ones do not. Never returned to a
    caller. Kept per thread: typically ~3-6 MB (at most ~10 MB for the largest fold grid)."""
    bufs = getattr(_SCRATCH, "bufs", None)
    if bufs is None:
        bufs = _SCRATCH.bufs = {}
    n = math.prod(shape)
    b = bufs.get((slot, dtype))
    if b is None or b.size < n:
        b = bufs[(slot, dtype)] = np.empty(max(n, 1), dtype)
    return b[:n].reshape(shape)


@dataclass(frozen=True)
class _KeyPattern:
    payload_cells: np.ndarray   # flat cell indices carrying payload chips
    payload_chips: np.ndarray   # their chips (chips[payload_cells])
    bit_of_cell: np.ndarray     # coded-bit index for each payload cell
    chips: np.ndarray           # +-1 per cell (CELLS*CELLS)
    sync_cells: np.ndarray
    sync_ccs: tuple[np.ndarray, ...]  # per flip/turn g: FFT (OpenCV's packed CCS layout) of the
                                      # template turned back by g (see _candidates)
    sync_dc: np.ndarray         # their DC terms (8,)
    sync_power: np.ndarray      # (8, FOLD*FOLD): sum(sync_power[g] * ccs(f)**2) = sum over k != 0 of
                                # |F(k) T_g(k)|^2 (Parseval: the variance of f's correlation with T_g)


@lru_cache(maxsize=4)
def _filter(n: int) -> np.ndarray:
    """Spectral roll-off on an n x n FFT grid (frequencies in cycles per tile)."""
    f = np.fft.fftfreq(n) * n
    r2 = f[:, None] ** 2 + f[None, :] ** 2
    h = np.exp(-r2 / ROLL_OFF**2)
    out = np.abs(f) > CELLS / 2 - 0.5
    h[out, :] = 0.0
    h[:, out] = 0.0
    return h


def _synth(cellvals: np.ndarray, res: int) -> np.ndarray:
    """Band-limited periodic interpolation of CELLS x CELLS values onto a res x res tile."""
    spec = np.fft.fft2(cellvals) * _filter(CELLS)
    big = np.zeros((res, res), dtype=complex)
    h = CELLS // 2
    big[:h, :h], big[:h, -h:], big[-h:, :h], big[-h:, -h:] = spec[:h, :h], spec[:h, -h:], spec[-h:, :h], spec[-h:, -h:]
    return np.fft.ifft2(big).real * (res * res) / (CELLS * CELLS)


@lru_cache(maxsize=16)
def _pattern(key: bytes) -> _KeyPattern:
    seed = hashlib.sha256(b"synthguard-wm-pattern|" + key).digest()
    rng = np.random.default_rng(np.frombuffer(seed, dtype=np.uint32))
    n = CELLS * CELLS
    perm = rng.permutation(n)
    chips = rng.choice(np.array([-1.0, 1.0]), n)
    nbits = codec.code_bits()
    npay = n - SYNC_CELLS
    payload_cells, sync_cells = perm[:npay], perm[npay:]
    sync_vals = np.zeros(n)
    sync_vals[sync_cells] = chips[sync_cells]
    sync = _synth(sync_vals.reshape(CELLS, CELLS), FOLD)
    # The template turned back by each flip/turn g: sync_back[_DIHEDRAL[g]] = sync.
    backs = np.empty((len(_DIHEDRAL), FOLD * FOLD))
    backs[np.arange(len(_DIHEDRAL))[:, None], _DIHEDRAL.reshape(len(_DIHEDRAL), -1)] = sync.reshape(-1)
    ccs = tuple(cv2.dft(b.reshape(FOLD, FOLD)) for b in backs)
    return _KeyPattern(payload_cells, chips[payload_cells], np.arange(npay) % nbits, chips, sync_cells,
                       ccs, np.array([c[0, 0] for c in ccs]),
                       np.stack([_ccs_power_weights(c) for c in ccs]))


def _ccs_power_weights(t: np.ndarray) -> np.ndarray:
    """Weights w (flat) on a FOLD x FOLD spectrum F in OpenCV's packed CCS layout such that
    ``sum(w * F**2)`` is the sum over all frequencies k != 0 of ``|F(k)|^2 |T(k)|^2``, for the
    CCS spectrum ``t`` of T. Each complex pair (re, im) of CCS stands for k and -k: weight
    2 |T(k)|^2 on both; the four real entries (DC, Nyquist) stand for themselves."""
    pair = np.empty_like(t)                  # |T(k)|^2 of the pair each entry belongs to
    p = t[:, 1:-1:2] ** 2 + t[:, 2:-1:2] ** 2  # columns 1..FOLD/2-1: (re, im) side by side
    pair[:, 1:-1:2], pair[:, 2:-1:2] = p, p
    for c in (0, -1):                         # columns 0 and FOLD/2: (re, im) down the rows
        p = t[1:-1:2, c] ** 2 + t[2:-1:2, c] ** 2
        pair[1:-1:2, c], pair[2:-1:2, c] = p, p
        pair[0, c], pair[-1, c] = t[0, c] ** 2, t[-1, c] ** 2
    w = 2.0 * pair
    for c in (0, -1):
        w[0, c], w[-1, c] = pair[0, c], pair[-1, c]
    w[0, 0] = 0.0                             # DC: the mean
    return w.reshape(-1)


def _tile(key: bytes, bits: np.ndarray, gains: np.ndarray | None = None, sync_gain: float = 1.0) -> np.ndarray:
    """Canonical TILE_R x TILE_R tile for +-1 ``bits``; ``gains`` scale each coded bit's chips."""
    pat = _pattern(key)
    amp = bits if gains is None else bits * gains
    vals = np.zeros(CELLS * CELLS)
    vals[pat.sync_cells] = pat.chips[pat.sync_cells] * sync_gain
    vals[pat.payload_cells] = pat.chips[pat.payload_cells] * amp[pat.bit_of_cell]
    return _synth(vals.reshape(CELLS, CELLS), TILE_R).astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as float32 (the channel the mark lives in)."""
    y = rgb[..., 0] * np.float32(0.299)   # channel by channel: an 8K picture stays light
    y += rgb[..., 1] * np.float32(0.587)
    y += rgb[..., 2] * np.float32(0.114)
    return y


def _mask(y: np.ndarray, wc: int, hc: int) -> np.ndarray:
    """Perceptual strength map on the canonical grid: follows local texture, low floor on flat areas."""
    yc = cv2.resize(y, (wc, hc), interpolation=cv2.INTER_AREA)
    k = (9, 9)
    m = cv2.blur(yc, k)
    sd = np.sqrt(np.maximum(cv2.blur(yc * yc, k) - m * m, 0.0))
    alpha = np.clip(A_FLOOR + A_GAIN * sd, A_FLOOR, A_MAX)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 2.0)
    # Leave headroom near black and white so clipping does not eat the mark or band it, and move
    # energy out of highlights (> ~200), which any brightness/contrast boost clips first, into the
    # mid-tones and shadows (the total is restored, up to HIGHLIGHT_RENORM).
    base = alpha * np.clip(np.minimum(m, 255.0 - m) / 12.0, 0.25, 1.0)
    tone = np.clip(np.minimum(m / 12.0, (HIGHLIGHT_END - m) / 40.0), 0.25, 1.0)
    shifted = alpha * tone
    renorm = np.sqrt(np.mean(base**2) / max(float(np.mean(shifted**2)), 1e-9))
    return shifted * float(np.clip(renorm, 1.0, HIGHLIGHT_RENORM))


def _canonical_delta(tile: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The tiled mark times the strength map, on the canonical grid."""
    hc, wc = alpha.shape
    reps = (hc // TILE_R + 1, wc // TILE_R + 1)
    return np.tile(tile, reps)[:hc, :wc] * alpha


def _resize_delta(delta_c: np.ndarray, w: int, h: int) -> np.ndarray:
    interp = cv2.INTER_CUBIC if w > delta_c.shape[1] else cv2.INTER_AREA
    return cv2.resize(delta_c, (w, h), interpolation=interp)


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))


def _embed_geometry(h: int, w: int) -> tuple[int, int, int, int, float, float]:
    """Canonical size, detection size, and the tile origin/period seen by the detector unattacked."""
    short = min(h, w)
    scale = PERIODS * TILE_R / short
    wc, hc = max(1, round(w * scale)), max(1, round(h * scale))
    ds = min(1.0, DET_SHORT / short)
    wd, hd = max(1, round(w * ds)), max(1, round(h * ds))
    # cv2.resize maps pixel centres; the tile origin sits on canonical pixel centre 0.
    origin = 0.5 * (wd / wc) - 0.5
    period = TILE_R * wd / wc
    return wc, hc, wd, hd, origin, period


def embed_rgb(rgb: np.ndarray, payload: bytes, key: bytes) -> np.ndarray:
    """HxWx3 uint8 RGB -> marked copy. The residual is built on a canonical grid and upsampled.

    Informed embedding: the detector's own front end is run on the host at the known geometry to
    measure how much the picture itself pushes every coded bit (host interference); each bit's
    chips then get the gain that brings it to a common margin, instead of a blind equal share.
    """
    h, w = rgb.shape[:2]
    short = min(h, w)
    if short < MIN_EMBED_SHORT:
        raise ValueError(f"image is {w}x{h}; embedding needs at least {MIN_EMBED_SHORT} px on the short side")
    pat = _pattern(key)
    bits = codec.encode(bytes(payload), key).astype(np.float64) * 2 - 1
    wc, hc, wd, hd, origin, period = _embed_geometry(h, w)
    y = luminance(rgb)
    alpha = _mask(y, wc, hc)
    yd = y if y.shape == (hd, wd) else cv2.resize(y, (wd, hd), interpolation=cv2.INTER_AREA)
    del y
    base = _tile(key, bits, sync_gain=SYNC_GAIN)
    norm = 1.0 / float(np.sqrt(np.mean(base**2)))
    delta_c = _canonical_delta(base * norm, alpha)
    if INFORMED:
        # Everything at the detector's resolution (the front end is linear up to the whitening).
        v1, v2 = np.array([period, 0.0]), np.array([0.0, period])
        o = np.array([origin, origin])
        host = _demod(np.fft.fft2(_fold(_whiten(yd), v1, v2, o)), 0.0, 0.0, pat)
        marked_d = yd + _resize_delta(delta_c, wd, hd)
        marked = _demod(np.fft.fft2(_fold(_whiten(marked_d), v1, v2, o)), 0.0, 0.0, pat)
        gain = (marked - host) * bits
        g = float(np.median(gain))
        if g > 0:
            target = INFORMED_MARGIN * g
            gains = np.clip((target - bits * host) / np.maximum(gain, 0.2 * g), GAIN_MIN, GAIN_MAX)
            blind_rms = _rms(delta_c)
            delta_c = _canonical_delta(_tile(key, bits, gains, SYNC_GAIN) * norm, alpha)
            # Informed gains re-shape the energy; they may raise it only a little (flat pictures,
            # which have no interference to fight, must not get a stronger, visible grain).
            grown = _rms(delta_c)
            if grown > INFORMED_GROWTH * blind_rms:
                delta_c *= INFORMED_GROWTH * blind_rms / grown
    delta = _resize_delta(delta_c, w, h)
    rms = _rms(delta)
    if rms > RMS_CAP:
        delta *= RMS_CAP / rms
    # rgb is integer, so rint(rgb + delta) == rgb + rint(delta): int16 keeps 8K pictures light.
    d16 = np.rint(delta).astype(np.int16)[..., None]
    return np.clip(rgb.astype(np.int16) + d16, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------
def _whiten(y: np.ndarray) -> np.ndarray:
    """High-pass, local-energy normalisation, and zero weight on clipped (saturated) pixels.

    Clipped areas (a brightness boost, blown highlights, crushed blacks) carry no mark, and their
    borders are strong edges that would only add picture interference to the soft bits.
    """
    hp = y - cv2.GaussianBlur(y, (0, 0), HP_SIGMA)
    env = np.sqrt(cv2.GaussianBlur(hp * hp, (0, 0), ENV_SIGMA))
    w = hp / (env + ENV_EPS)
    ym = cv2.blur(y, (3, 3))  # clipped *areas*, not single noisy pixels
    sat = ((ym >= 251.0) | (ym <= 3.0)).astype(np.uint8)
    if sat.any():
        w[cv2.dilate(sat, np.ones((5, 5), np.uint8)) > 0] = 0.0
    return w.astype(np.float32)


def _flat_spectrum(w: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Power spectrum (2x zero-padded, centred) divided by its local average, in the mark's band.

    The periodic mark puts sharp lines on its reciprocal lattice while a picture has a smooth
    spectrum; dividing the power by its local average makes the lines stand out (~1 elsewhere).
    """
    h, wd = w.shape
    hp, wp = cv2.getOptimalDFTSize(2 * h), cv2.getOptimalDFTSize(2 * wd)
    # OpenCV's FFT (several times faster than numpy's at these sizes), float32 like the result;
    # told that only the first h rows are not padding, it skips the other rows' transforms.
    spec = cv2.dft(cv2.copyMakeBorder(np.ascontiguousarray(w, dtype=np.float32), 0, hp - h, 0, wp - wd,
                                      cv2.BORDER_CONSTANT, value=0), flags=cv2.DFT_COMPLEX_OUTPUT, nonzeroRows=h)
    power = np.square(spec[..., 0])
    power += np.square(spec[..., 1])
    power = np.fft.fftshift(power)
    # flat = power / (smooth + eps) * band, in place (each of these arrays is ~1.5 MB)
    flat = cv2.GaussianBlur(power, (0, 0), FLAT_SIGMA)
    flat += 1e-6 * float(flat.mean())
    flat += 1e-12
    np.divide(power, flat, out=flat)
    flat *= _band(hp, wp)
    return flat, hp, wp


@lru_cache(maxsize=16)
def _band(hp: int, wp: int) -> np.ndarray:
    fy = (np.arange(hp) - hp // 2) / hp
    fx = (np.arange(wp) - wp // 2) / wp
    fr = np.hypot(fy[:, None], fx[None, :])
    return ((fr > 0.02) & (fr < BAND_MAX)).astype(np.float32)


def _autocorr(w: np.ndarray, flat: np.ndarray, hp: int, wp: int) -> tuple[np.ndarray, int, int]:
    """Autocorrelation of the spectrally flattened image, centred, normalised to 1 at lag 0.

    Flattening makes the lattice peaks dominate textured images whose raw autocorrelation is
    mostly content.
    """
    # flat is real, so Re(ifft2(flat)) = Re(fft2(flat)) / N (the scale cancels in the normalisation).
    ac = np.fft.fftshift(cv2.dft(np.ascontiguousarray(np.fft.ifftshift(flat), dtype=np.float32),
                                 flags=cv2.DFT_COMPLEX_OUTPUT)[..., 0])
    ac /= ac[hp // 2, wp // 2] + 1e-9
    ac[_low_overlap(*w.shape, hp, wp)] = 0.0
    return ac, hp // 2, wp // 2


@lru_cache(maxsize=16)
def _low_overlap(h: int, wd: int, hp: int, wp: int) -> np.ndarray:
    """Lags (centred) at which less than 30 % of the picture overlaps its shifted copy."""
    ones = np.fft.rfft2(np.ones((h, wd)), (hp, wp))
    overlap = np.fft.fftshift(np.fft.irfft2(np.abs(ones) ** 2, (hp, wp))) / (h * wd)
    return overlap < 0.3


_KK = np.array([(k1, k2) for k1 in range(-CELLS // 2, CELLS // 2 + 1) for k2 in range(0, CELLS // 2 + 1)
                if k2 > 0 or k1 > 0], dtype=np.float32)


def _spectral_comb(hp: int, wp: int, periods: np.ndarray, thetas: np.ndarray,
                   kk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spectral comb over square lattices as remap maps into the blurred spectra
    (:func:`_spectral_blurs`): map x, map y (reciprocal points ``kk`` x hypotheses) and the
    in-band points per hypothesis. The hypotheses are G grids of periods x
    thetas (``periods`` G x P, ``thetas`` G x T), in (grid, period, theta) order. Out-of-band points
    are mapped outside the spectrum, where remap returns its zero border. Laid out point by point,
    neighbouring hypotheses sample neighbouring frequencies (remap ~2x faster than hypothesis by
    hypothesis)."""
    fy, fx, in_band = _reciprocal(periods, thetas, kk)
    y0, x0 = _band_origin(hp, wp)
    # Bins of the centred spectrum, shifted to the blurred part: exact in float32 (integer shifts
    # towards 0).
    mx = fx * wp
    mx += wp // 2
    mx -= x0
    np.copyto(mx, np.float32(-1e4), where=~in_band)   # far outside along x: remap's zero border
    my = fy * hp
    my += hp // 2
    my -= y0
    cnt = np.repeat(np.maximum(in_band.sum(-1), 1).astype(np.float32), thetas.shape[-1])
    return (np.ascontiguousarray(mx.reshape(-1, len(kk)).T), np.ascontiguousarray(my.reshape(-1, len(kk)).T), cnt)


def _comb_scores(fl: np.ndarray, comb: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Mean flattened power over each hypothesis' in-band reciprocal points (:func:`_spectral_comb`),
    summed hypothesis by hypothesis (numpy's pairwise sum along a contiguous row)."""
    mx, my, cnt = comb
    vals = cv2.remap(fl, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.ascontiguousarray(vals.T).sum(-1) / cnt


def _reciprocal(periods: np.ndarray, thetas: np.ndarray, kk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reciprocal points ``kk`` of square lattices of each period rotated by each theta, for G
    grids (``periods`` G x P, ``thetas`` G x T), in cycles per pixel: (fy, fx) of shape
    (G, periods, thetas, points), and whether each lies in the mark's band (G, periods, 1, points)."""
    per = periods[:, :, None, None]
    c, sn = np.cos(thetas)[:, None, :, None], np.sin(thetas)[:, None, :, None]
    k1, k2 = kk[:, 0], kk[:, 1]
    fy = (k1 * c - k2 * sn) / per
    fx = (k1 * sn + k2 * c) / per
    fr = np.sqrt(k1 * k1 + k2 * k2) / per
    return fy, fx, (fr > 0.02) & (fr < BAND_MAX)


def _parabola(v: np.ndarray, i: int) -> float:
    """Sub-sample offset of the maximum of v at index i (0 at the borders)."""
    if not 0 < i < len(v) - 1:
        return 0.0
    d = v[i - 1] - 2 * v[i] + v[i + 1]
    return 0.0 if d >= 0 else float(np.clip(0.5 * (v[i - 1] - v[i + 1]) / d, -0.5, 0.5))


def _band_origin(hp: int, wp: int) -> tuple[int, int]:
    """Top-left corner (row, column) of the part of the centred hp x wp spectrum that the spectral
    combs read (:func:`_spectral_blurs`): the mark's band, |f| < BAND_MAX, plus 10 bins (the
    bilinear neighbour and the coarse blur's support, 17 taps); the part ends symmetrically."""
    return hp // 2 - math.ceil(BAND_MAX * hp) - 10, wp // 2 - math.ceil(BAND_MAX * wp) - 10


def _spectral_blurs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flattened spectrum sharpened for the fine comb and blurred for the coarse one, both only
    on the part the combs read (~70 % of it; from :func:`_band_origin`, the same values)."""
    y0, x0 = _band_origin(*flat.shape)
    part = flat[y0: flat.shape[0] - y0, x0: flat.shape[1] - x0]
    return cv2.GaussianBlur(part, (0, 0), 0.7), cv2.GaussianBlur(part, (0, 0), 2.0)


def _spectral_lattices(spectrum: tuple[np.ndarray, int, int], blurred: tuple[np.ndarray, np.ndarray], p0: float,
                       n: int = 2, *, wide: bool = False) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Square lattices near the own period found by a comb over the mark's *spectral lines*:
    ``(fine comb score, v1, v2)``, best first.

    Rotation and cropping keep the tile square and change its period by a known range (a crop
    keeping >= 55 % of the area enlarges it, relative to the short side, by at most 1.35x). For
    every (scale, rotation) hypothesis the flattened power is averaged over the reciprocal
    lattice points of the tile's band: hundreds of sharp lines instead of the two dozen lags of
    the autocorrelation comb, which finds the lattice on textures that drown the latter.
    Coarse to fine: a blurred spectrum on a coarse grid, then the sharp one on a fine grid
    around the best coarse hypotheses. ``wide``: the coarse grid of the wide-rotation stage
    (rotations beyond SPEC_ROT, WIDE_SCALES; :func:`_wide_coarse_maps`) instead of +-SPEC_ROT.
    """
    _flat, hp, wp = spectrum
    fine, coarse = blurred
    lo, hi, step = SPEC_SCALES
    if wide:
        periods, thetas, mx, my, cnt = _wide_coarse_maps(hp, wp, p0)
        vals = cv2.remap(coarse, mx, my, dst=_scratch(5, mx.shape), interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        score = (vals.sum(0) / cnt).reshape(len(periods), len(thetas))
        keep = WIDE_COARSE_KEEP
    else:
        periods, thetas, comb = _near_coarse_comb(hp, wp, p0)
        score = _comb_scores(coarse, comb).reshape(len(periods), len(thetas))
        keep = SPEC_COARSE_KEEP
    picks = []
    for _ in range(keep):
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        picks.append((i, j))
        score[max(0, i - 1): i + 2, max(0, j - 1): j + 2] = -np.inf
    # The fine grids around all coarse maxima, in one comb.
    pc, tc = periods[[i for i, _ in picks]][:, None], thetas[[j for _, j in picks]][:, None]
    pf = (pc * (1 + step * np.arange(-3, 4) / (pc / p0))).astype(np.float32)
    tf = (tc + np.deg2rad(SPEC_ROT_STEP) * np.arange(-3, 4)).astype(np.float32)
    fine_scores = _comb_scores(fine, _spectral_comb(hp, wp, pf, tf, _KK)).reshape(keep, pf.shape[1], tf.shape[1])
    out: list[tuple[float, float, float]] = []
    for pg, tg, sf in zip(pf, tf, fine_scores):
        a, b = np.unravel_index(int(np.argmax(sf)), sf.shape)
        # Sub-step: parabola through the neighbours (the fold needs the period to ~0.2 %).
        pa = pg[a] + _parabola(sf[:, b], a) * (pg[1] - pg[0])
        tb = tg[b] + _parabola(sf[a, :], b) * (tg[1] - tg[0])
        out.append((float(sf[a, b]), float(pa), float(tb)))
    out.sort(key=lambda t: -t[0])
    # Real-space basis (dy, dx) dual to the reciprocal rows used in _comb_scores.
    return [(sc, np.array([p * np.cos(t), p * np.sin(t)]), np.array([-p * np.sin(t), p * np.cos(t)]))
            for sc, p, t in out[:n]]


@lru_cache(maxsize=4)
def _near_coarse_comb(hp: int, wp: int, p0: float) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """The coarse comb around the own period (periods, thetas, :func:`_spectral_comb`): it depends
    on the detection shape only, so it is built once per shape (~1.5 MB) instead of per picture."""
    lo, hi, step = SPEC_SCALES
    periods = (p0 * np.arange(lo, hi + 1e-9, 4 * step)).astype(np.float32)
    thetas = np.deg2rad(np.arange(-SPEC_ROT, SPEC_ROT + 1e-9, 4 * SPEC_ROT_STEP)).astype(np.float32)
    return periods, thetas, _spectral_comb(hp, wp, periods[None], thetas[None], _KK)


@lru_cache(maxsize=4)
def _wide_coarse_maps(hp: int, wp: int, p0: float):
    """The wide-rotation stage's coarse comb: (periods, thetas, :func:`_spectral_comb`'s map x, map y
    and in-band points per hypothesis), built once per detection shape (~6 MB)."""
    lo, hi = WIDE_SCALES
    periods = (p0 * np.arange(lo, hi + 1e-9, 4 * SPEC_SCALES[2])).astype(np.float32)
    thetas = np.deg2rad(np.r_[np.arange(-WIDE_ROT, -SPEC_ROT - 0.5, 1.0),
                              np.arange(SPEC_ROT + 1.0, WIDE_ROT + 1e-9, 1.0)]).astype(np.float32)
    mx, my, cnt = _spectral_comb(hp, wp, periods[None], thetas[None], _KK[(_KK ** 2).sum(1) <= WIDE_KMAX ** 2])
    return periods, thetas, mx, my, cnt


def _near(a: np.ndarray, b: np.ndarray, atol: float) -> bool:
    """``np.allclose(a, b, atol=atol)`` for 2-vectors, without its per-call overhead."""
    return (abs(a[0] - b[0]) <= atol + 1e-5 * abs(b[0])) and (abs(a[1] - b[1]) <= atol + 1e-5 * abs(b[1]))


def _reduce(v1: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lagrange-Gauss reduction: the two shortest independent lattice vectors (the tile axes)."""
    if v1 @ v1 > v2 @ v2:
        v1, v2 = v2, v1
    if abs(v1[0] * v2[1] - v1[1] * v2[0]) < 1e-6 * (v1 @ v1 + v2 @ v2) or v1 @ v1 < 1e-9:
        return v1, v2
    for _ in range(20):
        mu = round(float(v1 @ v2) / float(v1 @ v1))
        if mu == 0:
            break
        v2 = v2 - mu * v1
        if v2 @ v2 < v1 @ v1:
            v1, v2 = v2, v1
        else:
            break
    return v1, v2


_KS = np.array([(k1, k2) for k2 in range(0, 4) for k1 in range(-3, 4)
                if (k2 > 0 or k1 > 0)], dtype=np.float32)


def _lattices(w: np.ndarray, spectrum=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Candidate lattice bases (dy, dx vectors in pixels), best first.

    A comb search: for every period, rotation and aspect ratio (or shear) on a grid, sum the
    (flattened) autocorrelation over all the lattice points it predicts. One weak peak drowns in
    the picture's own correlation, two dozen of them summed do not. The best grid points are then
    refined by a least-squares fit to the individual peaks (sub-pixel periods, shear) and ranked
    by the comb's score at the fitted lattice: a grid point between a sheared lattice's peaks
    scores low, the same lattice fitted scores high. Ranked by the grid scores, the picture's own
    structure often outranked a sheared mark (11 pictures x 13 shear attacks: 109/143 read, against
    139/143).
    """
    ac, cy, cx = _autocorr(w, *(spectrum or _flat_spectrum(w)))
    h, wd = w.shape
    rmax = 0.75 * min(h, wd)
    acs, r = _lag_blur(ac, cy, cx, rmax)
    periods, thetas, combs = _comb_maps(h, wd, cy, cx, r)
    best: list[tuple[float, np.ndarray, np.ndarray]] = []
    for u1, u2, mx, my, norm in combs:
        vals = cv2.remap(acs, mx, my, dst=_scratch(4, mx.shape), interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        score = cv2.reduce(vals, 0, cv2.REDUCE_SUM).reshape(norm.shape) / norm  # numpy's sum(0), faster
        for _ in range(PEAKS_PER_ASPECT):
            i, j = np.unravel_index(int(np.argmax(score)), score.shape)
            pv = float(periods[i])
            best.append((float(score[i, j]), pv * u1[j], pv * u2[j]))
            score[max(0, i - 6): i + 7, :] = -np.inf
    b0 = np.array([(v1, v2) for _, v1, v2 in best])
    refined = _refine_lattices(ac, cy, cx, b0, rmax, REFINE_STEPS)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for v1, v2 in refined[np.argsort(-_lattice_scores(acs, r, refined, rmax), kind="stable")]:
        v1, v2 = _reduce(v1, v2)
        if any(_near(v1, o1, 1.5) and _near(v2, o2, 1.5) for o1, o2 in out):
            continue
        out.append((v1, v2))
        if len(out) == N_LATTICES:
            break
    return out


def _lag_blur(ac: np.ndarray, cy: int, cx: int, rmax: float) -> tuple[np.ndarray, int]:
    """The autocorrelation's lags up to ``rmax`` blurred for the comb, and r: lag 0 sits at (r, r).
    Only that part is blurred (+1 for the bilinear neighbour, +4 for the blur's support; the
    rest, ~70 %, is mostly zeroed anyway)."""
    r = math.ceil(rmax) + 5
    return cv2.GaussianBlur(ac[cy - r: cy + r + 1, cx - r: cx + r + 1], (0, 0), 0.8), r


@lru_cache(maxsize=4)
def _comb_maps(h: int, wd: int, cy: int, cx: int, r: int):
    """The comb search's sampling maps for a detection image of h x wd: (periods, thetas, per family
    (:func:`_family_bases`: u1, u2, map x, map y (lattice points x hypotheses), normaliser)), in the
    coordinates of the autocorrelation's central (2 r + 1)^2 crop (lag 0 at (cy, cx)). They depend
    on the image's shape only, and pictures in a bucket share a few shapes (the detector resizes to
    a 256 px short side), so they are built once per shape (~26 MB each) instead of for every
    picture (~25 % of the comb search's time)."""
    short = min(h, wd)
    rmax = 0.75 * short
    periods = short * np.exp(np.arange(np.log(P_MIN), np.log(P_MAX), 0.008)).astype(np.float32)
    thetas = np.deg2rad(np.arange(-ROT_MAX, ROT_MAX + 0.01, 0.5)).astype(np.float32)
    k1, k2 = _KS[:, 0], _KS[:, 1]
    # Out-of-range points are mapped outside the autocorrelation, where remap returns its zero border.
    per = periods[:, None, None]
    out = []
    for u1, u2 in _family_bases(thetas):
        npt = len(periods) * len(u1)
        ey = (k1[None] * u1[:, :1] + k2[None] * u2[:, :1]).astype(np.float32)   # (thetas, points)
        ex = (k1[None] * u1[:, 1:] + k2[None] * u2[:, 1:]).astype(np.float32)
        ok = np.less_equal(np.multiply(per, np.hypot(ey, ex)[None]), rmax)
        mx = np.add(np.multiply(per, ex[None]), cx)
        np.copyto(mx, np.float32(-1e4), where=np.logical_not(ok))
        my = np.add(np.multiply(per, ey[None]), cy)
        mx -= cx - r   # to the crop's coordinates: exact in float32 (an integer shift towards 0)
        my -= cy - r
        norm = np.sqrt(np.maximum(ok.sum(-1), 1))
        # Maps laid out (lattice point, hypothesis): remap walks long rows ~4x faster than 5,000
        # rows of 24 samples, and the comb sum becomes a sum of rows.
        out.append((u1, u2, np.ascontiguousarray(mx.reshape(npt, -1).T),
                    np.ascontiguousarray(my.reshape(npt, -1).T), norm))
    return periods, thetas, out


def _family_bases(thetas: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The comb's lattice families: per family, the (dy, dx) of lattice points (1, 0) and (0, 1) at
    period 1 for each of its rotations (two rotations x 2 arrays; rotations: ``thetas``, or those
    within SHEAR_ROT for the sheared families).

    Per aspect ratio (ax = sqrt(aspect) along x, ay = 1 / ax along y): the square tile rotated, then
    stretched along the picture's axes (a rotated picture resized to another aspect: a sheared
    lattice), and stretched, then rotated (a resized picture rotated: a rotated rectangle). They
    coincide without rotation or stretch and drift apart with both: at 1.44x and 4 deg, the first
    family's best hypothesis folds the second's lattice too badly to decode.

    Then the square tile rotated, then sheared symmetrically by each of SHEARS (dy += e dx,
    dx += e dy): with rotation, scale and aspect, the fourth degree of freedom of a linear map. A
    sheared picture needs it (a horizontal shear s is a symmetric shear s / 2 plus a rotation by
    s / 2): at a shear of 0.05 the best rotated/stretched hypothesis is still ~8 px off the peaks of
    order 3, beyond what the peak fit can pull in. 11 pictures x 13 shear attacks (0.03-0.08, with
    JPEG 70, a crop to 80 %, a rotation of 2 deg): 108/143 read without these families (through the
    central sub-window's fit, :func:`_central_lattice`), 139/143 with them."""
    t = thetas.astype(np.float64)
    sn, c = np.sin(t), np.cos(t)
    out = []
    for stretch_first, aspect in [(False, a) for a in ASPECTS] + [(True, a) for a in ASPECTS if a != 1.0]:
        ax, ay = np.sqrt(aspect), 1.0 / np.sqrt(aspect)
        if stretch_first:
            out.append((np.stack([ax * sn, ax * c], 1), np.stack([ay * c, -ay * sn], 1)))
        else:
            out.append((np.stack([ay * sn, ax * c], 1), np.stack([ay * c, -ax * sn], 1)))
    near = np.abs(t) <= np.deg2rad(SHEAR_ROT) + 1e-6
    sn, c = sn[near], c[near]
    for e in SHEARS:
        out.append((np.stack([sn + e * c, c + e * sn], 1), np.stack([c - e * sn, -sn + e * c], 1)))
    return out


_KR = np.array([(k1, k2) for k1 in range(-3, 4) for k2 in range(0, 4)
                if not ((k1, k2) == (0, 0) or (k2 == 0 and k1 < 0))], dtype=float)
_KR_ORDER = np.abs(_KR).max(1)   # each peak's order: max(|k1|, |k2|)


@lru_cache(maxsize=4)
def _window(radius: int) -> np.ndarray:
    """Offsets (dy, dx) of a (2 radius + 1)^2 search window, row-major."""
    return np.array([(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)])


def _refine_lattices(ac: np.ndarray, cy: int, cx: int, bases: np.ndarray, rmax: float,
                     steps: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Least-squares fit of each basis (``bases``: n x (v1, v2), each (dy, dx)) to the visible
    lattice peaks, one ``steps`` entry (peak order, search radius) after the other: each step
    predicts its peaks from the previous step's fit. The comb's maxima are close (one step, all
    peaks of order <= 3, 3x3 windows); a lattice of the whole picture seen in a sub-window under
    perspective is off by ~1-3 px at order 1, more at order 3, so there the nearest peaks come
    first, in wider windows (:func:`_central_lattice`)."""
    for order, radius in steps:
        bases = _fit_peaks(ac, cy, cx, bases, rmax, _KR[_KR_ORDER <= order], _window(radius))
    return bases


def _fit_peaks(ac: np.ndarray, cy: int, cx: int, bases: np.ndarray, rmax: float, kr: np.ndarray,
               win: np.ndarray) -> np.ndarray:
    """One refinement step: each basis fitted to the peaks ``kr`` (lattice coordinates), each
    taken as the strongest sample of the window ``win`` around its predicted lag. All bases at
    once: per basis, numpy's call overhead on two dozen peaks cost several times the arithmetic."""
    p = kr[:, :1] * bases[:, None, 0] + kr[:, 1:] * bases[:, None, 1]              # (n, peaks, 2)
    y, x = np.round(cy + p[..., 0]).astype(int), np.round(cx + p[..., 1]).astype(int)
    m = int(np.abs(win).max()) + 1   # the window and the parabola's neighbours stay inside ac
    keep = ((np.sqrt(np.add.reduce(p * p, axis=-1)) <= rmax * 1.2) & (y >= m) & (y < ac.shape[0] - m)
            & (x >= m) & (x < ac.shape[1] - m))
    y, x = np.where(keep, y, m), np.where(keep, x, m)   # peaks not kept: any valid sample, weight 0
    # Strongest sample of each window (first in row-major order, like argmax), then a parabola
    # through its neighbours along each axis.
    a = np.argmax(ac[y[..., None] + win[:, 0], x[..., None] + win[:, 1]], axis=-1)
    y, x = y + win[a, 0], x + win[a, 1]
    val = ac[y, x]

    def off(m: np.ndarray, p_: np.ndarray) -> np.ndarray:
        # float32 like ac; a non-negative curvature (no maximum) gives no offset
        d = m - 2 * val + p_
        concave = d < 0
        o = 0.5 * (m - p_) / np.where(concave, d, np.float32(-1.0))
        return np.where(concave, np.minimum(np.maximum(o, -0.5), 0.5), 0.0).astype(np.float64)
    target = np.stack([y + off(ac[y - 1, x], ac[y + 1, x]) - cy, x + off(ac[y, x - 1], ac[y, x + 1]) - cx], -1)
    ok = keep & (val > 0)
    # Weighted least squares (weight: the peak's height) by the 2x2 normal equations: lstsq's
    # answer up to rounding; lstsq itself only where all peaks lie on one line.
    wk = kr * np.where(ok, val, 0).astype(np.float64)[..., None]                  # (n, peaks, 2)
    g = np.einsum("npi,pj->nij", wk, kr)
    r = np.einsum("npi,npj->nij", wk, target)
    det = g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0]
    out = np.stack([g[:, 1, 1, None] * r[:, 0] - g[:, 0, 1, None] * r[:, 1],
                    g[:, 0, 0, None] * r[:, 1] - g[:, 1, 0, None] * r[:, 0]], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out /= det[:, None, None]
    for i in np.nonzero(~(det > 1e-9 * g[:, 0, 0] * g[:, 1, 1]) | (ok.sum(1) < 3))[0]:
        if ok[i].sum() < 3:
            out[i] = bases[i]
        else:
            sw = np.sqrt(val[i, ok[i]].astype(np.float64))[:, None]
            out[i], *_ = np.linalg.lstsq(kr[ok[i]] * sw, target[i, ok[i]] * sw, rcond=None)
    return out


def _lattice_scores(acs: np.ndarray, r: int, bases: np.ndarray, rmax: float) -> np.ndarray:
    """The comb's score (:func:`_lattices`) of each basis: the blurred autocorrelation ``acs``
    (lag 0 at (r, r)) summed over the basis' lattice points of order <= 3 within ``rmax``, divided
    by the square root of their number. Ranks the refined lattices on the same scale as the comb,
    at their fitted (sheared, off-grid) positions."""
    p = _KR[:, :1] * bases[:, None, 0] + _KR[:, 1:] * bases[:, None, 1]             # (n, peaks, 2)
    ok = np.add.reduce(p * p, axis=-1) <= rmax * rmax
    mx = np.where(ok, p[..., 1] + r, -1e4).astype(np.float32)
    my = (p[..., 0] + r).astype(np.float32)
    vals = cv2.remap(acs, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return vals.sum(1) / np.sqrt(np.maximum(ok.sum(1), 1))


def _central_lattice(wh: np.ndarray, seeds: list[tuple[np.ndarray, np.ndarray]]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The central sub-window of the detection image and the lattice that fits its own
    autocorrelation best, refined from ``seeds`` (lattices of the whole picture): (sub-window, v1, v2).

    Why: under perspective the lattice changes across the picture (a 4 % keystone: periods +-4 %,
    shear +-0.05 from one side to the other), so no single lattice folds the whole picture; the
    picture's autocorrelation peaks are smeared and its lattice estimates are off by pixels. Half
    of each side varies half as much, and its own autocorrelation has sharp peaks."""
    h, w = wh.shape
    ch, cw = round(h * SUB_FRAC), round(w * SUB_FRAC)
    if min(ch, cw) < MIN_DETECT_SHORT:
        return None
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    sub = wh[y0: y0 + ch, x0: x0 + cw]
    ac, cy, cx = _autocorr(sub, *_flat_spectrum(sub))
    rmax = 0.75 * min(ch, cw)
    acs, r = _lag_blur(ac, cy, cx, rmax)
    bases = _refine_lattices(ac, cy, cx, np.array(seeds), rmax, SUB_STEPS)
    v1, v2 = bases[int(np.argmax(_lattice_scores(acs, r, bases, rmax)))]
    return sub, v1, v2


def _fold(w: np.ndarray, v1: np.ndarray, v2: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray | None:
    """Resample every tile period of ``w`` onto a FOLD x FOLD grid and average them.

    The sampling grid is an affine image of the picture, so one ``warpAffine`` resamples it (no
    coordinate maps to build: ~40 % cheaper than ``remap``). Its NaN border marks every sample
    whose bilinear neighbourhood leaves the picture; those are left out of the average.
    """
    h, wd = w.shape
    (a, b), (c, d) = (float(v1[0]), float(v2[0])), (float(v1[1]), float(v2[1]))  # basis (dy; dx)
    oy, ox = (0.0, 0.0) if origin is None else (float(origin[0]), float(origin[1]))
    det = a * d - b * c
    if abs(det) <= 1e-9 * (a * a + b * b + c * c + d * d):   # degenerate: no tile cell at all
        return None
    # Picture corners in lattice coordinates (u along v1, v along v2): the periods to visit.
    us, vs = [], []
    for y, x in ((0, 0), (0, wd - 1), (h - 1, 0), (h - 1, wd - 1)):
        us.append((d * (y - oy) - b * (x - ox)) / det)
        vs.append((a * (x - ox) - c * (y - oy)) / det)
    i0, j0 = math.floor(min(us)), math.floor(min(vs))
    ni, nj = math.ceil(max(us)) - i0, math.ceil(max(vs)) - j0
    if ni * nj > 480:
        return None
    # Grid sample (row r, column s) sits at o + (i0 + r / FOLD) v1 + (j0 + s / FOLD) v2.
    m = np.array([[d / FOLD, c / FOLD, ox + i0 * c + j0 * d],
                  [b / FOLD, a / FOLD, oy + i0 * a + j0 * b]])
    grid = (ni * FOLD, nj * FOLD)
    vals = cv2.warpAffine(w, m, grid[::-1], dst=_scratch(4, grid), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=math.nan)
    valid = cv2.compare(vals, vals, cv2.CMP_EQ, dst=_scratch(2, grid, np.uint8))  # 255, or 0 where NaN
    cv2.patchNaNs(vals, 0.0)
    # Sum the periods: over the rows of periods first (one reduction), then within a row.
    tot = cv2.reduce(vals.reshape(ni, -1), 0, cv2.REDUCE_SUM).reshape(FOLD, nj, FOLD).sum(1)
    cnt = cv2.reduce(valid.reshape(ni, -1), 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).reshape(FOLD, nj, FOLD).sum(1) // 255
    if cnt.min() == 0:
        tot = np.where(cnt > 0, tot, 0.0)
    return tot / np.maximum(cnt, 1)


_KEEP = np.r_[0: CELLS // 2, FOLD - CELLS // 2: FOLD]
_KF = (np.fft.fftfreq(FOLD) * FOLD)[_KEEP]
_PHASE_STEP = 2j * np.pi * _KF / FOLD


def _dihedral_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index maps of the 8 flips/quarter turns g of a FOLD x FOLD tile, in the order
    ``rot90(f, k), rot90(f.T, k)`` for k = 0..3: ``f.take(perm[g])`` is the turned tile;
    ``c.take(shift[g])`` turns a correlation of f with the template turned back by g into the
    turned tile's correlation with the template; ``F.take(band[g]) * band_phase[g]`` is the turned
    tile's FFT on the kept band (:func:`_demod`), read from f's FFT F.

    Every g maps a sample x to ``A x + b`` (mod FOLD) for a signed permutation A: the correlation
    is the one with f at shift ``A s``, and the turned tile's FFT at k is ``F(A k) e^(2 pi i (A k).b / FOLD)``.
    """
    idx = np.arange(FOLD * FOLD).reshape(FOLD, FOLD)
    perm = np.stack([np.rot90(a, k) for k in range(4) for a in (idx, idx.T)])
    py, px = np.divmod(perm, FOLD)
    by, bx = py[:, :1, :1], px[:, :1, :1]
    shift = ((py - by) % FOLD) * FOLD + (px - bx) % FOLD
    # A's rows (y and x of the images of the unit steps along y and x), signed: FOLD - 1 -> -1.
    a_y = (np.stack([py[:, 1, 0], py[:, 0, 1]], 1) - by[:, 0] + 1) % FOLD - 1
    a_x = (np.stack([px[:, 1, 0], px[:, 0, 1]], 1) - bx[:, 0] + 1) % FOLD - 1
    ky, kx = np.meshgrid(_KF, _KF, indexing="ij")            # the kept band's frequencies
    aky = a_y[:, :1, None] * ky + a_y[:, 1:, None] * kx
    akx = a_x[:, :1, None] * ky + a_x[:, 1:, None] * kx
    band = ((aky % FOLD) * FOLD + akx % FOLD).astype(np.intp).reshape(len(perm), -1)
    band_phase = np.exp(2j * np.pi * (aky * by + akx * bx) / FOLD)
    return perm, shift, band, band_phase


_DIHEDRAL, _DIHEDRAL_SHIFT, _DIHEDRAL_BAND, _DIHEDRAL_BAND_PHASE = _dihedral_maps()


def _subpeak(c: np.ndarray, y: int, x: int) -> tuple[float, float]:
    """Sub-sample peak of a periodic float64 correlation at (y, x): a parabola along each axis
    (plain Python floats: the same double arithmetic as numpy scalars, several times cheaper)."""
    n = c.shape[0]

    def off(m: float, v: float, p: float) -> float:
        d = m - 2 * v + p
        return 0.0 if d >= 0 else min(max(0.5 * (m - p) / d, -0.5), 0.5)
    v = float(c[y, x])
    return (y + off(float(c[(y - 1) % n, x]), v, float(c[(y + 1) % n, x])),
            x + off(float(c[y, (x - 1) % n]), v, float(c[y, (x + 1) % n])))


@dataclass
class _Tile:
    """A folded tile (float64) and, on first use, its complex FFT (OpenCV layout): only the tiles
    of decoded candidates need it."""
    values: np.ndarray

    @cached_property
    def spectrum(self) -> np.ndarray:
        return cv2.dft(self.values, flags=cv2.DFT_COMPLEX_OUTPUT)


@dataclass(frozen=True)
class _Candidate:
    """One flip/turn of a folded tile, ranked by its sync z-score. Its soft bits (:func:`_soft_bits`)
    are computed only when it is decoded: a full search ranks ~30 candidates and decodes 6."""
    z: float
    tile: _Tile
    corr: np.ndarray    # the tile's correlation with the template turned back by ``turn``
    turn: int


def _candidates(folded: np.ndarray, pat: _KeyPattern) -> list[_Candidate]:
    """Folded tile -> its N_DIHEDRAL best flips/turns by sync z-score (peak of the correlation
    with the keyed sync template over all shifts, in standard deviations), best first.

    The turned tile's correlation with the template is a re-indexing of the tile's correlation
    with the template turned back, and its spectrum one of the tile's (``_dihedral_maps``): one
    FFT of the tile serves all 8 flips/turns (same results up to rounding).
    """
    # OpenCV's FFT: at 64x64 numpy's per-call overhead dominates (~10x slower).
    tile = _Tile(np.ascontiguousarray(folded, dtype=np.float64))
    spec = cv2.dft(tile.values)
    # Each correlation's mean and standard deviation straight from the spectra (Parseval), all 8
    # at once; only its peak needs the correlation itself.
    n = FOLD * FOLD
    means = spec[0, 0] * pat.sync_dc / n
    stds = np.sqrt(pat.sync_power @ np.square(spec).reshape(-1)) / n
    corrs, z = [], np.empty(len(pat.sync_ccs))
    for g, back in enumerate(pat.sync_ccs):
        corr = cv2.idft(cv2.mulSpectrums(spec, back, 0, conjB=True), flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
        _, peak, _, _ = cv2.minMaxLoc(corr)
        z[g] = (peak - means[g]) / (stds[g] + 1e-12)
        corrs.append(corr)
    return [_Candidate(float(z[g]), tile, corrs[g], int(g)) for g in np.argsort(-z, kind="stable")[:N_DIHEDRAL]]


def _soft_bits(cand: _Candidate, pat: _KeyPattern) -> np.ndarray:
    """A candidate's soft coded bits: the turned tile aligned on its sync peak (sub-sample)."""
    corr = cand.corr.take(_DIHEDRAL_SHIFT[cand.turn])
    _, _, _, (x, y) = cv2.minMaxLoc(corr)
    sy, sx = _subpeak(corr, y, x)
    return _demod(cand.tile.spectrum, sy, sx, pat, cand.turn)


@lru_cache(maxsize=1)
def _keep_filter() -> np.ndarray:
    return _filter(FOLD)[np.ix_(_KEEP, _KEEP)]


def _demod(spec: np.ndarray, sy: float, sx: float, pat: _KeyPattern, turn: int = 0) -> np.ndarray:
    """FFT of a folded tile (complex FOLD x FOLD, or OpenCV's FOLD x FOLD x 2), turned by the
    flip/quarter turn ``turn`` (:func:`_dihedral_maps`) and aligned by (sy, sx) samples -> soft
    coded bits (matched filter)."""
    if spec.ndim == 3:  # OpenCV's (re, im) pairs, read as complex without a copy
        spec = np.ascontiguousarray(spec, dtype=np.float64).view(np.complex128)[..., 0]
    phase = np.exp(_PHASE_STEP * sy)[:, None] * np.exp(_PHASE_STEP * sx)[None, :]
    band = spec.reshape(-1).take(_DIHEDRAL_BAND[turn]).reshape(CELLS, CELLS) * _DIHEDRAL_BAND_PHASE[turn]
    aligned = band * phase * _keep_filter()
    cells = cv2.idft(aligned.view(np.float64).reshape(CELLS, CELLS, 2),
                     flags=cv2.DFT_COMPLEX_OUTPUT | cv2.DFT_SCALE)[..., 0].reshape(-1)
    return np.bincount(pat.bit_of_cell, weights=pat.payload_chips * cells[pat.payload_cells],
                       minlength=codec.code_bits())


def _own_lattices(wh: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The lattice the embedder used for a picture of this size, and its stretched variant.

    The tile period is a fixed fraction of the short side, so a picture that was only resized
    (or flipped, or re-encoded) still has exactly this lattice: trying it first needs no lattice
    estimate at all, is fast, and rescues pictures whose texture hides the autocorrelation peaks.
    The second candidate is a *square* original stretched to the current aspect ratio (generated
    images are mostly square): periods proportional to each side.
    """
    h, w = wh.shape
    p = min(h, w) / PERIODS
    out = [(np.array([p, 0.0]), np.array([0.0, p]))]
    if abs(h / w - 1.0) > 0.01:
        out.append((np.array([h / PERIODS, 0.0]), np.array([0.0, w / PERIODS])))
    return out


def max_attempts() -> int:
    """Decode attempts per image: the two own lattices' alignments, the N_DECODE best measured, and
    the wide-rotation stage's best N_DIHEDRAL."""
    return 2 * N_DIHEDRAL + N_DECODE + N_DIHEDRAL


def false_positive_probability() -> float:
    """Union bound over every decode attempt the detector may make on one image."""
    return max_attempts() * codec.false_positive_per_attempt()


SEARCHES = ("full", "own")


def detect_rgb(rgb: np.ndarray, key: bytes, search: str = "full") -> tuple[bytes, int] | None:
    """HxWx3 uint8 RGB, or HxW uint8 luma -> (payload, bit_errors) or None.

    ``search="own"`` tries only the embedder's own lattice (stage 1 below): enough for pixels known
    to be unedited since they were marked (resized, flipped and re-encoded copies still decode),
    and ~5-10x cheaper on an unmarked picture than the full geometric search.
    """
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    y = rgb.astype(np.float32) if rgb.ndim == 2 else luminance(rgb)
    h, w = y.shape
    short = min(h, w)
    if short < MIN_DETECT_SHORT:
        return None
    if short > DET_SHORT:
        s = DET_SHORT / short
        y = cv2.resize(y, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    wh = _whiten(y)
    pat = _pattern(key)
    # 1. The embedder's own lattice (picture only resized / flipped / re-encoded): no search needed.
    owns = _own_lattices(wh)
    for own in owns:
        folded = _fold(wh, *own)
        if folded is None:
            continue
        got = codec.decode_first([_soft_bits(c, pat) for c in _candidates(folded, pat)], key)
        if got is not None:
            return got
    if search == "own":
        return None
    # 2. Measured lattices (crops, rotations, aspect changes): decode the alignments with the
    # strongest keyed sync correlation first (a textured picture can out-score the mark in the
    # lattice search, but not in the keyed sync correlation).
    measured: list[_Candidate] = []
    spectrum = _flat_spectrum(wh)
    blurred = _spectral_blurs(spectrum[0])
    p0 = owns[0][0][0]
    lattices = [(v1, v2) for _s, v1, v2 in _spectral_lattices(spectrum, blurred, p0)] + _lattices(wh, spectrum)
    for v1, v2 in lattices:
        if any(_near(v1, o1, 1.0) and _near(v2, o2, 1.0) for o1, o2 in owns):
            continue
        folded = _fold(wh, v1, v2)
        if folded is not None:
            measured.extend(_candidates(folded, pat))
    # Perspective: the central sub-window on its own lattice (one more fold, no more decodes).
    central = _central_lattice(wh, owns + lattices[:SUB_SEEDS])
    if central is not None:
        folded = _fold(*central)
        if folded is not None:
            measured.extend(_candidates(folded, pat))
    measured.sort(key=lambda c: -c.z)
    got = codec.decode_first([_soft_bits(c, pat) for c in measured[:N_DECODE]], key)
    if got is not None:
        return got
    # 3. Rotations beyond +-SPEC_ROT (a "straighten" of 10-45 deg, with or without a grown
    # canvas): the spectral comb over the other rotations; only lattices whose lines stand out
    # are folded, so a picture without the mark mostly pays only the comb (~2.5 ms).
    wide: list[_Candidate] = []
    for score, v1, v2 in _spectral_lattices(spectrum, blurred, p0, WIDE_N, wide=True):
        folded = _fold(wh, v1, v2) if score >= WIDE_GATE else None
        if folded is not None:
            wide.extend(_candidates(folded, pat))
    wide.sort(key=lambda c: -c.z)
    return codec.decode_first([_soft_bits(c, pat) for c in wide[:N_DIHEDRAL]], key)
