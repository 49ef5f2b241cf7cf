"""A pipeline's folder and its `pipeline_config.yaml`, loaded into a checked `PipelineConfig`.

A PySpark pipeline is a folder with `pipeline_config.yaml` and `pipeline.py`, which defines
`run(spark, inputs, params)`; a SQL pipeline has `pipeline_config.yaml` and one `<alias>.sql` per
output, selecting from the input aliases as tables (DESIGN §4):

    name: visits_by_site
    kind: pyspark                  # pyspark | sql
    description: visits per site   # optional
    inputs:                        # alias -> dataset
      visits: {dataset: visits}
    outputs:                       # alias -> an existing dataset and the kind of update
      by_site: {dataset: visits_by_site, kind: snapshot}
    trigger: on_update             # on_update | manual | {schedule: "cron(0 6 * * ? *)"}
    checks:                        # per output, run before it is committed
      by_site: [{rows_at_least: 1}, {not_null: [site]}, {unique: [site]}]
    params: {min_visits: 1}        # optional, handed to run() as a dict

Everything is checked here, without importing the pipeline's code (the deploy tool must not run
it): unknown keys, aliases, dataset names, kinds, the trigger expression, the checks, that
`pipeline.py` defines `run` with three parameters, and that each SQL file parses (file, line and
column of the first error). What the lake must say (datasets exist, tiers) is checked by the
deploy tool and by the wrapper at run time.

The code hash (`code_hash`) is the SHA-256 over the folder's files (names and bytes, sorted;
caches and hidden files left out): lineage records it, and packaging keys the upload by it.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edl.errors import ConfigError, EdlError, UsageError
from edl.naming import validate_dataset_name
from edl.utils.schedules import parse_schedule

CONFIG_FILE = "pipeline_config.yaml"
PYSPARK_FILE = "pipeline.py"
KINDS = ("pyspark", "sql")
UPDATE_KINDS = ("snapshot", "delta")
TRIGGERS = ("on_update", "manual")
CHECKS = ("rows_at_least", "not_null", "unique")
_TOP_KEYS = {"name", "kind", "description", "inputs", "outputs", "trigger", "checks", "params"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{2,62}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SKIPPED = ("__pycache__", ".", "build")


@dataclass(frozen=True)
class Input:
    alias: str
    dataset: str


@dataclass(frozen=True)
class Output:
    alias: str
    dataset: str
    kind: str = "snapshot"


@dataclass(frozen=True)
class Check:
    """One quality check of an output: `rows_at_least` (a number) or `not_null` / `unique`
    (column names)."""

    name: str
    value: Any

    def describe(self) -> str:
        if self.name == "rows_at_least":
            return f"rows_at_least: {self.value}"
        return f"{self.name}: [{', '.join(self.value)}]"


@dataclass(frozen=True)
class Trigger:
    kind: str                   # on_update | manual | schedule
    schedule: str | None = None  # the AWS schedule expression of kind "schedule"

    def describe(self) -> str:
        return f"schedule {self.schedule}" if self.kind == "schedule" else self.kind


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    kind: str
    folder: Path
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    trigger: Trigger = field(default_factory=lambda: Trigger("manual"))
    checks: dict[str, tuple[Check, ...]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def input(self, alias: str) -> Input:
        return next(i for i in self.inputs if i.alias == alias)

    def output(self, alias: str) -> Output:
        return next(o for o in self.outputs if o.alias == alias)

    def sql_file(self, alias: str) -> Path:
        return self.folder / f"{alias}.sql"

    def input_datasets(self) -> list[str]:
        return sorted({i.dataset for i in self.inputs})

    def output_datasets(self) -> list[str]:
        return sorted({o.dataset for o in self.outputs})

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON (what the registration and `edl pipelines --json` show)."""
        return {
            "name": self.name, "kind": self.kind, "description": self.description,
            "inputs": {i.alias: {"dataset": i.dataset} for i in self.inputs},
            "outputs": {o.alias: {"dataset": o.dataset, "kind": o.kind} for o in self.outputs},
            "trigger": self.trigger.describe(),
            "checks": {alias: [{c.name: c.value} for c in checks]
                       for alias, checks in self.checks.items()},
            "params": self.params,
        }


def load_pipeline(folder: str | Path) -> PipelineConfig:
    """The checked config of the pipeline in `folder`; `ConfigError` names what is wrong."""
    root = Path(folder)
    path = root / CONFIG_FILE
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder",
                          hint="give the folder that holds pipeline_config.yaml")
    if not path.is_file():
        raise ConfigError(f"{root} has no {CONFIG_FILE}",
                          hint="a pipeline folder holds pipeline_config.yaml and pipeline.py "
                          "(or .sql files); see pipelines/example")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (name, kind, inputs, ...)")
    where = str(path)
    _no_unknown(raw, _TOP_KEYS, where)
    name = _required(raw, "name", str, where)
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} is not a valid pipeline name",
                          hint="lowercase letters, digits and _, 3-63 characters, starting "
                          "with a letter")
    kind = raw.get("kind", "pyspark")
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind {kind!r} is unknown", hint="pyspark or sql")
    inputs = tuple(Input(alias, dataset) for alias, dataset in
                   _aliases(raw, "inputs", where, lambda spec, at: _dataset(spec, at)))
    outputs = tuple(Output(alias, *spec) for alias, spec in
                    _aliases(raw, "outputs", where, _output_spec))
    if not outputs:
        raise ConfigError(f"{where}: outputs: a pipeline needs at least one output")
    clash = {i.alias for i in inputs} & {o.alias for o in outputs}
    if clash:
        raise ConfigError(f"{where}: alias(es) {', '.join(sorted(clash))} are both an input "
                          "and an output", hint="give each input and output its own alias")
    doubled = [d for d in {o.dataset for o in outputs}
               if sum(o.dataset == d for o in outputs) > 1]
    if doubled:
        raise ConfigError(f"{where}: outputs: dataset(s) {', '.join(sorted(doubled))} named by "
                          "more than one output", hint="one output per dataset")
    config = PipelineConfig(
        name=name, kind=kind, folder=root, inputs=inputs, outputs=outputs,
        trigger=parse_trigger(raw.get("trigger", "manual"), f"{where}: trigger"),
        checks=_checks(raw.get("checks") or {}, {o.alias for o in outputs}, where),
        params=_mapping(raw.get("params") or {}, f"{where}: params"),
        description=str(raw.get("description") or ""),
    )
    if kind == "pyspark":
        _check_run(root / PYSPARK_FILE)
    else:
        _check_sql(config)
    return config


def parse_trigger(value: Any, where: str) -> Trigger:
    """`on_update`, `manual`, `{schedule: "cron(...)"}` or a bare `cron(...)`/`rate(...)`."""
    if isinstance(value, dict):
        _no_unknown(value, {"schedule"}, where)
        expression = value.get("schedule")
        if not isinstance(expression, str):
            raise ConfigError(f"{where}: schedule needs an expression",
                              hint='e.g. schedule: "cron(0 6 * * ? *)" or "rate(1 hour)"')
        return Trigger("schedule", check_schedule(expression.strip(), where))
    if isinstance(value, str):
        text = value.strip()
        if text in TRIGGERS:
            return Trigger(text)
        if text.startswith("schedule:"):
            text = text.partition(":")[2].strip().strip("\"'")
        if text.startswith(("cron(", "rate(")):
            return Trigger("schedule", check_schedule(text, where))
    raise ConfigError(f"{where}: {value!r} is not a trigger",
                      hint='on_update, manual, or schedule: "cron(0 6 * * ? *)"')


def check_schedule(expression: str, where: str) -> str:
    """An EventBridge schedule expression, or `ConfigError` saying why not."""
    parse_schedule(expression, where)
    return expression


def parse_as_of(values: list[str]) -> dict[str, str]:
    """`["visits=4", "sites=0000000002"]` → `{"visits": "4", "sites": "0000000002"}`."""
    pairs = {}
    for value in values:
        alias, sep, update = value.partition("=")
        if not sep or not alias.strip() or not update.strip():
            raise UsageError(f"--as-of {value!r} is not ALIAS=UPDATE",
                             hint="e.g. --as-of visits=0000000004")
        pairs[alias.strip()] = update.strip()
    return pairs


def code_files(folder: Path) -> Iterator[Path]:
    """The pipeline's own files, sorted by path (no caches, hidden files or build output)."""
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if path.is_file() and not any(p.startswith(_SKIPPED) for p in parts) \
                and path.suffix not in (".pyc", ".pyo"):
            yield path


def code_hash(folder: str | Path) -> str:
    """The SHA-256 over the pipeline folder's files: their relative names and bytes."""
    root = Path(folder)
    digest = hashlib.sha256()
    for path in code_files(root):
        name = path.relative_to(root).as_posix().encode()
        body = path.read_bytes()
        digest.update(len(name).to_bytes(4, "big") + name + len(body).to_bytes(8, "big") + body)
    return digest.hexdigest()


# -- the pieces -------------------------------------------------------------------------------

def _no_unknown(raw: dict, known: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}",
                          hint=f"known keys: {', '.join(sorted(known))}")


def _required(raw: dict, key: str, kind: type, where: str) -> Any:
    if key not in raw or raw[key] in (None, ""):
        raise ConfigError(f"{where}: {key} is missing")
    if not isinstance(raw[key], kind):
        raise ConfigError(f"{where}: {key} must be a {kind.__name__}")
    return raw[key]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    return dict(value)


def _aliases(raw: dict, key: str, where: str, parse) -> list[tuple[str, Any]]:
    entries = _mapping(raw.get(key) or {}, f"{where}: {key}")
    out = []
    for alias, spec in entries.items():
        at = f"{where}: {key}.{alias}"
        if not isinstance(alias, str) or not _ALIAS.match(alias):
            raise ConfigError(f"{at}: {alias!r} is not a valid alias",
                              hint="letters, digits and _, starting with a letter or _ "
                              "(it is a table name in SQL and a dict key in run())")
        out.append((alias, parse(spec, at)))
    return out


def _dataset(spec: Any, where: str, known: frozenset[str] = frozenset({"dataset"})) -> str:
    if isinstance(spec, str):   # `alias: dataset` for short
        spec = {"dataset": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected {{dataset: NAME}}")
    _no_unknown(spec, set(known), where)
    dataset = _required(spec, "dataset", str, where)
    try:
        validate_dataset_name(dataset)
    except EdlError as exc:   # NamingError: the name is not a dataset's
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None
    return dataset


def _output_spec(spec: Any, where: str) -> tuple[str, str]:
    dataset = _dataset(spec, where, frozenset({"dataset", "kind"}))
    kind = spec.get("kind", "snapshot") if isinstance(spec, dict) else "snapshot"
    if kind not in UPDATE_KINDS:
        raise ConfigError(f"{where}: kind {kind!r} is unknown", hint="snapshot or delta")
    return dataset, kind


def _checks(raw: Any, outputs: set[str], where: str) -> dict[str, tuple[Check, ...]]:
    checks = _mapping(raw, f"{where}: checks")
    out: dict[str, tuple[Check, ...]] = {}
    for alias, items in checks.items():
        at = f"{where}: checks.{alias}"
        if alias not in outputs:
            raise ConfigError(f"{at}: {alias!r} is not an output",
                              hint=f"outputs: {', '.join(sorted(outputs))}")
        if not isinstance(items, list):
            raise ConfigError(f"{at}: expected a list of checks",
                              hint="e.g. [{rows_at_least: 1}, {not_null: [site]}]")
        parsed = []
        for n, item in enumerate(items):
            if not isinstance(item, dict) or len(item) != 1:
                raise ConfigError(f"{at}[{n}]: a check is one key and its value",
                                  hint=f"checks: {', '.join(CHECKS)}")
            (name, value), = item.items()
            if name not in CHECKS:
                raise ConfigError(f"{at}[{n}]: unknown check {name!r}",
                                  hint=f"checks: {', '.join(CHECKS)}")
            if name == "rows_at_least":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"{at}[{n}]: rows_at_least takes a whole number >= 0")
            else:
                value = [value] if isinstance(value, str) else value
                if not isinstance(value, list) or not value or \
                        not all(isinstance(v, str) and v for v in value):
                    raise ConfigError(f"{at}[{n}]: {name} takes a list of column names")
                value = tuple(value)
            parsed.append(Check(name, value))
        out[alias] = tuple(parsed)
    return out


def _check_run(path: Path) -> None:
    """`pipeline.py` parses and defines `run(spark, inputs, params)` at its top level."""
    if not path.is_file():
        raise ConfigError(f"{path.parent} has no {PYSPARK_FILE}",
                          hint="a pyspark pipeline defines run(spark, inputs, params) in "
                          "pipeline.py (or set kind: sql and give <output>.sql files)")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.offset}: {exc.msg}") from None
    runs = [node for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "run"]
    if not runs:
        raise ConfigError(f"{path} defines no run() function",
                          hint="def run(spark, inputs, params): return {alias: dataframe}")
    arguments = runs[-1].args
    positional = len(arguments.posonlyargs) + len(arguments.args)
    if positional < 3 and arguments.vararg is None:
        raise ConfigError(f"{path}:{runs[-1].lineno}: run() takes {positional} argument(s); "
                          "the wrapper calls run(spark, inputs, params)")


def _check_sql(config: PipelineConfig) -> None:
    """One `<alias>.sql` per output, each one statement that parses as Spark SQL."""
    import sqlglot
    from sqlglot.errors import ParseError

    folder = config.folder
    wanted = {o.alias for o in config.outputs}
    present = {p.stem for p in folder.glob("*.sql")}
    missing = sorted(wanted - present)
    if missing:
        raise ConfigError(f"{folder}: no SQL for output(s) {', '.join(missing)}",
                          hint="a sql pipeline has one <output alias>.sql file per output")
    extra = sorted(present - wanted)
    if extra:
        raise ConfigError(f"{folder}: {', '.join(f'{e}.sql' for e in extra)} match(es) no "
                          "output", hint=f"outputs: {', '.join(sorted(wanted))}")
    for alias in sorted(wanted):
        path = config.sql_file(alias)
        text = path.read_text(encoding="utf-8")
        try:
            statements = [s for s in sqlglot.parse(text, read="spark") if s is not None]
        except ParseError as exc:
            error = exc.errors[0] if exc.errors else {}
            line, column = error.get("line", "?"), error.get("col", "?")
            message = error.get("description") or str(exc).splitlines()[0]
            raise ConfigError(f"{path}:{line}:{column}: {message}",
                              hint="the file must hold one Spark SQL SELECT") from None
        if len(statements) != 1:
            raise ConfigError(f"{path}: holds {len(statements)} statements",
                              hint="one SELECT per file, producing that output")
