"""`edl run-pipeline` against a cloud instance starts the pipeline's Glue job (moto in-process)."""

from __future__ import annotations

import json

import pytest

from edl.installed_scripts.commands import pipelines as commands
from edl.installed_scripts.dl import main
from edl.naming import table_name
from tests.functional.ingest_helpers import create_metadata_tables


@pytest.fixture
def registered(aws, monkeypatch):
    """dev01's tables, a registered pipeline and its Glue job, made as the deploy role (moto
    keeps each account apart, and the role is in dev01's)."""
    from edl.installed_scripts.factory import Factory
    from edl.ui import UI

    monkeypatch.setattr(commands, "GLUE_POLL_SECONDS", 0.0)
    sessions = Factory("dev01", None, UI()).sessions
    create_metadata_tables(sessions.deploy_client("dynamodb"), instance="dev01")
    glue = sessions.deploy_client("glue")
    glue.create_job(Name="edl-dev01-pipeline-by_site", Role="r",
                    Command={"Name": "glueetl", "ScriptLocation": "s3://b/main.py"})
    sessions.deploy_resource("dynamodb").Table(
        table_name("dev01", "pipelines")).put_item(Item={
            "pipeline": "by_site", "trigger": "manual", "inputs": ["visits"],
            "outputs": ["by_site"], "job_name": "edl-dev01-pipeline-by_site",
            "config": json.dumps({"inputs": {"visits": {"dataset": "visits"}}})})
    return glue


def test_a_cloud_run_starts_the_glue_job_with_the_wrappers_arguments(registered, capsys):
    assert main(["run-pipeline", "by_site", "--instance", "dev01", "--as-of", "visits=4",
                 "--wait"]) == 0
    [job_run] = registered.get_job_runs(JobName="edl-dev01-pipeline-by_site")["JobRuns"]
    assert job_run["Arguments"]["--as-of"] == "visits=4"
    assert job_run["Arguments"]["--job-id"].startswith("pipeline-by_site-")
    assert "succeeded" in capsys.readouterr().err


def test_an_as_of_for_an_input_the_pipeline_lacks_is_refused(registered, capsys):
    assert main(["run-pipeline", "by_site", "--instance", "dev01", "--as-of", "sites=4"]) == 2
    assert "sites, which pipeline by_site has no input called" in capsys.readouterr().err
    assert registered.get_job_runs(JobName="edl-dev01-pipeline-by_site")["JobRuns"] == []
