"""Signing through AWS KMS against a real local KMS endpoint (moto server over HTTP): the private key
never leaves KMS, the dev CA certifies the KMS public key, and the result verifies as trusted."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fixtures import make_media
from provenance import Signer, SigningError, certs, sign, verify
from provenance.kms import kms_public_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kms(moto_server):
    client = moto_server.client("kms")
    key_id = client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    return client, key_id


@pytest.fixture(scope="module")
def dev_ca(tmp_path_factory):
    return certs.init_keys(tmp_path_factory.mktemp("kmsca"))


def test_kms_signed_file_verifies_trusted(kms, dev_ca, moto_server):
    client, key_id = kms
    pub, alg, _ = kms_public_key(key_id, client)
    assert alg == "ES256"
    chain = certs.issue_leaf_from_ca_files(pub, dev_ca.ca_cert, dev_ca.ca_key, common_name="kms signer")
    signer = Signer.from_kms(key_id, chain, endpoint_url=moto_server.endpoint_url, region="us-east-1")
    for fmt in ("jpeg", "mp4"):
        signed = sign(make_media.media_bytes(fmt), signer=signer, model="kms-model")
        v = verify(signed, trust_anchors=dev_ca.root)
        assert v.state == "trusted", v
        assert v.signer == "kms signer" and v.model == "kms-model"
    # An injected client works as well (no endpoint options).
    s2 = Signer.from_kms(key_id, chain, kms_client=client)
    assert verify(sign(make_media.image_bytes("png"), signer=s2), trust_anchors=dev_ca.root).state == "trusted"


def test_kms_key_and_certificate_must_match(kms, dev_ca):
    client, key_id = kms
    # The local dev leaf certifies a different public key than the KMS key.
    with pytest.raises(SigningError, match="does not match"):
        Signer.from_kms(key_id, dev_ca.signer_cert, kms_client=client)
    enc = client.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    with pytest.raises(SigningError, match="SIGN_VERIFY|KeySpec|public key"):
        Signer.from_kms(enc, dev_ca.signer_cert, kms_client=client)


def test_cli_keys_init_and_sign_with_kms(kms, moto_server, tmp_path):
    _, key_id = kms
    env = {**moto_server.env(), "PATH": "/usr/bin:/bin"}
    keys = tmp_path / "keys"
    r = subprocess.run([sys.executable, "cli.py", "keys", "init", str(keys), "--kms-key-id", key_id,
                        "--json"], capture_output=True, text=True, env=env, cwd=_root())
    assert r.returncode == 0, r.stderr
    paths = json.loads(r.stdout)
    src = tmp_path / "gen.jpg"
    src.write_bytes(make_media.image_bytes("jpeg"))
    out = tmp_path / "signed.jpg"
    r = subprocess.run([sys.executable, "cli.py", "sign", str(src), "-o", str(out), "--kms-key-id", key_id,
                        "--cert", paths["kms_signer_cert"], "--region", "us-east-1"],
                       capture_output=True, text=True, env=env, cwd=_root())
    assert r.returncode == 0, r.stderr
    assert verify(out, trust_anchors=paths["root"]).state == "trusted"


def _root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2])
