"""Development signing identities and certificate checks for C2PA.

c2pa-python refuses leaves that lack emailProtection, digitalSignature or an AuthorityKeyIdentifier,
and only reads PKCS#8 keys (see ../shared/notes/c2pa-python.md). Everything here produces chains that
pass those checks, and :func:`check_signing_identity` explains in one line why a user's chain or key
would fail, before the native library answers with a bare "the certificate is invalid".
"""
from __future__ import annotations

import datetime as _dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ALGORITHMS = ("ES256", "ES384", "PS256", "Ed25519")
PemInput = Union[str, bytes, os.PathLike]

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]
PublicKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey]


class CertificateError(ValueError):
    """A certificate chain or key that C2PA signing would refuse, with the reason."""


@dataclass(frozen=True)
class KeyPaths:
    """Where :func:`init_keys` wrote a development identity."""

    root: Path            # trust anchor to hand to verifiers
    signer_cert: Path     # leaf + intermediates, PEM
    signer_key: Path      # leaf private key, PKCS#8 PEM, 0600
    watermark_key: Path   # 32 random bytes as 64 hex chars, 0600
    ca_cert: Path         # issuing CA (intermediate, or the root) for later leaves (KMS)
    ca_key: Path          # its private key, PKCS#8 PEM, 0600

    def to_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


# ----------------------------------------------------------------------------- key generation
def generate_key(alg: str = "ES256") -> PrivateKey:
    """A fresh private key for a C2PA algorithm name (ES256, ES384, PS256, Ed25519)."""
    a = normalize_alg(alg)
    if a == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if a == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if a == "PS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def normalize_alg(alg: str | None) -> str:
    """Canonical spelling of an algorithm name; raises ValueError naming the supported ones."""
    if alg is None:
        return "ES256"
    for a in ALGORITHMS + ("ES512", "PS384", "PS512"):
        if str(alg).replace("-", "").lower() == a.lower():
            return a
    raise ValueError(f"unsupported signing algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


def alg_for_key(key: PrivateKey | PublicKey) -> str:
    """The C2PA algorithm that matches a key's type and curve."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        name = key.curve.name
        if name == "secp256r1":
            return "ES256"
        if name == "secp384r1":
            return "ES384"
        if name == "secp521r1":
            return "ES512"
        raise CertificateError(f"EC curve {name} is not allowed by C2PA (use P-256, P-384 or P-521)")
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "PS256"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "Ed25519"
    raise CertificateError(f"unsupported key type {type(key).__name__}")


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return hashes.SHA384()
    return hashes.SHA256()


def _sign_cert(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    return builder.sign(key, _hash_for(key))


def _name(cn: str, org: str = "synthguard development") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def make_ca(common_name: str, *, key: PrivateKey | None = None, issuer_cert: x509.Certificate | None = None,
            issuer_key: PrivateKey | None = None, days: int = 3650, path_length: int | None = None,
            alg: str = "ES256") -> tuple[x509.Certificate, PrivateKey]:
    """A CA certificate: self-signed root when no issuer is given, else an intermediate."""
    key = key or generate_key(alg)
    now = _now()
    subject = _name(common_name)
    pub = key.public_key()
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
         .public_key(pub)
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - _dt.timedelta(minutes=5))
         .not_valid_after(now + _dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=True, crl_sign=True,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))
    signing_key = key
    if issuer_cert is not None:
        if issuer_key is None:
            raise ValueError("issuer_key is required with issuer_cert")
        signing_key = issuer_key
        b = b.add_extension(_aki(issuer_cert), critical=False)
    else:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pub), critical=False)
    return _sign_cert(b, signing_key), key


def _aki(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())


def issue_leaf(public_key: PublicKey, issuer_cert: x509.Certificate, issuer_key: PrivateKey, *,
               common_name: str = "synthguard signer", organization: str = "synthguard development",
               days: int = 397, not_before: _dt.datetime | None = None,
               not_after: _dt.datetime | None = None) -> x509.Certificate:
    """A C2PA claim-signing leaf for ``public_key`` (a local key or a KMS key's public half).

    Carries what c2pa-python requires of a leaf: digitalSignature, EKU emailProtection (plus the
    C2PA/document-signing EKUs for validators that know them), an AKI and CA=false. Without a
    time stamp a signature turns invalid once the leaf expires, so the default lifetime is about a
    year and production signers should pass a TSA URL.
    """
    now = _now()
    nb = not_before or (now - _dt.timedelta(minutes=5))
    na = not_after or (now + _dt.timedelta(days=days))
    eku = [ExtendedKeyUsageOID.EMAIL_PROTECTION,
           x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"),   # id-kp-documentSigning
           ]
    b = (x509.CertificateBuilder()
         .subject_name(_name(common_name, organization))
         .issuer_name(issuer_cert.subject)
         .public_key(public_key)
         .serial_number(x509.random_serial_number())
         .not_valid_before(nb)
         .not_valid_after(na)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
         .add_extension(_aki(issuer_cert), critical=False))
    return _sign_cert(b, issuer_key)


# ----------------------------------------------------------------------------- PEM helpers
def key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the only private-key form c2pa-python reads)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_to_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def read_pem(value: PemInput) -> bytes:
    """PEM bytes from a path, PEM text or PEM bytes."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str) and "-----BEGIN" in value:
        data = value.encode()
    else:
        p = Path(value)
        if p.is_dir():
            raise IsADirectoryError(f"{p}: is a directory, expected a PEM file")
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
        data = p.read_bytes()
    if b"-----BEGIN" not in data:
        raise CertificateError(f"{_label(value)}: not a PEM file")
    return data


def _label(value: PemInput) -> str:
    return str(value) if not isinstance(value, (bytes,)) and "-----BEGIN" not in str(value) else "PEM input"


def load_chain(value: PemInput) -> list[x509.Certificate]:
    """Certificates in a PEM chain, leaf first."""
    data = read_pem(value)
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateError(f"{_label(value)}: no readable certificate ({exc})") from None
    if not chain:
        raise CertificateError(f"{_label(value)}: no certificate found")
    return chain


def load_private_key(value: PemInput) -> tuple[PrivateKey, bytes]:
    """The key object and its PKCS#8 PEM. Legacy ``EC/RSA PRIVATE KEY`` files are converted,
    since c2pa-python rejects them with an unhelpful message."""
    data = read_pem(value)
    if b"ENCRYPTED PRIVATE KEY" in data:
        raise CertificateError(f"{_label(value)}: encrypted private keys are not supported; "
                               "decrypt it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{_label(value)}: not a readable private key ({exc})") from None
    if b"BEGIN PRIVATE KEY" not in data:
        data = key_to_pem(key)  # type: ignore[arg-type]
    return key, data  # type: ignore[return-value]


def _public_der(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_signing_identity(chain: Iterable[x509.Certificate], public_key: PublicKey | None = None, *,
                           at: _dt.datetime | None = None) -> None:
    """Raise :class:`CertificateError` with the reason a chain (and key) cannot sign C2PA manifests.

    Checks the leaf the way c2pa-python does: validity period, CA=false, digitalSignature, a usable
    EKU, an AKI; and that the private key belongs to the leaf.
    """
    chain = list(chain)
    leaf = chain[0]
    now = at or _dt.datetime.now(_dt.timezone.utc)
    subj = leaf.subject.rfc4514_string()
    if leaf.not_valid_after_utc < now:
        raise CertificateError(f"signing certificate {subj!r} expired on "
                               f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC; issue a new one "
                               "(synthguard keys init)")
    if leaf.not_valid_before_utc > now:
        raise CertificateError(f"signing certificate {subj!r} is not valid until "
                               f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")
    ext = leaf.extensions
    try:
        if ext.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise CertificateError(f"signing certificate {subj!r} is a CA certificate; C2PA needs an "
                                   "end-entity (CA=false) leaf first in the chain")
    except x509.ExtensionNotFound:
        pass
    try:
        if not ext.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            raise CertificateError(f"signing certificate {subj!r} lacks the digitalSignature key usage")
    except x509.ExtensionNotFound:
        raise CertificateError(f"signing certificate {subj!r} has no KeyUsage extension "
                               "(C2PA needs digitalSignature)") from None
    try:
        ekus = set(ext.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        raise CertificateError(f"signing certificate {subj!r} has no ExtendedKeyUsage; C2PA needs "
                               "emailProtection (or the C2PA claim-signing EKU)") from None
    accepted = {ExtendedKeyUsageOID.EMAIL_PROTECTION, x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"),
                x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1"), ExtendedKeyUsageOID.TIME_STAMPING,
                ExtendedKeyUsageOID.OCSP_SIGNING}
    if not ekus & accepted:
        raise CertificateError(f"signing certificate {subj!r} has no C2PA-acceptable extended key usage "
                               "(emailProtection, documentSigning or c2pa claim signing)")
    try:
        ext.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        if len(chain) > 1 or leaf.issuer != leaf.subject:
            raise CertificateError(f"signing certificate {subj!r} has no AuthorityKeyIdentifier") from None
    if public_key is not None and _public_der(public_key) != _public_der(leaf.public_key()):
        raise CertificateError(f"the private key does not match signing certificate {subj!r}")


def cert_subject(cert: x509.Certificate) -> str:
    """Common name (else the whole RFC 4514 subject) of a certificate."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.subject.rfc4514_string()


# ----------------------------------------------------------------------------- files
def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start, so the secret is never world-readable."""
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def init_keys(directory: str | os.PathLike, *, alg: str = "ES256", intermediate: bool = True,
              common_name: str = "synthguard signer", leaf_days: int = 397,
              overwrite: bool = False) -> KeyPaths:
    """Create a development CA (root, optional intermediate), a leaf for ``alg`` and a watermark key.

    Writes ``root.pem`` (trust anchor), ``signer.pem`` (leaf + intermediate), ``signer.key`` (PKCS#8,
    0600), ``watermark.key`` (64 hex chars, 0600), and ``ca.pem``/``ca.key`` (the issuing CA, kept so
    more leaves, e.g. for a KMS key, can be issued later). Refuses to replace existing keys unless
    ``overwrite``: losing a signing key silently is worse than an error.
    """
    alg = normalize_alg(alg)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = KeyPaths(root=d / "root.pem", signer_cert=d / "signer.pem", signer_key=d / "signer.key",
                     watermark_key=d / "watermark.key", ca_cert=d / "ca.pem", ca_key=d / "ca.key")
    if not overwrite:
        existing = [str(p) for p in (paths.signer_key, paths.watermark_key, paths.ca_key) if p.exists()]
        if existing:
            raise FileExistsError(f"{', '.join(existing)} already exist; pass overwrite (--force) to replace")
    # CAs use ECDSA whatever the leaf algorithm: validators accept mixed chains, and it keeps
    # key generation fast (no RSA CA keys).
    ca_alg = "ES384" if alg == "ES384" else "ES256"
    root_cert, root_key = make_ca("synthguard development root", alg=ca_alg,
                                  path_length=1 if intermediate else 0)
    issuer_cert, issuer_key = root_cert, root_key
    chain_extra: list[x509.Certificate] = []
    if intermediate:
        issuer_cert, issuer_key = make_ca("synthguard development intermediate", alg=ca_alg,
                                          issuer_cert=root_cert, issuer_key=root_key, path_length=0,
                                          days=1825)
        chain_extra.append(issuer_cert)
    leaf_key = generate_key(alg)
    leaf = issue_leaf(leaf_key.public_key(), issuer_cert, issuer_key, common_name=common_name,
                      days=leaf_days)
    paths.root.write_bytes(cert_to_pem(root_cert))
    paths.signer_cert.write_bytes(cert_to_pem(leaf, *chain_extra))
    paths.ca_cert.write_bytes(cert_to_pem(issuer_cert))
    _write_private(paths.signer_key, key_to_pem(leaf_key))
    _write_private(paths.ca_key, key_to_pem(issuer_key))
    _write_private(paths.watermark_key, secrets.token_bytes(32).hex().encode() + b"\n")
    return paths


def issue_leaf_from_ca_files(public_key: PublicKey, ca_cert: PemInput, ca_key: PemInput, *,
                             common_name: str = "synthguard signer", days: int = 397) -> bytes:
    """PEM chain (new leaf + the issuing CA when it is not self-signed) for ``public_key``."""
    issuer = load_chain(ca_cert)[0]
    key, _ = load_private_key(ca_key)
    leaf = issue_leaf(public_key, issuer, key, common_name=common_name, days=days)
    extra = [issuer] if issuer.issuer != issuer.subject else []
    return cert_to_pem(leaf, *extra)
