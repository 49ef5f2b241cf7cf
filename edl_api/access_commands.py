"""The `edl-api` commands of access control (DESIGN §5, §6): credentials from the broker, grants
and their decisions, the audit log, and AWS profiles that refresh through the broker.

Each takes its parsed options and a `commands.Session`, makes its call(s) and hands the answer to
`access_report`, or prints the raw JSON with --json (grants name their ids `grant_id`). Durations
and grant ids are checked by the parser, before any request.

`credentials --format credential-process` is run by the AWS SDKs themselves: it prints only the
JSON they read on stdout; every message goes to stderr and a failure exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from edl.config import get_config
from edl.errors import EdlError, UsageError
from edl.naming import data_bucket
from edl_api import access_report, aws_profiles, report
from edl_api.commands import Session
from edl_api.lake_api import request_hint

CREDENTIAL_FORMATS = ("env", "json", "credential-process")
# Set while `credentials --format credential-process` looks up its caller: an edl-api started by
# that lookup (a profile whose credentials come from edl-api itself) would recurse for ever.
IN_CREDENTIAL_PROCESS = "EDL_API_IN_CREDENTIAL_PROCESS"


# -- credentials -----------------------------------------------------------------------------

def credentials(opts: argparse.Namespace, s: Session) -> int:
    form = credentials_format(opts)
    if form == "credential-process":
        answer = _vend_for_credential_process(opts, s)
    else:
        answer = s.api.get_credentials(opts.name, opts.level, opts.duration)
    if form == "json":
        report.print_json(s.ui, answer)
    elif form == "env":
        s.ui.result(access_report.env_lines(answer, s.api.client.region,
                                            s.api.client.aws_endpoint_url))
    elif form == "credential-process":
        s.ui.result(json.dumps(access_report.credential_process_json(answer)))
    else:
        access_report.credentials_summary(s.ui, answer, s.now())
        s.ui.info(f'use them: eval "$(edl-api credentials {opts.name} --level {opts.level} '
                  f'--format env)", or write a profile that refreshes them: '
                  f"edl-api profile {opts.name} --level {opts.level}")
    return 0


def credentials_format(opts: argparse.Namespace) -> str | None:
    """--json is --format json; asking for two formats is a usage error."""
    if opts.json and opts.format not in (None, "json"):
        raise UsageError(f"--json and --format {opts.format} ask for two formats",
                         hint="give one of them")
    return "json" if opts.json else opts.format


def _vend_for_credential_process(opts: argparse.Namespace, s: Session) -> dict[str, Any]:
    if os.environ.get(IN_CREDENTIAL_PROCESS):
        raise UsageError("edl-api was started to find its own caller's credentials: the "
                         "profile it calls as gets its credentials from edl-api itself",
                         hint="name the caller's own profile in the credential_process line "
                              "(--profile NAME), not an edl- profile")
    os.environ[IN_CREDENTIAL_PROCESS] = "1"
    try:
        return s.api.get_credentials(opts.name, opts.level, opts.duration)
    finally:
        os.environ.pop(IN_CREDENTIAL_PROCESS, None)


# -- grants ----------------------------------------------------------------------------------

def grant_request(opts: argparse.Namespace, s: Session) -> int:
    grant = s.api.request_grant(opts.name, opts.level, duration=opts.duration,
                                justification=opts.justification, grantee=opts.grantee)
    return _show_grant(opts, s, grant, next_step=True)


def grant_approve(opts: argparse.Namespace, s: Session) -> int:
    return _show_grant(opts, s, s.api.approve_grant(opts.grant_id, opts.reason), next_step=True)


def grant_reject(opts: argparse.Namespace, s: Session) -> int:
    return _show_grant(opts, s, s.api.reject_grant(opts.grant_id, opts.reason))


def grant_revoke(opts: argparse.Namespace, s: Session) -> int:
    return _show_grant(opts, s, s.api.revoke_grant(opts.grant_id, opts.reason))


def grant_show(opts: argparse.Namespace, s: Session) -> int:
    return _show_grant(opts, s, s.api.get_grant(opts.grant_id))


def _show_grant(opts: argparse.Namespace, s: Session, grant: dict[str, Any],
                next_step: bool = False) -> int:
    if opts.json:
        report.print_json(s.ui, grant)
        return 0
    access_report.grant_details(s.ui, grant, s.now())
    step = access_report.grant_next_step(grant) if next_step else None
    if step:
        s.ui.info(step)
    return 0


def grants(opts: argparse.Namespace, s: Session) -> int:
    items = s.api.list_grants(dataset=opts.dataset, state=opts.state, mine=opts.mine,
                              pending=opts.pending, max_items=opts.limit)
    if opts.json:
        report.print_json(s.ui, {"grants": items, "next_token": None})
        return 0
    title = ("grants waiting for your decision" if opts.pending else
             f"grants of {opts.dataset}" if opts.dataset and not opts.mine else "your grants")
    access_report.grants_table(s.ui, items, s.now(), title=title)
    return 0


def audit(opts: argparse.Namespace, s: Session) -> int:
    events = s.api.list_audit(dataset=opts.dataset, since=opts.since, max_items=opts.limit)
    if opts.json:
        report.print_json(s.ui, {"events": events, "next_token": None})
    else:
        access_report.audit_table(s.ui, events)
    return 0


# -- AWS profiles ----------------------------------------------------------------------------

def profile(opts: argparse.Namespace, s: Session) -> int:
    name = aws_profiles.validate_profile_name(opts.profile_name
                                              or f"edl-{opts.name}-{opts.level}")
    caller = opts.profile or os.environ.get("AWS_PROFILE") or None
    if caller == name:
        raise UsageError(f"profile {name!r} cannot call the broker as itself",
                         hint="run this as your own profile: --profile NAME")
    path = aws_profiles.config_file_path(opts.config_file)
    record = s.api.get_dataset(opts.name)  # an unknown dataset is refused (exit 3) here
    if isinstance(record.get("dataset"), dict):
        record = record["dataset"]
    command = [*edl_api_command(), "credentials", opts.name, "--level", opts.level,
               "--format", "credential-process", "--instance", opts.instance]
    if caller:
        command += ["--profile", caller]
    values = {"credential_process": shlex.join(command),
              "region": str(record.get("home_region") or s.api.client.region)}
    if s.api.client.aws_endpoint_url:
        values["endpoint_url"] = s.api.client.aws_endpoint_url
    replaced = aws_profiles.write_profile(path, name, values)
    if opts.json:
        report.print_json(s.ui, {"profile": name, "config_file": str(path),
                                 "replaced": replaced, **values})
        return 0
    s.ui.success(f"{'replaced' if replaced else 'wrote'} profile {name} in {path}")
    s.ui.info(f"the AWS CLI, boto3, pyarrow and Spark now fetch and refresh {opts.level} "
              f"credentials of {opts.name} through the broker, e.g. aws s3 ls "
              f"s3://{_bucket(opts.instance, record, values['region'])}/{opts.name}/ "
              f"--profile {name}")
    s.ui.info(f"without a grant they are refused; {request_hint(opts.name, opts.level)}")
    return 0


def _bucket(instance: str, record: dict[str, Any], region: str) -> str:
    try:
        return data_bucket(get_config().bucket_prefix, instance, str(record.get("tier")), region)
    except EdlError:
        return "BUCKET"


def edl_api_command() -> list[str]:
    """How another program starts this edl-api, by absolute path: the script beside this
    interpreter (the venv's), else the one on PATH, else this interpreter running the module."""
    beside = Path(sys.executable).with_name("edl-api")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which("edl-api")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "edl_api.edl_api"]
