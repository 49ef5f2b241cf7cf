"""Grant endpoints: request, list, show, approve, reject and revoke (DESIGN §5).

The tier policy (`edl.utils.tier_policy`) decides who may do what; the grant store
(`edl.utils.grants`) makes each change one conditional write, so a grant in the wrong state is a
409 and nothing changes. Every request and decision is audited, and every refusal too
(`audited`).

Revoking ends new credentials at once (the active pointer goes). In AWS it also ends the live
sessions of the level's role: an inline policy `edl-revoke-older-sessions` denies everything to
sessions issued before now (`aws:TokenIssueTime`); holders of other grants on that role fetch
new credentials through the broker. A write grant also gave read credentials, so the read role
gets the same policy (unless the tier reads by default through the default role). The local
cloud's emulator does not evaluate that condition, so there it is not put.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from edl import naming
from edl.core_resources.rest_api.access import authorized_actor
from edl.core_resources.rest_api.audit import audited, record_event
from edl.core_resources.rest_api.common import (
    ApiContext,
    BadRequest,
    Caller,
    Forbidden,
    NotFound,
    Request,
    Unavailable,
    endpoint,
    module_handler,
    read_page,
)
from edl.utils import tier_policy
from edl.utils.grants import (
    REQUESTED,
    Grant,
    format_time,
    new_grant_id,
    requested_grant,
    transition,
)
from edl.utils.metadata import DatasetRecord, read_all
from edl.utils.tier_policy import Actor, check_text, parse_seconds

log = logging.getLogger("edl.rest_api.grants")

REVOKE_POLICY = "edl-revoke-older-sessions"
_ARN_RE = re.compile(r"arn:aws[a-z-]*:(iam|sts)::(\d{12}):([\w+=,.@/-]{1,512})")


def _event(grant: Grant, **more: Any) -> dict[str, Any]:
    return {"dataset": grant.dataset, "grant_id": grant.grant_id, "level": grant.level, **more}


# -- request ----------------------------------------------------------------------------------

@endpoint("request_grant")
@audited("request")
def request_grant(request: Request, api: ApiContext) -> tuple[int, dict]:
    actor = authorized_actor(request.endpoint, request.caller, api.instance)
    dataset = api.lake.metadata.get_dataset(request.dataset_name())
    policy = api.lake.config.tier(dataset.tier)
    body = request.body
    duration = None if "duration" not in body else parse_seconds(body["duration"],
                                                                 what="duration")
    tier_policy.check_request(policy, dataset=dataset.dataset, level=body["level"],
                              duration=duration, justification=body.get("justification"))
    grantee = _grantee(api, request.caller, actor, body.get("grantee"), dataset)
    now = api.now()
    grant = requested_grant(
        new_grant_id(dataset.dataset, api.new_id()), dataset=dataset.dataset, tier=dataset.tier,
        grantee=grantee, level=body["level"], requester=actor.principal, now=now,
        justification=body.get("justification"), duration_seconds=duration)
    at_once = tier_policy.active_at_once(policy, actor, grantee=grantee, owner=dataset.owner)
    if at_once:
        grant = transition(grant, "approve", actor=actor.principal, now=now)
    api.grants().create(grant)
    record_event(api, request, "request", **_event(grant, reason=grant.justification, detail={
        "grantee": grantee, "duration_seconds": duration}))
    if at_once:
        record_event(api, request, "approve", **_event(grant, reason="made by an approver",
                                                       detail={"expires_at": grant.expires_at}))
    log.info("%s - %s %s for %s by %s", grant.dataset, grant.grant_id, grant.state, grantee,
             actor.principal)
    return 201, grant.to_json()


def _grantee(api: ApiContext, caller: Caller, actor: Actor, named: str | None,
             dataset: DatasetRecord) -> str:
    """The grantee's ARN: the caller (a person), or one they name (as owner or admin) that
    exists: an IAM user of the account (iam:GetUser) or a person's SSO session."""
    if named is None or named == actor.principal:
        if actor.person is None:
            raise Forbidden(f"{caller.arn} is not a person (grants are for people: IAM users "
                            "and the sessions of identity.person_session_roles)",
                            code="not_a_person")
        return actor.principal
    tier_policy.check_grantee(actor, named, dataset.owner)
    match = _ARN_RE.fullmatch(named)
    if match is None:
        raise BadRequest(f"grantee {named[:100]!r} is not an IAM ARN (e.g. "
                         f"arn:aws:iam::{api.instance.account_id}:user/bob)",
                         code="invalid_grantee")
    if match.group(2) != api.instance.account_id:
        raise NotFound(f"grantee {named} is not in the lake's account "
                       f"{api.instance.account_id}", code="unknown_grantee")
    other = Caller(arn=named, account_id=match.group(2))
    if other.kind == "user":
        return _iam_user_arn(api, named, other.user_name or "")
    if other.person is None:
        raise Forbidden(f"grantee {named} is not a person (grants are for people: IAM users "
                        "and the sessions of identity.person_session_roles)", code="not_a_person")
    return named


def _iam_user_arn(api: ApiContext, arn: str, user_name: str) -> str:
    try:
        found = api.client("iam", None).get_user(UserName=user_name)["User"]["Arn"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise Unavailable(f"cannot look up IAM user {user_name} ({exc})") from None
        found = None
    except BotoCoreError as exc:
        raise Unavailable(f"cannot look up IAM user {user_name} ({exc})") from None
    if found != arn:
        raise NotFound(f"there is no IAM user {arn}" + (f" (did you mean {found}?)" if found
                                                         else ""), code="unknown_grantee")
    return arn


# -- list and show ----------------------------------------------------------------------------

@endpoint("list_grants")
@audited("list_grants")
def list_grants(request: Request, api: ApiContext) -> dict:
    actor = authorized_actor(request.endpoint, request.caller, api.instance)
    query = request.query
    name, state = query.get("dataset"), query.get("state")
    record = None if name is None else api.lake.metadata.get_dataset(name)
    table = api.lake.metadata.table("grants")
    if query.get("pending"):
        return _pending(api, request, actor, record)
    state_filter = None if state is None else Attr("state").eq(state)
    if record is not None and not query.get("mine") and actor.is_owner_or_admin(record.owner):
        condition = Attr("principal").exists()     # grants, not the items beside them
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("dataset").eq(record.dataset), "ConsistentRead": True,
            "FilterExpression": condition if state_filter is None else condition & state_filter}
        keys: tuple[str, ...] = ("dataset", "grant_id")
    else:   # the caller's own grants (of one dataset, or all)
        key = Key("principal").eq(actor.principal)
        kwargs = {"IndexName": "by-principal", "KeyConditionExpression":
                  key if record is None else key & Key("dataset").eq(record.dataset)}
        if state_filter is not None:
            kwargs["FilterExpression"] = state_filter
        keys = ("dataset", "grant_id", "principal")
    scope = f"list_grants:{name or ''}:{state or ''}:{len(keys)}"
    items, next_token = read_page(api, request, scope,
                                  lambda **more: table.query(**kwargs, **more), keys)
    return {"grants": [Grant.from_item(i).to_json() for i in items], "next_token": next_token}


def _pending(api: ApiContext, request: Request, actor: Actor,
             record: DatasetRecord | None) -> dict:
    """Requested grants the caller may decide: an admin's of every dataset, an owner's of their
    own datasets. Few are ever pending, so they are paged in memory, by key."""
    table = api.lake.metadata.table("grants")
    requested = Attr("state").eq(REQUESTED)
    datasets = [record] if record is not None else api.lake.metadata.list_datasets()
    owners = {d.dataset: d.owner for d in datasets if actor.is_owner_or_admin(d.owner)}
    if record is None and actor.is_admin:
        items = read_all(table.scan, FilterExpression=requested)
    else:
        items = [i for dataset in owners for i in read_all(
            table.query, KeyConditionExpression=Key("dataset").eq(dataset),
            FilterExpression=requested, ConsistentRead=True)]
    grants = sorted((Grant.from_item(i) for i in items if i.get("dataset") in owners),
                    key=lambda g: (g.dataset, g.grant_id))
    decidable = [g for g in grants if tier_policy.may_approve(
        api.lake.config.tier(g.tier), actor, requester=g.requester, grantee=g.grantee,
        owner=owners[g.dataset])]
    scope = f"list_grants:pending:{record.dataset if record else ''}"
    token = request.query.get("next_token")
    if token:
        after = api.page_tokens.decode(scope, token)
        decidable = [g for g in decidable
                     if (g.dataset, g.grant_id) > (after.get("dataset"), after.get("grant_id"))]
    limit = min(request.query.get("limit", api.api.page_size_default), api.api.page_size_max)
    page = decidable[:limit]
    next_token = api.page_tokens.encode(scope, {"dataset": page[-1].dataset,
                                                "grant_id": page[-1].grant_id}) \
        if len(decidable) > limit else None
    return {"grants": [g.to_json() for g in page], "next_token": next_token}


@endpoint("get_grant")
@audited("get_grant")
def get_grant(request: Request, api: ApiContext) -> dict:
    grant, dataset, actor = _load(request, api)
    if actor.principal not in (grant.grantee, grant.requester) and \
            not actor.is_owner_or_admin(dataset.owner):
        raise Forbidden(f"grant {grant.grant_id} is seen by its grantee, its requester, the "
                        f"owner of {grant.dataset} and platform admins", code="not_allowed")
    return grant.to_json()


def _load(request: Request, api: ApiContext) -> tuple[Grant, DatasetRecord, Actor]:
    """The caller (authorized), the grant of the path, and its dataset."""
    actor = authorized_actor(request.endpoint, request.caller, api.instance)
    grant = api.grants().get(request.path["grant_id"])
    return grant, api.lake.metadata.get_dataset(grant.dataset), actor


# -- decisions --------------------------------------------------------------------------------

@endpoint("approve_grant")
@audited("approve")
def approve_grant(request: Request, api: ApiContext) -> dict:
    return _decide(request, api, "approve")


@endpoint("reject_grant")
@audited("reject")
def reject_grant(request: Request, api: ApiContext) -> dict:
    return _decide(request, api, "reject")


@endpoint("revoke_grant")
@audited("revoke")
def revoke_grant(request: Request, api: ApiContext) -> dict:
    return _decide(request, api, "revoke")


def _decide(request: Request, api: ApiContext, action: str) -> dict:
    """Approve, reject or revoke: who may (the policy), then the state (409), then the write."""
    grant, dataset, actor = _load(request, api)
    policy = api.lake.config.tier(dataset.tier)
    reason = check_text(request.body.get("reason"), what="reason", required=action == "reject")
    now = api.now()
    store = api.grants()
    if action == "revoke":
        tier_policy.check_revoke(actor, grantee=grant.grantee, owner=dataset.owner)
        transition(grant, action, actor=actor.principal, now=now)   # 409 before any change
        _end_live_sessions(api, grant, dataset, now)
        after = store.end(grant, action, actor=actor.principal, now=now, reason=reason)
    else:
        tier_policy.check_decision(policy, actor, requester=grant.requester,
                                   grantee=grant.grantee, owner=dataset.owner)
        decide = store.approve if action == "approve" else store.reject
        after = decide(grant, actor=actor.principal, now=now, reason=reason)
    record_event(api, request, action, **_event(after, reason=reason, detail={
        "grantee": after.grantee, "state": after.state, "expires_at": after.expires_at}))
    log.info("%s - %s %s by %s", after.dataset, after.grant_id, after.state, actor.principal)
    return after.to_json()


def _end_live_sessions(api: ApiContext, grant: Grant, dataset: DatasetRecord,
                       now: float) -> None:
    """AWS: deny the grant's roles to every session issued before `now` (see the module)."""
    levels = [grant.level]
    if grant.level == "write" and not api.lake.config.tier(dataset.tier).default_read:
        levels.append("read")
    roles = [naming.dataset_role(api.instance.name, grant.dataset, level) for level in levels]
    if api.lake.is_local:
        log.info("%s - %s revoked on the local cloud: %s not put on %s (the emulator does not "
                 "evaluate aws:TokenIssueTime; new credentials are refused at once)",
                 grant.dataset, grant.grant_id, REVOKE_POLICY, ", ".join(roles))
        return
    document = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "RevokeOlderSessions", "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": format_time(now)}}}]})
    iam = api.client("iam", None)
    for role in roles:
        try:
            iam.put_role_policy(RoleName=role, PolicyName=REVOKE_POLICY, PolicyDocument=document)
        except (ClientError, BotoCoreError) as exc:
            log.error("%s - %s on %s: %s", grant.dataset, REVOKE_POLICY, role, exc)
            raise Unavailable(f"could not end the live sessions of role {role}, so grant "
                              f"{grant.grant_id} is still active; retry shortly") from None


# The Lambda entry point: this module's endpoints, chosen by path and method.
handler = module_handler(__name__)
