"""The local REST API server: routing by api_config.yaml, SigV4 against moto's IAM, the event.

moto runs as a threaded server in this process, so the users and keys created through it are the
ones the server's key store finds. Handlers are stubs that echo the event they were given.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from edl.api_config import get_api_config
from edl.config import get_config
from edl.local.api_auth import MotoKeyStore, SigV4Verifier
from edl.local.api_server import ApiService, HandlerResolver

REGION = "us-east-1"


def echo(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json", "X-Echo": "yes"},
            "body": json.dumps({"event": event, "function": context.function_name})}


def fail(event, context):
    raise RuntimeError("boom")


@pytest.fixture(scope="module")
def users(moto_server):
    """A fresh moto with alice (a key), a role she may assume, and her assumed-role keys."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset",
                                                  method="POST")).read()
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=REGION)
    iam = session.client("iam", endpoint_url=moto_server)
    alice = iam.create_user(UserName="alice")["User"]
    key = iam.create_access_key(UserName="alice")["AccessKey"]
    iam.create_role(RoleName="reader", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": [alice["Arn"]]}}]}))
    sts = boto3.client("sts", endpoint_url=moto_server, region_name=REGION,
                       aws_access_key_id=key["AccessKeyId"],
                       aws_secret_access_key=key["SecretAccessKey"])
    role = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/reader",
                           RoleSessionName="alice-session")["Credentials"]
    yield {
        "alice": Credentials(key["AccessKeyId"], key["SecretAccessKey"]),
        "alice_id": alice["UserId"],
        "role": Credentials(role["AccessKeyId"], role["SecretAccessKey"], role["SessionToken"]),
    }
    # moto's state is process-wide: leave it as empty as we found it.
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset",
                                                  method="POST")).read()


@pytest.fixture(scope="module")
def _writes():
    return []


@pytest.fixture
def writes(_writes):
    _writes.clear()
    return _writes


@pytest.fixture(scope="module")
def server(users, _writes):
    instance = get_config().instance("local")
    handlers = HandlerResolver(overrides={e.handler: echo for e in get_api_config().endpoints})
    service = ApiService(instance, 0, handlers=handlers, after_write=lambda: _writes.append(1))
    service.start()
    yield service
    service.stop()


def signed(method: str, url: str, credentials: Credentials, body: bytes | None = None,
           headers: dict | None = None) -> requests.PreparedRequest:
    """A request signed as botocore signs for API Gateway (`execute-api`)."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
    prepared = request.prepare()
    return requests.Request(method, prepared.url, headers=dict(prepared.headers),
                            data=body).prepare()


def send(prepared) -> requests.Response:
    with requests.Session() as session:
        return session.send(prepared, timeout=10)


def error_code(response) -> str:
    return response.json()["error"]["code"]


# -- a signed call reaches the handler with the event API Gateway would build ---------------------

def test_a_signed_call_reaches_the_handler_as_alice(server, users):
    response = send(signed("GET", f"{server.url}/datasets?limit=5&next_token=a%2Fb",
                           users["alice"]))
    assert response.status_code == 200
    assert response.headers["X-Echo"] == "yes"
    payload = response.json()
    event = payload["event"]
    assert payload["function"] == "edl-local-api-datasets"
    assert (event["resource"], event["path"], event["httpMethod"]) == \
        ("/datasets", "/datasets", "GET")
    assert event["queryStringParameters"] == {"limit": "5", "next_token": "a/b"}
    assert event["pathParameters"] is None and event["body"] is None
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert (context["stage"], context["resourcePath"], context["httpMethod"]) == \
        ("v1", "/datasets", "GET")
    assert context["requestId"] == response.headers["x-amzn-RequestId"]
    identity = context["identity"]
    assert identity["userArn"] == "arn:aws:iam::123456789012:user/alice"
    assert identity["accountId"] == "123456789012"
    assert identity["caller"] == users["alice_id"]
    assert identity["accessKey"] == users["alice"].access_key
    assert identity["sourceIp"] == "127.0.0.1"


def test_path_parameters_and_the_url_without_the_stage(server, users):
    response = send(signed("GET", f"{server.base_url}/datasets/clinical_trials/updates/7",
                           users["alice"]))
    assert response.status_code == 200
    event = response.json()["event"]
    assert event["resource"] == "/datasets/{dataset}/updates/{update_id}"
    assert event["pathParameters"] == {"dataset": "clinical_trials", "update_id": "7"}


def test_a_body_is_passed_as_text_and_a_write_wakes_the_jobs(server, users, writes):
    body = json.dumps({"source": "s3://drop/batch1.csv", "kind": "snapshot"}).encode()
    response = send(signed("POST", f"{server.url}/datasets/clinical_trials/ingest",
                           users["alice"], body, {"Content-Type": "application/json"}))
    assert response.status_code == 200
    event = response.json()["event"]
    assert json.loads(event["body"]) == {"source": "s3://drop/batch1.csv", "kind": "snapshot"}
    assert event["headers"]["Content-Type"] == "application/json"
    assert writes == [1]


def test_assumed_role_credentials_are_known_too(server, users):
    response = send(signed("GET", f"{server.url}/datasets", users["role"]))
    assert response.status_code == 200
    identity = response.json()["event"]["requestContext"]["identity"]
    assert identity["userArn"] == "arn:aws:sts::123456789012:assumed-role/reader/alice-session"
    assert identity["caller"].endswith(":alice-session")


# -- refused before any handler runs ------------------------------------------------------------

def test_an_unknown_access_key_is_refused(server):
    response = send(signed("GET", f"{server.url}/datasets",
                           Credentials("AKIAIOSFODNN7EXAMPLE", "not-a-secret")))
    assert response.status_code == 403
    assert error_code(response) == "InvalidClientTokenId"
    assert response.headers["x-amzn-ErrorType"] == "InvalidClientTokenId"


def test_a_tampered_signature_is_refused(server, users):
    request = signed("GET", f"{server.url}/datasets", users["alice"])
    auth = request.headers["Authorization"]
    last = auth[-1]
    request.headers["Authorization"] = auth[:-1] + ("0" if last != "0" else "1")
    response = send(request)
    assert response.status_code == 403
    assert error_code(response) == "SignatureDoesNotMatch"


def test_a_wrong_secret_and_a_changed_body_are_refused(server, users):
    wrong = Credentials(users["alice"].access_key, "wrong-secret")
    assert error_code(send(signed("GET", f"{server.url}/datasets", wrong))) == \
        "SignatureDoesNotMatch"
    request = signed("POST", f"{server.url}/datasets/clinical_trials/ingest", users["alice"],
                     b'{"kind": "snapshot"}')
    request.body = b'{"kind": "delta!!!"}'
    response = send(request)
    assert (response.status_code, error_code(response)) == (403, "SignatureDoesNotMatch")


def test_a_changed_query_is_refused(server, users):
    request = signed("GET", f"{server.url}/datasets?limit=5", users["alice"])
    request.url = request.url.replace("limit=5", "limit=500")
    assert error_code(send(request)) == "SignatureDoesNotMatch"


def test_a_wrong_session_token_is_refused(server, users):
    role = users["role"]
    forged = Credentials(role.access_key, role.secret_key, "not-the-token")
    response = send(signed("GET", f"{server.url}/datasets", forged))
    assert (response.status_code, error_code(response)) == (403, "InvalidClientTokenId")


def test_an_unsigned_call_is_refused(server):
    response = requests.get(f"{server.url}/datasets", timeout=10)
    assert response.status_code == 403
    assert error_code(response) == "MissingAuthenticationToken"


def test_a_signature_for_another_service_or_region_is_refused(server, users):
    request = AWSRequest(method="GET", url=f"{server.url}/datasets")
    SigV4Auth(users["alice"], "s3", REGION).add_auth(request)
    prepared = request.prepare()
    response = requests.get(prepared.url, headers=dict(prepared.headers), timeout=10)
    assert (response.status_code, error_code(response)) == (403, "InvalidSignatureException")


def test_a_request_signed_too_long_ago_is_refused(users, moto_server):
    instance = get_config().instance("local")
    later = datetime.now(UTC) + timedelta(minutes=6)
    service = ApiService(instance, 0, handlers=HandlerResolver(overrides={
        "datasets:list_datasets": echo}))
    service.app.verifier = SigV4Verifier(MotoKeyStore("123456789012"), REGION,
                                         clock=lambda: later)
    service.start()
    try:
        response = send(signed("GET", f"{service.url}/datasets", users["alice"]))
    finally:
        service.stop()
    assert (response.status_code, error_code(response)) == (403, "InvalidSignatureException")
    assert "Signature expired" in response.json()["error"]["message"]


@pytest.mark.parametrize("host", ["attacker.example:{port}", "127.0.0.1:1"])
def test_a_request_for_another_host_is_refused_before_anything_runs(server, users, host):
    """DNS rebinding: the unsigned routes (OpenAPI, the jobs' status) are not for web pages."""
    for path in ("/openapi.json", "/v1/datasets"):
        request = signed("GET", f"{server.base_url}{path}", users["alice"])
        request.headers["Host"] = host.format(port=server.port)
        response = send(request)
        assert (response.status_code, error_code(response)) == (403, "ForbiddenHost")


# -- every check of the verifier, each with a request only that check refuses ------------------

def hand_signed(method: str, url: str, credentials: Credentials, signed_headers: tuple[str, ...],
                amz_date: str | None = None) -> requests.PreparedRequest:
    """SigV4 computed here over exactly `signed_headers` (botocore always signs host and the
    date), for an empty body and a URL without a query."""
    parts = urlsplit(url)
    amz_date = amz_date or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    values = {"host": parts.netloc, "x-amz-date": amz_date}
    names = sorted(signed_headers)
    canonical = "\n".join([method, parts.path, "", "".join(f"{n}:{values[n]}\n" for n in names),
                           ";".join(names), hashlib.sha256(b"").hexdigest()])
    scope = f"{amz_date[:8]}/{REGION}/execute-api/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + credentials.secret_key).encode()
    for part in (amz_date[:8], REGION, "execute-api", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                     f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return requests.Request(method, url, headers={"X-Amz-Date": amz_date,
                                                  "Authorization": authorization}).prepare()


def refused_as(response) -> tuple[int, str]:
    return response.status_code, error_code(response)


def test_the_hand_made_signature_is_accepted(server, users):
    """The control for the tests below: signed here over host and date, the call goes through."""
    request = hand_signed("GET", f"{server.url}/datasets", users["alice"], ("host", "x-amz-date"))
    assert send(request).status_code == 200


def test_a_body_other_than_the_one_whose_hash_was_signed_is_refused(server, users):
    """botocore signs the claimed X-Amz-Content-SHA256 as given: unchecked, one signature would
    carry any body."""
    url = f"{server.url}/datasets/clinical_trials/ingest"
    body = b'{"source": "s3://drop/a.csv", "kind": "snapshot"}'
    claimed = {"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}
    assert send(signed("POST", url, users["alice"], body, claimed)).status_code == 200
    request = signed("POST", url, users["alice"], body, claimed)
    request.body = b'{"source": "s3://vault/all.csv", "kind": "snapshot"}'
    request.headers["Content-Length"] = str(len(request.body))
    assert refused_as(send(request)) == (403, "SignatureDoesNotMatch")
    assert "X-Amz-Content-SHA256" in send(request).json()["error"]["message"]


def test_a_signature_that_does_not_cover_its_date_is_refused(server, users):
    """Else it could be replayed forever under a fresh X-Amz-Date."""
    request = hand_signed("GET", f"{server.url}/datasets", users["alice"], ("host",))
    assert refused_as(send(request)) == (403, "IncompleteSignatureException")


def test_a_signature_that_does_not_cover_the_host_is_refused(server, users):
    request = hand_signed("GET", f"{server.url}/datasets", users["alice"], ("x-amz-date",))
    response = send(request)
    assert refused_as(response) == (403, "IncompleteSignatureException")
    assert "host" in response.json()["error"]["message"]


def test_a_request_signed_in_the_future_is_refused(server, users):
    later = (datetime.now(UTC) + timedelta(minutes=6)).strftime("%Y%m%dT%H%M%SZ")
    request = hand_signed("GET", f"{server.url}/datasets", users["alice"],
                          ("host", "x-amz-date"), amz_date=later)
    assert refused_as(send(request)) == (403, "InvalidSignatureException")


def test_a_credential_scope_of_another_day_is_refused(server, users):
    request = signed("GET", f"{server.url}/datasets", users["alice"])
    today = request.headers["X-Amz-Date"][:8]
    request.headers["Authorization"] = request.headers["Authorization"].replace(
        f"/{today}/", "/20200101/")
    assert refused_as(send(request)) == (403, "SignatureDoesNotMatch")


def test_a_signature_for_another_region_is_refused(server, users):
    request = AWSRequest(method="GET", url=f"{server.url}/datasets")
    SigV4Auth(users["alice"], "execute-api", "eu-west-1").add_auth(request)
    prepared = request.prepare()
    response = requests.get(prepared.url, headers=dict(prepared.headers), timeout=10)
    assert refused_as(response) == (403, "InvalidSignatureException")


@pytest.mark.parametrize("old, new", [
    ("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA512 "),   # another algorithm
    ("/aws4_request", "/aws4_other"),              # a scope that is not SigV4's
    ("SignedHeaders=", "Signed="),                 # a part missing
])
def test_a_malformed_authorization_header_is_refused(server, users, old, new):
    request = signed("GET", f"{server.url}/datasets", users["alice"])
    request.headers["Authorization"] = request.headers["Authorization"].replace(old, new)
    assert refused_as(send(request)) == (403, "IncompleteSignatureException")


def test_a_malformed_date_is_refused(server, users):
    request = hand_signed("GET", f"{server.url}/datasets", users["alice"], ("host", "x-amz-date"),
                          amz_date=datetime.now(UTC).strftime("%Y%m%dT%H%M%S+0000"))
    assert refused_as(send(request)) == (403, "IncompleteSignatureException")


def test_assumed_role_keys_without_their_session_token_are_refused(server, users):
    role = users["role"]
    untokened = Credentials(role.access_key, role.secret_key)
    assert refused_as(send(signed("GET", f"{server.url}/datasets", untokened))) == \
        (403, "InvalidClientTokenId")


def test_a_users_key_with_a_session_token_is_refused(server, users):
    alice = users["alice"]
    tokened = Credentials(alice.access_key, alice.secret_key, "a-token-alice-never-had")
    assert refused_as(send(signed("GET", f"{server.url}/datasets", tokened))) == \
        (403, "InvalidClientTokenId")


def test_a_deactivated_key_is_refused(server, users, moto_server):
    iam = boto3.client("iam", endpoint_url=moto_server, region_name=REGION,
                       aws_access_key_id="x", aws_secret_access_key="x")
    key = iam.create_access_key(UserName="alice")["AccessKey"]
    credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    assert send(signed("GET", f"{server.url}/datasets", credentials)).status_code == 200
    iam.update_access_key(UserName="alice", AccessKeyId=key["AccessKeyId"], Status="Inactive")
    assert refused_as(send(signed("GET", f"{server.url}/datasets", credentials))) == \
        (403, "InvalidClientTokenId")


def test_an_expired_session_is_refused(server, users, moto_server):
    from moto.core.utils import utcnow
    from moto.sts.models import sts_backends

    sts = boto3.client("sts", endpoint_url=moto_server, region_name=REGION,
                       aws_access_key_id=users["alice"].access_key,
                       aws_secret_access_key=users["alice"].secret_key)
    answer = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/reader",
                             RoleSessionName="soon-over", DurationSeconds=900)["Credentials"]
    credentials = Credentials(answer["AccessKeyId"], answer["SecretAccessKey"],
                              answer["SessionToken"])
    assert send(signed("GET", f"{server.url}/datasets", credentials)).status_code == 200
    [session] = [r for r in sts_backends["123456789012"]["aws"].assumed_roles
                 if r.access_key_id == answer["AccessKeyId"]]
    session.expiration = utcnow() - timedelta(seconds=1)   # 15 minutes later
    assert refused_as(send(signed("GET", f"{server.url}/datasets", credentials))) == \
        (403, "InvalidClientTokenId")


def test_a_session_of_a_deleted_role_is_refused(server, users, moto_server):
    iam = boto3.client("iam", endpoint_url=moto_server, region_name=REGION,
                       aws_access_key_id="x", aws_secret_access_key="x")
    iam.create_role(RoleName="short-lived", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": [
                                                    "arn:aws:iam::123456789012:user/alice"]}}]}))
    sts = boto3.client("sts", endpoint_url=moto_server, region_name=REGION,
                       aws_access_key_id=users["alice"].access_key,
                       aws_secret_access_key=users["alice"].secret_key)
    answer = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/short-lived",
                             RoleSessionName="s1")["Credentials"]
    credentials = Credentials(answer["AccessKeyId"], answer["SecretAccessKey"],
                              answer["SessionToken"])
    assert send(signed("GET", f"{server.url}/datasets", credentials)).status_code == 200
    iam.delete_role(RoleName="short-lived")
    assert refused_as(send(signed("GET", f"{server.url}/datasets", credentials))) == \
        (403, "InvalidClientTokenId")


# -- routing and size ---------------------------------------------------------------------------

def test_a_method_not_in_api_config_is_405(server, users):
    response = send(signed("DELETE", f"{server.url}/datasets/clinical_trials", users["alice"]))
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"


def test_an_unknown_path_is_404(server, users):
    response = send(signed("GET", f"{server.url}/nothing/here", users["alice"]))
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_an_oversized_body_is_413_before_it_is_read(server, users):
    body = b"x" * (get_api_config().max_body_bytes + 1)
    response = send(signed("POST", f"{server.url}/datasets/clinical_trials/ingest",
                           users["alice"], body))
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


# -- handlers that are missing or fail ------------------------------------------------------------

def test_a_missing_handler_module_is_501_and_a_failing_handler_502(users, moto_server):
    instance = get_config().instance("local")
    handlers = HandlerResolver(package="tests.functional.no_such_handlers",
                               overrides={"datasets:get_dataset": fail})
    service = ApiService(instance, 0, handlers=handlers)
    service.start()
    try:
        missing = send(signed("GET", f"{service.url}/datasets", users["alice"]))
        failing = send(signed("GET", f"{service.url}/datasets/clinical_trials", users["alice"]))
    finally:
        service.stop()
    assert (missing.status_code, error_code(missing)) == (501, "not_implemented")
    assert (failing.status_code, error_code(failing)) == (502, "handler_failed")
    assert "boom" in failing.json()["error"]["message"]


def test_it_listens_on_127_0_0_1(server):
    assert server.url.startswith("http://127.0.0.1:")
    assert server.url.endswith("/v1")


def test_the_openapi_document_is_served_unsigned_with_this_server(server):
    for url in (f"{server.base_url}/openapi.json", f"{server.url}/openapi.json"):
        response = requests.get(url, timeout=10)
        assert response.status_code == 200
        document = response.json()
        assert document["servers"] == [{"url": server.url,
                                        "description": "the local cloud's REST API"}]
        assert "/datasets/{dataset}/ingest" in document["paths"]


def test_a_taken_api_port_moves_the_server_instead_of_ending_the_runtime():
    """werkzeug exits the process on a taken port; the API moves to a free one (clients read its
    URL from the state file), and only a port asked for explicitly is an error."""
    import socket

    instance = get_config().instance("local")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        service = ApiService(instance, taken, any_port_if_taken=True)
        service.start()
        try:
            assert service.port != taken
            with urllib.request.urlopen(f"{service.base_url}/openapi.json", timeout=5) as answer:
                assert answer.status == 200
        finally:
            service.stop()
        with pytest.raises(OSError):
            ApiService(instance, taken).start()
