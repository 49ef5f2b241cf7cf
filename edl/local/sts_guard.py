"""What STS refuses and moto grants: assuming a role that does not exist, or for too long.

moto checks a role's trust policy only when the role exists (measured, DESIGN §8): assuming a
role that does not exist yet succeeds, and since moto resolves a session's rights by the role's
name at every call, that session silently gains the role's rights the day a role of that name is
created - say when `edl deploy-dataset` makes a dataset's reader role. moto also accepts any
`DurationSeconds`. AWS refuses both; so does `AssumeRoleGuard`, which wraps moto's STS backend (so
it sees exactly the requests moto's dispatcher routes to STS, however they are addressed) and
reads each request's parameters with moto's own STS parser, so it decides on what moto would act
on:

- `AssumeRole` of a role that is not in moto's IAM: `AccessDenied` (403), as AWS answers;
- `DurationSeconds` under 900, over 43,200, or over the role's `MaxSessionDuration` (default
  3,600): `ValidationError` (400), with AWS's messages;
- `AssumeRoleWithWebIdentity` and `AssumeRoleWithSAML`, which moto answers for any role without
  checking a token or a signature: `AccessDenied` - the local cloud trusts no identity provider.

A session is also pinned to the role it was minted for: AWS ties a session to the role's unique
id, so a role deleted and created again under the same name gives its new rights to no old
session. moto goes by the name. `pin_session` records the role's id on moto's session object;
`session_is_current` is false once no role with that id exists, and `CurrentSessionsOnly`, in
front of moto, refuses such a session's requests (as `api_auth.MotoKeyStore` does for the REST
API and presigned URLs).
"""

from __future__ import annotations

import io
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

log = logging.getLogger("edl.local.sts")

MIN_DURATION_SECONDS = 900
MAX_DURATION_SECONDS = 43200
DEFAULT_DURATION_SECONDS = 3600
DEFAULT_MAX_SESSION_DURATION = 3600
_ROLE_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/.+$")
_FEDERATED_ACTIONS = ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML")
_ACCESS_KEY_IN_ANSWER = re.compile(rb"<AccessKeyId>\s*(ASIA[A-Z0-9]+)\s*</AccessKeyId>")
_ACCESS_KEY_IN_REQUEST = re.compile(r"Credential=(ASIA[A-Z0-9]+)/")
_PINNED_ROLE_ID = "edl_role_id"


@dataclass(frozen=True)
class StsRefusal:
    status: str
    code: str
    message: str

    def body(self) -> bytes:
        return (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                f"<Type>Sender</Type><Code>{self.code}</Code>"
                f"<Message>{escape(self.message)}</Message></Error>"
                f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>").encode()


def _access_denied(message: str) -> StsRefusal:
    return StsRefusal("403 Forbidden", "AccessDenied", message)


def _invalid(message: str) -> StsRefusal:
    return StsRefusal("400 Bad Request", "ValidationError", message)


def find_role(role_arn: str):
    """The role of moto's IAM (in this process) with exactly this ARN, or None."""
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends

    match = _ROLE_ARN.match(role_arn or "")
    if match is None:
        return None
    try:
        return iam_backends[match["account"]][match["partition"]].get_role_by_arn(role_arn)
    except (KeyError, NotFoundException):
        return None


def _max_session_duration(role) -> int:
    """The role's MaxSessionDuration. moto's CloudFormation update sets it from the role's
    `RoleDescription` (moto 5.2): what is not a number counts as the default."""
    try:
        return int(role.max_session_duration)
    except (TypeError, ValueError):
        return DEFAULT_MAX_SESSION_DURATION


def check_assume_role(role_arn: str | None, duration: int) -> StsRefusal | None:
    """Why AWS would refuse this `AssumeRole`, or None if it would not (before policies)."""
    role = find_role(role_arn or "")
    if role is None:
        return _access_denied(f"Not authorized to perform sts:AssumeRole on resource: "
                              f"{role_arn}: no such role exists")
    if duration < MIN_DURATION_SECONDS:
        return _invalid(f"1 validation error detected: Value '{duration}' at 'durationSeconds' "
                        f"failed to satisfy constraint: Member must have value greater than or "
                        f"equal to {MIN_DURATION_SECONDS}")
    if duration > MAX_DURATION_SECONDS:
        return _invalid(f"1 validation error detected: Value '{duration}' at 'durationSeconds' "
                        f"failed to satisfy constraint: Member must have value less than or "
                        f"equal to {MAX_DURATION_SECONDS}")
    if duration > _max_session_duration(role):
        return _invalid("The requested DurationSeconds exceeds the MaxSessionDuration set for "
                        "this role.")
    return None


# -- sessions pinned to their role ------------------------------------------------------------

class _SessionIndex:
    """moto's sessions by access key. moto keeps each backend's sessions in a list that only
    grows (every AssumeRole adds one) and is replaced on reset; looking a key up in it costs a
    pass over every session minted so far, on every request. The index reads each list's new
    entries once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, Any] = {}
        self._seen: dict[int, tuple[list, int]] = {}   # id(list) -> (the list, entries read)

    def find(self, access_key_id: str):
        from moto.sts.models import sts_backends

        with self._lock:
            lists = [backend.assumed_roles for account in list(sts_backends.keys())
                     for backend in list(sts_backends[account].values())]
            if {id(x) for x in lists} != set(self._seen):   # a reset, or a new account
                self._by_key.clear()
                self._seen = {id(x): (x, 0) for x in lists}
            for sessions in lists:
                _, read = self._seen[id(sessions)]
                for session in sessions[read:]:
                    self._by_key[session.access_key_id] = session
                self._seen[id(sessions)] = (sessions, len(sessions))
            return self._by_key.get(access_key_id)


_sessions = _SessionIndex()


def find_session(access_key_id: str):
    """moto's session (an `AssumedRole`) holding this temporary key, in any account, or None."""
    return _sessions.find(access_key_id)


def pin_session(access_key_id: str, role_id: str) -> None:
    session = find_session(access_key_id)
    if session is not None:
        setattr(session, _PINNED_ROLE_ID, role_id)


def session_is_current(session) -> bool:
    """Whether the session's role still exists and is the one it was minted for."""
    role = find_role(session.role_arn)
    return role is not None and getattr(session, _PINNED_ROLE_ID, role.id) == role.id


class CurrentSessionsOnly:
    """WSGI middleware in front of moto: a session of a deleted role is over, as in AWS."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response):
        found = _ACCESS_KEY_IN_REQUEST.search(environ.get("HTTP_AUTHORIZATION", "")
                                              or unquote(environ.get("QUERY_STRING", "")))
        session = find_session(found.group(1)) if found else None
        if session is None or session_is_current(session):
            return self.app(environ, start_response)
        log.info("sts - refused a session of %s, which no longer exists", session.role_arn)
        refusal = StsRefusal("403 Forbidden", "InvalidClientTokenId",
                             f"The security token included in the request is invalid: its role "
                             f"{session.role_arn} was deleted since the session began")
        return _answer(refusal, start_response)


# -- the guard ---------------------------------------------------------------------------------

def _answer(refusal: StsRefusal, start_response) -> list[bytes]:
    body = refusal.body()
    start_response(refusal.status, [("Content-Type", "text/xml"),
                                    ("Content-Length", str(len(body)))])
    return [body]


class AssumeRoleGuard:
    """WSGI middleware around moto's STS backend."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response):
        refusal, role = self._inspect(environ)
        if refusal is not None:
            log.info("sts - refused: %s", refusal.message)
            return _answer(refusal, start_response)
        if role is None:
            return self.app(environ, start_response)
        answer = b"".join(self.app(environ, start_response))   # a few hundred bytes
        minted = _ACCESS_KEY_IN_ANSWER.search(answer)
        if minted:
            pin_session(minted.group(1).decode(), role.id)  # type: ignore[attr-defined]  # moto Role
        return [answer]

    @staticmethod
    def _inspect(environ: dict) -> tuple[StsRefusal | None, object | None]:
        """(why it is refused, or None; the role an AssumeRole that may go ahead is for)."""
        from moto.core.request import normalize_request
        from moto.moto_server.werkzeug_app import BackendRequest
        from moto.sts.responses import TokenResponse

        # Read the body once, and give moto and the parser each an identical copy.
        raw = BackendRequest(environ).get_data()
        parsing = dict(environ)
        for target in (environ, parsing):
            target["wsgi.input"] = io.BytesIO(raw)
            if raw or "CONTENT_LENGTH" in target:
                target["CONTENT_LENGTH"] = str(len(raw))
        try:
            request = normalize_request(BackendRequest(parsing))
            sts = TokenResponse()
            sts.setup_class(request, request.raw_url, dict(request.headers))
            action = sts._get_action()
            if action in _FEDERATED_ACTIONS:
                refused = _access_denied(f"{action} is refused: the local cloud trusts no "
                                         "identity provider; sign with a local user's key "
                                         "(edl local env)")
                return refused, None
            if action != "AssumeRole":
                return None, None
            role_arn = sts._get_param("RoleArn")
            duration = sts._get_int_param("DurationSeconds", DEFAULT_DURATION_SECONDS)
        except Exception:
            log.exception("sts - a request could not be parsed")
            return _invalid("the request could not be read as an STS request"), None
        refusal = check_assume_role(role_arn, duration)
        return refusal, (None if refusal else find_role(role_arn))
