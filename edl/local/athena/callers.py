"""Who calls the local Athena, and whether they may.

`AthenaCallers.authenticate` verifies an Athena API call's SigV4 signature against the local
cloud's keys (`api_auth.SigV4Verifier` over `MotoKeyStore`, for the service `athena`), giving the
caller's ARN and the keys that signed it: the query runs with exactly those. Until IAM is enforced
(moto's switch, before the bootstrap), moto takes any key, and so does the local Athena.

`AthenaCallers.authorize` evaluates the caller's IAM policies for `athena:<action>` on a resource
(the workgroup's ARN) with moto's own policy code (`moto.iam.access_control`), the one moto's IAM
enforcement applies to every other call, so the same policy means the same answer everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from edl.local.api_auth import AuthError, MotoKeyStore, SignedRequest, SigV4Verifier
from edl.local.athena.tables import Credentials

log = logging.getLogger("edl.local.athena")


class ApiError(Exception):
    """An error answer of Athena's API (HTTP 400 with `__type`, as Athena answers)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def invalid(message: str) -> ApiError:
    return ApiError("InvalidRequestException", message)


# -- who calls --------------------------------------------------------------------------------

@dataclass(frozen=True)
class AthenaCaller:
    arn: str
    credentials: Credentials
    enforced: bool


def _iam_enforced() -> bool:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def _environ_headers(environ: dict) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
               if key.startswith("HTTP_") and isinstance(value, str)}
    for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
        if environ.get(key):
            headers[name] = environ[key]
    return headers


def _credential_scope(authorization: str) -> list[str]:
    _, found, rest = authorization.partition("Credential=")
    return rest.split(",", 1)[0].strip().split("/") if found else []


class AthenaCallers:
    """Verifies who signed a call and whether their IAM policies allow it."""

    def __init__(self, account_id: str, enforced: Callable[[], bool] = _iam_enforced) -> None:
        self.account_id = account_id
        self.keys = MotoKeyStore(account_id)
        self.enforced = enforced

    def authenticate(self, environ: dict, body: bytes) -> AthenaCaller:
        headers = _environ_headers(environ)
        scope = _credential_scope(headers.get("Authorization", ""))
        if len(scope) != 5:
            raise ApiError("MissingAuthenticationTokenException", "Missing Authentication Token")
        access_key, region = scope[0], scope[2]
        token = headers.get("X-Amz-Security-Token")
        if not self.enforced():
            # moto takes any key until enforcement is on; so does its Athena, signing its
            # Glue and S3 calls with the caller's key id (moto checks no signature then).
            key = self.keys.find(access_key)
            secret = key.secret_access_key if key else "not-checked"
            arn = key.arn if key else f"arn:aws:iam::{self.account_id}:user/{access_key}"
            return AthenaCaller(arn, Credentials(access_key, secret, token, region), False)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        host = headers.get("Host", "127.0.0.1")
        request = SignedRequest(method=environ.get("REQUEST_METHOD", "POST"),
                                url=f"http://{host}{raw}", headers=headers, body=body,
                                source_ip=environ.get("REMOTE_ADDR", "127.0.0.1"))
        try:
            caller = SigV4Verifier(self.keys, region, service="athena").verify(request)
        except AuthError as error:
            code = {"InvalidClientTokenId": "UnrecognizedClientException"}.get(error.code,
                                                                               error.code)
            raise ApiError(code, error.message, 403 if code != "InvalidSignatureException"
                           else 400) from None
        key = caller.key
        return AthenaCaller(key.arn, Credentials(key.access_key_id, key.secret_access_key,
                                                 key.session_token, region), True)

    def authorize(self, caller: AthenaCaller, action: str, resource: str) -> None:
        """AccessDeniedException unless the caller's policies allow `athena:<action>` on the
        resource (moto's policy evaluation, the one its IAM enforcement uses)."""
        if not caller.enforced:
            return
        from moto.iam.access_control import (
            CreateAccessKeyFailure,
            IAMPolicy,
            PermissionResult,
            create_access_key,
        )

        headers = ({"X-Amz-Security-Token": caller.credentials.session_token}
                   if caller.credentials.session_token else {})
        try:
            key = create_access_key(self.account_id, "aws", caller.credentials.access_key_id,
                                    headers)
            policies = key.collect_policies()
        except CreateAccessKeyFailure:
            policies = []
        permitted = False
        for policy in policies:
            result = IAMPolicy(policy).is_action_permitted(f"athena:{action}", resource)
            if result == PermissionResult.DENIED:
                permitted = False
                break
            permitted = permitted or result == PermissionResult.PERMITTED
        if not permitted:
            log.info("athena - %s refused athena:%s on %s", caller.arn, action, resource)
            raise ApiError("AccessDeniedException",
                           f"User: {caller.arn} is not authorized to perform: athena:{action} on "
                           f"resource: {resource} because no identity-based policy allows the "
                           f"athena:{action} action")
