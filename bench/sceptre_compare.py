"""Benchmark 2: `edl deploy-core` for the local instance's two regions, linting included, takes at
most 0.5x the wall time of Sceptre 4.x launching the same rendered templates against the same
endpoint.

- Sceptre lives in a virtual environment of its own, `bench/.venv-sceptre` (Sceptre 4 and moto 5
  need different jsonschema versions); it is created once, when missing, and that set-up is
  printed but not counted.
- The templates are EDL's own, rendered with `edl render --instance local --out DIR`; only the core
  stacks (the ones `edl deploy-core` deploys) go into the Sceptre project, the sample dataset stack
  does not. Each stack gets `config/local/<name>.yaml`: its region, its template, its parameters,
  its dependencies (as in EDL's core component) and EDL's stack tags. With `project_code: edl`
  Sceptre's own stack names equal EDL's, and `stack_name` says so explicitly; this matters
  because Sceptre's `!stack_output` resolver derives the dependency's stack name from
  project_code and path, ignoring `stack_name`. A parameter that EDL takes from another stack's
  output (rendered as `<stack.Output>` inside a format) becomes
  `!sub ["<format with {v0}>", {v0: !stack_output local/<stack>.yaml::<Output>}]`, one list item
  per comma-separated value (Sceptre joins lists with commas, as CommaDelimitedList wants).
  EDL's `EdlFingerprint` parameter is left at its default: it changes no resource. edl also
  uploads the code packages its stacks reference (ingest job, REST API); Sceptre does not, so
  that work counts on edl's side only.
- Both tools deploy as the instance's CloudFormation role: Sceptre gets the role's temporary
  credentials (assumed through STS with the local admin's keys) as AWS_ACCESS_KEY_ID /
  AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, with AWS_ENDPOINT_URL and AWS_DEFAULT_REGION.
- Each round renders the templates afresh; a round during which a file under edl/ changed is not
  counted (and says so), since the two tools would not deploy the same source.
- Per repetition both tools run once, each on a freshly reset local cloud (stop + start: an empty
  moto, bootstrapped again, and warmed up untimed: see `LocalCloud.warm_up`), alternating which
  goes first; edl starts with a cold lint cache.
  Timed: the wall time of `sceptre launch -y local` and of `edl deploy-core --instance local`.
- After every run the stacks are read back: both tools must leave exactly the core stacks, all
  CREATE_COMPLETE, with the same resources and the same parameters (KMS key ids and code
  package hashes masked).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench._common import (
    BENCH_DIR,
    EDL,
    LOCAL,
    STACK_PREFIX,
    BenchError,
    Line,
    LocalCloud,
    check_core_deployed,
    log,
    median,
    run,
    source_digest,
)

GROUP = "sceptre"
TARGET_RATIO = 0.5
VENV = BENCH_DIR / ".venv-sceptre"
SCEPTRE = VENV / "bin" / "sceptre"
REQUIREMENT = "sceptre>=4,<5"
PROJECT_CODE = "edl"
_PLACEHOLDER = re.compile(r"<([a-z0-9-]+)\.([A-Za-z0-9]+)>")


# -- Sceptre's virtual environment -------------------------------------------------------------

def ensure_sceptre() -> float | None:
    """Create bench/.venv-sceptre with Sceptre 4 if it is missing; the seconds that took."""
    if SCEPTRE.exists():
        return None
    log(f"setting up {VENV.relative_to(BENCH_DIR.parent)} ({REQUIREMENT}); done once, not timed")
    started = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([VENV / "bin" / "python", "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", REQUIREMENT], check=True)
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"could not set up Sceptre in {VENV}: {exc}") from exc
    return time.perf_counter() - started


def sceptre_version() -> str:
    done = subprocess.run([SCEPTRE, "--version"], capture_output=True, text=True, check=True)
    version = done.stdout.strip().split()[-1]
    if not version.startswith("4."):
        raise BenchError(f"{SCEPTRE} is Sceptre {version}, not 4.x: remove {VENV} and run again")
    return version


# -- the Sceptre project -----------------------------------------------------------------------

class _Tagged:
    """A YAML value with a Sceptre resolver tag (`!sub`, `!stack_output`)."""

    def __init__(self, tag: str, value: Any) -> None:
        self.tag, self.value = tag, value


class _Dumper(yaml.SafeDumper):
    pass


def _represent_tagged(dumper: yaml.SafeDumper, data: _Tagged) -> yaml.Node:
    if isinstance(data.value, str):
        return dumper.represent_scalar(data.tag, data.value, style='"')
    return dumper.represent_sequence(data.tag, data.value)


_Dumper.add_representer(_Tagged, _represent_tagged)


def _config_path(stack: str) -> str:
    """`edl-local-buckets-internal-us-east-1` -> `local/buckets-internal-us-east-1.yaml`, whose
    Sceptre name (project_code + path with / as -) is the stack name again."""
    path = f"{LOCAL}/{stack[len(STACK_PREFIX):]}.yaml"
    if f"{PROJECT_CODE}-{path[:-len('.yaml')].replace('/', '-')}" != stack:
        raise BenchError(f"stack {stack} cannot be given a Sceptre path that names it")
    return path


def _parameter(value: str) -> Any:
    """A rendered parameter value as Sceptre config: plain, or resolvers for output references."""
    items = []
    for item in value.split(","):
        refs = _PLACEHOLDER.findall(item)
        if not refs:
            items.append(item)
            continue
        fmt, variables = item, {}
        for i, (stack, output) in enumerate(refs):
            fmt = fmt.replace(f"<{stack}.{output}>", f"{{v{i}}}", 1)
            variables[f"v{i}"] = _Tagged("!stack_output", f"{_config_path(stack)}::{output}")
        if _PLACEHOLDER.sub("", item).count("{") or _PLACEHOLDER.sub("", item).count("}"):
            raise BenchError(f"parameter value {item!r} has braces; it cannot be a !sub format")
        items.append(_Tagged("!sub", [fmt, variables]))
    return items[0] if len(items) == 1 else items


def build_project(rendered: Path, project: Path) -> list[str]:
    """Write a Sceptre project for EDL's core stacks from `edl render`'s output; the stack names."""
    from edl.cloudformation.components.core import core_stacks
    from edl.config import get_config

    config = get_config()
    instance = config.instance(LOCAL)
    specs = core_stacks(config, instance)
    (project / "templates").mkdir(parents=True)
    (project / "config" / LOCAL).mkdir(parents=True)
    (project / "config" / "config.yaml").write_text(
        yaml.safe_dump({"project_code": PROJECT_CODE, "region": instance.default_region}))
    for spec in specs:
        rendered_params = json.loads((rendered / f"{spec.name}.parameters.json").read_text())
        if rendered_params["Region"] != spec.region:
            raise BenchError(f"{spec.name}: rendered for {rendered_params['Region']}, "
                             f"deployed to {spec.region}")
        shutil.copy(rendered / f"{spec.name}.yaml", project / "templates" / f"{spec.name}.yaml")
        stack_config = {
            "stack_name": spec.name,
            "region": spec.region,
            "template": {"type": "file", "path": f"{spec.name}.yaml"},
            "stack_tags": {"edl:instance": instance.name, "edl:template": spec.template},
            "parameters": {k: _parameter(v) for k, v in rendered_params["Parameters"].items()},
        }
        if spec.depends_on:
            stack_config["dependencies"] = [_config_path(d) for d in spec.depends_on]
        (project / "config" / _config_path(spec.name)).write_text(
            yaml.dump(stack_config, Dumper=_Dumper, sort_keys=False))
    return [s.name for s in specs]


# -- the comparison ----------------------------------------------------------------------------

def _sceptre_env(cloud: LocalCloud) -> dict[str, str]:
    creds = cloud.role_credentials()
    return cloud.env(AWS_ACCESS_KEY_ID=creds["aws_access_key_id"],
                     AWS_SECRET_ACCESS_KEY=creds["aws_secret_access_key"],
                     AWS_SESSION_TOKEN=creds["aws_session_token"],
                     AWS_ENDPOINT_URL=cloud.endpoint,
                     AWS_DEFAULT_REGION=cloud.instance.default_region)


def _same_stacks(edl: dict[str, Any], sceptre: dict[str, Any]) -> None:
    for name in sorted(edl):
        for key in ("region", "resources", "parameters"):
            if edl[name][key] != sceptre[name][key]:
                raise BenchError(f"{name}: edl and Sceptre deployed different {key}:\n"
                                 f"  edl:     {edl[name][key]}\n  Sceptre: {sceptre[name][key]}")


def measure(rounds: int = 3) -> tuple[list[Line], dict[str, Any]]:
    setup = ensure_sceptre()
    if setup is not None:
        log(f"Sceptre set up in {setup:.1f} s (not counted)")
    version = sceptre_version()
    timings: dict[str, list[float]] = {"edl": [], "sceptre": []}
    cpu: dict[str, list[float]] = {"edl": [], "sceptre": []}  # CPU seconds of each run
    server_cpu: dict[str, list[float]] = {"edl": [], "sceptre": []}  # the endpoint's, meanwhile
    skipped: list[int] = []  # rounds during which edl/ was edited
    work = Path(tempfile.mkdtemp(prefix="edl-bench-sceptre-project-"))
    try:
        with LocalCloud(GROUP) as cloud:
            deploy = [EDL, "deploy-core", "--instance", LOCAL]
            # Warm the file cache for both tools; not timed.
            run([SCEPTRE, "--version"], cloud.env())
            run([EDL, "--version"], cloud.env())
            for n in range(1, rounds + 1):
                # Rendered afresh each round, and the round not counted if edl/ changed while
                # it ran: both tools must deploy the templates of the same source.
                source = source_digest()
                rendered, project = work / f"rendered-{n}", work / f"project-{n}"
                run([EDL, "render", "--instance", LOCAL, "--out", rendered], cloud.env())
                names = build_project(rendered, project)
                launch = [SCEPTRE, "--dir", project, "--no-colour", "launch", "-y", LOCAL]
                seconds_of, cpu_of, server_of, inventories = {}, {}, {}, {}
                for tool in (("edl", "sceptre") if n % 2 else ("sceptre", "edl")):
                    cloud.reset()
                    if tool == "edl":
                        cloud.clear_lint_cache()
                        env = cloud.env()
                    else:
                        env = _sceptre_env(cloud)
                    server_before = cloud.server_cpu_seconds()
                    seconds_of[tool], done = run(deploy if tool == "edl" else launch, env)
                    cpu_of[tool] = done.cpu_seconds
                    server_of[tool] = cloud.server_cpu_seconds() - server_before
                    inventories[tool] = cloud.inventory()
                    check_core_deployed(inventories[tool], tool)
                if source_digest() != source:
                    log(f"round {n}/{rounds}: edl/ changed during the round; round not counted "
                        f"(edl {seconds_of['edl']:.2f} s, sceptre {seconds_of['sceptre']:.2f} s)")
                    skipped.append(n)
                    continue
                _same_stacks(inventories["edl"], inventories["sceptre"])
                for tool, seconds in seconds_of.items():
                    timings[tool].append(seconds)
                    cpu[tool].append(cpu_of[tool])
                    server_cpu[tool].append(server_of[tool])
                log(f"round {n}/{rounds}: edl deploy-core {seconds_of['edl']:.2f} s "
                    f"({cpu_of['edl']:.2f} CPU-s, endpoint {server_of['edl']:.2f} CPU-s), "
                    f"sceptre launch {seconds_of['sceptre']:.2f} s ({cpu_of['sceptre']:.2f} "
                    f"CPU-s, endpoint {server_of['sceptre']:.2f} CPU-s); both left the same "
                    f"{len(names)} stacks, CREATE_COMPLETE, same resources and parameters")
            warm_ups = cloud.warm_ups
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not timings["edl"]:
        raise BenchError(f"edl/ changed during every one of the {rounds} rounds; run again when "
                         "nobody edits edl/")

    lines = [Line(GROUP, "edl deploy-core, 2 regions, cold lint cache "
                         f"(median of {len(timings['edl'])})",
                  median(timings["edl"]), TARGET_RATIO, baseline=median(timings["sceptre"]),
                  baseline_name=f"sceptre {version} launch", runs=timings)]
    details = {"sceptre_version": version, "sceptre_setup_s": setup, "stacks": names,
               "edl_s": timings["edl"], "sceptre_s": timings["sceptre"],
               "edl_cpu_s": cpu["edl"], "sceptre_cpu_s": cpu["sceptre"],
               "endpoint_cpu_s_during_edl": server_cpu["edl"],
               "endpoint_cpu_s_during_sceptre": server_cpu["sceptre"],
               "endpoint_warm_up_s": warm_ups, "rounds_not_counted_edl_changed": skipped}
    return lines, details
