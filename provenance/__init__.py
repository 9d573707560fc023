"""provenance: prove where generated media came from.

C2PA content credentials (sign at generation time, verify on upload) live here; perceptual
fingerprints join them in ``fingerprints``/``registry``. Each engineer adds one export line below.
"""
from __future__ import annotations

from .media import MediaError
from .signing import Signer, SigningError, sign, supported_mimes
from .verification import STATES, Verification, verify
from . import certs
from .fingerprints import Fingerprint, fingerprint  # issue 5
from .registry import Registry  # issue 5

__all__ = ["MediaError", "Signer", "SigningError", "sign", "supported_mimes", "STATES", "Verification",
           "verify", "certs", "Fingerprint", "fingerprint", "Registry"]
