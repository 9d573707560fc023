"""Benchmark posture collection and checks.

What it measures (in one run, so the anchors share the machine's load):
- ``collect`` of an estate of B in-scope buckets (+ B/2 out of scope), R IAM roles, instances and
  distributions on a moto server, against the bare boto3 anchor: the same per-bucket S3 GETs made
  sequentially by one plain client (what a naive script costs), and the API call count;
- ``run_checks`` over a synthetic snapshot of many buckets x principals (pure CPU: the IAM checks
  evaluate every principal's policies against every bucket with the glob evaluator).

Usage: ``.venv/bin/python bench/bench_posture.py [--buckets 20,80] [--roles 30]``; writes the
``## Posture`` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._report import machine_line, md_table, write_section  # noqa: E402

TITLE = "Posture"
for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ.setdefault(k, v)


def build(m, buckets: int, roles: int) -> None:
    s3, iam, ec2, cf = m.client("s3"), m.client("iam"), m.client("ec2"), m.client("cloudfront")
    for i in range(buckets):
        name = f"bench-media-{i:04d}"
        s3.create_bucket(Bucket=name)
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [
            {"Key": "synthguard:class", "Value": "training-data" if i % 3 == 0 else "synthetic-media"},
            {"Key": "owner", "Value": f"team-{i % 5}"}]})
        if i % 4 == 0:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if i % 10 == 0:
            cf.create_distribution(DistributionConfig={
                "CallerReference": name, "Comment": "", "Enabled": True,
                "Origins": {"Quantity": 1, "Items": [{"Id": "o", "DomainName": f"{name}.s3.amazonaws.com",
                                                      "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
                "DefaultCacheBehavior": {"TargetOriginId": "o", "ViewerProtocolPolicy": "allow-all"}})
    for i in range(buckets // 2):
        s3.create_bucket(Bucket=f"bench-other-{i:04d}")
    for i in range(roles):
        iam.create_role(RoleName=f"bench-role-{i}", AssumeRolePolicyDocument="{}")
        action = ["s3:GetObject", "s3:Get*", "s3:*", "ec2:*", "*"][i % 5]
        iam.put_role_policy(RoleName=f"bench-role-{i}", PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action,
                                                     "Resource": f"arn:aws:s3:::bench-media-{i:04d}*"}]}))
    for i in range(3):
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "synthguard:class", "Value": "synthetic-media"}]}])


def bare_boto3(m, names: list[str]) -> tuple[float, int]:
    """The anchor: the same per-bucket GETs, sequential, one plain client, errors swallowed."""
    s3 = m.client("s3")
    ops = [s3.get_bucket_tagging, s3.get_bucket_policy, s3.get_bucket_policy_status, s3.get_bucket_acl,
           s3.get_public_access_block, s3.get_bucket_encryption, s3.get_object_lock_configuration,
           s3.get_bucket_versioning, s3.get_bucket_logging]
    t = time.perf_counter()
    n = 0
    for b in names:
        for op in ops:
            n += 1
            try:
                op(Bucket=b)
            except Exception:
                pass
    return time.perf_counter() - t, n


def bench_collect(sizes: list[int], roles: int) -> list[list]:
    from s3sync.localserver import MotoServer
    from s3sync.posture import Clients, collect, run_checks

    rows = []
    with MotoServer() as m:
        for b in sizes:
            m.reset()
            build(m, b, roles)
            clients = Clients(endpoint_url=m.endpoint_url)
            calls = [0]
            for svc in ("s3", "s3control", "sts", "iam", "ec2", "kms", "cloudtrail", "cloudfront", "guardduty",
                        "macie2", "config", "cloudwatch"):
                clients(svc).meta.events.register("before-call", lambda **_: calls.__setitem__(0, calls[0] + 1))
            collect(clients)  # warm: moto initialises its backends on first use
            calls[0] = 0
            t = time.perf_counter()
            snap = collect(clients)
            t_collect = time.perf_counter() - t
            n_calls = calls[0]
            t = time.perf_counter()
            fs = run_checks(snap)
            t_checks = time.perf_counter() - t
            names = [f"bench-media-{i:04d}" for i in range(b)] + [f"bench-other-{i:04d}" for i in range(b // 2)]
            t_bare, n_bare = bare_boto3(m, names)
            assert len(snap.buckets) == b, (len(snap.buckets), b)
            rows.append([b, b // 2, roles, n_calls, f"{t_collect:.2f}", f"{n_calls / t_collect:.0f}",
                         f"{t_bare:.2f} ({n_bare} calls, {n_bare / t_bare:.0f}/s)", f"{t_bare / t_collect:.1f}x",
                         f"{t_checks * 1000:.0f}", len(fs), sum(f.failed for f in fs)])
            print(rows[-1], flush=True)
    return rows


def bench_checks(buckets: int, principals: int) -> list[list]:
    from s3sync.posture import run_checks
    from s3sync.posture.collect import BucketSnapshot, Snapshot

    snap = Snapshot(account_id="123456789012")
    for i in range(buckets):
        n = f"media-{i:05d}"
        snap.buckets[n] = BucketSnapshot(name=n, cls="synthetic-media", owner="o", acl={"Grants": []},
                                         versioning={"Status": "Enabled"}, logging=None)
    acts = ["s3:GetObject", "s3:Get*", "s3:*", "ec2:*", "*", "s3:List*"]
    snap.principals = [{"arn": f"arn:aws:iam::123456789012:role/r{i}", "name": f"r{i}", "type": "role", "path": "/",
                        "boundary": None, "boundary_doc": None,
                        "policies": [["inline:p", {"Statement": [
                            {"Effect": "Allow", "Action": acts[i % 6], "Resource": f"arn:aws:s3:::media-{i % 97:05d}*"},
                            {"Effect": "Allow", "Action": ["ec2:Describe*", "logs:*"], "Resource": "*"},
                            {"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"}]}]]}
                       for i in range(principals)]
    rows = []
    from s3sync.posture import policy

    for ids in (["s3.*"], ["iam.broad_get_object"], None):
        policy.glob_match.cache_clear()  # each row starts cold: the glob caches are process-wide
        policy.globs_intersect.cache_clear()
        t = time.perf_counter()
        fs = run_checks(snap, checks=ids)
        dt = time.perf_counter() - t
        rows.append([", ".join(ids) if ids else "all 18", buckets, principals, len(fs), f"{dt:.2f}",
                     f"{len(fs) / dt:.0f}"])
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buckets", default="20,80", help="comma list of in-scope bucket counts")
    ap.add_argument("--roles", type=int, default=30)
    ap.add_argument("--check-buckets", type=int, default=400)
    ap.add_argument("--check-principals", type=int, default=200)
    args = ap.parse_args()
    sizes = [int(x) for x in args.buckets.split(",")]
    col = bench_collect(sizes, args.roles)
    chk = bench_checks(args.check_buckets, args.check_principals)
    md = "\n".join([
        machine_line(), "",
        "Collection against moto server (real HTTP on 127.0.0.1; moto answers ~150-220 requests/s from one "
        "Python process, so it, not synthguard, bounds these times). Anchor: the same nine per-bucket S3 GETs made "
        "sequentially by one plain boto3 client (it covers less than `collect`, which also lists, reads the "
        "account-level services and IAM). Second collection of each estate (moto backends warm).", "",
        md_table(["in-scope buckets", "out of scope", "roles", "API calls", "collect s", "calls/s",
                  "anchor: bare boto3 per-bucket GETs s", "anchor / collect", "checks ms", "findings", "failed"], col),
        "",
        "Checks alone over a synthetic snapshot (pure CPU, one thread): the IAM checks evaluate every principal's "
        "statements against every bucket with the glob-intersection evaluator.", "",
        md_table(["checks", "buckets", "principals", "findings", "seconds", "findings/s"], chk),
    ])
    write_section(TITLE, md)
    print(f"wrote ## {TITLE} to BENCHMARKS.md")


if __name__ == "__main__":
    main()
