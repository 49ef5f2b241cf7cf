"""`edl-api` access control commands with a fake transport (no network): credentials, grant …,
grants, audit and profile. Bad input (durations, ids, levels) is refused with exit 2 before the
API client is built; the outputs other programs read (`--format env`, `json`,
`credential-process`, the AWS config file) have exactly their shapes."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import stat
from datetime import UTC, datetime

import pytest
from botocore.credentials import Credentials

from edl_api import access_commands, aws_profiles
from edl_api.client import ApiClient, ApiError
from edl_api.edl_api import run

NOW = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
BOB = "arn:aws:iam::123456789012:user/bob"
ALICE = "arn:aws:iam::123456789012:user/alice"
GRANT_ID = "trials.3f9a2c1b7d40"
GRANT = {
    "grant_id": GRANT_ID, "dataset": "trials", "tier": "sensitive", "grantee": BOB,
    "level": "read", "state": "active", "requester": BOB, "approvers": [ALICE],
    "justification": "Q3 safety review", "reason": None, "expires_at": "2026-12-12T10:00:00Z",
    "duration_seconds": 864000, "created_at": "2026-12-02T09:00:00Z",
    "updated_at": "2026-12-02T09:30:00Z", "decided_by": ALICE,
}
CREDENTIALS = {
    "dataset": "trials", "level": "read", "basis": "grant", "grant_id": GRANT_ID,
    "role_arn": "arn:aws:iam::123456789012:role/edl-local-trials-read",
    "access_key_id": "ASIAVENDED", "secret_access_key": "se/cr+et", "session_token": "TOKEN==",
    "expiration": "2026-12-02T11:00:00Z", "region": "us-east-1",
    "bucket": "sanofi-datalake-local-sensitive-us-east-1", "prefix": "trials/",
}
SUBCOMMANDS = (("credentials",), ("grant", "request"), ("grant", "approve"),
               ("grant", "reject"), ("grant", "revoke"), ("grant", "show"), ("grants",),
               ("audit",), ("profile",))


class FakeTransport(ApiClient):
    """The API client with its HTTP replaced: `routes[(method, path)]` are replies played in
    order (the last repeated); a reply is a JSON object or an ApiError to raise."""

    def __init__(self, endpoint_url: str | None = None) -> None:
        super().__init__("https://api.example/v1", Credentials("AKID", "SECRET"), "us-east-1",
                         aws_endpoint_url=endpoint_url, local=endpoint_url is not None)
        self.routes: dict[tuple[str, str], list] = {}
        self.calls: list[tuple[str, str, dict, dict | None]] = []

    def on(self, method: str, path: str, *replies) -> None:
        self.routes[(method, path)] = list(replies)

    def request(self, method, path, *, params=None, body=None):
        query = {k: v for k, v in (params or {}).items() if v is not None}  # as url() does
        self.calls.append((method, path, query, None if body is None else dict(body)))
        replies = self.routes.get((method, path))
        if not replies:
            raise ApiError(404, "not_found", f"no route {method} {path}")
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


@pytest.fixture(autouse=True)
def fixed_environment(monkeypatch):
    monkeypatch.delenv("EDL_INSTANCE", raising=False)
    monkeypatch.delenv(access_commands.IN_CREDENTIAL_PROCESS, raising=False)


@pytest.fixture
def api():
    return FakeTransport()


@pytest.fixture
def cli(api, capsys, monkeypatch):
    """`edl-api ARGV` against the fake transport: (exit code, stdout, stderr); `built` records
    every client the command asked for."""
    built: list[tuple[str, str | None]] = []

    def connect(instance, profile):
        built.append((instance, profile))
        return api

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = run(list(argv), connect=connect, outside=lambda instance, profile: None,
                   now=lambda: NOW)
        out, err = capsys.readouterr()
        return code, out, err

    invoke.built = built
    return invoke


# -- help and bad input ----------------------------------------------------------------------

def test_help_lists_the_access_commands(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for name in ("credentials", "grant", "grants", "audit", "profile"):
        assert f"\n    {name}" in out, name


@pytest.mark.parametrize("words", SUBCOMMANDS)
def test_every_access_command_has_its_own_help_with_the_common_options(cli, words):
    code, out, _ = cli(*words, "--help")
    assert code == 0
    assert out.startswith(f"usage: edl-api {' '.join(words)} ")
    for option in ("--instance", "--profile", "--json", "--debug"):
        assert option in out
    assert not cli.built


@pytest.mark.parametrize("argv, message", [
    (("grant", "request", "trials", "--level", "read", "--for", "0d"), "must be more than zero"),
    (("grant", "request", "trials", "--level", "read", "--for=-5d"), "is not a duration"),
    (("grant", "request", "trials", "--level", "read", "--for", "30 days"), "is not a duration"),
    (("grant", "request", "trials", "--level", "read", "--for", "1w"), "90s, 15m, 12h or 30d"),
    (("grant", "request", "trials", "--level", "admin"), "invalid choice: 'admin'"),
    (("grant", "request", "trials"), "the following arguments are required: --level"),
    (("grant", "request", "Trials", "--level", "read"), "invalid dataset name 'Trials'"),
    (("grant", "request", "trials", "--level", "read", "--grantee", "bob"),
     "is not a principal ARN"),
    (("grant", "approve", "trials.XYZ"), "invalid grant id 'trials.XYZ'"),
    (("grant", "approve", "trials"), "invalid grant id"),
    (("grant", "show", "../grants"), "invalid grant id"),
    (("grant", "revoke", "trials.3f9a2c1b7d4"), "invalid grant id"),
    (("grant", "reject", GRANT_ID), "the following arguments are required: --reason"),
    (("grant", "reject", GRANT_ID, "--reason", "  "), "--reason must not be empty"),
    (("grant",), "the following arguments are required: ACTION"),
    (("grant", "delete", GRANT_ID), "invalid choice: 'delete'"),
    (("credentials", "trials", "--duration", "15"), None),  # plain seconds are a duration
    (("credentials", "trials", "--duration", "0s"), "must be more than zero"),
    (("credentials", "trials", "--duration", "soon"), "is not a duration"),
    (("credentials", "trials", "--level", "own"), "invalid choice: 'own'"),
    (("credentials", "trials", "--format", "yaml"), "invalid choice: 'yaml'"),
    (("credentials", "trials", "--format", "env", "--json"), "ask for two formats"),
    (("grants", "--state", "pending"), "invalid choice: 'pending'"),
    (("grants", "--dataset", "x"), "invalid dataset name 'x'"),
    (("grants", "--limit", "0"), "must be at least 1"),
    (("audit", "--since", "yesterday"), "is not a duration"),
    (("audit", "--since", "0m"), "must be more than zero"),
    (("profile", "trials", "--name", "my profile"), "invalid profile name"),
    (("profile", "trials", "--level", "admin"), "invalid choice: 'admin'"),
])
def test_bad_input_exits_2_before_any_request(cli, api, argv, message):
    api.on("GET", "/datasets/trials/credentials", CREDENTIALS)
    code, _out, err = cli(*argv)
    if message is None:
        assert code == 0
        return
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert not api.calls and not cli.built


# -- credentials -----------------------------------------------------------------------------

def test_credentials_asks_the_broker_for_the_level_and_duration(cli, api):
    api.on("GET", "/datasets/trials/credentials", CREDENTIALS)
    code, out, err = cli("credentials", "trials", "--level", "write", "--duration", "15M",
                         "--profile", "bob", "--instance", "dev01")
    assert code == 0
    assert api.calls == [("GET", "/datasets/trials/credentials",
                          {"level": "write", "duration": "15m"}, None)]
    assert cli.built == [("dev01", "bob")]
    # the summary names what was vended but never prints the secret or the token
    for text in ("grant", GRANT_ID, "edl-local-trials-read", "ASIAVENDED",
                 "s3://sanofi-datalake-local-sensitive-us-east-1/trials/",
                 "2026-12-02 11:00:00 UTC (in 1h)"):
        assert text in out, text
    assert "se/cr+et" not in out + err and "TOKEN==" not in out + err
    assert "--format env" in err and "edl-api profile trials" in err


def test_credentials_default_to_read_and_no_duration(cli, api):
    api.on("GET", "/datasets/trials/credentials", CREDENTIALS)
    assert cli("credentials", "trials", "--json")[0] == 0
    assert api.calls[0][2] == {"level": "read"}


def test_format_env_prints_export_lines_a_shell_can_eval(cli, api):
    api.on("GET", "/datasets/trials/credentials", CREDENTIALS)
    code, out, err = cli("credentials", "trials", "--format", "env")
    assert code == 0 and err == ""
    assert out == (
        "export AWS_ACCESS_KEY_ID=ASIAVENDED\n"
        "export AWS_SECRET_ACCESS_KEY=se/cr+et\n"
        "export AWS_SESSION_TOKEN=TOKEN==\n"
        "export AWS_CREDENTIAL_EXPIRATION=2026-12-02T11:00:00Z\n"
        "export AWS_DEFAULT_REGION=us-east-1\n")


def test_format_env_on_the_local_cloud_names_its_endpoint(cli, api):
    api.aws_endpoint_url = "http://127.0.0.1:4566"
    api.on("GET", "/datasets/trials/credentials", {**CREDENTIALS, "secret_access_key": "a b'c"})
    code, out, _ = cli("credentials", "trials", "--format", "env")
    assert code == 0
    lines = out.splitlines()
    assert lines[-1] == "export AWS_ENDPOINT_URL=http://127.0.0.1:4566"
    # values are shell-quoted: what the shell sets is the secret as vended
    assert shlex.split(lines[1]) == ["export", "AWS_SECRET_ACCESS_KEY=a b'c"]


def test_format_json_and_json_print_the_apis_answer(cli, api):
    api.on("GET", "/datasets/trials/credentials", CREDENTIALS)
    for argv in (("--format", "json"), ("--json",), ("--json", "--format", "json")):
        code, out, _ = cli("credentials", "trials", *argv)
        assert code == 0 and json.loads(out) == CREDENTIALS


def test_format_credential_process_prints_only_the_sdk_json(cli, api):
    api.on("GET", "/datasets/trials/credentials", CREDENTIALS)
    code, out, err = cli("credentials", "trials", "--format", "credential-process")
    assert code == 0 and err == ""
    assert out.count("\n") == 1
    assert json.loads(out) == {"Version": 1, "AccessKeyId": "ASIAVENDED",
                               "SecretAccessKey": "se/cr+et", "SessionToken": "TOKEN==",
                               "Expiration": "2026-12-02T11:00:00Z"}
    assert access_commands.IN_CREDENTIAL_PROCESS not in os.environ  # restored after the call


def test_credential_process_failures_go_to_stderr_only(cli, api):
    api.on("GET", "/datasets/trials/credentials",
           ApiError(403, "no_grant", "bob holds no grant to read trials"))
    code, out, err = cli("credentials", "trials", "--format", "credential-process")
    assert code == 1 and out == ""
    assert "Error: bob holds no grant to read trials" in err
    assert "edl-api grant request trials --level read" in err


def test_credential_process_started_by_itself_refuses_instead_of_recursing(cli, api, monkeypatch):
    monkeypatch.setenv(access_commands.IN_CREDENTIAL_PROCESS, "1")
    code, out, err = cli("credentials", "trials", "--format", "credential-process")
    assert code == 2 and out == ""
    assert "credentials from edl-api itself" in err and "--profile" in err
    assert not api.calls


def test_an_answer_without_credentials_is_an_error_not_empty_output(cli, api):
    api.on("GET", "/datasets/trials/credentials", {"dataset": "trials"})
    code, out, err = cli("credentials", "trials", "--format", "credential-process")
    assert code == 1 and out == ""
    assert "has no access_key_id, secret_access_key, session_token, expiration" in err


def test_no_grant_names_the_dataset_and_the_request_to_make(cli, api):
    api.on("GET", "/datasets/trials/credentials", ApiError(403, "no_grant", "no grant"))
    code, _, err = cli("credentials", "trials", "--level", "write")
    assert code == 1
    assert "you hold no grant to write trials" in err
    assert "Hint: ask for it: edl-api grant request trials --level write --for 30d" in err


# -- grants ----------------------------------------------------------------------------------

def test_grant_request_sends_the_contracts_body(cli, api):
    api.on("POST", "/datasets/trials/grants", {**GRANT, "state": "requested", "approvers": []})
    code, out, err = cli("grant", "request", "trials", "--level", "read", "--for", "30d",
                         "--justification", "Q3 safety review", "--grantee", BOB)
    assert code == 0
    assert api.calls == [("POST", "/datasets/trials/grants", {},
                          {"level": "read", "duration": "30d",
                           "justification": "Q3 safety review", "grantee": BOB})]
    assert f"grant {GRANT_ID}" in out and "requested" in out
    assert "edl-api grants --pending" in err and f"edl-api grant approve {GRANT_ID}" in err


def test_grant_request_leaves_out_what_was_not_given(cli, api):
    api.on("POST", "/datasets/trials/grants", GRANT)
    code, out, _ = cli("grant", "request", "trials", "--level", "write", "--json")
    assert code == 0 and json.loads(out) == GRANT
    assert api.calls[0][3] == {"level": "write"}


def test_a_duplicate_request_says_which_grant_exists(cli, api):
    api.on("POST", "/datasets/trials/grants", ApiError(
        409, "duplicate_grant", f"bob already has grant {GRANT_ID} (active) for read on trials"))
    code, _, err = cli("grant", "request", "trials", "--level", "read")
    assert code == 1
    assert f"grant {GRANT_ID} (active)" in err
    assert f"Hint: look at it: edl-api grant show {GRANT_ID}" in err


@pytest.mark.parametrize("action, extra, body", [
    ("approve", (), {}),
    ("approve", ("--reason", "ok"), {"reason": "ok"}),
    ("reject", ("--reason", "not needed"), {"reason": "not needed"}),
    ("revoke", (), {}),
    ("revoke", ("--reason", "left the study"), {"reason": "left the study"}),
])
def test_decisions_post_to_the_grants_action(cli, api, action, extra, body):
    api.on("POST", f"/grants/{GRANT_ID}/{action}", GRANT)
    code, out, _ = cli("grant", action, GRANT_ID, *extra, "--json")
    assert code == 0 and json.loads(out)["grant_id"] == GRANT_ID
    assert api.calls == [("POST", f"/grants/{GRANT_ID}/{action}", {}, body)]


def test_a_decision_in_the_wrong_state_exits_non_zero_with_the_message(cli, api):
    api.on("POST", f"/grants/{GRANT_ID}/approve",
           ApiError(409, "wrong_state", f"grant {GRANT_ID} is revoked, not requested"))
    code, out, err = cli("grant", "approve", GRANT_ID)
    assert code == 1 and out == ""
    assert f"grant {GRANT_ID} is revoked, not requested (409 wrong_state)" in err
    assert f"edl-api grant show {GRANT_ID}" in err


def test_an_unknown_grant_exits_3(cli, api):
    code, _, err = cli("grant", "show", "trials.000000000000")
    assert code == 3 and "no route GET /grants/trials.000000000000" in err


def test_grant_show_prints_the_grant(cli, api):
    api.on("GET", f"/grants/{GRANT_ID}", GRANT)
    code, out, _ = cli("grant", "show", GRANT_ID)
    assert code == 0
    for text in ("sensitive", "active", BOB, ALICE, "Q3 safety review", "10d",
                 "2026-12-12 10:00:00 UTC (in 10d)", "2026-12-02 09:00:00"):
        assert text in out, text


def test_grants_without_filters_lists_mine_with_expiry(cli, api):
    grants = [GRANT, {**GRANT, "grant_id": "sales.0123456789ab", "dataset": "sales",
                      "state": "requested", "expires_at": None, "duration_seconds": 43200},
              {**GRANT, "grant_id": "sales.ba9876543210", "dataset": "sales",
               "state": "active", "expires_at": None, "level": "write"},
              {**GRANT, "grant_id": "trials.aaaaaaaaaaaa", "state": "revoked"}]
    api.on("GET", "/grants", {"grants": grants, "next_token": None})
    code, out, err = cli("grants")
    assert code == 0
    assert api.calls[0][2] == {}
    rows = {line.split()[1]: line for line in out.splitlines() if "│ " in line and "." in line}
    assert "user/bob" in rows[GRANT_ID] and "10d" in rows[GRANT_ID]
    assert "12h once approved" in rows["sales.0123456789ab"]
    assert "never" in rows["sales.ba9876543210"]
    assert "revoked" in rows["trials.aaaaaaaaaaaa"]
    header = next(line for line in out.splitlines() if "grantee" in line)
    for column in ("grant", "dataset", "level", "state", "expires in"):
        assert column in header
    assert "4 grants" in err


@pytest.mark.parametrize("argv, query", [
    (("--pending",), {"pending": True}),
    (("--mine",), {"mine": True}),
    (("--dataset", "trials", "--state", "active"), {"dataset": "trials", "state": "active"}),
])
def test_grants_filters_become_the_contracts_query(cli, api, argv, query):
    api.on("GET", "/grants", {"grants": [], "next_token": None})
    assert cli("grants", *argv)[0] == 0
    assert api.calls[0][2] == query


def test_grants_json_is_every_page_keyed_grant_id(cli, api):
    api.on("GET", "/grants", {"grants": [GRANT], "next_token": "t1"},
           {"grants": [{**GRANT, "grant_id": "trials.bbbbbbbbbbbb"}], "next_token": None})
    code, out, _ = cli("grants", "--dataset", "trials", "--json")
    assert code == 0
    answer = json.loads(out)
    assert [g["grant_id"] for g in answer["grants"]] == [GRANT_ID, "trials.bbbbbbbbbbbb"]
    assert answer["next_token"] is None
    assert api.calls[1][2] == {"dataset": "trials", "next_token": "t1"}


# -- audit -----------------------------------------------------------------------------------

EVENTS = [
    {"event_id": "2026-12-02T09:00:00.000Z#0a1b2c3d", "at": "2026-12-02T09:00:00.000Z",
     "dataset": "trials", "action": "request", "actor": BOB, "grant_id": GRANT_ID,
     "level": "read", "decision": "allowed", "reason": None, "detail": {}},
    {"event_id": "2026-12-02T09:10:00.000Z#1a1b2c3d", "at": "2026-12-02T09:10:00.000Z",
     "dataset": "trials", "action": "refuse", "actor": "arn:aws:iam::123456789012:user/carol",
     "grant_id": GRANT_ID, "level": "read", "decision": "refused", "reason": "not_an_approver",
     "detail": {"tried": "approve"}},
]


def test_audit_passes_dataset_and_since_and_prints_events(cli, api):
    api.on("GET", "/audit", {"events": EVENTS, "next_token": None})
    code, out, err = cli("audit", "--dataset", "trials", "--since", "1H")
    assert code == 0
    assert api.calls[0][2] == {"dataset": "trials", "since": "1h"}
    refusal = next(line for line in out.splitlines() if "carol" in line)
    for text in ("2026-12-02 09:10:00", "refuse (approve)", "refused", "user/carol",
                 "not_an_approver"):
        assert text in refusal, text
    assert "2 events" in err


def test_audit_json_is_every_page(cli, api):
    api.on("GET", "/audit", {"events": EVENTS[:1], "next_token": "n"},
           {"events": EVENTS[1:], "next_token": None})
    code, out, _ = cli("audit", "--dataset", "trials", "--json")
    assert code == 0 and json.loads(out) == {"events": EVENTS, "next_token": None}


def test_audit_without_rights_exits_1_with_the_apis_message(cli, api):
    api.on("GET", "/audit", ApiError(403, "forbidden", "only the owner of trials or an admin"))
    code, _, err = cli("audit", "--dataset", "trials")
    assert code == 1 and "only the owner of trials or an admin" in err


# -- profile ---------------------------------------------------------------------------------

DATASET = {"dataset": "trials", "tier": "sensitive", "owner": "alice",
           "home_region": "eu-west-1"}


def read_config(path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read(path)
    return parser


def test_profile_writes_a_credential_process_profile(cli, api, tmp_path):
    api.on("GET", "/datasets/trials", DATASET)
    config = tmp_path / "aws" / "config"
    code, _, err = cli("profile", "trials", "--profile", "bob", "--instance", "dev01",
                       "--config-file", str(config))
    assert code == 0
    section = read_config(config)["profile edl-trials-read"]
    assert dict(section) == {
        "credential_process": shlex.join([
            *access_commands.edl_api_command(), "credentials", "trials", "--level", "read",
            "--format", "credential-process", "--instance", "dev01", "--profile", "bob"]),
        "region": "eu-west-1"}
    assert os.path.isabs(shlex.split(section["credential_process"])[0])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "wrote profile edl-trials-read" in err
    assert "aws s3 ls s3://sanofi-datalake-dev01-sensitive-eu-west-1/trials/ " \
           "--profile edl-trials-read" in err


def test_profile_on_the_local_cloud_names_the_endpoint_and_uses_aws_config_file(
        cli, api, tmp_path, monkeypatch):
    api.aws_endpoint_url = "http://127.0.0.1:4566"
    api.on("GET", "/datasets/trials", {"dataset": DATASET})   # the nested answer shape too
    config = tmp_path / "from-env"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    code, out, _ = cli("profile", "trials", "--level", "write", "--name", "mine", "--json")
    assert code == 0
    section = read_config(config)["profile mine"]
    assert section["endpoint_url"] == "http://127.0.0.1:4566"
    assert section["credential_process"].endswith(
        "--level write --format credential-process --instance local")  # no caller: as is
    assert json.loads(out) == {"profile": "mine", "config_file": str(config),
                               "replaced": False, **dict(section)}


def test_profile_pins_the_caller_from_aws_profile(cli, api, tmp_path, monkeypatch):
    api.on("GET", "/datasets/trials", DATASET)
    monkeypatch.setenv("AWS_PROFILE", "carol")
    config = tmp_path / "config"
    assert cli("profile", "trials", "--config-file", str(config))[0] == 0
    assert read_config(config)["profile edl-trials-read"]["credential_process"].endswith(
        "--profile carol")


def test_a_profile_cannot_call_as_itself(cli, api, tmp_path):
    code, _, err = cli("profile", "trials", "--profile", "edl-trials-read",
                       "--config-file", str(tmp_path / "config"))
    assert code == 2 and "cannot call the broker as itself" in err
    assert not api.calls and not (tmp_path / "config").exists()


def test_profile_for_an_unknown_dataset_exits_3_and_writes_nothing(cli, api, tmp_path):
    code, _, _ = cli("profile", "trials", "--config-file", str(tmp_path / "config"))
    assert code == 3 and not (tmp_path / "config").exists()


EXISTING = """\
# my AWS config: keep this comment
[default]
region = us-east-1
output = json

# work account
[profile work]
sso_session = corp
region = eu-west-1

[profile edl-trials-read]
credential_process = /old/edl-api credentials trials
region = us-west-2
; a note inside the old section

# keep this one: it introduces the next section
[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
"""


def test_profile_replaces_only_its_own_section_and_keeps_every_other_line(cli, api, tmp_path):
    api.on("GET", "/datasets/trials", DATASET)
    config = tmp_path / "config"
    config.write_text(EXISTING)
    config.chmod(0o640)
    code, _, err = cli("profile", "trials", "--profile", "bob", "--config-file", str(config))
    assert code == 0 and "replaced profile edl-trials-read" in err
    text = config.read_text()
    before, _ = EXISTING.split("[profile edl-trials-read]")
    assert text.startswith(before + "[profile edl-trials-read]\ncredential_process = ")
    assert text.endswith("\n# keep this one: it introduces the next section\n"
                         "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n")
    assert "/old/edl-api" not in text and "us-west-2" not in text
    assert text.count("[profile edl-trials-read]") == 1
    parsed = read_config(config)
    assert parsed["profile work"]["sso_session"] == "corp"
    assert parsed["profile edl-trials-read"]["region"] == "eu-west-1"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["config"]  # no temporary file left


def test_writing_the_same_profile_twice_gives_the_same_file(cli, api, tmp_path):
    api.on("GET", "/datasets/trials", DATASET)
    config = tmp_path / "config"
    config.write_text(EXISTING)
    cli("profile", "trials", "--config-file", str(config))
    once = config.read_text()
    cli("profile", "trials", "--config-file", str(config))
    assert config.read_text() == once


def test_a_config_file_that_does_not_parse_is_left_alone(cli, api, tmp_path):
    api.on("GET", "/datasets/trials", DATASET)
    config = tmp_path / "config"
    config.write_text("[default]\nregion = us-east-1\n[default]\nregion = eu-west-1\n")
    code, _, err = cli("profile", "trials", "--config-file", str(config))
    assert code == 1
    assert f"cannot update {config}" in err and "--config-file" in err
    assert config.read_text() == "[default]\nregion = us-east-1\n[default]\nregion = eu-west-1\n"


def test_a_symlinked_config_file_is_written_through(cli, api, tmp_path):
    api.on("GET", "/datasets/trials", DATASET)
    real = tmp_path / "dotfiles-config"
    real.write_text("[default]\nregion = us-east-1\n")
    link = tmp_path / "config"
    link.symlink_to(real)
    assert cli("profile", "trials", "--config-file", str(link))[0] == 0
    assert link.is_symlink() and "profile edl-trials-read" in real.read_text()


@pytest.mark.parametrize("text, expected", [
    ("", "[profile p]\nk = v\n"),
    ("[default]\nregion = x", "[default]\nregion = x\n\n[profile p]\nk = v\n"),
    ("[default]\nregion = x\n", "[default]\nregion = x\n\n[profile p]\nk = v\n"),
    ("[profile p]\nk = old\n[default]\n", "[profile p]\nk = v\n\n[default]\n"),
    ("[profile  p]\nk = old\n", "[profile p]\nk = v\n"),
    ("[default]\nlong = a\n  [profile p]\n", "[default]\nlong = a\n  [profile p]\n\n"
                                               "[profile p]\nk = v\n"),
])
def test_replace_section(text, expected):
    body = aws_profiles.render_section("profile p", {"k": "v"})
    assert aws_profiles.replace_section(text, "profile p", body)[0] == expected


def test_the_default_profile_is_the_default_section():
    assert aws_profiles.section_name("default") == "default"
    assert aws_profiles.section_name("edl-x-read") == "profile edl-x-read"


def test_the_config_file_defaults_to_aws_config_file_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert aws_profiles.config_file_path(None, {}) == tmp_path / ".aws" / "config"
    assert aws_profiles.config_file_path(None, {"AWS_CONFIG_FILE": "/x/c"}) == \
        aws_profiles.Path("/x/c")
    assert aws_profiles.config_file_path("~/mine", {"AWS_CONFIG_FILE": "/x/c"}) == \
        tmp_path / "mine"
