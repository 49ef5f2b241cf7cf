"""The OpenAPI document: generated from api_config.yaml, committed, valid, and complete."""

from __future__ import annotations

import json

from edl.api_config import get_api_config
from edl.core_resources.rest_api import openapi


def test_committed_openapi_json_is_what_the_config_generates():
    committed = openapi.OPENAPI_FILE.read_text(encoding="utf-8")
    assert committed == openapi.render(), (
        "openapi.json is stale: run python -m edl.core_resources.rest_api.openapi --write")


def test_document_is_valid_openapi_3():
    import openapi_spec_validator

    openapi_spec_validator.validate(json.loads(openapi.OPENAPI_FILE.read_text()))


def test_every_endpoint_is_described_with_its_inputs_closed():
    config = get_api_config()
    document = openapi.generate(config)
    for endpoint in config.endpoints:
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        assert operation["operationId"] == endpoint.name
        names = {p["name"] for p in operation.get("parameters", [])}
        assert names == {p.name for p in endpoint.path_params} | {q.name for q in endpoint.query}
        if endpoint.body:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert schema["additionalProperties"] is False
            assert set(schema.get("required", [])) == {f.name for f in endpoint.body
                                                       if f.required}
        assert operation["responses"]["400"] == {"$ref": "#/components/responses/E400"}


def test_ingest_body_keeps_types_and_enums():
    body = openapi.generate()["paths"]["/datasets/{dataset}/ingest"]["post"]["requestBody"]
    properties = body["content"]["application/json"]["schema"]["properties"]
    assert properties["kind"]["enum"] == ["snapshot", "delta"]
    assert properties["header"]["type"] == "boolean"


def test_sigv4_is_the_security_scheme():
    document = openapi.generate()
    assert document["security"] == [{"sigv4": []}]
    assert document["components"]["securitySchemes"]["sigv4"][
        "x-amazon-apigateway-authtype"] == "awsSigv4"
