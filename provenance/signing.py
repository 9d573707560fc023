"""Sign generated media with a C2PA manifest at generation time.

The manifest says what a user of c2patool expects from an AI generator: a ``c2pa.created`` action
with digitalSourceType ``trainedAlgorithmicMedia`` and the model as softwareAgent, a vendor assertion
``com.synthguard.generator`` (model, version, SHA-256 of the prompt, never the prompt), optionally a
parent ingredient and a ``c2pa.soft-binding`` pointing at the invisible watermark.

Signing must be thin over c2pa-python (the benchmark holds it to < 10 % overhead), so the native
Signer and the Builder Contexts are made once per process and reused; only the Builder is per call
(c2pa-python builders sign once).
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import io
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import c2pa

from . import certs as _certs
from .media import MEDIA_MIMES, MediaError, Source, normalize_mime, read_source, sniff_mime

GENERATOR_LABEL = "com.synthguard.generator"
SOFT_BINDING_ALG = "synthguard.watermark.v1"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED_ALGORITHMIC_MEDIA = IPTC + "trainedAlgorithmicMedia"
THUMBNAIL_LONG_EDGE = 256
# Measured: a sidecar for an MP3 signs but reads back as assertion.dataHash.mismatch (c2pa-rs 0.91.3).
SIDECAR_UNSUPPORTED = frozenset({"audio/mpeg"})
try:
    _C2PA_VERSION = c2pa.sdk_version()
except Exception:  # pragma: no cover
    _C2PA_VERSION = "?"

_ALG_ENUM = {
    "ES256": c2pa.C2paSigningAlg.ES256, "ES384": c2pa.C2paSigningAlg.ES384,
    "ES512": c2pa.C2paSigningAlg.ES512, "PS256": c2pa.C2paSigningAlg.PS256,
    "PS384": c2pa.C2paSigningAlg.PS384, "PS512": c2pa.C2paSigningAlg.PS512,
    "Ed25519": c2pa.C2paSigningAlg.ED25519,
}


class SigningError(ValueError):
    """Signing failed for a reason the user can act on (bad certificate, unsupported media...)."""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("synthguard")
    except Exception:
        return "0.1.0"


_VERSION = _version()


def supported_mimes() -> tuple[str, ...]:
    """Media types synthguard signs and verifies (images, video, audio that c2pa-python embeds into)."""
    native = set(c2pa.Builder.get_supported_mime_types())
    return tuple(sorted(m for m in MEDIA_MIMES if m in native))


def resolve_mime(data: bytes, name: str | os.PathLike | None, mime: str | None) -> str:
    """The MIME type to sign/verify ``data`` as, or a MediaError naming the supported types."""
    if not data:
        raise MediaError(f"{name or 'input'}: empty file")
    m = normalize_mime(mime) or sniff_mime(data, name)
    if m is None:
        raise MediaError(f"{name or 'input'}: not a recognised media file; supported types: "
                         f"{', '.join(supported_mimes())}")
    if m not in supported_set():
        raise MediaError(f"{name or 'input'}: unsupported media type {m}; supported types: "
                         f"{', '.join(supported_mimes())}")
    return m


_SUPPORTED: frozenset[str] | None = None


def supported_set() -> frozenset[str]:
    """:func:`supported_mimes` as a set, computed once per process (signing and verification test
    membership on every call; asking the native library each time is measurable)."""
    global _SUPPORTED
    if _SUPPORTED is None:
        _SUPPORTED = frozenset(supported_mimes())
    return _SUPPORTED


# ----------------------------------------------------------------------------- signer
class Signer:
    """A signing identity: a certificate chain plus a private key (local PEM, KMS or a callback).

    Holds one native c2pa Signer per process and TSA URL; a c2pa Signer is reusable across
    signatures, so nothing is re-parsed per call.
    """

    def __init__(self, *, alg: str, chain_pem: bytes, factory: Callable[[Optional[str]], "c2pa.Signer"],
                 tsa_url: str | None = None, description: str = "") -> None:
        self.alg = _certs.normalize_alg(alg)
        self.chain_pem = chain_pem
        self.tsa_url = tsa_url
        self._factory = factory
        self._native: dict[tuple[int, Optional[str]], c2pa.Signer] = {}
        self._lock = threading.Lock()
        chain = _certs.load_chain(chain_pem)
        self.subject = _certs.cert_subject(chain[0])
        self.not_after = chain[0].not_valid_after_utc
        self.description = description or self.subject
        self._callback_errors: list[BaseException] = []  # filled by callback (KMS/HSM) signers

    def __repr__(self) -> str:
        return f"Signer(subject={self.subject!r}, alg={self.alg}, tsa_url={self.tsa_url!r})"

    # -- constructors
    @classmethod
    def from_files(cls, cert_chain_pem: _certs.PemInput, private_key_pem: _certs.PemInput, *,
                   alg: str | None = None, tsa_url: str | None = None) -> "Signer":
        """A signer from a PEM chain (leaf first) and a private key (path or PEM text/bytes).

        Checks the chain the way c2pa-python will (expiry, key usage, EKU, AKI, key match) and
        raises :class:`SigningError` with the reason, instead of the native "certificate is invalid".
        """
        try:
            chain = _certs.load_chain(cert_chain_pem)
            key, key_pem = _certs.load_private_key(private_key_pem)
            _certs.check_signing_identity(chain, key.public_key())
            key_alg = _certs.alg_for_key(key)
        except _certs.CertificateError as exc:
            raise SigningError(str(exc)) from None
        a = _certs.normalize_alg(alg) if alg is not None else key_alg
        if a[:2] != key_alg[:2]:
            raise SigningError(f"algorithm {a} does not match the {key_alg} private key")
        chain_pem = _certs.cert_to_pem(*chain)
        _check_tsa(tsa_url)

        def factory(tsa: Optional[str]) -> c2pa.Signer:
            info = c2pa.C2paSignerInfo(a.lower().encode(), chain_pem, key_pem, tsa)
            return c2pa.Signer.from_info(info)

        signer = cls(alg=a, chain_pem=chain_pem, factory=factory, tsa_url=tsa_url)
        signer.native()  # fail now, not at the first file
        return signer

    @classmethod
    def from_callback(cls, sign_fn: Callable[[bytes], bytes], cert_chain_pem: _certs.PemInput, *,
                      alg: str, tsa_url: str | None = None, description: str = "") -> "Signer":
        """A signer whose private operation is ``sign_fn(data) -> signature`` (HSM, KMS...)."""
        try:
            chain = _certs.load_chain(cert_chain_pem)
            _certs.check_signing_identity(chain)
        except _certs.CertificateError as exc:
            raise SigningError(str(exc)) from None
        a = _certs.normalize_alg(alg)
        chain_pem = _certs.cert_to_pem(*chain)
        _check_tsa(tsa_url)

        def wrapped(data: bytes) -> bytes:
            try:
                return sign_fn(data)
            except Exception as exc:  # the native side only sees -1; keep the reason
                signer._callback_errors[:] = [exc]
                raise

        def factory(tsa: Optional[str]) -> c2pa.Signer:
            return c2pa.Signer.from_callback(wrapped, _ALG_ENUM[a], chain_pem.decode(), tsa)

        signer = cls(alg=a, chain_pem=chain_pem, factory=factory, tsa_url=tsa_url,
                     description=description)
        signer.native()
        return signer

    @classmethod
    def from_kms(cls, key_id: str, cert_chain_pem: _certs.PemInput, *, kms_client: Any = None,
                 endpoint_url: str | None = None, region: str | None = None, profile: str | None = None,
                 tsa_url: str | None = None) -> "Signer":
        """A signer whose private key stays in AWS KMS (ECC_NIST_P256/P384 or RSA, SIGN_VERIFY)."""
        from .kms import kms_signer

        return kms_signer(key_id, cert_chain_pem, kms_client=kms_client, endpoint_url=endpoint_url,
                          region=region, profile=profile, tsa_url=tsa_url)

    # -- native handle
    def native(self, tsa_url: str | None = None) -> c2pa.Signer:
        """The process's c2pa Signer for ``tsa_url`` (default: this signer's)."""
        tsa = tsa_url if tsa_url is not None else self.tsa_url
        key = (os.getpid(), tsa)
        s = self._native.get(key)
        if s is None:
            with self._lock:
                s = self._native.get(key)
                if s is None:
                    try:
                        s = self._factory(tsa)
                    except c2pa.C2paError as exc:
                        raise SigningError(f"c2pa refused the signing identity {self.subject!r}: "
                                           f"{_clean(exc)}") from None
                    self._native[key] = s
        return s

    def close(self) -> None:
        for s in self._native.values():
            try:
                s.close()
            except Exception:
                pass
        self._native.clear()


def _check_tsa(url: str | None) -> None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise SigningError(f"time-stamp authority URL must be http(s): {url!r}")


def _clean(exc: BaseException) -> str:
    msg = str(exc).strip() or type(exc).__name__
    return msg.splitlines()[0]


# ----------------------------------------------------------------------------- contexts
_CONTEXTS: dict[tuple[int, Any], c2pa.Context] = {}
_CTX_LOCK = threading.Lock()


def process_context(key: Any, make: Callable[[], c2pa.Context]) -> c2pa.Context:
    """The process's c2pa Context for ``key``, made once by ``make`` (thread-safe).

    Keyed by pid too: a forked worker must not use its parent's native context. Signing (builder
    contexts) and verification (reader contexts per trust-anchor set) share this one cache."""
    k = (os.getpid(), key)
    ctx = _CONTEXTS.get(k)
    if ctx is None:
        with _CTX_LOCK:
            ctx = _CONTEXTS.get(k)
            if ctx is None:
                ctx = _CONTEXTS[k] = make()
    return ctx


def builder_context(thumbnail: bool = False) -> c2pa.Context:
    """The process's Builder Context: thumbnails off, or on with a small long edge."""
    thumb = {"enabled": True, "long_edge": THUMBNAIL_LONG_EDGE} if thumbnail else {"enabled": False}
    return process_context(("builder", thumbnail), lambda: c2pa.Context.from_dict({"builder": {"thumbnail": thumb}}))


# ----------------------------------------------------------------------------- manifest
def prompt_hash(prompt: str | bytes) -> str:
    """SHA-256 hex of a prompt (UTF-8): provable later without revealing the prompt."""
    return hashlib.sha256(prompt.encode("utf-8") if isinstance(prompt, str) else prompt).hexdigest()


def build_manifest(*, title: str | None, model: str | None, model_version: str | None,
                   prompt: str | bytes | None, watermark_payload: bytes | None,
                   when: str) -> dict[str, Any]:
    """The manifest definition (JSON-able) that :func:`sign` hands to c2pa-python."""
    gen: dict[str, Any] = {"generated_at": when}
    if model is not None:
        gen["model"] = model
    if model_version is not None:
        gen["model_version"] = model_version
    if prompt is not None:
        gen["prompt_sha256"] = prompt_hash(prompt)
    assertions: list[dict[str, Any]] = [{"label": GENERATOR_LABEL, "data": gen}]
    if watermark_payload is not None:
        assertions.append({"label": "c2pa.soft-binding", "data": {
            "alg": SOFT_BINDING_ALG,
            "blocks": [{"scope": {}, "value": base64.b64encode(watermark_payload).decode()}]}})
    manifest: dict[str, Any] = {
        "claim_generator_info": [{"name": "synthguard", "version": _VERSION}],
        "assertions": assertions,
    }
    if title:
        manifest["title"] = title
    return manifest


def _agent(model: str | None, model_version: str | None) -> dict[str, str] | None:
    if model is None:
        return None
    agent = {"name": model}
    if model_version is not None:
        agent["version"] = model_version
    return agent


# ----------------------------------------------------------------------------- sign
def sign(source: Source, *, signer: Signer, model: str | None = None, model_version: str | None = None,
         prompt: str | bytes | None = None, parent: Source | None = None,
         watermark_payload: bytes | None = None, thumbnail: bool = False, sidecar: bool = False,
         tsa_url: str | None = None, mime: str | None = None) -> bytes:
    """Return ``source`` signed with a C2PA manifest (or, with ``sidecar``, the ``.c2pa`` manifest
    bytes for the unchanged asset).

    ``source`` and ``parent`` are a path, bytes or a binary stream. ``watermark_payload`` (the 8-byte
    payload the watermark carries) adds a soft-binding assertion and a ``c2pa.watermarked`` action.
    Raises :class:`MediaError` for empty/unknown/unsupported input and :class:`SigningError` when
    c2pa-python refuses to sign. For large files on disk, :func:`sign_file` streams instead.
    """
    data, name = read_source(source)
    fmt = resolve_mime(data, name, mime)
    out = io.BytesIO()
    manifest_bytes = _sign_stream(io.BytesIO(data), out, fmt, name, signer=signer, model=model,
                                  model_version=model_version, prompt=prompt, parent=parent,
                                  watermark_payload=watermark_payload, thumbnail=thumbnail,
                                  sidecar=sidecar, tsa_url=tsa_url)
    return manifest_bytes if sidecar else out.getvalue()


def sign_file(src: str | os.PathLike, dst: str | os.PathLike, *, signer: Signer, sidecar: bool = False,
              mime: str | None = None, **kw: Any) -> Path:
    """Sign the file ``src`` into ``dst`` streaming from disk to disk (no whole-file copies in memory,
    as c2patool does), through a temporary file and a rename, so ``dst`` is never half-written and
    ``src == dst`` is safe. With ``sidecar`` the asset is copied unchanged (if ``dst`` differs) and
    the manifest goes to ``<dst stem>.c2pa``; returns the path written last (manifest or asset).
    Other keyword arguments are those of :func:`sign`.
    """
    import shutil

    src_p, dst_p = Path(src), Path(dst)
    if src_p.is_dir():
        raise MediaError(f"{src_p}: is a directory")
    with open(src_p, "rb") as fin:
        head = fin.read(1024)
        fmt = resolve_mime(head, src_p, mime)
        fin.seek(0)
        dst_p.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst_p.with_name(f".{dst_p.name}.synthguard-{os.getpid()}.tmp")
        try:
            with open(tmp, "w+b") as fout:
                manifest_bytes = _sign_stream(fin, fout, fmt, str(src_p), signer=signer, sidecar=sidecar,
                                              **kw)
            if sidecar:
                tmp.unlink()
                if src_p.resolve() != dst_p.resolve():
                    shutil.copyfile(src_p, tmp)
                    os.replace(tmp, dst_p)
                target = sidecar_path(dst_p)
                write_atomic(target, manifest_bytes)
                return target
            if dst_p.exists():
                os.chmod(tmp, dst_p.stat().st_mode & 0o777)
            os.replace(tmp, dst_p)
            return dst_p
        finally:
            if tmp.exists():
                tmp.unlink()


def _sign_stream(src: Any, dst: Any, fmt: str, name: str | None, *, signer: Signer,
                 model: str | None = None, model_version: str | None = None,
                 prompt: str | bytes | None = None, parent: Source | None = None,
                 watermark_payload: bytes | None = None, thumbnail: bool = False, sidecar: bool = False,
                 tsa_url: str | None = None) -> bytes:
    """Build the manifest and sign ``src`` into ``dst`` (seekable binary streams); manifest bytes."""
    if not isinstance(signer, Signer):
        raise TypeError("signer must be a provenance.Signer (Signer.from_files / Signer.from_kms)")
    if watermark_payload is not None:
        watermark_payload = bytes(watermark_payload)
        if len(watermark_payload) != 8:
            raise ValueError(f"watermark payload must be 8 bytes, got {len(watermark_payload)}")
    if sidecar and fmt in SIDECAR_UNSUPPORTED:
        raise SigningError(f"{name or 'input'}: sidecar manifests for {fmt} do not verify with "
                           f"c2pa-rs {_C2PA_VERSION} (its data hash assumes an embedded manifest); "
                           "embed the manifest instead")
    if tsa_url is not None:
        _check_tsa(tsa_url)
    native = signer.native(tsa_url)
    callback_errors = signer._callback_errors
    callback_errors.clear()  # report only this call's KMS/HSM failure
    when = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    manifest = build_manifest(title=Path(name).name if name else None, model=model,
                              model_version=model_version, prompt=prompt,
                              watermark_payload=watermark_payload, when=when)
    try:
        builder = c2pa.Builder(json.dumps(manifest), context=builder_context(thumbnail))
    except c2pa.C2paError as exc:
        raise SigningError(f"cannot build manifest: {_clean(exc)}") from None
    try:
        action: dict[str, Any] = {"digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "when": when}
        agent = _agent(model, model_version)
        if agent:
            action["softwareAgent"] = agent
        if parent is None and has_manifest(src, fmt):
            # Re-signing a signed asset: its manifest store becomes the parent ingredient, so the
            # earlier claim stays verifiable instead of being replaced.
            builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
            builder.add_ingredient(json.dumps({"relationship": "parentOf",
                                               "title": Path(name).name if name else "previous version"}),
                                   fmt, src)
            src.seek(0)
            action["action"] = "c2pa.edited"
        elif parent is not None:
            pdata, pname = read_source(parent)
            pmime = resolve_mime(pdata, pname, None)
            builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
            ingredient = {"relationship": "parentOf"}
            if pname:
                ingredient["title"] = Path(pname).name
            builder.add_ingredient(json.dumps(ingredient), pmime, io.BytesIO(pdata))
            action["action"] = "c2pa.edited"
        else:
            action["action"] = "c2pa.created"
        builder.add_action(json.dumps(action))
        if watermark_payload is not None:
            builder.add_action(json.dumps({"action": "c2pa.watermarked",
                                           "parameters": {"alg": SOFT_BINDING_ALG}}))
        if sidecar:
            builder.set_no_embed()
        return builder.sign(native, fmt, src, dst)
    except c2pa.C2paError as exc:
        detail = f" ({_clean(callback_errors[0])})" if callback_errors else ""
        raise SigningError(f"{name or 'input'}: c2pa could not sign this {fmt} file: "
                           f"{_clean(exc)}{detail}") from None
    finally:
        builder.close()


def has_manifest(source: Any, fmt: str | None) -> bool:
    """Whether ``source`` (bytes, or a seekable stream rewound afterwards) already carries a C2PA
    manifest store."""
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with c2pa.Reader(fmt or "application/octet-stream", stream) as reader:
            return bool(json.loads(reader.json()).get("active_manifest"))
    except Exception:  # no manifest, or one c2pa cannot parse: nothing to keep
        return False
    finally:
        stream.seek(0)


def sidecar_path(asset: str | os.PathLike) -> Path:
    """Where c2patool puts (and looks for) the sidecar manifest of ``asset``: same stem, ``.c2pa``."""
    return Path(asset).with_suffix(".c2pa")


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so an interrupted or failed
    write never leaves a half-signed file, and signing a file in place never loses the original."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.synthguard-{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        if p.exists():
            os.chmod(tmp, p.stat().st_mode & 0o777)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------- watermark, then sign
_PIL_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/tiff": "TIFF",
               "image/avif": "AVIF", "image/heic": "HEIF", "image/heif": "HEIF"}


def embed_watermark(source: Source, payload: bytes, *, key: bytes | None = None,
                    mime: str | None = None) -> bytes:
    """Embed the invisible watermark (``watermark.embed``) into an image and re-encode it in its own
    format (JPEG/WebP/AVIF/HEIC at quality 95, lossless formats losslessly, ICC profile kept).

    Generation-time step before :func:`sign`: the pixels change, so the watermark must go in before
    the manifest hashes them. Raises MediaError for non-images and images too small to mark.
    """
    import numpy as np
    from PIL import Image

    import watermark

    data, name = read_source(source)
    fmt = resolve_mime(data, name, mime)
    if fmt not in _PIL_FORMAT:
        raise MediaError(f"{name or 'input'}: the watermark is embedded into images only "
                         f"(JPEG, PNG, WebP, TIFF, AVIF, HEIC), not {fmt}")
    from .media import _register_heif, decode_image

    _register_heif()
    with Image.open(io.BytesIO(data)) as original:
        icc = original.info.get("icc_profile")
    arr = decode_image(data, keep_alpha=fmt != "image/jpeg", single_frame=True)
    try:
        marked = watermark.embed(arr, payload, key=key)
    except ValueError as exc:
        raise MediaError(f"{name or 'input'}: cannot watermark: {exc}") from None
    img = Image.fromarray(np.asarray(marked))
    out = io.BytesIO()
    opts: dict[str, Any] = {"icc_profile": icc} if icc else {}
    pil = _PIL_FORMAT[fmt]
    if pil in ("JPEG", "WEBP", "AVIF", "HEIF"):
        opts["quality"] = 95
    if pil == "HEIF":
        import pillow_heif

        pillow_heif.from_pillow(img).save(out, format="HEIF", **opts)
    else:
        img.save(out, pil, **opts)
    return out.getvalue()
