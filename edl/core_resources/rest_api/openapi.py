"""The API's OpenAPI 3.0 description, generated from `api_config.yaml`.

    python -m edl.core_resources.rest_api.openapi            # print it
    python -m edl.core_resources.rest_api.openapi --write    # refresh the committed openapi.json

`openapi.json` beside this module ships with the package (the local runtime serves it); a unit
test fails when it differs from what the config generates, so the two never drift. Paths,
parameters and request bodies come from the config (bodies are closed: `additionalProperties:
false`, as the handlers refuse unknown fields); the shapes of the answers are described here,
next to the handlers that produce them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edl.api_config import ApiConfig, Endpoint, Field, get_api_config

OPENAPI_FILE = Path(__file__).with_name("openapi.json")

_SUCCESS = {"create_upload": "201", "start_ingest": "202", "request_grant": "201",
            "start_pipeline_run": "202"}
_TEXT = {"type": "string"}
_NULLABLE_TEXT = {"type": "string", "nullable": True}
_INT = {"type": "integer"}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {
            "type": "object", "required": ["code", "message"], "additionalProperties": False,
            "properties": {"code": {**_TEXT, "description": "stable, machine-readable"},
                           "message": {**_TEXT, "description": "what is wrong, for people"}}}},
    },
    "DeltaConvention": {
        "type": "object", "nullable": True,
        "properties": {"key_columns": {"type": "array", "items": _TEXT},
                       "op_column": _NULLABLE_TEXT, "delete_marker": _NULLABLE_TEXT}},
    "Column": {"type": "object", "properties": {"name": _TEXT, "type": _TEXT}},
    "Dataset": {
        "type": "object",
        "required": ["dataset", "tier", "owner", "home_region", "updates"],
        "properties": {
            "dataset": _TEXT, "tier": {"type": "string",
                                       "enum": ["internal", "restricted", "sensitive"]},
            "owner": _TEXT, "home_region": _TEXT, "description": _TEXT,
            "delta": {"$ref": "#/components/schemas/DeltaConvention"},
            "created_at": {"type": "number"},
            "updates": {**_INT, "description": "update ids allocated so far (any state)"},
            "last_update": _NULLABLE_TEXT}},
    "DatasetDetails": {"allOf": [{"$ref": "#/components/schemas/Dataset"}, {
        "type": "object", "properties": {"newest_update": {
            "type": "object", "nullable": True,
            "properties": {"update_id": _TEXT, "kind": _TEXT, "finished_at": _NULLABLE_TEXT,
                           "rows": _INT, "columns": {
                               "type": "array", "items": {"$ref": "#/components/schemas/Column"}}}}}}]},
    "DatasetPage": {
        "type": "object", "required": ["datasets", "next_token"],
        "properties": {"datasets": {"type": "array",
                                    "items": {"$ref": "#/components/schemas/Dataset"}},
                       "next_token": _NULLABLE_TEXT}},
    "Update": {
        "type": "object", "required": ["dataset", "update_id", "kind", "status"],
        "properties": {
            "dataset": _TEXT, "update_id": _TEXT,
            "kind": {"type": "string", "enum": ["snapshot", "delta"]},
            "status": {"type": "string", "enum": ["pending", "complete", "failed"]},
            "source": _TEXT, "requested_by": _TEXT, "job_id": _TEXT, "created_at": _TEXT,
            "started_at": _TEXT, "finished_at": _TEXT, "rows": _INT, "bytes": _INT,
            "file_count": _INT, "reason": _TEXT}},
    "UpdateDetails": {"allOf": [{"$ref": "#/components/schemas/Update"}, {
        "type": "object", "properties": {
            "part_count": _INT, "bucket": _TEXT, "options": {"type": "object"},
            "files": {"type": "array", "items": {"type": "object"}},
            "columns": {"type": "array", "items": {"$ref": "#/components/schemas/Column"}}}}]},
    "UpdatePage": {
        "type": "object", "required": ["dataset", "updates", "next_token"],
        "properties": {"dataset": _TEXT,
                       "updates": {"type": "array",
                                   "items": {"$ref": "#/components/schemas/Update"}},
                       "next_token": _NULLABLE_TEXT}},
    "Upload": {
        "type": "object", "required": ["url", "method", "bucket", "key", "source"],
        "properties": {"url": {**_TEXT, "description": "PUT the file's bytes here"},
                       "method": {"type": "string", "enum": ["PUT"]},
                       "headers": {"type": "object", "additionalProperties": _TEXT,
                                   "description": "headers the PUT must send"},
                       "bucket": _TEXT,
                       "key": _TEXT, "source": {**_TEXT, "description": "the ingest's source"},
                       "expires_in": _INT}},
    "IngestStarted": {
        "type": "object", "required": ["update_id", "job_id", "status"],
        "properties": {"dataset": _TEXT, "update_id": _TEXT, "job_id": _TEXT,
                       "status": {"type": "string", "enum": ["queued"]}}},
    "PipelineRunStarted": {
        "type": "object", "required": ["job_id", "pipeline", "status"],
        "properties": {"job_id": {**_TEXT, "description": "follow it at /jobs/{job_id}"},
                       "pipeline": _TEXT, "status": {"type": "string", "enum": ["queued"]}}},
    "Job": {
        "type": "object", "required": ["job_id", "status"],
        "description": "an ingest (dataset, update_id, request) or a pipeline run (pipeline, "
                       "trigger, run_id, inputs, outputs, duration_seconds)",
        "properties": {
            "job_id": _TEXT, "type": _NULLABLE_TEXT, "dataset": _NULLABLE_TEXT,
            "update_id": _NULLABLE_TEXT,
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
            "requested_by": _NULLABLE_TEXT, "created_at": _NULLABLE_TEXT,
            "started_at": _NULLABLE_TEXT, "finished_at": _NULLABLE_TEXT,
            "progress": {"nullable": True}, "error": _NULLABLE_TEXT,
            "request": {"type": "object", "nullable": True},
            "pipeline": _NULLABLE_TEXT, "trigger": _NULLABLE_TEXT, "run_id": _NULLABLE_TEXT,
            "inputs": {"type": "array", "nullable": True, "items": {"type": "object"}},
            "outputs": {"type": "object", "nullable": True,
                        "description": "output alias -> {dataset, update_id, rows}"},
            "duration_seconds": {"type": "number", "nullable": True}}},
    "Grant": {
        "type": "object",
        "required": ["grant_id", "dataset", "tier", "grantee", "level", "state", "requester",
                     "approvers", "created_at", "updated_at"],
        "properties": {
            "grant_id": {**_TEXT, "description": "<dataset>.<12 hex>"}, "dataset": _TEXT,
            "tier": _TEXT, "grantee": {**_TEXT, "description": "the person's principal ARN"},
            "level": {"type": "string", "enum": ["read", "write"]},
            "state": {"type": "string",
                      "enum": ["requested", "active", "rejected", "revoked", "expired"]},
            "requester": _TEXT, "approvers": {"type": "array", "items": _TEXT},
            "justification": _NULLABLE_TEXT, "reason": _NULLABLE_TEXT,
            "expires_at": {**_NULLABLE_TEXT, "description": "ISO-8601 UTC; set on approval"},
            "duration_seconds": {**_INT, "nullable": True}, "created_at": _TEXT,
            "updated_at": _TEXT, "decided_by": _NULLABLE_TEXT}},
    "GrantPage": {
        "type": "object", "required": ["grants", "next_token"],
        "properties": {"grants": {"type": "array", "items": {"$ref": "#/components/schemas/Grant"}},
                       "next_token": _NULLABLE_TEXT}},
    "Credentials": {
        "type": "object",
        "required": ["dataset", "level", "role_arn", "basis", "access_key_id",
                     "secret_access_key", "session_token", "expiration", "bucket", "prefix"],
        "properties": {
            "dataset": _TEXT, "level": {"type": "string", "enum": ["read", "write"]},
            "role_arn": _TEXT,
            "basis": {"type": "string", "enum": ["grant", "default", "owner", "break_glass"]},
            "grant_id": _NULLABLE_TEXT, "access_key_id": _TEXT, "secret_access_key": _TEXT,
            "session_token": _TEXT, "expiration": {**_TEXT, "description": "ISO-8601 UTC"},
            "region": _TEXT, "bucket": _TEXT, "prefix": _TEXT}},
    "AuditEvent": {
        "type": "object", "required": ["event_id", "at", "action", "actor", "decision"],
        "properties": {
            "event_id": _TEXT, "at": _TEXT, "dataset": _NULLABLE_TEXT,
            "action": {"type": "string", "enum": ["request", "approve", "reject", "revoke",
                                                  "expire", "vend", "break_glass", "run",
                                                  "refuse"]},
            "actor": _TEXT, "grant_id": _NULLABLE_TEXT, "level": _NULLABLE_TEXT,
            "decision": {"type": "string", "enum": ["allowed", "refused"]},
            "reason": _NULLABLE_TEXT, "detail": {"type": "object"}}},
    "AuditPage": {
        "type": "object", "required": ["events", "next_token"],
        "properties": {"events": {"type": "array",
                                  "items": {"$ref": "#/components/schemas/AuditEvent"}},
                       "next_token": _NULLABLE_TEXT}},
}

_RESULTS = {"list_datasets": "DatasetPage", "get_dataset": "DatasetDetails",
            "list_updates": "UpdatePage", "get_update": "UpdateDetails",
            "create_upload": "Upload", "start_ingest": "IngestStarted", "get_job": "Job",
            "request_grant": "Grant", "list_grants": "GrantPage", "get_grant": "Grant",
            "approve_grant": "Grant", "reject_grant": "Grant", "revoke_grant": "Grant",
            "get_credentials": "Credentials", "list_audit": "AuditPage",
            "start_pipeline_run": "PipelineRunStarted"}

_ERRORS = {
    "400": "Bad request: malformed JSON, unknown or missing fields, wrong types or values, "
           "an invalid page token",
    "403": "Not signed, not of this account, or not allowed (e.g. ingest by a non-writer, "
           "from a source the caller could not read, credentials without a grant, a "
           "decision the tier policy refuses, or a pipeline run by someone who may not write "
           "every output)",
    "404": "No such dataset, update, job, grant, grantee or pipeline",
    "405": "The method is not served on this path",
    "409": "Conflict with the current state (e.g. a grant in the wrong state, or one already "
           "requested)",
    "413": "The body is larger than the API accepts",
    "429": "Throttled; retry with back-off",
    "500": "A bug (logged); the answer still has the error shape",
    "503": "A service the lake depends on is unavailable; retry",
}


def _field_schema(field: Field) -> dict[str, Any]:
    if field.type == "map":   # a JSON object of text values, each checked by the pattern
        values: dict[str, Any] = {"type": "string"}
        if field.pattern:
            values["pattern"] = field.pattern
        return {"type": "object", "additionalProperties": values,
                **({"description": field.description} if field.description else {})}
    schema: dict[str, Any] = {"type": field.type}
    if field.enum:
        schema["enum"] = list(field.enum)
    if field.minimum is not None:
        schema["minimum"] = field.minimum
    if field.maximum is not None:
        schema["maximum"] = field.maximum
    if field.pattern:
        schema["pattern"] = field.pattern
    if field.description:
        schema["description"] = field.description
    return schema


def _operation(endpoint: Endpoint, config: ApiConfig) -> dict[str, Any]:
    parameters = [{"name": p.name, "in": "path", "required": True,
                   "schema": {"type": "string", **({"pattern": p.pattern} if p.pattern else {})},
                   **({"description": p.description} if p.description else {})}
                  for p in endpoint.path_params]
    parameters += [{"name": q.name, "in": "query", "required": False,
                    "schema": _field_schema(q),
                    **({"description": q.description} if q.description else {})}
                   for q in endpoint.query]
    operation: dict[str, Any] = {
        "operationId": endpoint.name, "summary": endpoint.summary,
        "x-edl-handler": endpoint.handler, "x-edl-access": endpoint.access,
    }
    if parameters:
        operation["parameters"] = parameters
    errors = ["400", "403", "405", "429", "500"]
    if endpoint.path_params or any(q.name == "dataset" for q in endpoint.query):
        errors.append("404")
    if endpoint.body:
        required = [f.name for f in endpoint.body if f.required]
        schema: dict[str, Any] = {
            "type": "object", "additionalProperties": False,
            "properties": {f.name: _field_schema(f) for f in endpoint.body}}
        if required:   # OpenAPI 3.0 wants a non-empty list, or none
            schema["required"] = required
        operation["requestBody"] = {"required": bool(required),
                                    "content": {"application/json": {"schema": schema}}}
        errors += ["409", "413", "503"]
    success = _SUCCESS.get(endpoint.name, "200")
    result = _RESULTS.get(endpoint.name)
    operation["responses"] = {
        success: {"description": "OK", "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{result}"} if result
            else {"type": "object"}}}},
        **{code: {"$ref": f"#/components/responses/E{code}"} for code in sorted(errors)},
    }
    return operation


def generate(config: ApiConfig | None = None) -> dict[str, Any]:
    config = config or get_api_config()
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in config.endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, config)
    return {
        "openapi": "3.0.3",
        "info": {"title": f"EDL REST API ({config.api_name})", "version": config.stage,
                 "description": "The Enterprise Data Lake's REST API, generated from "
                                "api_config.yaml. Every request is signed with AWS SigV4 "
                                "(service execute-api); errors are "
                                "{\"error\": {\"code\", \"message\"}}. Bodies are at most "
                                f"{config.max_body_bytes} bytes; pages hold at most "
                                f"{config.page_size_max} items."},
        "servers": [{"url": "https://{api_id}.execute-api.{region}.amazonaws.com/{stage}",
                     "variables": {"api_id": {"default": "API_ID"},
                                   "region": {"default": "us-east-1"},
                                   "stage": {"default": config.stage}}}],
        "security": [{"sigv4": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"sigv4": {"type": "apiKey", "name": "Authorization",
                                          "in": "header",
                                          "x-amazon-apigateway-authtype": "awsSigv4"}},
            "schemas": _SCHEMAS,
            "responses": {f"E{code}": {"description": text, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}
                for code, text in _ERRORS.items()},
        },
    }


def render(config: ApiConfig | None = None) -> str:
    """The document as the committed file holds it (stable key order, trailing newline)."""
    return json.dumps(generate(config), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edl.core_resources.rest_api.openapi",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {OPENAPI_FILE.name}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        OPENAPI_FILE.write_text(text, encoding="utf-8")
        print(f"wrote {OPENAPI_FILE}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
