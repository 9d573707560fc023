"""Pure status rules: from check outcomes to one audit status (no I/O, easy to test exhaustively).

Precedence, highest first:
1. ``unreadable``: the object could not be fetched after retries, or its bytes do not decode as the
   media type it claims (the error carries the reason).
2. ``leaked_training_asset``: the registry matched a training asset (whatever its provenance).
3. By C2PA state: ``trusted`` -> ``ok`` (a watermark too is fine); ``invalid`` -> ``invalid_provenance``
   (tampered); ``valid_untrusted`` -> ``untrusted``. A manifest that is present but cannot be read
   (state ``error``) counts as ``invalid_provenance``: something claims provenance and it does not hold.
4. No manifest (``missing`` / ``unsupported`` / none): our watermark -> ``watermark_only``,
   else ``missing_provenance``.
"""
from __future__ import annotations

from typing import Any, Mapping

from .models import STATUSES

C2PA_STATES = ("trusted", "valid_untrusted", "invalid", "missing", "unsupported", "error")


def classify(c2pa_state: str | None, watermark_detected: bool | None = False,
             training_match: Mapping[str, Any] | object | None = None, error: str | None = None) -> str:
    """Return the status of one object (one of :data:`s3sync.models.STATUSES`)."""
    if error:
        return "unreadable"
    if training_match:
        return "leaked_training_asset"
    state = (c2pa_state or "missing").lower()
    if state == "trusted":
        return "ok"
    if state in ("invalid", "error"):
        return "invalid_provenance"
    if state in ("valid_untrusted", "valid", "untrusted"):
        return "untrusted"
    return "watermark_only" if watermark_detected else "missing_provenance"


assert set(STATUSES) >= {classify(s, w, m, e) for s in C2PA_STATES + (None,) for w in (True, False)
                         for m in (None, {"a": 1}) for e in (None, "x")}
