"""schemathesis against the API's own OpenAPI file, the handlers called in-process: no 500s.

A tiny WSGI adapter stands in for API Gateway (the local runtime's HTTP server is tested
elsewhere): it routes by api_config.yaml and hands the handlers the event API Gateway builds,
signed as alice. The metadata tables are moto's, with a dataset alice owns."""

from __future__ import annotations

import importlib
import json
from urllib.parse import parse_qs

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from edl.api_config import get_api_config
from edl.core_resources.rest_api import openapi
from tests.functional.rest_api_helpers import ACCOUNT, user_arn


def wsgi_app(environ, start_response):
    """Route like API Gateway: 404 for an unknown path, 405 for a method it does not serve."""
    config = get_api_config()
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    stage = f"/{config.stage}"
    if path == stage or path.startswith(stage + "/"):  # the OpenAPI server URL ends in the stage
        path = path[len(stage):] or "/"
    endpoint, params, path_known = config.route(method, path)
    if endpoint is None:
        status = "405 Method Not Allowed" if path_known else "404 Not Found"
        body = {"error": {"code": status.split(" ", 1)[1].lower().replace(" ", "_"),
                          "message": f"{method} {path}"}}
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length).decode("utf-8", "replace") if length else None
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    arn = user_arn("alice")
    event = {
        "httpMethod": method, "path": path, "resource": endpoint.path,
        "pathParameters": params or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "headers": {}, "body": raw, "isBase64Encoded": False,
        "requestContext": {"identity": {"userArn": arn, "accountId": ACCOUNT,
                                        "accessKey": "AKIAEXAMPLE", "caller": "AIDAEXAMPLE"}},
    }
    handler = getattr(importlib.import_module(
        f"edl.core_resources.rest_api.{endpoint.module}"), endpoint.function)
    result = handler(event, None)
    start_response(f"{result['statusCode']} X", list(result["headers"].items()))
    return [result["body"].encode()]


schema = schemathesis.openapi.from_path(openapi.OPENAPI_FILE)


@pytest.fixture
def world(api_lake):
    api_lake.add_dataset("sales", owner="alice")
    api_lake.updates.allocate_update("sales", "snapshot", "https://example.com/a.csv", "bucket")
    return api_lake


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail_with_500(world, case):
    # Random names rarely exist: send half the cases to the dataset (and update) that does, so
    # the handlers' own work is exercised, not only their validation.
    params = case.path_parameters or {}
    if "dataset" in params and len(str(params["dataset"])) % 2 == 0:
        params["dataset"] = "sales"
        if "update_id" in params:
            params["update_id"] = "1"
    response = case.call(app=wsgi_app)
    case.validate_response(response, checks=[not_a_server_error])
