"""C2PA signing and verification (issue 2): every format round-trips, tampering and stripping are caught,
bad input gives clean errors, bad certificates give clear signing errors."""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import stat
import wave

import c2pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import provenance
from fixtures import make_media
from provenance import Signer, SigningError, Verification, certs, sign, verify
from provenance.media import MediaError, decode_image


@pytest.fixture(scope="session")
def ident(tmp_path_factory):
    return certs.init_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def other_ident(tmp_path_factory):
    return certs.init_keys(tmp_path_factory.mktemp("other"), intermediate=False)


@pytest.fixture(scope="session")
def signer(ident):
    return Signer.from_files(ident.signer_cert, ident.signer_key)


@pytest.fixture(scope="session")
def media():
    """One small sample per format, generated once."""
    return {fmt: make_media.media_bytes(fmt, **({"size": (160, 120)} if fmt in make_media.IMAGE_FORMATS
                                                 else {"seconds": 0.5} if fmt in ("mp4", "mov") else {}))
            for fmt in make_media.ALL_FORMATS}


@pytest.fixture(scope="session")
def signed_jpeg(media, signer):
    return sign(media["jpeg"], signer=signer, model="sdxl", model_version="1.0", prompt="a red fox")


def _decodes(fmt: str, data: bytes) -> None:
    if fmt in make_media.IMAGE_FORMATS:
        assert decode_image(data).shape == (120, 160, 3)
    elif fmt == "wav":
        with wave.open(io.BytesIO(data)) as w:
            assert w.getnframes() > 0
    else:
        import av

        with av.open(io.BytesIO(data)) as c:
            frames = list(c.decode(c.streams[0]))
            assert frames


# ----------------------------------------------------------------------------- keys
def test_init_keys_writes_pkcs8_private_files_and_a_working_chain(ident):
    for p in (ident.signer_key, ident.watermark_key, ident.ca_key):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert ident.signer_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    wm = ident.watermark_key.read_text()
    assert len(wm) == 65 and wm.endswith("\n") and len(bytes.fromhex(wm.strip())) == 32
    chain = certs.load_chain(ident.signer_cert)
    root = certs.load_chain(ident.root)[0]
    assert len(chain) == 2  # leaf + intermediate
    chain[0].verify_directly_issued_by(chain[1])
    chain[1].verify_directly_issued_by(root)
    eku = chain[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION in eku


def test_init_keys_refuses_to_overwrite(ident):
    before = ident.signer_key.read_bytes()
    with pytest.raises(FileExistsError):
        certs.init_keys(ident.root.parent)
    assert ident.signer_key.read_bytes() == before


@pytest.mark.parametrize("alg", ["ES256", "ES384", "PS256", "Ed25519"])
def test_every_algorithm_signs_and_verifies_trusted(alg, tmp_path, media):
    k = certs.init_keys(tmp_path, alg=alg)
    s = Signer.from_files(k.signer_cert, k.signer_key)
    assert s.alg == alg
    v = verify(sign(media["jpeg"], signer=s), trust_anchors=k.root)
    assert v.state == "trusted", v


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", make_media.ALL_FORMATS)
def test_every_format_round_trips_trusted_and_still_decodes(fmt, media, signer, ident):
    signed = sign(media[fmt], signer=signer, model="gen", model_version="2")
    v = verify(signed, trust_anchors=ident.root)
    assert v.state == "trusted", v
    assert v.codes == () and v.ai_generated is True and v.model == "gen" and v.model_version == "2"
    assert v.signer == "synthguard signer" and v.signed_at
    _decodes(fmt, signed)


def test_manifest_content(signed_jpeg, ident):
    v = verify(signed_jpeg, trust_anchors=ident.root)
    assert (v.state, v.model, v.model_version, v.ai_generated) == ("trusted", "sdxl", "1.0", True)
    dt.datetime.fromisoformat(v.signed_at.replace("Z", "+00:00"))
    store = json.loads(c2pa.Reader("image/jpeg", io.BytesIO(signed_jpeg)).json())
    m = store["manifests"][store["active_manifest"]]
    labels = {a["label"]: a["data"] for a in m["assertions"]}
    gen = labels["com.synthguard.generator"]
    assert gen["prompt_sha256"] == provenance.signing.prompt_hash("a red fox")
    assert b"a red fox" not in signed_jpeg  # the prompt itself never leaves
    created = labels["c2pa.actions.v2"]["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
    assert "thumbnail" not in m  # off by default


def test_foreign_camera_manifest_is_not_ai_generated(media, ident):
    """A manifest written by another tool (raw c2pa-python, a camera-style capture) reads as such."""
    chain, key = ident.signer_cert.read_bytes(), ident.signer_key.read_bytes()
    raw = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", chain, key, None))
    b = c2pa.Builder(json.dumps({"claim_generator_info": [{"name": "CameraCo", "version": "7.1"}]}))
    b.add_action(json.dumps({"action": "c2pa.created", "digitalSourceType":
                             "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}))
    out = io.BytesIO()
    b.sign(raw, "image/jpeg", io.BytesIO(media["jpeg"]), out)
    v = verify(out.getvalue(), trust_anchors=ident.root)
    assert (v.state, v.ai_generated, v.model, v.model_version) == ("trusted", False, "CameraCo", "7.1")


def test_path_and_stream_sources(tmp_path, media, signer, ident):
    p = tmp_path / "in.png"
    p.write_bytes(media["png"])
    from_path = sign(p, signer=signer)
    with open(p, "rb") as fh:
        from_stream = sign(fh, signer=signer)
    out = tmp_path / "out.png"
    out.write_bytes(from_path)
    assert verify(out, trust_anchors=ident.root).state == "trusted"
    with open(out, "rb") as fh:
        assert verify(fh, trust_anchors=ident.root.read_bytes()).state == "trusted"
    assert verify(from_stream, trust_anchors=ident.root.read_text()).state == "trusted"


def test_sign_file_streams_disk_to_disk(tmp_path, media, signer, ident):
    from provenance.signing import sign_file

    src = tmp_path / "clip.mp4"
    src.write_bytes(media["mp4"])
    out = sign_file(src, tmp_path / "out" / "clip.mp4", signer=signer, model="m")
    assert verify(out, trust_anchors=ident.root).state == "trusted"
    sc = sign_file(src, tmp_path / "side.mp4", signer=signer, sidecar=True)
    assert sc.name == "side.c2pa" and (tmp_path / "side.mp4").read_bytes() == media["mp4"]
    assert verify(tmp_path / "side.mp4", trust_anchors=ident.root).state == "trusted"
    assert sign_file(src, src, signer=signer) == src  # in place
    assert verify(src, trust_anchors=ident.root).state == "trusted"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    with pytest.raises(SigningError):
        sign_file(bad, tmp_path / "never.jpg", signer=signer)
    assert not (tmp_path / "never.jpg").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_thumbnail_is_opt_in_and_small(media, signer, ident):
    big = make_media.image_bytes("jpeg", size=(640, 480))
    plain = sign(big, signer=signer)
    thumb = sign(big, signer=signer, thumbnail=True)
    assert len(thumb) > len(plain) + 1000
    store = json.loads(c2pa.Reader("image/jpeg", io.BytesIO(thumb)).json())
    assert "thumbnail" in store["manifests"][store["active_manifest"]]
    assert verify(thumb, trust_anchors=ident.root).state == "trusted"


def test_watermark_payload_becomes_soft_binding(media, signer, ident):
    signed = sign(media["png"], signer=signer, watermark_payload=bytes.fromhex("0123456789abcdef"))
    v = verify(signed, trust_anchors=ident.root)
    assert v.state == "trusted" and v.soft_binding == "0123456789abcdef"
    store = json.loads(c2pa.Reader("image/png", io.BytesIO(signed)).json())
    actions = [a for x in store["manifests"][store["active_manifest"]]["assertions"]
               if x["label"].startswith("c2pa.actions") for a in x["data"]["actions"]]
    assert "c2pa.watermarked" in [a["action"] for a in actions]
    with pytest.raises(ValueError):
        sign(media["png"], signer=signer, watermark_payload=b"short")


def test_parent_ingredient(media, signer, ident, signed_jpeg):
    child = sign(media["jpeg"], signer=signer, model="upscaler", parent=signed_jpeg)
    v = verify(child, trust_anchors=ident.root)
    assert v.state == "trusted" and v.ai_generated and v.model == "upscaler"
    store = json.loads(c2pa.Reader("image/jpeg", io.BytesIO(child)).json())
    ingredients = store["manifests"][store["active_manifest"]]["ingredients"]
    assert [i["relationship"] for i in ingredients] == ["parentOf"]
    assert len(store["manifests"]) == 2  # the parent's manifest travels along


def test_sidecar_leaves_asset_unchanged(tmp_path, media, signer, ident):
    asset = tmp_path / "clip.wav"
    asset.write_bytes(media["wav"])
    manifest = sign(asset, signer=signer, sidecar=True)
    assert asset.read_bytes() == media["wav"]
    assert 1000 < len(manifest) < 10000
    assert verify(asset, trust_anchors=ident.root, manifest_data=manifest).state == "trusted"
    assert verify(asset, trust_anchors=ident.root).state == "missing"
    (tmp_path / "clip.c2pa").write_bytes(manifest)  # c2patool's sidecar convention
    assert verify(asset, trust_anchors=ident.root).state == "trusted"


@pytest.mark.parametrize("fmt", make_media.ALL_FORMATS)
def test_sidecar_every_format_verifies_or_is_refused(fmt, media, signer, ident):
    if fmt == "mp3":  # c2pa-rs 0.91 writes MP3 sidecars that fail their own data hash
        with pytest.raises(SigningError, match="sidecar"):
            sign(media[fmt], signer=signer, sidecar=True)
        return
    manifest = sign(media[fmt], signer=signer, sidecar=True)
    assert verify(media[fmt], manifest_data=manifest, trust_anchors=ident.root).state == "trusted"


# ----------------------------------------------------------------------------- failures caught
@pytest.mark.parametrize("fmt,code", [("jpeg", "assertion.dataHash.mismatch"),
                                      ("png", "assertion.dataHash.mismatch"),
                                      ("wav", "assertion.dataHash.mismatch"),
                                      ("mp4", "assertion.bmffHash.mismatch")])
def test_tampered_content_is_invalid_with_hash_mismatch(fmt, code, media, signer, ident):
    signed = bytearray(sign(media[fmt], signer=signer))
    if fmt == "png":
        at = signed.rindex(b"IDAT") + 200  # inside the compressed pixels
    elif fmt == "mp4":
        at = signed.index(b"mdat") + 500  # inside the coded frames
    elif fmt == "wav":
        at = signed.index(b"data") + 500  # inside the samples
    else:
        at = len(signed) - 300
    signed[at] ^= 0x01
    v = verify(bytes(signed), trust_anchors=ident.root)
    assert v.state == "invalid" and code in v.codes, v
    assert v.reason and code in v.reason


@pytest.mark.parametrize("fmt", ["jpeg", "mp4"])
def test_damaged_manifest_is_invalid_never_an_exception(fmt, media, signer, ident):
    signed = sign(media[fmt], signer=signer, model="m")
    start = signed.index(b"jumb")
    states = set()
    for off in range(0, 3400, 53):
        damaged = bytearray(signed)
        damaged[start + off] ^= 0x55
        v = verify(bytes(damaged), trust_anchors=ident.root)
        # Bytes outside the signed/hashed data (signature padding, some JUMBF descriptor bytes) may
        # flip without effect in c2pa-rs; everything else must come back invalid with code and reason.
        assert v.state in ("trusted", "invalid"), v
        assert v.state == "trusted" or (v.codes and v.reason)
        states.add(v.state)
    assert "invalid" in states


def test_pixel_edit_then_resave_keeps_no_credentials(media, signer, ident, signed_jpeg):
    from PIL import Image

    img = Image.open(io.BytesIO(signed_jpeg))
    img.putpixel((3, 3), (255, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    v = verify(buf.getvalue(), trust_anchors=ident.root)
    assert v.state == "missing" and v.ai_generated is None


def test_other_root_gives_valid_untrusted(signed_jpeg, other_ident):
    v = verify(signed_jpeg, trust_anchors=other_ident.root)
    assert v.state == "valid_untrusted" and "signingCredential.untrusted" in v.codes
    assert v.model == "sdxl"
    assert verify(signed_jpeg).state == "valid_untrusted"


@pytest.mark.parametrize("data,state", [(b"", "error"), (b"\x00garbage" * 50, "error"),
                                        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "error")])
def test_garbage_and_empty_are_clean_errors(data, state, ident):
    v = verify(data, trust_anchors=ident.root)
    assert v.state == state and v.reason


@pytest.mark.parametrize("fmt", ["jpeg", "png", "mp4"])
def test_truncated_files_never_verify(fmt, media, signer, ident):
    signed = sign(media[fmt], signer=signer)
    v = verify(signed[: len(signed) // 2], trust_anchors=ident.root)
    assert v.state in ("invalid", "error") and v.reason, v


def test_paths_missing_directory_unsupported_and_mislabelled(tmp_path, media, signer, ident):
    assert verify(tmp_path / "nope.jpg").state == "error"
    assert verify(tmp_path).state == "error"
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    v = verify(txt)
    assert v.state == "unsupported" and "image/jpeg" in v.reason
    wrong = tmp_path / "really_a_png.jpg"  # content wins over the extension
    wrong.write_bytes(sign(media["png"], signer=signer))
    v = verify(wrong, trust_anchors=ident.root)
    assert v.state == "trusted" and v.mime == "image/png"


def test_sign_rejects_unusable_input(signer):
    with pytest.raises(MediaError, match="empty"):
        sign(b"", signer=signer)
    with pytest.raises(MediaError, match="supported types: .*image/jpeg"):
        sign(b"plain text, not media" * 4, signer=signer)
    with pytest.raises(SigningError, match="could not sign"):
        sign(b"\xff\xd8\xff\xe0" + b"\x00" * 64, signer=signer)


# ----------------------------------------------------------------------------- certificates
def test_expired_certificate_is_a_clear_signing_error(tmp_path, ident):
    ca = certs.load_chain(ident.ca_cert)[0]
    ca_key, _ = certs.load_private_key(ident.ca_key)
    key = certs.generate_key()
    now = dt.datetime.now(dt.timezone.utc)
    leaf = certs.issue_leaf(key.public_key(), ca, ca_key, not_before=now - dt.timedelta(days=30),
                            not_after=now - dt.timedelta(days=1))
    with pytest.raises(SigningError, match="expired"):
        Signer.from_files(certs.cert_to_pem(leaf, ca), certs.key_to_pem(key))


def test_wrong_key_and_bad_certificates_are_clear_errors(ident, other_ident, tmp_path):
    with pytest.raises(SigningError, match="does not match"):
        Signer.from_files(ident.signer_cert, other_ident.signer_key)
    with pytest.raises(SigningError, match="CA certificate"):
        Signer.from_files(ident.ca_cert, ident.ca_key)
    with pytest.raises(SigningError, match="algorithm"):
        Signer.from_files(ident.signer_cert, ident.signer_key, alg="PS256")
    garbage = tmp_path / "junk.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(SigningError, match="not a PEM"):
        Signer.from_files(garbage, ident.signer_key)
    with pytest.raises(FileNotFoundError):
        Signer.from_files(tmp_path / "missing.pem", ident.signer_key)


def test_legacy_sec1_key_is_converted(ident, media):
    key, _ = certs.load_private_key(ident.signer_key)
    sec1 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    assert sec1.startswith(b"-----BEGIN EC PRIVATE KEY")
    s = Signer.from_files(ident.signer_cert, sec1)
    assert verify(sign(media["jpeg"], signer=s), trust_anchors=ident.root).state == "trusted"


def test_callback_signer_and_its_failures(ident, media):
    """The KMS/HSM hook: signatures come from a function; its exception reaches the user's message."""
    key, _ = certs.load_private_key(ident.signer_key)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    calls = []

    def hsm(data: bytes) -> bytes:
        calls.append(len(data))
        if len(calls) > 1:
            raise RuntimeError("HSM offline")
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    s = Signer.from_callback(hsm, ident.signer_cert, alg="ES256")
    assert verify(sign(media["jpeg"], signer=s), trust_anchors=ident.root).state == "trusted"
    with pytest.raises(SigningError, match="HSM offline"):
        sign(media["jpeg"], signer=s)


def test_unreachable_tsa_fails_at_signing(media, signer):
    with pytest.raises(SigningError):
        sign(media["jpeg"], signer=signer, tsa_url="http://127.0.0.1:9/tsa")


# ----------------------------------------------------------------------------- values and processes
def test_verification_is_a_small_value(signed_jpeg, ident):
    a = verify(signed_jpeg, trust_anchors=ident.root)
    b = verify(signed_jpeg, trust_anchors=ident.root)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(Exception):
        a.state = "invalid"  # type: ignore[misc]
    d = a.to_dict()
    assert json.loads(json.dumps(d)) == d and d["codes"] == []
    assert set(d) >= {"state", "codes", "ai_generated", "model", "signer", "signed_at", "reason"}
    assert str(Verification("invalid", ("x.y",), reason="why")) == "invalid (x.y): why"
    assert a.state in provenance.STATES


def _verify_in_child(args):
    data, root = args
    return verify(data, trust_anchors=root).state


def test_verify_in_worker_processes(signed_jpeg, ident):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    verify(signed_jpeg, trust_anchors=ident.root)  # warm the parent's caches before forking
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
        states = list(pool.map(_verify_in_child, [(signed_jpeg, str(ident.root))] * 4))
    assert states == ["trusted"] * 4
