"""The local cloud's AWS endpoint cannot be taken over: the control API, Host, CORS and STS.

The runtime's moto service (`MotoService`, with everything EDL puts in front of moto) runs in this
process on a free port, with IAM enforced. moto's state and its enforcement switch are
process-wide, so both are reset at teardown.
"""

from __future__ import annotations

import json
import stat
from urllib.parse import urlencode

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from edl.local.control_api import SECRET_HEADER, call_control_api
from edl.local.runtime import MotoService
from tests.functional.deploy_helpers import free_port

REGION = "us-east-1"
ACCOUNT = "123456789012"



@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """The AWS endpoint with alice, who may assume roles (as the local users may), and two roles
    that trust her: `reader` (MaxSessionDuration 1 h) and `long` (12 h); IAM enforced."""
    secret_file = tmp_path_factory.mktemp("edl-home") / "control-secret"
    service = MotoService(free_port(), secret_file=secret_file)
    service.start()
    url = service.url
    try:
        # moto's backends are process-wide: start from none of another module's users and roles
        call_control_api(url, "reset", service.secret, body=b"")
        admin = dict(endpoint_url=url, region_name=REGION, aws_access_key_id="x",
                     aws_secret_access_key="x")
        iam = boto3.client("iam", **admin)
        alice = iam.create_user(UserName="alice")["User"]
        key = iam.create_access_key(UserName="alice")["AccessKey"]
        policy = iam.create_policy(PolicyName="assume", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:GetCallerIdentity"],
                 "Resource": "*"}]}))
        iam.attach_user_policy(UserName="alice", PolicyArn=policy["Policy"]["Arn"])
        for name, hours in (("reader", 1), ("long", 12)):
            iam.create_role(RoleName=name, MaxSessionDuration=hours * 3600,
                            AssumeRolePolicyDocument=trust(alice["Arn"]))
        call_control_api(url, "reset-auth", service.secret, body=b"0", content_type="text/plain")
        yield service, Credentials(key["AccessKeyId"], key["SecretAccessKey"]), alice["Arn"]
    finally:
        call_control_api(url, "reset-auth", service.secret, body=b"inf", content_type="text/plain")
        call_control_api(url, "reset", service.secret, body=b"")
        service.stop()


def trust(principal_arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": [principal_arn]}}]})


def sts(url: str, credentials: Credentials | None):
    if credentials is None:
        return boto3.client("sts", endpoint_url=url, region_name=REGION,
                            config=Config(signature_version=UNSIGNED))
    return boto3.client("sts", endpoint_url=url, region_name=REGION,
                        aws_access_key_id=credentials.access_key,
                        aws_secret_access_key=credentials.secret_key)


def enforcement_is_on(url: str) -> bool:
    """Whether moto refuses a key it does not know, as it does only under enforcement."""
    client = boto3.client("iam", endpoint_url=url, region_name=REGION,
                          aws_access_key_id="AKIAUNKNOWN", aws_secret_access_key="x")
    try:
        client.list_users()
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return False


# -- moto's control API needs the runtime's secret ------------------------------------------------

@pytest.mark.parametrize("method, path, body", [
    ("GET", "data.json", None),
    ("POST", "reset-auth", b"inf"),
    ("POST", "reset", b""),
    ("POST", "config", b'{"lambda": {"use_docker": true}}'),
    ("POST", "recorder/start-recording", b""),
])
def test_the_control_api_refuses_a_caller_without_the_secret(front, method, path, body):
    service, _alice, _arn = front
    for headers in ({}, {SECRET_HEADER: "not-the-secret"}, {SECRET_HEADER: ""}):
        response = requests.request(method, f"{service.url}/moto-api/{path}", data=body,
                                    headers={"Content-Type": "text/plain", **headers}, timeout=10)
        assert response.status_code == 403, (path, headers)
        assert b"AccessDenied" in response.content and b"AKIA" not in response.content
    assert enforcement_is_on(service.url)


def test_the_control_api_answers_the_runtimes_own_calls(front):
    service, _alice, _arn = front
    # moto's own config, which the runtime sets at start (lambda never runs in docker here);
    # `data.json` would do too, but moto cannot serialise some backends once a kept lake's
    # reducers are installed in the same process (a test of the state package does that)
    config = json.loads(call_control_api(service.url, "config", service.secret))
    assert config["lambda"]["use_docker"] is False


def test_the_secret_is_private_and_new_at_every_start(front, tmp_path):
    service, _alice, _arn = front
    assert service.secret_file.read_text().strip() == service.secret
    assert stat.S_IMODE(service.secret_file.stat().st_mode) == 0o600
    other = MotoService(free_port(), secret_file=tmp_path / "control-secret")
    other.start()
    try:
        assert other.secret and other.secret != service.secret
        response = requests.get(f"{other.url}/moto-api/config", timeout=10,
                                headers={SECRET_HEADER: service.secret})
        assert response.status_code == 403
    finally:
        other.stop()


# -- only requests addressed to the loopback, and no CORS ---------------------------------------

@pytest.mark.parametrize("host", ["attacker.example:{port}", "127.0.0.1:1", "127.0.0.1",
                                  "127.0.0.1.nip.io:{port}", "localhost.attacker.example:{port}"])
def test_a_request_for_another_host_is_refused(front, host):
    """DNS rebinding: a page whose own name resolves to 127.0.0.1 sends its own name as Host."""
    service, _alice, _arn = front
    response = requests.get(f"{service.url}/moto-api/config", timeout=10, headers={
        "Host": host.format(port=service.port), SECRET_HEADER: service.secret})
    assert response.status_code == 403
    assert b"ForbiddenHost" in response.content and b"AKIA" not in response.content


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}"])
def test_the_loopback_names_are_served(front, host):
    service, _alice, _arn = front
    response = requests.get(f"{service.url}/moto-api/config", timeout=10, headers={
        "Host": host.format(port=service.port), SECRET_HEADER: service.secret})
    assert response.ok, response.status_code  # moto answers its config with 201


def test_no_origin_is_granted_cors(front):
    """moto's flask-cors allows every origin; without CORS no web page reads an answer."""
    service, alice, _arn = front
    origin = {"Origin": "http://attacker.example"}
    control = {SECRET_HEADER: service.secret, **origin}
    signed = AWSRequest(method="POST", url=f"{service.url}/", headers={
        "Content-Type": "application/x-www-form-urlencoded", **origin},
        data=b"Action=GetCallerIdentity&Version=2011-06-15")
    SigV4Auth(alice, "sts", REGION).add_auth(signed)
    responses = [
        requests.options(f"{service.url}/moto-api/config", timeout=10, headers={
            **control, "Access-Control-Request-Method": "GET"}),
        requests.get(f"{service.url}/moto-api/config", headers=control, timeout=10),
        requests.post(signed.url, data=signed.body, headers=dict(signed.headers), timeout=10),
    ]
    for response in responses:
        assert response.ok, response.status_code
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


# -- STS refuses what AWS refuses -----------------------------------------------------------------

def test_a_role_that_does_not_exist_cannot_be_assumed(front):
    """Else the session would gain the rights of a role of that name created later."""
    service, alice, _arn = front
    with pytest.raises(ClientError) as refused:
        sts(service.url, alice).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/future",
                                            RoleSessionName="early")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert "role/future" in refused.value.response["Error"]["Message"]


def test_a_role_is_found_by_its_exact_arn(front):
    service, alice, _arn = front
    for arn in (f"arn:aws:iam::{ACCOUNT}:role/some/path/reader",
                "arn:aws:iam::210987654321:role/reader"):
        with pytest.raises(ClientError) as refused:
            sts(service.url, alice).assume_role(RoleArn=arn, RoleSessionName="session")
        assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_an_existing_role_is_assumed_for_up_to_its_max_session_duration(front):
    service, alice, _arn = front
    client = sts(service.url, alice)
    for role, seconds in (("reader", 900), ("reader", 3600), ("long", 43200)):
        answer = client.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
                                    RoleSessionName="session", DurationSeconds=seconds)
        assert answer["AssumedRoleUser"]["Arn"].endswith(f"assumed-role/{role}/session")


def raw_assume_role(url: str, credentials: Credentials, role: str,
                    **params: str) -> requests.Response:
    """AssumeRole signed as botocore signs it, without botocore's own parameter checks."""
    body = urlencode({"Action": "AssumeRole", "Version": "2011-06-15",
                      "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
                      "RoleSessionName": "session", **params})
    request = AWSRequest(method="POST", url=f"{url}/", data=body.encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(credentials, "sts", REGION).add_auth(request)
    prepared = request.prepare()
    return requests.post(prepared.url, headers=dict(prepared.headers), data=prepared.body,
                         timeout=10)


@pytest.mark.parametrize("role, seconds, message", [
    ("reader", 3601, "exceeds the MaxSessionDuration"),
    ("long", 43201, "less than or equal to 43200"),
    ("reader", 899, "greater than or equal to 900"),  # botocore itself refuses it: sent raw
])
def test_a_session_longer_than_the_role_allows_is_refused(front, role, seconds, message):
    service, alice, _arn = front
    response = raw_assume_role(service.url, alice, role, DurationSeconds=str(seconds))
    assert response.status_code == 400
    assert b"<Code>ValidationError</Code>" in response.content
    assert message.encode() in response.content


def test_a_role_created_again_gives_its_rights_to_no_old_session(front):
    """AWS ties a session to the role's unique id; moto goes by the role's name."""
    service, alice, alice_arn = front
    admin = boto3.client("iam", endpoint_url=service.url, region_name=REGION,
                         aws_access_key_id="x", aws_secret_access_key="x")
    call_control_api(service.url, "reset-auth", service.secret, body=b"inf",
                     content_type="text/plain")   # the account team's changes, unchecked
    try:
        admin.create_role(RoleName="phoenix", AssumeRolePolicyDocument=trust(alice_arn))
    finally:
        call_control_api(service.url, "reset-auth", service.secret, body=b"0",
                         content_type="text/plain")
    answer = sts(service.url, alice).assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/phoenix", RoleSessionName="before")["Credentials"]
    old = boto3.client("iam", endpoint_url=service.url, region_name=REGION,
                       aws_access_key_id=answer["AccessKeyId"],
                       aws_secret_access_key=answer["SecretAccessKey"],
                       aws_session_token=answer["SessionToken"])
    call_control_api(service.url, "reset-auth", service.secret, body=b"inf",
                     content_type="text/plain")
    try:
        admin.delete_role(RoleName="phoenix")
        admin.create_role(RoleName="phoenix", AssumeRolePolicyDocument=trust(alice_arn))
        policy = admin.create_policy(PolicyName="phoenix-reads-iam", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]}))
        admin.attach_role_policy(RoleName="phoenix", PolicyArn=policy["Policy"]["Arn"])
    finally:
        call_control_api(service.url, "reset-auth", service.secret, body=b"0",
                         content_type="text/plain")
    with pytest.raises(ClientError) as refused:
        old.list_users()
    assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId"
    fresh = sts(service.url, alice).assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/phoenix", RoleSessionName="after")["Credentials"]
    assert boto3.client("iam", endpoint_url=service.url, region_name=REGION,
                        aws_access_key_id=fresh["AccessKeyId"],
                        aws_secret_access_key=fresh["SecretAccessKey"],
                        aws_session_token=fresh["SessionToken"]).list_users()["Users"]


@pytest.mark.parametrize("action", ["assume_role_with_web_identity", "assume_role_with_saml"])
def test_federated_sessions_are_refused(front, action):
    """moto checks neither a web identity token nor a SAML assertion."""
    service, _alice, _arn = front
    arguments = {"RoleArn": f"arn:aws:iam::{ACCOUNT}:role/reader"}
    if action == "assume_role_with_saml":
        arguments.update(PrincipalArn=f"arn:aws:iam::{ACCOUNT}:saml-provider/idp",
                         SAMLAssertion="x" * 20)
    else:
        arguments.update(RoleSessionName="session", WebIdentityToken="x" * 20)
    with pytest.raises(ClientError) as refused:
        getattr(sts(service.url, None), action)(**arguments)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
