"""The tier policy (`tiers.yaml`, DESIGN §5) as pure checks: what a grant request must carry,
who may decide it, who may end it, and what a caller reaches without a grant.

Nothing here reads AWS: the handlers pass in the caller (`Actor`), the dataset's owner and the
tier's `TierPolicy`, and turn a `PolicyRefusal` into the HTTP status and code it names.

- request: the level must be one the tier grants; a tier with `justification` needs one; a tier
  with `max_grant_days` needs a duration, at most that long; any duration is more than zero.
  Naming a grantee other than yourself takes the dataset's owner or a platform admin.
- approve / reject (`approval`): `owner_or_admin` takes the owner or a platform admin;
  `second_person` also takes someone who is neither the requester nor the grantee. Deciding
  your own request, or a grant for yourself, is refused whatever the tier.
- a request made by someone who may approve it is active at once (not on `second_person`).
- revoke: the owner, a platform admin, or the grantee giving up their own access.
- without a grant: the tier's `default_read` reads through the default role; the owner reads
  and writes (`owner`); a platform admin reads and writes (`break_glass`, audited as such).
"""

from __future__ import annotations

from dataclasses import dataclass

from edl.config import TierPolicy
from edl.durations import format_duration, parse_duration
from edl.errors import EdlError, UsageError

DAY = 86400
# The longest any grant may last, whatever the tier says (a bound on the dates it computes).
MAX_GRANT_SECONDS = 3650 * DAY
TEXT_MAX = 1000


class PolicyRefusal(EdlError):
    """A request the tier policy refuses: the HTTP `status` and the stable `code` to answer."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Actor:
    """Who acts, as the policy sees them: the ARN grants name, the person (None for a service
    or an unnamed role session) and whether they are the platform admin."""

    principal: str
    person: str | None
    is_admin: bool

    def owns(self, owner: str) -> bool:
        return self.person is not None and self.person == owner

    def is_owner_or_admin(self, owner: str) -> bool:
        return self.is_admin or self.owns(owner)


def check_request(policy: TierPolicy, *, dataset: str, level: str, duration: int | None,
                  justification: str | None) -> None:
    """What a grant request must carry under `policy`; `PolicyRefusal` otherwise."""
    if level not in policy.grantable_levels:
        extra = " (every employee reads it without a grant: edl-api credentials " \
                f"{dataset})" if policy.default_read and level == "read" else ""
        raise PolicyRefusal(403, "level_not_grantable",
                            f"the {policy.name} tier grants no {level} access{extra}; "
                            f"grantable: {', '.join(policy.grantable_levels) or 'none'}")
    check_text(justification, what="justification")
    if policy.justification and not (justification or "").strip():
        raise PolicyRefusal(400, "justification_required",
                            f"a grant on a {policy.name} dataset needs a justification",
                            hint="add --justification \"why you need it\"")
    limit = policy.max_grant_days * DAY if policy.max_grant_days else MAX_GRANT_SECONDS
    if duration is None:
        if policy.max_grant_days:
            raise PolicyRefusal(400, "expiry_required",
                                f"a grant on a {policy.name} dataset needs an expiry of at most "
                                f"{policy.max_grant_days} days", hint="add --for 30d")
        return
    if duration <= 0:
        raise PolicyRefusal(400, "invalid_duration", "a grant's duration must be more than zero")
    if duration > limit:
        raise PolicyRefusal(400, "expiry_too_long",
                            f"{format_duration(duration)} is longer than the {policy.name} "
                            f"tier allows ({limit // DAY} days)",
                            hint=f"ask for --for {limit // DAY}d or less")


def check_grantee(actor: Actor, grantee: str, owner: str) -> None:
    """Naming someone else as grantee takes the owner or a platform admin."""
    if grantee != actor.principal and not actor.is_owner_or_admin(owner):
        raise PolicyRefusal(403, "grantee_not_allowed",
                            "only the dataset's owner or a platform admin may request a grant "
                            "for someone else", hint="leave out --grantee to ask for yourself")


def may_approve(policy: TierPolicy, actor: Actor, *, requester: str, grantee: str,
                owner: str) -> bool:
    """Whether `actor` may approve or reject a grant requested by `requester` for `grantee`."""
    try:
        check_decision(policy, actor, requester=requester, grantee=grantee, owner=owner)
    except PolicyRefusal:
        return False
    return True


def check_decision(policy: TierPolicy, actor: Actor, *, requester: str, grantee: str,
                   owner: str) -> None:
    """Who may approve or reject: see the module's rules; `PolicyRefusal` (403) otherwise."""
    if actor.principal in (requester, grantee):
        whose = "your own request" if actor.principal == requester else "a grant for yourself"
        raise PolicyRefusal(403, "self_approval", f"you may not decide {whose}",
                            hint="the dataset's owner or a platform admin decides it")
    if policy.approval == "none":
        return
    if not actor.is_owner_or_admin(owner):
        raise PolicyRefusal(403, "not_an_approver",
                            f"grants on this {policy.name} dataset are decided by its owner "
                            f"({owner}) or a platform admin")


def active_at_once(policy: TierPolicy, actor: Actor, *, grantee: str, owner: str) -> bool:
    """Whether a request made by `actor` needs no one else's approval."""
    if policy.approval == "none":
        return True
    if policy.approval == "second_person":
        return False
    return grantee != actor.principal and actor.is_owner_or_admin(owner)


def check_revoke(actor: Actor, *, grantee: str, owner: str) -> None:
    if actor.principal == grantee or actor.is_owner_or_admin(owner):
        return
    raise PolicyRefusal(403, "not_a_revoker",
                        f"only the dataset's owner ({owner}), a platform admin or the grantee "
                        "may revoke a grant")


def implicit_basis(policy: TierPolicy, actor: Actor, *, level: str, owner: str) -> str | None:
    """How `actor` reaches `level` without a grant, or None: `default` (the tier's default
    read), `owner`, or `break_glass` (a platform admin)."""
    if level == "read" and policy.default_read:
        return "default"
    if actor.owns(owner):
        return "owner"
    if actor.is_admin:
        return "break_glass"
    return None


def parse_seconds(text: str, *, what: str) -> int:
    """A duration of the request (`30d`, `15m`) in seconds; zero, negative or unreadable is a
    400 `invalid_duration`."""
    try:
        return parse_duration(text, what=what)
    except UsageError as exc:
        raise PolicyRefusal(400, "invalid_duration", exc.message, hint=exc.hint) from None


def check_text(text: str | None, *, what: str, required: bool = False) -> str | None:
    """A free text of the request (a reason): present when `required`, at most `TEXT_MAX`."""
    if required and not (text or "").strip():
        raise PolicyRefusal(400, "reason_required", f"give a {what}")
    if text is not None and len(text) > TEXT_MAX:
        raise PolicyRefusal(400, "text_too_long",
                            f"the {what} has {len(text)} characters; at most {TEXT_MAX} are kept")
    return text


class TierOrderError(EdlError):
    """A pipeline would write data of a higher tier into a lower one."""


def check_output_tiers(inputs: dict[str, str], outputs: dict[str, str]) -> None:
    """A pipeline's outputs are at least as protected as its most protected input (DESIGN §4):
    `inputs` and `outputs` map dataset → tier; `TierOrderError` names the datasets otherwise."""
    from edl.naming import TIERS

    if not inputs:
        return
    highest = max(inputs.values(), key=TIERS.index)
    sources = sorted(d for d, tier in inputs.items() if tier == highest)
    lower = sorted(f"{d} ({tier})" for d, tier in outputs.items()
                   if TIERS.index(tier) < TIERS.index(highest))
    if lower:
        raise TierOrderError(
            f"output(s) {', '.join(lower)} are of a lower tier than input(s) "
            f"{', '.join(sources)} ({highest}): {highest} data may only go to {highest} "
            "datasets" + (" or higher" if highest != TIERS[-1] else ""),
            hint=f"write to a dataset of tier {highest}"
            + (" or higher" if highest != TIERS[-1] else "") + ", or drop the input")
