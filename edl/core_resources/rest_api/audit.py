"""`GET /audit`: the audit log as the API shows it, and how the access handlers write it.

The grant, credential, audit and pipeline-run handlers write every decision through
`record_event` and have every refusal written by `audited`: a 4xx they raise (or a lake error
that maps to one) becomes a `refuse` event - who, what they tried, why - before the answer goes
out, under the dataset the request names (or each of the error's `subjects`). When the log cannot
be written the answer is a 503: no credentials and no refusal go out unaudited (a grant change
written just before stands, and the failure is logged as an error).

Reading it takes the dataset's owner or a platform admin; only an admin lists every dataset's
events at once. `since` ("1h") is a key range on the event ids, oldest first.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import BotoCoreError, ClientError

from edl.core_resources.rest_api.access import authorized_actor
from edl.core_resources.rest_api.common import (
    ApiContext,
    BadRequest,
    Forbidden,
    HttpError,
    Request,
    Unavailable,
    endpoint,
    map_exception,
    module_handler,
    plain,
    read_page,
)
from edl.utils.audit import REFUSED, event_view, since_key
from edl.utils.tier_policy import parse_seconds

log = logging.getLogger("edl.rest_api.audit")


def record_event(api: ApiContext, request: Request, action: str, **event: Any) -> dict:
    """Append one event by the request's caller; a 503 if the log cannot be written."""
    try:
        return api.audit().record(action=action, actor=request.caller.principal, **event)
    except (ClientError, BotoCoreError) as exc:
        log.error("audit - %s by %s not written: %s", action, request.caller.arn, exc)
        raise Unavailable("the audit log cannot be written, so the request was not served; "
                          "retry shortly") from None


def subject_of(request: Request) -> str | None:
    """The dataset a request is about: its path's, its grant id's, or its query's."""
    if "dataset" in request.path:
        return request.path["dataset"]
    if "grant_id" in request.path:
        return request.path["grant_id"].split(".", 1)[0]
    return request.query.get("dataset")


def audited(action: str):
    """Write a `refuse` event (`detail.tried` = `action`) for every refusal of the handler."""
    def wrap(function):
        @functools.wraps(function)
        def run(request: Request, api: ApiContext):
            try:
                return function(request, api)
            except Exception as exc:
                error = exc if isinstance(exc, HttpError) else map_exception(exc)
                if error is None or not 400 <= error.status < 500 or error.status == 429:
                    raise
                for subject in error.subjects or (subject_of(request),):
                    record_event(
                        api, request, "refuse", dataset=subject, decision=REFUSED,
                        grant_id=request.path.get("grant_id"),
                        level=request.body.get("level") or request.query.get("level"),
                        reason=error.message,
                        detail={"tried": action, "status": error.status, "code": error.code})
                if error is exc:
                    raise
                raise error from exc
        return run
    return wrap


@endpoint("list_audit")
@audited("list_audit")
def list_audit(request: Request, api: ApiContext) -> dict:
    actor = authorized_actor(request.endpoint, request.caller, api.instance)
    dataset = request.query.get("dataset")
    since = request.query.get("since")
    now = api.now()
    since_at = None if since is None else now - min(parse_seconds(since, what="since"), now)
    table = api.lake.metadata.table("audit")
    if dataset is None:
        if not actor.is_admin:
            raise BadRequest("name a dataset (edl-api audit --dataset D): only a platform admin "
                             "lists every dataset's events", code="dataset_required")
        kwargs: dict[str, Any] = {} if since_at is None else {
            "FilterExpression": Attr("event_id").gte(since_key(since_at))}
        fetch = functools.partial(table.scan, **kwargs)
    else:
        if not actor.is_admin:   # an admin also reads the events of datasets now gone
            record = api.lake.metadata.get_dataset(dataset)
            if not actor.owns(record.owner):
                raise Forbidden(f"only the owner of {dataset} ({record.owner}) or a platform "
                                "admin may read its audit log", code="not_allowed")
        fetch = functools.partial(table.query, **api.audit().query(dataset, since_at))
    items, next_token = read_page(api, request, f"list_audit:{dataset or '*'}", fetch,
                                  ("subject", "event_id"))
    events = sorted((plain(event_view(i)) for i in items), key=lambda e: e["event_id"])
    return {"events": events, "next_token": next_token}


# The Lambda entry point: this module's endpoints, chosen by path and method.
handler = module_handler(__name__)
