"""Template commands: render and validate. Neither needs AWS."""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from edl.cloudformation.components.core import core_stacks
from edl.cloudformation.components.dataset import dataset_stacks
from edl.cloudformation.components.lambda_project import lambda_stacks
from edl.cloudformation.components.pipeline import pipeline_stacks
from edl.cloudformation.render import (
    lint_templates,
    render_template,
    template_context,
    template_names,
)
from edl.config import get_config
from edl.installed_scripts.commands.options import CommonOptions
from edl.lambda_config import load_lambda
from edl.pipeline_config import load_pipeline
from edl.ui import UI
from edl.utils.metadata import DatasetRecord

# A dataset to render folder_acls.yaml with when none is named.
_SAMPLE_DATASET = ("example_dataset", "internal")


@dataclass
class RenderOptions(CommonOptions):
    out: Optional[str] = field(default=None, metadata={
        "help": "write one <stack>.yaml and <stack>.parameters.json per stack into this folder "
                "(default: print each template once to stdout)"})
    dataset: Optional[str] = field(default=None, metadata={
        "help": "also render this dataset's stack (with --tier)"})
    tier: str = field(default="internal", metadata={
        "help": "the dataset's tier (and, with --pipeline, the tier of its datasets)"})
    pipeline: Optional[str] = field(default=None, metadata={
        "metavar": "DIR", "help": "also render this pipeline folder's stack (its Glue job, role "
        "and schedule; its datasets taken to be of --tier, no AWS is asked)"})
    lambda_project: Optional[str] = field(default=None, metadata={
        "args": ["--lambda"], "metavar": "DIR",
        "help": "also render this Lambda project's stack (its function, role and trigger; its "
        "datasets taken to be of --tier)"})


@dataclass
class ValidateOptions(CommonOptions):
    all_instances: bool = field(default=False, metadata={
        "help": "validate for every instance in account_config.yaml, not just --instance"})


def render(options: RenderOptions, ui: UI) -> int:
    config = get_config()
    instance = config.instance(options.instance)
    context = template_context(config, instance)
    dataset, tier = (options.dataset, options.tier) if options.dataset else _SAMPLE_DATASET
    specs = core_stacks(config, instance) + dataset_stacks(config, instance, dataset, tier)
    if options.pipeline:
        pipeline = load_pipeline(options.pipeline)
        records = {d: DatasetRecord(dataset=d, tier=options.tier, owner="",
                                    home_region=instance.default_region)
                   for d in {*pipeline.input_datasets(), *pipeline.output_datasets()}}
        specs += pipeline_stacks(config, instance, pipeline, records)
    if options.lambda_project:
        project = load_lambda(options.lambda_project)
        specs += lambda_stacks(config, instance, project, {
            d: DatasetRecord(dataset=d, tier=options.tier, owner="",
                             home_region=instance.default_region) for d in project.datasets})
    rendered = {name: render_template(name, context) for name in {s.template for s in specs}}
    if options.out is None:
        for name in sorted(rendered):
            ui.result(f"# ---- {name} (instance {instance.name}) ----\n{rendered[name].body}")
        return 0
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        (out / f"{spec.name}.yaml").write_text(rendered[spec.template].body, encoding="utf-8")
        parameters = {key: ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
                      for key, value in spec.parameters}
        (out / f"{spec.name}.parameters.json").write_text(
            json.dumps({"Region": spec.region, "Parameters": parameters}, indent=2) + "\n")
    ui.success(f"wrote {len(specs)} stacks' templates and parameters to {out}/ "
               "(values shown as <stack.Output> come from other stacks at deploy time)")
    return 0


def validate(options: ValidateOptions, ui: UI) -> int:
    config = get_config()
    instances = list(config.instances.values()) if options.all_instances \
        else [config.instance(options.instance)]
    started = time.monotonic()
    templates = []
    for instance in instances:
        context = template_context(config, instance)
        for name in template_names():
            templates.append(render_template(name, context))
    regions = sorted({r for i in instances for r in i.regions})
    lint_templates(templates, regions)
    distinct = len({t.sha256 for t in templates})
    ui.success(f"{len(templates)} templates rendered for {', '.join(i.name for i in instances)}; "
               f"{distinct} distinct, all pass cfn-lint ({time.monotonic() - started:.1f}s)")
    return 0
