"""Bad input through the CLI: one line on stderr, exit 2, no traceback, no touched user file.

Regression tests for what a user-level QA pass found (no servers: an unreachable endpoint is
127.0.0.1:1).
"""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

import cli

DEAD = "http://127.0.0.1:1"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, needle: str) -> None:
    assert "Traceback" not in err and "SYNTHGUARD_DEBUG" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("synthguard: error:"), err
    assert needle in lines[0], err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS", "SYNTHGUARD_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")


@pytest.fixture
def state_db(tmp_path) -> Path:
    from s3sync.state import State

    p = tmp_path / "state.db"
    State(p).db.close()
    return p


@pytest.fixture
def registry_db(tmp_path) -> Path:
    from provenance.registry import Registry

    p = tmp_path / "reg.db"
    Registry(p).close()
    return p


# ----------------------------------------------------------------------------- keys init
def test_keys_init_rejects_nonpositive_days_without_creating_dir(capsys, tmp_path):
    d = tmp_path / "keys"
    rc, _, err = run(capsys, "keys", "init", str(d), "--days", "0")
    assert rc == 2 and not d.exists()
    one_line_error(err, "--days")


def test_keys_init_on_a_file(capsys, tmp_path):
    f = tmp_path / "a.png"
    f.write_bytes(b"not a dir")
    rc, _, err = run(capsys, "keys", "init", str(f))
    assert rc == 2 and f.read_bytes() == b"not a dir"
    one_line_error(err, "not a directory")


def test_keys_init_kms_unreachable_leaves_no_half_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # was NoRegionError, exit 1, with keys already written
    d = tmp_path / "keys"
    rc, _, err = run(capsys, "keys", "init", str(d), "--kms-key-id", "arn:aws:kms:x", "--endpoint-url", DEAD)
    assert rc == 2 and not d.exists()
    one_line_error(err, "region")


# ----------------------------------------------------------------------------- botocore errors
def test_fingerprint_add_unreachable_endpoint_is_one_line_exit_2(capsys, tmp_path):
    rc, _, err = run(capsys, "fingerprint", "add", "s3://media/gen/", "--registry", str(tmp_path / "r.db"),
                     "--endpoint-url", DEAD)
    assert rc == 2
    one_line_error(err, "AWS: EndpointConnectionError")


# ----------------------------------------------------------------------------- registry vs state DBs
def test_registry_refuses_an_audit_state_db_and_leaves_it_alone(capsys, state_db):
    before = digest(state_db)
    rc, _, err = run(capsys, "fingerprint", "match", str(state_db), "--registry", str(state_db))
    assert rc == 2 and digest(state_db) == before
    one_line_error(err, "not a synthguard registry")


def test_state_refuses_a_registry_db_and_leaves_it_alone(capsys, registry_db):
    before = digest(registry_db)
    rc, _, err = run(capsys, "audit", "report", "--state", str(registry_db))
    assert rc == 2
    one_line_error(err, "not a synthguard state DB")
    rc, _, err = run(capsys, "audit", "s3://media/", "--state", str(registry_db), "--endpoint-url", DEAD,
                     "--no-posture")
    assert rc == 2 and digest(registry_db) == before
    one_line_error(err, "not a synthguard state DB")
    with sqlite3.connect(registry_db) as con:  # still a registry, not switched to WAL
        assert con.execute("PRAGMA journal_mode").fetchone()[0] != "wal"


@pytest.mark.parametrize("flag,value,needle", [
    ("--check-timeout", "-1", "--check-timeout must be >= 0"),
    ("--check-timeout", "nan", "--check-timeout must be >= 0"),
    ("--workers", "0", "--workers must be >= 1"),
])
def test_audit_numeric_options_are_usage_errors(capsys, tmp_path, flag, value, needle):
    rc, _, err = run(capsys, "audit", "s3://media/", flag, value, "--state", str(tmp_path / "s.db"),
                     "--endpoint-url", DEAD)
    assert rc == 2 and not (tmp_path / "s.db").exists()
    one_line_error(err, needle)


def test_audit_state_in_uncreatable_dir(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = run(capsys, "audit", "s3://media/", "--state", str(blocker / "st.db"), "--endpoint-url", DEAD)
    assert rc == 2
    one_line_error(err, "cannot create")


def test_audit_registry_not_sqlite_is_a_usage_error(capsys, tmp_path, state_db):
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"garbage\n")
    rc, _, err = run(capsys, "audit", "s3://media/", "--registry", str(bad), "--state", str(state_db),
                     "--endpoint-url", DEAD, "--no-posture")
    assert rc == 2 and bad.read_bytes() == b"garbage\n"  # was: exit 0, every object 'unreadable'
    one_line_error(err, "--registry")


# ----------------------------------------------------------------------------- output paths
def test_audit_out_directory_is_refused_before_the_audit(capsys, tmp_path, state_db):
    rc, _, err = run(capsys, "audit", "s3://media/", "--out", str(tmp_path), "--state", str(state_db),
                     "--endpoint-url", DEAD)
    assert rc == 2
    one_line_error(err, "is a directory")


def test_write_text_unwritable_is_a_usage_error(tmp_path):
    with pytest.raises(cli.UsageError, match="cannot write"):
        cli.write_text("x", str(tmp_path / "missing" / "out.txt"))


def test_controls_generate_out_is_a_file(capsys, tmp_path):
    cfg = tmp_path / "synthguard.toml"
    cfg.write_text('[posture]\n[[posture.buckets]]\nname = "media"\nclass = "synthetic-media"\n')
    f = tmp_path / "a.png"
    f.write_bytes(b"keep me")
    rc, _, err = run(capsys, "controls", "generate", "--config", str(cfg), "--out", str(f))
    assert rc == 2 and f.read_bytes() == b"keep me"  # was FileExistsError, exit 1
    one_line_error(err, "not a directory")


# ----------------------------------------------------------------------------- posture
def test_posture_config_is_a_directory(capsys, tmp_path):
    rc, _, err = run(capsys, "posture", "--config", str(tmp_path), "--endpoint-url", DEAD)
    assert rc == 2
    one_line_error(err, "is a directory")


def test_posture_config_not_utf8(capsys, tmp_path):
    bad = tmp_path / "synthguard.toml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    rc, _, err = run(capsys, "posture", "--config", str(bad), "--endpoint-url", DEAD)
    assert rc == 2
    one_line_error(err, "not valid TOML")


def test_posture_unreachable_endpoint_does_not_pass(capsys):
    # was: exit 0 with every check 'unknown', which a CI gate reads as a pass
    import json

    rc, out, err = run(capsys, "posture", "--endpoint-url", DEAD, "--format", "json")
    doc = json.loads(out)  # the findings still come, as valid JSON on stdout
    assert rc == 1 and {f["status"] for f in doc["findings"]} == {"unknown"}
    assert "could not be listed" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- media decode reasons
def test_decode_error_has_no_object_repr():
    from provenance.media import MediaError, decode_image

    with pytest.raises(MediaError) as ei:
        decode_image(b"garbage\n")
    assert "object at 0x" not in str(ei.value) and "not a recognised image format" in str(ei.value)


# ----------------------------------------------------------------------------- sign: nothing to sign, bad --parent
@pytest.fixture(scope="module")
def sign_keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("signkeys") / "k"
    assert cli.main(["keys", "init", str(d)]) == 0
    return ["--cert", str(d / "signer.pem"), "--key", str(d / "signer.key")]


@pytest.mark.parametrize("files", [{}, {"README.txt": b"not media", "sub/notes.md": b"# notes"}])
def test_sign_directory_without_media_is_an_error(capsys, tmp_path, sign_keys, files):
    src = tmp_path / "in"
    src.mkdir()
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    capsys.readouterr()
    rc, _, err = run(capsys, "sign", str(src), "-o", str(tmp_path / "out"), *sign_keys)
    assert rc == 2 and not (tmp_path / "out").exists()  # was: "signed 0 file(s)", exit 0
    one_line_error(err, "no media files to sign")
    assert ("2 file(s) are not media" if files else "no files found") in err


def test_sign_directory_all_outputs_present_is_not_an_error(capsys, tmp_path, sign_keys):
    from fixtures.make_media import image_bytes

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(image_bytes("png", size=(32, 32)))
    capsys.readouterr()
    assert run(capsys, "sign", str(src), "-o", str(tmp_path / "out"), *sign_keys)[0] == 0
    rc, _, err = run(capsys, "sign", str(src), "-o", str(tmp_path / "out"), *sign_keys)
    assert rc == 0 and "signed 0 file(s)" in err and "1 skipped" in err  # already signed: nothing wrong


@pytest.mark.parametrize("parent,data,needle", [
    ("garbage.jpg", b"this is not a jpeg at all", "not a recognised media file"),
    ("truncated.jpg", None, "cannot decode image"),
    ("empty.png", b"", "empty file"),
    ("missing.jpg", "absent", "no such file"),
    ("adir", "dir", "is a directory"),
])
def test_sign_parent_is_validated_before_signing(capsys, tmp_path, sign_keys, parent, data, needle):
    from fixtures.make_media import image_bytes

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(image_bytes("png", size=(32, 32)))
    p = tmp_path / parent
    if data == "dir":
        p.mkdir()
    elif data is None:
        p.write_bytes(image_bytes("jpeg", size=(64, 64))[:300])
    elif data != "absent":
        p.write_bytes(data)
    capsys.readouterr()
    for target, out in ((src / "a.png", tmp_path / "o.png"), (src, tmp_path / "outdir")):
        rc, _, err = run(capsys, "sign", str(target), "-o", str(out), *sign_keys, "--parent", str(p))
        assert rc == 2 and not out.exists()  # was: signed with a garbage ingredient, exit 0
        one_line_error(err, f"--parent {p}: {needle}")


def test_sign_good_parent_still_works(capsys, tmp_path, sign_keys):
    from fixtures.make_media import image_bytes

    (tmp_path / "p.jpg").write_bytes(image_bytes("jpeg", size=(48, 48), seed=3))
    (tmp_path / "c.png").write_bytes(image_bytes("png", size=(32, 32), seed=4))
    capsys.readouterr()
    rc, _, err = run(capsys, "sign", str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"), *sign_keys,
                     "--parent", str(tmp_path / "p.jpg"))
    assert rc == 0 and (tmp_path / "o.png").exists(), err


def test_verify_empty_directory_says_so(capsys, tmp_path):
    import json

    (tmp_path / "empty").mkdir()
    rc, out, err = run(capsys, "verify", "-r", str(tmp_path / "empty"), "--json")
    assert rc == 1 and "Traceback" not in err  # nothing verified is never a pass
    assert json.loads(out) == [{**json.loads(out)[0], "path": str(tmp_path / "empty"), "state": "error",
                                "reason": "no files to verify in this directory"}]


# ----------------------------------------------------------------------------- audit cloudfront:all, no distributions
def test_audit_cloudfront_all_without_distributions(capsys, tmp_path, moto_server):
    moto_server.reset()
    ep = moto_server.endpoint_url
    state = tmp_path / "s.db"
    rc, out, err = run(capsys, "audit", "cloudfront:all", "--endpoint-url", ep, "--state", str(state),
                       "--processes", "0", "--no-watermark")
    assert rc == 2 and out == ""  # was: exit 0, an empty report and not a word
    one_line_error(err, "cloudfront:all: no CloudFront distributions found; nothing to audit")
    # another target left: a warning, and the audit of that target runs
    from fixtures.make_media import image_bytes

    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="cf-none-media")
    s3.put_object(Bucket="cf-none-media", Key="a.jpg", Body=image_bytes("jpeg", size=(32, 32)))
    rc, out, err = run(capsys, "audit", "cloudfront:all", "s3://cf-none-media", "--endpoint-url", ep,
                       "--state", str(state), "--processes", "0", "--no-watermark", "--no-posture",
                       "--format", "json")
    import json

    assert rc == 0 and [o["key"] for o in json.loads(out)["objects"]] == ["a.jpg"]
    assert "warning: cloudfront:all: no CloudFront distributions found; auditing the other targets only" in err


def test_audit_cloudfront_distribution_without_s3_origins(capsys, tmp_path, moto_server):
    moto_server.reset()
    cf = moto_server.client("cloudfront")
    beh = {"TargetOriginId": "api", "ViewerProtocolPolicy": "https-only", "MinTTL": 0,
           "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
           "TrustedSigners": {"Enabled": False, "Quantity": 0}}
    d = cf.create_distribution(DistributionConfig={
        "CallerReference": "api-only", "Comment": "", "Enabled": True, "DefaultCacheBehavior": beh,
        "Origins": {"Quantity": 1, "Items": [{"Id": "api", "DomainName": "api.example.com", "CustomOriginConfig": {
            "HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}}]}})["Distribution"]
    for spec in ("cloudfront:all", f"cloudfront:{d['Id']}"):
        rc, _, err = run(capsys, "audit", spec, "--endpoint-url", moto_server.endpoint_url,
                         "--state", str(tmp_path / "s.db"), "--processes", "0")
        assert rc == 2
        one_line_error(err, f"{spec}: no S3 origins to audit (1 origin(s) skipped: {d['Id']}/api api.example.com")
    moto_server.reset()


# ----------------------------------------------------------------------------- --help everywhere
def _subcommands(parser, path=()):
    import argparse

    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, path + (name,))


def test_help_of_every_command(capsys):
    paths = list(_subcommands(cli.build_parser()))
    assert {("sign",), ("verify",), ("audit",), ("posture",), ("keys", "init"), ("fingerprint", "match"),
            ("watermark", "detect"), ("controls", "generate")} <= set(paths)
    for path in paths:
        with pytest.raises(SystemExit) as ei:
            cli.main([*path, "--help"])
        out, err = capsys.readouterr()
        assert ei.value.code == 0 and out.startswith("usage: synthguard") and not err, path
