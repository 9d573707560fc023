"""Writing marked images: keep the format the output name asks for, alpha and 16-bit included."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def save_image(arr: np.ndarray, path: str | os.PathLike) -> None:
    """Save an array (gray, RGB, RGBA; uint8 or uint16) by the extension of ``path``.

    JPEG is written at quality 95 (the mark survives far lower, but the picture should not pay
    for it twice); formats that cannot hold alpha or 16 bits get the nearest they can hold.
    """
    from PIL import Image

    ext = Path(path).suffix.lower()
    if arr.dtype == np.uint16:
        if ext in (".png", ".tif", ".tiff") and arr.ndim == 2:
            Image.fromarray(arr).save(path)
            return
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    if ext in (".jpg", ".jpeg", ".jpe"):
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        img.save(path, quality=95)
    elif ext == ".webp":
        img.save(path, quality=95)
    else:
        img.save(path)
