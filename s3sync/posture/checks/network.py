"""CloudFront, EC2 egress and KMS rotation checks: the paths by which in-scope data leaves."""
from __future__ import annotations

import re
from typing import Any, Iterable

from ..clients import Unavailable
from ..models import CheckMeta, Finding, Status
from ..policy import (PolicyError, action_matches, condition_restricts, parse_policy, principal_services,
                      resource_reaches)
from ._base import check, make, owners, unknown
from .iam import READ_ACTIONS
from .s3 import public_state

OAC = CheckMeta(
    "cloudfront.origin_access_control", "CloudFront serves a synthetic-media bucket without Origin Access Control",
    "high", "cloudfront", "AwsCloudFrontDistribution",
    "Without OAC the bucket must be public (or uses a legacy OAI), so the CDN's access controls can be bypassed; "
    "a grant to cloudfront.amazonaws.com without aws:SourceArn/aws:SourceAccount lets any account's distribution "
    "read the bucket (confused deputy). Unknown when the bucket's public state cannot be decided.",
    "Create an Origin Access Control (cloudfront:CreateOriginAccessControl), attach it to the S3 origin, grant "
    "cloudfront.amazonaws.com s3:GetObject with an aws:SourceArn condition, then make the bucket private.")
HTTPS = CheckMeta(
    "cloudfront.https_only", "CloudFront allows HTTP to viewers", "medium", "cloudfront", "AwsCloudFrontDistribution",
    "Media served over plain HTTP can be captured or altered in transit (and C2PA manifests stripped).",
    "Set ViewerProtocolPolicy to redirect-to-https or https-only on every cache behaviour.")
EGRESS = CheckMeta(
    "ec2.unrestricted_egress", "Instance processing synthetic media can send anywhere", "high", "ec2",
    "AwsEc2SecurityGroup",
    "A compromised or misused worker can exfiltrate media and training data to any host on the internet; "
    "the check covers every attached group, not only default ones.",
    "Replace 0.0.0.0/0 and ::/0 egress rules with the endpoints the worker needs (VPC endpoints, prefix lists, "
    "specific CIDRs and ports) via ec2:RevokeSecurityGroupEgress / ec2:AuthorizeSecurityGroupEgress.")
ROTATION = CheckMeta(
    "kms.rotation", "KMS key used by a synthetic-media bucket does not rotate", "medium", "kms", "AwsKmsKey",
    "A long-lived key widens the blast radius of a key compromise.",
    "Enable automatic rotation (kms:EnableKeyRotation) on customer managed keys used for bucket encryption.")

_S3_DOMAIN = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.\-]*?)\.s3(?P<site>[.-]website)?[.\-]?"
                        r"(?:[a-z0-9-]+\.)?amazonaws\.com(?:\.cn)?$")


def origin_bucket(domain: str) -> tuple[str | None, bool]:
    """(bucket, is_website_endpoint) for an S3 origin domain, else (None, False)."""
    m = _S3_DOMAIN.match((domain or "").lower())
    if not m:
        return None, False
    return m.group("bucket"), bool(m.group("site"))


def _scoped_origins(dist: dict, snap: Any) -> list[tuple[dict, Any, bool]]:
    out = []
    for o in (dist.get("Origins") or {}).get("Items", []) or []:
        name, website = origin_bucket(o.get("DomainName", ""))
        if name and name in snap.buckets:
            out.append((o, snap.buckets[name], website))
    return out


CLOUDFRONT_SERVICE = "cloudfront.amazonaws.com"
PINNING_KEYS = {"aws:sourcearn", "aws:sourceaccount"}


def unpinned_cloudfront_grants(b: Any) -> list[str]:
    """Sids of bucket-policy reads granted to CloudFront's service principal without aws:SourceArn/SourceAccount.

    OAC requests come from the CloudFront service, whoever owns the distribution: only a fixed SourceArn
    (or SourceAccount) keeps another account's distribution from reading the bucket (confused deputy).
    """
    if not isinstance(b.policy, dict):
        return []
    try:
        stmts = parse_policy(b.policy)
    except PolicyError:
        return []  # s3.public_access reports it, and the public state is then unknown
    return [str(st.get("Sid") or f"Statement[{i}]") for i, st in enumerate(stmts)
            if st["Effect"] == "Allow" and CLOUDFRONT_SERVICE in principal_services(st)
            and any(action_matches(st, a) for a in READ_ACTIONS)
            and any(resource_reaches(st, t) for t in b.targets())
            and not PINNING_KEYS & {k.lower() for k in condition_restricts(st.get("Condition"))}]


def _origin_verdict(o: dict, website: bool, pub: Status, unpinned: list[str]) -> dict[str, str]:
    """One origin's status and why: any fail first, then unknown, then pass."""
    oac = o.get("OriginAccessControlId")
    if pub is Status.FAIL:
        return {"status": "fail", "why": "the bucket behind the distribution is public"}
    if website or "CustomOriginConfig" in o:
        return {"status": "fail", "why": "S3 website endpoint: the bucket must be public to serve it"}
    if unpinned:
        return {"status": "fail", "why": f"bucket policy ({', '.join(unpinned)}) grants {CLOUDFRONT_SERVICE} reads "
                                         "without aws:SourceArn: any account's distribution can read it"}
    if oac and pub is Status.UNKNOWN:
        return {"status": "unknown", "why": "whether the bucket is public could not be decided (s3.public_access)"}
    if oac:
        return {"status": "pass"}
    if (o.get("S3OriginConfig") or {}).get("OriginAccessIdentity"):
        return {"status": "fail", "why": "legacy Origin Access Identity instead of OAC"}
    if "OriginAccessControlId" not in o and "S3OriginConfig" not in o:
        return {"status": "unknown", "why": "the endpoint returned the origin without OriginAccessControlId "
                                            "or S3OriginConfig (known moto gap); cannot decide"}
    return {"status": "fail", "why": "no Origin Access Control"}


def _dist_resource(snap: Any) -> str:
    return f"arn:aws:cloudfront::{snap.account_id}:distribution/*"


@check(OAC)
def cloudfront_oac(snap: Any) -> Iterable[Finding]:
    if not snap.buckets:
        return
    if isinstance(snap.distributions, Unavailable):
        yield unknown(OAC, snap, _dist_resource(snap), snap.distributions)
        return
    for d in snap.distributions:
        origins = _scoped_origins(d, snap)
        if not origins:
            continue
        per: list[dict] = []
        for o, b, website in origins:
            pub, _ = public_state(b, snap)
            row = {"origin": o.get("Id"), "domain": o.get("DomainName"), "bucket": b.name,
                   "origin_access_control_id": o.get("OriginAccessControlId"),
                   "origin_access_identity": (o.get("S3OriginConfig") or {}).get("OriginAccessIdentity"),
                   "bucket_public": pub.value}
            row.update(_origin_verdict(o, website, pub, unpinned_cloudfront_grants(b)))
            per.append(row)
        worst = "fail" if any(r["status"] == "fail" for r in per) else \
            "unknown" if any(r["status"] == "unknown" for r in per) else "pass"
        ev: dict[str, Any] = {"distribution": d.get("Id"), "origins": per}
        if worst == "fail":
            ev["why"] = "; ".join(f"{r['bucket']}: {r['why']}" for r in per if r["status"] == "fail")
        if worst == "unknown":
            ev["reason"] = "; ".join(r["why"] for r in per if r["status"] == "unknown")
        yield make(OAC, snap, d.get("ARN") or f"arn:aws:cloudfront::{snap.account_id}:distribution/{d.get('Id')}",
                   worst, ev, owner=owners(b.owner for _, b, _ in origins))


@check(HTTPS)
def cloudfront_https(snap: Any) -> Iterable[Finding]:
    if not snap.buckets:
        return
    if isinstance(snap.distributions, Unavailable):
        yield unknown(HTTPS, snap, _dist_resource(snap), snap.distributions)
        return
    for d in snap.distributions:
        origins = _scoped_origins(d, snap)
        if not origins:
            continue
        behaviours = [dict(d.get("DefaultCacheBehavior") or {}, PathPattern="*")]
        behaviours += list((d.get("CacheBehaviors") or {}).get("Items", []) or [])
        ids = {o.get("Id") for o, _, _ in origins}
        rows = [{"path": bh.get("PathPattern"), "origin": bh.get("TargetOriginId"),
                 "viewer_protocol_policy": bh.get("ViewerProtocolPolicy")}
                for bh in behaviours if bh.get("TargetOriginId") in ids]
        bad = [r for r in rows if r["viewer_protocol_policy"] not in ("https-only", "redirect-to-https")]
        yield make(HTTPS, snap, d.get("ARN") or f"arn:aws:cloudfront::{snap.account_id}:distribution/{d.get('Id')}",
                   Status.FAIL if bad else Status.PASS,
                   {"distribution": d.get("Id"), "behaviours": rows, "allowing_http": bad,
                    **({"why": "viewer HTTP allowed on " + ", ".join(str(r["path"]) for r in bad)} if bad else {})},
                   owner=owners(b.owner for _, b, _ in origins))


OPEN_CIDRS = ("0.0.0.0/0", "::/0")


def open_egress(sg: dict) -> list[dict]:
    """Egress rules of a security group that reach the whole internet (any IPv4 or IPv6)."""
    out = []
    for rule in sg.get("IpPermissionsEgress", []) or []:
        cidrs = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + \
                [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
        opened = [c for c in cidrs if c in OPEN_CIDRS]
        if opened:
            all_ports = rule.get("IpProtocol") in ("-1", "all") or \
                (rule.get("FromPort") in (0, -1, None) and rule.get("ToPort") in (65535, -1, None))
            out.append({"protocol": rule.get("IpProtocol"), "from_port": rule.get("FromPort"),
                        "to_port": rule.get("ToPort"), "cidrs": opened, "all_ports": all_ports})
    return out


@check(EGRESS)
def ec2_unrestricted_egress(snap: Any) -> Iterable[Finding]:
    if isinstance(snap.instances, Unavailable):
        yield unknown(EGRESS, snap, f"arn:aws:ec2:{snap.region}:{snap.account_id}:security-group/*", snap.instances)
        return
    by_sg: dict[str, list[dict]] = {}
    for inst in snap.instances:
        for g in inst["security_groups"]:
            by_sg.setdefault(g, []).append(inst)
    for gid, insts in sorted(by_sg.items()):
        arn = f"arn:aws:ec2:{snap.region}:{snap.account_id}:security-group/{gid}"
        own = owners(i.get("owner") for i in insts)
        ev: dict[str, Any] = {"instances": [i["id"] for i in insts]}
        if isinstance(snap.security_groups, Unavailable):
            yield unknown(EGRESS, snap, arn, snap.security_groups, owner=own, **ev)
            continue
        sg = snap.security_groups.get(gid)
        if sg is None:
            yield make(EGRESS, snap, arn, Status.UNKNOWN, dict(ev, reason="security group not returned by "
                                                                          "ec2:DescribeSecurityGroups"), owner=own)
            continue
        arn = sg.get("SecurityGroupArn") or arn
        rules = open_egress(sg)
        ev.update(group_name=sg.get("GroupName"), vpc=sg.get("VpcId"), open_egress=rules)
        if rules:
            sev = "high" if any(r["all_ports"] for r in rules) else "medium"
            ev["why"] = "egress to " + ", ".join(
                f"{'/'.join(r['cidrs'])} {'all ports' if r['all_ports'] else str(r['from_port']) + '-' + str(r['to_port'])}"
                for r in rules) + f" from {len(insts)} instance(s)"
            yield make(EGRESS, snap, arn, Status.FAIL, ev, owner=own, severity=sev)
        else:
            yield make(EGRESS, snap, arn, Status.PASS, ev, owner=own)


@check(ROTATION)
def kms_rotation(snap: Any) -> Iterable[Finding]:
    users: dict[str, list] = {}
    for b in snap.buckets.values():
        if isinstance(b.encryption, dict):
            for r in b.encryption.get("Rules", []):
                d = r.get("ApplyServerSideEncryptionByDefault") or {}
                if d.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
                    users.setdefault(d.get("KMSMasterKeyID") or "alias/aws/s3", []).append(b)
    for ref, entry in sorted(snap.kms_keys.items()):
        bs = users.get(ref, [])
        own = owners(b.owner for b in bs)
        md = entry.get("metadata") or {}
        arn = md.get("Arn") or (ref if ref.startswith("arn:") else
                                f"arn:aws:kms:{snap.region}:{snap.account_id}:{'alias/' + ref.split('alias/')[-1] if 'alias/' in ref else 'key/' + ref}")
        ev: dict[str, Any] = {"key": ref, "buckets": [b.name for b in bs], "key_manager": md.get("KeyManager"),
                              "key_state": md.get("KeyState")}
        rot = entry.get("rotation")
        if md.get("KeyManager") == "AWS":
            yield make(ROTATION, snap, arn, Status.PASS, dict(ev, note="AWS managed key: AWS rotates it yearly"),
                       owner=own)
        elif isinstance(rot, Unavailable):
            yield unknown(ROTATION, snap, arn, rot, owner=own, **ev)
        elif isinstance(rot, dict):
            ok = bool(rot.get("KeyRotationEnabled"))
            yield make(ROTATION, snap, arn, Status.PASS if ok else Status.FAIL,
                       dict(ev, rotation=rot, **({} if ok else {"why": "automatic rotation disabled"})), owner=own)
        else:
            yield make(ROTATION, snap, arn, Status.UNKNOWN, dict(ev, reason="rotation status not collected"), owner=own)
