"""Video: mark every frame, detect by voting over a sample of frames (PyAV).

Why per frame with the same payload: every frame then carries the whole mark, so any clip cut
from the video, or any single frame grabbed from it, still detects. Audio and other streams are
remuxed untouched; the frame rate and timestamps are kept.
"""
from __future__ import annotations

import io
import os
from collections import Counter
from typing import Any

import numpy as np

from . import Detection, _image, effective_key
from . import embed as _embed_image
from . import detect as _detect_image


def _open(source: Any):
    import av

    if isinstance(source, (bytes, bytearray, memoryview)):
        return av.open(io.BytesIO(bytes(source)))
    if hasattr(source, "read"):
        return av.open(source)
    return av.open(os.fspath(source))


def embed(in_path: Any, out_path: str | os.PathLike, payload: bytes, key: bytes | None = None) -> int:
    """Mark every frame of ``in_path`` into ``out_path`` (MP4/MOV, H.264). Returns frames written."""
    import av

    src = _open(in_path)
    try:
        vin = next((s for s in src.streams if s.type == "video"), None)
        if vin is None:
            raise ValueError("input has no video stream")
        h, w = vin.codec_context.height, vin.codec_context.width
        if min(h, w) < _image.MIN_EMBED_SHORT:
            raise ValueError(f"video is {w}x{h}; embedding needs at least {_image.MIN_EMBED_SHORT} px on the short side")
        others = [s for s in src.streams if s.type == "audio"]
        dst = av.open(os.fspath(out_path), "w")
        try:
            rate = vin.average_rate or vin.guessed_rate or 25
            vout = dst.add_stream("libx264", rate=rate)
            vout.width, vout.height = w, h
            vout.pix_fmt = "yuv420p"
            vout.time_base = vin.time_base
            vout.options = {"crf": "18", "preset": "medium"}
            amap = {}
            for s in others:
                amap[s.index] = dst.add_stream_from_template(s)
            frames = 0
            for packet in src.demux([vin, *others]):
                if packet.stream.index in amap:
                    if packet.dts is None:
                        continue
                    packet.stream = amap[packet.stream.index]
                    dst.mux(packet)
                    continue
                for frame in packet.decode():
                    rgb = frame.to_ndarray(format="rgb24")
                    marked = _embed_image(rgb, payload, key=key)
                    nf = av.VideoFrame.from_ndarray(marked, format="rgb24")
                    nf.pts, nf.time_base = frame.pts, frame.time_base
                    for p in vout.encode(nf):
                        dst.mux(p)
                    frames += 1
            for p in vout.encode():
                dst.mux(p)
        finally:
            dst.close()
    finally:
        src.close()
    return frames


def detect(path_or_bytes: Any, key: bytes | None = None, max_frames: int = 12) -> Detection:
    """Detect on up to ``max_frames`` frames spread over the video; the payload most frames agree on wins.

    The false-positive bound is the per-image bound times the number of frames examined.
    """
    _, kind = effective_key(key)
    src = _open(path_or_bytes)
    try:
        vin = next((s for s in src.streams if s.type == "video"), None)
        if vin is None:
            raise ValueError("input has no video stream")
        total = vin.frames or 0
        frames: list[np.ndarray] = []
        step = max(1, total // max_frames) if total else 1
        for i, frame in enumerate(src.decode(vin)):
            if i % step == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= max_frames:
                    break
    finally:
        src.close()
    votes: Counter[bytes] = Counter()
    errors: dict[bytes, int] = {}
    for rgb in frames:
        d = _detect_image(rgb, key=key)
        if d.detected and d.payload is not None:
            votes[d.payload] += 1
            errors[d.payload] = min(errors.get(d.payload, 10**9), d.bit_errors or 0)
    fp = _image.false_positive_probability() * max(1, len(frames))
    if not votes:
        return Detection(False, None, None, fp, kind)
    payload, _ = votes.most_common(1)[0]
    return Detection(True, payload, errors[payload], fp, kind)
