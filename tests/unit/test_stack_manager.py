"""StackManager: the plan (create / update / recreate / unchanged, from one describe per region and
the EdlFingerprint parameter) and its execution (dependency order, a bounded pool, stop on the
first failure). Real StackClients over the fake CloudFormation of `test_stack_client`, and the
real config and templates of the `local` instance (two regions)."""

from __future__ import annotations

import re

import pytest

from edl import naming
from edl.cloudformation.components.core import core_stacks
from edl.cloudformation.components.dataset import dataset_stacks
from edl.cloudformation.destroy import Destroyer
from edl.cloudformation.plan import Action, OutputRef, StackSpec, fingerprint, in_dependency_order
from edl.cloudformation.stack_client import FINGERPRINT_PARAMETER
from edl.cloudformation.stack_manager import StackManager
from edl.config import load_config
from edl.errors import DeployError
from tests.unit.fakes import (
    REGIONS,
    STACK_TYPE,
    FakeCloudFormation,
    Recorder,
    RecordingClient,
    client_error,
    physical_id,
)

CONFIG = load_config()
LOCAL = CONFIG.instance("local")
SPECS = core_stacks(CONFIG, LOCAL)

CORE = {
    *(f"edl-local-artifacts-{r}" for r in REGIONS),
    *(f"edl-local-buckets-{t}-{r}" for t in ("internal", "restricted", "sensitive")
      for r in REGIONS),
    *(f"edl-local-athena-{r}" for r in REGIONS),
    "edl-local-metadata",
    "edl-local-default-acls",
    "edl-local-ingest-job",
    "edl-local-rest-api",
    "edl-local-sweeper",
}


pytestmark = pytest.mark.usefixtures("shared_lint_cache")


@pytest.fixture
def fake_clouds() -> dict[str, FakeCloudFormation]:
    return {region: FakeCloudFormation(region) for region in REGIONS}


def manager(fake_clouds, recorder: Recorder | None = None, max_workers: int = 4) -> StackManager:
    recorder = recorder or Recorder()
    return StackManager(CONFIG, LOCAL,
                        lambda region: RecordingClient(fake_clouds[region], region, recorder),
                        max_workers=max_workers)


def change_sets(fake_clouds) -> list[dict]:
    return [c for cfn in fake_clouds.values() for c in cfn.called("create_change_set")]


def deployed_core(fake_clouds, *, status: str = "CREATE_COMPLETE", changed: dict | None = None) -> None:
    """Put the core in the fake as EDL would have deployed it now: each stack's template,
    parameters and the EdlFingerprint of both. `changed` overrides a stack's parameters as if
    an older deploy had used other values (its fingerprint is of those values)."""
    setup = manager(fake_clouds)  # its own output cache: the manager under test starts cold
    by_name = {s.name: s for s in SPECS}
    for spec in SPECS:
        fake_clouds[spec.region].add_stack(spec.name, status, {}, setup.render(spec.template).body)
    live = setup.live_stacks()
    for spec in SPECS:
        template = setup.render(spec.template)
        parameters = setup.resolve(by_name[spec.name], live)
        parameters.update((changed or {}).get(spec.name, {}))
        parameters[FINGERPRINT_PARAMETER] = fingerprint(template, parameters)
        fake_clouds[spec.region].stacks[spec.name].parameters = parameters
    for cfn in fake_clouds.values():
        cfn.calls.clear()


def actions(plan) -> dict[str, Action]:
    return {s.name: s.action for s in plan.stacks}


# -- plan ------------------------------------------------------------------------------------------

def test_core_on_an_empty_account_is_all_creates(fake_clouds):
    plan = manager(fake_clouds).plan("core of local", SPECS)
    assert set(actions(plan)) == CORE and len(plan.stacks) == len(CORE)
    assert set(actions(plan).values()) == {Action.CREATE}
    assert plan.counts() == {"create": len(CORE), "update": 0, "recreate": 0, "unchanged": 0,
                             "blocked": 0}
    # One describe per region, nothing else read.
    assert {cfn.region: cfn.operations() for cfn in fake_clouds.values()} == \
        {r: ["describe_stacks"] for r in REGIONS}


def test_core_as_deployed_is_all_unchanged_and_deploys_nothing(fake_clouds):
    deployed_core(fake_clouds)
    stacks = manager(fake_clouds)
    plan = stacks.plan("core of local", SPECS)
    assert set(actions(plan).values()) == {Action.UNCHANGED}, actions(plan)
    assert stacks.execute(plan) == []
    assert change_sets(fake_clouds) == []


def test_a_changed_parameter_updates_that_stack_only(fake_clouds):
    deployed_core(fake_clouds, changed={"edl-local-default-acls": {"RoleName": "edl-old-reader"}})
    stacks = manager(fake_clouds)
    plan = stacks.plan("core of local", SPECS)
    assert {n: a for n, a in actions(plan).items() if a is not Action.UNCHANGED} == \
        {"edl-local-default-acls": Action.UPDATE}
    [result] = stacks.execute(plan)
    assert result.name == "edl-local-default-acls" and result.status == "UPDATE_COMPLETE"
    [change_set] = change_sets(fake_clouds)
    assert change_set["StackName"] == "edl-local-default-acls"
    assert change_set["ChangeSetType"] == "UPDATE"
    sent = {p["ParameterKey"]: p["ParameterValue"] for p in change_set["Parameters"]}
    assert sent["RoleName"] == "edl-local-internal-reader"
    template = stacks.render("default_acls.yaml")
    assert sent[FINGERPRINT_PARAMETER] == fingerprint(
        template, {k: v for k, v in sent.items() if k != FINGERPRINT_PARAMETER})


def test_an_update_that_would_replace_the_tables_is_shown_and_refused_unless_allowed(fake_clouds):
    deployed_core(fake_clouds, changed={"edl-local-metadata": {"TablePrefix": "edl-old"}})
    stacks = manager(fake_clouds)
    plan = stacks.plan("core of local", SPECS)
    [update] = plan.changes
    assert update.name == "edl-local-metadata" and update.action is Action.UPDATE
    tables = [f"edl-local-metadata.{t.title()}Table" for t in naming.METADATA_TABLES]
    assert sorted(r.name for r in update.replacements) == sorted(tables)
    assert "TableName changes from edl-old-datasets to edl-local-datasets" in \
        {str(r).split(": ", 1)[1] for r in update.replacements}
    with pytest.raises(DeployError) as caught:
        stacks.execute(plan, allow_replace=frozenset(tables[:1]))
    assert "nothing was deployed" in caught.value.message and tables[1] in caught.value.message
    assert all(f"--allow-replace {t}" in caught.value.hint for t in tables[1:])
    assert change_sets(fake_clouds) == []
    [result] = stacks.execute(plan, allow_replace=frozenset(tables))
    assert result.name == "edl-local-metadata" and result.changed


def test_allowing_a_replacement_the_plan_does_not_have_is_refused(fake_clouds):
    deployed_core(fake_clouds)
    stacks = manager(fake_clouds)
    with pytest.raises(DeployError, match=re.escape("edl-local-metadata.DatasetsTable")):
        stacks.execute(stacks.plan("core of local", SPECS),
                       allow_replace=frozenset({"edl-local-metadata.DatasetsTable"}))


def test_a_bucket_name_change_is_a_replacement_of_the_bucket_not_of_its_key(fake_clouds):
    bucket = "edl-local-buckets-internal-eu-west-1"
    deployed_core(fake_clouds, changed={bucket: {"DataBucketName": "old-name"}})
    plan = manager(fake_clouds).plan("core of local", SPECS)
    [planned] = [s for s in plan.stacks if s.name == bucket]
    assert [(r.logical_id, r.resource_type) for r in planned.replacements] == \
        [("DataBucket", "AWS::S3::Bucket")]


def test_a_changed_bucket_stack_updates_the_stack_that_takes_its_outputs(fake_clouds):
    bucket = "edl-local-buckets-internal-eu-west-1"
    deployed_core(fake_clouds, changed={bucket: {"KeyAliasName": "alias/old"}})
    plan = manager(fake_clouds).plan("core of local", SPECS)
    assert {n: a for n, a in actions(plan).items() if a is not Action.UNCHANGED} == \
        {bucket: Action.UPDATE, "edl-local-default-acls": Action.UPDATE,
         "edl-local-ingest-job": Action.UPDATE, "edl-local-rest-api": Action.UPDATE,
         "edl-local-athena-eu-west-1": Action.UPDATE}


def test_a_stack_whose_first_create_failed_is_recreated(fake_clouds):
    deployed_core(fake_clouds)
    failed = fake_clouds["eu-west-1"].stacks["edl-local-artifacts-eu-west-1"]
    failed.status = "ROLLBACK_COMPLETE"
    failed.resource_status = {logical: "DELETE_COMPLETE" for logical in failed.resources}
    stacks = manager(fake_clouds)
    plan = stacks.plan("core of local", SPECS)
    # Its readers, and theirs: the tiers' buckets and the Athena results bucket (its log
    # bucket), the stacks of their keys.
    readers = {*(f"edl-local-buckets-{t}-eu-west-1" for t in naming.TIERS),
               "edl-local-athena-eu-west-1", "edl-local-default-acls", "edl-local-ingest-job", "edl-local-rest-api"}
    assert {s.name: s.action for s in plan.changes} == \
        {"edl-local-artifacts-eu-west-1": Action.RECREATE, **dict.fromkeys(readers, Action.UPDATE)}
    results = stacks.execute(plan)
    # The outputs came back the same: the stacks that read them need no change set.
    assert {r.name for r in results if not r.changed} == readers
    eu = fake_clouds["eu-west-1"]
    assert [op for op in eu.operations() if op in ("delete_stack", "create_change_set")] == \
        ["delete_stack", "create_change_set"]
    assert eu.called("create_change_set")[0]["ChangeSetType"] == "CREATE"
    assert eu.stacks["edl-local-artifacts-eu-west-1"].status == "CREATE_COMPLETE"


@pytest.mark.parametrize("status", ["DELETE_FAILED", "UPDATE_ROLLBACK_FAILED", "ROLLBACK_FAILED",
                                    "ROLLBACK_COMPLETE"])
def test_a_stack_in_a_failed_state_is_reported_with_its_recovery_and_never_deleted(fake_clouds, status):
    deployed_core(fake_clouds)
    eu = fake_clouds["eu-west-1"]
    stuck = eu.stacks["edl-local-buckets-sensitive-eu-west-1"]
    stuck.status = status  # a ROLLBACK_COMPLETE here still holds its (CREATE_COMPLETE) resources
    eu.add_event(stuck, stuck.name, STACK_TYPE, "DELETE_IN_PROGRESS", "User Initiated")
    eu.add_event(stuck, "DataBucket", "AWS::S3::Bucket", "DELETE_FAILED", "The bucket is not empty")
    stacks = manager(fake_clouds)
    plan = stacks.plan("core of local", SPECS)
    [blocked] = [s for s in plan.changes if s.action is Action.BLOCKED]
    assert blocked.name == stuck.name
    assert blocked.reason == f"{status}: DataBucket: The bucket is not empty"
    assert f"--stack-name {stuck.name} --region eu-west-1" in blocked.recovery
    command = "continue-update-rollback" if status == "UPDATE_ROLLBACK_FAILED" else "delete-stack"
    assert f"aws cloudformation {command}" in blocked.recovery
    if status == "DELETE_FAILED":
        assert "--retain-resources DataBucket" in blocked.recovery
    with pytest.raises(DeployError) as caught:
        stacks.execute(plan)
    assert stuck.name in caught.value.message and "The bucket is not empty" in caught.value.message
    assert caught.value.hint == blocked.recovery
    assert change_sets(fake_clouds) == [] and not eu.called("delete_stack")


def test_a_busy_stack_is_planned_and_then_refused_by_name(fake_clouds):
    deployed_core(fake_clouds)
    fake_clouds["us-east-1"].stacks["edl-local-metadata"].status = "UPDATE_IN_PROGRESS"
    stacks = manager(fake_clouds)
    plan = stacks.plan("core of local", SPECS)
    [busy] = plan.changes
    assert busy.name == "edl-local-metadata" and "busy" in busy.reason
    with pytest.raises(DeployError, match="edl-local-metadata is busy"):
        stacks.execute(plan)
    assert change_sets(fake_clouds) == []


def test_a_dataset_before_core_names_the_missing_stacks(fake_clouds):
    specs = dataset_stacks(CONFIG, LOCAL, "clinical_trials", "restricted")
    with pytest.raises(DeployError) as caught:
        manager(fake_clouds).plan("dataset clinical_trials", specs)
    assert "edl-local-buckets-restricted-us-east-1" in caught.value.message
    assert "edl-local-buckets-restricted-eu-west-1" in caught.value.message
    assert change_sets(fake_clouds) == []


def test_fingerprint_covers_template_and_parameters():
    stacks = StackManager(CONFIG, LOCAL, lambda region: None)
    metadata, artifacts = stacks.render("metadata.yaml"), stacks.render("artifacts.yaml")
    base = fingerprint(metadata, {"A": "1", "B": "2"})
    assert base == fingerprint(metadata, {"B": "2", "A": "1"})
    assert base != fingerprint(metadata, {"A": "1", "B": "3"})
    assert base != fingerprint(artifacts, {"A": "1", "B": "2"})


# -- execute ---------------------------------------------------------------------------------------

def test_core_deploys_with_outputs_passed_on_and_then_is_unchanged(fake_clouds):
    recorder = Recorder(delay=0.01)
    results = manager(fake_clouds, recorder).execute(manager(fake_clouds).plan("core of local", SPECS))
    assert {r.name for r in results} == CORE and all(r.changed for r in results)
    for spec in SPECS:
        for dependency in spec.depends_on:
            assert recorder.ended[dependency] < recorder.started[spec.name], (dependency, spec.name)
    acls = fake_clouds["us-east-1"].stacks["edl-local-default-acls"].parameters
    assert acls["KeyArns"] == ",".join(
        f"arn:aws:kms:{r}:123456789012:key/{physical_id(f'edl-local-buckets-internal-{r}', 'Key')}"
        for r in REGIONS)
    assert all(FINGERPRINT_PARAMETER in s.parameters
               for cfn in fake_clouds.values() for s in cfn.stacks.values())
    # What was deployed is what the next plan would deploy: nothing left to do.
    for cfn in fake_clouds.values():
        cfn.calls.clear()
    stacks = manager(fake_clouds)
    again = stacks.plan("core of local", SPECS)
    assert set(actions(again).values()) == {Action.UNCHANGED}, actions(again)
    assert stacks.execute(again) == [] and change_sets(fake_clouds) == []


def failing_create(fake_clouds, name: str, region: str = "us-east-1") -> None:
    fake_clouds[region].outcomes[name] = [
        ("CREATE_IN_PROGRESS", [(name, STACK_TYPE, "CREATE_IN_PROGRESS", "User Initiated")]),
        ("ROLLBACK_COMPLETE", [("ArtifactsBucket", "AWS::S3::Bucket", "CREATE_FAILED",
                                "sanofi-datalake-artifacts-local-us-east-1 already exists"),
                               (name, STACK_TYPE, "ROLLBACK_COMPLETE", None)]),
    ]


def test_a_failure_stops_further_submissions_and_names_what_was_not_attempted(fake_clouds):
    failed = "edl-local-artifacts-us-east-1"
    failing_create(fake_clouds, failed)
    # The failure comes at once; the other first-wave stacks are still running when it does.
    recorder = Recorder(delay=0.15, delays={failed: 0.0})
    stacks = manager(fake_clouds, recorder)
    with pytest.raises(DeployError) as caught:
        stacks.execute(stacks.plan("core of local", SPECS))
    first_wave = {failed, "edl-local-artifacts-eu-west-1", "edl-local-metadata"}
    assert set(recorder.started) == first_wave
    assert set(recorder.ended) == first_wave  # the running ones were let finish
    message = caught.value.message
    assert failed in message and "already exists" in message
    not_attempted = sorted(CORE - first_wave)
    assert message.endswith("not attempted: " + ", ".join(not_attempted))


def test_the_failed_stacks_hint_stays_a_hint(fake_clouds):
    """The CLI prints `Error: <message>` and then `Hint: <hint>`; the hint of the failed stack
    must not end up inside the message with the list of stacks not attempted glued to it."""
    failed = "edl-local-artifacts-us-east-1"
    failing_create(fake_clouds, failed)
    stacks = manager(fake_clouds, Recorder(delay=0.15, delays={failed: 0.0}))
    with pytest.raises(DeployError) as caught:
        stacks.execute(stacks.plan("core of local", SPECS))
    assert "Hint:" not in caught.value.message
    assert "not attempted: " in caught.value.message
    assert caught.value.hint and "not attempted" not in caught.value.hint


def test_no_stack_starts_after_a_failure_even_when_the_pool_is_full(fake_clouds):
    """With one worker, the first stack fails; nothing else may start after it, and the error
    lists every other stack as not attempted."""
    failed = "edl-local-artifacts-us-east-1"
    failing_create(fake_clouds, failed)
    recorder = Recorder()
    stacks = manager(fake_clouds, recorder, max_workers=1)
    with pytest.raises(DeployError) as caught:
        stacks.execute(stacks.plan("core of local", SPECS))
    assert list(recorder.started) == [failed]
    assert caught.value.message.endswith(
        "not attempted: " + ", ".join(sorted(CORE - {failed})))


@pytest.mark.parametrize("max_workers", [1, 2, 3])
def test_the_pool_never_runs_more_than_max_workers(fake_clouds, max_workers):
    recorder = Recorder(delay=0.03)
    stacks = manager(fake_clouds, recorder, max_workers=max_workers)
    results = stacks.execute(stacks.plan("core of local", SPECS))
    assert len(results) == len(CORE)
    assert recorder.peak == max_workers  # bounded, and the bound is used



def test_the_order_comes_from_the_outputs_a_stack_reads():
    """No hand-kept list: a stack that reads another's output goes after it, whatever the order
    the specs come in."""
    reader = StackSpec("edl-local-reader", "us-east-1", "default_acls.yaml",
                       (("KeyArns", (OutputRef("edl-local-keys", "KeyId"),)),))
    keys = StackSpec("edl-local-keys", "us-east-1", "buckets.yaml",
                     (("LogsBucketName", OutputRef("edl-local-logs", "LogsBucket")),))
    logs = StackSpec("edl-local-logs", "us-east-1", "artifacts.yaml", ())
    assert reader.depends_on == ("edl-local-keys",) and logs.depends_on == ()
    assert [s.name for s in in_dependency_order([reader, keys, logs])] == \
        ["edl-local-logs", "edl-local-keys", "edl-local-reader"]
    for spec in SPECS:  # the real components: every dependency is a stack of the core
        assert set(spec.depends_on) <= CORE, spec.name


# -- destroy ---------------------------------------------------------------------------------------

class NothingOutsideCloudFormation:
    """Glue, Athena, SSM, S3, KMS and DynamoDB of an account where EDL made nothing outside its
    stacks."""

    def list_work_groups(self, **kwargs):
        return {"WorkGroups": [{"Name": "primary"}]}

    def get_paginator(self, operation: str):
        def paginate(**kwargs):
            if operation == "get_tables":
                raise client_error("GetTables", code="EntityNotFoundException")
            return [{"get_parameters_by_path": {"Parameters": []},
                     "list_keys": {"Keys": []}}[operation]]
        return type("Paginator", (), {"paginate": staticmethod(paginate)})()

    def head_bucket(self, **kwargs):
        raise client_error("HeadBucket", code="404")

    def describe_table(self, **kwargs):
        raise client_error("DescribeTable", code="ResourceNotFoundException")


def test_destroy_deletes_a_stack_before_the_stacks_it_reads_from_and_accounts_for_all(fake_clouds):
    deployed_core(fake_clouds)
    [dataset] = dataset_stacks(CONFIG, LOCAL, "clinical_trials", "restricted")
    setup = manager(fake_clouds)
    fake_clouds["us-east-1"].add_stack(dataset.name, "CREATE_COMPLETE",
                                 setup.resolve(dataset, setup.live_stacks()),
                                 setup.render(dataset.template).body)
    fake_clouds["eu-west-1"].add_stack("edl-local-hand-made", "CREATE_COMPLETE", {}, "{}")
    plan = Destroyer(CONFIG, LOCAL, manager(fake_clouds),
                     lambda service, region: NothingOutsideCloudFormation()).plan(delete_data=False)
    wave = {s.name: s.wave for s in plan.stacks}
    assert set(wave) == CORE | {dataset.name, "edl-local-hand-made"}  # every live stack
    assert [s.name for s in plan.stacks if not s.known] == ["edl-local-hand-made"]
    assert wave["edl-local-hand-made"] == 0
    for spec in [*SPECS, dataset]:
        for dependency in spec.depends_on:
            assert wave[spec.name] < wave[dependency], (spec.name, dependency)
    kept = {(r.stack, r.logical_id) for r in plan.kept}
    assert ("edl-local-buckets-sensitive-eu-west-1", "DataBucket") in kept
    assert ("edl-local-metadata", "AuditTable") in kept
    assert not any(stack == "edl-local-artifacts-us-east-1" and logical == "ArtifactsBucket"
                   for stack, logical in kept)
