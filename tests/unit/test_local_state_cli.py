"""`edl local start --fresh`, `snapshot` and `restore` in-process: what they refuse, and that a
refusal changes nothing (no runtime is started here; `control` is faked where it would be)."""

from __future__ import annotations

import pytest

from edl import paths
from edl.installed_scripts.dl import main
from edl.local import control
from edl.local.state.store import write_users

LAKE_FILES = {"users.json", "journal-000000.log"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def kept_lake(edl_home):
    """A state folder holding a (stand-in) bootstrapped lake."""
    folder = paths.local_state_dir()
    write_users(folder, {"users": [], "cfn_role_arn": "arn:aws:iam::123456789012:role/r"})
    (folder / "journal-000000.log").write_bytes(b"EDLJRNL1\n{}\n")
    return folder


@pytest.fixture
def not_running(monkeypatch):
    started = []
    stopped = control.LocalStatus(False, None, None, {}, None, ())

    def start(*args, **kwargs):
        started.append(kwargs)
        return control.LocalStatus(True, 1, "http://127.0.0.1:1", {}, 0.0, ())

    monkeypatch.setattr(control, "status", lambda: stopped)
    monkeypatch.setattr(control, "start", start)
    return started


def test_fresh_without_a_terminal_or_yes_refuses_and_deletes_nothing(kept_lake, not_running,
                                                                       capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _, err = run(capsys, "local", "start", "--fresh")
    assert code == 2
    assert str(kept_lake) in err and "--yes" in err
    assert {p.name for p in kept_lake.iterdir()} == LAKE_FILES
    assert not_running == []


def test_fresh_with_yes_starts_a_fresh_lake(kept_lake, not_running, capsys):
    code, _, _ = run(capsys, "local", "start", "--fresh", "--yes")
    assert code == 0
    assert not_running == [{"fresh": True, "ephemeral": False}]


def test_fresh_and_ephemeral_together_are_refused(not_running, capsys):
    code, _, err = run(capsys, "local", "start", "--fresh", "--ephemeral")
    assert code == 2 and "--ephemeral" in err


def test_restore_refuses_while_the_cloud_runs(kept_lake, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(control, "status",
                        lambda: control.LocalStatus(True, 1, "http://x", {}, 0.0, ()))
    code, _, err = run(capsys, "local", "restore", str(tmp_path / "lake.tar"), "--yes")
    assert code == 1 and "edl local stop" in err
    assert {p.name for p in kept_lake.iterdir()} == LAKE_FILES


def test_a_tar_that_is_not_a_lake_is_refused_and_the_kept_lake_stays(kept_lake, not_running,
                                                                     capsys, tmp_path):
    import tarfile

    bad = tmp_path / "bad.tar"
    (tmp_path / "notes.txt").write_text("not a lake")
    with tarfile.open(bad, "w") as tar:
        tar.add(tmp_path / "notes.txt", "notes.txt")
    code, _, err = run(capsys, "local", "restore", str(bad), "--yes")
    assert code == 1 and "notes.txt" in err and "edl local snapshot" in err
    assert {p.name for p in kept_lake.iterdir()} == LAKE_FILES


def test_snapshot_of_no_lake_says_so(edl_home, not_running, capsys, tmp_path):
    code, _, err = run(capsys, "local", "snapshot", str(tmp_path / "out.tar"))
    assert code == 1 and "no lake" in err and "edl local start" in err
    assert not (tmp_path / "out.tar").exists()
