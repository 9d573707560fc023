"""`synthguard posture` and `synthguard controls generate` end to end against moto server."""
from __future__ import annotations

import json

import pytest

import cli
from test_posture_moto import ACCOUNT, _tags

pytestmark = pytest.mark.integration

TOML = f"""
[posture]
allowed_principals = ["arn:aws:iam::{ACCOUNT}:role/publisher"]

[[posture.buckets]]
name = "sg-media-kms"
class = "synthetic-media"
owner = "carol"
"""


def build_small(m):
    """A small estate (the full one is covered by test_posture_moto): public tagged bucket, config-listed
    bucket, an unrelated one, a role that reads everything."""
    s3 = m.client("s3")
    for b in ("sg-media-bad", "sg-media-kms", "unrelated"):
        s3.create_bucket(Bucket=b)
    s3.put_bucket_tagging(Bucket="sg-media-bad", Tagging=_tags(synthguard__class="synthetic-media", owner="alice"))
    s3.put_bucket_policy(Bucket="sg-media-bad", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::sg-media-bad/*"}]}))
    iam = m.client("iam")
    iam.create_role(RoleName="analyst", AssumeRolePolicyDocument="{}")
    iam.put_role_policy(RoleName="analyst", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))


@pytest.fixture(scope="module")
def estate(moto_server, tmp_path_factory):
    moto_server.reset()
    build_small(moto_server)
    d = tmp_path_factory.mktemp("posture-cli")
    (d / "synthguard.toml").write_text(TOML)
    return moto_server, d


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_posture_json_and_exit_codes(estate, capsys):
    m, d = estate
    base = ["posture", "--config", str(d / "synthguard.toml"), "--endpoint-url", m.endpoint_url]
    rc, _, err = run(capsys, *base, "--format", "json", "--out", str(d / "f.json"),
                     "--snapshot-out", str(d / "snap.json"))
    assert rc == 1 and "2 buckets in scope, 1 out of scope" in err
    snap = json.loads((d / "snap.json").read_text())
    assert snap["buckets"]["sg-media-bad"]["policy_status"] == {"IsPublic": True}
    assert snap["out_of_scope"] == ["unrelated"] and snap["account_id"] == ACCOUNT
    doc = json.loads((d / "f.json").read_text())
    assert {f["check"] for f in doc["findings"] if f["status"] == "fail"} >= {"s3.public_access", "iam.broad_get_object"}
    assert doc["summary"]["buckets_out_of_scope"] == 1
    rc, out, _ = run(capsys, *base, "--format", "sarif", "--fail-severity", "none", "--checks", "s3.*")
    assert rc == 0 and json.loads(out)["version"] == "2.1.0"
    rc, out, _ = run(capsys, *base, "--checks", "s3.versioning,s3.access_logging", "--fail-severity", "high",
                     "--format", "csv")
    assert rc == 0 and out.startswith("check,resource,status")    # medium failures stay under the bar
    rc, out, _ = run(capsys, *base, "--checks", "s3.public*", "--fail-severity", "critical", "--format", "ocsf")
    assert rc == 1 and {e["class_uid"] for e in json.loads(out)} == {2004}


def test_posture_asff_to_security_hub(estate, capsys):
    m, d = estate
    rc, out, err = run(capsys, "posture", "--endpoint-url", m.endpoint_url, "--config", str(d / "synthguard.toml"),
                       "--format", "asff", "--security-hub", "--checks", "s3.*")
    asff = json.loads(out)
    assert rc == 1 and f"imported {len(asff)} findings into Security Hub, 0 failed" in err


def test_remediation_dry_run_then_apply(estate, capsys):
    m, d = estate
    base = ["posture", "--endpoint-url", m.endpoint_url, "--config", str(d / "synthguard.toml"),
            "--remediate", "tag,block-public-access", "--checks", "s3.block_public_access"]
    rc, out, err = run(capsys, *base)
    calls = [json.loads(line) for line in out.splitlines()]
    assert {(c["service"], c["operation"]) for c in calls} == {("s3", "put_public_access_block"),
                                                               ("s3", "put_bucket_tagging")}
    assert all(set(c) >= {"service", "operation", "params"} for c in calls) and "dry run" in err
    assert m.client("s3").get_bucket_tagging(Bucket="sg-media-bad")["TagSet"]  # nothing changed yet
    log = d / "rem.jsonl"
    rc, out, err = run(capsys, *base, "--apply", "--remediation-log", str(log))
    assert [json.loads(x)["result"] for x in out.splitlines()] == ["ok"] * len(calls)
    assert len(log.read_text().splitlines()) == len(calls)
    rc, out, err = run(capsys, *base)
    assert out == "" and rc == 0                                     # idempotent: nothing left, check passes


def test_usage_errors(estate, capsys, tmp_path):
    m, d = estate
    bad = tmp_path / "bad.toml"
    bad.write_text('[posture]\n[[posture.buckets]]\nname = "x"\nclass = "cats"\n')
    assert run(capsys, "posture", "--config", str(bad), "--endpoint-url", m.endpoint_url)[0] == 2
    assert run(capsys, "posture", "--config", str(tmp_path / "missing.toml"))[0] == 2
    assert run(capsys, "posture", "--apply")[0] == 2
    # an unreachable endpoint: every check unknown with the reason, no traceback; --fail-on-unknown fails
    rc, out, err = run(capsys, "posture", "--endpoint-url", "http://127.0.0.1:9", "--format", "json",
                       "--fail-on-unknown")
    doc = json.loads(out)
    assert rc == 1 and {f["status"] for f in doc["findings"]} == {"unknown"} and len(doc["findings"]) == 18
    assert "could not be listed" in err and "Traceback" not in err
    assert run(capsys, "controls", "generate", "--config", str(bad), "--out", str(tmp_path / "c"))[0] == 2


def test_controls_generate_and_apply_to_moto(estate, capsys, tmp_path):
    m, d = estate
    rc, out, _ = run(capsys, "controls", "generate", "--config", str(d / "synthguard.toml"), "--out", str(tmp_path))
    assert rc == 0 and len(out.split()) == 5
    rules = json.loads((tmp_path / "config-rules.json").read_text())
    cfg = m.client("config")
    for r in rules:
        cfg.put_config_rule(**r)
    names = {r["ConfigRuleName"] for r in cfg.describe_config_rules()["ConfigRules"]}
    assert names >= {r["ConfigRule"]["ConfigRuleName"] for r in rules}
    m.client("cloudwatch").put_insight_rule(**json.loads((tmp_path / "contributor-insights-rule.json").read_text()))
    iam = m.client("iam")
    for f in ("permission-boundary.json", "worker-readonly-policy.json"):
        arn = iam.create_policy(**json.loads((tmp_path / f).read_text()))["Policy"]["Arn"]
        assert arn.startswith(f"arn:aws:iam::{ACCOUNT}:policy/synthguard/")


def test_run_posture_for_audited_buckets(estate):
    """What `synthguard audit` calls: only the audited buckets, with the audit's client factory."""
    from s3sync.aws import ClientFactory
    from s3sync.posture import run_posture

    m, d = estate
    fs = run_posture(buckets=["sg-media-bad", "unrelated"], config=str(d / "synthguard.toml"),
                     factory=ClientFactory(endpoint_url=m.endpoint_url), checks=["s3.*"])
    assert {f.resource for f in fs} == {"arn:aws:s3:::sg-media-bad"}      # 'unrelated' is out of scope
    assert any(f.check == "s3.versioning" and f.failed for f in fs)
    assert any(f.check == "s3.public_access" for f in fs)   # (may pass: the remediation test blocked it)
