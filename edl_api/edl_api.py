"""`edl-api`: talk to the lake's REST API — list datasets and updates, ingest data, follow jobs.

Each sub-command has its own `--help` and the common options --instance, --profile, --json and
--debug. The command layer is thin: parse, build the API client for the instance (the URL from the
local state file or the REST API stack, the caller from --profile or the AWS environment), run the
sub-command, and catch every error in exactly one place (`run`), shown as `Error: …` and a hint
without a traceback unless --debug. Exit codes: 0 ok, 1 failure, 2 usage (and 400 answers),
3 not found, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence

from edl.errors import EdlError, describe_error
from edl.naming import validate_dataset_name
from edl.ui import UI
from edl_api import commands
from edl_api.client import ApiClient
from edl_api.lake_api import FORMATS, KINDS, SOURCES_HELP, LakeApi
from edl_api.outside_sources import OutsideSources

DESCRIPTION = """Talk to the Enterprise Data Lake's REST API: list datasets and updates, ingest
data and follow ingest jobs. Requests are signed with your AWS credentials (--profile, AWS_PROFILE
or the AWS_* variables); on the local cloud, profiles are its users (admin, alice, bob, carol)."""

EXAMPLES = """\
examples:
  edl-api datasets --instance local
  edl-api dataset clinical_trials
  edl-api updates clinical_trials --status complete
  edl-api ingest clinical_trials --source ./batch1.zip --kind snapshot --wait --profile alice
  edl-api job JOB_ID --json

Run `edl-api COMMAND --help` for a command's options."""


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument("--instance", default=os.environ.get("EDL_INSTANCE") or "local",
                       help="the lake instance (default: $EDL_INSTANCE or local)")
    group.add_argument("--profile", default=None,
                       help="AWS profile to call as (default: AWS_PROFILE or the AWS_* "
                            "variables; on the local cloud: admin)")
    group.add_argument("--json", action="store_true", help="print the API's JSON answer")
    group.add_argument("--debug", action="store_true", help="log requests; tracebacks on errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edl-api", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [_common_options()]

    def add(name: str, summary: str, run: Callable, description: str | None = None):
        p = sub.add_parser(name, help=summary, description=description or summary,
                           parents=common)
        p.set_defaults(run=run)
        return p

    p = add("datasets", "list datasets: name, tier, owner, updates, last update",
            commands.datasets)
    p.add_argument("--limit", type=_positive, help="show at most N datasets (default: all)")

    p = add("dataset", "one dataset: details, schema of its newest update, delta convention",
            commands.dataset)
    p.add_argument("name", type=_dataset_name, help="the dataset's name")

    p = add("updates", "list a dataset's updates, oldest first", commands.updates)
    p.add_argument("name", type=_dataset_name, help="the dataset's name")
    p.add_argument("--status", choices=("pending", "complete", "failed"),
                   help="only updates with this status")
    p.add_argument("--limit", type=_positive, help="show at most N updates (default: all)")

    p = add("update", "one update: status, source, rows, files and schema", commands.update)
    p.add_argument("name", type=_dataset_name, help="the dataset's name")
    p.add_argument("update_id", metavar="ID", help="the update's id")

    p = add("ingest", "ingest a file or a remote source as a new update", commands.ingest,
            description="Ingest a source as a new update of a dataset. A local file is uploaded "
                        "to the tier's drop bucket first. An s3:// source outside the lake (an "
                        "object, or every object under a prefix) is read with your own "
                        "credentials and uploaded the same way; the dataset's own drop area "
                        "and https:// sources are read by the ingest job. Answers at once with "
                        "the update and job ids; --wait follows the job until it has succeeded "
                        "or failed.")
    p.add_argument("name", type=_dataset_name, help="the dataset's name")
    p.add_argument("--source", required=True, help=SOURCES_HELP)
    p.add_argument("--kind", required=True, choices=KINDS, help="a full snapshot or a delta")
    p.add_argument("--format", choices=FORMATS, help="the files' format (default: by extension)")
    p.add_argument("--delimiter", help="CSV delimiter (default: ,)")
    p.add_argument("--quote", help="CSV quote character (default: \")")
    p.add_argument("--encoding", help="CSV text encoding (default: utf-8)")
    p.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                   help="whether CSV files have a header row (default: they do)")
    p.add_argument("--wait", action="store_true",
                   help="follow the job until it succeeds (exit 0) or fails (exit 1)")
    p.add_argument("--timeout", type=_positive_float, default=900.0, metavar="S",
                   help="with --wait: give up waiting after S seconds (default: 900)")

    p = add("job", "one job: status, progress, its update and any error", commands.job)
    p.add_argument("job_id", metavar="ID", help="the job's id (from `edl-api ingest`)")
    return parser


def _dataset_name(text: str) -> str:
    """Dataset names are checked before any request (DESIGN §1)."""
    try:
        return validate_dataset_name(text)
    except EdlError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message} ({exc.hint})") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def run(argv: Sequence[str], *, ui: UI | None = None,
        connect: Callable[[str, str | None], ApiClient] = ApiClient.for_instance,
        outside: Callable[[str, str | None], OutsideSources] = OutsideSources.for_instance,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic) -> int:
    """`edl-api ARGV` with its collaborators handed in (tests give a fast sleep)."""
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 2
    try:
        opts = parser.parse_args(list(argv))
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2

    logging.basicConfig(level=logging.DEBUG if opts.debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not opts.debug:
        for noisy in ("botocore", "boto3", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    ui = ui or UI()
    try:
        session = commands.Session(
            lambda: LakeApi(connect(opts.instance, opts.profile),
                            outside(opts.instance, opts.profile)), ui, sleep=sleep, clock=clock)
        return opts.run(opts, session)
    except KeyboardInterrupt:
        ui.error("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place errors become messages
        message, hint, code = describe_error(exc, "edl-api")
        if opts.debug:
            traceback.print_exc()
        ui.error(message)
        if hint:
            ui.info(f"  Hint: {hint}")
        return code if code is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
