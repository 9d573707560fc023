"""Bug hunt: sign / verify / watermark / fingerprint on odd inputs a user would hand the CLI.

Per case: no traceback for a user mistake (one line, exit 2), never a lost or modified input file,
valid JSON with --json. The bugs this hunt found are fixed; their tests stay as regressions.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from fixtures.make_media import image_array, image_bytes
from test_cli_errors import digest, one_line_error, run

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = "0011223344556677"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in ("SYNTHGUARD_DEBUG", "SYNTHGUARD_WATERMARK_KEY_FILE", "SYNTHGUARD_TRUST_ANCHORS",
                "SYNTHGUARD_SIGNER_CERT", "SYNTHGUARD_SIGNER_KEY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def kdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("huntkeys") / "k"
    assert cli.main(["keys", "init", str(d)]) == 0
    return d


@pytest.fixture(scope="module")
def sk(kdir):
    return ["--cert", str(kdir / "signer.pem"), "--key", str(kdir / "signer.key")]


def _rgb(size=(64, 64), seed=0) -> Image.Image:
    return Image.fromarray(image_array(size, seed=seed))


def _odd_image(kind: str, path: Path, size=(64, 64)) -> Path:
    im = _rgb(size)
    if kind == "cmyk.jpg":
        im.convert("CMYK").save(path, "JPEG", quality=95)
    elif kind == "gray16.png":
        Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257).save(path)
    elif kind == "palette_transparent.png":
        im.convert("P").save(path, transparency=0)
    elif kind == "gray_alpha.png":
        im.convert("LA").save(path)
    elif kind == "exif_rotated.jpg":
        exif = Image.Exif()
        exif[0x0112] = 6
        im.save(path, "JPEG", exif=exif, quality=95)
    elif kind == "animated.gif":
        im.save(path, save_all=True, append_images=[im.transpose(Image.FLIP_LEFT_RIGHT)], duration=100)
    elif kind == "animated.webp":
        im.save(path, save_all=True, append_images=[im.transpose(Image.FLIP_LEFT_RIGHT), im], duration=100,
                lossless=True)
    elif kind == "multipage.tif":
        im.save(path, save_all=True, append_images=[im.transpose(Image.FLIP_LEFT_RIGHT)])
    elif kind == "1x1.png":
        Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    else:
        raise AssertionError(kind)
    return path


# ----------------------------------------------------------------------------- sign / verify odd images
@pytest.mark.parametrize("kind", ["cmyk.jpg", "gray16.png", "palette_transparent.png", "gray_alpha.png",
                                  "exif_rotated.jpg", "animated.gif", "animated.webp", "1x1.png"])
def test_sign_odd_images_verifies_trusted(capsys, tmp_path, kdir, sk, kind):
    src = _odd_image(kind, tmp_path / kind)
    before = digest(src)
    out = tmp_path / "out" / f"s-{kind}"
    rc, stdout, err = run(capsys, "sign", str(src), "-o", str(out), *sk, "--json")
    assert rc == 0, err
    assert json.loads(stdout)["output"] == str(out)
    assert digest(src) == before
    rc, stdout, _ = run(capsys, "verify", str(out), "--trust-anchors", str(kdir / "root.pem"), "--json")
    assert rc == 0 and json.loads(stdout)[0]["state"] == "trusted"


def test_sign_and_verify_name_with_spaces_brackets_unicode(capsys, tmp_path, kdir, sk):
    src = tmp_path / "my file [1] (é) ✓.png"
    src.write_bytes(image_bytes("png", size=(48, 48)))
    out = tmp_path / "out dir [x]" / "signé ✓.png"  # missing directory: created
    rc, stdout, err = run(capsys, "sign", str(src), "-o", str(out), *sk, "--json")
    assert rc == 0 and out.exists(), err
    assert json.loads(stdout)["input"] == str(src)
    rc, stdout, _ = run(capsys, "verify", str(out), "--trust-anchors", str(kdir / "root.pem"), "--json")
    assert rc == 0 and json.loads(stdout)[0]["path"] == str(out)


def test_sign_truncated_in_place_keeps_input_and_leaves_no_temp(capsys, tmp_path, sk):
    src = tmp_path / "t.jpg"
    src.write_bytes(image_bytes("jpeg", size=(64, 64))[:400])
    before = digest(src)
    rc, stdout, err = run(capsys, "sign", str(src), "-o", str(src), *sk, "--force", "--json")
    assert rc == 2 and stdout == ""
    one_line_error(err, "c2pa could not sign")
    assert digest(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jpg"]


@pytest.mark.parametrize("kind", ["cmyk.jpg", "1x1.png"])
def test_sign_watermark_too_small_is_one_line(capsys, tmp_path, sk, kind):
    src = _odd_image(kind, tmp_path / kind)
    out = tmp_path / f"o-{kind}"
    rc, _, err = run(capsys, "sign", str(src), "-o", str(out), *sk, "--watermark", "--json")
    assert rc == 2 and not out.exists()
    one_line_error(err, "at least 256 px")


def test_sign_watermark_odd_modes_detects_and_verifies(capsys, tmp_path, kdir, sk):
    for kind in ("cmyk.jpg", "palette_transparent.png", "exif_rotated.jpg"):
        src = _odd_image(kind, tmp_path / kind, size=(288, 264))
        out = tmp_path / f"o-{kind}"
        rc, _, err = run(capsys, "sign", str(src), "-o", str(out), *sk, "--watermark",
                         "--watermark-payload", PAYLOAD)
        assert rc == 0, err
        rc, stdout, _ = run(capsys, "watermark", "detect", str(out), "--json")
        assert rc == 0 and json.loads(stdout)[0]["payload"] == PAYLOAD, kind
        assert run(capsys, "verify", str(out), "--trust-anchors", str(kdir / "root.pem"))[0] == 0
    # palette transparency survives as alpha; EXIF orientation is applied to the pixels
    assert Image.open(tmp_path / "o-palette_transparent.png").mode == "RGBA"
    assert Image.open(tmp_path / "o-exif_rotated.jpg").size == (264, 288)


@pytest.mark.parametrize("kind", ["animated.webp", "multipage.tif"])
def test_sign_watermark_keeps_every_frame_or_refuses(capsys, tmp_path, sk, kind):
    src = _odd_image(kind, tmp_path / kind, size=(288, 264))
    frames = Image.open(src).n_frames
    out = tmp_path / f"o-{kind}"
    rc, _, err = run(capsys, "sign", str(src), "-o", str(out), *sk, "--watermark")
    assert rc == 2 or getattr(Image.open(out), "n_frames", 1) == frames, err


@pytest.mark.parametrize("extra", [(), ("--watermark",)], ids=["plain", "watermark"])
def test_resigning_keeps_the_previous_manifest(capsys, tmp_path, sk, extra):
    """Re-signing a signed file (also with --watermark, which re-encodes the pixels and so drops the
    embedded manifest) keeps the earlier manifest as the parentOf ingredient."""
    import c2pa

    src = tmp_path / "a.png"
    src.write_bytes(image_bytes("png", size=(288, 288)))
    assert run(capsys, "sign", str(src), "-o", str(tmp_path / "s1.png"), *sk, "--model", "first")[0] == 0
    assert run(capsys, "sign", str(tmp_path / "s1.png"), "-o", str(tmp_path / "s2.png"), *sk,
               "--model", "second", *extra)[0] == 0
    with open(tmp_path / "s2.png", "rb") as fh:
        store = json.loads(c2pa.Reader("image/png", fh).json())
    active = store["manifests"][store["active_manifest"]]
    assert len(store["manifests"]) == 2
    assert [i.get("relationship") for i in active.get("ingredients", [])] == ["parentOf"], store


# ----------------------------------------------------------------------------- verify
def test_verify_r_mixed_directory_json(capsys, tmp_path, kdir, sk):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    src = tree / "plain.png"
    src.write_bytes(image_bytes("png", size=(32, 32)))
    assert run(capsys, "sign", str(src), "-o", str(tree / "signed é [1].png"), *sk)[0] == 0
    (tree / "notes.txt").write_text("hi")
    (tree / "sub" / "trunc.jpg").write_bytes(image_bytes("jpeg", size=(64, 64))[:300])
    (tree / "sub" / "loop").symlink_to("..")
    (tree / "link.png").symlink_to(tree / "signed é [1].png")
    os.mkfifo(tree / "fifo.png")
    capsys.readouterr()
    rc, stdout, err = run(capsys, "verify", str(tree), "-r", "--trust-anchors", str(kdir / "root.pem"), "--json")
    rows = {Path(r["path"]).name: r for r in json.loads(stdout)}
    assert rc == 1 and err == ""
    assert rows["signed é [1].png"]["state"] == rows["link.png"]["state"] == "trusted"
    assert rows["plain.png"]["state"] == "missing"
    assert rows["notes.txt"]["state"] == "unsupported"
    assert rows["trunc.jpg"]["state"] == "error" and rows["trunc.jpg"]["reason"]
    assert "fifo.png" not in rows  # a FIFO is skipped, not read (would block)


def test_verify_r_reports_dangling_symlink(capsys, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.png").write_bytes(image_bytes("png", size=(32, 32)))
    (tmp_path / "d" / "gone.png").symlink_to(tmp_path / "nonexistent.png")
    rc, stdout, _ = run(capsys, "verify", str(tmp_path / "d"), "-r", "--json")
    assert "gone.png" in {Path(r["path"]).name for r in json.loads(stdout)}


def test_verify_fifo_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "f.png")
    p = subprocess.run([sys.executable, "-c", "import cli,sys; sys.exit(cli.main(sys.argv[1:]))", "verify",
                        str(tmp_path / "f.png"), "--json"], cwd=ROOT, capture_output=True, timeout=8)
    assert p.returncode == 1 and json.loads(p.stdout)[0]["state"] == "error"


def test_verify_json_rows_for_bad_paths_and_exit_codes(capsys, tmp_path, kdir, sk):
    (tmp_path / "adir").mkdir()
    (tmp_path / "empty.jpg").write_bytes(b"")
    rc, stdout, err = run(capsys, "verify", str(tmp_path / "nope.jpg"), str(tmp_path / "adir"),
                          str(tmp_path / "empty.jpg"), "--json")
    assert rc == 1 and err == ""
    assert [r["state"] for r in json.loads(stdout)] == ["error"] * 3
    src = tmp_path / "a.png"
    src.write_bytes(image_bytes("png", size=(32, 32)))
    assert run(capsys, "sign", str(src), "-o", str(tmp_path / "s.png"), *sk)[0] == 0
    other = tmp_path / "other"
    assert cli.main(["keys", "init", str(other)]) == 0
    capsys.readouterr()
    args = ["verify", str(tmp_path / "s.png"), "--json", "--trust-anchors"]
    assert run(capsys, *args, str(kdir / "root.pem"))[0] == 0
    assert run(capsys, *args, str(other / "root.pem"))[0] == 1
    assert run(capsys, *args, str(other / "root.pem"), "--allow-untrusted")[0] == 0
    rc, _, err = run(capsys, *args, str(tmp_path / "adir"))
    assert rc == 2
    one_line_error(err, "is a directory")


# ----------------------------------------------------------------------------- keys
@pytest.mark.parametrize("which,content,needle", [
    ("--key", None, "no such file"),
    ("--key", b"abcd", "not a PEM file"),
    ("--key", "cert", "not a readable private key"),
    ("--key", "dir", "is a directory"),
    ("--cert", "dir", "is a directory"),
])
def test_sign_bad_key_files_are_one_line(capsys, tmp_path, kdir, which, content, needle):
    src = tmp_path / "a.png"
    src.write_bytes(image_bytes("png", size=(32, 32)))
    bad = tmp_path / "bad.pem"
    if content == "dir":
        bad.mkdir()
    elif content == "cert":
        bad = kdir / "signer.pem"
    elif content is not None:
        bad.write_bytes(content)
    args = {"--cert": str(kdir / "signer.pem"), "--key": str(kdir / "signer.key")}
    args[which] = str(bad)
    rc, stdout, err = run(capsys, "sign", str(src), "-o", str(tmp_path / "o.png"), *sum(args.items(), ()), "--json")
    assert rc == 2 and stdout == "" and not (tmp_path / "o.png").exists()
    one_line_error(err, needle)


def test_sign_mismatched_key_is_one_line(capsys, tmp_path, kdir):
    other = tmp_path / "other"
    assert cli.main(["keys", "init", str(other)]) == 0
    src = tmp_path / "a.png"
    src.write_bytes(image_bytes("png", size=(32, 32)))
    capsys.readouterr()
    rc, _, err = run(capsys, "sign", str(src), "-o", str(tmp_path / "o.png"), "--cert", str(kdir / "signer.pem"),
                     "--key", str(other / "signer.key"))
    assert rc == 2 and not (tmp_path / "o.png").exists()
    one_line_error(err, "does not match")


@pytest.mark.parametrize("keyfile,needle", [
    ("missing", "cannot read key file"), ("short", "32 raw bytes or 64 hex"), ("dir", "Is a directory")])
def test_watermark_bad_key_file_is_one_line(capsys, tmp_path, keyfile, needle):
    (tmp_path / "short").write_bytes(b"abcd")
    (tmp_path / "dir").mkdir()
    src = tmp_path / "a.jpg"
    src.write_bytes(image_bytes("jpeg", size=(64, 64)))
    for argv in (["embed", str(src), str(tmp_path / "o.jpg"), "--payload", PAYLOAD], ["detect", str(src), "--json"]):
        rc, stdout, err = run(capsys, "watermark", *argv, "--key-file", str(tmp_path / keyfile))
        assert rc == 2 and stdout == "" and not (tmp_path / "o.jpg").exists()
        one_line_error(err, needle)


# ----------------------------------------------------------------------------- watermark CLI
@pytest.fixture
def jpg(tmp_path) -> Path:
    p = tmp_path / "in.jpg"
    p.write_bytes(image_bytes("jpeg", size=(256, 256)))
    return p


@pytest.mark.parametrize("out", ["{d}/in.jpg", "{d}/./in.jpg", "{d}/link.jpg", "{d}/hard.jpg"])
def test_watermark_embed_out_same_file_refused(capsys, tmp_path, jpg, out):
    (tmp_path / "link.jpg").symlink_to(jpg)
    os.link(jpg, tmp_path / "hard.jpg")
    before = digest(jpg)
    rc, _, err = run(capsys, "watermark", "embed", str(jpg), out.format(d=tmp_path), "--payload", PAYLOAD, "--force")
    assert rc == 2 and digest(jpg) == before
    one_line_error(err, "OUT must differ from IN")


@pytest.mark.parametrize("payload,needle", [
    ("00112233", "16 hex"), ("0x00112233445566", "must be hex"), ("zz11223344556677", "must be hex"),
    ("\uff10\uff1011223344556677", "must be hex")])
def test_watermark_payload_errors(capsys, tmp_path, jpg, payload, needle):
    rc, _, err = run(capsys, "watermark", "embed", str(jpg), str(tmp_path / "o.png"), "--payload", payload)
    assert rc == 2 and not (tmp_path / "o.png").exists()
    one_line_error(err, needle)


def test_watermark_embed_usage_errors(capsys, tmp_path, jpg):
    (tmp_path / "t.txt").write_text("hello")
    (tmp_path / "adir").mkdir()
    (tmp_path / "small.png").write_bytes(image_bytes("png", size=(64, 64)))
    cases = [
        ([str(tmp_path / "small.png"), str(tmp_path / "o.png")], "at least 256 px"),
        ([str(tmp_path / "t.txt"), str(tmp_path / "o.png")], "cannot decode image"),
        ([str(jpg), str(tmp_path / "nodir" / "o.png")], "does not exist"),
        ([str(jpg), str(tmp_path / "adir")], "is a directory"),
        ([str(jpg), str(tmp_path / "o.xyz")], "cannot write this image format"),
    ]
    for argv, needle in cases:
        rc, stdout, err = run(capsys, "watermark", "embed", *argv, "--payload", PAYLOAD, "--json")
        assert rc == 2 and stdout == "", argv
        one_line_error(err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "in.jpg", "small.png", "t.txt"]


def test_watermark_detect_bad_inputs_are_json_rows(capsys, tmp_path, jpg):
    (tmp_path / "t.txt").write_text("hello")
    (tmp_path / "adir").mkdir()
    (tmp_path / "empty.png").write_bytes(b"")
    paths = [str(tmp_path / n) for n in ("t.txt", "adir", "empty.png", "nope.png")] + [str(jpg)]
    rc, stdout, err = run(capsys, "watermark", "detect", *paths, "--json")
    rows = json.loads(stdout)
    assert rc == 1 and err == "" and [r["path"] for r in rows] == paths
    assert all(r["error"] and not r["detected"] for r in rows[:4])
    assert rows[4]["error"] is None and rows[4]["detected"] is False


def test_watermark_embed_dark_16bit_png_keeps_brightness(capsys, tmp_path):
    src = tmp_path / "dark16.png"
    gray = np.asarray(_rgb((256, 256)).convert("L"), dtype=np.uint16)  # 0..255 of 65535: nearly black
    Image.fromarray(gray).save(src)
    out = tmp_path / "o.png"
    assert run(capsys, "watermark", "embed", str(src), str(out), "--payload", PAYLOAD)[0] == 0
    res = np.asarray(Image.open(out))
    scale = 65535.0 if res.dtype == np.uint16 or res.max() > 255 else 255.0
    assert abs(res.mean() / scale - gray.mean() / 65535.0) < 0.01


def test_watermark_embed_16bit_png_keeps_bit_depth(capsys, tmp_path):
    src = tmp_path / "g16.png"
    Image.fromarray(np.asarray(_rgb((256, 256)).convert("L"), dtype=np.uint16) * 257).save(src)
    out = tmp_path / "o.png"
    assert run(capsys, "watermark", "embed", str(src), str(out), "--payload", PAYLOAD)[0] == 0
    assert np.asarray(Image.open(out)).dtype == np.uint16


# ----------------------------------------------------------------------------- fingerprint registry
def test_fingerprint_registry_dir_or_not_sqlite(capsys, tmp_path):
    src = tmp_path / "a.jpg"
    src.write_bytes(image_bytes("jpeg", size=(64, 64)))
    (tmp_path / "adir").mkdir()
    notdb = tmp_path / "notdb.db"
    notdb.write_text("hello, not sqlite\n")
    before = digest(notdb)
    for action, reg, needle in (("add", tmp_path / "adir", "is a directory"),
                                ("add", notdb, "not a synthguard registry"),
                                ("match", tmp_path / "adir", str(tmp_path / "adir")),
                                ("match", notdb, "not a synthguard registry")):
        rc, stdout, err = run(capsys, "fingerprint", action, str(src), "--registry", str(reg), "--json")
        assert rc == 2 and stdout == ""
        one_line_error(err, needle)
    assert digest(notdb) == before
    rc, _, err = run(capsys, "fingerprint", "match", str(src), "--registry", str(tmp_path / "missing.db"))
    assert rc == 2 and not (tmp_path / "missing.db").exists()
    one_line_error(err, "registry not found")
    rc, _, err = run(capsys, "fingerprint", "add", str(src), "--registry", str(tmp_path / "no" / "r.db"))
    assert rc == 2 and not (tmp_path / "no").exists()
    one_line_error(err, "does not exist")


def test_fingerprint_match_registry_directory_message(capsys, tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "a.jpg").write_bytes(image_bytes("jpeg", size=(64, 64)))
    rc, _, err = run(capsys, "fingerprint", "match", str(tmp_path / "a.jpg"), "--registry", str(tmp_path / "adir"))
    assert rc == 2
    one_line_error(err, "is a directory")


def test_fingerprint_match_negative_threshold_is_usage_error(capsys, tmp_path):
    src = tmp_path / "a.jpg"
    src.write_bytes(image_bytes("jpeg", size=(64, 64)))
    assert run(capsys, "fingerprint", "add", str(src), "--registry", str(tmp_path / "r.db"))[0] == 0
    rc, _, err = run(capsys, "fingerprint", "match", str(src), "--registry", str(tmp_path / "r.db"),
                     "--threshold", "-1")
    assert rc == 2, err


# ----------------------------------------------------------------------------- library sources
def test_library_sign_verify_accept_bytes_streams_paths(tmp_path, kdir):
    import provenance
    from provenance.media import MediaError

    signer = provenance.Signer.from_files(kdir / "signer.pem", kdir / "signer.key")
    src = tmp_path / "a.png"
    src.write_bytes(image_bytes("png", size=(32, 32)))
    data = src.read_bytes()
    anchors = kdir / "root.pem"
    with open(src, "rb") as fh:
        for source in (data, bytearray(data), memoryview(data), io.BytesIO(data), str(src), src, fh):
            signed = provenance.sign(source, signer=signer, model="m")
            for s2 in (signed, io.BytesIO(signed)):
                v = provenance.verify(s2, trust_anchors=anchors)
                assert v.state == "trusted" and v.model == "m"
    assert provenance.verify(signed, trust_anchors=anchors.read_bytes()).state == "trusted"
    assert provenance.verify(signed).state == "valid_untrusted"
    for bad in (b"", b"xx" * 100, tmp_path / "nope.png"):
        assert provenance.verify(bad, trust_anchors=anchors).state == "error"
    with open(src, "r", encoding="latin-1") as text, pytest.raises(MediaError, match="text mode"):
        provenance.sign(text, signer=signer)


def test_library_watermark_accepts_bytes_streams_paths_pil(tmp_path):
    import watermark
    from provenance.media import MediaError

    src = tmp_path / "w.png"
    _rgb((256, 288)).save(src)
    marked = watermark.embed(src, bytes.fromhex(PAYLOAD))
    out = tmp_path / "m.png"
    Image.fromarray(marked).save(out)
    data = out.read_bytes()
    with open(out, "rb") as fh, Image.open(out) as pil:
        for source in (data, io.BytesIO(data), str(out), out, fh, pil):
            d = watermark.detect(source, search="own")
            assert d.detected and d.payload == bytes.fromhex(PAYLOAD)
    with pytest.raises(ValueError, match="8 bytes"):
        watermark.embed(src, b"\0" * 7)
    with pytest.raises(ValueError, match="256 px"):
        watermark.embed(np.zeros((64, 64, 3), np.uint8), b"\0" * 8)
    for bad in (b"", b"hello"):
        with pytest.raises(MediaError):
            watermark.detect(bad)
