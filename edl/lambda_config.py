"""A Lambda project's folder and its `lambda_config.yaml`, loaded into a checked `LambdaConfig`.

A Lambda project is a folder under `projects/` with `lambda_config.yaml` and the handler's code
(DESIGN §4):

    name: example_lambda
    description: checks each new update of clinical_trials      # optional
    handler: handler.handle        # <module>.<function>, the module a file of the folder
    runtime: python3.12            # python3.11 | python3.12 | python3.13
    timeout: 60                    # seconds, 1-900
    memory: 256                    # MB, 128-10240
    datasets:                      # dataset -> read | write: what its role may use
      clinical_trials: read
    environment: {MIN_ROWS: "10"}  # optional, strings
    trigger:                       # none | on_update | {on_update: [datasets]}
      on_update: [clinical_trials] #   | {schedule: "rate(1 hour)"} | "cron(0 6 * * ? *)"

Everything is checked here without importing the code: unknown keys, the handler's module and
that it defines the function with two parameters (event, context), the limits Lambda has, the
environment's names, and the trigger (an on_update dataset must be one of `datasets`; a schedule
must parse). That the datasets exist is for the deploy tool to check.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edl.errors import ConfigError, NamingError, UsageError
from edl.naming import validate_dataset_name
from edl.pipeline_config import check_schedule, code_hash

__all__ = ["CONFIG_FILE", "LambdaConfig", "LambdaTrigger", "code_hash", "load_lambda"]

CONFIG_FILE = "lambda_config.yaml"
RUNTIMES = ("python3.11", "python3.12", "python3.13")
LEVELS = ("read", "write")
_TOP_KEYS = {"name", "description", "handler", "runtime", "timeout", "memory", "datasets",
             "environment", "trigger"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{2,50}$")
_HANDLER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\."
                      r"([A-Za-z_][A-Za-z0-9_]*)$")
_ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Set by EDL and Lambda themselves; a project cannot override them.
_RESERVED_ENV = ("AWS_", "LAMBDA_", "EDL_INSTANCE", "_HANDLER", "TZ")
_ENV_MAX_BYTES = 4096


@dataclass(frozen=True)
class LambdaTrigger:
    kind: str                              # none | on_update | schedule
    datasets: tuple[str, ...] = ()         # of on_update
    schedule: str | None = None

    def describe(self) -> str:
        if self.kind == "schedule":
            return f"schedule {self.schedule}"
        if self.kind == "on_update":
            return f"on_update {', '.join(self.datasets)}"
        return "none"


@dataclass(frozen=True)
class LambdaConfig:
    name: str
    folder: Path
    handler: str
    runtime: str = "python3.12"
    timeout: int = 60
    memory: int = 256
    datasets: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    trigger: LambdaTrigger = field(default_factory=lambda: LambdaTrigger("none"))
    description: str = ""

    @property
    def handler_module(self) -> str:
        return self.handler.rpartition(".")[0]

    def datasets_at(self, level: str) -> list[str]:
        """The datasets it may use at `level` (write includes read)."""
        return sorted(d for d, lv in self.datasets.items() if level == "read" or lv == level)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "handler": self.handler,
                "runtime": self.runtime, "timeout": self.timeout, "memory": self.memory,
                "datasets": dict(sorted(self.datasets.items())),
                "environment": dict(sorted(self.environment.items())),
                "trigger": self.trigger.describe()}


def load_lambda(folder: str | Path) -> LambdaConfig:
    """The project in `folder`, checked; `ConfigError` naming the file and the key."""
    root = Path(folder)
    path = root / CONFIG_FILE
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder",
                         hint="give a Lambda project's folder, e.g. projects/example_lambda")
    if not path.is_file():
        raise UsageError(f"{root} has no {CONFIG_FILE}",
                         hint="a Lambda project is a folder with lambda_config.yaml and its "
                         "handler's code; see projects/example_lambda")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    where = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys")
    unknown = sorted(str(k) for k in raw if k not in _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}",
                          hint=f"known keys: {', '.join(sorted(_TOP_KEYS))}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} is not a valid Lambda project name",
                          hint="3-51 characters: lower-case letters, digits and _, starting "
                          "with a letter")
    handler = raw.get("handler")
    if not isinstance(handler, str) or not _HANDLER.match(handler):
        raise ConfigError(f"{where}: handler {handler!r} is not <module>.<function>",
                          hint="e.g. handler: handler.handle for def handle(event, context) "
                          "in handler.py")
    runtime = raw.get("runtime", "python3.12")
    if runtime not in RUNTIMES:
        raise ConfigError(f"{where}: runtime {runtime!r} is not one EDL deploys",
                          hint=f"one of {', '.join(RUNTIMES)}")
    datasets = _datasets(raw.get("datasets"), where)
    config = LambdaConfig(
        name=name, folder=root.resolve(), handler=handler, runtime=runtime,
        timeout=_bounded(raw, "timeout", 60, 1, 900, where, "seconds"),
        memory=_bounded(raw, "memory", 256, 128, 10240, where, "MB"),
        datasets=datasets, environment=_environment(raw.get("environment"), where),
        trigger=_trigger(raw.get("trigger", "none"), datasets, where),
        description=str(raw.get("description") or ""))
    _check_handler(config, where)
    return config


def _datasets(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: datasets must map each dataset to read or write",
                          hint="e.g. datasets: {clinical_trials: read}")
    out = {}
    for dataset, level in value.items():
        try:
            validate_dataset_name(str(dataset))
        except NamingError as exc:
            raise ConfigError(f"{where}: datasets.{dataset}: {exc.message}",
                              hint=exc.hint) from None
        if level not in LEVELS:
            raise ConfigError(f"{where}: datasets.{dataset}: level {level!r} is not read or "
                              "write")
        out[str(dataset)] = str(level)
    return out


def _bounded(raw: dict, key: str, default: int, low: int, high: int, where: str,
             unit: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: {key} {value!r} is not a whole number of {unit} in "
                          f"{low}-{high}", hint="Lambda's own limits")
    return value


def _environment(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: environment must be a mapping of names to strings")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ConfigError(f"{where}: environment.{key}: not a valid variable name",
                              hint="letters, digits and _, starting with a letter")
        if key.startswith(_RESERVED_ENV):
            raise ConfigError(f"{where}: environment.{key} is set by Lambda or EDL",
                              hint="choose another name")
        if isinstance(item, (dict, list)) or item is None:
            raise ConfigError(f"{where}: environment.{key} must be a string, number or "
                              "boolean")
        out[key] = str(item).lower() if isinstance(item, bool) else str(item)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in out.items())
    if size > _ENV_MAX_BYTES:
        raise ConfigError(f"{where}: environment holds {size} bytes, past Lambda's 4 KB",
                          hint="keep configuration in a dataset or SSM instead")
    return out


def _trigger(value: Any, datasets: dict[str, str], where: str) -> LambdaTrigger:
    at = f"{where}: trigger"
    if value in (None, "none", "manual"):
        return LambdaTrigger("none")
    if value == "on_update":
        if not datasets:
            raise ConfigError(f"{at}: on_update needs datasets to watch",
                              hint="name them under datasets:")
        return LambdaTrigger("on_update", tuple(sorted(datasets)))
    if isinstance(value, str) and value.strip().startswith(("cron(", "rate(")):
        return LambdaTrigger("schedule", schedule=check_schedule(value.strip(), at))
    if isinstance(value, dict) and len(value) == 1:
        (kind, spec), = value.items()
        if kind == "schedule" and isinstance(spec, str):
            return LambdaTrigger("schedule", schedule=check_schedule(spec.strip(), at))
        if kind == "on_update":
            watched = [spec] if isinstance(spec, str) else spec
            if not isinstance(watched, list) or not watched:
                raise ConfigError(f"{at}: on_update takes a list of datasets")
            outside = sorted(str(d) for d in watched if d not in datasets)
            if outside:
                raise ConfigError(f"{at}: on_update watches {', '.join(outside)}, which "
                                  "datasets: does not name",
                                  hint="add them under datasets: (read is enough)")
            return LambdaTrigger("on_update", tuple(sorted(set(map(str, watched)))))
    raise ConfigError(f"{at}: {value!r} is not a trigger",
                      hint='none, on_update, {on_update: [dataset]}, or {schedule: '
                      '"rate(1 hour)"}')


def _check_handler(config: LambdaConfig, where: str) -> None:
    module, _, function = config.handler.rpartition(".")
    path = config.folder.joinpath(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        raise ConfigError(f"{where}: handler {config.handler}: {path.name} is not in "
                          f"{config.folder}", hint=f"the module {module} must be a file of "
                          "the project's folder")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.offset}: {exc.msg}") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            if len(node.args.args) + len(node.args.posonlyargs) != 2:
                raise ConfigError(f"{path}:{node.lineno}: {function}() must take (event, "
                                  "context)")
            return
    raise ConfigError(f"{path} defines no function {function}",
                      hint=f"def {function}(event, context): ...")
