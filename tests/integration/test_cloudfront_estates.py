"""CloudFront estates real users have: many distributions (ListDistributions pages), disabled ones,
several origins per distribution (S3 REST + legacy dash + dualstack + dotted bucket names + an S3
website endpoint as a custom origin + an ALB), cache behaviours routing a path to the second origin,
one bucket behind two distributions, an origin bucket that no longer exists, wildcard aliases, keys
that need URL-encoding, and edges that misbehave (403/404, redirects, gzip, a 200 HTML error page,
a resized copy, a trickling body).

Real servers only: SeaweedFS (session ``seaweed``) for the buckets, a private moto server for the
CloudFront control plane, and the threaded edge of ``test_cloudfront_integration`` (``_Edge``)
with a routing handler on top. The bugs this hunt found are fixed; their tests stay as regressions."""
from __future__ import annotations

import contextlib
import fnmatch
import gzip
import hashlib
import http.server
import io
import json
import threading
import time
import urllib.parse

import pytest

from s3sync.cloudfront import OriginTarget, edge_url, resolve_targets, sample_edge, sample_edges
from test_cloudfront_integration import _dist_config, _Edge, _EdgeHandler, _jpeg, _point_at_servers

pytestmark = pytest.mark.integration

SHARED = "cfe-shared"          # behind DA (REST, origin path /pub) and DB (website endpoint, whole bucket)
THUMBS = "cfe-thumbs"          # DA's second origin (legacy s3-REGION form, origin path /assets), /media/*
OFF = "cfe-off"                # behind a disabled distribution
DOTTED = "cfe.dotted.bucket"   # dualstack endpoint, dots in the bucket name
GONE = "cfe-gone-bucket"       # an origin whose bucket was deleted (never created here)
HOSTILE = ["pub/sp ace.jpg", "pub/plus+sign.jpg", "pub/hash#frag.jpg", "pub/uni-\u00f1-\u65e5\u672c.jpg",
           "pub/q?mark.jpg", "pub/pct%20lit.jpg"]
SIGNED = {SHARED: ["pub/a.jpg", "pub/img/resized.jpg", "root.jpg", *HOSTILE],
          THUMBS: ["assets/media/t1.jpg", "assets/other.jpg"], OFF: ["x.jpg"], DOTTED: ["d.jpg"]}


def _s3_origin(oid, domain, path=""):
    return {"Id": oid, "DomainName": domain, "OriginPath": path, "S3OriginConfig": {"OriginAccessIdentity": ""}}


def _custom_origin(oid, domain, path=""):
    return {"Id": oid, "DomainName": domain, "OriginPath": path,
            "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "http-only"}}


class _RoutingEdgeHandler(_EdgeHandler):
    """``/<dist>/<path>``: a cache behaviour (``srv.routes[dist]``: [(pattern, edge name)]) sends a
    path to another origin, like CloudFront does; the rest is ``_EdgeHandler``."""

    def do_GET(self):  # noqa: N802 - http.server API
        parts = urllib.parse.urlsplit(self.path)
        dist, _, rest = parts.path.lstrip("/").partition("/")
        for pattern, name in getattr(self.server, "routes", {}).get(dist, ()):
            if fnmatch.fnmatchcase("/" + urllib.parse.unquote(rest), pattern):
                self.path = f"/{name}/{rest}"
                break
        super().do_GET()


def _snapshot(s3, buckets):
    out = {}
    for b in buckets:
        for o in s3.list_objects_v2(Bucket=b).get("Contents", []):
            out[(b, o["Key"])] = (o["ETag"], o["Size"], str(o["LastModified"]))
        try:
            out[(b, "?policy")] = s3.get_bucket_policy(Bucket=b)["Policy"]
        except Exception as exc:  # noqa: BLE001 - no policy is a state too
            out[(b, "?policy")] = type(exc).__name__
    return out


@pytest.fixture(scope="module")
def estate(seaweed, tmp_path_factory):
    """Signed objects in four buckets, five distributions on a private moto server, a routing edge."""
    from provenance import Signer, certs, sign
    from s3sync.localserver import MotoServer

    keys = certs.init_keys(tmp_path_factory.mktemp("cfekeys"))
    signer = Signer.from_files(keys.signer_cert, keys.signer_key)
    s3 = seaweed.client("s3")
    seed = 40
    for bucket, names in SIGNED.items():
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        for key in names:
            seed += 1
            s3.put_object(Bucket=bucket, Key=key, Body=sign(_jpeg(seed, 96), signer=signer, mime="image/jpeg"),
                          ContentType="image/jpeg")
    with MotoServer() as moto:
        cf = moto.client("cloudfront")

        def create(ref, origins, default, behaviours=(), aliases=(), enabled=True):
            cfg = _dist_config(ref, origins, default, behaviours=behaviours, aliases=aliases)
            cfg["Enabled"] = enabled
            return cf.create_distribution(DistributionConfig=cfg)["Distribution"]

        da = create("da", [_s3_origin("shared", f"{SHARED}.s3.us-west-2.amazonaws.com", "/pub"),
                           _s3_origin("thumbs", f"{THUMBS}.s3-us-west-2.amazonaws.com", "/assets"),
                           _custom_origin("alb", "my-alb-123.us-west-2.elb.amazonaws.com")],
                    "shared", behaviours=[("/media/*", "thumbs"), ("/api/*", "alb")])
        db = create("db", [_custom_origin("site", f"{SHARED}.s3-website.us-west-2.amazonaws.com")], "site",
                    aliases=["cdn.cfe.example"])
        dc = create("dc", [_s3_origin("off", f"{OFF}.s3.amazonaws.com")], "off", enabled=False)
        dd = create("dd", [_s3_origin("dot", f"{DOTTED}.s3.dualstack.eu-west-1.amazonaws.com")], "dot")
        dg = create("dg", [_s3_origin("gone", f"{GONE}.s3.amazonaws.com")], "gone")
        edge = _Edge(seaweed, {"da": (SHARED, "pub/"), "da-media": (THUMBS, "assets/"), "db": (SHARED, ""),
                               "dc": (OFF, ""), "dd": (DOTTED, "")})
        edge.RequestHandlerClass = _RoutingEdgeHandler
        edge.routes = {"da": [("/media/*", "da-media")]}
        th = threading.Thread(target=edge.serve_forever, daemon=True)
        th.start()
        try:
            yield {"moto": moto, "cf": cf, "keys": keys, "signer": signer, "edge": edge, "s3": s3,
                   "da": da, "db": db, "dc": dc, "dd": dd, "dg": dg,
                   "url_map": {da["DomainName"]: edge.base + "/da", "cdn.cfe.example": edge.base + "/db",
                               dc["DomainName"]: edge.base + "/dc", dd["DomainName"]: edge.base + "/dd"}}
        finally:
            edge.shutdown()
            edge.server_close()


def _cli(argv, capsys):
    import cli

    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def estate_run(estate, seaweed, tmp_path_factory):
    """``synthguard audit cloudfront:DA cloudfront:DB cloudfront:DC cloudfront:DD --sample-edge 50``
    (more than there are objects), JSON; the state DB is kept for the other report formats."""
    import cli

    mp = pytest.MonkeyPatch()
    _point_at_servers(mp, seaweed, estate)
    state = tmp_path_factory.mktemp("cfestate") / "state.db"
    buckets = [SHARED, THUMBS, OFF, DOTTED]
    before = _snapshot(estate["s3"], buckets)
    configs = {d: estate["cf"].get_distribution_config(Id=estate[d]["Id"])["DistributionConfig"]
               for d in ("da", "db", "dc", "dd")}
    specs = [f"cloudfront:{estate[d]['Id']}" for d in ("da", "db", "dc", "dd")]
    argv = ["audit", *specs, "--sample-edge", "50", "--format", "json", "--processes", "0", "--no-watermark",
            "--no-posture", "--trust-anchors", str(estate["keys"].root), "--state", str(state)]
    argv += [a for dom, url in estate["url_map"].items() for a in ("--edge-url-map", f"{dom}={url}")]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(argv)
    finally:
        mp.undo()
    after_configs = {d: estate["cf"].get_distribution_config(Id=estate[d]["Id"])["DistributionConfig"]
                     for d in ("da", "db", "dc", "dd")}
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "state": state, "before": before,
            "after": _snapshot(estate["s3"], buckets), "configs": (configs, after_configs)}


# ----------------------------------------------------------------------------- resolving the estate
def test_resolve_variants_routes_and_skips(estate):
    targets = resolve_targets("cloudfront:all", estate["cf"])
    got = sorted((t.distribution_id, t.origin_id, t.bucket, t.prefix, t.kind, t.region, t.enabled) for t in targets)
    ids = {d: estate[d]["Id"] for d in ("da", "db", "dc", "dd", "dg")}
    assert got == sorted([(ids["da"], "shared", SHARED, "pub/", "rest", "us-west-2", True),
                          (ids["da"], "thumbs", THUMBS, "assets/", "rest", "us-west-2", True),
                          (ids["db"], "site", SHARED, "", "website", "us-west-2", True),
                          (ids["dc"], "off", OFF, "", "rest", None, False),
                          (ids["dd"], "dot", DOTTED, "", "rest", "eu-west-1", True),
                          (ids["dg"], "gone", GONE, "", "rest", None, True)])
    assert [(s.distribution_id, s.origin_id) for s in targets.skipped] == [(ids["da"], "alb")]
    assert "not an S3 bucket" in targets.skipped[0].reason
    by = {(t.distribution_id, t.origin_id): t for t in targets}
    shared, thumbs = by[(ids["da"], "shared")], by[(ids["da"], "thumbs")]
    # /media/* goes to the second origin: its object is served at /media/..., the first origin's is not.
    assert thumbs.serves("assets/media/t1.jpg") and not thumbs.serves("assets/other.jpg")
    assert not shared.serves("pub/media/t1.jpg") and shared.serves("pub/a.jpg")
    assert not shared.serves("pub/api/x.jpg")  # the ALB's path
    assert edge_url(thumbs, "assets/media/t1.jpg") == f"https://{estate['da']['DomainName']}/media/t1.jpg"


@pytest.mark.parametrize("domain,path,expected", [
    ("cfe-media.s3.us-east-1.amazonaws.com", "/", ("cfe-media", "", "us-east-1", "rest")),
    ("cfe-media.s3.us-east-1.amazonaws.com", "pub", ("cfe-media", "pub/", "us-east-1", "rest")),
    ("cfe-media.s3.us-east-1.amazonaws.com", "/pub/", ("cfe-media", "pub/", "us-east-1", "rest")),
    ("cfe-media.s3.us-east-1.amazonaws.com", "/a/b", ("cfe-media", "a/b/", "us-east-1", "rest")),
    ("cfe-media.s3.dualstack.cn-north-1.amazonaws.com.cn", "", ("cfe-media", "", "cn-north-1", "rest")),
    ("cfe-media.s3-website-us-gov-west-1.amazonaws.com", "/site", ("cfe-media", "site/", "us-gov-west-1", "website")),
    ("www.example.com.s3-website.eu-west-1.amazonaws.com", "", ("www.example.com", "", "eu-west-1", "website")),
    ("cfe-ap-abcdef123456-s3alias.s3.us-west-2.amazonaws.com", "", ("cfe-ap-abcdef123456-s3alias", "", "us-west-2",
                                                                     "rest")),  # access point alias: a bucket name
    ("cfe-media.s3-fips.us-east-1.amazonaws.com", "", ("cfe-media", "", "us-east-1", "rest")),
    ("cfe-media.s3-fips.dualstack.us-east-1.amazonaws.com", "", ("cfe-media", "", "us-east-1", "rest")),
])
def test_origin_domain_and_path_variants(domain, path, expected):
    from s3sync.cloudfront import parse_origin_domain

    assert parse_origin_domain(domain, path) == expected


def test_list_distributions_pages_past_100(tmp_path):
    """More than 100 distributions: ListDistributions answers in pages of 100; all are resolved."""
    from s3sync.localserver import MotoServer

    with MotoServer() as moto:
        cf = moto.client("cloudfront")
        for i in range(103):
            cf.create_distribution(DistributionConfig=_dist_config(
                f"many{i}", [_s3_origin("o", f"many-{i:03d}.s3.amazonaws.com")], "o"))
        assert cf.list_distributions()["DistributionList"]["IsTruncated"]
        targets = resolve_targets("cloudfront:all", cf)
    assert len({t.distribution_id for t in targets}) == 103
    assert sorted(t.bucket for t in targets) == [f"many-{i:03d}" for i in range(103)]


def test_wildcard_alias_is_not_the_edge_domain(estate):
    cf = estate["cf"]
    d = cf.create_distribution(DistributionConfig=_dist_config(
        "wild", [_s3_origin("o", "cfe-wild.s3.amazonaws.com")], "o",
        aliases=["*.cfe.example", "www.cfe.example"]))["Distribution"]
    try:
        (t,) = resolve_targets(f"cloudfront:{d['Id']}", cf)
        url = edge_url(t, "a.jpg")
        assert "*" not in url and url in ("https://www.cfe.example/a.jpg", f"https://{d['DomainName']}/a.jpg")
    finally:
        cf.delete_distribution(Id=d["Id"], IfMatch=cf.get_distribution_config(Id=d["Id"])["ETag"])


class _OneDistributionDenied:
    """The estate's moto CloudFront client, except that IAM denies GetDistributionConfig on one
    distribution (a resource-level policy: cloudfront:GetDistributionConfig on some ARNs only)."""

    def __init__(self, cf, denied_id):
        self._cf, self._denied = cf, denied_id
        self.meta = cf.meta

    def __getattr__(self, name):
        return getattr(self._cf, name)

    def get_distribution_config(self, **kw):
        from botocore.exceptions import ClientError

        if kw.get("Id") == self._denied:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized to perform: "
                                         "cloudfront:GetDistributionConfig on resource: " + self._denied},
                               "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetDistributionConfig")
        return self._cf.get_distribution_config(**kw)


def test_all_with_one_distribution_denied_resolves_the_others(estate):
    denied = estate["dd"]["Id"]
    targets = resolve_targets("cloudfront:all", _OneDistributionDenied(estate["cf"], denied))
    assert {t.distribution_id for t in targets} == {estate[d]["Id"] for d in ("da", "db", "dc", "dg")}
    assert any(s.distribution_id == denied and "denied" in s.reason for s in targets.skipped)


# ----------------------------------------------------------------------------- the audit of the estate
def test_audit_estate_counts_edge_urls_and_read_only(estate, estate_run):
    assert estate_run["rc"] == 0, estate_run["err"]
    assert "Traceback" not in estate_run["err"]
    d = json.loads(estate_run["out"])
    ids = {x: estate[x]["Id"] for x in ("da", "db", "dc", "dd")}
    # Every object once: cfe-shared is behind DA (pub/) and DB (whole bucket), the disabled DC still audited.
    objs = sorted((o["bucket"], o["key"]) for o in d["objects"])
    assert objs == sorted((b, k) for b, ks in SIGNED.items() for k in ks)
    assert all(o["status"] == "ok" for o in d["objects"])
    s = d["summary"]
    assert s["objects"] == len(objs) and s["listed"] == len(objs)
    assert [(x["distribution_id"], x["origin_id"]) for x in s["cloudfront_skipped_origins"]] == [(ids["da"], "alb")]
    edge = {(e["distribution_id"], e["key"]): e for e in d["edge_samples"]}
    expected = ({(ids["da"], k) for k in SIGNED[SHARED] if k.startswith("pub/")}
                | {(ids["da"], "assets/media/t1.jpg")}                  # second origin, through /media/*
                | {(ids["db"], k) for k in SIGNED[SHARED]}              # the website origin: whole bucket
                | {(ids["dd"], "d.jpg")})                               # nothing from the disabled DC
    assert set(edge) == expected and len(d["edge_samples"]) == len(expected)
    base = estate["edge"].base
    t1 = edge[(ids["da"], "assets/media/t1.jpg")]
    assert t1["url"] == base + "/da/media/t1.jpg" and t1["provenance_preserved"] and t1["bytes_identical"]
    assert t1["bucket"] == THUMBS and t1["origin_id"] == "thumbs"
    assert edge[(ids["db"], "pub/a.jpg")]["url"] == base + "/db/pub/a.jpg"
    # Keys that need URL-encoding reach the right object (200, identical bytes) through both distributions.
    for key in HOSTILE:
        for dist in (ids["da"], ids["db"]):
            e = edge[(dist, key)]
            assert e["http_status"] == 200 and e["error"] is None and e["bytes_identical"], (key, e["url"])
            assert "#" not in e["url"] and "?" not in e["url"] and " " not in e["url"]
    # The image-resizing path of DA strips the manifest; the same object through DB is untouched.
    resized = edge[(ids["da"], "pub/img/resized.jpg")]
    assert not resized["provenance_preserved"] and resized["edge_c2pa_state"] == "missing"
    assert "image resizing" in resized["reason"] and resized["bytes_identical"] is False
    assert edge[(ids["db"], "pub/img/resized.jpg")]["provenance_preserved"]
    assert s["edge_samples"] == len(expected) and s["edge_provenance_not_preserved"] == 1 and s["edge_errors"] == 0
    # Read-only: objects, policies and the distributions' configurations are untouched.
    assert estate_run["before"] == estate_run["after"]
    before, after = estate_run["configs"]
    assert json.dumps(before, sort_keys=True, default=str) == json.dumps(after, sort_keys=True, default=str)


def test_audit_estate_reports_table_html_jsonl(estate, estate_run, capsys):
    assert estate_run["rc"] == 0
    state = ["--state", str(estate_run["state"])]
    rc, out, err = _cli(["audit", "report", *state, "--format", "table"], capsys)
    assert rc == 0 and "CloudFront edge samples" in out and "Traceback" not in err
    assert "/da/media/t1.jpg" in out
    rc, out, _ = _cli(["audit", "report", *state, "--format", "html"], capsys)
    assert rc == 0 and "CloudFront edge samples" in out and "/da/media/t1.jpg" in out
    assert "uni-%C3%B1-%E6%97%A5%E6%9C%AC.jpg" in out
    rc, out, _ = _cli(["audit", "report", *state, "--format", "jsonl"], capsys)
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert rc == 0 and sum(1 for r in rows if r.get("type") == "edge_sample") == 19


def test_audit_estate_sarif_has_the_stripped_edge_copy(estate, estate_run, capsys):
    rc, out, _ = _cli(["audit", "report", "--state", str(estate_run["state"]), "--format", "sarif"], capsys)
    assert rc == 0
    text = json.dumps(json.loads(out)["runs"][0]["results"])
    assert "img/resized.jpg" in text


def test_audit_estate_csv_keeps_edge_samples(estate, estate_run, tmp_path, capsys):
    out_csv = tmp_path / "audit.csv"
    rc, _, err = _cli(["audit", "report", "--state", str(estate_run["state"]), "--format", "csv",
                       "--out", str(out_csv)], capsys)
    assert rc == 0 and out_csv.exists()
    side = "".join(p.read_text() for p in tmp_path.iterdir() if p != out_csv)
    assert "img/resized.jpg" in side or "edge" in err.lower()


def test_audit_estate_table_reports_skipped_origins(estate, estate_run, capsys):
    rc, out, _ = _cli(["audit", "report", "--state", str(estate_run["state"]), "--format", "table"], capsys)
    assert rc == 0 and "my-alb-123.us-west-2.elb.amazonaws.com" in out
    rc, out, _ = _cli(["audit", "report", "--state", str(estate_run["state"]), "--format", "html"], capsys)
    assert rc == 0 and "my-alb-123.us-west-2.elb.amazonaws.com" in out


def test_audit_all_with_a_deleted_origin_bucket_audits_the_rest(estate, seaweed, monkeypatch, tmp_path, capsys):
    _point_at_servers(monkeypatch, seaweed, estate)
    rc, out, err = _cli(["audit", "cloudfront:all", "--format", "json", "--processes", "0", "--no-watermark",
                         "--no-posture", "--trust-anchors", str(estate["keys"].root),
                         "--state", str(tmp_path / "s.db")], capsys)
    assert "Traceback" not in err
    assert rc == 0, err
    d = json.loads(out)
    assert {o["bucket"] for o in d["objects"]} == {SHARED, THUMBS, OFF, DOTTED}
    assert GONE in json.dumps(d["summary"])


def test_audit_deleted_origin_alone_and_unknown_id_are_one_line(estate, seaweed, monkeypatch, tmp_path, capsys):
    _point_at_servers(monkeypatch, seaweed, estate)
    state = ["--state", str(tmp_path / "s.db"), "--format", "json", "--processes", "0", "--no-posture"]
    rc, _, err = _cli(["audit", f"cloudfront:{estate['dg']['Id']}", *state], capsys)
    assert rc == 2 and "cannot list s3://cfe-gone-bucket" in err and err.count("\n") == 1
    rc, _, err = _cli(["audit", "cloudfront:E0NOSUCHDIST", f"cloudfront:{estate['dd']['Id']}", *state], capsys)
    assert rc == 2 and "no such CloudFront distribution" in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_audit_cloudfront_prefix_any_case(estate, seaweed, monkeypatch, tmp_path, capsys):
    _point_at_servers(monkeypatch, seaweed, estate)
    rc, out, err = _cli(["audit", f"CloudFront:{estate['dd']['Id']}", "--format", "json", "--processes", "0",
                         "--no-watermark", "--no-posture", "--state", str(tmp_path / "s.db")], capsys)
    assert rc == 0, err
    assert [o["key"] for o in json.loads(out)["objects"]] == ["d.jpg"]


# ----------------------------------------------------------------------------- misbehaving edges
class _QuirkyEdge(_EdgeHandler):
    """What real edges answer: 403/404, 302 to another host, gzip, a 200 HTML error page, a trickle."""

    def do_GET(self):  # noqa: N802 - http.server API
        srv = self.server
        path = urllib.parse.urlsplit(self.path).path
        body, ctype, enc = srv.body, "image/jpeg", None
        if path.startswith("/403/"):
            self.send_error(403)
            return
        if path.startswith("/404/"):
            self.send_error(404)
            return
        if path.startswith(("/redirect/", "/redirect-html/")):
            target = "/html/x" if path.startswith("/redirect-html/") else "/ok/" + path.split("/", 2)[2]
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{srv.server_address[1]}{target}")  # another host name
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/html/"):
            body, ctype = b"<!DOCTYPE html><html><body><h1>Sorry, this page is unavailable</h1></body></html>", \
                "text/html; charset=utf-8"
        elif path.startswith("/gzip/"):
            body, enc = gzip.compress(srv.body), "gzip"
        elif path.startswith("/trickle/"):
            # 100 B every 20 ms for 3 s (each gap far below the socket timeout), then the connection closes
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            t_end = time.monotonic() + 3.0
            try:
                while time.monotonic() < t_end:
                    self.wfile.write(b"\0" * 100)
                    self.wfile.flush()
                    time.sleep(0.02)
            except OSError:
                pass
            return
        self._reply(body, ctype, {"Content-Encoding": enc} if enc else None)


@pytest.fixture(scope="module")
def quirky(estate):
    from provenance import sign, verify
    from s3sync.models import ObjectResult

    body = sign(_jpeg(77, 128), signer=estate["signer"], mime="image/jpeg")
    v = verify(body, trust_anchors=estate["keys"].root, mime="image/jpeg")
    assert v.state == "trusted"
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuirkyEdge)
    srv.daemon_threads = True
    srv.body = body
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    def result(key):
        return ObjectResult(bucket="quirk", key=key, version_id=None, etag=hashlib.md5(body).hexdigest(),
                            size=len(body), content_type="image/jpeg", status="ok",
                            c2pa={"state": v.state, "codes": list(v.codes)}, watermark={"detected": False, "payload": None})

    origin = OriginTarget(distribution_id="EQUIRK", domain_name="dq.cloudfront.net", origin_id="o", bucket="quirk",
                          prefix="", kind="rest")
    try:
        yield {"base": f"http://127.0.0.1:{srv.server_address[1]}", "result": result, "origin": origin,
               "root": estate["keys"].root, "body": body}
    finally:
        srv.shutdown()
        srv.server_close()


def _sample(q, keys, n=None, timeout=5.0):
    return {s.key: s for s in sample_edge(q["origin"], [q["result"](k) for k in keys], n or len(keys),
                                          edge_url_map={"*": q["base"]}, trust_anchors=q["root"], timeout=timeout)}


def test_edge_errors_redirects_and_gzip(quirky):
    got = _sample(quirky, ["403/a.jpg", "404/b.jpg", "redirect/c.jpg", "gzip/d.jpg", "ok/e.jpg"], n=50)
    assert set(got) == {"403/a.jpg", "404/b.jpg", "redirect/c.jpg", "gzip/d.jpg", "ok/e.jpg"}  # N > objects
    for k, code in (("403/a.jpg", 403), ("404/b.jpg", 404)):
        s = got[k]
        assert s.http_status == code and f"HTTP {code}" in s.error and not s.provenance_preserved
        assert "could not check the edge copy" in s.reason
    # A redirect to another host is followed like a browser follows it; the final copy is checked.
    r = got["redirect/c.jpg"]
    assert r.http_status == 200 and r.provenance_preserved and r.bytes_identical and r.url.endswith("/redirect/c.jpg")
    # gzip Content-Encoding is undone before the comparison (what a browser shows).
    g = got["gzip/d.jpg"]
    assert g.provenance_preserved and g.bytes_identical and g.edge_c2pa_state == "trusted" and g.error is None


def test_edge_html_error_page_with_200_is_an_error_not_resizing(quirky):
    got = _sample(quirky, ["html/a.jpg", "redirect-html/b.jpg"])
    for s in got.values():
        assert not s.provenance_preserved
        assert s.error and "text/html" in (s.error + s.reason)
        assert "resizing" not in s.reason


def test_trickling_edge_is_cut_at_the_deadline(quirky):
    t0 = time.monotonic()
    got = _sample(quirky, ["trickle/a.jpg"], timeout=0.2)
    elapsed = time.monotonic() - t0
    s = got["trickle/a.jpg"]
    assert s.error and "deadline" in s.error and not s.provenance_preserved
    assert elapsed < 2.0, f"deadline 1.0 s, sample took {elapsed:.1f} s"


def test_disabled_distribution_is_not_sampled(estate, quirky):
    """sample_edges: a disabled distribution serves nothing and is never fetched."""
    targets = [t for t in resolve_targets("cloudfront:all", estate["cf"]) if t.bucket in (OFF,)]
    assert targets and not any(t.enabled for t in targets)
    assert sample_edges(targets, [quirky["result"]("x.jpg").with_(bucket=OFF)], 5,
                        edge_url_map={"*": quirky["base"]}) == []


def test_fail_on_edge_gates_on_a_stripped_edge_copy(estate, estate_run, capsys):
    """--fail-on edge: exit 1 when an edge copy lost its origin's provenance (the estate has one);
    the object statuses alone (all ok) do not fail."""
    base = ["audit", "report", "--state", str(estate_run["state"]), "--format", "json"]
    assert _cli(base + ["--fail-on", "missing,invalid"], capsys)[0] == 0
    assert _cli(base + ["--fail-on", "edge"], capsys)[0] == 1
