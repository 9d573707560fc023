"""One way to turn "a path, bytes or a binary stream" into bytes, a MIME type and pixels.

Every room (provenance, watermark, s3sync, the CLI) reads media through these helpers, so an S3
object body, an upload held in memory and a file on disk take the same path and need no temp files.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

# MIME types C2PA signing/reading round-trips here (see ../shared/notes/c2pa-python.md).
EXT_TO_MIME: dict[str, str] = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".jpe": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".tif": "image/tiff", ".tiff": "image/tiff",
    ".gif": "image/gif",
    ".avif": "image/avif",
    ".heic": "image/heic", ".heif": "image/heif",
    ".svg": "image/svg+xml",
    ".mp4": "video/mp4", ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".pdf": "application/pdf",
}
MIME_TO_EXT: dict[str, str] = {}
for _ext, _mime in EXT_TO_MIME.items():
    MIME_TO_EXT.setdefault(_mime, _ext)
# Aliases that clients and S3 uploaders use for the same formats.
MIME_ALIASES: dict[str, str] = {
    "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png",
    "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav",
    "audio/mp3": "audio/mpeg", "audio/x-flac": "audio/flac", "image/x-tiff": "image/tiff",
    "video/avi": "video/x-msvideo", "application/x-pdf": "application/pdf",
}

IMAGE_MIMES = frozenset(m for m in EXT_TO_MIME.values() if m.startswith("image/"))
VIDEO_MIMES = frozenset(m for m in EXT_TO_MIME.values() if m.startswith("video/"))
AUDIO_MIMES = frozenset(m for m in EXT_TO_MIME.values() if m.startswith("audio/"))
MEDIA_MIMES = IMAGE_MIMES | VIDEO_MIMES | AUDIO_MIMES


class MediaError(ValueError):
    """Input that is not usable media (empty, truncated, undecodable, unknown type)."""


def normalize_mime(mime: str | None) -> str | None:
    """Lower-case, strip parameters (``image/jpeg; charset=x``) and map aliases."""
    if not mime:
        return None
    m = mime.split(";", 1)[0].strip().lower()
    return MIME_ALIASES.get(m, m) or None


def mime_from_name(name: str | os.PathLike | None) -> str | None:
    """MIME type from a file name or S3 key extension, or None."""
    if not name:
        return None
    return EXT_TO_MIME.get(Path(str(name)).suffix.lower())


def read_source(source: Source) -> tuple[bytes, str | None]:
    """Return ``(data, name)``: the whole content and the path it came from (None for bytes/streams).

    ``"-"`` reads standard input. Streams are read from their current position.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None
    if isinstance(source, (str, os.PathLike)):
        if str(source) == "-":
            import sys
            return sys.stdin.buffer.read(), None
        p = Path(source)
        if p.is_dir():
            raise MediaError(f"{p}: is a directory")
        return p.read_bytes(), str(p)
    if hasattr(source, "read"):
        data = source.read()
        if isinstance(data, str):
            raise MediaError("stream is in text mode; open it with 'rb'")
        return bytes(data), getattr(source, "name", None) if isinstance(getattr(source, "name", None), str) else None
    raise TypeError(f"expected a path, bytes or a binary stream, got {type(source).__name__}")


def sniff_mime(data: bytes, name: str | os.PathLike | None = None) -> str | None:
    """MIME type from the leading bytes (magic numbers); falls back to the name's extension.

    Content wins over the name, so a ``.jpg`` that is really a PNG is treated as PNG.
    """
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and len(head) >= 12:
        kind = head[8:12]
        if kind == b"WEBP":
            return "image/webp"
        if kind == b"WAVE":
            return "audio/wav"
        if kind == b"AVI ":
            return "video/x-msvideo"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:5] == b"%PDF-":
        return "application/pdf"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0):
        return "audio/mpeg"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "image/heic"
        if brand == b"qt  ":
            return "video/quicktime"
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        return "video/mp4"
    stripped = head.lstrip()
    if stripped.startswith(b"<svg") or (stripped.startswith((b"<?xml", b"<!--", b"<!DOCTYPE svg"))
                                        and b"<svg" in data[:1024]):
        return "image/svg+xml"
    return mime_from_name(name)


def decode_reason(exc: BaseException) -> str:
    """Pillow's reason for a failed decode, without its object reprs ("<_io.BytesIO object at 0x...>")."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"
    return str(exc) or type(exc).__name__


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L")  # Pillow's 16-bit grayscale (PNG, TIFF)


def decode_image(source: Source | np.ndarray, *, keep_alpha: bool = False, keep_depth: bool = False,
                 single_frame: bool = False) -> np.ndarray:
    """Decode an image to an HxWx3 uint8 RGB array (HxWx4 RGBA with ``keep_alpha``).

    ``keep_depth``: a 16-bit grayscale picture comes back as it is, an HxW uint16 array (for
    callers that write the picture back, such as the watermark embedder). ``single_frame``: an
    animation or a multi-page file is a MediaError instead of its first frame (a caller that writes
    the picture back would silently drop the others). Accepts a path, bytes, a
    stream, a Pillow image or an array. Raises :class:`MediaError` with the decoder's reason for
    empty, truncated or non-image input.
    """
    from PIL import Image, ImageOps

    if isinstance(source, np.ndarray):
        return source
    name = None
    if isinstance(source, Image.Image):
        img = source
    else:
        data, name = read_source(source)
        if not data:
            raise MediaError(f"{name or 'input'}: empty file")
        _register_heif()
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Exception as exc:  # Pillow raises many types for bad input
            raise MediaError(f"{name or 'input'}: cannot decode image: {decode_reason(exc)}") from None
    if single_frame and getattr(img, "n_frames", 1) > 1:
        raise MediaError(f"{name or 'input'}: has {img.n_frames} frames (an animation or pages); only "
                         "single-frame images can be written back marked")
    img = ImageOps.exif_transpose(img)
    mode = "RGBA" if keep_alpha and ("A" in img.getbands() or "transparency" in img.info) else "RGB"
    if keep_depth and img.mode in SIXTEEN_BIT_MODES:
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint16))
    if img.mode in SIXTEEN_BIT_MODES + ("I",) and mode == "RGB":
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit modes span 0..65535 however dark the picture; 32-bit "I" has no stated range
        peak = 65535.0 if img.mode in SIXTEEN_BIT_MODES or arr.max() > 255 else 255.0
        gray = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
    return np.ascontiguousarray(np.asarray(img.convert(mode), dtype=np.uint8))


_HEIF_REGISTERED = False


def _register_heif() -> None:
    """Let Pillow open HEIC/AVIF through pillow-heif when it is installed."""
    global _HEIF_REGISTERED
    if _HEIF_REGISTERED:
        return
    _HEIF_REGISTERED = True
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        if hasattr(pillow_heif, "register_avif_opener"):
            pillow_heif.register_avif_opener()
    except Exception:  # optional codec support
        pass
