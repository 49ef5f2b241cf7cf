"""Grants as data: the grant model, its states and transitions, and its DynamoDB store.

A grant gives one principal (the grantee, a person's IAM ARN) one access level on one dataset
(DESIGN §5). It is recorded here, never as an IAM object: the credential broker reads it and
vends the level's role, so no trust policy, group or user policy grows with the number of
grants. The table is `edl-<instance>-grants` (HASH `dataset`, RANGE `grant_id`, index
`by-principal` on `principal`/`dataset`).

States and transitions (`transition`, pure; anything else is `GrantStateError`, a 409):

    requested --approve--> active --revoke--> revoked
              --reject---> rejected   --expire--> expired   (the sweep, once expires_at passed)

Beside each grant item the table holds two small items of the same dataset, which carry no
`principal` (so they stay out of the index):

- the *open lock* `open#<level>#<grantee>` exists while a grant of (dataset, grantee, level) is
  requested or active, and is written with `attribute_not_exists`: two open grants of one
  (dataset, grantee, level) cannot exist, a second request is `DuplicateGrantError`;
- the *active pointer* `active#<level>#<grantee>` (`points_to`, `expires_at`) exists while the
  grant is active: the broker's check is one GetItem of it (`active_grant`), never a scan.

And the sweep finds the grants whose time is up without a scan (a scan reads the whole table,
which on the local cloud's moto holds the process for seconds at 100,000 items): the partition
`#expiry` (no dataset's name starts with `#`) holds the *expiry schedule*, one small item per hour
and shard, `<yyyy-mm-ddThh>#<shard>`, whose string set `grants` lists the grants that expire in
that hour, and the `cursor` item, the first hour not yet cleared. The sweep reads the hours from
the cursor to now by key (16 GetItems an hour), and moves the cursor past an hour once none of
its grants is active any more. A lake from before the schedule has no cursor: the first sweep
scans once, schedules what it finds and sets it.

Every grant write is conditional on the state it was read in, so a race is a 409 too. The order
of the writes keeps every crash on the safe side: activation schedules the expiry, commits the
grant, then writes the pointer (a crash between leaves an active grant that vends nothing, or a
schedule entry of a grant that is not active, which the sweep drops); revoke and expiry delete
the pointer first (refusing new credentials at once), then commit.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from edl.errors import EdlError

REQUESTED, ACTIVE, REJECTED, REVOKED, EXPIRED = (
    "requested", "active", "rejected", "revoked", "expired")
STATES = (REQUESTED, ACTIVE, REJECTED, REVOKED, EXPIRED)
OPEN_STATES = (REQUESTED, ACTIVE)
LEVELS = ("read", "write")
# action -> (the state it leaves, the state it enters)
TRANSITIONS: dict[str, tuple[str, str]] = {
    "approve": (REQUESTED, ACTIVE), "reject": (REQUESTED, REJECTED),
    "revoke": (ACTIVE, REVOKED), "expire": (ACTIVE, EXPIRED)}
GRANT_ID_RE = re.compile(r"[a-z][a-z0-9_]{2,62}\.[0-9a-f]{12}")
# A lock whose grant item never appeared (its writer died) is taken over after this long.
STALE_LOCK_SECONDS = 60
EXPIRY_PARTITION = "#expiry"
EXPIRY_CURSOR = "cursor"
EXPIRY_SHARDS = 16            # an hour's grants over 16 items: ~160,000 before DynamoDB's 400 KB
SWEEP_HOURS = 48              # hours of the schedule one sweep reads at most (a long stop)
_CONDITION_FAILED = "ConditionalCheckFailedException"


class UnknownGrantError(EdlError):
    exit_code = 3


class GrantStateError(EdlError):
    """A transition from the wrong state (or lost to a concurrent one): nothing was changed."""


class DuplicateGrantError(EdlError):
    """(dataset, grantee, level) already has a requested or active grant: `grant_id`."""

    def __init__(self, message: str, grant_id: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.grant_id = grant_id


def format_time(seconds: float) -> str:
    """`1767175200.0` -> `"2026-12-31T10:00:00Z"` (ISO-8601 UTC; sorts as it reads)."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def new_grant_id(dataset: str, hex_id: str) -> str:
    """`trials.3f9a2c1b7d40`: the dataset is readable from the id (the table's HASH key)."""
    return f"{dataset}.{hex_id[-12:]}"


def dataset_of(grant_id: str) -> str:
    if not GRANT_ID_RE.fullmatch(grant_id or ""):
        raise UnknownGrantError(f"invalid grant id {grant_id[:80]!r}",
                                hint="a grant id looks like trials.3f9a2c1b7d40")
    return grant_id.split(".", 1)[0]


@dataclass(frozen=True)
class Grant:
    """One grant; `to_json` has exactly the keys the API returns."""

    grant_id: str
    dataset: str
    tier: str
    grantee: str
    level: str
    state: str
    requester: str
    created_at: str
    updated_at: str
    approvers: tuple[str, ...] = ()
    justification: str | None = None
    reason: str | None = None
    expires_at: str | None = None
    duration_seconds: int | None = None
    decided_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"grant_id": self.grant_id, "dataset": self.dataset, "tier": self.tier,
                "grantee": self.grantee, "level": self.level, "state": self.state,
                "requester": self.requester, "approvers": list(self.approvers),
                "justification": self.justification, "reason": self.reason,
                "expires_at": self.expires_at, "duration_seconds": self.duration_seconds,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "decided_by": self.decided_by}

    def to_item(self) -> dict[str, Any]:
        item = self.to_json()
        item["principal"] = self.grantee    # the by-principal index's key
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Grant:
        duration = item.get("duration_seconds")
        return cls(
            grant_id=item["grant_id"], dataset=item["dataset"], tier=item["tier"],
            grantee=item["grantee"], level=item["level"], state=item["state"],
            requester=item["requester"], created_at=item["created_at"],
            updated_at=item["updated_at"], approvers=tuple(item.get("approvers") or ()),
            justification=item.get("justification"), reason=item.get("reason"),
            expires_at=item.get("expires_at"),
            duration_seconds=None if duration is None else int(duration),
            decided_by=item.get("decided_by"))

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= format_time(now)


def requested_grant(grant_id: str, *, dataset: str, tier: str, grantee: str, level: str,
                    requester: str, now: float, justification: str | None = None,
                    duration_seconds: int | None = None) -> Grant:
    """A new grant in `requested`: `approve` (by its maker, when they may) activates it."""
    stamp = format_time(now)
    return Grant(grant_id=grant_id, dataset=dataset, tier=tier, grantee=grantee, level=level,
                 state=REQUESTED, requester=requester, created_at=stamp, updated_at=stamp,
                 justification=justification, duration_seconds=duration_seconds)


def transition(grant: Grant, action: str, *, actor: str, now: float,
               reason: str | None = None) -> Grant:
    """The grant after `action` by `actor` at `now`; `GrantStateError` from the wrong state.
    Approval starts the clock: `expires_at` = now + the duration asked for."""
    source, target = TRANSITIONS[action]
    if grant.state != source:
        raise GrantStateError(
            f"grant {grant.grant_id} is {grant.state}: only {source} grants can be "
            f"{_PAST[action]}", hint=f"see it with: edl-api grant show {grant.grant_id}")
    changes: dict[str, Any] = {"state": target, "updated_at": format_time(now)}
    if action == "approve":
        changes["approvers"] = (*grant.approvers, actor)
        changes["decided_by"] = actor
        if grant.duration_seconds:
            changes["expires_at"] = format_time(now + grant.duration_seconds)
    elif action == "expire":
        changes["reason"] = reason or f"expired at {grant.expires_at}"
    else:
        changes["decided_by"] = actor
        changes["reason"] = reason
    return replace(grant, **changes)


_PAST = {"approve": "approved", "reject": "rejected", "revoke": "revoked", "expire": "expired"}


@dataclass(frozen=True)
class ActiveGrant:
    """What the active pointer says: the grant that gives (dataset, grantee) `level`."""

    grant_id: str
    level: str
    expires_at: str | None


def pointer_key(kind: str, level: str, grantee: str) -> str:
    """The RANGE key of an open lock (`open`) or an active pointer (`active`)."""
    return f"{kind}#{level}#{grantee}"


def pointer_keys(dataset: str, grantee: str, level: str) -> list[dict[str, str]]:
    """The keys of the active pointers that give `level`, the level itself first: a write
    grant gives read too."""
    return [{"dataset": dataset, "grant_id": pointer_key("active", wanted, grantee)}
            for wanted in ((level, "write") if level == "read" else (level,))]


def active_from(pointers: list[dict[str, Any] | None], now: float) -> ActiveGrant | None:
    """The grant of the first pointer (in `pointer_keys` order; None where there is none) that
    has not expired."""
    for item in pointers:
        if item is None:
            continue
        expires = item.get("expires_at")
        if expires is not None and expires <= format_time(now):
            continue
        level = item["grant_id"].split("#", 2)[1]
        return ActiveGrant(grant_id=item["points_to"], level=level, expires_at=expires)
    return None


def expiry_hour(expires_at: str) -> str:
    """`2026-12-31T10:00:00Z` -> `2026-12-31T10`, the schedule's hour."""
    return expires_at[:13]


def expiry_key(hour: str, shard: int) -> dict[str, str]:
    return {"dataset": EXPIRY_PARTITION, "grant_id": f"{hour}#{shard:02d}"}


def expiry_shard(grant_id: str) -> int:
    return zlib.crc32(grant_id.encode()) % EXPIRY_SHARDS


def next_hour(hour: str) -> str:
    later = datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC) + timedelta(hours=1)
    return later.strftime("%Y-%m-%dT%H")


@dataclass
class GrantStore:
    """Reads and writes grants through a boto3 Table (`edl-<instance>-grants`)."""

    table: Any
    clock: Callable[[], float] = field(default=time.time)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, grant_id: str) -> Grant:
        dataset = dataset_of(grant_id)
        item = self.table.get_item(Key={"dataset": dataset, "grant_id": grant_id},
                                   ConsistentRead=True).get("Item")
        if item is None or "principal" not in item:
            raise UnknownGrantError(f"there is no grant {grant_id!r}",
                                    hint=f"list grants with: edl-api grants --dataset {dataset}")
        return Grant.from_item(item)

    def active_grant(self, dataset: str, grantee: str, level: str,
                     now: float) -> ActiveGrant | None:
        """The active grant giving `grantee` `level` on `dataset` (a write grant gives read
        too), or None: one keyed GetItem per level looked at. An `expires_at` in the past is
        no grant, whether or not the sweep has run."""
        for key in pointer_keys(dataset, grantee, level):
            found = active_from([self.table.get_item(Key=key, ConsistentRead=True)
                                 .get("Item")], now)
            if found is not None:
                return found
        return None

    # -- writes ---------------------------------------------------------------------------------

    def create(self, grant: Grant) -> Grant:
        """Record a new grant (requested, or active when its maker approved it at once)."""
        self._take_lock(grant)
        self._schedule_expiry(grant)
        self.table.put_item(Item=grant.to_item(),
                            ConditionExpression="attribute_not_exists(grant_id)")
        if grant.state == ACTIVE:
            self._point(grant)
        return grant

    def approve(self, grant: Grant, *, actor: str, now: float,
                reason: str | None = None) -> Grant:
        after = transition(grant, "approve", actor=actor, now=now, reason=reason)
        self._schedule_expiry(after)
        self._commit(grant, after)
        self._point(after)
        return after

    def reject(self, grant: Grant, *, actor: str, now: float, reason: str | None) -> Grant:
        after = transition(grant, "reject", actor=actor, now=now, reason=reason)
        self._commit(grant, after)
        self._release(after, "open")
        return after

    def end(self, grant: Grant, action: str, *, actor: str, now: float,
            reason: str | None = None) -> Grant:
        """Revoke or expire an active grant: the pointer goes first, so no credentials are
        vended from this moment on, whatever happens next."""
        if action not in ("revoke", "expire"):
            raise ValueError(action)
        after = transition(grant, action, actor=actor, now=now, reason=reason)
        self._release(grant, "active")
        self._commit(grant, after)
        self._release(after, "open")
        self._schedule_expiry(after, "DELETE")
        return after

    def expired_grants(self, now: float) -> list[Grant]:
        """Active grants whose `expires_at` has passed: the schedule's hours from the cursor to
        now, read by key (the sweep's; the broker judges `expires_at` itself). An hour before
        the current one none of whose grants is active any more is cleared: the cursor moves past
        it and its items go."""
        cursor = self._read_cursor()
        if cursor is None:
            return self._schedule_existing(now)
        hour, last = cursor, expiry_hour(format_time(now))
        due: list[Grant] = []
        clearing = True      # whether every hour so far is cleared: the cursor may pass them
        for _ in range(SWEEP_HOURS):
            if hour > last:
                break
            shards = [self.table.get_item(Key=expiry_key(hour, n), ConsistentRead=True)
                      .get("Item") for n in range(EXPIRY_SHARDS)]
            listed = sorted({g for item in shards if item for g in item.get("grants", ())})
            active = [g for g in map(self._find, listed) if g is not None and g.state == ACTIVE]
            due += [g for g in active if g.expired(now)]
            if clearing and hour < last and not active:
                for n, item in enumerate(shards):
                    if item:
                        self.table.delete_item(Key=expiry_key(hour, n))
                self._write_cursor(next_hour(hour))
            else:
                clearing = False
            hour = next_hour(hour)
        return due

    def _schedule_expiry(self, grant: Grant, action: str = "ADD") -> None:
        """Put the grant in the schedule's hour of its expiry (`ADD`), or take it out
        (`DELETE`, once it ended)."""
        if grant.expires_at is None:
            return
        self.table.update_item(
            Key=expiry_key(expiry_hour(grant.expires_at), expiry_shard(grant.grant_id)),
            UpdateExpression=f"{action} grants :g",
            ExpressionAttributeValues={":g": {grant.grant_id}})

    def _schedule_existing(self, now: float) -> list[Grant]:
        """The first sweep of a lake without a schedule: one scan schedules the active grants
        that expire and returns those already due; the cursor starts at the hour of the
        earliest of them (so one that fails to end now is read again), else at this one."""
        kwargs: dict[str, Any] = {"FilterExpression": Attr("state").eq(ACTIVE)
                                  & Attr("expires_at").exists()}
        due: list[Grant] = []
        while True:
            page = self.table.scan(**kwargs)
            for grant in (Grant.from_item(i) for i in page["Items"] if "principal" in i):
                self._schedule_expiry(grant)
                if grant.expired(now):
                    due.append(grant)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        hours = [expiry_hour(g.expires_at) for g in due if g.expires_at]
        self._write_cursor(min([expiry_hour(format_time(now)), *hours]))
        return due

    def _read_cursor(self) -> str | None:
        item = self.table.get_item(
            Key={"dataset": EXPIRY_PARTITION, "grant_id": EXPIRY_CURSOR},
            ConsistentRead=True).get("Item")
        return None if item is None else item["hour"]

    def _write_cursor(self, hour: str) -> None:
        self.table.put_item(Item={"dataset": EXPIRY_PARTITION, "grant_id": EXPIRY_CURSOR,
                                  "hour": hour})

    def _find(self, grant_id: str) -> Grant | None:
        try:
            return self.get(grant_id)
        except UnknownGrantError:
            return None

    # -- the items beside the grants -------------------------------------------------------------

    def _take_lock(self, grant: Grant) -> None:
        key = {"dataset": grant.dataset,
               "grant_id": pointer_key("open", grant.level, grant.grantee)}
        item = {**key, "points_to": grant.grant_id, "at": int(self.clock())}
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(grant_id)")
            return
        except ClientError as exc:
            if _code(exc) != _CONDITION_FAILED:
                raise
        held = self.table.get_item(Key=key, ConsistentRead=True).get("Item") or {}
        holder = held.get("points_to", "")
        if self._lock_is_live(holder, int(held.get("at", 0))):
            raise DuplicateGrantError(
                f"{grant.grantee} already has a requested or active {grant.level} grant on "
                f"{grant.dataset}: {holder}", holder,
                hint=f"see it with: edl-api grant show {holder}")
        try:   # a stale lock: its grant ended, or never got written
            self.table.put_item(Item=item, ConditionExpression=Attr("points_to").eq(holder))
        except ClientError as exc:
            if _code(exc) != _CONDITION_FAILED:
                raise
            raise DuplicateGrantError(f"another request for {grant.grantee}'s {grant.level} "
                                      f"grant on {grant.dataset} came first", holder) from None

    def _lock_is_live(self, holder: str, at: int) -> bool:
        try:
            return self.get(holder).state in OPEN_STATES
        except UnknownGrantError:
            return self.clock() - at < STALE_LOCK_SECONDS   # its writer may still be writing

    def _point(self, grant: Grant) -> None:
        """Write the active pointer; if the grant ended meanwhile (a revoke racing this
        approval), take the pointer back."""
        self.table.put_item(Item={
            "dataset": grant.dataset,
            "grant_id": pointer_key("active", grant.level, grant.grantee),
            "points_to": grant.grant_id, "expires_at": grant.expires_at})
        if self.get(grant.grant_id).state != ACTIVE:
            self._release(grant, "active")

    def _release(self, grant: Grant, kind: str) -> None:
        """Delete the grant's open lock or active pointer, if it still points to this grant."""
        try:
            self.table.delete_item(
                Key={"dataset": grant.dataset,
                     "grant_id": pointer_key(kind, grant.level, grant.grantee)},
                ConditionExpression=Attr("points_to").eq(grant.grant_id))
        except ClientError as exc:
            if _code(exc) != _CONDITION_FAILED:
                raise

    def _commit(self, before: Grant, after: Grant) -> None:
        """Write `after` only over `before`'s state; a lost race is a `GrantStateError`."""
        try:
            self.table.put_item(Item=after.to_item(),
                                ConditionExpression=Attr("state").eq(before.state))
        except ClientError as exc:
            if _code(exc) != _CONDITION_FAILED:
                raise
            now_state = self.get(before.grant_id).state
            raise GrantStateError(
                f"grant {before.grant_id} became {now_state} meanwhile; nothing was changed",
                hint=f"see it with: edl-api grant show {before.grant_id}") from None


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")
