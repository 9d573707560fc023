"""Unit tests of s3sync.cloudfront: origin-domain parsing, routing, edge URL mapping, sampling choice.

No servers here (see tests/integration/test_cloudfront*.py for moto + SeaweedFS + a local edge).
"""
from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from s3sync import cloudfront as cfm
from s3sync.cloudfront import (CloudFrontError, EdgeSample, OriginTarget, _origins_of, candidates, edge_base_url,
                               edge_url, parse_edge_url_map, parse_origin_domain, resolve_targets)


@pytest.mark.parametrize("domain,path,expected", [
    ("media.s3.amazonaws.com", "", ("media", "", None, "rest")),
    ("media.s3.us-west-2.amazonaws.com", "/gen", ("media", "gen/", "us-west-2", "rest")),
    ("media.s3-eu-west-1.amazonaws.com", "/a/b/", ("media", "a/b/", "eu-west-1", "rest")),
    ("media.s3.dualstack.ap-southeast-2.amazonaws.com", "", ("media", "", "ap-southeast-2", "rest")),
    ("my.dotted.bucket.s3.amazonaws.com", "", ("my.dotted.bucket", "", None, "rest")),
    ("media.s3-external-1.amazonaws.com", "", ("media", "", None, "rest")),
    ("media.s3.cn-north-1.amazonaws.com.cn", "", ("media", "", "cn-north-1", "rest")),
    ("media.s3.us-gov-west-1.amazonaws.com", "", ("media", "", "us-gov-west-1", "rest")),
    ("Site.S3-Website-us-east-1.amazonaws.com.", "/www", ("site", "www/", "us-east-1", "website")),
    ("site.s3-website.eu-central-1.amazonaws.com", "", ("site", "", "eu-central-1", "website")),
    ("s3.us-east-1.amazonaws.com", "/media/gen", ("media", "gen/", "us-east-1", "rest")),
])
def test_parse_s3_origin_domains(domain, path, expected):
    assert parse_origin_domain(domain, path) == expected


@pytest.mark.parametrize("domain,fragment", [
    ("api.example.com", "custom origin"),
    ("my-alb-123.us-east-1.elb.amazonaws.com", "custom origin"),
    ("ap-123456789012.s3-accesspoint.us-east-1.amazonaws.com", "access point"),
    ("media.s3-accelerate.amazonaws.com", "accelerate"),
    ("s3.amazonaws.com", "without a bucket"),
    ("", "no domain"),
    ("media.s3.amazonaws.com.evil.example", "custom origin"),
])
def test_non_s3_origins_give_a_reason(domain, fragment):
    reason = parse_origin_domain(domain, "")
    assert isinstance(reason, str) and fragment in reason


def _config(origins, behaviours=(), default="o1", aliases=(), groups=()):
    return {"Aliases": {"Quantity": len(aliases), "Items": list(aliases)},
            "Origins": {"Quantity": len(origins), "Items": origins},
            "OriginGroups": {"Quantity": len(groups), "Items": list(groups)},
            "DefaultCacheBehavior": {"TargetOriginId": default},
            "CacheBehaviors": {"Quantity": len(behaviours),
                               "Items": [{"PathPattern": p, "TargetOriginId": t} for p, t in behaviours]},
            "Enabled": True}


def test_origins_of_splits_s3_and_custom_and_routes_keys():
    cfg = _config([{"Id": "o1", "DomainName": "media.s3.amazonaws.com", "OriginPath": "/public"},
                   {"Id": "o2", "DomainName": "thumbs.s3-website-us-east-1.amazonaws.com", "OriginPath": ""},
                   {"Id": "api", "DomainName": "api.example.com", "OriginPath": ""}],
                  behaviours=[("/thumbs/*", "o2"), ("api/*", "api")], aliases=["cdn.example.com"])
    targets, skipped = _origins_of("EDIST1", cfg, "d111.cloudfront.net")
    assert [(t.origin_id, t.bucket, t.prefix, t.kind) for t in targets] == [
        ("o1", "media", "public/", "rest"), ("o2", "thumbs", "", "website")]
    assert targets[0].domain_name == "cdn.example.com"  # first alias is what viewers use
    assert targets[0].domains() == ("cdn.example.com", "d111.cloudfront.net")
    assert [(s.origin_id, s.distribution_id) for s in skipped] == [("api", "EDIST1")]
    assert "not an S3 bucket" in skipped[0].reason
    o1, o2 = targets
    assert o1.serves("public/a.jpg") and not o1.serves("private/a.jpg")
    assert not o1.serves("public/thumbs/a.jpg")  # /thumbs/* goes to o2 first
    assert o2.serves("thumbs/a.jpg") and not o2.serves("a.jpg")
    assert o1.s3_uri == "s3://media/public/" and o2.s3_uri == "s3://thumbs"
    d = o1.to_dict()
    assert d["routes"][0] == {"path_pattern": "/thumbs/*", "origin_ids": ["o2"]} and d["kind"] == "rest"


def test_origin_groups_route_to_every_member():
    cfg = _config([{"Id": "a", "DomainName": "one.s3.amazonaws.com"}, {"Id": "b", "DomainName": "two.s3.amazonaws.com"}],
                  default="grp", groups=[{"Id": "grp", "Members": {"Quantity": 2, "Items": [
                      {"OriginId": "a"}, {"OriginId": "b"}]}}])
    targets, _ = _origins_of("E2", cfg, "d2.cloudfront.net")
    assert all(t.serves("x.png") for t in targets)
    assert targets[0].domain_name == "d2.cloudfront.net"


def _target(prefix="gen/", domain="d1.cloudfront.net", **kw):
    return OriginTarget(distribution_id="EDIST", domain_name=domain, origin_id="o1", bucket="media",
                        prefix=prefix, kind="rest", cloudfront_domain=domain, **kw)


def test_edge_url_strips_origin_path_and_quotes():
    t = _target()
    assert edge_url(t, "gen/cats/a b#1.jpg") == "https://d1.cloudfront.net/cats/a%20b%231.jpg"
    assert edge_url(t, "other/a.jpg") is None
    assert edge_url(_target(prefix=""), "x/y.png") == "https://d1.cloudfront.net/x/y.png"
    m = {"D1.cloudfront.net": "http://127.0.0.1:8080/"}
    assert edge_url(t, "gen/a.jpg", m) == "http://127.0.0.1:8080/a.jpg"
    assert edge_base_url(t, {"EDIST": "http://127.0.0.1:1"}) == "http://127.0.0.1:1"
    assert edge_base_url(t, {"*": "http://127.0.0.1:2/base"}) == "http://127.0.0.1:2/base"


def test_parse_edge_url_map_env_and_items():
    env = {cfm.EDGE_URL_MAP_ENV: "a.example=http://127.0.0.1:1, b.example=http://127.0.0.1:2"}
    m = parse_edge_url_map(["b.example=http://127.0.0.1:3/"], env=env)
    assert m == {"a.example": "http://127.0.0.1:1", "b.example": "http://127.0.0.1:3"}
    assert parse_edge_url_map(None, env={}) == {}
    for bad in ("nodomain", "x=ftp://h", "=http://h", "x="):
        with pytest.raises(ValueError):
            parse_edge_url_map([bad], env={})


@pytest.mark.parametrize("spec,fragment", [
    ("s3://bucket", "not a CloudFront target"), ("cloudfront:", "missing distribution id"),
    ("cloudfront:bad/id", "letters and digits")])
def test_bad_specs_are_clear_errors(spec, fragment):
    with pytest.raises(CloudFrontError, match=fragment):
        resolve_targets(spec, clients=object())


def _res(key, state=None, wm=None, status="ok", ctype="image/jpeg", bucket="media", etag=None):
    return {"bucket": bucket, "key": key, "version_id": None, "etag": etag, "size": 1, "content_type": ctype,
            "status": status, "c2pa": {"state": state, "codes": []},
            "watermark": {"detected": wm is not None, "payload": wm}, "error": None}


def test_candidates_prefer_provenance_and_are_deterministic():
    t = _target()
    results = [_res(f"gen/p{i}.jpg", state="trusted") for i in range(5)]
    results += [_res(f"gen/m{i}.jpg", state="missing", status="missing_provenance") for i in range(5)]
    results += [_res("gen/w.jpg", wm="abcd", status="watermark_only"), _res("gen/readme.txt", ctype="text/plain"),
                _res("gen/x.jpg", bucket="other"), _res("private/y.jpg", state="trusted"),
                _res("gen/bad.jpg", state="missing", status="unreadable")]
    picked = [r["key"] for r in candidates(t, results)]
    assert set(picked[:6]) == {f"gen/p{i}.jpg" for i in range(5)} | {"gen/w.jpg"}
    assert picked[-1] == "gen/bad.jpg"
    assert "gen/readme.txt" not in picked and "gen/x.jpg" not in picked and "private/y.jpg" not in picked
    assert [r["key"] for r in candidates(t, list(reversed(results)))] == picked


def test_judge_reasons():
    j = cfm._judge
    ok, why = j("trusted", None, "trusted", (), None, None, True, "image/jpeg", "image/jpeg", None)
    assert ok and "bytes identical" in why
    ok, why = j("trusted", None, "missing", (), None, None, False, "image/jpeg", "image/jpeg", None)
    assert not ok and "re-encoded bytes without the C2PA manifest" in why
    ok, why = j("trusted", None, "missing", (), None, None, None, "image/jpeg", "image/webp", None)
    assert not ok and "format conversion" in why
    ok, why = j("trusted", None, "invalid", ("assertion.dataHash.mismatch",), None, None, False,
                "image/jpeg", "image/jpeg", None)
    assert not ok and "dataHash.mismatch" in why and "modified" in why
    ok, why = j("trusted", "ab12", "missing", (), True, "ab12", False, "image/jpeg", "image/jpeg", None)
    assert not ok and "survived" in why
    ok, why = j(None, "ab12", "missing", (), False, None, False, "image/jpeg", "image/jpeg", None)
    assert not ok and "not detected" in why
    ok, why = j("missing", None, "missing", (), None, None, None, "image/jpeg", "image/jpeg", None)
    assert ok and "nothing to preserve" in why


class _Flaky(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        if self.path.startswith("/slow"):
            threading.Event().wait(2.0)
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        if self.path.startswith("/drop"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nshort")
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"abc")

    def log_message(self, *a):
        pass


def test_edge_failures_become_samples_not_exceptions():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        t = _target(prefix="")
        results = [_res(k, state="trusted", etag=hashlib.md5(b"x").hexdigest())
                   for k in ("missing/a.jpg", "drop/b.jpg", "slow/c.jpg")]
        samples = cfm.sample_edge(t, results, 3, edge_url_map={"d1.cloudfront.net": base}, timeout=0.5)
        by_key = {s.key: s for s in samples}
        assert set(by_key) == {"missing/a.jpg", "drop/b.jpg", "slow/c.jpg"}
        assert by_key["missing/a.jpg"].http_status == 404 and "404" in by_key["missing/a.jpg"].error
        assert by_key["drop/b.jpg"].error and "cannot fetch" in by_key["drop/b.jpg"].error
        assert by_key["slow/c.jpg"].error and "timed out" in by_key["slow/c.jpg"].error
        assert all(isinstance(s, EdgeSample) and not s.provenance_preserved for s in samples)
        assert cfm.summarize(samples) == {"edge_samples": 3, "edge_provenance_not_preserved": 3, "edge_errors": 3}
        # Nothing listens here any more: connection refused is an error sample too.
        dead = cfm.sample_edge(t, results[:1], 1, edge_url_map={"*": "http://127.0.0.1:9"}, timeout=0.5)
        assert dead[0].error and dead[0].http_status is None
    finally:
        srv.shutdown()
        srv.server_close()


class _DeniedCloudFront:
    """A stand-in CloudFront client whose calls are refused like IAM refuses them."""

    class meta:  # noqa: N801 - mimics botocore's client.meta
        endpoint_url = "https://cloudfront.amazonaws.com"

    def _deny(self, op):
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "User: arn:aws:iam::1:user/x is not "
                                     "authorized to perform: cloudfront:" + op},
                           "ResponseMetadata": {"HTTPStatusCode": 403}}, op)

    def list_distributions(self, **kw):
        self._deny("ListDistributions")

    def get_paginator(self, name):
        outer = self

        class P:
            def paginate(self):
                outer._deny("ListDistributions")
                yield {}

        return P()

    def get_distribution_config(self, **kw):
        self._deny("GetDistributionConfig")


def test_access_denied_is_one_clear_line():
    for spec in ("cloudfront:all", "cloudfront:E2QWRUHEXAMPLE"):
        with pytest.raises(CloudFrontError) as ei:
            resolve_targets(spec, _DeniedCloudFront())
        msg = str(ei.value)
        assert "access denied" in msg and "cloudfront:GetDistributionConfig" in msg and "\n" not in msg


def test_sample_edges_skips_disabled_and_samples_each_url_once():
    import dataclasses

    cfg = _config([{"Id": "a", "DomainName": "one.s3.amazonaws.com"}, {"Id": "b", "DomainName": "one.s3.amazonaws.com"}],
                  default="grp", groups=[{"Id": "grp", "Members": {"Quantity": 2, "Items": [
                      {"OriginId": "a"}, {"OriginId": "b"}]}}])
    targets, _ = _origins_of("E3", cfg, "d3.cloudfront.net")
    results = [_res("x.jpg", state="trusted", bucket="one"), _res("y.jpg", state="trusted", bucket="one")]
    dead = {"*": "http://127.0.0.1:9"}
    samples = cfm.sample_edges(targets, results, 5, edge_url_map=dead, timeout=0.5)
    assert sorted(s.key for s in samples) == ["x.jpg", "y.jpg"]  # not twice through the two members
    assert all(s.url.startswith("http://127.0.0.1:9/") for s in samples)
    off = [dataclasses.replace(t, enabled=False) for t in targets]
    assert cfm.sample_edges(off, results, 5, edge_url_map=dead, timeout=0.5) == []


def test_edge_objects_over_the_memory_bound_are_not_read(monkeypatch):
    monkeypatch.setattr(cfm, "MAX_EDGE_BYTES", 2)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        got = cfm._fetch(f"http://127.0.0.1:{srv.server_address[1]}/ok.jpg", 2.0, cfm.BROWSER_ACCEPT)
        assert got.status == 200 and got.data == b"" and "larger than 2" in got.error
    finally:
        srv.shutdown()
        srv.server_close()
