"""The registry of `edl` commands, one module per command group."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edl.installed_scripts.commands import deploy, lambdas, local, pipelines, templates


@dataclass(frozen=True)
class Command:
    options: type
    run: Callable
    summary: str
    description: str = ""


COMMANDS: dict[str, Command] = {
    "deploy-core": Command(deploy.DeployCoreOptions, deploy.deploy_core,
                           "deploy the instance's core: buckets, keys, metadata tables, default role",
                           deploy.DEPLOY_CORE_HELP),
    "deploy-dataset": Command(deploy.DeployDatasetOptions, deploy.deploy_dataset,
                              "deploy one dataset: its roles and its record",
                              deploy.DEPLOY_DATASET_HELP),
    "deploy-pipeline": Command(pipelines.DeployPipelineOptions, pipelines.deploy_pipeline,
                               "check, package and deploy a pipeline folder, and register it",
                               pipelines.DEPLOY_PIPELINE_HELP),
    "run-pipeline": Command(pipelines.RunPipelineOptions, pipelines.run_pipeline,
                            "start a run of a deployed pipeline (--wait to follow it)",
                            pipelines.RUN_PIPELINE_HELP),
    "pipelines": Command(pipelines.PipelinesOptions, pipelines.pipelines,
                         "list the deployed pipelines, their triggers and last runs"),
    "compact": Command(pipelines.CompactOptions, pipelines.compact,
                       "fold a dataset's deltas into one snapshot update",
                       pipelines.COMPACT_HELP),
    "deploy-lambda": Command(lambdas.DeployLambdaOptions, lambdas.deploy_lambda,
                             "check, package and deploy a Lambda project folder, and register it",
                             lambdas.DEPLOY_LAMBDA_HELP),
    "invoke-lambda": Command(lambdas.InvokeLambdaOptions, lambdas.invoke_lambda,
                             "invoke a deployed Lambda project with an event; print its answer",
                             lambdas.INVOKE_LAMBDA_HELP),
    "lambdas": Command(lambdas.LambdasOptions, lambdas.lambdas,
                       "list the deployed Lambda projects, their triggers and last invocations"),
    "plan": Command(deploy.DeployCoreOptions, deploy.plan_only,
                    "show what a deploy would create, update or leave alone (no change made)",
                    deploy.PLAN_HELP),
    "diff": Command(deploy.DeployCoreOptions, deploy.plan_only, "the same as plan", deploy.PLAN_HELP),
    "status": Command(deploy.StatusOptions, deploy.status,
                      "list the instance's stacks, their state and outputs"),
    "destroy": Command(deploy.DestroyOptions, deploy.destroy,
                       "delete every stack of the instance; keeps its data unless --delete-data",
                       deploy.DESTROY_HELP),
    "render": Command(templates.RenderOptions, templates.render,
                      "print or write the rendered templates (no AWS needed)"),
    "validate": Command(templates.ValidateOptions, templates.validate,
                        "render and cfn-lint every template (no AWS needed)"),
    "local": Command(local.LocalOptions, local.local,
                     "start, stop or inspect the embedded local cloud; print a user's credentials",
                     local.LOCAL_HELP),
}

PLAN_TARGETS = ("deploy-core", "deploy-dataset", "destroy")
