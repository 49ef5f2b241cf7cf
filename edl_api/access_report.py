"""How `edl-api` shows grants, audit events and vended credentials (tables for people; the
commands print the raw JSON with --json), and the exact shapes other programs read: `export`
lines for a shell and the AWS SDKs' `credential_process` JSON.

Principals are shown without the `arn:aws:<service>::<account>:` part (`user/bob`,
`assumed-role/AWSReservedSSO_Analyst_ab12/jane`); --json keeps the full ARNs.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from edl.durations import format_duration
from edl.errors import EdlError
from edl.ui import UI
from edl_api.report import details, first, table, when

# The credentials answer's keys, and the names the AWS SDKs give them
_CREDENTIAL_KEYS = (("access_key_id", "AccessKeyId"), ("secret_access_key", "SecretAccessKey"),
                    ("session_token", "SessionToken"), ("expiration", "Expiration"))


def moment(value: Any) -> datetime | None:
    """An ISO-8601 time (`…Z` or with an offset) as an aware datetime; None if it is none."""
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def short_principal(arn: Any) -> str:
    """`arn:aws:iam::123456789012:user/bob` → `user/bob`; anything else as it is."""
    text = "" if arn is None else str(arn)
    parts = text.split(":", 5)
    return parts[5] if len(parts) == 6 and parts[0] == "arn" else text


def time_left(until: datetime | None, now: datetime) -> str:
    if until is None:
        return ""
    seconds = (until - now).total_seconds()
    return format_duration(seconds) if seconds > 0 else "expired"


# -- grants ----------------------------------------------------------------------------------

def expires_in(grant: dict[str, Any], now: datetime) -> str:
    """What a table shows of a grant's expiry: the time left while it is active, the asked-for
    duration while it waits, nothing once it has ended."""
    state = grant.get("state")
    if state == "active":
        until = moment(grant.get("expires_at"))
        return time_left(until, now) if until else "never"
    if state == "requested":
        asked = grant.get("duration_seconds")
        return f"{format_duration(asked)} once approved" if asked else ""
    return ""


def grants_table(ui: UI, grants: Sequence[dict[str, Any]], now: datetime,
                 title: str | None = None) -> None:
    rows = [(g.get("grant_id"), g.get("dataset"), g.get("level"), g.get("state"),
             short_principal(g.get("grantee")), expires_in(g, now)) for g in grants]
    table(ui, title, ("grant", "dataset", "level", "state", "grantee", "expires in"), rows)
    ui.info(f"{len(rows)} grant{'s' if len(rows) != 1 else ''}")


def grant_details(ui: UI, grant: dict[str, Any], now: datetime) -> None:
    until = moment(grant.get("expires_at"))
    expires = f"{when(grant['expires_at'])} UTC (in {time_left(until, now)})" \
        if until and grant.get("state") == "active" else when(grant.get("expires_at"))
    asked = grant.get("duration_seconds")
    details(ui, f"grant {grant.get('grant_id', '')}", [
        ("dataset", grant.get("dataset")),
        ("tier", grant.get("tier")),
        ("level", grant.get("level")),
        ("state", grant.get("state")),
        ("grantee", grant.get("grantee")),
        ("requester", grant.get("requester")),
        ("approvers", ", ".join(str(a) for a in grant.get("approvers") or [])),
        ("decided by", grant.get("decided_by")),
        ("justification", grant.get("justification")),
        ("reason", grant.get("reason")),
        ("asked for", format_duration(asked) if asked else None),
        ("expires", expires),
        ("created", when(grant.get("created_at"))),
        ("updated", when(grant.get("updated_at"))),
    ])


def grant_next_step(grant: dict[str, Any]) -> str | None:
    """What the user can do next with a grant they just made or decided, if anything."""
    grant_id, state = grant.get("grant_id", "ID"), grant.get("state")
    if state == "requested":
        return (f"grant {grant_id} waits for a decision: the dataset's owner or a platform admin "
                f"sees it with `edl-api grants --pending` and decides with "
                f"`edl-api grant approve {grant_id}` or `edl-api grant reject {grant_id} "
                '--reason "…"`')
    if state == "active":
        return (f"grant {grant_id} is active; credentials: edl-api credentials "
                f"{grant.get('dataset', 'DATASET')} --level {grant.get('level', 'read')}")
    return None


# -- audit -----------------------------------------------------------------------------------

def audit_action(event: dict[str, Any]) -> str:
    action = str(event.get("action") or "")
    detail = event.get("detail")
    tried = detail.get("tried") if isinstance(detail, dict) else None
    return f"{action} ({tried})" if tried else action


def audit_table(ui: UI, events: Sequence[dict[str, Any]]) -> None:
    rows = [(when(first(e, "at", "event_id")), e.get("dataset"), audit_action(e),
             e.get("decision"), short_principal(e.get("actor")), e.get("grant_id"),
             e.get("level"), e.get("reason")) for e in events]
    table(ui, None, ("at (UTC)", "dataset", "action", "decision", "actor", "grant", "level",
                     "reason"), rows)
    ui.info(f"{len(rows)} event{'s' if len(rows) != 1 else ''}")


# -- credentials -----------------------------------------------------------------------------

def credential_values(answer: dict[str, Any]) -> dict[str, str]:
    """The SDK-named credentials of a broker answer; an error if the answer lacks one."""
    missing = [key for key, _ in _CREDENTIAL_KEYS if not answer.get(key)]
    if missing:
        raise EdlError(f"the broker's answer has no {', '.join(missing)}",
                       hint="this is a mismatch between edl-api and the API's version")
    return {sdk: str(answer[key]) for key, sdk in _CREDENTIAL_KEYS}


def credential_process_json(answer: dict[str, Any]) -> dict[str, Any]:
    """What an AWS SDK reads from a `credential_process` program's stdout."""
    return {"Version": 1, **credential_values(answer)}


def env_lines(answer: dict[str, Any], region: str, endpoint_url: str | None) -> str:
    """`export AWS_…=…` lines for a POSIX shell (`eval "$(edl-api credentials … --format env)"`);
    AWS_ENDPOINT_URL only where the lake has its own endpoint (the local cloud)."""
    values = credential_values(answer)
    exports = {
        "AWS_ACCESS_KEY_ID": values["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": values["SecretAccessKey"],
        "AWS_SESSION_TOKEN": values["SessionToken"],
        "AWS_CREDENTIAL_EXPIRATION": values["Expiration"],
        "AWS_DEFAULT_REGION": str(answer.get("region") or region),
    }
    if endpoint_url:
        exports["AWS_ENDPOINT_URL"] = endpoint_url
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items())


def credentials_summary(ui: UI, answer: dict[str, Any], now: datetime) -> None:
    """What was vended, without the secrets (they go out only with --format or --json)."""
    until = moment(answer.get("expiration"))
    where = f"s3://{answer['bucket']}/{answer.get('prefix') or ''}" if answer.get("bucket") \
        else None
    details(ui, f"credentials for {answer.get('dataset', '')} ({answer.get('level', '')})", [
        ("basis", answer.get("basis")),
        ("grant", answer.get("grant_id")),
        ("role", answer.get("role_arn")),
        ("data", where),
        ("region", answer.get("region")),
        ("access key", answer.get("access_key_id")),
        ("expires", f"{when(answer.get('expiration'))} UTC (in {time_left(until, now)})"
         if until else None),
    ])
