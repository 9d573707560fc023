"""Verify C2PA content credentials on upload: one call, one small value, never an exception for bad media.

``verify`` is what S3 workers call per object, so it opens one Reader per call (safe in worker
processes), caches the trust Context per process and anchor set, and maps every c2pa outcome
(including its exceptions for garbage, truncation and missing manifests) onto six states.
"""
from __future__ import annotations

import base64
import io
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

import c2pa

from .media import EXT_TO_MIME, MediaError, Source, normalize_mime, read_source, sniff_mime
from .signing import (GENERATOR_LABEL, IPTC, SOFT_BINDING_ALG, process_context, sidecar_path, supported_mimes,
                      supported_set)

STATES = ("trusted", "valid_untrusted", "invalid", "missing", "unsupported", "error")
# digitalSourceType values that mean "made by a trained model" (IPTC), in whole or in part.
AI_SOURCE_TYPES = frozenset(IPTC + t for t in (
    "trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "compositeSynthetic",
    "trainedAlgorithmicData"))

TrustAnchors = Union[str, bytes, os.PathLike, None]


@dataclass(frozen=True)
class Verification:
    """The C2PA verdict for one asset.

    ``state``: trusted (valid, chain ends at a trust anchor), valid_untrusted (valid, unknown signer),
    invalid (tampered or bad signature; see ``codes``), missing (no manifest), unsupported (a type
    C2PA cannot carry here), error (unreadable input; see ``reason``).
    """

    state: str
    codes: tuple[str, ...] = ()
    ai_generated: Optional[bool] = None
    model: Optional[str] = None
    model_version: Optional[str] = None
    signer: Optional[str] = None
    signed_at: Optional[str] = None
    reason: Optional[str] = None
    soft_binding: Optional[str] = None
    mime: Optional[str] = None

    @property
    def ok(self) -> bool:
        """True for ``trusted`` only."""
        return self.state == "trusted"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["codes"] = list(self.codes)
        return d

    def __str__(self) -> str:
        extra = f" ({', '.join(self.codes)})" if self.codes else ""
        why = f": {self.reason}" if self.reason and self.state in ("error", "invalid", "unsupported") else ""
        return f"{self.state}{extra}{why}"


# ----------------------------------------------------------------------------- trust contexts
_ANCHOR_FILES: dict[str, tuple[float, tuple[int, int], bytes]] = {}  # path -> (checked, (mtime, size), pem)


def _anchor_pem(trust_anchors: TrustAnchors) -> Optional[bytes]:
    if trust_anchors is None:
        return None
    if isinstance(trust_anchors, bytes):
        pem = trust_anchors
    elif isinstance(trust_anchors, str) and "-----BEGIN" in trust_anchors:
        pem = trust_anchors.encode()
    else:
        # Re-check the file at most once a second: a syscall per verify is measurable next to a
        # 2 ms native read, yet a long-running worker should still see an updated anchor file.
        path = str(trust_anchors)
        now = time.monotonic()
        hit = _ANCHOR_FILES.get(path)
        if hit is not None and now - hit[0] < 1.0:
            pem = hit[2]
        else:
            p = Path(path)
            st = p.stat()  # FileNotFoundError is a usage error for the caller
            sig = (st.st_mtime_ns, st.st_size)
            pem = hit[2] if hit is not None and hit[1] == sig else p.read_bytes()
            _ANCHOR_FILES[path] = (now, sig, pem)
    if b"-----BEGIN CERTIFICATE" not in pem:
        raise ValueError(f"trust anchors {trust_anchors if not isinstance(trust_anchors, bytes) else ''}"
                         " contain no PEM certificate")
    return pem


def reader_context(trust_anchors: TrustAnchors = None) -> c2pa.Context:
    """The process's Reader Context for a trust-anchor set (default c2pa trust when None)."""
    pem = _anchor_pem(trust_anchors)

    def make() -> c2pa.Context:
        if pem is None:
            return c2pa.Context()
        return c2pa.Context.from_dict({"trust": {"user_anchors": pem.decode()}})

    return process_context(("reader", pem), make)


# ----------------------------------------------------------------------------- verify
def verify(source: Source, *, trust_anchors: TrustAnchors = None, mime: str | None = None,
           manifest_data: bytes | None = None) -> Verification:
    """Validate the C2PA manifest of ``source`` (path, bytes or binary stream).

    ``trust_anchors``: PEM path, PEM bytes/str or None. ``manifest_data``: a sidecar ``.c2pa``; for a
    path without an embedded manifest, ``<stem>.c2pa`` next to it is used when present (as c2patool
    does). Never raises for bad media; a missing trust-anchor file raises FileNotFoundError.
    """
    ctx = reader_context(trust_anchors)
    stream: BinaryIO
    name: Optional[str] = None
    fh = None
    try:
        if isinstance(source, (str, os.PathLike)) and str(source) != "-":
            p = Path(source)
            name = str(p)
            try:
                fh = open(p, "rb")
            except IsADirectoryError:
                return Verification("error", reason=f"{p}: is a directory")
            except OSError as exc:
                return Verification("error", reason=f"{p}: {exc.strerror or exc}")
            head = fh.read(1024)
            fh.seek(0)
            stream = fh
        else:
            try:
                data, name = read_source(source)
            except (MediaError, TypeError) as exc:
                return Verification("error", reason=str(exc))
            head = data[:1024]
            stream = io.BytesIO(data)
        if not head:
            return Verification("error", reason="empty file")
        fmt = normalize_mime(mime) or sniff_mime(head, name)
        if fmt is None:
            ext = Path(name).suffix.lower() if name else ""
            if ext and ext not in EXT_TO_MIME:
                return Verification("unsupported", reason=f"unsupported file type {ext!r}; supported "
                                                          f"types: {', '.join(supported_mimes())}")
            return Verification("error", reason="not a recognised media file (unknown format)")
        if fmt not in supported_set():
            return Verification("unsupported", mime=fmt, reason=f"C2PA is not supported for {fmt} here; "
                                f"supported types: {', '.join(supported_mimes())}")
        if manifest_data is not None:
            manifest_data = bytes(manifest_data)
        if manifest_data is None and name and fh is not None:
            sc = sidecar_path(name)
            if sc != Path(name) and sc.is_file():
                reader = _read(fmt, stream, None, ctx)
                if isinstance(reader, Verification) and reader.state == "missing":
                    stream.seek(0)
                    return _from_reader(_read(fmt, stream, sc.read_bytes(), ctx), fmt)
                return _from_reader(reader, fmt)
        return _from_reader(_read(fmt, stream, manifest_data, ctx), fmt)
    finally:
        if fh is not None:
            fh.close()


def _read(fmt: str, stream: BinaryIO, manifest_data: bytes | None,
          ctx: c2pa.Context) -> "dict[str, Any] | Verification":
    """Run the native reader; return its parsed JSON or a Verification for the failure."""
    try:
        reader = c2pa.Reader(fmt, stream, manifest_data, context=ctx)
    except c2pa.C2paError.ManifestNotFound:
        return Verification("missing", mime=fmt, reason="no C2PA manifest")
    except _DAMAGED as exc:
        code = _damage_code(exc)
        return Verification("invalid", codes=(code,), mime=fmt,
                            reason=f"{code}: manifest present but damaged: {_first_line(exc)}")
    except c2pa.C2paError.NotSupported as exc:
        return Verification("error", mime=fmt, reason=f"cannot read this {fmt} file (corrupt or "
                            f"mislabelled?): {_first_line(exc)}")
    except c2pa.C2paError.RemoteManifest as exc:
        return Verification("error", mime=fmt, reason=f"remote manifest not fetched: {_first_line(exc)}")
    except c2pa.C2paError as exc:
        msg = _first_line(exc)
        low = msg.lower()
        if "jumbf" in low or "provenance not found" in low:  # the manifest store is broken, not the asset
            return Verification("invalid", codes=("claim.malformed",), mime=fmt,
                                reason=f"claim.malformed: manifest present but damaged: {msg}")
        if msg.lower().startswith("remote"):
            return Verification("error", mime=fmt, reason=f"remote manifest not fetched: {msg}")
        return Verification("error", mime=fmt, reason=f"cannot read this {fmt} file (corrupt or "
                            f"truncated?): {msg}")
    except Exception as exc:  # ctypes/stream errors: still a row, never a traceback
        return Verification("error", mime=fmt, reason=f"{type(exc).__name__}: {exc}")
    try:
        return json.loads(reader.json())
    except Exception as exc:
        return Verification("error", mime=fmt, reason=f"unreadable manifest store: {exc}")
    finally:
        reader.close()


# Native errors that mean "a manifest is there but damaged": reported as invalid, not as unreadable
# input, so an audit can tell tampering from a broken upload.
_DAMAGED = (c2pa.C2paError.Verify, c2pa.C2paError.AssertionNotFound, c2pa.C2paError.Assertion,
            c2pa.C2paError.Decoding, c2pa.C2paError.Signature, c2pa.C2paError.Json,
            c2pa.C2paError.Manifest)


def _damage_code(exc: BaseException) -> str:
    """A C2PA validation code for a native read failure of a damaged manifest."""
    msg = str(exc).lower()
    if isinstance(exc, c2pa.C2paError.AssertionNotFound):
        return "assertion.missing"
    if isinstance(exc, c2pa.C2paError.Signature):
        return "signingCredential.invalid" if "certificate" in msg else "claimSignature.mismatch"
    if isinstance(exc, c2pa.C2paError.Decoding):
        return "assertion.cbor.invalid" if "assertion" in msg else "claim.cbor.invalid"
    if "signature box" in msg:
        return "claimSignature.missing"
    return "claim.malformed"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _from_reader(result: "dict[str, Any] | Verification", fmt: str) -> Verification:
    if isinstance(result, Verification):
        return result
    store = result
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) if label else None
    vstate = store.get("validation_state")
    failures = _failure_entries(store)
    codes = tuple(dict.fromkeys(f.get("code") for f in failures if f.get("code")))
    if vstate == "Trusted":
        state = "trusted"
    elif vstate == "Valid":
        state = "valid_untrusted"
    elif vstate == "Invalid":
        state = "invalid"
    else:
        state = "invalid" if any(c != "signingCredential.untrusted" for c in codes) else "valid_untrusted"
    reason = None
    if state == "invalid":
        bad = [f for f in failures if f.get("code") != "signingCredential.untrusted"] or failures
        reason = "; ".join(dict.fromkeys(f"{f.get('code')}: {f.get('explanation', '')}".rstrip(": ")
                                         for f in bad[:3])) or "manifest failed validation"
    elif state == "valid_untrusted":
        reason = "signer not in the trust anchors"
    if manifest is None:
        return Verification(state if state != "trusted" else "invalid", codes, mime=fmt,
                            reason=reason or "no active manifest")
    info = _manifest_facts(manifest)
    return Verification(state, codes, mime=fmt, reason=reason, **info)


def _failure_entries(store: dict[str, Any]) -> list[dict[str, Any]]:
    results = store.get("validation_results")
    if isinstance(results, dict):
        out = list((results.get("activeManifest") or {}).get("failure") or [])
        for delta in results.get("ingredientDeltas") or []:
            out.extend(((delta.get("validationDeltas") or {}).get("failure")) or [])
        return out
    status = store.get("validation_status") or []
    return [s for s in status if isinstance(s, dict)]


def _manifest_facts(m: dict[str, Any]) -> dict[str, Any]:
    gen: dict[str, Any] = {}
    actions: list[dict[str, Any]] = []
    soft: Optional[str] = None
    for a in m.get("assertions") or []:
        lbl = a.get("label", "")
        data = a.get("data") or {}
        if lbl == GENERATOR_LABEL and isinstance(data, dict):
            gen = data
        elif lbl.startswith("c2pa.actions") and isinstance(data, dict):
            actions.extend(x for x in data.get("actions") or [] if isinstance(x, dict))
        elif lbl.startswith("c2pa.soft-binding") and isinstance(data, dict) and soft is None:
            soft = _soft_binding_hex(data)
    ai = any(x.get("digitalSourceType") in AI_SOURCE_TYPES for x in actions)
    model = gen.get("model")
    version = gen.get("model_version")
    if model is None:
        for x in actions:
            agent = x.get("softwareAgent")
            if x.get("digitalSourceType") in AI_SOURCE_TYPES and agent:
                model = agent.get("name") if isinstance(agent, dict) else str(agent)
                version = agent.get("version") if isinstance(agent, dict) else None
                break
    if model is None:
        cgi = m.get("claim_generator_info") or []
        if cgi and isinstance(cgi[0], dict) and cgi[0].get("name") not in (None, "synthguard"):
            model, version = cgi[0].get("name"), cgi[0].get("version")
        elif m.get("claim_generator"):
            model = str(m["claim_generator"]).split()[0]
    sig = m.get("signature_info") or {}
    signed_at = sig.get("time") or gen.get("generated_at")
    return {"ai_generated": ai, "model": model, "model_version": version,
            "signer": sig.get("common_name") or sig.get("issuer"), "signed_at": signed_at,
            "soft_binding": soft}


def _soft_binding_hex(data: dict[str, Any]) -> Optional[str]:
    if data.get("alg") != SOFT_BINDING_ALG:
        return None
    for block in data.get("blocks") or []:
        value = block.get("value") if isinstance(block, dict) else None
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True).hex()
            except Exception:
                return None
    return None
