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
"""

from __future__ import annotations

import io
import logging
import re
import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape

log = logging.getLogger("edl.local.sts")

MIN_DURATION_SECONDS = 900
MAX_DURATION_SECONDS = 43200
DEFAULT_DURATION_SECONDS = 3600
DEFAULT_MAX_SESSION_DURATION = 3600
_ROLE_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/.+$")
_FEDERATED_ACTIONS = ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML")


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
    if duration > int(role.max_session_duration or DEFAULT_MAX_SESSION_DURATION):
        return _invalid("The requested DurationSeconds exceeds the MaxSessionDuration set for "
                        "this role.")
    return None


class AssumeRoleGuard:
    """WSGI middleware around moto's STS backend."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response):
        refusal = self._refusal(environ)
        if refusal is None:
            return self.app(environ, start_response)
        log.info("sts - refused: %s", refusal.message)
        body = refusal.body()
        start_response(refusal.status, [("Content-Type", "text/xml"),
                                        ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def _refusal(environ: dict) -> StsRefusal | None:
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
                return _access_denied(f"{action} is refused: the local cloud trusts no identity "
                                      "provider; sign with a local user's key (edl local env)")
            if action != "AssumeRole":
                return None
            role_arn = sts._get_param("RoleArn")
            duration = sts._get_int_param("DurationSeconds", DEFAULT_DURATION_SECONDS)
        except Exception:  # noqa: BLE001 - fail closed: what is not understood is not let through
            log.exception("sts - a request could not be parsed")
            return _invalid("the request could not be read as an STS request")
        return check_assume_role(role_arn, duration)
