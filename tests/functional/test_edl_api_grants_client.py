"""`edl-api`'s access commands and `lake`'s broker context against a tiny HTTP server on 127.0.0.1
that plays the access-control contract (grants, decisions, the broker, the audit log) for a few
local users: real HTTP, SigV4 signatures checked per caller, paging of grants and audit events,
errors mapped to messages and exit codes, and a `credential_process` profile that boto3 itself
runs (a real `edl-api` subprocess)."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from edl.durations import parse_duration
from edl.utils.context import LakeContext
from edl.utils.metadata import DatasetRecord
from edl_api.edl_api import run
from edl_api.lake_api import NoGrantError

ACCOUNT = "123456789012"
USERS = {"bob": ("AKIDBOB", "bob-secret"), "alice": ("AKIDALICE", "alice-secret"),
         "carol": ("AKIDCAROL", "carol-secret")}
OWNERS = {"trials": "alice", "public_stats": "alice"}
TIERS = {"trials": "sensitive", "public_stats": "internal"}
ENDPOINT = "http://127.0.0.1:4566"  # the local cloud's AWS endpoint in the state file
PAGE = 2  # the fake API's page size: every list of more than two items is paged


def arn(user: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{user}"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FakeLakeApi:
    """The contract's grants, broker and audit endpoints over dicts; callers known by the access
    key of a valid signature."""

    def __init__(self) -> None:
        self.grants: dict[str, dict] = {}
        self.events: list[dict] = []
        self.requests: list[dict] = []
        self.vended = itertools.count(1)
        self.url = ""
        self._ids = itertools.count(0xA00000000000)
        self._lock = threading.Lock()

    # -- dispatch --------------------------------------------------------------------------------

    def answer(self, request: dict) -> tuple[int, dict]:
        self.requests.append(request)
        try:
            caller = self._caller(request)
            with self._lock:
                return self._route(request, caller)
        except Refusal as refusal:
            return refusal.status, {"error": {"code": refusal.code, "message": refusal.message}}

    def _route(self, request: dict, caller: str) -> tuple[int, dict]:
        method, path, query = request["method"], request["path"], request["query"]
        body = json.loads(request["body"] or b"{}")
        if m := re.fullmatch(r"/v1/datasets/(\w+)/grants", path):
            return 201, self.request_grant(caller, m.group(1), body)
        if m := re.fullmatch(r"/v1/datasets/(\w+)/credentials", path):
            return 200, self.credentials(caller, m.group(1), query)
        if m := re.fullmatch(r"/v1/datasets/(\w+)", path):
            return 200, {"dataset": self._dataset(m.group(1)), "tier": TIERS[m.group(1)],
                         "owner": OWNERS[m.group(1)], "home_region": "us-east-1"}
        if path == "/v1/grants" and method == "GET":
            return 200, self.list_grants(caller, query)
        if m := re.fullmatch(r"/v1/grants/([\w.]+)/(approve|reject|revoke)", path):
            return 200, self.decide(caller, m.group(1), m.group(2), body)
        if m := re.fullmatch(r"/v1/grants/([\w.]+)", path):
            return 200, self._grant(m.group(1))
        if path == "/v1/audit":
            return 200, self.list_audit(caller, query)
        raise Refusal(404, "not_found", f"no route {method} {path}")

    def _caller(self, request: dict) -> str:
        auth = request["headers"].get("Authorization", "")
        key = re.search(r"Credential=([^/]+)/", auth)
        user = next((u for u, (k, _) in USERS.items() if key and k == key.group(1)), None)
        if user is None or not _signature_is_valid(request, *USERS[user]):
            raise Refusal(403, "InvalidSignature", "the request signature does not match")
        return user

    # -- grants ----------------------------------------------------------------------------------

    def _dataset(self, name: str) -> str:
        if name not in OWNERS:
            raise Refusal(404, "not_found", f"no dataset {name!r}")
        return name

    def _grant(self, grant_id: str) -> dict:
        if grant_id not in self.grants:
            raise Refusal(404, "not_found", f"no grant {grant_id!r}")
        return self.grants[grant_id]

    def request_grant(self, caller: str, dataset: str, body: dict) -> dict:
        self._dataset(dataset)
        grantee = body.get("grantee") or arn(caller)
        for grant in self.grants.values():
            if (grant["dataset"], grant["grantee"], grant["level"]) == \
                    (dataset, grantee, body["level"]) and grant["state"] in ("requested", "active"):
                raise Refusal(409, "duplicate_grant", f"{grantee} already has grant "
                                                      f"{grant['grant_id']} ({grant['state']})")
        if TIERS[dataset] == "sensitive" and not body.get("justification"):
            self.audit(dataset, "refuse", caller, None, "justification_required")
            raise Refusal(400, "justification_required", f"{dataset} is sensitive: give a "
                                                         "justification")
        now = datetime.now(UTC)
        grant_id = f"{dataset}.{next(self._ids):012x}"
        self.grants[grant_id] = {
            "grant_id": grant_id, "dataset": dataset, "tier": TIERS[dataset], "grantee": grantee,
            "level": body["level"], "state": "requested", "requester": arn(caller),
            "approvers": [], "justification": body.get("justification"), "reason": None,
            "expires_at": None, "created_at": iso(now), "updated_at": iso(now),
            "duration_seconds": parse_duration(body["duration"]) if body.get("duration") else None,
            "decided_by": None}
        self.audit(dataset, "request", caller, grant_id)
        return self.grants[grant_id]

    def decide(self, caller: str, grant_id: str, action: str, body: dict) -> dict:
        grant = self._grant(grant_id)
        wanted = "active" if action == "revoke" else "requested"
        if grant["state"] != wanted:
            self.audit(grant["dataset"], "refuse", caller, grant_id, "wrong_state")
            raise Refusal(409, "wrong_state",
                          f"grant {grant_id} is {grant['state']}, not {wanted}")
        if caller != OWNERS[grant["dataset"]]:
            self.audit(grant["dataset"], "refuse", caller, grant_id, "not_an_approver")
            raise Refusal(403, "not_an_approver", f"{caller} may not {action} {grant_id}")
        now = datetime.now(UTC)
        grant.update(updated_at=iso(now), decided_by=arn(caller), reason=body.get("reason"),
                     state={"approve": "active", "reject": "rejected",
                            "revoke": "revoked"}[action])
        if action == "approve":
            grant["approvers"] = [arn(caller)]
            grant["expires_at"] = iso(now + timedelta(seconds=grant["duration_seconds"] or 86400))
        self.audit(grant["dataset"], action, caller, grant_id)
        return grant

    def list_grants(self, caller: str, query: dict) -> dict:
        grants = sorted(self.grants.values(), key=lambda g: g["grant_id"])
        if query.get("dataset"):
            grants = [g for g in grants if g["dataset"] == query["dataset"]]
        if query.get("pending") == "true":
            grants = [g for g in grants if g["state"] == "requested"
                      and OWNERS[g["dataset"]] == caller]
        elif query.get("mine") == "true" or not query.get("dataset"):
            grants = [g for g in grants if g["grantee"] == arn(caller)]
        if query.get("state"):
            grants = [g for g in grants if g["state"] == query["state"]]
        return _page(grants, query, "grants")

    # -- the broker and the audit log ------------------------------------------------------------

    def credentials(self, caller: str, dataset: str, query: dict) -> dict:
        self._dataset(dataset)
        level = query.get("level", "read")
        held = [g for g in self.grants.values() if g["dataset"] == dataset
                and g["grantee"] == arn(caller) and g["state"] == "active"
                and g["level"] in (level, "write")]
        if not held and not (TIERS[dataset] == "internal" and level == "read"):
            self.audit(dataset, "refuse", caller, None, "no_grant", tried="vend")
            raise Refusal(403, "no_grant", f"{caller} holds no grant to {level} {dataset}; "
                                           f"ask: edl-api grant request {dataset} --level {level}")
        seconds = min(parse_duration(query.get("duration", "1h")), 3600)
        number = next(self.vended)
        self.audit(dataset, "vend", caller, held[0]["grant_id"] if held else None)
        return {"dataset": dataset, "level": level,
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/edl-local-{dataset}-{level}",
                "basis": "grant" if held else "default",
                "grant_id": held[0]["grant_id"] if held else None,
                "access_key_id": f"ASIAVENDED{number:06d}", "secret_access_key": f"secret{number}",
                "session_token": f"token{number}",
                "expiration": iso(datetime.now(UTC) + timedelta(seconds=max(seconds, 900))),
                "region": "us-east-1", "bucket": f"sanofi-datalake-local-{TIERS[dataset]}-us-east-1",
                "prefix": f"{dataset}/"}

    def audit(self, dataset: str, action: str, caller: str, grant_id: str | None,
              reason: str | None = None, tried: str | None = None) -> None:
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self.events.append({
            "event_id": f"{at}#{len(self.events):08x}", "at": at, "dataset": dataset,
            "action": action, "actor": arn(caller), "grant_id": grant_id, "level": None,
            "decision": "refused" if action == "refuse" else "allowed", "reason": reason,
            "detail": {"tried": tried} if tried else {}})

    def list_audit(self, caller: str, query: dict) -> dict:
        dataset = self._dataset(query.get("dataset", ""))
        if OWNERS[dataset] != caller:
            raise Refusal(403, "forbidden", f"only the owner of {dataset} or an admin reads "
                                            "its audit log")
        events = [e for e in self.events if e["dataset"] == dataset]
        if query.get("since"):
            since = datetime.now(UTC) - timedelta(seconds=parse_duration(query["since"]))
            events = [e for e in events if e["at"] >= iso(since)]
        return _page(events, query, "events")


def _page(items: list[dict], query: dict, name: str) -> dict:
    start = int(query.get("next_token") or 0)
    size = min(int(query.get("limit") or PAGE), PAGE)
    following = start + size
    return {name: items[start:following],
            "next_token": str(following) if following < len(items) else None}


def _signature_is_valid(request: dict, key: str, secret: str) -> bool:
    """The SigV4 signature for execute-api, recomputed the way API Gateway would."""
    headers = request["headers"]
    auth = headers["Authorization"]
    signed = re.search(r"SignedHeaders=([^,]+)", auth).group(1).split(";")
    given = re.search(r"Signature=([0-9a-f]+)", auth).group(1)
    lower = {k.lower(): v for k, v in headers.items()}
    aws_request = AWSRequest(method=request["method"], url=f"http://{lower['host']}{request['url']}",
                             data=request["body"], headers={n: lower[n] for n in signed})
    aws_request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(Credentials(key, secret), "execute-api", "us-east-1")
    canonical = signer.canonical_request(aws_request)
    return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request) == given


@pytest.fixture
def fake_api(edl_home, monkeypatch):
    """The fake API on a loopback port, recorded as the local cloud's API in the state file, and
    its users in the local credentials file (as `edl local start` writes them)."""
    api = FakeLakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            split = urlsplit(self.path)
            status, payload = api.answer({
                "method": self.command, "path": split.path, "url": self.path,
                "query": {k: v[0] for k, v in parse_qs(split.query).items()},
                "headers": dict(self.headers.items()),
                "body": self.rfile.read(length) if length else b""})
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _handle

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    local = edl_home / "local"
    local.mkdir(parents=True, exist_ok=True)
    (local / "state.json").write_text(json.dumps({"endpoint_url": ENDPOINT,
                                                  "services": {"api": api.url}}))
    (local / "credentials").write_text("".join(
        f"[{user}]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n\n"
        for user, (key, secret) in USERS.items()))
    for name in ("EDL_INSTANCE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture
def cli(fake_api, capsys):
    def invoke(*argv: str) -> tuple[int, str, str]:
        code = run(list(argv), outside=lambda instance, profile: None)
        out, err = capsys.readouterr()
        return code, out, err
    return invoke


def request_trials(cli) -> str:
    code, out, err = cli("grant", "request", "trials", "--level", "read", "--for", "30d",
                         "--justification", "Q3 safety review", "--profile", "bob", "--json")
    assert code == 0, err
    return json.loads(out)["grant_id"]


# -- the flow --------------------------------------------------------------------------------

def test_refused_then_requested_approved_vended_revoked_and_refused_again(cli, fake_api):
    code, out, err = cli("credentials", "trials", "--profile", "bob")
    assert code == 1 and out == ""
    assert "bob holds no grant to read trials" in err
    assert "edl-api grant request trials --level read" in err

    grant_id = request_trials(cli)
    code, out, _ = cli("grants", "--pending", "--profile", "alice")
    assert code == 0 and grant_id in out and "user/bob" in out and "30d once approved" in out

    code, _, err = cli("grant", "approve", grant_id, "--profile", "carol")
    assert code == 1 and f"carol may not approve {grant_id} (403 not_an_approver)" in err
    code, out, _ = cli("grant", "approve", grant_id, "--profile", "alice")
    assert code == 0 and "active" in out and "arn:aws:iam::123456789012:user/alice" in out

    code, out, err = cli("credentials", "trials", "--format", "env", "--profile", "bob")
    assert code == 0, err
    assert "export AWS_ACCESS_KEY_ID=ASIAVENDED000001\n" in out
    assert out.endswith(f"export AWS_ENDPOINT_URL={ENDPOINT}\n")

    code, out, _ = cli("grant", "revoke", grant_id, "--reason", "study over", "--profile", "alice")
    assert code == 0 and "revoked" in out and "study over" in out
    code, _, err = cli("credentials", "trials", "--profile", "bob")
    assert code == 1 and "no grant" in err

    code, out, _ = cli("audit", "--dataset", "trials", "--profile", "alice", "--json")
    actions = [(e["action"], e["decision"]) for e in json.loads(out)["events"]]
    assert actions == [("refuse", "refused"), ("request", "allowed"), ("refuse", "refused"),
                       ("approve", "allowed"), ("vend", "allowed"), ("revoke", "allowed"),
                       ("refuse", "refused")]


def test_every_request_is_signed_as_the_profiles_user(cli, fake_api):
    request_trials(cli)
    cli("grants", "--profile", "carol")
    keys = [re.search(r"Credential=([^/]+)/", r["headers"]["Authorization"]).group(1)
            for r in fake_api.requests]
    assert keys == ["AKIDBOB", "AKIDCAROL"]
    assert all("/us-east-1/execute-api/aws4_request" in r["headers"]["Authorization"]
               for r in fake_api.requests)


def test_a_request_the_server_cannot_verify_is_refused(cli, fake_api, edl_home):
    (edl_home / "local" / "credentials").write_text(
        "[bob]\naws_access_key_id = AKIDBOB\naws_secret_access_key = wrong\n")
    code, _, err = cli("grants", "--profile", "bob")
    assert code == 1 and "signature does not match (403 InvalidSignature)" in err


# -- paging ----------------------------------------------------------------------------------

def test_grants_and_audit_are_read_across_pages(cli, fake_api):
    ids = []
    for dataset in ("trials", "public_stats"):
        for level in ("read", "write"):
            code, out, _ = cli("grant", "request", dataset, "--level", level, "--for", "1d",
                               "--justification", "why", "--profile", "bob", "--json")
            ids.append(json.loads(out)["grant_id"])
    code, out, _ = cli("grants", "--mine", "--profile", "bob", "--json")
    assert code == 0
    assert sorted(g["grant_id"] for g in json.loads(out)["grants"]) == sorted(ids)
    grant_pages = [r["query"] for r in fake_api.requests if r["path"] == "/v1/grants"]
    assert [q.get("next_token") for q in grant_pages] == [None, "2"]

    code, out, err = cli("grants", "--mine", "--profile", "bob", "--limit", "3")
    assert code == 0 and "3 grants" in err

    code, out, _ = cli("audit", "--dataset", "trials", "--since", "1h", "--profile", "alice",
                       "--json")
    assert code == 0
    assert [e["grant_id"] for e in json.loads(out)["events"]] == ids[:2]
    code, out, err = cli("audit", "--dataset", "public_stats", "--profile", "alice")
    assert code == 0 and "request" in out and "user/bob" in out and "2 events" in err


# -- errors ----------------------------------------------------------------------------------

def test_an_unknown_grant_or_dataset_exits_3(cli):
    code, out, err = cli("grant", "show", "trials.000000000000", "--profile", "bob")
    assert code == 3 and out == "" and "no grant 'trials.000000000000'" in err
    code, _, err = cli("grant", "request", "nothere", "--level", "read", "--profile", "bob")
    assert code == 3 and "no dataset 'nothere'" in err


def test_a_decision_in_the_wrong_state_exits_non_zero_and_changes_nothing(cli, fake_api):
    grant_id = request_trials(cli)
    code, _, err = cli("grant", "revoke", grant_id, "--profile", "alice")
    assert code == 1
    assert f"grant {grant_id} is requested, not active (409 wrong_state)" in err
    assert f"edl-api grant show {grant_id}" in err
    assert fake_api.grants[grant_id]["state"] == "requested"


def test_a_second_request_names_the_first(cli):
    grant_id = request_trials(cli)
    code, _, err = cli("grant", "request", "trials", "--level", "read", "--for", "30d",
                       "--justification", "again", "--profile", "bob")
    assert code == 1 and f"already has grant {grant_id}" in err
    assert f"edl-api grant show {grant_id}" in err


def test_a_400_from_the_api_exits_2(cli):
    code, _, err = cli("grant", "request", "trials", "--level", "read", "--profile", "bob")
    assert code == 2 and "give a justification (400 justification_required)" in err


# -- credential_process: boto3 runs edl-api itself -------------------------------------------

def test_a_written_profile_gives_boto3_the_brokers_credentials(cli, fake_api, tmp_path,
                                                                 monkeypatch):
    grant_id = request_trials(cli)
    assert cli("grant", "approve", grant_id, "--profile", "alice")[0] == 0
    config = tmp_path / "aws-config"
    code, _, err = cli("profile", "trials", "--profile", "bob", "--config-file", str(config))
    assert code == 0, err
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))

    session = boto3.Session(profile_name="edl-trials-read")
    frozen = session.get_credentials().get_frozen_credentials()
    assert frozen.access_key == "ASIAVENDED000001" and frozen.token == "token1"
    assert session.region_name == "us-east-1"
    assert session.client("s3").meta.endpoint_url == ENDPOINT
    vends = [r for r in fake_api.requests if r["path"] == "/v1/datasets/trials/credentials"]
    assert len(vends) == 1 and "AKIDBOB" in vends[0]["headers"]["Authorization"]


def test_credential_process_without_a_grant_fails_with_the_message_on_stderr(fake_api, tmp_path):
    command = [sys.executable, "-m", "edl_api.edl_api", "credentials", "trials",
               "--format", "credential-process", "--instance", "local", "--profile", "carol"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert "carol holds no grant to read trials" in done.stderr


# -- lake.read's broker over HTTP ------------------------------------------------------------

def test_a_reader_context_gets_each_datasets_data_access_from_the_api(fake_api, cli):
    grant_id = request_trials(cli)
    assert cli("grant", "approve", grant_id, "--profile", "alice")[0] == 0
    context = LakeContext.for_reader("local", profile="bob")
    trials = DatasetRecord(dataset="trials", tier="sensitive", owner="alice",
                           home_region="us-east-1")
    access = context.data_access(trials)
    assert (access.access_key, access.session_token) == ("ASIAVENDED000001", "token1")
    assert access.endpoint_url == ENDPOINT and access.region == "us-east-1"
    assert context.data_access(trials).access_key == "ASIAVENDED000001"  # cached until near expiry

    public = DatasetRecord(dataset="public_stats", tier="internal", owner="alice",
                           home_region="us-east-1")
    assert context.data_access(public).access_key == "ASIAVENDED000002"  # its own credentials
    carol = LakeContext.for_reader("local", profile="carol")
    with pytest.raises(NoGrantError) as refused:
        carol.data_access(trials)
    assert "carol holds no grant to read trials" in refused.value.message
    # the request to make, once: in the broker's own message or else in the hint
    told = refused.value.message + (refused.value.hint or "")
    assert told.count("edl-api grant request trials --level read") == 1
