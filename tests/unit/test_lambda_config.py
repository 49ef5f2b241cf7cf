"""A Lambda project's lambda_config.yaml: the shipped example, and each bad input named."""

from pathlib import Path

import pytest

from edl.errors import ConfigError, UsageError
from edl.lambda_config import load_lambda

REPO = Path(__file__).resolve().parents[2]
GOOD = """\
name: qc_check
handler: checks.run
datasets: {visits: read, visit_stats: write}
trigger: {on_update: [visits]}
"""


def project(tmp_path: Path, config: str, code: str = "def run(event, context):\n    return 1\n",
            module: str = "checks.py") -> Path:
    folder = tmp_path / "qc_check"
    folder.mkdir(exist_ok=True)
    (folder / "lambda_config.yaml").write_text(config)
    (folder / module).write_text(code)
    return folder


def test_the_example_project_loads():
    config = load_lambda(REPO / "projects" / "example_lambda")
    assert config.name == "example_lambda"
    assert config.handler == "handler.handle" and config.runtime == "python3.12"
    assert config.datasets == {"clinical_trials": "read"}
    assert config.trigger.kind == "on_update"
    assert config.trigger.datasets == ("clinical_trials",)
    assert config.environment["MIN_ROWS"] == "1"


def test_defaults_and_levels(tmp_path):
    config = load_lambda(project(tmp_path, GOOD))
    assert (config.timeout, config.memory, config.runtime) == (60, 256, "python3.12")
    assert config.datasets_at("read") == ["visit_stats", "visits"]
    assert config.datasets_at("write") == ["visit_stats"]
    assert config.to_dict()["trigger"] == "on_update visits"


@pytest.mark.parametrize(("trigger", "kind", "schedule"), [
    ("none", "none", None),
    ('"rate(1 hour)"', "schedule", "rate(1 hour)"),
    ('{schedule: "cron(0 6 * * ? *)"}', "schedule", "cron(0 6 * * ? *)"),
])
def test_triggers(tmp_path, trigger, kind, schedule):
    config = load_lambda(project(tmp_path, GOOD.replace("{on_update: [visits]}", trigger)))
    assert (config.trigger.kind, config.trigger.schedule) == (kind, schedule)


def test_environment_values_become_strings(tmp_path):
    config = load_lambda(project(tmp_path, GOOD + "environment: {LIMIT: 10, STRICT: true}\n"))
    assert config.environment == {"LIMIT": "10", "STRICT": "true"}


@pytest.mark.parametrize(("config", "says"), [
    (GOOD + "memroy: 512\n", "unknown key(s) memroy"),
    (GOOD.replace("qc_check", "QC-check"), "is not a valid Lambda project name"),
    (GOOD.replace("checks.run", "checks"), "is not <module>.<function>"),
    (GOOD.replace("checks.run", "other.run"), "other.py is not in"),
    (GOOD.replace("checks.run", "checks.missing"), "defines no function missing"),
    (GOOD + "runtime: python2.7\n", "runtime 'python2.7'"),
    (GOOD + "timeout: 901\n", "timeout 901"),
    (GOOD + "memory: 64\n", "memory 64"),
    (GOOD.replace("visits: read,", "visits: admin,"), "level 'admin'"),
    (GOOD.replace("[visits]", "[sites]"), "on_update watches sites"),
    (GOOD.replace("{on_update: [visits]}", '"cron(0 6 * * *)"'), "six cron fields"),
    (GOOD.replace("{on_update: [visits]}", "whenever"), "is not a trigger"),
    (GOOD + "environment: {AWS_REGION: eu-west-1}\n", "set by Lambda or EDL"),
    (GOOD + "environment: {1BAD: x}\n", "not a valid variable name"),
    (GOOD + "environment: {BIG: " + "x" * 5000 + "}\n", "past Lambda's 4 KB"),
])
def test_bad_configs_are_named(tmp_path, config, says):
    with pytest.raises(ConfigError) as caught:
        load_lambda(project(tmp_path, config))
    assert says in str(caught.value)
    assert "lambda_config.yaml" in str(caught.value) or ".py" in str(caught.value)


def test_a_handler_with_the_wrong_parameters_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"checks.py:1: run\(\) must take \(event, context\)"):
        load_lambda(project(tmp_path, GOOD, code="def run(event):\n    return 1\n"))


def test_a_handler_that_does_not_parse_names_line_and_column(tmp_path):
    with pytest.raises(ConfigError, match=r"checks.py:2:"):
        load_lambda(project(tmp_path, GOOD, code="def run(event, context):\n  return (\n"))


def test_a_folder_without_config(tmp_path):
    with pytest.raises(UsageError, match=r"has no lambda_config\.yaml"):
        load_lambda(tmp_path)
