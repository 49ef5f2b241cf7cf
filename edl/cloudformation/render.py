"""Render the Jinja2 CloudFormation templates and check them with cfn-lint before any deploy.

The templates in `edl/paths.TEMPLATES_DIR` see three names (`template_context`): `instance`,
`bucket_prefix` and `api` (the REST API's endpoints, from api_config.yaml, which shape
rest_api.yaml); Jinja decides structure only, and everything that differs between stacks is a
CloudFormation parameter.
So one rendered body serves many stacks (every tier and region of `buckets.yaml`, every dataset
of `folder_acls.yaml`) and `lint_templates` lints each distinct body once.

Linting is what makes a deploy slow to start, so it is done as little as possible:

- identical bodies are linted once;
- a clean result is remembered on disk (`cache_dir()/lint`), keyed by cfn-lint's version, the
  body's sha256 and the regions, so an unchanged template is never linted twice; a run where
  everything is cached does not even import cfn-lint;
- one cfn-lint `Runner` (its rules) is built per process and region set and reused. Measured:
  `cfnlint.api.lint` takes ~0.5 s per template because it builds a new Runner on every call
  (~0.3 s of rule loading; its `rules=` shortcut only accepts the legacy `RulesCollection`);
  a reused Runner lints one of our templates in 0.04-0.13 s.

Which matches stop a deploy: errors (`E…`) and warnings (`W…`). cfn-lint's warnings are about
real defects in templates we own (an unused parameter, a `!Sub` without variables, an IAM action
that does not exist), and a warning left in place hides the next one, so both count. Informational
rules (`I…`) are not run (cfn-lint's default) and would not count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

from edl.config import Instance, LakeConfig
from edl.errors import TemplateError
from edl.paths import TEMPLATES_DIR, cache_dir

if TYPE_CHECKING:
    from cfnlint.rules import Match
    from cfnlint.runner import Runner

LOG = logging.getLogger(__name__)

_FAILING_LEVELS = ("E", "W")
_DEFAULT_LINT_REGION = "us-east-1"

_runners: dict[tuple[str, ...], Runner] = {}
_runner_lock = threading.Lock()


@dataclass(frozen=True)
class RenderedTemplate:
    name: str  # the template's file name, e.g. "buckets.yaml"
    body: str  # the rendered YAML text

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()


def template_names() -> list[str]:
    """Every template there is: the `*.yaml` files of the templates folder, sorted."""
    return sorted(p.name for p in TEMPLATES_DIR.glob("*.yaml"))


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def template_context(config: LakeConfig, instance: Instance) -> dict[str, Any]:
    """What every template sees: the instance, the bucket prefix, and the API's endpoints."""
    from edl.api_config import get_api_config

    return {"instance": instance, "bucket_prefix": config.bucket_prefix, "api": get_api_config()}


def render_template(name: str, context: Mapping[str, Any]) -> RenderedTemplate:
    """Render one template; any failure is a `TemplateError` naming the template and line."""
    env = _environment()
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        raise TemplateError(
            f"no template named {name!r}", hint=f"choose one of: {', '.join(template_names())}"
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{exc.name or name} line {exc.lineno}: {exc.message}") from exc
    try:
        body = template.render(**context)
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        hint = None
        if isinstance(exc, jinja2.UndefinedError):
            hint = ("templates see only 'instance', 'bucket_prefix' and 'api'; "
                    "values that differ between stacks are CloudFormation parameters")
        raise TemplateError(f"{_where(exc, name)}: {message}", hint=hint) from exc
    return RenderedTemplate(name=name, body=body)


def _where(exc: BaseException, name: str) -> str:
    """`<template> line <n>` for a render error: jinja rewrites its traceback so that the
    templates' own frames carry the template file and line (the innermost one wins, so an error
    inside an included file names that file)."""
    folder = str(TEMPLATES_DIR) + os.sep
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename and f.filename.startswith(folder)]
    if not frames:
        return name
    return f"{os.path.basename(frames[-1].filename)} line {frames[-1].lineno}"


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # C if built
    """YAML with CloudFormation's short tags: `!Ref X` reads as {"Ref": X}, `!Sub s` as
    {"Fn::Sub": s}, `!GetAtt A.B` as {"Fn::GetAtt": ["A", "B"]}."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected !{suffix}", node.start_mark)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_tag)


def parse_template(body: str, name: str = "template") -> dict:
    """A rendered body as a dict, short tags (`!Ref`, `!Sub` …) decoded the way CloudFormation
    reads them (`{"Ref": …}`, `{"Fn::Sub": …}`). Cheap: no cfn-lint, so reading a deployed
    stack's outputs costs no linter start-up."""
    try:
        template = yaml.load(body, Loader=_CfnLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TemplateError(f"{name}{where}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(template, dict):
        raise TemplateError(f"{name}: not a CloudFormation template (expected a mapping)")
    return template


def lint_templates(templates: Iterable[RenderedTemplate], regions: Sequence[str]) -> None:
    """Check every template with cfn-lint for `regions`; raise one `TemplateError` that lists
    every error and warning as `<template> line <n>: <rule> <message>`."""
    regions_key = tuple(sorted(set(regions))) or (_DEFAULT_LINT_REGION,)
    by_body: dict[str, list[RenderedTemplate]] = {}
    for template in templates:
        by_body.setdefault(template.sha256, []).append(template)

    problems: list[str] = []
    for sha, same_body in by_body.items():
        names = sorted({t.name for t in same_body})
        marker = _cache_marker(sha, regions_key)
        if marker.exists():
            LOG.debug("%s - lint result cached", ", ".join(names))
            continue
        LOG.debug("%s - linting for %s", ", ".join(names), ", ".join(regions_key))
        matches = [m for m in _lint_body(same_body[0].body, regions_key)
                   if m.rule.id.startswith(_FAILING_LEVELS)]
        if matches:
            for name in names:
                problems.extend(_describe(name, m) for m in matches)
        else:
            _remember_clean(marker, names, regions_key)

    if problems:
        raise TemplateError(
            "cfn-lint found problems:\n  " + "\n  ".join(problems),
            hint=f"fix the template(s) in {TEMPLATES_DIR}",
        )


def _lint_body(body: str, regions: tuple[str, ...]) -> list[Match]:
    from cfnlint.decode.decode import decode_str

    template, matches = decode_str(body)
    if matches:
        return list(matches)
    if template is None:
        return []
    from cfnlint.exceptions import CfnLintExitException

    with _runner_lock:
        try:
            return sorted(_runner(regions).validate_template(template),
                          key=lambda m: (m.linenumber, m.rule.id))
        except CfnLintExitException as exc:  # e.g. a region cfn-lint does not know
            raise TemplateError(f"cfn-lint cannot run: {exc}",
                                hint="check the instance's regions in account_config.yaml") from exc


def _runner(regions: tuple[str, ...]) -> Runner:
    """One cfn-lint Runner (configuration plus loaded rules) per region set, built once."""
    if regions not in _runners:
        from cfnlint.api import ManualArgs
        from cfnlint.config import ConfigMixIn
        from cfnlint.runner import Runner

        # config_file=devnull: a .cfnlintrc in the user's home or working folder must not change
        # what passes (nor make a cached result wrong); a template that needs a rule silenced
        # says so in its own Metadata, which is part of the body and so of the cache key.
        args = ManualArgs(regions=list(regions), config_file=os.devnull)
        _runners[regions] = Runner(ConfigMixIn(**args))
    return _runners[regions]


def _describe(name: str, match: Match) -> str:
    return f"{name} line {match.linenumber}: {match.rule.id} {match.message}"


@lru_cache(maxsize=1)
def _cfn_lint_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cfn-lint")
    except PackageNotFoundError:  # pragma: no cover - cfn-lint is a dependency
        return "unknown"


def _cache_marker(body_sha: str, regions: tuple[str, ...]) -> Path:
    key = hashlib.sha256(
        f"{_cfn_lint_version()}\n{body_sha}\n{','.join(regions)}".encode()
    ).hexdigest()
    return cache_dir() / "lint" / f"{key}.json"


def _remember_clean(marker: Path, names: list[str], regions: tuple[str, ...]) -> None:
    """Record a clean result; a cache that cannot be written only costs a lint next time."""
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        record = {"templates": names, "regions": list(regions), "cfn_lint": _cfn_lint_version()}
        fd, tmp = tempfile.mkstemp(dir=marker.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(record, out)
        os.replace(tmp, marker)
    except OSError as exc:
        LOG.debug("lint cache - cannot write %s: %s", marker, exc)
