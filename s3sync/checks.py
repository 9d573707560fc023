"""The CPU side of the audit: decode, C2PA validation, watermark detection, registry match.

Everything here is a top-level, picklable function of (bytes or a temp-file path, MIME, config) so
the audit's check processes (``s3sync.worker.CheckProcesses``) can run it with no shared state: the
config is installed once per process by :func:`init_process`, and each task ships only the object's
bytes. The media logic itself lives in ``provenance`` and ``watermark``; this module only composes
their calls.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from provenance.media import (AUDIO_MIMES, IMAGE_MIMES, MEDIA_MIMES, VIDEO_MIMES, MediaError, mime_from_name,
                              normalize_mime, sniff_mime)


@dataclass(frozen=True)
class CheckConfig:
    """What to check and with which keys. Picklable; its :meth:`fingerprint` keys the result cache,
    so changing trust anchors, the watermark key or the registry re-checks unchanged objects."""

    trust_anchors: bytes | None = None  # PEM bytes
    watermark_key: bytes | None = None
    watermark_key_kind: str | None = None
    registry_path: str | None = None
    watermark: bool = True
    fingerprint_match: bool = True
    # False: when the manifest is trusted and records the watermark payload (a c2pa.soft-binding),
    # report that payload instead of searching the pixels. Faster; it no longer proves the pixels
    # still carry the mark, so it is opt-in (--watermark-trust-manifest).
    watermark_when_trusted: bool = True
    # "auto": objects whose trusted C2PA hard binding proves the bytes are exactly the signed ones
    # get the watermark's own-lattice check only (no geometric edit can have happened since
    # signing; the status is `ok` whatever the mark says), and the full search only when the
    # manifest claims a watermark (soft binding) that the quick look did not confirm. "full":
    # the full geometric search on every image. "own": the own-position check on every image (finds
    # marks in resized, flipped, re-encoded copies, not in crops or rotations; ~8x cheaper on
    # unmarked pictures), with the full search only for manifests that claim a mark it missed.
    watermark_search: str = "auto"

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for part in (self.trust_anchors or b"", self.watermark_key or b"",
                     (self.watermark_key_kind or "").encode(), (self.registry_path or "").encode(),
                     str(self.watermark).encode(), str(self.fingerprint_match).encode(), b"v1",
                     str(self.watermark_when_trusted).encode(), self.watermark_search.encode(),
                     capabilities().encode()):
            h.update(len(part).to_bytes(8, "big") + part)
        if self.registry_path and os.path.exists(self.registry_path):
            st = os.stat(self.registry_path)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        d = {"trust_anchors": bool(self.trust_anchors), "watermark_key": self.watermark_key_kind,
             "registry": self.registry_path, "watermark": self.watermark}
        if not self.watermark_when_trusted:
            d["watermark_trust_manifest"] = True
        if self.watermark:
            d["watermark_search"] = self.watermark_search
        return d


def capabilities() -> str:
    """Which checkers (and algorithm versions) this build has: part of the cache key, so results
    computed while one was missing, or by an older watermark/fingerprint algorithm, are re-checked
    (never a stale 'no watermark')."""
    caps = []
    try:
        import watermark

        caps.append(getattr(watermark, "ALGORITHM", "wm") if hasattr(watermark, "detect") else "")
        from watermark import video  # noqa: F401

        caps.append("wmv" if hasattr(video, "detect") else "")
    except ImportError:
        pass
    try:
        from provenance import verify  # noqa: F401

        caps.append("c2pa")
    except ImportError:
        pass
    try:
        from provenance.fingerprints import ALGORITHM as FP_ALGORITHM

        caps.append(FP_ALGORITHM)
    except ImportError:
        pass
    return ",".join(c for c in caps if c)


@dataclass
class CheckOutcome:
    """What the checks found for one object (plain data, crosses process boundaries)."""

    c2pa: dict[str, Any] | None = None
    watermark: dict[str, Any] | None = None
    training_match: dict[str, Any] | None = None
    error: str | None = None
    mime: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def media_kind(mime: str | None) -> str | None:
    m = normalize_mime(mime)
    if m in IMAGE_MIMES:
        return "image"
    if m in VIDEO_MIMES:
        return "video"
    if m in AUDIO_MIMES:
        return "audio"
    return None


def claimed_mime(key: str, content_type: str | None) -> str | None:
    """The media type an object claims: its content type when that is media, else its extension's.

    Either is enough (``.jpg`` stored as ``binary/octet-stream``, or an extensionless ``image/jpeg``).
    Returns None for non-media objects (they are skipped).
    """
    ct = normalize_mime(content_type)
    if ct in MEDIA_MIMES:
        return ct
    by_name = mime_from_name(key)
    return by_name if by_name in MEDIA_MIMES else None


# ----------------------------------------------------------------------------- per-process config
_CFG: CheckConfig | None = None
_REGISTRY: Any = None


def init_process(cfg: CheckConfig, warm: bool = False) -> None:
    """Check-process initializer (also used inline): install the config once.

    ``warm`` (check processes): import the checkers now, while the parent is still listing, instead
    of during the first objects' checks."""
    global _CFG, _REGISTRY
    _CFG = cfg
    _REGISTRY = None
    if warm:
        try:
            import cv2

            # A pool worker per core already keeps the cores busy: OpenCV's own thread pool on top
            # only adds CPU (measured: the watermark detector's CPU per unmarked picture ~100 ms with
            # OpenCV's 2 threads, ~80 ms with 1, the same wall time when run alone).
            cv2.setNumThreads(1)
        except ImportError:
            pass
        import PIL.Image  # noqa: F401

        import provenance.verification  # noqa: F401

        if cfg.watermark:
            try:
                import watermark  # noqa: F401
            except ImportError:
                pass


def _registry():
    global _REGISTRY
    if _REGISTRY is None and _CFG is not None and _CFG.registry_path:
        from provenance.registry import Registry  # issue 5

        _REGISTRY = Registry(_CFG.registry_path)
    return _REGISTRY


def _hex(payload: Any) -> str | None:
    if payload is None:
        return None
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload).hex()
    if isinstance(payload, int):
        return format(payload, "x")
    if hasattr(payload, "hex") and callable(payload.hex):
        try:
            return payload.hex()
        except TypeError:
            pass
    return str(payload)


def _as_dict(v: Any) -> dict[str, Any]:
    if v is None:
        return {}
    if hasattr(v, "to_dict"):
        return dict(v.to_dict())
    if isinstance(v, dict):
        return dict(v)
    return {k: getattr(v, k) for k in dir(v) if not k.startswith("_") and not callable(getattr(v, k))}


def _c2pa(source: Any, mime: str) -> dict[str, Any]:
    from provenance import verify  # issue 2: never raises for bad media

    v = verify(source, trust_anchors=_CFG.trust_anchors if _CFG else None, mime=mime)
    d = _as_dict(v)
    out = {"state": getattr(v, "state", d.get("state")), "codes": list(getattr(v, "codes", d.get("codes")) or [])}
    reason = getattr(v, "reason", d.get("reason"))
    if reason:
        out["reason"] = reason
    for k in ("ai_generated", "model", "signer", "signed_at", "soft_binding"):
        if d.get(k) is not None:
            out[k] = d[k]
    return out


def _watermark_dict(det: Any) -> dict[str, Any]:
    d = _as_dict(det)
    detected = bool(getattr(det, "detected", d.get("detected")))
    out: dict[str, Any] = {"detected": detected,
                           "payload": _hex(getattr(det, "payload", d.get("payload"))) if detected else None}
    for k in ("bit_errors", "false_positive_probability", "frames", "frames_detected"):
        if d.get(k) is not None:
            out[k] = d[k]
    return out


def _detector(module: str):
    """``module.detect`` (the image or the video detector); ImportError when the room lacks it."""
    import importlib

    detect = getattr(importlib.import_module(module), "detect", None)
    if detect is None:
        raise ImportError(f"{module}.detect is missing")
    return detect


def _min_detect_short() -> int:
    try:
        from watermark import MIN_DETECT_SHORT
    except ImportError:
        return 0
    return int(MIN_DETECT_SHORT)


def _wm_unavailable(exc: BaseException) -> dict[str, Any]:
    return {"detected": False, "payload": None, "skipped": f"watermark unavailable: {exc}"}


def _match_dict(m: Any) -> dict[str, Any] | None:
    if m is None:
        return None
    return _as_dict(m)


def check(source: bytes | str, mime: str | None, key: str = "") -> CheckOutcome:
    """Run every configured check on one object (bytes, or the path of a temp file for big ones).

    Never raises for bad media: an undecodable object comes back with ``error`` set (it is then
    ``unreadable`` with the decoder's reason).
    """
    cfg = _CFG or CheckConfig()
    t = time.perf_counter
    out = CheckOutcome(mime=mime)
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:SNIFF_BYTES])
    else:
        with open(source, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    if not head:
        out.error = f"empty object (0 bytes) where {normalize_mime(mime) or mime_from_name(key) or 'media'} was claimed"
        return out
    sniffed = sniff_mime(head, None)
    claimed = normalize_mime(mime) or mime_from_name(key)
    # Content wins over the claim when it is recognisable media (a .jpg that really is a PNG).
    actual = sniffed if sniffed in MEDIA_MIMES else claimed
    out.mime = actual
    kind = media_kind(actual)
    t0 = t()
    try:
        out.c2pa = _c2pa(source, actual)
    except ImportError as exc:
        out.error = f"C2PA verification unavailable: {exc}"
        return out
    out.timings["c2pa_ms"] = round((t() - t0) * 1000, 2)

    if actual == "image/svg+xml":
        # A vector picture: its provenance is the C2PA manifest alone (no raster pixels to carry a
        # watermark or a fingerprint), and the C2PA reader is the parser that proves it is intact.
        err = _c2pa_only_media(out.c2pa, "SVG document", "image/svg+xml", sniffed, sniffed == "image/svg+xml")
        if err:
            out.error = err
        return out
    if kind == "image":
        t0 = t()
        # Pixels at full size only when the registry fingerprints them; the watermark detector works
        # on a copy whose short side is at most 256 px, so a JPEG decoded by DCT scaling to a short
        # side >= 512 px gives it the same information far faster; with neither, decoding only proves
        # the bytes are an intact image (DCT scaling still reads every scan, so truncation shows).
        from_manifest = (cfg.watermark and not cfg.watermark_when_trusted and out.c2pa
                         and out.c2pa.get("state") == "trusted" and out.c2pa.get("soft_binding"))
        pixels_for_wm = cfg.watermark and not from_manifest
        need = None if (cfg.registry_path and cfg.fingerprint_match) else (DRAFT_SHORT_SIDE if pixels_for_wm else 64)
        try:
            # C2PA only (need 64): the decode is the proof the bytes are an intact image; no pixels kept.
            # For the watermark alone the picture is decoded to its luma plane, the channel the mark
            # lives in (a JPEG's own Y: no chroma upsampling or colour conversion, ~3x faster).
            rgb = _decode(source, need, pixels=need != 64, luma=need == DRAFT_SHORT_SIDE)
        except MediaError as exc:
            out.error = str(exc).replace("input: ", "", 1)
            return out
        except Exception as exc:  # decoder crash on hostile input: still unreadable, with a reason
            out.error = f"cannot decode image: {type(exc).__name__}: {exc}"
            return out
        out.timings["decode_ms"] = round((t() - t0) * 1000, 2)
        if from_manifest:
            out.watermark = {"detected": True, "payload": str(out.c2pa["soft_binding"]),
                             "source": "manifest soft binding (pixels not searched)"}
        elif cfg.watermark and rgb is not None and min(rgb.shape[:2]) < (floor := _min_detect_short()):
            out.watermark = {"detected": False, "payload": None,
                             "skipped": f"too small to carry a readable watermark "
                                        f"(short side {min(rgb.shape[:2])} px < {floor} px)"}
        elif cfg.watermark:
            t0 = t()
            trusted = bool(out.c2pa and out.c2pa.get("state") == "trusted")
            search = "own" if cfg.watermark_search == "own" or (cfg.watermark_search == "auto" and trusted) else "full"
            try:
                detect = _detector("watermark")
                out.watermark = _watermark_dict(detect(rgb, key=cfg.watermark_key, search=search))
                if search == "own":
                    if not out.watermark["detected"] and trusted and out.c2pa.get("soft_binding"):
                        # The manifest says the pixels carry a mark and the quick look did not see
                        # it (e.g. cropped after marking, before signing): search everywhere.
                        out.watermark = _watermark_dict(detect(rgb, key=cfg.watermark_key, search="full"))
                    else:
                        out.watermark["search"] = "own"
            except ImportError as exc:
                out.watermark = _wm_unavailable(exc)
            except (MediaError, ValueError) as exc:
                out.watermark = {"detected": False, "payload": None, "skipped": str(exc)}
            out.timings["watermark_ms"] = round((t() - t0) * 1000, 2)
        if cfg.registry_path and cfg.fingerprint_match:
            t0 = t()
            from provenance import fingerprint

            out.training_match = _match_dict(_registry().best_match(fingerprint(rgb)))
            out.timings["registry_ms"] = round((t() - t0) * 1000, 2)
    elif kind == "video":
        if cfg.watermark:
            t0 = t()
            try:
                out.watermark = _watermark_dict(_detector("watermark.video")(source, key=cfg.watermark_key))
            except ImportError as exc:
                out.watermark = _wm_unavailable(exc)
            except (MediaError, ValueError, OSError) as exc:
                out.error = f"cannot decode video: {exc}"
                return out
            except Exception as exc:  # PyAV raises its own error types for corrupt containers
                out.error = f"cannot decode video: {type(exc).__name__}: {exc}"
                return out
            out.timings["watermark_ms"] = round((t() - t0) * 1000, 2)
        else:
            err = _probe_video(source)
            if err:
                out.error = err
                return out
        if cfg.registry_path and cfg.fingerprint_match:
            t0 = t()
            from provenance.fingerprints import video_fingerprints

            try:
                matches = _registry().match_video(video_fingerprints(source))
            except (MediaError, ValueError, OSError) as exc:
                out.error = f"cannot decode video: {exc}"
                return out
            out.training_match = _match_dict(matches[0]) if matches else None
            out.timings["registry_ms"] = round((t() - t0) * 1000, 2)
    elif kind == "audio":
        ok = sniffed in AUDIO_MIMES or (sniffed is None and claimed in ("audio/mp4",))
        err = _c2pa_only_media(out.c2pa, "audio", claimed or "audio", sniffed, ok)
        if err:
            out.error = err
            return out
    else:
        out.error = f"unsupported media type {actual or 'unknown'}"
    return out


def _c2pa_only_media(c2pa: dict[str, Any] | None, what: str, claimed: str, sniffed: str | None,
                     looks_right: bool) -> str | None:
    """Why an object checked by C2PA alone (audio, SVG) is unreadable, or None.

    ``looks_right``: the sniffed content matches the claimed type. C2PA is the only parser such
    objects go through: if it cannot read the file, nothing can."""
    if not looks_right:
        return f"bytes do not look like {claimed} (content sniffed as {sniffed or 'unknown'})"
    if c2pa and c2pa.get("state") == "error":
        return f"cannot read {what}: {c2pa.get('reason') or 'unreadable'}"
    return None


DRAFT_SHORT_SIDE = 512
SNIFF_BYTES = 1024  # enough for any signature sniff_mime knows (an SVG's XML prolog included)


def _decode(source: bytes | str, min_short: int | None, *, pixels: bool = True, luma: bool = False):
    """Decode through ``provenance.media.decode_image``; JPEGs at reduced size when allowed.

    ``pixels=False``: decode (every scan is still read, so truncation and corrupt data show) but
    return None instead of converting to an RGB array nobody will look at. ``luma=True``: 8-bit
    pictures come back as their HxW luma plane (a JPEG's own Y, decoded without its chroma)."""
    from provenance.media import _register_heif, decode_image

    if min_short is None:
        return decode_image(source)
    import io

    from PIL import Image

    _register_heif()  # HEIC/AVIF open through pillow-heif, as in decode_image
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)
        if img.format == "JPEG":
            w, h = img.size
            short = min(w, h)
            scale = min_short / short if short > 2 * min_short else 1.0
            gray = luma and img.mode in ("L", "RGB")  # YCbCr or gray JPEGs (not CMYK/YCCK)
            if scale < 1.0 or gray:
                img.draft("L" if gray else "RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        img.load()
    except Exception as exc:  # Pillow raises many types for bad input: the reason is what matters
        from provenance.media import decode_reason

        raise MediaError(f"cannot decode image: {decode_reason(exc)}") from None
    if pixels and luma and img.mode in ("L", "LA", "P", "RGB", "RGBA"):
        # Pillow's own BT.601 luma (8-bit palette, grey and RGB pictures; 16-bit and CMYK ones go
        # through decode_image): the detector never needs the three channels.
        import numpy as np
        from PIL import ImageOps

        img = ImageOps.exif_transpose(img)
        return np.ascontiguousarray(np.asarray(img if img.mode == "L" else img.convert("L"), dtype=np.uint8))
    return decode_image(img) if pixels else None


def _probe_video(source: bytes | str) -> str | None:
    import io

    try:
        import av

        with av.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as c:
            if not c.streams.video:
                return "no video stream"
    except Exception as exc:
        return f"cannot decode video: {exc}"
    return None


def check_task(source: bytes | str, mime: str | None, key: str = "") -> CheckOutcome:
    """Process-pool entry point (timed in the worker process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = check(source, mime, key)
    out.timings["check_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    # CPU time apart from wall time: on a busy machine the two differ, and CPU is what a bigger
    # machine divides among more processes.
    out.timings["check_cpu_ms"] = round((time.process_time() - c0) * 1000, 2)
    return out
