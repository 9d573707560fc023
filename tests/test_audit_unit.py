"""Unit tests of the audit's pure parts: status rules, values, the state DB and its migrations,
report formats, target parsing and the boto3 client factory. No network."""
from __future__ import annotations

import csv
import io
import json
import sqlite3

import numpy as np
import pytest

from s3sync.aws import ClientFactory, describe_error, is_stream_error
from s3sync.checks import CheckConfig, claimed_mime, media_kind
from s3sync.classify import classify
from s3sync.listing import parse_s3_uri
from s3sync.models import STATUSES, AuditResult, ObjectResult, Skipped
from s3sync.reports import FORMATS, render
from s3sync.state import MIGRATIONS, SCHEMA_VERSION, State, StateError


@pytest.mark.parametrize("state,wm,match,err,want", [
    ("trusted", False, None, None, "ok"),
    ("trusted", True, None, None, "ok"),
    ("missing", True, None, None, "watermark_only"),
    ("missing", False, None, None, "missing_provenance"),
    (None, False, None, None, "missing_provenance"),
    ("unsupported", False, None, None, "missing_provenance"),
    ("invalid", True, None, None, "invalid_provenance"),
    ("error", False, None, None, "invalid_provenance"),
    ("valid_untrusted", False, None, None, "untrusted"),
    ("trusted", True, {"asset_id": "a"}, None, "leaked_training_asset"),
    ("missing", False, {"asset_id": "a"}, None, "leaked_training_asset"),
    ("trusted", True, {"asset_id": "a"}, "cannot decode image", "unreadable"),
    ("missing", False, None, "fetch failed: SlowDown", "unreadable"),
])
def test_classify(state, wm, match, err, want):
    assert classify(state, wm, match, err) == want
    assert want in STATUSES


@pytest.mark.parametrize("key,ct,want", [
    ("a.jpg", "binary/octet-stream", "image/jpeg"),
    ("noext", "image/jpeg", "image/jpeg"),
    ("x.PNG", None, "image/png"),
    ("clip.mp4", "application/octet-stream", "video/mp4"),
    ("s.wav", None, "audio/wav"),
    ("doc.txt", "text/plain", None),
    ("noext", "binary/octet-stream", None),
    ("a.jpg", "image/png; charset=binary", "image/png"),  # the content type wins when it is media
    ("doc.pdf", None, None),  # C2PA can carry it, but it is not media here
])
def test_claimed_mime(key, ct, want):
    assert claimed_mime(key, ct) == want


def test_media_kind():
    assert (media_kind("image/jpeg"), media_kind("video/mp4"), media_kind("audio/mpeg"), media_kind("text/x")) == \
        ("image", "video", "audio", None)


def test_parse_s3_uri():
    t = parse_s3_uri("s3://bucket/some/prefix/")
    assert (t.bucket, t.prefix, t.uri) == ("bucket", "some/prefix/", "s3://bucket/some/prefix/")
    assert parse_s3_uri("s3://bkt").prefix == ""
    for bad in ("bucket", "gs://b/x", "s3://", "s3:///key", "s3://a/x"):
        with pytest.raises(ValueError):
            parse_s3_uri(bad)


def _res(key="k.jpg", status="ok", **kw):
    base = dict(bucket="b", key=key, version_id=None, etag="e", size=10, content_type="image/jpeg", status=status,
                c2pa={"state": "trusted", "codes": []}, watermark={"detected": True, "payload": "0102"})
    base.update(kw)
    return ObjectResult(**base)


def test_object_result_value_semantics():
    a = _res(timings={"fetch_ms": 1.0}, checked_at="t1")
    b = _res(timings={"fetch_ms": 9.0}, checked_at="t2", cached=True)
    assert a == b and hash(a) == hash(b)  # how a verdict was obtained does not change it
    assert a != _res(status="missing_provenance")
    d = a.to_dict()
    assert json.loads(json.dumps(d))["watermark"]["payload"] == "0102"
    assert ObjectResult.from_dict(d) == a
    with pytest.raises(Exception):
        a.status = "x"  # frozen
    assert "ok" in str(a) and a.uri == "s3://b/k.jpg"


def test_audit_result_fail_on_and_findings_slot():
    objs = (_res("a.jpg"), _res("b.jpg", "missing_provenance", c2pa={"state": "missing", "codes": []}),
            _res("c.jpg", "leaked_training_asset", training_match={"asset_id": "x", "distance": 3}))
    r = AuditResult(run_id="r1", summary={"counts": {}}, objects=objs, findings=({"check": "p1"},))
    assert [o.key for o in r.failed(["missing"])] == ["b.jpg"]
    assert [o.key for o in r.failed(["leak", "invalid"])] == ["c.jpg"]
    assert r.failed([]) == []
    d = r.to_dict()
    assert d["findings"] == [{"check": "p1"}] and len(d["objects"]) == 3


# ----------------------------------------------------------------------------- state
def test_state_migrates_in_order_and_keeps_data(tmp_path):
    path = tmp_path / "s.db"
    # A DB at schema version 1 (as an older synthguard wrote it) with one run in it.
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("BEGIN")
    MIGRATIONS[0](db)
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute("INSERT INTO runs VALUES ('old', 't', NULL, 'completed', '[]', '{}', 'fp', '{}')")
    db.execute("COMMIT")
    db.close()
    with State(path) as st:
        assert st.schema_version() == SCHEMA_VERSION >= 2
        assert st.run_info("old")["status"] == "completed"  # migrated, not dropped and recreated
        st.add_findings("old", "posture", [{"check": "x"}])
    with State(path) as st:  # idempotent on reopen
        assert st.schema_version() == SCHEMA_VERSION
        assert st.load_run("old").findings == ({"check": "x"},)


def test_state_refuses_newer_schema_and_garbage(tmp_path):
    p = tmp_path / "new.db"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (999)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="newer"):
        State(p)
    g = tmp_path / "garbage.db"
    g.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StateError):
        State(g)
    with pytest.raises(StateError):
        State(tmp_path / "absent.db", create=False)


def test_state_records_once_per_run_and_resumes(tmp_path):
    with State(tmp_path / "s.db") as st:
        run, resumed = st.begin_run(["s3://b"], {}, "fp")
        assert not resumed
        assert st.record(run, "fp", _res("a.jpg")) is True
        assert st.record(run, "fp", _res("a.jpg")) is False  # never counted twice
        st.record(run, "fp", Skipped("b", "x.txt", None, "not media", etag="e2"))
        again, resumed = st.begin_run(["s3://b"], {}, "fp")  # unfinished run with same targets
        assert (again, resumed) == (run, True)
        assert st.run_members(run) == {("b", "a.jpg", ""), ("b", "x.txt", "")}
        assert st.lookup("b", "a.jpg", None, "e", "fp")[0] == "ok"
        assert st.lookup("b", "a.jpg", None, "other-etag", "fp") is None
        assert st.lookup("b", "a.jpg", None, "e", "other-config") is None
        st.finish_run(run, {"counts": st.counts(run)})
        other, resumed = st.begin_run(["s3://b"], {}, "fp")
        assert other != run and not resumed
        loaded = st.load_run(run)
        assert [o.key for o in loaded.objects] == ["a.jpg"] and loaded.skipped[0].reason == "not media"


def test_check_config_fingerprint_changes_with_keys():
    a = CheckConfig(trust_anchors=b"A")
    assert a.fingerprint() == CheckConfig(trust_anchors=b"A").fingerprint()
    assert a.fingerprint() != CheckConfig(trust_anchors=b"B").fingerprint()
    assert a.fingerprint() != CheckConfig(trust_anchors=b"A", watermark_key=b"k").fingerprint()


# ----------------------------------------------------------------------------- reports
def _result():
    objs = (_res("ok.jpg"),
            _res("<script>alert(1)</script>.jpg", "invalid_provenance",
                 c2pa={"state": "invalid", "codes": ["assertion.dataHash.mismatch"]}),
            _res("bad.jpg", "unreadable", c2pa=None, watermark=None, error="cannot decode image: truncated"))
    return AuditResult(run_id="r1", summary={"run_id": "r1", "targets": ["s3://b"], "counts":
                                             {"ok": 1, "invalid_provenance": 1, "unreadable": 1},
                                             "skipped": {"count": 2, "reasons": {"not media": 2}}},
                       objects=objs, findings=({"check": "s3.public", "resource": "b", "status": "fail",
                                                "severity": "high"},))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders(fmt):
    text = render(_result(), fmt)
    assert "bad.jpg" in text


def test_report_contents():
    r = _result()
    html = render(r, "html")
    assert "<script>alert" not in html and "&lt;script&gt;" in html  # hostile keys are escaped
    assert "http" not in html.split("<style>")[0].lower().replace("http-equiv", "")  # no external assets
    sarif = json.loads(render(r, "sarif"))
    assert sarif["version"] == "2.1.0"
    res = sarif["runs"][0]["results"]
    assert {x["ruleId"] for x in res} == {"SG-S3-INVALID", "SG-S3-UNREADABLE", "s3.public"}
    rows = list(csv.DictReader(io.StringIO(render(r, "csv"))))
    assert [x["status"] for x in rows] == ["ok", "invalid_provenance", "unreadable"]
    assert rows[1]["c2pa_codes"] == "assertion.dataHash.mismatch"
    lines = [json.loads(x) for x in render(r, "jsonl").splitlines()]
    assert [x["type"] for x in lines] == ["summary", "object", "object", "object", "finding"]
    table = render(r, "table")
    assert "cannot decode image: truncated" in table and "s3.public" in table
    with pytest.raises(ValueError):
        render(r, "xml")


# ----------------------------------------------------------------------------- aws
def test_client_factory_endpoints_and_config(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFRONT", "http://127.0.0.1:9")
    f = ClientFactory(max_pool=7)
    cf = f.client("cloudfront")
    assert cf.meta.endpoint_url == "http://127.0.0.1:9"  # botocore's service-specific variable applies
    assert f.client("cloudfront") is cf  # cached per thread
    cfg = f.config("s3")
    assert cfg.retries["mode"] == "adaptive" and cfg.max_pool_connections == 7
    explicit = ClientFactory(endpoint_url="http://127.0.0.1:1")
    s3 = explicit.client("s3")
    assert s3.meta.endpoint_url == "http://127.0.0.1:1" and s3.meta.config.s3["addressing_style"] == "path"
    import threading

    other = []
    t = threading.Thread(target=lambda: other.append(explicit.client("s3")))
    t.start()
    t.join()
    assert other[0] is not s3  # one client per thread


def test_client_factory_bad_profile():
    with pytest.raises(ValueError, match="profile"):
        ClientFactory(profile="no-such-profile-synthguard").session


def test_error_helpers():
    from botocore.exceptions import ClientError, ResponseStreamingError

    e = ClientError({"Error": {"Code": "SlowDown", "Message": "reduce"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                    "GetObject")
    assert describe_error(e) == "GetObject: SlowDown: reduce"
    assert not is_stream_error(e)
    assert is_stream_error(ResponseStreamingError(error="boom"))


def test_reduced_decode_still_catches_truncation():
    from fixtures.make_media import image_bytes
    from provenance.media import MediaError
    from s3sync.checks import _decode

    jpg = image_bytes("jpeg", size=(1200, 900), seed=2)
    small = _decode(jpg, 64)
    assert small.shape[0] < 900 and min(small.shape[:2]) >= 64  # DCT-scaled, not full size
    assert _decode(jpg, None).shape == (900, 1200, 3)
    with pytest.raises(MediaError, match="truncated"):
        _decode(jpg[: len(jpg) // 2], 64)


def test_luma_decode_reads_the_same_mark_as_colour():
    """The audit decodes a JPEG straight to its Y plane for the watermark: same size as the colour
    decode, the same luma up to rounding (and clipping of saturated colours), the same payload.
    PNGs come back as Pillow's luma; CMYK JPEGs in colour."""
    import io

    import numpy as np
    from PIL import Image

    import watermark
    from fixtures.make_media import encode_image, image_array
    from s3sync.checks import _decode
    from watermark.image import luminance

    key = bytes(range(32))
    marked = watermark.embed(image_array((1400, 1060), seed=4), bytes.fromhex("5347000000000007"), key=key)
    jpg = encode_image(marked, "jpeg", quality=88)
    rgb, y = _decode(jpg, 512), _decode(jpg, 512, luma=True)
    assert y.ndim == 2 and y.shape == rgb.shape[:2] and min(y.shape) < 1060  # DCT-scaled as well
    assert np.abs(luminance(rgb) - y).mean() < 0.5
    for search in ("own", "full"):
        got = watermark.detect(y, key=key, search=search)
        assert got.payload == watermark.detect(rgb, key=key, search=search).payload == bytes.fromhex("5347000000000007")
    png = _decode(encode_image(marked, "png"), 512, luma=True)
    assert png.shape == (1060, 1400) and np.abs(png - luminance(marked)).max() <= 1.0
    assert watermark.detect(png, key=key, search="own").payload == bytes.fromhex("5347000000000007")
    cmyk = io.BytesIO()
    Image.fromarray(marked).convert("CMYK").save(cmyk, "JPEG", quality=90)
    assert _decode(cmyk.getvalue(), 512, luma=True).ndim == 3  # CMYK JPEGs decode in colour
    # a grayscale picture is luma as it is: detect gives the same answer on HxW and on HxWx3
    gray = y[:, :, None].repeat(3, axis=2)
    assert watermark.detect(gray, key=key).payload == watermark.detect(y, key=key).payload


def test_check_classifies_bytes_without_network():
    """checks.check on in-memory objects: corrupt image and fake audio are errors with reasons."""
    from fixtures.make_media import image_bytes
    from s3sync import checks

    checks.init_process(CheckConfig(watermark=False))
    ok = checks.check(image_bytes("png", size=(64, 64)), "image/png", "a.png")
    assert ok.error is None and ok.c2pa["state"] == "missing" and ok.mime == "image/png"
    jpg_as_png = checks.check(image_bytes("jpeg", size=(64, 64)), "image/png", "a.png")
    assert jpg_as_png.mime == "image/jpeg" and jpg_as_png.error is None  # content wins over the claim
    bad = checks.check(b"\xff\xd8\xff\xe0" + b"\x00" * 50, "image/jpeg", "x.jpg")
    assert bad.error and "decode" in bad.error
    fake = checks.check(b"hello world" * 20, "audio/wav", "x.wav")
    assert fake.error and "audio" in fake.error


class _Pages:
    """A stand-in paginator source for the pure listing logic (no AWS API is involved)."""

    def __init__(self, pages):
        self.pages = pages
        self.kw = None

    def get_paginator(self, name):
        outer = self

        class P:
            def paginate(self, **kw):
                outer.kw = (name, kw)
                return iter(outer.pages)

        return P()


def test_listing_refs_pages_versions_and_folders():
    from s3sync.listing import S3Target, list_objects

    src = _Pages([{"Contents": [{"Key": "a/", "Size": 0}, {"Key": "a/x.jpg", "ETag": '"e1"', "Size": 5,
                                 "StorageClass": "GLACIER"}]},
                  {"Contents": [{"Key": "a/y.png", "ETag": '"e2"', "Size": 7}]}])
    refs = list(list_objects(src, S3Target("bkt", "a/")))
    # "folder" markers are listed too: the worker counts them as skipped, with the reason
    assert [(r.key, r.etag, r.size, r.storage_class) for r in refs] == [("a/", None, 0, None),
                                                                       ("a/x.jpg", "e1", 5, "GLACIER"),
                                                                       ("a/y.png", "e2", 7, None)]
    assert src.kw[0] == "list_objects_v2" and src.kw[1]["Prefix"] == "a/"
    vsrc = _Pages([{"Versions": [{"Key": "k.jpg", "VersionId": "v1", "ETag": '"e"', "Size": 1, "IsLatest": False},
                                 {"Key": "n.jpg", "VersionId": "null", "ETag": '"f"', "Size": 1, "IsLatest": True}],
                    "DeleteMarkers": [{"Key": "k.jpg", "VersionId": "v2", "IsLatest": True}]}])
    vrefs = list(list_objects(vsrc, S3Target("bkt"), versions=True))
    # a "null" version keeps its id: GetObject(VersionId="null") reads it, not the latest object
    assert [(r.key, r.version_id, r.delete_marker) for r in vrefs] == [("k.jpg", "v1", False),
                                                                      ("n.jpg", "null", False),
                                                                      ("k.jpg", "v2", True)]
    assert vsrc.kw[0] == "list_object_versions"


def test_watermark_search_auto_uses_the_hard_binding(tmp_path):
    """auto: a trusted manifest (bytes unedited since signing) gets the own-position check only;
    a manifest claiming a watermark the quick look misses (cropped before signing) gets the full
    search; full: every image gets the full search."""
    import watermark
    from fixtures.make_media import encode_image, image_array
    from provenance import Signer, certs, sign
    from s3sync import checks

    ident = certs.init_keys(tmp_path / "keys")
    signer = Signer.from_files(ident.signer_cert, ident.signer_key)
    key, kind = watermark.resolve_key(str(ident.watermark_key))
    payload = bytes.fromhex("53470000000000aa")
    rgb = image_array((640, 480), seed=3)
    marked = watermark.embed(rgb, payload, key=key)
    cropped = np.ascontiguousarray(marked[60:, 50:590])
    objects = {
        "plain-signed": sign(encode_image(rgb, "jpeg", quality=92), signer=signer, model="m"),
        "marked-signed": sign(encode_image(marked, "jpeg", quality=92), signer=signer, model="m",
                              watermark_payload=payload),
        "cropped-signed": sign(encode_image(cropped, "jpeg", quality=92), signer=signer, model="m",
                               watermark_payload=payload),
        "cropped-unsigned": encode_image(cropped, "jpeg", quality=92),
    }
    anchors = ident.root.read_bytes()
    got = {}
    for mode in ("auto", "full", "own"):
        checks.init_process(CheckConfig(trust_anchors=anchors, watermark_key=key, watermark_key_kind=kind,
                                        watermark_search=mode))
        for name, data in objects.items():
            out = checks.check(data, "image/jpeg", name + ".jpg")
            assert out.error is None, out.error
            got[mode, name] = (out.c2pa["state"], out.watermark["detected"], out.watermark["payload"],
                               out.watermark.get("search"))
    assert got["auto", "plain-signed"] == ("trusted", False, None, "own")
    assert got["full", "plain-signed"] == ("trusted", False, None, None)
    assert got["auto", "marked-signed"] == ("trusted", True, payload.hex(), "own")
    for mode in ("auto", "full"):  # the claim is checked by the full search when the quick look misses
        assert got[mode, "cropped-signed"] == ("trusted", True, payload.hex(), None)
        assert got[mode, "cropped-unsigned"] == ("missing", True, payload.hex(), None)
    # own: the quick look everywhere; a trusted manifest's claim still gets the full search.
    assert got["own", "cropped-unsigned"] == ("missing", False, None, "own")
    assert got["own", "cropped-signed"] == ("trusted", True, payload.hex(), None)
    assert got["own", "marked-signed"] == got["auto", "marked-signed"]
    assert len({CheckConfig(watermark_search=m).fingerprint() for m in ("auto", "full", "own")}) == 3


# ----------------------------------------------------------------------------- leak severity by exposure (issue 5)
def _public_finding(bucket, status, why=None, reason=None):
    ev = {"acl_public_grants": [], "public_statements": []}
    if why:
        ev["why"] = why
    if reason:
        ev["reason"] = reason
    return {"check": "s3.public_access", "resource": f"arn:aws:s3:::{bucket}", "status": status,
            "severity": "critical", "owner": None, "evidence": ev}


def _leak(bucket, key="x.jpg", origin=None):
    return _res(key, "leaked_training_asset", bucket=bucket, origin=origin,
                training_match={"asset_id": "train-1", "distance": 4})


def _exposure_result():
    findings = (
        _public_finding("pub", "fail", why="ACL grants to AllUsers"),
        _public_finding("priv", "pass"),
        _public_finding("cdn", "pass"),
        _public_finding("unk", "unknown", reason="s3:GetBucketAcl: AccessDenied"),
        {"check": "cloudfront.origin_access_control", "resource": "arn:aws:cloudfront::1:distribution/E1",
         "status": "pass", "severity": "high", "evidence": {"distribution": "E1", "origins": [
             {"origin": "o1", "bucket": "cdn", "status": "pass"}]}},
    )
    summary = {"run_id": "r1", "counts": {}, "posture": {"buckets": ["pub", "priv", "cdn", "unk"]},
               "cloudfront_origins": [
                   {"distribution_id": "E2", "origin_id": "o2", "bucket": "edge", "prefix": "gen/", "enabled": True},
                   {"distribution_id": "E3", "origin_id": "o3", "bucket": "off", "prefix": "", "enabled": False}]}
    objs = (_leak("pub"), _leak("priv"), _leak("cdn"), _leak("unk"), _leak("elsewhere"),
            _leak("edge", "gen/a.jpg", origin="cloudfront:E2/o2"), _leak("edge", "other/b.jpg"),
            _leak("off", "c.jpg", origin="cloudfront:E3/o3"),
            _res("m.jpg", "missing_provenance", bucket="pub", c2pa={"state": "missing", "codes": []}))
    return AuditResult(run_id="r1", summary=summary, objects=objs, findings=findings)


def test_leak_severity_follows_bucket_exposure():
    r = _exposure_result()
    got = {(o.bucket, o.key): (r.severity_of(o), r.exposure_of(o).state, r.exposure_of(o).why) for o in r.objects}
    assert got[("pub", "x.jpg")] == ("critical", "public", "bucket is public: ACL grants to AllUsers")
    assert got[("priv", "x.jpg")] == ("high", "private", "bucket is not public")
    assert got[("cdn", "x.jpg")] == ("critical", "public", "served by CloudFront distribution E1")
    assert got[("unk", "x.jpg")] == ("critical", "unknown", "exposure unknown: s3:GetBucketAcl: AccessDenied")
    assert got[("elsewhere", "x.jpg")][:2] == ("critical", "unknown")
    assert got[("edge", "gen/a.jpg")] == ("critical", "public", "served by CloudFront distribution E2")
    assert got[("edge", "other/b.jpg")][:2] == ("critical", "unknown")  # outside the origin path: not served
    assert got[("off", "c.jpg")][:2] == ("critical", "unknown")  # a disabled distribution serves nothing
    assert got[("pub", "m.jpg")][0] == "high"  # other statuses keep their severity
    # the same findings as Finding values (a live run) decide the same way
    from s3sync.posture.models import Finding

    r2 = r.with_(findings=tuple(Finding.from_dict(f) for f in r.findings))
    assert [r2.severity_of(o) for o in r2.objects] == [r.severity_of(o) for o in r.objects]
    # without the object's run, exposure is unknown: a leak is critical (the conservative answer)
    assert r.objects[1].severity == "critical"


def test_leak_exposure_unknown_without_posture_or_cloudfront_answer():
    priv = _leak("priv")
    no_posture = AuditResult(run_id="r", summary={"counts": {}}, objects=(priv,))
    assert (no_posture.severity_of(priv), no_posture.exposure_of(priv).why) == (
        "critical", "exposure unknown: posture checks were not run (--no-posture)")
    failed = AuditResult(run_id="r", summary={"posture": {"error": "posture checks failed: boom"}}, objects=(priv,),
                         findings=(_public_finding("priv", "pass"),))
    assert failed.exposure_of(priv).state == "private"  # a finding that did arrive still counts
    cdn_unknown = AuditResult(run_id="r", summary={"posture": {"buckets": ["priv"]}}, objects=(priv,), findings=(
        _public_finding("priv", "pass"),
        {"check": "cloudfront.origin_access_control", "resource": "arn:aws:cloudfront::1:distribution/*",
         "status": "unknown", "severity": "high", "evidence": {"reason": "cloudfront:ListDistributions: 501"}}))
    exp = cdn_unknown.exposure_of(priv)
    assert cdn_unknown.severity_of(priv) == "critical" and exp.state == "unknown"
    assert "bucket is not public" in exp.why and "cloudfront:ListDistributions: 501" in exp.why


def test_leak_severity_in_every_report_format():
    r = _exposure_result()
    want = {(o.bucket, o.key): r.severity_of(o) for o in r.objects}
    assert want[("priv", "x.jpg")] == "high" and want[("pub", "x.jpg")] == "critical"
    doc = json.loads(render(r, "json"))
    assert {(o["bucket"], o["key"]): o["severity"] for o in doc["objects"]} == want
    assert doc["objects"][0]["exposure"] == {"state": "public", "why": "bucket is public: ACL grants to AllUsers"}
    lines = [json.loads(x) for x in render(r, "jsonl").splitlines() if '"object"' in x]
    assert {(x["bucket"], x["key"]): x["severity"] for x in lines if x["type"] == "object"} == want
    rows = list(csv.DictReader(io.StringIO(render(r, "csv"))))
    assert {(x["bucket"], x["key"]): x["severity"] for x in rows} == want
    assert {x["bucket"]: x["exposure_reason"] for x in rows}["priv"] == "bucket is not public"
    sarif = json.loads(render(r, "sarif"))
    res = [x for x in sarif["runs"][0]["results"] if x["ruleId"].startswith("SG-S3-LEAK")]
    by = {x["properties"]["bucket"] + "/" + x["properties"]["key"]: x for x in res}
    assert by["priv/x.jpg"]["properties"]["severity"] == "high"
    # GitHub takes the severity from the rule: a private-bucket leak has its own, high rule
    rules = sarif["runs"][0]["tool"]["driver"]["rules"]
    rule_of = {x["properties"]["bucket"]: rules[x["ruleIndex"]] for x in res}
    assert (by["priv/x.jpg"]["ruleId"], by["pub/x.jpg"]["ruleId"]) == ("SG-S3-LEAK-PRIVATE", "SG-S3-LEAK")
    assert rule_of["priv"]["id"] == "SG-S3-LEAK-PRIVATE" and rule_of["priv"]["properties"]["security-severity"] == "8.0"
    assert rule_of["pub"]["id"] == "SG-S3-LEAK" and rule_of["pub"]["properties"]["security-severity"] == "9.5"
    assert by["priv/x.jpg"]["properties"]["security-severity"] == "8.0"
    assert by["pub/x.jpg"]["properties"]["security-severity"] == "9.5"
    assert "critical: bucket is public: ACL grants to AllUsers" in by["pub/x.jpg"]["message"]["text"]
    assert "high: bucket is not public" in by["priv/x.jpg"]["message"]["text"]
    from s3sync.reports.sarif import level

    assert all(x["level"] == level(x["properties"]["severity"]) for x in res)
    html = render(r, "html")
    assert "<td>high</td>" in html and "bucket is not public" in html
    table = render(r, "table")
    assert "training asset train-1 (distance 4); bucket is public: ACL grants to AllUsers" in table
    assert "bucket is not public" in table and " high " in table


def test_prefetched_listing_keeps_order_errors_and_stops_early():
    import threading
    import time

    from s3sync.listing import prefetched

    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise RuntimeError("AccessDenied on page 3")

    got = []
    with pytest.raises(RuntimeError, match="page 3"):
        for x in prefetched(failing()):
            got.append(x)
    assert got == [1, 2]

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = prefetched(endless(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    time.sleep(0.5)
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n <= 3 + 2 + 2  # the producer stopped, at most depth pages ahead
    assert not [t for t in threading.enumerate() if t.name == "s3audit-list" and t.is_alive()]


def test_tiny_images_are_not_searched_for_a_watermark():
    import watermark
    from fixtures.make_media import image_bytes
    from s3sync import checks

    checks.init_process(CheckConfig(watermark_key=bytes(32), watermark_key_kind="secret"))
    out = checks.check(image_bytes("jpeg", size=(80, 60)), "image/jpeg", "t.jpg")
    assert out.error is None and out.watermark["detected"] is False
    assert f"< {watermark.MIN_DETECT_SHORT} px" in out.watermark["skipped"]
    big = checks.check(image_bytes("jpeg", size=(96, 96)), "image/jpeg", "t.jpg")
    assert "skipped" not in big.watermark  # at or above the limit the detector runs


def test_empty_object_is_unreadable_with_a_plain_reason():
    from s3sync import checks

    checks.init_process(CheckConfig(watermark=False))
    out = checks.check(b"", "image/jpeg", "empty.jpg")
    assert out.error == "empty object (0 bytes) where image/jpeg was claimed"
    assert classify(None, False, None, out.error) == "unreadable"


def test_pool_workers_run_opencv_single_threaded():
    """One check process per core: OpenCV threads inside each would only add CPU."""
    import cv2

    from s3sync import checks

    before = cv2.getNumThreads()
    try:
        checks.init_process(CheckConfig(watermark=False), warm=True)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
        checks.init_process(CheckConfig())


def test_check_processes_round_trip_and_errors(tmp_path):
    """The audit's check processes give what the inline checks give; a check's exception reaches
    the caller as itself, and the processes end when the pool is closed."""
    from fixtures.make_media import image_bytes
    from s3sync import checks
    from s3sync.worker import CheckProcesses

    cfg = CheckConfig(watermark=False)
    checks.init_process(cfg)
    data = image_bytes("png", size=(64, 64))
    pool = CheckProcesses(2, cfg)
    try:
        got = pool.check(data, "image/png", "a.png")
        want = checks.check_task(data, "image/png", "a.png")
        assert (got.c2pa, got.watermark, got.training_match, got.error, got.mime) == \
            (want.c2pa, want.watermark, want.training_match, want.error, want.mime)
        assert "check_cpu_ms" in got.timings
        with pytest.raises(FileNotFoundError):
            pool.check(str(tmp_path / "gone.jpg"), "image/jpeg", "gone.jpg")
        assert pool.check(data, "image/png", "a.png").error is None  # an exception breaks nothing
    finally:
        pool.close()
    assert not any(proc.is_alive() for _, proc in pool._slots)


def _dies_on_poison(conn, cfg):
    """A check process main loop that dies (exit code 3) on the key "poison.jpg", hangs on
    "stuck.jpg", and dies at once when cfg.registry_path is "die": stands in for a decoder crashing
    or stuck on hostile bytes."""
    import os

    from s3sync import checks

    if cfg.registry_path == "die":
        os._exit(4)
    checks.init_process(cfg, True)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task[2] == "poison.jpg":
            os._exit(3)
        if task[2] == "stuck.jpg":
            import time

            time.sleep(60)
        conn.send((True, checks.check_task(*task)))


def test_a_dead_check_process_is_replaced_and_only_its_object_fails():
    """A killed process is replaced and its object retried on the fresh one (nothing fails); bytes
    that kill the process twice make only that object fail, with the reason; processes that die
    at every start give the pool up (BrokenProcessPool at once, not a respawn per object)."""
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from fixtures.make_media import image_bytes
    from s3sync.worker import CheckProcessDied, CheckProcesses

    data = image_bytes("png", size=(64, 64))
    pool = CheckProcesses(2, CheckConfig(watermark=False), target=_dies_on_poison)
    try:
        assert pool.check(data, "image/png", "a.png").error is None
        for _, proc in list(pool._slots):
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
        for _ in range(4):  # each dead process is met once, replaced, and the check retried there
            assert pool.check(data, "image/png", "a.png").error is None
        with pytest.raises(CheckProcessDied, match="died twice on this object \\(exit code 3\\)"):
            pool.check(data, "image/jpeg", "poison.jpg")
        assert pool.check(data, "image/png", "a.png").error is None
        assert all(proc.is_alive() for _, proc in pool._slots)
    finally:
        pool.close()
    assert not any(proc.is_alive() for _, proc in pool._slots)

    doomed = CheckProcesses(1, CheckConfig(watermark=False, registry_path="die"), target=_dies_on_poison)
    try:
        for _ in range(2):
            with pytest.raises(CheckProcessDied, match="exit code 4"):
                doomed.check(data, "image/png", "a.png")
        with pytest.raises(BrokenProcessPool):
            doomed.check(data, "image/png", "a.png")
        with pytest.raises(BrokenProcessPool):
            doomed.check(data, "image/png", "a.png")
    finally:
        doomed.close()


def test_a_stuck_check_is_stopped_after_the_timeout():
    """A check that runs past the timeout has its process stopped and replaced (no retry): only
    that object fails, with the reason, and the next check runs on the fresh process."""
    import time

    from fixtures.make_media import image_bytes
    from s3sync.worker import CheckProcesses, CheckTimedOut

    data = image_bytes("png", size=(64, 64))
    pool = CheckProcesses(1, CheckConfig(watermark=False), target=_dies_on_poison, timeout=1.5)
    try:
        assert pool.check(data, "image/png", "a.png").error is None
        t0 = time.monotonic()
        with pytest.raises(CheckTimedOut, match="longer than 1.5 s"):
            pool.check(data, "image/jpeg", "stuck.jpg")
        assert time.monotonic() - t0 < 10
        assert pool.check(data, "image/png", "a.png").error is None
        pool._timeout = 0.2
        for _ in range(6):  # timeouts are not deaths: the pool is never given up for them
            with pytest.raises(CheckTimedOut):
                pool.check(data, "image/jpeg", "stuck.jpg")
        pool._timeout = 30.0
        assert pool.check(data, "image/png", "a.png").error is None
        assert all(proc.is_alive() for _, proc in pool._slots)
    finally:
        pool.close()


def test_content_encoding_is_undone_bounded(tmp_path):
    """gzip / deflate (zlib) / both, from bytes or a file; into memory up to max_inline, else into a
    temp file; a bomb, a truncated stream and unknown codings are errors with the reason."""
    import gzip
    import os
    import zlib

    from s3sync import contentenc

    body = bytes(range(256)) * 400  # 100 KiB
    gz = gzip.compress(body)
    assert contentenc.codings("identity") == [] and contentenc.codings(" GZIP, aws-chunked") == ["gzip"]
    assert contentenc.decode(body, None, limit=1 << 30, max_inline=1 << 30) is body
    assert contentenc.decode(gz, "gzip", limit=1 << 30, max_inline=1 << 30) == body
    assert contentenc.decode(zlib.compress(gz), "gzip, deflate", limit=1 << 30, max_inline=1 << 30) == body
    src = tmp_path / "obj.gz"
    src.write_bytes(gz)
    out = contentenc.decode(str(src), "x-gzip", limit=1 << 30, max_inline=4096, tmp_dir=str(tmp_path))
    assert isinstance(out, str) and open(out, "rb").read() == body and src.exists()
    os.unlink(out)
    with pytest.raises(contentenc.ContentEncodingError, match="expands past 50000 bytes"):
        contentenc.decode(gz, "gzip", limit=50_000, max_inline=4096, tmp_dir=str(tmp_path))
    with pytest.raises(contentenc.ContentEncodingError, match="truncated"):
        contentenc.decode(gz[: len(gz) // 2], "gzip", limit=1 << 30, max_inline=1 << 30)
    with pytest.raises(contentenc.ContentEncodingError, match="do not decode"):
        contentenc.decode(body, "gzip", limit=1 << 30, max_inline=1 << 30)
    with pytest.raises(contentenc.ContentEncodingError, match="zstd is not supported"):
        contentenc.decode(body, "zstd", limit=1 << 30, max_inline=1 << 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.gz"]  # no temp file left behind


def test_state_refuses_a_file_it_cannot_write(tmp_path, monkeypatch):
    """An audit's state must be writable before any work; reading a run does not need it. (The
    integration test runs the CLI as another user; this one holds where that cannot be done, e.g.
    as root without setpriv: os.access is what State consults.)"""
    import os

    from s3sync import state as state_mod
    from s3sync.state import State, StateError

    path = tmp_path / "s.db"
    State(path).close()
    real = os.access
    monkeypatch.setattr(state_mod.os, "access", lambda p, mode: False if mode == os.W_OK else real(p, mode))
    with pytest.raises(StateError, match="not writable"):
        State(path)
    with State(path, create=False) as st:  # reading (audit report) is fine
        assert st.runs() == []
