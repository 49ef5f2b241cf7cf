"""The REST API's endpoints (`api_config.yaml`), loaded into typed, frozen objects.

Shared ground (DESIGN §9): the Lambda handlers validate requests against it, the deploy code
renders API Gateway from it, the local runtime routes by it, and the OpenAPI document is generated
from it. A bad file gives one `ConfigError` naming the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edl.config import _Reader
from edl.errors import ConfigError
from edl.paths import CONFIG_DIR

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ACCESS = ("authenticated", "dataset_writer")
# `map`: a JSON object of text values (a body field only; `pattern` checks each value).
FIELD_TYPES = {"string": str, "boolean": bool, "integer": int, "map": dict}
_PARAM_RE = re.compile(r"\{([a-z_]+)\}")
_HANDLER_RE = re.compile(r"[a-z_]+:[a-z_]+")


@dataclass(frozen=True)
class Field:
    """One body field or query parameter: its JSON type and limits."""

    name: str
    type: str = "string"
    required: bool = False
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    method: str
    handler: str           # "module:function" under edl.core_resources.rest_api
    access: str
    summary: str
    query: tuple[Field, ...]
    body: tuple[Field, ...]
    path_params: tuple[Field, ...]

    @property
    def module(self) -> str:
        return self.handler.split(":")[0]

    @property
    def function(self) -> str:
        return self.handler.split(":")[1]

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if `path` (no stage, no query) is this endpoint's path."""
        ours = self.path.strip("/").split("/")
        theirs = path.strip("/").split("/")
        if len(ours) != len(theirs):
            return None
        found = {}
        for mine, given in zip(ours, theirs, strict=True):
            param = _PARAM_RE.fullmatch(mine)
            if param:
                if not given:
                    return None
                found[param.group(1)] = given
            elif mine != given:
                return None
        return found


@dataclass(frozen=True)
class ApiConfig:
    api_name: str
    stage: str
    max_body_bytes: int
    page_size_default: int
    page_size_max: int
    endpoints: tuple[Endpoint, ...]
    path: Path

    @property
    def fingerprint(self) -> str:
        """A short hash of the endpoints: what API Gateway serves changes exactly when it does."""
        text = json.dumps([asdict(e) for e in self.endpoints], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def endpoint(self, name: str) -> Endpoint:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise KeyError(name)

    def route(self, method: str, path: str) -> tuple[Endpoint | None, dict[str, str], bool]:
        """(endpoint, path parameters, path_known): the endpoint serving `method path`; when
        none does, `path_known` says whether another method serves the path (→ 405, else 404)."""
        path_known = False
        for endpoint in self.endpoints:
            params = endpoint.match(path)
            if params is None:
                continue
            if endpoint.method == method.upper():
                return endpoint, params, True
            path_known = True
        return None, {}, path_known

    def handler_modules(self) -> tuple[str, ...]:
        """Handler modules in first-use order: one Lambda function each."""
        return tuple(dict.fromkeys(e.module for e in self.endpoints))

    def resource_paths(self) -> tuple[str, ...]:
        """Every path prefix API Gateway needs a resource for, parents before children."""
        paths: dict[str, None] = {}
        for endpoint in self.endpoints:
            parts = endpoint.path.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                paths["/" + "/".join(parts[:i])] = None
        return tuple(sorted(paths, key=lambda p: (p.count("/"), p)))


def _field(r: _Reader, where: str, name: str, raw: Any, *, body: bool) -> Field:
    r.check(isinstance(raw, dict), where, "must be a mapping")
    kind = r.get(raw, "type", where, str, required=False, default="string")
    r.check(kind in FIELD_TYPES, f"{where}.type", f"must be one of {', '.join(FIELD_TYPES)}")
    r.check(body or kind != "map", f"{where}.type", "map is for body fields only")
    enum = r.get(raw, "enum", where, list, required=False, default=[])
    r.check(all(isinstance(v, str) for v in enum), f"{where}.enum", "must list strings")
    return Field(
        name=name, type=kind,
        required=bool(r.get(raw, "required", where, bool, required=False, default=False)) if body
        else False,
        enum=tuple(enum),
        minimum=r.get(raw, "minimum", where, int, required=False),
        maximum=r.get(raw, "maximum", where, int, required=False),
        pattern=r.get(raw, "pattern", where, str, required=False),
        description=r.get(raw, "description", where, str, required=False, default=""),
    )


def load_api_config(path: Path | None = None) -> ApiConfig:
    """Load and validate `api_config.yaml` (default: the one in the config folder)."""
    path = Path(path or Path(os.environ.get("EDL_CONFIG_DIR") or CONFIG_DIR) / "api_config.yaml")
    r = _Reader(path)
    data = r.data
    page = r.get(data, "page_size", "", dict)
    query_params = {name: _field(r, f"query_params.{name}", name, raw, body=False)
                    for name, raw in r.get(data, "query_params", "", dict, required=False,
                                           default={}).items()}
    path_params = {name: _field(r, f"path_params.{name}", name, raw, body=False)
                   for name, raw in r.get(data, "path_params", "", dict, required=False,
                                          default={}).items()}
    endpoints = []
    seen: set[tuple[str, str]] = set()
    for i, raw in enumerate(r.get(data, "endpoints", "", list)):
        where = f"endpoints[{i}]"
        r.check(isinstance(raw, dict), where, "must be a mapping")
        name = r.get(raw, "name", where, str)
        where = f"endpoints.{name}"
        ep_path = r.get(raw, "path", where, str)
        r.check(ep_path.startswith("/"), f"{where}.path", "must start with '/'")
        method = r.get(raw, "method", where, str).upper()
        r.check(method in METHODS, f"{where}.method", f"must be one of {', '.join(METHODS)}")
        r.check((method, ep_path) not in seen, where, f"repeats {method} {ep_path}")
        seen.add((method, ep_path))
        handler = r.get(raw, "handler", where, str)
        r.check(bool(_HANDLER_RE.fullmatch(handler)), f"{where}.handler",
                "must be module:function")
        access = r.get(raw, "access", where, str)
        r.check(access in ACCESS, f"{where}.access", f"must be one of {', '.join(ACCESS)}")
        query = []
        for q in r.get(raw, "query", where, list, required=False, default=[]):
            r.check(q in query_params, f"{where}.query", f"names {q!r}, not in query_params")
            query.append(query_params[q])
        body = tuple(_field(r, f"{where}.body.{k}", k, v, body=True)
                     for k, v in r.get(raw, "body", where, dict, required=False,
                                       default={}).items())
        r.check(not body or method in ("POST", "PUT", "PATCH"), f"{where}.body",
                f"is not allowed on {method}")
        params = []
        for p in _PARAM_RE.findall(ep_path):
            r.check(p in path_params, f"{where}.path", f"has {{{p}}}, not in path_params")
            params.append(path_params[p])
        endpoints.append(Endpoint(
            name=name, path=ep_path, method=method, handler=handler, access=access,
            summary=r.get(raw, "summary", where, str, required=False, default=""),
            query=tuple(query), body=body, path_params=tuple(params)))
    stage = r.get(data, "stage", "", str)
    r.check(bool(re.fullmatch(r"[A-Za-z0-9_]+", stage)), "stage", "must be letters, digits, '_'")
    config = ApiConfig(
        api_name=r.get(data, "api_name", "", str), stage=stage,
        max_body_bytes=r.get(data, "max_body_bytes", "", int),
        page_size_default=r.get(page, "default", "page_size", int),
        page_size_max=r.get(page, "max", "page_size", int),
        endpoints=tuple(endpoints), path=path)
    if not config.endpoints:
        raise ConfigError(f"{path.name}: key 'endpoints' lists no endpoint", hint=f"edit {path}")
    return config


@lru_cache(maxsize=4)
def _cached(path: str) -> ApiConfig:
    return load_api_config(Path(path))


def get_api_config() -> ApiConfig:
    """The API config of this process (cached; `$EDL_CONFIG_DIR` picks another folder)."""
    folder = Path(os.environ.get("EDL_CONFIG_DIR") or CONFIG_DIR)
    return _cached(str(folder / "api_config.yaml"))
