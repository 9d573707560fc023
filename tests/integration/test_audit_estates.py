"""The audit on estates real users have: empty buckets, hostile key names, odd media objects, big
objects, versioned buckets with pre-versioning ("null") versions, objects that change under the
audit, denied objects, bad endpoints / credentials / state / output paths, Ctrl-C and resume.

The bugs this hunt found are fixed; their tests stay as regressions. Everything runs against the
session's real SeaweedFS (``seaweed``)."""
from __future__ import annotations

import csv
import gzip
import html
import io
import itertools
import json
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import s3sync
from s3sync.aws import ClientFactory
from s3sync.localserver import free_port
from s3sync.state import State
from test_audit_resilience import FaultProxy, _rows, _seed, _wait_for_rows
from test_audit_s3 import _put_many, ident  # noqa: F401  (ident: signing identities, a module fixture)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

KEYS_BUCKET = "estate-keys"
MEDIA_BUCKET = "estate-media"
HOSTILE_KEYS = ["sp ace.jpg", "uni-\u00f1-\u65e5\u672c.jpg", "plus+sign.jpg", "pct%20lit.jpg", "hash#frag.jpg",
                "q?mark.jpg", "a[/bold]b.jpg", "[red]x.jpg", "<img src=x>.jpg", "quote\".jpg", "tab\tkey.jpg",
                "UPPER.JPG", "d/" + "/".join(["k" * 200] * 4) + ".jpg"]  # ~800 chars (SeaweedFS: 255 per segment)


def _run(seaweed, targets, state, **kw):
    """The library audit, cheap: inline checks, no watermark search, no posture (unless asked)."""
    kw.setdefault("processes", 0)
    kw.setdefault("watermark", False)
    return s3sync.audit(targets, endpoint_url=seaweed.endpoint_url, state=state, **kw)


def _snapshot(client, bucket: str) -> dict:
    """Everything an audit could change in a bucket: every version / delete marker, policy, tags."""
    out: dict = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for o in page.get("Versions", []) + page.get("DeleteMarkers", []):
            out[(o["Key"], o.get("VersionId"))] = (o.get("ETag"), o.get("Size"), str(o.get("LastModified")))
    for name, call in (("policy", client.get_bucket_policy), ("tags", client.get_bucket_tagging),
                       ("versioning", client.get_bucket_versioning)):
        try:
            resp = call(Bucket=bucket)
            resp.pop("ResponseMetadata", None)
            out[name] = resp
        except Exception as exc:  # none set
            out[name] = type(exc).__name__
    return out


def _main(capsys, *args: str) -> tuple[int, str, str]:
    import cli

    rc = cli.main(["audit", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture(scope="module")
def estate(seaweed, ident):  # noqa: F811
    """The buckets most tests read (and the last test proves were never written to)."""
    from PIL import Image

    from fixtures.make_media import audio_bytes, encode_image, image_array, image_bytes, video_bytes
    from provenance import sign

    c = seaweed.client()
    jpg = image_bytes("jpeg", size=(96, 96), seed=1)
    png = image_bytes("png", size=(96, 96), seed=2)
    clip = video_bytes("mp4", seconds=0.3, size=(96, 64), audio=False)
    gif = io.BytesIO()
    Image.fromarray(image_array((96, 96), seed=3)).save(gif, "GIF")

    c.create_bucket(Bucket="estate-empty")
    c.create_bucket(Bucket=KEYS_BUCKET)
    _put_many(c, KEYS_BUCKET, [(k, jpg, None) for k in HOSTILE_KEYS])

    c.create_bucket(Bucket=MEDIA_BUCKET)
    expected = {  # key -> (body, content type, status, media_type)
        "empty.jpg": (b"", None, "unreadable", "image/jpeg"),
        "trunc.jpg": (jpg[: len(jpg) // 2], None, "unreadable", "image/jpeg"),
        "png-named.jpg": (png, None, "missing_provenance", "image/png"),  # content wins over the name
        "text.png": (b"hello, not a png\n" * 5, None, "unreadable", "image/png"),
        "mp4-as-jpeg": (clip, "image/jpeg", "missing_provenance", "video/mp4"),
        "mp4-as-jpeg.jpg": (clip, "image/jpeg", "missing_provenance", "video/mp4"),
        "param-ct": (jpg, "image/jpeg; charset=binary", "missing_provenance", "image/jpeg"),
        "upper-ct": (jpg, "IMAGE/JPEG", "missing_provenance", "image/jpeg"),
        "UP.JPG": (jpg, None, "missing_provenance", "image/jpeg"),
        "a.jpeg": (jpg, None, "missing_provenance", "image/jpeg"),
        "a.webp": (encode_image(image_array((96, 96), seed=3), "webp"), None, "missing_provenance", "image/webp"),
        "a.gif": (gif.getvalue(), None, "missing_provenance", "image/gif"),
        "a.tif": (encode_image(image_array((96, 96), seed=3), "tiff"), None, "missing_provenance", "image/tiff"),
        "a.heic": (encode_image(image_array((96, 96), seed=3), "heic"), None, "missing_provenance", "image/heic"),
        "a.avif": (encode_image(image_array((96, 96), seed=3), "avif"), None, "missing_provenance", "image/avif"),
        "a.wav": (audio_bytes("wav", seconds=0.2), None, "missing_provenance", "audio/wav"),
        "a.mp4": (clip, None, "missing_provenance", "video/mp4"),
        "a.mov": (video_bytes("mov", seconds=0.3, size=(96, 64), audio=False), None, "missing_provenance",
                  "video/quicktime"),
        "signed.jpg": (sign(jpg, signer=ident["signer"]), None, "ok", "image/jpeg"),
    }
    skipped = {"readme.txt": (b"hello", "text/plain"), "noext-octet": (jpg, "binary/octet-stream"),
               "doc.pdf": (b"%PDF-1.4\n%%EOF\n", None)}
    _put_many(c, MEDIA_BUCKET, [(k, b, ct) for k, (b, ct, _, _) in expected.items()]
              + [(k, b, ct) for k, (b, ct) in skipped.items()])
    snaps = {b: _snapshot(c, b) for b in ("estate-empty", KEYS_BUCKET, MEDIA_BUCKET)}
    return {"media": {k: (st, mt) for k, (_, _, st, mt) in expected.items()}, "skipped": set(skipped),
            "snapshots": snaps, "jpg": jpg, "clip": clip}


# ----------------------------------------------------------------------------- targets
def test_empty_bucket_and_prefix_matching_nothing(seaweed, estate, tmp_path, capsys):
    for target in ("s3://estate-empty", "s3://estate-media/no-such-prefix/", "s3://estate-media/gen/*.jpg"):
        rc, out, err = _main(capsys, target, "--endpoint-url", seaweed.endpoint_url, "--state",
                             str(tmp_path / "s.db"), "--processes", "0", "--no-watermark", "--no-posture",
                             "--format", "json", "--fail-on", "missing,invalid,unreadable")
        assert rc == 0, err
        doc = json.loads(out)
        s = doc["summary"]
        assert doc["objects"] == [] and s["objects"] == 0 and s["listed"] == 0 and s["completed"] is True
        assert s["skipped"] == {"count": 0, "reasons": {}} and set(s["counts"]) == set(s3sync.STATUSES)


def test_missing_bucket_is_a_clear_error_in_the_api_and_no_output(seaweed, tmp_path, capsys):
    with pytest.raises(s3sync.AuditError, match="NoSuchBucket"):
        _run(seaweed, ["s3://estate-no-such-bucket"], tmp_path / "s.db")
    rc, out, err = _main(capsys, "s3://estate-no-such-bucket", "--endpoint-url", seaweed.endpoint_url, "--state",
                         str(tmp_path / "s.db"), "--format", "json", "--no-posture")
    assert rc == 2 and out == "" and "NoSuchBucket" in err and "Traceback" not in err


def test_trailing_slash_and_overlapping_targets_count_each_object_once(seaweed, estate, tmp_path):
    one = _run(seaweed, ["s3://estate-media"], tmp_path / "a.db")
    same = _run(seaweed, ["s3://estate-media/", "s3://estate-media"], tmp_path / "b.db")
    assert same.summary["targets"] == ["s3://estate-media"]  # the same target, audited once
    both = _run(seaweed, ["s3://estate-media", "s3://estate-media/a."], tmp_path / "c.db")
    keys = [o.key for o in both.objects]
    assert len(keys) == len(set(keys)) == len(one.objects)
    assert both.summary["counts"] == one.summary["counts"] == same.summary["counts"]
    assert both.summary["skipped"] == one.summary["skipped"]


def test_overlapping_targets_listed_count(seaweed, estate, tmp_path):
    one = _run(seaweed, ["s3://estate-media"], tmp_path / "a.db")
    both = _run(seaweed, ["s3://estate-media", "s3://estate-media/a."], tmp_path / "b.db")
    assert both.summary["listed"] == one.summary["listed"]


def test_directory_markers_are_counted_as_skipped(seaweed, tmp_path):
    c = seaweed.client()
    c.create_bucket(Bucket="estate-dirs")
    c.put_object(Bucket="estate-dirs", Key="photos/", Body=b"")
    res = _run(seaweed, ["s3://estate-dirs"], tmp_path / "s.db")
    assert res.summary["listed"] == 1 and res.summary["skipped"]["count"] == 1


def test_a_bad_target_fails_before_the_audit(seaweed, estate, tmp_path):
    with pytest.raises(s3sync.AuditError):
        _run(seaweed, ["s3://bad bucket"], tmp_path / "s.db")
    with pytest.raises(s3sync.AuditError):
        _run(seaweed, ["gs://estate-media"], tmp_path / "s.db")


def test_a_missing_second_target_fails_before_anything_is_downloaded(seaweed, estate, tmp_path):
    state = tmp_path / "s.db"
    with pytest.raises(s3sync.AuditError, match="NoSuchBucket"):
        _run(seaweed, ["s3://estate-media", "s3://estate-no-such-bucket"], state, workers=1)
    db = sqlite3.connect(state)
    try:
        assert db.execute("SELECT COUNT(*) FROM run_objects").fetchone()[0] == 0
    finally:
        db.close()


# ----------------------------------------------------------------------------- key names
@pytest.fixture(scope="module")
def keys_run(seaweed, estate, tmp_path_factory):
    state = tmp_path_factory.mktemp("estate-keys") / "s.db"
    return state, _run(seaweed, [f"s3://{KEYS_BUCKET}"], state)


def test_hostile_key_names_survive_json_jsonl_csv_and_html(keys_run, tmp_path, capsys):
    state, res = keys_run
    assert sorted(o.key for o in res.objects) == sorted(HOSTILE_KEYS)
    assert {o.status for o in res.objects} == {"missing_provenance"}
    for fmt in ("json", "jsonl", "csv", "html"):
        out = tmp_path / f"r.{fmt}"
        rc, _, err = _main(capsys, "report", "--state", str(state), "--format", fmt, "--out", str(out))
        assert rc == 0, err
        text = out.read_text(encoding="utf-8")
        if fmt == "json":
            assert sorted(o["key"] for o in json.loads(text)["objects"]) == sorted(HOSTILE_KEYS)
        elif fmt == "jsonl":
            lines = [json.loads(x) for x in text.splitlines()]
            assert sorted(x["key"] for x in lines if x["type"] == "object") == sorted(HOSTILE_KEYS)
        elif fmt == "csv":
            assert sorted(r["key"] for r in csv.DictReader(io.StringIO(text))) == sorted(HOSTILE_KEYS)
        else:
            assert "<img src=x>" not in text
            assert all(html.escape(k, quote=True) in text for k in HOSTILE_KEYS)


def test_table_report_shows_keys_with_brackets_verbatim(keys_run, tmp_path, capsys):
    state, _ = keys_run
    out = tmp_path / "r.txt"
    rc, _, err = _main(capsys, "report", "--state", str(state), "--format", "table", "--out", str(out))
    assert rc == 0, err
    text = out.read_text(encoding="utf-8")
    assert "a[/bold]b.jpg" in text and "[red]x.jpg" in text


def test_sarif_uris_are_valid_and_name_the_key(keys_run, tmp_path, capsys):
    state, _ = keys_run
    out = tmp_path / "r.sarif"
    rc, _, err = _main(capsys, "report", "--state", str(state), "--format", "sarif", "--out", str(out))
    assert rc == 0, err
    results = json.loads(out.read_text())["runs"][0]["results"]
    got = set()
    for r in results:
        if not r["ruleId"].startswith("SG-S3-"):
            continue
        uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert re.fullmatch(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", uri), uri  # RFC 3986 characters only
        parts = urlsplit(uri)
        assert parts.scheme == "s3" and parts.netloc == KEYS_BUCKET and not parts.fragment
        got.add(unquote(parts.path[1:]))
    assert got == set(HOSTILE_KEYS)


# ----------------------------------------------------------------------------- media objects
def test_odd_media_objects_are_classified_by_their_bytes(seaweed, estate, ident, tmp_path):  # noqa: F811
    res = _run(seaweed, [f"s3://{MEDIA_BUCKET}"], tmp_path / "s.db", trust_anchors=ident["paths"].root)
    got = {o.key: (o.status, o.media_type) for o in res.objects}
    assert got == estate["media"], [(o.key, o.error) for o in res.objects]
    by_key = {o.key: o for o in res.objects}
    assert "empty object (0 bytes)" in by_key["empty.jpg"].error
    assert "truncated" in by_key["trunc.jpg"].error
    assert "decode" in by_key["text.png"].error
    s = res.summary
    assert s["skipped"] == {"count": 3, "reasons": {"not media (extension and content type)": 3}}
    assert s["listed"] == len(got) + 3 and s["objects"] == len(got) == sum(s["counts"].values())
    d = json.loads(json.dumps(res.to_dict()))  # the JSON shape of s3sync/README.md
    assert set(d) >= {"run_id", "summary", "objects", "findings"}
    assert {x["key"] for x in d["skipped"]} == estate["skipped"]
    assert all({"key", "reason", "etag", "content_type"} <= set(x) for x in d["skipped"])
    assert all({"bucket", "key", "version_id", "etag", "size", "content_type", "status", "c2pa", "watermark",
                "training_match", "error", "severity", "exposure"} <= set(o) for o in d["objects"])


def test_svg_objects_are_audited(seaweed, ident, tmp_path):  # noqa: F811
    """SVG is checked by C2PA alone (no raster watermark): signed and trusted is ok, plain is
    missing provenance (with or without an XML prolog and comment first), text named .svg is
    unreadable."""
    from provenance import sign

    svg = (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
           b'<rect width="10" height="10"/></svg>')
    c = seaweed.client()
    c.create_bucket(Bucket="estate-svg")
    c.put_object(Bucket="estate-svg", Key="plain.svg", Body=svg, ContentType="image/svg+xml")
    c.put_object(Bucket="estate-svg", Key="prolog.svg", ContentType="image/svg+xml",
                 Body=b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- drawn by hand -->\n' + svg)
    c.put_object(Bucket="estate-svg", Key="notes.svg", Body=b"just some text", ContentType="image/svg+xml")
    c.put_object(Bucket="estate-svg", Key="signed.svg", ContentType="image/svg+xml",
                 Body=sign(svg, signer=ident["signer"], mime="image/svg+xml"))
    res = _run(seaweed, ["s3://estate-svg"], tmp_path / "s.db", trust_anchors=ident["paths"].root)
    assert {o.key: o.status for o in res.objects} == {
        "plain.svg": "missing_provenance", "prolog.svg": "missing_provenance", "signed.svg": "ok",
        "notes.svg": "unreadable"}, [(o.key, o.error) for o in res.objects]
    by_key = {o.key: o for o in res.objects}
    assert "do not look like image/svg+xml" in by_key["notes.svg"].error
    assert by_key["signed.svg"].c2pa["state"] == "trusted" and by_key["plain.svg"].watermark is None


def test_gzip_content_encoding_is_decoded(seaweed, estate, ident, tmp_path):  # noqa: F811
    from provenance import sign

    c = seaweed.client()
    c.create_bucket(Bucket="estate-gzip")
    c.put_object(Bucket="estate-gzip", Key="signed.jpg", Body=gzip.compress(sign(estate["jpg"], signer=ident["signer"])),
                 ContentType="image/jpeg", ContentEncoding="gzip")
    c.put_object(Bucket="estate-gzip", Key="big.jpg", Body=gzip.compress(estate["jpg"] * 40),
                 ContentType="image/jpeg", ContentEncoding="gzip")  # past max_inline once decoded: a temp file
    c.put_object(Bucket="estate-gzip", Key="bomb.png", Body=gzip.compress(bytes(64 << 20)),
                 ContentType="image/png", ContentEncoding="gzip")
    c.put_object(Bucket="estate-gzip", Key="notgz.jpg", Body=estate["jpg"], ContentType="image/jpeg",
                 ContentEncoding="gzip")
    c.put_object(Bucket="estate-gzip", Key="br.jpg", Body=estate["jpg"], ContentType="image/jpeg",
                 ContentEncoding="br")
    spool = tmp_path / "spool"
    spool.mkdir()
    res = _run(seaweed, ["s3://estate-gzip"], tmp_path / "s.db", trust_anchors=ident["paths"].root,
               max_inline_bytes=len(estate["jpg"]) * 8, tmp_dir=str(spool))
    got = {o.key: o for o in res.objects}
    assert {k: o.status for k, o in got.items()} == {
        "signed.jpg": "ok", "big.jpg": "missing_provenance", "bomb.png": "unreadable", "notgz.jpg": "unreadable",
        "br.jpg": "unreadable"}, [o.error for o in res.objects]
    assert "expands past" in got["bomb.png"].error
    assert "do not decode" in got["notgz.jpg"].error
    assert "br is not supported" in got["br.jpg"].error
    assert not list(spool.iterdir())  # decoded temp files are gone


def test_large_object_is_streamed_not_held_in_memory(seaweed, estate, tmp_path):
    """A 40 MiB MP4 (> 16 MiB: ranged GETs to a temp file): never held whole as Python bytes."""
    import tracemalloc

    pad = 40 * 1024 * 1024
    big = estate["clip"] + struct.pack(">I", pad + 8) + b"free" + bytes(pad)  # a valid MP4 with a 'free' box
    c = seaweed.client()
    c.create_bucket(Bucket="estate-big")
    c.put_object(Bucket="estate-big", Key="big.mp4", Body=big)
    del big
    spool = tmp_path / "spool"
    spool.mkdir()
    _run(seaweed, [f"s3://{MEDIA_BUCKET}/a.mp4"], tmp_path / "warm.db")  # imports outside the measurement
    tracemalloc.start()
    try:
        res = _run(seaweed, ["s3://estate-big"], tmp_path / "s.db", tmp_dir=str(spool))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(o.key, o.status) for o in res.objects] == [("big.mp4", "missing_provenance")]
    assert res.summary["bytes_read"] == pad + 8 + len(estate["clip"])
    assert peak < 32 * 1024 * 1024, peak  # parts of 8 MiB, not the 40 MiB object
    assert list(spool.iterdir()) == []


# ----------------------------------------------------------------------------- versions
@pytest.fixture(scope="module")
def null_versions(seaweed, estate):
    """A bucket whose objects were written before versioning was enabled (their version is "null")."""
    from fixtures.make_media import image_bytes

    c = seaweed.client()
    b = "estate-nullver"
    c.create_bucket(Bucket=b)
    j1, j2 = estate["jpg"], image_bytes("jpeg", size=(96, 96), seed=2)
    c.put_object(Bucket=b, Key="pre.jpg", Body=j1)
    c.put_object(Bucket=b, Key="pre-deleted.jpg", Body=j1)
    c.put_object(Bucket=b, Key="pre-trunc.jpg", Body=j1[:500])
    c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    c.put_object(Bucket=b, Key="pre.jpg", Body=j2)  # a newer version on top of the null one
    c.delete_object(Bucket=b, Key="pre-deleted.jpg")  # a delete marker on top of the null one
    c.put_object(Bucket=b, Key="pre-trunc.jpg", Body=j2)
    return b


def test_versions_latest_only_without_flag(seaweed, null_versions, tmp_path):
    res = _run(seaweed, [f"s3://{null_versions}"], tmp_path / "s.db")
    assert sorted((o.key, o.status) for o in res.objects) == [("pre-trunc.jpg", "missing_provenance"),
                                                              ("pre.jpg", "missing_provenance")]


def test_versions_audits_null_versions_by_their_own_bytes(seaweed, null_versions, tmp_path):
    res = _run(seaweed, [f"s3://{null_versions}"], tmp_path / "s.db", versions=True)
    old = {o.key: (o.status, o.error) for o in res.objects if o.size in (500, 4317) and o.key.startswith("pre")}
    assert old.get("pre.jpg", (None,))[0] == "missing_provenance", old
    assert old.get("pre-deleted.jpg", (None,))[0] == "missing_provenance", old
    assert old.get("pre-trunc.jpg", (None, ""))[0] == "unreadable" and "decode" in old["pre-trunc.jpg"][1], old
    assert res.summary["skipped"]["reasons"] == {"delete marker": 1}


def test_versions_run_does_not_resume_a_latest_only_run(seaweed, estate, tmp_path):
    c = seaweed.client()
    b = "estate-ver"
    c.create_bucket(Bucket=b)
    c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    for _ in range(3):
        c.put_object(Bucket=b, Key="multi.jpg", Body=estate["jpg"])
    c.put_object(Bucket=b, Key="single.jpg", Body=estate["jpg"])
    state = tmp_path / "s.db"
    it = s3sync.iter_audit([f"s3://{b}"], endpoint_url=seaweed.endpoint_url, state=state, processes=0,
                           watermark=False, workers=1)
    assert len(list(itertools.islice(it, 1))) == 1
    it.close()  # interrupted: the run stays 'running'
    res = _run(seaweed, [f"s3://{b}"], state, versions=True)
    assert all(o.version_id for o in res.objects), [(o.key, o.version_id) for o in res.objects]
    assert len(res.objects) == 4 and res.summary["resumed"] is False


# ----------------------------------------------------------------------------- objects changing mid-run
def _fetch_hook(monkeypatch, before):
    """Run ``before(ref)`` in the I/O thread just before each object is fetched (HEAD/GET)."""
    from s3sync import worker

    orig = worker.Auditor._fetch

    def fetch(self, ref):
        before(ref)
        return orig(self, ref)

    monkeypatch.setattr(worker.Auditor, "_fetch", fetch)


def test_objects_deleted_or_overwritten_between_listing_and_get(seaweed, estate, tmp_path, monkeypatch):
    from fixtures.make_media import image_bytes

    c = seaweed.client()
    b = "estate-race"
    c.create_bucket(Bucket=b)
    j2 = image_bytes("jpeg", size=(96, 96), seed=2)
    for k in ("over.jpg", "gone.jpg", "keep.jpg", "over-big.jpg"):
        c.put_object(Bucket=b, Key=k, Body=estate["jpg"])
    c.put_object(Bucket=b, Key="gone-noext", Body=estate["jpg"], ContentType="image/jpeg")
    done: set[str] = set()

    def race(ref):
        if ref.key in done:
            return
        done.add(ref.key)
        if ref.key.startswith("over"):
            c.put_object(Bucket=b, Key=ref.key, Body=j2)
        elif ref.key.startswith("gone"):
            c.delete_object(Bucket=b, Key=ref.key)

    _fetch_hook(monkeypatch, race)
    state = tmp_path / "s.db"
    # over-big.jpg takes the ranged-GET path (max_inline_bytes below its size)
    res = _run(seaweed, [f"s3://{b}"], state, max_inline_bytes=1000, part_size=700)
    got = {o.key: (o.status, o.error or "") for o in res.objects}
    assert got["keep.jpg"] == ("missing_provenance", "")
    for k in ("over.jpg", "over-big.jpg"):
        assert got[k][0] == "unreadable" and "changed while it was being audited" in got[k][1]
    assert res.summary["skipped"] == {"count": 2, "reasons": {"deleted since listing": 2}}
    monkeypatch.undo()
    again = _run(seaweed, [f"s3://{b}"], state)
    assert {o.key: o.status for o in again.objects} == {k: "missing_provenance" for k in ("keep.jpg", "over.jpg",
                                                                                           "over-big.jpg")}
    assert again.summary["downloaded"] == 2 and again.summary["skipped"]["count"] == 0


def test_transient_deleted_skip_is_not_cached(seaweed, estate, tmp_path, monkeypatch):
    c = seaweed.client()
    b = "estate-flap"
    c.create_bucket(Bucket=b)
    c.put_object(Bucket=b, Key="flap.jpg", Body=estate["jpg"])
    from s3sync import worker

    orig = worker.Auditor._fetch

    def flap(self, ref):  # deleted between listing and GET, then uploaded again (same bytes, same ETag)
        c.delete_object(Bucket=b, Key=ref.key)
        try:
            return orig(self, ref)
        finally:
            c.put_object(Bucket=b, Key=ref.key, Body=estate["jpg"])

    monkeypatch.setattr(worker.Auditor, "_fetch", flap)
    state = tmp_path / "s.db"
    first = _run(seaweed, [f"s3://{b}"], state)
    assert first.summary["skipped"]["reasons"] == {"deleted since listing": 1}
    monkeypatch.undo()
    second = _run(seaweed, [f"s3://{b}"], state)
    assert [(o.key, o.status) for o in second.objects] == [("flap.jpg", "missing_provenance")]


def test_content_type_fixed_in_place_is_audited(seaweed, estate, tmp_path):
    """A cached "not media" skip holds only while LastModified is unchanged (a metadata rewrite
    keeps the ETag). LastModified has one-second resolution, so the fix comes a second later."""
    import time

    c = seaweed.client()
    b = "estate-ctfix"
    c.create_bucket(Bucket=b)
    c.put_object(Bucket=b, Key="upload-123", Body=estate["jpg"], ContentType="binary/octet-stream")
    state = tmp_path / "s.db"
    assert _run(seaweed, [f"s3://{b}"], state).summary["skipped"]["count"] == 1
    etag = c.head_object(Bucket=b, Key="upload-123")["ETag"]
    time.sleep(1.1)
    c.copy_object(Bucket=b, Key="upload-123", CopySource={"Bucket": b, "Key": "upload-123"},
                  ContentType="image/jpeg", MetadataDirective="REPLACE")
    assert c.head_object(Bucket=b, Key="upload-123")["ETag"] == etag
    res = _run(seaweed, [f"s3://{b}"], state)
    assert [(o.key, o.status) for o in res.objects] == [("upload-123", "missing_provenance")]


# ----------------------------------------------------------------------------- access, endpoints, credentials
def test_denied_objects_are_unreadable_with_the_reason(seaweed, estate, tmp_path):
    c = seaweed.client()
    b = "estate-deny"
    c.create_bucket(Bucket=b)
    for k, ct in (("ok.jpg", None), ("secret/x.jpg", None), ("secret/noext", "image/jpeg")):
        c.put_object(Bucket=b, Key=k, Body=estate["jpg"], **({"ContentType": ct} if ct else {}))
    c.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/secret/*"}]}))
    before = _snapshot(c, b)
    res = _run(seaweed, [f"s3://{b}"], tmp_path / "s.db")
    got = {o.key: (o.status, o.error or "") for o in res.objects}
    assert got["ok.jpg"] == ("missing_provenance", "")
    assert got["secret/x.jpg"][0] == "unreadable" and "AccessDenied" in got["secret/x.jpg"][1]
    assert got["secret/noext"][0] == "unreadable" and "403" in got["secret/noext"][1]
    assert _snapshot(c, b) == before


def test_unreachable_endpoint_bad_endpoint_and_bad_credentials(seaweed, estate, tmp_path, capsys, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    base = ["s3://estate-media", "--state", str(tmp_path / "s.db"), "--processes", "0", "--no-watermark",
            "--no-posture", "--format", "json"]
    for endpoint, needle in ((dead, "EndpointConnectionError"), ("127.0.0.1:1", "Invalid endpoint")):
        rc, out, err = _main(capsys, *base, "--endpoint-url", endpoint)
        assert rc == 2 and out == "" and needle in err and "Traceback" not in err, err
    # --endpoint-url wins over AWS_ENDPOINT_URL; AWS_ENDPOINT_URL alone is used
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    rc, out, err = _main(capsys, *base, "--endpoint-url", seaweed.endpoint_url)
    assert rc == 0, err
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint_url)
    rc, out, err = _main(capsys, *base)
    assert rc == 0, err
    assert json.loads(out)["summary"]["objects"] == len(estate["media"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    rc, out, err = _main(capsys, *base)
    assert rc == 2 and "SignatureDoesNotMatch" in err and "Traceback" not in err
    factory = ClientFactory(endpoint_url=seaweed.endpoint_url,
                            credentials={"aws_access_key_id": "testing", "aws_secret_access_key": "wrong"})
    with pytest.raises(s3sync.AuditError, match="SignatureDoesNotMatch"):
        s3sync.audit(["s3://estate-media"], clients=factory, state=tmp_path / "s.db", processes=0, watermark=False)


# ----------------------------------------------------------------------------- state, output, report, gates
def test_bad_state_out_report_and_fail_on_are_usage_errors(seaweed, estate, tmp_path, capsys):
    (tmp_path / "junk.db").write_text("not sqlite")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE x (a)")
    other.commit()
    other.close()
    State(tmp_path / "empty.db").close()
    base = ["s3://estate-empty", "--endpoint-url", seaweed.endpoint_url, "--processes", "0", "--no-posture",
            "--no-watermark", "--format", "json"]
    good = ["--state", str(tmp_path / "ok.db")]
    assert _main(capsys, *base, *good)[0] == 0  # a state with one run
    cases = [
        (base + ["--state", str(tmp_path)], "directory"),
        (base + ["--state", str(tmp_path / "junk.db")], "not a usable synthguard state DB"),
        (base + ["--state", str(tmp_path / "other.db")], "not a synthguard state DB"),
        (base + ["--state", str(tmp_path / "junk.db" / "x.db")], "cannot create"),
        (base + good + ["--out", str(tmp_path / "missing" / "r.json")], "does not exist"),
        (base + good + ["--out", str(tmp_path)], "is a directory"),
        (base + good + ["--fail-on", "missing_provenance"], "--fail-on"),
        (base + good + ["--fail-on", "MISSING"], "--fail-on"),
        (base + good + ["--fail-severity", "extreme"], "--fail-severity"),
        (["report", "--state", str(tmp_path / "empty.db")], "no audit runs"),
        (["report", "--state", str(tmp_path / "ok.db"), "--run", "no-such-run"], "no run 'no-such-run'"),
        (["report", "--state", str(tmp_path / "junk.db")], "not a usable synthguard state DB"),
    ]
    for args, needle in cases:
        rc, out, err = _main(capsys, *args)
        assert rc == 2 and needle in err and "Traceback" not in err, (args, err)
    assert (tmp_path / "junk.db").read_text() == "not sqlite"  # never overwritten
    assert not os.path.exists(tmp_path / "missing")


def test_out_equal_to_state_is_refused(seaweed, estate, tmp_path, capsys):
    """--out naming an input (the state, a key, the registry) is refused before any work: the
    report would overwrite it."""
    state = str(tmp_path / "s.db")
    base = ["s3://estate-empty", "--endpoint-url", seaweed.endpoint_url, "--state", state, "--processes", "0",
            "--no-posture", "--format", "json"]
    assert _main(capsys, *base)[0] == 0
    rc, _, err = _main(capsys, *base, "--out", state)
    assert rc == 2 and "is the --state file" in err, err
    with State(state, create=False) as st:
        assert len(st.runs()) == 1  # untouched, and no second run started
    anchors = tmp_path / "roots.pem"
    anchors.write_bytes(b"not read")
    rc, _, err = _main(capsys, *base, "--trust-anchors", str(anchors), "--out", str(tmp_path / "." / "roots.pem"))
    assert rc == 2 and "is the --trust-anchors file" in err and anchors.read_bytes() == b"not read", err


def test_read_only_state_is_a_usage_error(seaweed, estate):
    """The CLI end to end, run as another user (root ignores file modes). It skips only where that
    cannot be done; tests/test_audit_unit.py::test_state_refuses_a_file_it_cannot_write holds the
    requirement everywhere."""
    prefix: list[str] = []
    if os.geteuid() == 0:  # root ignores file modes: run the CLI as nobody
        setpriv = shutil.which("setpriv")
        if not setpriv:
            pytest.skip("running as root without setpriv: a read-only file cannot be made")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    d = Path(tempfile.mkdtemp(prefix="synthguard-ro-"))
    try:
        state = d / "ro.db"
        State(state).close()
        os.chmod(state, 0o444)
        os.chmod(d, 0o777)
        env = dict(os.environ, **seaweed.env(), PYTHONDONTWRITEBYTECODE="1")

        def cli(*args):
            return subprocess.run(prefix + [sys.executable, str(ROOT / "cli.py"), "audit", *args], env=env, cwd=d,
                                  capture_output=True, text=True, timeout=120)

        probe = cli("report", "--state", str(state))  # the CLI runs as that user and reads the state
        if "no audit runs" not in probe.stderr:
            pytest.skip(f"cannot run the CLI as another user here: {probe.stderr[-300:]}")
        r = cli("s3://estate-empty", "--state", str(state), "--processes", "0", "--no-posture", "--format", "json")
        assert "Traceback" not in r.stderr
        assert r.returncode == 2 and str(state) in r.stderr, r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_sigint_mid_run_then_resume_counts_every_object_once(seaweed, ident, tmp_path):  # noqa: F811
    objs = _seed(seaweed, "estate-int", 40, ident["signer"])
    state = tmp_path / "s.db"
    env = dict(os.environ, **seaweed.env())

    def cmd(endpoint):
        return [sys.executable, str(ROOT / "cli.py"), "audit", "s3://estate-int", "--endpoint-url", endpoint,
                "--state", str(state), "--workers", "2", "--processes", "0", "--no-watermark", "--no-posture",
                "--format", "json"]

    with FaultProxy(seaweed.endpoint_url, faults=False, delay=0.08) as slow:
        proc = subprocess.Popen(cmd(slow.endpoint_url), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_rows(proc, state, 8, "interrupted")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert out == ""  # no half report
    done = _rows(state)
    assert 8 <= done < len(objs)
    r = subprocess.run(cmd(seaweed.endpoint_url), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert s["resumed"] is True and s["completed"] is True and s["resumed_objects"] == done
    assert s["downloaded"] == len(objs) - done
    keys = [o["key"] for o in doc["objects"]]
    assert len(keys) == len(set(keys)) == len(objs) == s["objects"] == sum(s["counts"].values())


# ----------------------------------------------------------------------------- read-only (keep last)
def test_the_audits_never_wrote_to_the_estate(seaweed, estate, keys_run):
    c = seaweed.client()
    for bucket, snap in estate["snapshots"].items():
        assert _snapshot(c, bucket) == snap, bucket
