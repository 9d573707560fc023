"""`synthguard keys init`, `sign` and `verify`: outputs, JSON shape and exit codes (0 / 1 / 2)."""
from __future__ import annotations

import io
import json
import os
import stat
import sys

import pytest

import cli
from fixtures import make_media
from provenance import verify


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("clikeys")
    assert cli.main(["keys", "init", str(d / "k"), "--json"]) == 0
    return d / "k"


@pytest.fixture()
def run(capsys):
    def _run(*argv: str, stdin: bytes | None = None):
        if stdin is not None:
            old = sys.stdin
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
        try:
            code = cli.main([str(a) for a in argv])
        finally:
            if stdin is not None:
                sys.stdin = old
        out, err = capsys.readouterr()
        return code, out, err
    return _run


def _signargs(keys):
    return ["--cert", keys / "signer.pem", "--key", keys / "signer.key"]


def test_keys_init_prints_paths_never_keys(tmp_path, run):
    code, out, err = run("keys", "init", tmp_path / "id", "--alg", "ES384")
    assert code == 0
    for name in ("root.pem", "signer.pem", "signer.key", "watermark.key"):
        assert str(tmp_path / "id" / name) in out
        assert (tmp_path / "id" / name).exists()
    assert "PRIVATE KEY" not in out + err
    assert stat.S_IMODE(os.stat(tmp_path / "id" / "signer.key").st_mode) == 0o600
    assert run("keys", "init", tmp_path / "id")[0] == 2  # refuses to overwrite
    assert run("keys", "init", tmp_path / "id", "--force")[0] == 0
    assert run("keys", "init", tmp_path / "x", "--alg", "RS1")[0] == 2


def test_sign_then_verify_file(tmp_path, keys, run):
    src = tmp_path / "gen.jpg"
    src.write_bytes(make_media.image_bytes("jpeg"))
    out = tmp_path / "gen.signed.jpg"
    code, _, err = run("sign", src, "-o", out, *_signargs(keys), "--model", "sdxl", "--model-version", "1.0",
                       "--prompt", "secret prompt", "--watermark-payload", "00112233445566ff")
    assert code == 0, err
    assert b"secret prompt" not in out.read_bytes()
    code, stdout, _ = run("verify", out, "--trust-anchors", keys / "root.pem", "--json")
    assert code == 0
    [row] = json.loads(stdout)
    assert row["path"] == str(out) and row["state"] == "trusted" and row["codes"] == []
    assert row["ai_generated"] is True and row["model"] == "sdxl"
    assert row["soft_binding"] == "00112233445566ff"
    code, stdout, _ = run("verify", out, "--trust-anchors", keys / "root.pem")
    assert code == 0 and "trusted" in stdout and "sdxl" in stdout
    # without anchors: valid_untrusted -> exit 1, unless --allow-untrusted
    assert run("verify", out)[0] == 1
    assert run("verify", out, "--allow-untrusted")[0] == 0
    # refuses to overwrite an existing output without --force
    assert run("sign", src, "-o", out, *_signargs(keys))[0] == 2
    assert run("sign", src, "-o", out, *_signargs(keys), "--force")[0] == 0


def test_in_place_signing_needs_force_and_never_corrupts(tmp_path, keys, run):
    src = _write(tmp_path / "orig.png", make_media.image_bytes("png", size=(64, 64)))
    before = src.read_bytes()
    assert run("sign", src, "-o", src, *_signargs(keys))[0] == 2
    assert src.read_bytes() == before
    assert run("sign", src, "-o", src, *_signargs(keys), "--force")[0] == 0
    assert verify(src, trust_anchors=keys / "root.pem").state == "trusted"
    assert [p.name for p in tmp_path.iterdir()] == ["orig.png"]  # no temp files left behind


def test_sign_directory_recursively_and_verify_r(tmp_path, keys, run):
    tree = tmp_path / "in"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.png").write_bytes(make_media.image_bytes("png", size=(64, 64)))
    (tree / "sub" / "b.wav").write_bytes(make_media.audio_bytes("wav", seconds=0.2))
    (tree / "README.txt").write_text("not media")
    code, _, err = run("sign", tree, "-o", tmp_path / "out", *_signargs(keys))
    assert code == 0, err
    assert (tmp_path / "out" / "sub" / "b.wav").exists() and not (tmp_path / "out" / "README.txt").exists()
    code, stdout, _ = run("verify", "-r", tmp_path / "out", "--trust-anchors", keys / "root.pem", "--json")
    rows = json.loads(stdout)
    assert code == 0 and len(rows) == 2 and {r["state"] for r in rows} == {"trusted"}
    # a directory without -r is an error row, not a crash
    code, stdout, _ = run("verify", tmp_path / "out", "--json")
    assert code == 1 and json.loads(stdout)[0]["state"] == "error"


def test_verify_bad_files_are_rows_with_reasons(tmp_path, keys, run):
    signed = tmp_path / "ok.png"
    run("sign", _write(tmp_path / "src.png", make_media.image_bytes("png")), "-o", signed, *_signargs(keys))
    files = {
        "empty.jpg": b"",
        "garbage.jpg": bytes(range(7, 250)) * 2,  # deterministic junk with a .jpg name
        "truncated.png": signed.read_bytes()[:4000],
        "text.txt": b"hello",
        "plain.jpg": make_media.image_bytes("jpeg", size=(32, 32)),
    }
    for n, d in files.items():
        _write(tmp_path / n, d)
    paths = [tmp_path / n for n in files] + [signed, tmp_path / "does-not-exist.jpg"]
    code, stdout, err = run("verify", *paths, "--trust-anchors", keys / "root.pem", "--json")
    assert code == 1 and "Traceback" not in err
    rows = {os.path.basename(r["path"]): r for r in json.loads(stdout)}
    assert rows["ok.png"]["state"] == "trusted"
    assert rows["plain.jpg"]["state"] == "missing"
    assert rows["text.txt"]["state"] == "unsupported"
    for n in ("empty.jpg", "garbage.jpg", "truncated.png", "does-not-exist.jpg"):
        assert rows[n]["state"] in ("error", "invalid") and rows[n]["reason"], rows[n]
    code, stdout, _ = run("verify", *paths, "--trust-anchors", keys / "root.pem")
    assert code == 1 and "empty file" in stdout


def test_stdin_and_stdout(tmp_path, keys, run):
    data = make_media.image_bytes("webp")
    code, _, err = run("sign", "-", "-o", tmp_path / "o.webp", *_signargs(keys), stdin=data)
    assert code == 0, err
    code, stdout, _ = run("verify", "-", "--trust-anchors", keys / "root.pem", "--json",
                          stdin=(tmp_path / "o.webp").read_bytes())
    assert code == 0 and json.loads(stdout)[0]["path"] == "-"


def test_sidecar(tmp_path, keys, run):
    src = _write(tmp_path / "clip.wav", make_media.audio_bytes("wav", seconds=0.3))
    before = src.read_bytes()
    code, _, err = run("sign", src, "--sidecar", *_signargs(keys))
    assert code == 0, err
    assert src.read_bytes() == before and (tmp_path / "clip.c2pa").exists()
    assert run("verify", src, "--trust-anchors", keys / "root.pem")[0] == 0


def test_parent_and_thumbnail(tmp_path, keys, run):
    parent = _write(tmp_path / "p.jpg", make_media.image_bytes("jpeg", seed=3))
    child = _write(tmp_path / "c.jpg", make_media.image_bytes("jpeg", seed=4))
    out = tmp_path / "out.jpg"
    code, _, err = run("sign", child, "-o", out, *_signargs(keys), "--parent", parent, "--thumbnail")
    assert code == 0, err
    assert verify(out, trust_anchors=keys / "root.pem").state == "trusted"


@pytest.mark.parametrize("argv", [
    ["sign", "missing.jpg", "-o", "x.jpg", "--cert", "c", "--key", "k"],
    ["sign", "{src}", "--cert", "{keys}/signer.pem", "--key", "{keys}/signer.key"],  # no -o
    ["sign", "{src}", "-o", "{tmp}/o.jpg", "--key", "{keys}/signer.key"],  # no --cert
    ["sign", "{src}", "-o", "{tmp}/o.jpg", "--cert", "{keys}/signer.pem", "--key", "{keys}/signer.key",
     "--watermark-payload", "abc"],
    ["sign", "{tmp}/junk.jpg", "-o", "{tmp}/o.jpg", "--cert", "{keys}/signer.pem", "--key", "{keys}/signer.key"],
    ["sign", "{src}", "-o", "{tmp}/o.jpg", "--cert", "{keys}/root.pem", "--key", "{keys}/signer.key"],
    ["verify", "{src}", "--trust-anchors", "{tmp}/nope.pem"],
])
def test_usage_errors_exit_2_with_one_line(argv, tmp_path, keys, run):
    src = _write(tmp_path / "src.jpg", make_media.image_bytes("jpeg", size=(32, 32)))
    _write(tmp_path / "junk.jpg", b"not really a jpeg")
    argv = [a.format(src=src, keys=keys, tmp=tmp_path) for a in argv]
    code, out, err = run(*argv)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("synthguard: error:") and "Traceback" not in err


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_sign_with_watermark_embeds_then_binds(tmp_path, keys, run):
    import numpy as np

    import watermark
    from provenance.media import decode_image

    src = _write(tmp_path / "gen.png", make_media.image_bytes("png", size=(320, 320)))
    out = tmp_path / "marked.png"
    code, stdout, err = run("sign", src, "-o", out, *_signargs(keys), "--watermark", "--watermark-payload",
                            "0102030405060708", "--watermark-key-file", keys / "watermark.key", "--json")
    assert code == 0, err
    assert json.loads(stdout)["watermark_payload"] == "0102030405060708"
    v = verify(out, trust_anchors=keys / "root.pem")
    assert v.state == "trusted" and v.soft_binding == "0102030405060708"
    # PNG is lossless: the signed pixels are exactly the watermark room's embed of the original.
    key = watermark.load_key(keys / "watermark.key")
    expected = watermark.embed(decode_image(src), bytes.fromhex("0102030405060708"), key=key)
    assert np.array_equal(decode_image(out), expected)
    assert not np.array_equal(decode_image(out), decode_image(src))
    # video cannot take the image watermark; sidecar cannot carry changed pixels
    mp4 = _write(tmp_path / "v.mp4", make_media.video_bytes("mp4", seconds=0.3))
    assert run("sign", mp4, "-o", tmp_path / "o.mp4", *_signargs(keys), "--watermark")[0] == 2
    assert run("sign", src, "-o", tmp_path / "o.png", *_signargs(keys), "--watermark", "--sidecar")[0] == 2


def test_embed_watermark_keeps_format(keys):
    from provenance.media import sniff_mime
    from provenance.signing import embed_watermark

    for fmt in ("jpeg", "webp", "tiff"):
        data = make_media.image_bytes(fmt, size=(300, 300))
        marked = embed_watermark(data, b"\x00" * 8)
        assert sniff_mime(marked) == sniff_mime(data) and marked != data
    with pytest.raises(Exception, match="images only"):
        embed_watermark(make_media.audio_bytes("wav", seconds=0.1), b"\x00" * 8)
