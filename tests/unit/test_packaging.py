"""Packaging of deployed code: the same files give the same bytes, keys carry the hash, and the
stack manager uploads an object only when it is missing, just before the stack that needs it."""

from __future__ import annotations

import io
import zipfile

import pytest

from edl.cloudformation import packaging
from edl.cloudformation.components.core import core_stacks
from edl.cloudformation.components.ingest import ingest_stacks
from edl.cloudformation.plan import Action, StackSpec, Upload
from edl.cloudformation.stack_manager import StackManager
from edl.config import load_config
from edl.errors import DeployError
from tests.unit.fakes import REGIONS, FakeCloudFormation, FakeS3, Recorder, RecordingClient

CONFIG = load_config()
LOCAL = CONFIG.instance("local")
INGEST = "edl-local-ingest-job"


pytestmark = pytest.mark.usefixtures("shared_lint_cache")


# -- packages ----------------------------------------------------------------------------------

def test_the_same_files_give_the_same_bytes_whatever_their_order():
    first = packaging.build_zip({"b/x.py": b"x = 1\n", "a.py": b"print(1)\n"})
    second = packaging.build_zip({"a.py": b"print(1)\n", "b/x.py": b"x = 1\n"})
    assert first.data == second.data and first.sha256 == second.sha256
    entries = zipfile.ZipFile(io.BytesIO(first.data)).infolist()
    assert [e.filename for e in entries] == ["a.py", "b/x.py"]
    assert {e.date_time for e in entries} == {(1980, 1, 1, 0, 0, 0)}
    assert packaging.build_zip({"a.py": b"print(2)\n", "b/x.py": b"x = 1\n"}).sha256 \
        != first.sha256


def test_the_edl_package_is_reproducible_and_leaves_caches_out(tmp_path):
    packaging.package_edl.cache_clear()
    once = packaging.package_edl()
    packaging.package_edl.cache_clear()
    assert packaging.package_edl().data == once.data
    names = zipfile.ZipFile(io.BytesIO(once.data)).namelist()
    assert "edl/core_resources/pipelines/ingest/__main__.py" in names
    assert "edl/cloudformation/templates/ingest_job.yaml" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # A tree with caches packs to the same bytes as the tree without them.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("m = 1\n")
    clean = packaging.build_zip(packaging.tree_files(tmp_path / "pkg", "pkg"))
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0cache")
    (tmp_path / "pkg" / "other.pyc").write_bytes(b"\0cache")
    assert packaging.build_zip(packaging.tree_files(tmp_path / "pkg", "pkg")).sha256 \
        == clean.sha256


def test_keys_carry_the_content_hash():
    package = packaging.build_zip({"a.py": b""})
    assert package.key("code/edl", ".zip") == f"code/edl-{package.sha256[:16]}.zip"
    [spec] = ingest_stacks(CONFIG, LOCAL)
    parameters = dict(spec.parameters)
    code = packaging.package_edl()
    assert parameters["CodeLocation"].endswith(f"/code/edl-{code.short_hash}.zip")
    assert {u.url for u in spec.uploads} == {parameters["CodeLocation"],
                                             parameters["ScriptLocation"]}
    assert dict((u.key, u.body()) for u in spec.uploads)[code.key("code/edl", ".zip")] \
        == code.data


# -- uploads by the stack manager ---------------------------------------------------------------

def _manager(cloud, s3: FakeS3 | None) -> StackManager:
    class Client(RecordingClient):
        def __init__(self, cfn, region):
            super().__init__(cfn, region, Recorder())
            self.s3 = (lambda: s3) if s3 is not None else None
    return StackManager(CONFIG, LOCAL, lambda region: Client(cloud[region], region))


def _spec(uploads, key: str = "code/app-1.zip") -> StackSpec:
    return StackSpec(name="edl-local-metadata", region="us-east-1", template="metadata.yaml",
                     parameters=(("TablePrefix", f"edl-local-{len(key)}"),), uploads=uploads)


def test_an_upload_happens_before_the_stack_deploys_and_only_when_missing():
    cloud = {r: FakeCloudFormation(r) for r in REGIONS}
    s3 = FakeS3()
    built: list[str] = []
    s3.objects[("artifacts", "code/old.zip")] = b"old"
    uploads = (Upload("artifacts", "code/new.zip", lambda: built.append("new") or b"NEW"),
               Upload("artifacts", "code/old.zip", lambda: built.append("old") or b"OLD"))
    stacks = _manager(cloud, s3)
    stacks.execute(stacks.plan("test", [_spec(uploads)]))
    assert s3.objects[("artifacts", "code/new.zip")] == b"NEW"
    assert s3.objects[("artifacts", "code/old.zip")] == b"old"   # there already: left alone
    assert built == ["new"]


def test_a_stack_with_uploads_and_no_s3_client_is_refused_by_name():
    cloud = {r: FakeCloudFormation(r) for r in REGIONS}
    stacks = _manager(cloud, None)
    uploads = (Upload("artifacts", "code/new.zip", lambda: b"x"),)
    with pytest.raises(DeployError, match="edl-local-metadata needs objects in S3"):
        stacks.execute(stacks.plan("test", [_spec(uploads)]))
    assert cloud["us-east-1"].called("create_change_set") == []


def test_unchanged_code_plans_unchanged_and_uploads_nothing_changed_code_updates():
    cloud = {r: FakeCloudFormation(r) for r in REGIONS}
    s3 = FakeS3()
    specs = core_stacks(CONFIG, LOCAL)
    stacks = _manager(cloud, s3)
    stacks.execute(stacks.plan("core", specs))
    artifacts = "sanofi-datalake-artifacts-local-us-east-1"
    uploaded = {k for (b, k) in s3.objects if b == artifacts}
    assert {k.split("/")[0] for k in uploaded} == {"code", "jobs"}

    again = _manager(cloud, s3)
    plan = again.plan("core", core_stacks(CONFIG, LOCAL))
    assert {s.action for s in plan.stacks} == {Action.UNCHANGED}
    before = dict(s3.objects)
    assert again.execute(plan) == [] and s3.objects == before

    # Other code: a new key, so the job stack updates and the new package is uploaded.
    changed = packaging.build_zip({"edl/__init__.py": b"# changed\n"})
    try:
        packaging.package_edl.cache_clear()
        original = packaging.package_edl
        packaging.package_edl = lambda: changed
        plan = _manager(cloud, s3).plan("core", core_stacks(CONFIG, LOCAL))
    finally:
        packaging.package_edl = original
    assert {s.name: s.action for s in plan.changes} == {INGEST: Action.UPDATE}
    _manager(cloud, s3).execute(plan)
    added = {k: v for k, v in s3.objects.items() if k not in before}
    assert added == {(artifacts, changed.key("code/edl", ".zip")): changed.data}
