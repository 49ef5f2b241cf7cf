"""The one error family of EDL.

Every failure a user can cause or meet is an `EdlError`: a message that says what is wrong, an
optional hint that says what to do, and an exit code. The command layer catches it in one place
and prints it without a traceback.
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
