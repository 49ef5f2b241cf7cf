"""`edl-api`: talk to the lake's REST API — list datasets and updates, ingest data, start
pipeline runs, follow jobs, ask for and decide grants, get credentials from the broker, read the
audit log, query with SQL.

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
from datetime import UTC, datetime

from edl.durations import parse_duration
from edl.errors import EdlError, describe_error
from edl.naming import validate_dataset_name
from edl.ui import UI
from edl_api import access_commands, commands, pipeline_command, query_command
from edl_api.client import ApiClient
from edl_api.lake_api import (
    FORMATS,
    GRANT_STATES,
    KINDS,
    LEVELS,
    SOURCES_HELP,
    LakeApi,
    validate_grant_id,
    validate_pipeline_name,
)
from edl_api.outside_sources import OutsideSources

DESCRIPTION = """Talk to the Enterprise Data Lake's REST API: list datasets and updates, ingest
data and follow ingest jobs, start pipeline runs; ask for access to a dataset, approve or revoke it, get short-lived
credentials from the broker and read the audit log; query the lake with SQL. Requests are signed with your AWS credentials
(--profile, AWS_PROFILE or the AWS_* variables); on the local cloud, profiles are its users
(admin, alice, bob, carol). Durations read 90s, 15m, 12h, 30d."""

EXAMPLES = """\
examples:
  edl-api datasets --instance local
  edl-api dataset clinical_trials
  edl-api updates clinical_trials --status complete
  edl-api lineage trials_by_site
  edl-api ingest clinical_trials --source ./batch1.zip --kind snapshot --wait --profile alice
  edl-api job JOB_ID --json
  edl-api run-pipeline visits_by_site --as-of visits=0000000004 --wait --profile bob
  edl-api grant request trials --level read --for 30d --justification "Q3 review" --profile bob
  edl-api grants --pending --profile alice
  edl-api grant approve trials.3f9a2c1b7d40 --profile alice
  edl-api credentials trials --level read --format env --profile bob
  edl-api profile trials --level read --profile bob    # then: aws ... --profile edl-trials-read
  edl-api audit --dataset trials --since 1h --profile alice
  edl-api query "SELECT site, count(*) FROM trials GROUP BY site" --profile bob
  edl-api query --file report.sql --as-of trials=0000000003 --format csv --out report.csv

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

    p = add("lineage", "which pipeline runs and input updates made a dataset's updates",
            commands.lineage,
            description="Each update a pipeline wrote: the pipeline, its run and code hash, and "
                        "the input updates it read (the update each input was read as of, and "
                        "the snapshot and deltas that made it). Ingested updates have none.")
    p.add_argument("name", type=_dataset_name, help="the dataset's name")
    p.add_argument("--all", action="store_true",
                   help="also list the updates no pipeline wrote (ingests)")

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
    p.add_argument("job_id", metavar="ID",
                   help="the job's id (from `edl-api ingest` or `edl-api run-pipeline`)")

    p = add("run-pipeline", pipeline_command.SUMMARY, pipeline_command.run_pipeline,
            description=pipeline_command.DESCRIPTION)
    p.add_argument("name", metavar="PIPELINE", type=_pipeline_name,
                   help="the deployed pipeline's name")
    p.add_argument("--as-of", nargs="+", action="extend", metavar="ALIAS=UPDATE",
                   help="read this input as of this update (repeatable)")
    p.add_argument("--wait", action="store_true",
                   help="follow the run until it succeeds (exit 0) or fails (exit 1)")
    p.add_argument("--timeout", type=_positive_float, default=3600.0, metavar="S",
                   help="with --wait: give up waiting after S seconds (default: 3600; the run "
                        "goes on)")
    _add_access_commands(sub, common, add)
    query_command.add_parser(add)
    return parser


def _add_access_commands(sub, common: list[argparse.ArgumentParser], add: Callable) -> None:
    """credentials, grant …, grants, audit and profile (access control, DESIGN §5)."""
    p = add("credentials", "short-lived credentials of a dataset's role, from the broker",
            access_commands.credentials,
            description="Get short-lived credentials (at most 1 h, never past your grant's "
                        "expiry) of the dataset's role for a level, vended by the API after it "
                        "has checked your grant (internal datasets: every employee reads). "
                        "Without --format: a summary without the secrets.")
    p.add_argument("name", metavar="DATASET", type=_dataset_name, help="the dataset's name")
    p.add_argument("--level", choices=LEVELS, default="read", help="access level (default: read)")
    p.add_argument("--duration", type=_duration("--duration"),
                   help="how long they last, 15m to 1h (default: 1h)")
    p.add_argument("--format", choices=access_commands.CREDENTIAL_FORMATS,
                   help="env: export lines for a shell; json: the API's answer; "
                        "credential-process: what an AWS profile's credential_process prints")

    grant = sub.add_parser("grant", help="request, approve, reject, revoke or show one grant",
                           description="One grant of access to a dataset: request it, decide it "
                                       "(the owner or a platform admin; on sensitive data never "
                                       "the requester), revoke it, show it.")
    actions = grant.add_subparsers(dest="grant_command", metavar="ACTION", required=True)

    def action(name: str, summary: str, run: Callable, description: str | None = None):
        q = actions.add_parser(name, help=summary, description=description or summary,
                               parents=common)
        q.set_defaults(run=run)
        return q

    q = action("request", "ask for a level of access to a dataset", access_commands.grant_request,
               description="Ask for read or write access to a dataset. It waits for the owner's "
                           "or a platform admin's approval, or is active at once if you may "
                           "approve it yourself. Sensitive data needs --for and --justification.")
    q.add_argument("name", metavar="DATASET", type=_dataset_name, help="the dataset's name")
    q.add_argument("--level", required=True, choices=LEVELS, help="the access level")
    q.add_argument("--for", dest="duration", type=_duration("--for"), metavar="DURATION",
                   help="how long the grant lasts once approved, e.g. 30d (required on "
                        "sensitive data, at most its tier's maximum)")
    q.add_argument("--justification", help="why you need it (required on sensitive data)")
    q.add_argument("--grantee", type=_principal_arn, metavar="ARN",
                   help="grant it to this principal (owners and admins; default: you)")

    q = action("approve", "approve a requested grant", access_commands.grant_approve)
    q.add_argument("grant_id", metavar="ID", type=_grant_id, help="the grant's id")
    q.add_argument("--reason", help="a note for the audit log")
    q = action("reject", "reject a requested grant", access_commands.grant_reject)
    q.add_argument("grant_id", metavar="ID", type=_grant_id, help="the grant's id")
    q.add_argument("--reason", required=True, type=_text("--reason"), help="why (required)")
    q = action("revoke", "end an active grant at once", access_commands.grant_revoke)
    q.add_argument("grant_id", metavar="ID", type=_grant_id, help="the grant's id")
    q.add_argument("--reason", help="why, for the audit log")
    q = action("show", "one grant: state, grantee, approvers, expiry", access_commands.grant_show)
    q.add_argument("grant_id", metavar="ID", type=_grant_id, help="the grant's id")

    p = add("grants", "list grants: yours, a dataset's, or those waiting for your decision",
            access_commands.grants,
            description="List grants: with no filter, yours (--mine); --dataset D: all of D's "
                        "if you own it or are an admin, else your own; --pending: requested "
                        "grants you may decide.")
    p.add_argument("--pending", action="store_true", help="requested grants you may decide")
    p.add_argument("--dataset", type=_dataset_name, help="grants of this dataset")
    p.add_argument("--mine", action="store_true", help="grants whose grantee is you")
    p.add_argument("--state", choices=GRANT_STATES, help="only grants in this state")
    p.add_argument("--limit", type=_positive, help="show at most N grants (default: all)")

    p = add("audit", "the audit log: requests, decisions, credentials vended, refusals",
            access_commands.audit,
            description="Every grant request, approval, rejection, revoke, expiry, credential "
                        "vend and refused request, newest last (the dataset's owner or an admin).")
    p.add_argument("--dataset", type=_dataset_name,
                   help="events of this dataset (required unless you are an admin)")
    p.add_argument("--since", type=_duration("--since"), metavar="DURATION",
                   help="only events of the last DURATION, e.g. 1h")
    p.add_argument("--limit", type=_positive, help="show at most N events (default: all)")

    p = add("profile", "write an AWS profile that gets its credentials from the broker",
            access_commands.profile,
            description="Write a profile into the AWS config file whose credential_process runs "
                        "`edl-api credentials … --format credential-process` as you, so that "
                        "the AWS CLI, boto3, pyarrow and Spark fetch and refresh the dataset's "
                        "credentials by themselves. A profile of that name is replaced, the "
                        "rest of the file kept.")
    p.add_argument("name", metavar="DATASET", type=_dataset_name, help="the dataset's name")
    p.add_argument("--level", choices=LEVELS, default="read", help="access level (default: read)")
    p.add_argument("--name", dest="profile_name", metavar="NAME",
                   help="the profile's name (default: edl-DATASET-LEVEL)")
    p.add_argument("--config-file", metavar="PATH",
                   help="the AWS config file (default: $AWS_CONFIG_FILE or ~/.aws/config)")


def _dataset_name(text: str) -> str:
    """Dataset names are checked before any request (DESIGN §1)."""
    try:
        return validate_dataset_name(text)
    except EdlError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message} ({exc.hint})") from None


def _duration(what: str) -> Callable[[str], str]:
    """Durations (90s, 15m, 12h, 30d) are read before any request: as written, once checked."""
    def read(text: str) -> str:
        try:
            parse_duration(text, what=what)
        except EdlError as exc:
            raise argparse.ArgumentTypeError(f"{exc.message} ({exc.hint})") from None
        return text.strip().lower()
    return read


def _pipeline_name(text: str) -> str:
    try:
        return validate_pipeline_name(text)
    except EdlError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message} ({exc.hint})") from None


def _grant_id(text: str) -> str:
    try:
        return validate_grant_id(text)
    except EdlError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message} ({exc.hint})") from None


def _principal_arn(text: str) -> str:
    if not text.startswith("arn:") or len(text.split(":", 5)) != 6:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a principal ARN (e.g. arn:aws:iam::123456789012:user/bob)")
    return text


def _text(what: str) -> Callable[[str], str]:
    def read(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{what} must not be empty")
        return text
    return read


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
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    """`edl-api ARGV` with its collaborators handed in (tests give a fast sleep, a fixed now)."""
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
                            outside(opts.instance, opts.profile)), ui, sleep=sleep, clock=clock,
            now=now)
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
