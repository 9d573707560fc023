"""Undo a stored ``Content-Encoding`` (gzip, deflate) the way an HTTP client does, before the checks.

Why: S3 keeps Content-Encoding as object metadata and serves the stored (compressed) bytes with it;
browsers, CDN clients and HTTP libraries decode them, so the media people see, and the bytes that
must carry the provenance, are the decoded ones. Decoding is bounded: a small object that expands
past ``limit`` bytes (a decompression bomb) is an error, never a full disk or memory.
"""
from __future__ import annotations

import os
import tempfile
import zlib
from typing import Callable, Iterator

# Encodings that leave the bytes as they are ("aws-chunked" is an upload framing some SDKs leave
# behind in the metadata; the stored bytes are already plain).
IDENTITY = frozenset({"", "identity", "aws-chunked"})
# zlib window bits that accept a gzip or a zlib header (HTTP "deflate" is zlib-wrapped).
_AUTO_HEADER = zlib.MAX_WBITS | 32
ZLIB_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})
CHUNK = 1 << 20


class ContentEncodingError(ValueError):
    """The bytes cannot be decoded as their Content-Encoding says (or expand past the limit)."""


def codings(header: str | None) -> list[str]:
    """The encodings to undo, in the order they were applied (identity ones dropped)."""
    return [c for c in (p.strip().lower() for p in (header or "").split(",")) if c not in IDENTITY]


def decode(source: bytes | str, header: str | None, *, limit: int, max_inline: int,
           tmp_dir: str | None = None) -> bytes | str:
    """``source`` (bytes, or the path of a temp file) with ``header``'s encodings undone.

    Returns bytes when the decoded object fits ``max_inline``, else the path of a new temp file
    (the caller owns both it and ``source``). Raises :class:`ContentEncodingError`.
    """
    cods = codings(header)
    if not cods:
        return source
    unknown = [c for c in cods if c not in ZLIB_CODINGS]
    if unknown:
        raise ContentEncodingError(f"Content-Encoding {', '.join(unknown)} is not supported (gzip and deflate are)")
    data_or_path = source
    for coding in reversed(cods):  # the last one applied comes off first
        nxt = _inflate(_chunks(data_or_path), coding, limit=limit, max_inline=max_inline, tmp_dir=tmp_dir)
        if data_or_path is not source and isinstance(data_or_path, str):
            os.unlink(data_or_path)
        data_or_path = nxt
    return data_or_path


def _chunks(source: bytes | str) -> Iterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield bytes(source)
        return
    with open(source, "rb") as fh:
        while block := fh.read(CHUNK):
            yield block


def _inflate(blocks: Iterator[bytes], coding: str, *, limit: int, max_inline: int,
             tmp_dir: str | None) -> bytes | str:
    """Inflate ``blocks`` into memory while the result stays under ``max_inline``, then spill to a
    temp file; at most ``limit`` bytes in all."""
    d = zlib.decompressobj(_AUTO_HEADER)
    parts: list[bytes] = []
    held = total = 0
    fh = None
    path = None

    def emit(out: bytes) -> None:
        nonlocal held, total, fh, path
        total += len(out)
        if total > limit:
            raise ContentEncodingError(f"Content-Encoding {coding}: the object expands past {limit} bytes "
                                       "(a decompression bomb?); not checked")
        if fh is None and held + len(out) <= max_inline:
            parts.append(out)
            held += len(out)
            return
        if fh is None:
            fd, path = tempfile.mkstemp(prefix="synthguard-audit-", suffix=".decoded", dir=tmp_dir)
            fh = os.fdopen(fd, "wb")
            fh.writelines(parts)
            parts.clear()
        fh.write(out)

    try:
        try:
            for block in blocks:
                _feed(d, block, emit)
                if d.eof:
                    break
            emit(d.flush())
        except zlib.error as exc:
            raise ContentEncodingError(f"Content-Encoding {coding}: the bytes do not decode ({exc})") from None
        if not d.eof:
            raise ContentEncodingError(f"Content-Encoding {coding}: the compressed stream is truncated")
    except BaseException:
        if fh is not None:
            fh.close()
            os.unlink(path)
        raise
    if fh is not None:
        fh.close()
        return path
    return b"".join(parts)


def _feed(d: "zlib._Decompress", block: bytes, emit: Callable[[bytes], None]) -> None:
    """Decompress one input block in bounded output steps (a bomb never lands in memory at once)."""
    while block:
        emit(d.decompress(block, CHUNK))
        block = d.unconsumed_tail
