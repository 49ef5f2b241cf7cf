"""The REST API's Lambda handlers, one module per resource (datasets, updates, ingest, jobs).

Which function serves which path and method, and who may call it, is `api_config.yaml`; what
every handler shares (validation, the caller, authorization, errors, page tokens) is `common`.
API Gateway calls them in the cloud; the local runtime calls the very same functions with the
event API Gateway would build. `openapi` generates the API's OpenAPI document from the config.

Nothing here imports deploy code or the local runtime (DESIGN §9).
"""
