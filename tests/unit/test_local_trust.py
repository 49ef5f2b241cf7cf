"""The trust policies `LocalTrustRefresh` sets: read from the rendered templates and parameters,
and set only where the live role differs (the deploy path of the local instance)."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from edl import naming
from edl.cloudformation.local_trust import LocalTrustRefresh, RoleTrust, role_trusts
from edl.cloudformation.render import parse_template, render_template, template_context
from edl.config import load_config

CONFIG = load_config()
LOCAL = CONFIG.instance("local")
PRINCIPALS = (*naming.broker_principals("local", LOCAL.account_id, local=True),
              LOCAL.platform_admin_arn)


def template(name: str) -> dict:
    return parse_template(render_template(name, template_context(CONFIG, LOCAL)).body)


def test_the_roles_of_a_dataset_stack_trust_the_list_their_parameter_holds():
    trusts = role_trusts(template("folder_acls.yaml"), {
        "TrustedPrincipalArns": ",".join(PRINCIPALS), "ReadRoleName": "edl-local-t-read",
        "WriteRoleName": "edl-local-t-write", "Dataset": "t"})
    assert [t.role_name for t in trusts] == ["edl-local-t-read", "edl-local-t-write"]
    for trust in trusts:
        (statement,) = trust.document["Statement"]
        assert statement["Principal"] == {"AWS": list(PRINCIPALS)}
        assert statement["Action"] == ["sts:AssumeRole", "sts:SetSourceIdentity",
                                       "sts:TagSession"]


def test_a_service_role_keeps_its_service_principal():
    (trust,) = role_trusts(template("sweeper.yaml"), {
        "RoleName": "edl-local-sweeper", "TrustedPrincipalArns": LOCAL.platform_admin_arn})
    assert trust.document["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com", "AWS": [LOCAL.platform_admin_arn]}


def test_a_trust_policy_naming_a_missing_parameter_is_a_bug_said_plainly():
    with pytest.raises(ValueError, match="TrustedPrincipalArns"):
        role_trusts(template("default_acls.yaml"), {"RoleName": "r"}, "edl-local-default-acls")


class FakeIam:
    def __init__(self, roles: dict[str, dict]) -> None:
        self.roles = roles
        self.updates: list[tuple[str, dict]] = []

    def get_role(self, RoleName):
        if RoleName not in self.roles:
            raise ClientError({"Error": {"Code": "NoSuchEntity"}}, "GetRole")
        return {"Role": {"AssumeRolePolicyDocument": self.roles[RoleName]}}

    def update_assume_role_policy(self, RoleName, PolicyDocument):
        self.updates.append((RoleName, json.loads(PolicyDocument)))
        self.roles[RoleName] = json.loads(PolicyDocument)


def test_only_a_role_whose_trust_differs_is_set():
    wanted = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "x"}]}
    iam = FakeIam({"same": dict(wanted), "older": {"Version": "2012-10-17", "Statement": []}})
    refresh = LocalTrustRefresh(manager=None, iam=iam)  # type: ignore[arg-type]
    assert refresh._set_if_different(RoleTrust("same", wanted), "s") is False
    assert refresh._set_if_different(RoleTrust("older", wanted), "s") is True
    assert refresh._set_if_different(RoleTrust("missing", wanted), "s") is False
    assert iam.updates == [("older", wanted)]
