"""Sign C2PA manifests with an AWS KMS asymmetric key, so the private key never leaves KMS.

c2pa-python calls back with the bytes to sign; KMS ``Sign`` (MessageType RAW) returns a DER ECDSA or
RSA-PSS signature, which c2pa accepts as is. The certificate chain is local: its leaf must carry
the KMS key's public key (``synthguard keys init --kms-key-id`` issues one from the dev CA).
"""
from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives import serialization

from . import certs as _certs

# KMS KeySpec -> (C2PA alg, KMS SigningAlgorithm)
KEY_SPECS = {
    "ECC_NIST_P256": ("ES256", "ECDSA_SHA_256"),
    "ECC_NIST_P384": ("ES384", "ECDSA_SHA_384"),
    "RSA_2048": ("PS256", "RSASSA_PSS_SHA_256"),
    "RSA_3072": ("PS256", "RSASSA_PSS_SHA_256"),
    "RSA_4096": ("PS256", "RSASSA_PSS_SHA_256"),
}


def kms_client(*, endpoint_url: str | None = None, region: str | None = None,
               profile: str | None = None) -> Any:
    """A boto3 KMS client honouring --endpoint-url/AWS_ENDPOINT_URL, --region and --profile."""
    import boto3

    session = boto3.session.Session(profile_name=profile) if profile else boto3.session.Session()
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KMS") or os.environ.get("AWS_ENDPOINT_URL")
    return session.client("kms", endpoint_url=endpoint or None, region_name=region or None)


_new_client = kms_client  # kms_signer's parameter shadows the name


def kms_public_key(key_id: str, client: Any) -> tuple[Any, str, str]:
    """``(public_key, c2pa_alg, kms_signing_algorithm)`` for a KMS key; ValueError if it cannot sign."""
    from .signing import SigningError

    try:
        resp = client.get_public_key(KeyId=key_id)
    except Exception as exc:
        raise SigningError(f"KMS key {key_id}: cannot read its public key: {exc}") from None
    spec = resp.get("KeySpec") or resp.get("CustomerMasterKeySpec")
    if resp.get("KeyUsage") not in (None, "SIGN_VERIFY"):
        raise SigningError(f"KMS key {key_id} has KeyUsage {resp.get('KeyUsage')}; C2PA needs SIGN_VERIFY")
    if spec not in KEY_SPECS:
        raise SigningError(f"KMS key {key_id} has KeySpec {spec}; supported: {', '.join(KEY_SPECS)}")
    alg, kms_alg = KEY_SPECS[spec]
    return serialization.load_der_public_key(resp["PublicKey"]), alg, kms_alg


def kms_signer(key_id: str, cert_chain_pem: _certs.PemInput, *, kms_client: Any = None,
               endpoint_url: str | None = None, region: str | None = None, profile: str | None = None,
               tsa_url: str | None = None):
    """A :class:`provenance.Signer` whose signatures come from KMS ``Sign``."""
    from .signing import Signer, SigningError

    client = kms_client or _new_client(endpoint_url=endpoint_url, region=region, profile=profile)
    public_key, alg, kms_alg = kms_public_key(key_id, client)
    try:
        chain = _certs.load_chain(cert_chain_pem)
        _certs.check_signing_identity(chain, public_key)
    except _certs.CertificateError as exc:
        raise SigningError(f"{exc} (KMS key {key_id})") from None

    def sign_with_kms(data: bytes) -> bytes:
        return client.sign(KeyId=key_id, Message=data, MessageType="RAW",
                           SigningAlgorithm=kms_alg)["Signature"]

    return Signer.from_callback(sign_with_kms, _certs.cert_to_pem(*chain), alg=alg, tsa_url=tsa_url,
                                description=f"KMS {key_id}")
