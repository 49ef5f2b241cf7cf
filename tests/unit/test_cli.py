"""The `edl` command in-process: exit codes, what goes to stdout and stderr, and that bad input is
refused before any AWS call (no endpoint runs in unit tests; a call would be a bug)."""

from __future__ import annotations

import json
from pathlib import Path

import botocore.client
import pytest

from edl.cloudformation.render import render_template, template_context
from edl.config import load_config
from edl.installed_scripts.dl import main

CONFIG = load_config()
COMMAND_NAMES = ("deploy-core", "deploy-dataset", "plan", "diff", "status", "destroy", "render",
                 "validate", "local")
TEMPLATES = ("artifacts.yaml", "athena.yaml", "buckets.yaml", "default_acls.yaml", "folder_acls.yaml",
             "ingest_job.yaml", "lambda_project.yaml", "metadata.yaml", "pipeline.yaml", "rest_api.yaml",
             "sweeper.yaml")


@pytest.fixture(autouse=True)
def aws_calls(monkeypatch):
    """Every AWS API call botocore would make, recorded instead of sent."""
    calls = []

    def record(client, operation, params):
        calls.append(operation)
        raise AssertionError(f"unexpected AWS call {operation}")

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    monkeypatch.delenv("EDL_INSTANCE", raising=False)
    return calls


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`edl ARGV` as a shell would see it: the exit code, stdout and stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits for --help and usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# -- help and usage --------------------------------------------------------------------------------

def test_help_lists_every_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in COMMAND_NAMES:
        assert f"\n  {name} " in out, name
    assert "edl COMMAND --help" in out


def test_no_command_prints_usage_and_exits_2(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "commands:" in out


@pytest.mark.parametrize("command", ["deploy-core", "deploy-dataset", "status", "destroy",
                                     "render", "validate"])
def test_each_command_has_its_own_help(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert f"usage: edl {command}" in out and "--instance" in out


def test_unknown_command_is_one_error_and_exit_2(capsys):
    code, out, err = run(capsys, "deploy-everything")
    assert code == 2
    assert err.count("Error:") == 1 and "deploy-everything" in err
    assert out == ""


def test_plan_without_a_target_exits_2(capsys, aws_calls):
    code, _, err = run(capsys, "plan")
    assert code == 2
    assert err.count("Error:") == 1 and "deploy-core, deploy-dataset" in err
    code, _, err = run(capsys, "plan", "deploy-everything")
    assert code == 2 and "Error:" in err
    assert aws_calls == []


# -- bad input refused before AWS ------------------------------------------------------------------

@pytest.mark.parametrize("command", [("deploy-dataset",), ("plan", "deploy-dataset")])
def test_a_bad_dataset_name_is_refused_before_any_aws_call(capsys, aws_calls, command):
    code, _, err = run(capsys, *command, "Bad-Name", "--tier", "internal", "--owner", "a")
    assert code == 2
    assert err.count("Error:") == 1 and "invalid dataset name 'Bad-Name'" in err
    assert "3-63 lowercase letters, digits and '_', starting with a letter" in err
    assert "Traceback" not in err
    assert aws_calls == []


@pytest.mark.parametrize("command", [("render",), ("validate",), ("deploy-core",), ("status",)])
def test_an_unknown_instance_names_the_choices(capsys, aws_calls, command):
    code, _, err = run(capsys, *command, "--instance", "staging")
    assert code == 2
    assert err.count("Error:") == 1 and "unknown instance 'staging'" in err
    assert "local, dev01, uat, prod" in err
    assert aws_calls == []


def test_an_unknown_tier_is_a_usage_error(capsys, aws_calls):
    code, _, err = run(capsys, "deploy-dataset", "clinical_trials", "--tier", "secret",
                       "--owner", "a")
    assert code == 2
    assert "--tier" in err and "'secret'" in err
    assert "internal" in err and "sensitive" in err
    assert aws_calls == []


def test_a_missing_required_option_is_a_usage_error(capsys, aws_calls):
    code, _, err = run(capsys, "deploy-dataset", "clinical_trials", "--tier", "internal")
    assert code == 2 and "--owner" in err
    assert aws_calls == []


# -- commands that need no AWS ---------------------------------------------------------------------

def test_validate_lints_everything_and_says_all_pass(capsys, aws_calls):
    code, _, err = run(capsys, "validate")
    assert code == 0
    assert f"{len(TEMPLATES)} templates rendered for local" in err
    assert "all pass cfn-lint" in err
    assert aws_calls == []


def test_render_to_a_folder_writes_template_and_parameters_per_stack(capsys, tmp_path, aws_calls):
    out = tmp_path / "rendered"
    code, _, err = run(capsys, "render", "--instance", "dev01", "--out", str(out))
    stacks = ["edl-dev01-artifacts-us-east-1", "edl-dev01-athena-us-east-1", "edl-dev01-metadata", "edl-dev01-default-acls",
              "edl-dev01-dataset-example-dataset", "edl-dev01-ingest-job",
              "edl-dev01-rest-api", "edl-dev01-sweeper",
              *(f"edl-dev01-buckets-{t}-us-east-1"
                for t in ("internal", "restricted", "sensitive"))]
    assert code == 0 and f"wrote {len(stacks)} stacks" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.yaml" for s in stacks] + [f"{s}.parameters.json" for s in stacks])

    context = template_context(CONFIG, CONFIG.instance("dev01"))
    assert (out / "edl-dev01-buckets-sensitive-us-east-1.yaml").read_text() == \
        render_template("buckets.yaml", context).body
    buckets = json.loads(
        (out / "edl-dev01-buckets-sensitive-us-east-1.parameters.json").read_text())
    assert buckets["Region"] == "us-east-1"
    assert buckets["Parameters"]["DataBucketName"] == "sanofi-datalake-dev01-sensitive-us-east-1"
    assert buckets["Parameters"]["DropBucketName"] == \
        "sanofi-datalake-drop-dev01-sensitive-us-east-1"
    acls = json.loads((out / "edl-dev01-default-acls.parameters.json").read_text())["Parameters"]
    assert acls["KeyArns"] == \
        "arn:aws:kms:us-east-1:111111111111:key/<edl-dev01-buckets-internal-us-east-1.KeyId>"
    assert acls["BucketArns"] == "arn:aws:s3:::sanofi-datalake-dev01-internal-us-east-1"
    assert aws_calls == []


def test_render_prints_each_template_once_to_stdout(capsys, aws_calls):
    code, out, _ = run(capsys, "render", "--instance", "prod")
    assert code == 0
    context = template_context(CONFIG, CONFIG.instance("prod"))
    for name in TEMPLATES:
        shown = 0 if name in ("pipeline.yaml", "lambda_project.yaml") else 1   # only with --pipeline
        assert out.count(f"# ---- {name} (instance prod) ----") == shown
        if shown:
            assert render_template(name, context).body in out
    assert aws_calls == []


def test_render_with_a_pipeline_writes_its_glue_job_stack(capsys, aws_calls, tmp_path):
    example = Path(__file__).resolve().parents[2] / "pipelines" / "example"
    code, _, _ = run(capsys, "render", "--instance", "dev01", "--pipeline", str(example),
                     "--tier", "sensitive", "--out", str(tmp_path))
    assert code == 0 and aws_calls == []
    body = (tmp_path / "edl-dev01-pipeline-trials-by-site.yaml").read_text()
    assert "AWS::Glue::Job" in body and 'GlueVersion: "5.0"' in body
    parameters = json.loads((tmp_path / "edl-dev01-pipeline-trials-by-site.parameters.json")
                            .read_text())["Parameters"]
    assert parameters["RoleName"] == "edl-dev01-pipe-trials_by_site"
    region = CONFIG.instance("dev01").default_region
    assert parameters["InputObjectArns"] == \
        f"arn:aws:s3:::sanofi-datalake-dev01-sensitive-{region}/clinical_trials/*"
    assert "/trials_by_site/*" in parameters["OutputObjectArns"]
    assert "_edl_staging/trials_by_site/*" in parameters["OutputObjectArns"]
    assert parameters["PackageLocation"].startswith("s3://")


def test_render_with_a_lambda_project_writes_its_function_stack(capsys, aws_calls, tmp_path):
    example = Path(__file__).resolve().parents[2] / "projects" / "example_lambda"
    code, _, _ = run(capsys, "render", "--instance", "prod", "--lambda", str(example),
                     "--tier", "sensitive", "--out", str(tmp_path))
    assert code == 0 and aws_calls == []
    body = (tmp_path / "edl-prod-lambda-example-lambda.yaml").read_text()
    assert "AWS::Lambda::Function" in body and "AWS::Events::Rule" in body
    parameters = json.loads((tmp_path / "edl-prod-lambda-example-lambda.parameters.json")
                            .read_text())["Parameters"]
    region = CONFIG.instance("prod").default_region
    assert parameters["RoleName"] == "edl-prod-fn-example_lambda"
    assert parameters["ReadObjectArns"] == \
        f"arn:aws:s3:::sanofi-datalake-prod-sensitive-{region}/clinical_trials/*"
    assert parameters["WriteObjectArns"] == ""           # it only reads
    assert parameters["WatchedDatasets"] == "clinical_trials" and parameters["Schedule"] == ""
    assert parameters["CodeS3Key"].startswith("lambdas/example_lambda/package-")
    assert parameters["ProjectHandler"] == "handler.handle"


# -- destroy's confirmation ------------------------------------------------------------------------

@pytest.mark.parametrize("argv, told", [
    (("--yes",), "--confirm dev01"),              # --yes never destroys a non-local instance
    (("--confirm", "uat"), "--confirm dev01"),     # the wrong name
    ((), "--confirm dev01"),                      # no terminal to type the name on
])
def test_destroying_a_cloud_instance_needs_its_name(capsys, aws_calls, argv, told):
    code, _, err = run(capsys, "destroy", "--instance", "dev01", *argv)
    assert code == 2 and told in err
    assert aws_calls == []  # refused before anything was read


def test_plan_destroy_is_a_plan_target(capsys):
    code, out, _ = run(capsys, "plan", "--help")
    assert code == 0 and "destroy" in out
