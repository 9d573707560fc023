"""Watermark keys: the built-in public key, key files, and the --key-file > env > public rule.

Why keyed: the key seeds the chip pattern, the sync pattern, the bit scrambling and the payload
check, so without it nobody can read or forge the payload, and two keys do not cross-detect.
The public key is a constant anyone can derive (``sha256("synthguard public watermark key v1")``)
so that any audit can detect marks made with it.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Union

KEY_BYTES = 32
ENV_VAR = "SYNTHGUARD_WATERMARK_KEY_FILE"
PUBLIC_KEY = hashlib.sha256(b"synthguard public watermark key v1").digest()

KeySource = Union[str, os.PathLike, bytes, bytearray]


def load_key(source: KeySource) -> bytes:
    """A key file's contents (or the file at a path) -> 32 key bytes.

    Accepts the raw 32 bytes or 64 hex characters with optional surrounding whitespace, which is
    what ``synthguard keys init`` writes.
    """
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        where = "key"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read key file {path}: {exc.strerror or exc}") from None
        where = str(path)
    if len(data) == KEY_BYTES:
        return data
    text = data.strip()
    if re.fullmatch(rb"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text.decode("ascii"))
    raise ValueError(f"{where}: a watermark key is 32 raw bytes or 64 hex characters")


def resolve_key(key_file: str | os.PathLike | None = None) -> tuple[bytes | None, str]:
    """--key-file, else $SYNTHGUARD_WATERMARK_KEY_FILE, else the public key -> (key or None, kind)."""
    path = key_file or os.environ.get(ENV_VAR) or None
    if path:
        return load_key(path), "secret"
    return None, "public"


def effective_key(key: bytes | None) -> tuple[bytes, str]:
    if key is None:
        return PUBLIC_KEY, "public"
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise ValueError("key must be non-empty bytes (use load_key to read a key file)")
    key = bytes(key)
    return key, ("public" if key == PUBLIC_KEY else "secret")
