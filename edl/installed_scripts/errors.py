"""Turns any exception a command raises into a message, a hint and an exit code.

EDL's own errors carry all three. botocore's are translated here, so that an unreachable local
cloud, missing credentials or an access denial read as what they mean, never as a traceback.
An exit code of None marks a bug: the caller prints the traceback.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from edl.errors import EdlError

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
           "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken"}


def describe_error(exc: BaseException) -> tuple[str, str | None, int | None]:
    if isinstance(exc, EdlError):
        return exc.message, exc.hint, exc.exit_code
    if isinstance(exc, EndpointConnectionError):
        url = getattr(exc, "kwargs", {}).get("endpoint_url", "the endpoint")
        hint = "start it with `edl local start`" if "127.0.0.1" in str(url) or "localhost" in str(url) \
            else "check your network and the instance's region"
        return f"cannot reach {url}", hint, 1
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found", "pass --profile NAME or set AWS_PROFILE", 1
    if isinstance(exc, ProfileNotFound):
        return str(exc), "list your profiles with `aws configure list-profiles`", 1
    if isinstance(exc, NoRegionError):
        return "no AWS region set", "check the instance's regions in account_config.yaml", 1
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        operation = getattr(exc, "operation_name", "an AWS call")
        message = f"{operation} failed: {code}: {error.get('Message', '')}".rstrip(": ")
        if code in _DENIED:
            return message, "your identity lacks the rights for this; check --profile", 1
        return message, None, 1
    if isinstance(exc, BotoCoreError):
        return f"AWS call failed: {exc}", None, 1
    return f"internal error: {exc.__class__.__name__}: {exc}", "this is a bug in EDL; please report it", None
