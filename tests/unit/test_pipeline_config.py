"""A pipeline folder is checked before anything runs: every bad input names the file and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edl.errors import ConfigError
from edl.pipeline_config import code_hash, load_pipeline, parse_trigger
from edl.utils.tier_policy import TierOrderError, check_output_tiers

REPO = Path(__file__).resolve().parents[2]
GOOD = """\
    name: visits_by_site
    kind: pyspark
    inputs:
      visits: {dataset: visits}
    outputs:
      by_site: {dataset: visits_by_site, kind: snapshot}
    trigger: on_update
    checks:
      by_site: [{rows_at_least: 1}, {not_null: [site]}, {unique: [site]}]
    params: {min_visits: 2}
    """
RUN = "def run(spark, inputs, params):\n    return {'by_site': inputs['visits']}\n"


def folder(tmp_path: Path, config: str = GOOD, code: str | None = RUN,
           sql: dict[str, str] | None = None) -> Path:
    root = tmp_path / "p"
    root.mkdir(exist_ok=True)
    (root / "pipeline_config.yaml").write_text(textwrap.dedent(config))
    if code is not None:
        (root / "pipeline.py").write_text(code)
    for name, body in (sql or {}).items():
        (root / name).write_text(body)
    return root


def test_a_good_pyspark_pipeline_loads_with_every_key():
    config = load_pipeline(REPO / "pipelines" / "example")
    assert config.name == "trials_by_site" and config.kind == "pyspark"
    assert [(i.alias, i.dataset) for i in config.inputs] == [("trials", "clinical_trials")]
    assert [(o.alias, o.dataset, o.kind) for o in config.outputs] == [
        ("by_site", "trials_by_site", "snapshot")]
    assert config.trigger.kind == "on_update"
    assert [c.describe() for c in config.checks["by_site"]] == [
        "rows_at_least: 1", "not_null: [site]", "unique: [site]"]


def test_the_shipped_sql_example_loads():
    config = load_pipeline(REPO / "pipelines" / "sql_example")
    assert config.kind == "sql" and config.sql_file("by_phase").is_file()


@pytest.mark.parametrize(("config", "message"), [
    (GOOD + "colour: blue\n", "unknown key(s) colour"),
    (GOOD.replace("name: visits_by_site", "name: Visits"), "not a valid pipeline name"),
    (GOOD.replace("kind: pyspark", "kind: scala"), "kind 'scala' is unknown"),
    (GOOD.replace("{dataset: visits}", "{dataset: Visits!}"), "inputs.visits"),
    (GOOD.replace("{dataset: visits}", "{dataset: visits, as_of: 3}"), "unknown key(s) as_of"),
    (GOOD.replace("kind: snapshot", "kind: upsert"), "kind 'upsert' is unknown"),
    (GOOD.replace("trigger: on_update", "trigger: sometimes"), "is not a trigger"),
    (GOOD.replace("trigger: on_update", 'trigger: {schedule: "cron(0 6 * *)"}'),
     "needs six cron fields, found 4"),
    (GOOD.replace("{rows_at_least: 1}", "{rows_at_least: -1}"), "whole number >= 0"),
    (GOOD.replace("{unique: [site]}", "{distinct: [site]}"), "unknown check 'distinct'"),
    (GOOD.replace("  by_site: [{rows", "  nowhere: [{rows"), "'nowhere' is not an output"),
    (GOOD.replace("    outputs:\n      by_site: {dataset: visits_by_site, kind: snapshot}\n",
                  ""),
     "needs at least one output"),
    ("[1, 2]\n", "expected a mapping"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_a_bad_config_names_the_file_and_what_is_wrong(tmp_path, config, message):
    root = folder(tmp_path, config)
    with pytest.raises(ConfigError) as err:
        load_pipeline(root)
    assert message in str(err.value)
    assert str(root / "pipeline_config.yaml") in str(err.value)


def test_a_folder_without_config_or_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"has no pipeline_config\.yaml"):
        load_pipeline(tmp_path)
    with pytest.raises(ConfigError, match=r"has no pipeline\.py"):
        load_pipeline(folder(tmp_path, code=None))
    with pytest.raises(ConfigError, match="defines no run"):
        load_pipeline(folder(tmp_path, code="def main():\n    pass\n"))
    with pytest.raises(ConfigError, match="run\\(\\) takes 1 argument"):
        load_pipeline(folder(tmp_path, code="def run(spark):\n    pass\n"))
    with pytest.raises(ConfigError, match=r"pipeline\.py:1:"):
        load_pipeline(folder(tmp_path, code="def run(spark, inputs, params)\n"))


SQL_CONFIG = GOOD.replace("kind: pyspark", "kind: sql")


def test_a_sql_file_that_does_not_parse_names_its_line_and_column(tmp_path):
    root = folder(tmp_path, SQL_CONFIG, code=None,
                  sql={"by_site.sql": "SELECT site,\n  count(*\nFROM visits GROUP BY site\n"})
    with pytest.raises(ConfigError) as err:
        load_pipeline(root)
    assert "by_site.sql:" in str(err.value)
    line, column = str(err.value).split("by_site.sql:")[1].split(":")[:2]
    assert line.isdigit() and column.isdigit()


def test_a_sql_pipeline_needs_one_file_per_output_and_no_other(tmp_path):
    with pytest.raises(ConfigError, match="no SQL for output\\(s\\) by_site"):
        load_pipeline(folder(tmp_path, SQL_CONFIG, code=None))
    root = folder(tmp_path, SQL_CONFIG, code=None,
                  sql={"by_site.sql": "SELECT 1", "extra.sql": "SELECT 2"})
    with pytest.raises(ConfigError, match=r"extra\.sql match\(es\) no output"):
        load_pipeline(root)


@pytest.mark.parametrize(("value", "kind", "schedule"), [
    ("manual", "manual", None),
    ("on_update", "on_update", None),
    ({"schedule": "cron(0 6 * * ? *)"}, "schedule", "cron(0 6 * * ? *)"),
    ('schedule: "rate(1 hour)"', "schedule", "rate(1 hour)"),
    ("rate(15 minutes)", "schedule", "rate(15 minutes)"),
])
def test_triggers(value, kind, schedule):
    trigger = parse_trigger(value, "here")
    assert (trigger.kind, trigger.schedule) == (kind, schedule)


@pytest.mark.parametrize("value", ["cron(0 6 1 * MON *)", "rate(0 hours)", "rate(1 fortnight)",
                                   {"schedule": 5}, {"when": "now"}])
def test_bad_schedules_are_refused(value):
    with pytest.raises(ConfigError):
        parse_trigger(value, "here")


def test_the_code_hash_follows_the_code_and_ignores_caches(tmp_path):
    root = folder(tmp_path)
    first = code_hash(root)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "pipeline.cpython-311.pyc").write_bytes(b"\0")
    assert code_hash(root) == first
    (root / "helpers.py").write_text("X = 1\n")
    assert code_hash(root) != first


def test_an_output_of_a_lower_tier_than_an_input_is_refused_naming_both():
    check_output_tiers({"a": "restricted"}, {"b": "restricted", "c": "sensitive"})
    with pytest.raises(TierOrderError) as err:
        check_output_tiers({"trials": "sensitive", "sites": "internal"},
                           {"by_site": "restricted"})
    assert "by_site (restricted)" in str(err.value) and "trials" in str(err.value)
