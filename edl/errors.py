"""The one error family of EDL.

Every failure a user can cause or meet is an `EdlError`: a message that says what is wrong, an
optional hint that says what to do, and an exit code. The command layers (`edl`, `edl-api`) catch every
exception in one place and turn it into a message with `describe_error`.
"""

from __future__ import annotations


class EdlError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  Hint: {self.hint}"


class UsageError(EdlError):
    exit_code = 2


class ConfigError(EdlError):
    """A config file is missing, unreadable or has a bad key."""


class NamingError(UsageError):
    """A name (dataset, tier, instance) breaks the naming rules."""


class TemplateError(EdlError):
    """A template failed to render or to pass cfn-lint."""


class DeployError(EdlError):
    """A stack failed to deploy; the message names the stack and the first failure reason."""


class AwsAccessError(EdlError):
    """The caller lacks the rights for an AWS call, or the endpoint cannot be reached."""


class LocalCloudError(EdlError):
    """The embedded local cloud could not be started, stopped or reached."""


# AWS error codes that mean "your identity may not do this"
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
           "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken"}


def describe_error(exc: BaseException, program: str = "edl") -> tuple[str, str | None, int | None]:
    """A message, a hint and an exit code for any error a command raises; an exit code of None
    marks a bug (the caller prints the traceback). EDL's own errors carry all three; botocore's
    are translated so that an unreachable local cloud, missing credentials or an access denial
    read as what they mean."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ProfileNotFound,
    )

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
    return (f"internal error: {exc.__class__.__name__}: {exc}",
            f"this is a bug in {program}; please report it (run with --debug for details)", None)
