"""Command line of the ingest job (`python -m edl.core_resources.pipelines.ingest --help`).

On Glue the same module is the job script: Glue passes the arguments as `--name value` plus its
own, which are ignored.
"""

from __future__ import annotations

import argparse
import os
import sys

from botocore.exceptions import BotoCoreError, ClientError

from edl import naming
from edl.config import get_config
from edl.core_resources.pipelines.ingest.archives import ArchiveLimits, GiB, MiB
from edl.core_resources.pipelines.ingest.formats import FORMAT_NAMES, FormatOptions
from edl.core_resources.pipelines.ingest.job import IngestJob, IngestRequest
from edl.core_resources.pipelines.job_cli import build_spark, configure_logging, report_failure
from edl.errors import EdlError
from edl.utils.context import LakeContext, resolve_instance


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m edl.core_resources.pipelines.ingest",
        description="Ingest a source into a new immutable update of a dataset.")
    parser.add_argument("--instance", default=os.environ.get("EDL_INSTANCE"),
                        help="EDL instance (default: $EDL_INSTANCE)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--source", help="s3://bucket/key-or-prefix, https://…, sftp://user@host/path")
    parser.add_argument("--kind", choices=("snapshot", "delta"), default="snapshot")
    parser.add_argument("--update", help="a pending update created by the API (default: a new one)")
    parser.add_argument("--job-id", default="")
    parser.add_argument("--requested-by", default=os.environ.get("USER", ""))
    parser.add_argument("--format", choices=FORMAT_NAMES,
                        help="the files' format, whatever their names (default: by extension)")
    parser.add_argument("--delimiter", help="CSV delimiter (default ',' and tab for .tsv)")
    parser.add_argument("--quote", default='"', help="CSV quote character")
    parser.add_argument("--encoding", default="utf-8", help="text encoding (utf-8, latin-1, …)")
    parser.add_argument("--no-header", action="store_true", help="CSV files have no header line")
    parser.add_argument("--max-ratio", type=float, default=ArchiveLimits.max_ratio,
                        help="refuse archives expanding more than this many times")
    parser.add_argument("--max-total-gib", type=float,
                        default=ArchiveLimits.max_total_bytes / GiB,
                        help="refuse sources expanding beyond this many GiB")
    parser.add_argument("--ratio-grace-mib", type=float,
                        default=ArchiveLimits.ratio_grace_bytes / MiB,
                        help="the ratio is checked once an archive produced this many MiB")
    parser.add_argument("--sftp-key-file", help="private key for sftp:// sources "
                        "(a password comes from $EDL_SFTP_PASSWORD)")
    parser.add_argument("--ca-bundle", help="CA certificates to trust for https:// sources")
    parser.add_argument("--register-update", metavar="UPDATE",
                        help="only (re-)register a complete update in the Glue catalog")
    parser.add_argument("--role-arn", default=None,
                        help="run as this role (default on the local instance: the ingest job "
                        "role, as Glue runs the job in AWS; elsewhere: the job's own identity)")
    parser.add_argument("--no-role", action="store_true",
                        help="run with the caller's own identity, even on the local instance")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args, _glue_extras = parser.parse_known_args(argv)
    if not args.register_update and not args.source:
        parser.error("--source is required")
    return args


def build_request(args: argparse.Namespace) -> IngestRequest:
    limits = ArchiveLimits(max_ratio=args.max_ratio,
                           max_total_bytes=int(args.max_total_gib * GiB),
                           ratio_grace_bytes=int(args.ratio_grace_mib * MiB))
    return IngestRequest(
        dataset=args.dataset, source=args.source, kind=args.kind, update_id=args.update,
        job_id=args.job_id, requested_by=args.requested_by, limits=limits,
        options=FormatOptions(delimiter=args.delimiter, quote=args.quote,
                              encoding=args.encoding, header=not args.no_header,
                              format=args.format),
        sftp_password=os.environ.get("EDL_SFTP_PASSWORD"), sftp_key_file=args.sftp_key_file,
        ca_bundle=args.ca_bundle)


def job_role_arn(args: argparse.Namespace) -> str | None:
    """The role the job acts as. In Glue the job already is its role; on the local cloud the
    runner assumes the same role (ingest_job.yaml trusts the platform admin), so the job has
    exactly the rights it has in AWS."""
    if args.role_arn or args.no_role:
        return args.role_arn
    instance = get_config().instance(resolve_instance(args.instance))
    if not instance.is_local:
        return None
    return naming.role_arn(instance.account_id, naming.ingest_job_role(instance.name))


def main(argv: list[str] | None = None, spark=None, context: LakeContext | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.debug)
    try:
        ctx = context or LakeContext.for_instance(args.instance, role_arn=job_role_arn(args))
        job = IngestJob(spark or build_spark("edl-ingest", on_loopback=ctx.is_local), ctx)
        if args.register_update:
            dataset = ctx.metadata.get_dataset(args.dataset)
            job.register(dataset, ctx.updates.get_update(args.dataset, args.register_update))
            print(f"registered {args.dataset} update {args.register_update}")
            return 0
        record = job.run(build_request(args))
    except (EdlError, ClientError, BotoCoreError) as exc:
        return report_failure(exc, args.debug)
    print(f"{record.dataset} update {record.update_id} complete: {record.file_count} file(s), "
          f"{record.rows} rows, {record.bytes} bytes")
    if not record.catalog_registered:
        print(f"Warning: {record.dataset} update {record.update_id} is not in the Glue catalog "
              "yet (Athena does not see it); the sweep registers it again", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
