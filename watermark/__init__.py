"""Robust invisible watermark for generated images and video (issue 3).

``embed(rgb, payload, key=None)`` hides 8 bytes in an image; ``detect(image, key=None)`` returns a
:class:`Detection`. The design (a keyed, self-referencing periodic tile found again through its
lattice) and its measured limits are in ``watermark/README.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import codec
from . import image as _image
from .keys import ENV_VAR, PUBLIC_KEY, effective_key, load_key, resolve_key

__all__ = ["Detection", "embed", "detect", "load_key", "resolve_key", "PUBLIC_KEY", "ENV_VAR",
           "PAYLOAD_BYTES", "MIN_EMBED_SHORT", "MIN_DETECT_SHORT", "ALGORITHM"]

# Bumped whenever marks made by an older release stop decoding (code, check or tile changed: the
# major number) or the detector reads marks it used to miss (the minor), so caches of detection
# results (the S3 audit's state) are invalidated: never a stale "no watermark". 2: soft Viterbi +
# 32-bit check; 2.1: stretched-then-rotated lattices searched too; 2.2: rotations up to 45 deg;
# 2.3: sheared lattices and a central sub-window for perspective (marks are unchanged).
ALGORITHM = "synthguard-wm/2.3"
PAYLOAD_BYTES = codec.PAYLOAD_BYTES
MIN_EMBED_SHORT = _image.MIN_EMBED_SHORT
MIN_DETECT_SHORT = _image.MIN_DETECT_SHORT  # smaller pictures cannot carry a readable mark


@dataclass(frozen=True)
class Detection:
    """What one detection found. ``payload`` is exactly the 8 embedded bytes, or None.

    ``false_positive_probability`` is the computed bound on declaring this decision for an
    unmarked image (union bound over every decode attempt the detector may make; see codec.py).
    ``bit_errors`` counts coded bits the error correction repaired.
    """

    detected: bool
    payload: bytes | None
    bit_errors: int | None
    false_positive_probability: float
    key_kind: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "detected": self.detected,
            "payload": self.payload.hex() if self.payload is not None else None,
            "bit_errors": self.bit_errors,
            "false_positive_probability": self.false_positive_probability,
            "key_kind": self.key_kind,
        }

    def __str__(self) -> str:
        if self.detected:
            return f"watermark {self.payload.hex()} ({self.key_kind} key, {self.bit_errors} bit errors)"
        return f"no watermark ({self.key_kind} key)"


def _as_array(source: Any, *, single_frame: bool = False) -> np.ndarray:
    if isinstance(source, np.ndarray):
        return source
    from provenance.media import decode_image

    # a 16-bit picture stays 16-bit; embed refuses animations (it would return their first frame)
    return decode_image(source, keep_alpha=True, keep_depth=True, single_frame=single_frame)


def _to_rgb8(arr: np.ndarray, *, keep_gray: bool = False) -> tuple[np.ndarray, float]:
    """Any supported array -> (HxWx3 uint8 RGB, scale from 8-bit to the input's range).

    ``keep_gray``: a grayscale input stays HxW (the detector reads it as luma directly)."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {arr.shape}")
    if arr.shape[2] >= 3:
        rgb = arr[..., :3]
    else:
        rgb = arr[..., 0] if keep_gray else np.repeat(arr, 3, axis=2)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(rgb), 1.0
    if arr.dtype == np.uint16:
        return np.clip(np.rint(rgb / 257.0), 0, 255).astype(np.uint8), 257.0
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8), 1.0 / 255.0
    raise ValueError(f"unsupported pixel type {arr.dtype}")


def embed(rgb: Any, payload: bytes, *, key: bytes | None = None) -> np.ndarray:
    """Return a marked copy of ``rgb`` carrying ``payload`` (exactly 8 bytes).

    ``rgb`` is an HxWx3 uint8 array (or grayscale, RGBA with alpha kept, 16-bit or float in
    [0, 1], a Pillow image, a path, bytes or a stream); the result has the same shape and dtype.
    Needs at least 256 px on the short side.
    """
    payload = bytes(payload)
    if len(payload) != PAYLOAD_BYTES:
        raise ValueError(f"payload must be exactly {PAYLOAD_BYTES} bytes, got {len(payload)}")
    k, _ = effective_key(key)
    arr = _as_array(rgb, single_frame=True)
    rgb8, scale = _to_rgb8(arr)
    marked = _image.embed_rgb(rgb8, payload, k)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        return marked
    delta = (marked.astype(np.float64) - rgb8)[..., :1] * scale  # the mark is the same on R, G, B
    out = arr.astype(np.float64).copy()
    if out.ndim == 2:
        out += delta[..., 0]
    else:
        out[..., :3] += delta
    if arr.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if arr.dtype == np.uint16:
        return np.clip(np.rint(out), 0, 65535).astype(np.uint16)
    return np.clip(out, 0.0, 1.0).astype(arr.dtype)


def detect(rgb: Any, *, key: bytes | None = None, search: str = "full") -> Detection:
    """Look for a watermark made with ``key`` (None: the public key) in an image of any size.

    ``rgb``: anything :func:`embed` takes; an HxW array is read as luma (the channel the mark lives
    in), so a JPEG decoded straight to its Y plane needs no colour conversion at all.

    ``search="full"`` (default) also finds marks in cropped, rotated and re-framed copies.
    ``search="own"`` looks only where the embedder put the mark: use it when the pixels are known
    to be unedited since marking (e.g. a C2PA hard binding proved the bytes are the signed ones);
    resized, flipped and re-encoded copies still decode; it is several times faster on an
    unmarked picture. The false-positive bound is the full search's either way (an upper bound).
    """
    k, kind = effective_key(key)
    pixels, _ = _to_rgb8(_as_array(rgb), keep_gray=True)
    got = _image.detect_rgb(pixels, k, search=search)
    fp = _image.false_positive_probability()
    if got is None:
        return Detection(False, None, None, fp, kind)
    return Detection(True, got[0], got[1], fp, kind)
