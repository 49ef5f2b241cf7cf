"""`edl.errors.describe_error`: the one translation of any exception into what a user reads,
shared by `edl` and `edl-api`."""

from __future__ import annotations

from botocore.exceptions import ClientError, EndpointConnectionError

from edl.errors import UsageError, describe_error


def test_edl_errors_keep_their_message_hint_and_exit_code():
    assert describe_error(UsageError("bad name", hint="use letters")) == ("bad name", "use letters", 2)


def test_an_access_denial_reads_as_missing_rights_for_both_commands():
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")
    for program in ("edl", "edl-api"):
        message, hint, code = describe_error(denied, program)
        assert message == "GetObject failed: AccessDenied: no"
        assert "lacks the rights" in (hint or "") and code == 1


def test_an_unreachable_local_cloud_says_how_to_start_it():
    message, hint, code = describe_error(
        EndpointConnectionError(endpoint_url="http://127.0.0.1:4566/"))
    assert message == "cannot reach http://127.0.0.1:4566/" and "edl local start" in (hint or "")
    assert code == 1


def test_a_bug_has_no_exit_code_and_names_the_program():
    message, hint, code = describe_error(KeyError("x"), "edl-api")
    assert code is None and message.startswith("internal error: KeyError")
    assert "bug in edl-api" in (hint or "")
