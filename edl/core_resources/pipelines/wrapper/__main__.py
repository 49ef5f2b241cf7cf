"""Command line of the pipeline wrapper (`python -m edl.core_resources.pipelines.wrapper --help`).

On Glue the same module is the job script: Glue passes the arguments as `--name value` plus its
own, which are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from botocore.exceptions import BotoCoreError, ClientError

from edl import naming
from edl.config import get_config
from edl.core_resources.pipelines.compact import compaction_config
from edl.core_resources.pipelines.job_cli import build_spark, configure_logging, report_failure
from edl.core_resources.pipelines.wrapper.run import PipelineRun, PipelineRunError, RunRequest
from edl.errors import EdlError
from edl.pipeline_config import PipelineConfig, load_pipeline, parse_as_of
from edl.utils.context import LakeContext, resolve_instance


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m edl.core_resources.pipelines.wrapper",
        description="Run a pipeline: read its inputs, run its code, check and commit its "
                    "outputs as new updates, record lineage.")
    parser.add_argument("--instance", default=os.environ.get("EDL_INSTANCE"),
                        help="EDL instance (default: $EDL_INSTANCE)")
    parser.add_argument("--pipeline-dir",
                        help="the pipeline's folder (pipeline_config.yaml and its code)")
    parser.add_argument("--compact", metavar="DATASET",
                        help="run the built-in compaction of DATASET instead")
    parser.add_argument("--as-of", action="append", default=[], metavar="ALIAS=UPDATE",
                        help="read this input as of this update (repeat for several)")
    parser.add_argument("--job-id", default="")
    parser.add_argument("--run-id", default=None, help="the run's id (default: a new UUID)")
    parser.add_argument("--requested-by", default=os.environ.get("USER", ""))
    parser.add_argument("--role-arn", default=None,
                        help="run as this role (default on the local instance: the "
                        "pipeline's own role; in Glue the job already is its role)")
    parser.add_argument("--no-role", action="store_true",
                        help="run with the caller's own identity")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args, _glue_extras = parser.parse_known_args(argv)
    if bool(args.pipeline_dir) == bool(args.compact):
        parser.error("give --pipeline-dir DIR or --compact DATASET")
    # Glue passes each argument once: several --as-of values come comma-separated.
    args.as_of = [v for value in args.as_of for v in value.split(",") if v]
    return args


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    if args.compact:
        naming.validate_dataset_name(args.compact)
        return compaction_config(args.compact)
    return load_pipeline(args.pipeline_dir)


def pipeline_role_arn(args: argparse.Namespace, name: str) -> str | None:
    """The role the run acts as: on the local instance the pipeline's own role (the
    compaction's: the ingest job role, which writes every dataset), as Glue runs it in AWS."""
    if args.role_arn or args.no_role:
        return args.role_arn
    instance = get_config().instance(resolve_instance(args.instance))
    if not instance.is_local:
        return None
    role = naming.ingest_job_role(instance.name) if args.compact else \
        naming.pipeline_role(instance.name, name)
    return naming.role_arn(instance.account_id, role)


def main(argv: list[str] | None = None, spark=None, context: LakeContext | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.debug)
    try:
        config = pipeline_config(args)
        request = RunRequest(config, parse_as_of(args.as_of), job_id=args.job_id,
                             requested_by=args.requested_by,
                             **({"run_id": args.run_id} if args.run_id else {}))
        ctx = context or LakeContext.for_instance(
            args.instance, role_arn=pipeline_role_arn(args, config.name))
        spark = spark or build_spark("edl-pipeline", on_loopback=ctx.is_local)
        result = PipelineRun(spark, ctx).run(request)
    except (EdlError, ClientError, BotoCoreError) as exc:
        failed = exc.updates if isinstance(exc, PipelineRunError) else {}
        return report_failure(exc, args.debug, "failed update(s): " + ", ".join(
            f"{d} {u}" for d, u in failed.items()) if failed else None)
    print(json.dumps({
        "pipeline": config.name, "run_id": result.run_id,
        "inputs": [i.to_record() for i in result.inputs],
        "outputs": {alias: {"dataset": u.dataset, "update_id": u.update_id, "rows": u.rows}
                    for alias, u in result.outputs.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
