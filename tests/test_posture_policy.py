"""The conservative policy evaluator: wildcards, NotAction/NotResource, Deny coverage, conditions."""
from __future__ import annotations

import pytest

from s3sync.posture.policy import (PolicyError, allows, condition_restricts, evaluate, glob_covers, glob_match,
                                   globs_intersect, parse_policy, public_grants, validate_identity_policy)

T = "arn:aws:s3:::media/*"


def pol(*stmts):
    return [("p", parse_policy({"Version": "2012-10-17", "Statement": list(stmts)}))]


@pytest.mark.parametrize("action", ["s3:GetObject", "s3:*", "s3:Get*", "*", "S3:getobject", "s3:Get?bject"])
def test_wildcard_actions_allow_get_object(action):
    ok, m, _ = allows(pol({"Effect": "Allow", "Action": action, "Resource": "*"}), "s3:GetObject", T)
    assert ok and m[0].source == "p"


@pytest.mark.parametrize("action", ["s3:PutObject", "s3:List*", "s3:GetObjectTagging", "ec2:*"])
def test_other_actions_do_not(action):
    assert not allows(pol({"Effect": "Allow", "Action": action, "Resource": "*"}), "s3:GetObject", T)[0]


def test_resource_intersection_and_prefixes():
    p = pol({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::media/public/*"})
    assert allows(p, "s3:GetObject", T)[0]                               # part of the bucket
    assert not allows(p, "s3:GetObject", "arn:aws:s3:::media/private/*")[0]
    assert not allows(p, "s3:GetObject", "arn:aws:s3:::other/*")[0]
    assert not allows(pol({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::media"}),
                      "s3:GetObject", T)[0]                              # bucket ARN is not its objects


def test_not_action_and_not_resource():
    assert allows(pol({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}), "s3:GetObject", T)[0]
    assert not allows(pol({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}), "s3:GetObject", T)[0]
    assert not allows(pol({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::media/*"}),
                      "s3:GetObject", T)[0]
    assert allows(pol({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret/*"}),
                  "s3:GetObject", T)[0]


def test_deny_must_cover_and_be_unconditional():
    allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    assert not allows(pol(allow, {"Effect": "Deny", "Action": "s3:Get*", "Resource": "arn:aws:s3:::media/*"}),
                      "s3:GetObject", T)[0]
    # a partial deny (one prefix) leaves the rest readable
    assert allows(pol(allow, {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::media/a/*"}),
                  "s3:GetObject", T)[0]
    # a conditional deny we cannot decide is not relied upon
    cond = {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    assert allows(pol(allow, cond), "s3:GetObject", T)[0]


def test_principal_arn_conditions_are_decided_from_context():
    deny = {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::media/*",
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": ["arn:aws:iam::1:role/pub*"]}}}
    p = pol({"Effect": "Allow", "Action": "*", "Resource": "*"}, deny)
    assert not allows(p, "s3:GetObject", T, {"aws:PrincipalArn": "arn:aws:iam::1:role/analyst"})[0]
    assert allows(p, "s3:GetObject", T, {"aws:PrincipalArn": "arn:aws:iam::1:role/publisher"})[0]
    assert evaluate(p, "s3:GetObject", "arn:aws:s3:::media/x", {"aws:PrincipalArn": "arn:aws:iam::1:role/x"}) == "Deny"
    assert evaluate(p, "s3:PutObject", "arn:aws:s3:::media/x") == "Allow"
    assert evaluate(pol({"Effect": "Allow", "Action": "s3:List*", "Resource": "*"}), "s3:GetObject", "x") == "ImplicitDeny"


def test_globs():
    assert globs_intersect("arn:aws:s3:::*", "arn:aws:s3:::media/*")
    assert globs_intersect("a*c", "ab*") and not globs_intersect("a*c", "b*")
    assert globs_intersect("a?c", "a*") and not globs_intersect("a?c", "abcd")
    assert glob_match("arn:aws:iam::*:role/pub*", "arn:aws:iam::1:role/publisher")
    assert glob_covers("arn:aws:s3:::media/*", "arn:aws:s3:::media/a/*")
    assert not glob_covers("arn:aws:s3:::media/a/*", "arn:aws:s3:::media/*")


def test_public_grants_and_restricting_conditions():
    st = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::media/*"}
    assert public_grants(parse_policy({"Statement": [st]}), "media")[0]["actions"] == ["s3:GetObject"]
    vpce = dict(st, Condition={"StringEquals": {"aws:SourceVpce": "vpce-1"}})
    assert public_grants(parse_policy({"Statement": [vpce]}), "media") == []
    anyip = dict(st, Condition={"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}})
    assert public_grants(parse_policy({"Statement": [anyip]}), "media")
    assert condition_restricts({"StringNotEquals": {"aws:PrincipalOrgID": "o-1"}}) == []
    named = dict(st, Principal={"AWS": "arn:aws:iam::1:root"})
    assert public_grants(parse_policy({"Statement": [named]}), "media") == []
    notp = {"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::1:root"}, "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::media"}
    assert public_grants(parse_policy({"Statement": [notp]}), "media")[0]["actions"] == ["s3:ListBucket"]


@pytest.mark.parametrize("doc", ["not json", {"Statement": [{"Effect": "Maybe", "Action": "*"}]},
                                 {"Statement": [{"Effect": "Allow"}]}, {"Nope": 1},
                                 {"Statement": [{"Effect": "Allow", "Action": "*", "Bogus": 1}]}])
def test_bad_policies_raise(doc):
    with pytest.raises(PolicyError):
        parse_policy(doc)


def test_identity_policy_rules():
    ok = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    assert validate_identity_policy(ok)
    with pytest.raises(PolicyError):
        validate_identity_policy(dict(ok, Version="2008-10-17"))
    with pytest.raises(PolicyError):
        validate_identity_policy({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}]})
    with pytest.raises(PolicyError):
        validate_identity_policy({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "GetObject",
                                                                          "Resource": "*"}]})
