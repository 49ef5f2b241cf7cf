"""`GET /datasets/{dataset}/credentials`: the credential broker (DESIGN §5, §6).

The API checks why the caller may have the level, then assumes the level's role with its own
STS client and hands back the role session's credentials:

- `default`: the tier reads by default (internal) - the default reader role, no grant;
- `owner`: the dataset's owner reads and writes without a grant;
- `grant`: an active grant of the level (a write grant also gives read) - its active pointer,
  read by key in the same BatchGetItem as the dataset's record, however many grants the table
  holds;
- `break_glass`: a platform admin without a grant, audited as such;
- else 403 `no_grant`, saying how to ask for one.

The session lasts what was asked (default and at most 1 h, at least STS's 15 min) and never past
the grant's expiry: when the grant ends first, a session policy allows nothing once
`aws:CurrentTime` passes `expires_at`, and `expiration` is the grant's. The session is named
after the caller (`RoleSessionName` and `SourceIdentity`), so CloudTrail and the S3 access logs
show who. Every vend is audited before the credentials are handed out.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime

from botocore.exceptions import ClientError

from edl import naming
from edl.core_resources.rest_api.access import authorized_actor
from edl.core_resources.rest_api.audit import audited, record_event
from edl.core_resources.rest_api.common import (
    ApiContext,
    Caller,
    Forbidden,
    Request,
    Unavailable,
    endpoint,
    module_handler,
)
from edl.utils import tier_policy
from edl.utils.grants import ActiveGrant, active_from, format_time, parse_time, pointer_keys
from edl.utils.metadata import DatasetRecord
from edl.utils.tier_policy import Actor

log = logging.getLogger("edl.rest_api.credentials")

STS_MIN_SECONDS, STS_MAX_SECONDS = 900, 3600


def session_length(asked: int, grant_expires: float | None, now: float) -> tuple[int, bool]:
    """(DurationSeconds, whether a session policy must end the session at the grant's expiry):
    min(asked, 1 h, the grant's time left), at least STS's minimum."""
    seconds = min(asked, STS_MAX_SECONDS)
    if grant_expires is not None:
        seconds = min(seconds, int(grant_expires - now))
    seconds = max(seconds, STS_MIN_SECONDS)
    return seconds, grant_expires is not None and now + seconds > grant_expires


def session_name(caller: Caller) -> str:
    """The caller's person name (else principal id, else ARN tail) as STS takes it in
    `RoleSessionName` and `SourceIdentity`: `[A-Za-z0-9_+=,.@-]{2,64}`."""
    name = caller.person or caller.caller_id or caller.arn.rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9_+=,.@-]", "-", name)[:64]
    return name if len(name) >= 2 else f"edl-{name}"


def _assume(api: ApiContext, assume: dict, role: str) -> dict:
    """The role's credentials; a role the broker may not assume is the lake's own fault
    (not deployed, or deployed by an older EDL), so a 503 that says which role and what to do."""
    try:
        return api.client("sts", None).assume_role(**assume)["Credentials"]
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code not in ("AccessDenied", "AccessDeniedException", "NoSuchEntity"):
            raise
        log.error("broker - cannot assume %s: %s", role, exc)
        raise Unavailable(f"the credential broker may not assume role {role} ({code}); a "
                          "platform admin must redeploy the lake (edl deploy-core, then edl "
                          "deploy-dataset for the dataset)", code="broker_unavailable") from None


def expiry_policy(expires_at: str) -> str:
    """A session policy that allows nothing once the grant has expired."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "UntilTheGrantExpires", "Effect": "Allow", "Action": "*", "Resource": "*",
        "Condition": {"DateLessThan": {"aws:CurrentTime": expires_at}}}]})


@endpoint("get_credentials")
@audited("vend")
def get_credentials(request: Request, api: ApiContext) -> dict:
    actor = authorized_actor(request.endpoint, request.caller, api.instance)
    level = request.query.get("level", "read")
    asked = tier_policy.parse_seconds(request.query.get("duration", "1h"), what="duration")
    dataset, pointers = _read(api, request.dataset_name(), actor.principal, level)
    now = api.now()
    basis, grant = _basis(request, dataset, actor, level, pointers, now, api)
    role = naming.default_reader_role(api.instance.name) if basis == "default" \
        else naming.dataset_role(api.instance.name, dataset.dataset, level)
    role_arn = naming.role_arn(api.instance.account_id, role)
    expires = None if grant is None or grant.expires_at is None else parse_time(grant.expires_at)
    seconds, cut = session_length(asked, expires, now)
    name = session_name(request.caller)
    assume = {"RoleArn": role_arn, "RoleSessionName": name, "SourceIdentity": name,
              "DurationSeconds": seconds}
    cutoff = grant.expires_at if cut and grant is not None else None
    if cutoff is not None:
        assume["Policy"] = expiry_policy(cutoff)
    credentials = _assume(api, assume, role)
    expiration = _iso(credentials["Expiration"])
    if cutoff is not None:
        expiration = min(expiration, cutoff)
    record_event(api, request, "break_glass" if basis == "break_glass" else "vend",
                 dataset=dataset.dataset, level=level,
                 grant_id=None if grant is None else grant.grant_id,
                 detail={"basis": basis, "role_arn": role_arn, "session_name": name,
                         "duration_seconds": seconds, "expiration": expiration})
    log.info("%s - %s credentials (%s) for %s until %s", dataset.dataset, level, basis,
             request.caller.arn, expiration)
    return {"dataset": dataset.dataset, "level": level, "role_arn": role_arn, "basis": basis,
            "grant_id": None if grant is None else grant.grant_id,
            "access_key_id": credentials["AccessKeyId"],
            "secret_access_key": credentials["SecretAccessKey"],
            "session_token": credentials["SessionToken"], "expiration": expiration,
            "region": dataset.home_region, "bucket": api.lake.data_bucket(dataset),
            "prefix": f"{dataset.dataset}/"}


def _read(api: ApiContext, name: str, grantee: str,
          level: str) -> tuple[DatasetRecord, list[dict | None]]:
    """The dataset's record and the active pointers that could give `grantee` the level, in
    one BatchGetItem (the pointers strongly consistent): the broker's whole read, keyed,
    however many grants the table holds."""
    keys = pointer_keys(name, grantee, level)
    metadata = api.lake.metadata
    try:
        found = metadata.get_many({"datasets": [{"dataset": name}], "grants": keys},
                                  consistent=("grants",))
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("AccessDenied", "AccessDeniedException"):
            raise
        # The API's role from an older deploy-core, without BatchGetItem: the same reads apart.
        log.warning("broker - BatchGetItem denied (redeploy core to allow it): %s", exc)
        store = api.grants().table
        return metadata.get_dataset(name), [
            store.get_item(Key=k, ConsistentRead=True).get("Item") for k in keys]
    by_key = {item["grant_id"]: item for item in found["grants"]}
    return (metadata.dataset_from(name, next(iter(found["datasets"]), None)),
            [by_key.get(k["grant_id"]) for k in keys])


def _basis(request: Request, dataset: DatasetRecord, actor: Actor, level: str,
           pointers: list[dict | None], now: float,
           api: ApiContext) -> tuple[str, ActiveGrant | None]:
    policy = api.lake.config.tier(dataset.tier)
    implicit = tier_policy.implicit_basis(policy, actor, level=level, owner=dataset.owner)
    if implicit in ("default", "owner"):
        return implicit, None
    grant = active_from(pointers, now)
    if grant is not None:
        return "grant", grant
    if implicit == "break_glass":
        return implicit, None
    ask = f"edl-api grant request {dataset.dataset} --level {level}"
    if policy.max_grant_days:
        ask += " --for 30d"
    if policy.justification:
        ask += ' --justification "why you need it"'
    raise Forbidden(f"{request.caller.arn} holds no {level} grant on dataset {dataset.dataset} "
                    f"({dataset.tier}); ask for one with: {ask}", code="no_grant")


def _iso(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    return format_time(value.timestamp())


# The Lambda entry point: this module's endpoints, chosen by path and method.
handler = module_handler(__name__)
