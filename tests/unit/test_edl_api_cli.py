"""`edl-api` help and usage: every sub-command has its own --help, and bad input is refused with
exit code 2 before the API client is even built (no credentials looked up, no request sent)."""

from __future__ import annotations

import re

import pytest

from edl_api.edl_api import main, run

SUBCOMMANDS = ("datasets", "dataset", "updates", "update", "ingest", "job", "run-pipeline")


@pytest.fixture(autouse=True)
def no_instance_from_the_environment(monkeypatch):
    monkeypatch.delenv("EDL_INSTANCE", raising=False)


@pytest.fixture
def cli(capsys):
    """`edl-api ARGV` with a client factory that fails the test if it is ever used."""
    built = []

    def connect(instance, profile):
        built.append((instance, profile))
        raise AssertionError("the API client must not be built for bad input")

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = run(list(argv), connect=connect)
        out, err = capsys.readouterr()
        return code, out, err

    invoke.built = built
    return invoke


def test_help_lists_every_sub_command(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for name in SUBCOMMANDS:
        # a name longer than argparse's column has its summary on the next line
        assert re.search(rf"^    {re.escape(name)}\s", out, re.MULTILINE), name
    assert "edl-api COMMAND --help" in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_sub_command_has_its_own_help(cli, name):
    code, out, _ = cli(name, "--help")
    assert code == 0
    assert out.startswith(f"usage: edl-api {name} ")
    for option in ("--instance", "--profile", "--json", "--debug"):
        assert option in out
    assert not cli.built


def test_ingest_help_names_its_options(cli):
    _, out, _ = cli("ingest", "--help")
    for option in ("--source", "--kind", "--format", "--delimiter", "--encoding", "--wait",
                   "--timeout", "snapshot", "delta"):
        assert option in out


def test_ingest_help_names_exactly_the_sources_the_api_takes(cli):
    from edl.api_config import get_api_config
    from edl.naming import SOURCE_SCHEMES

    _, out, _ = cli("ingest", "--help")
    source_help = " ".join(out.split("--source SOURCE", 2)[-1].split("--kind")[0].split())
    assert source_help == "a local file, " + ", ".join(f"{s}://…" for s in SOURCE_SCHEMES)
    assert "sftp" not in out
    documented = next(f for f in get_api_config().endpoint("start_ingest").body
                      if f.name == "source").description
    assert all(f"{s}://" in documented for s in SOURCE_SCHEMES) and "sftp" not in documented
    code, _, err = cli("ingest", "sales", "--source", "sftp://me@host/a.csv", "--kind", "delta")
    assert code == 2 and "unsupported source" in err and not cli.built


def test_no_command_prints_help_and_exits_2(cli):
    code, out, _ = cli()
    assert code == 2 and "COMMAND" in out


def test_main_reads_sys_argv(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["edl-api", "job", "--help"])
    assert main() == 0
    assert "usage: edl-api job" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (("nosuch",), "invalid choice: 'nosuch'"),
    (("dataset",), "the following arguments are required: name"),
    (("update", "sales"), "the following arguments are required: ID"),
    (("job",), "the following arguments are required: ID"),
    (("ingest", "sales", "--kind", "snapshot"), "--source"),
    (("ingest", "sales", "--source", "s3://b/k"), "--kind"),
    (("ingest", "sales", "--source", "s3://b/k", "--kind", "full"), "invalid choice: 'full'"),
    (("ingest", "sales", "--source", "s3://b/k", "--kind", "delta", "--format", "xml"),
     "invalid choice: 'xml'"),
    (("ingest", "sales", "--source", "s3://b/k", "--kind", "delta", "--timeout", "0"),
     "must be more than 0"),
    (("updates", "sales", "--status", "done"), "invalid choice: 'done'"),
    (("datasets", "--limit", "0"), "must be at least 1"),
    (("dataset", "Clinical-Trials"), "invalid dataset name 'Clinical-Trials'"),
    (("updates", "x"), "invalid dataset name 'x'"),
    (("datasets", "--bogus"), "unrecognized arguments: --bogus"),
])
def test_usage_errors_exit_2_before_any_request(cli, argv, message):
    code, _out, err = cli(*argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not cli.built


def test_a_missing_local_file_is_refused_before_any_request(cli, tmp_path):
    code, _, err = cli("ingest", "sales", "--source", str(tmp_path / "nope.csv"), "--kind", "delta")
    assert code == 2
    assert "Error: no such file" in err and "nope.csv" in err
    assert not cli.built


def test_a_folder_is_refused_as_a_source(cli, tmp_path):
    code, _, err = cli("ingest", "sales", "--source", str(tmp_path), "--kind", "delta")
    assert code == 2 and "is not a file" in err and "zip" in err


def test_an_unknown_scheme_is_refused(cli):
    code, _, err = cli("ingest", "sales", "--source", "ftp://host/a.csv", "--kind", "delta")
    assert code == 2 and "unsupported source" in err


def test_an_unknown_instance_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.delenv("EDL_INSTANCE", raising=False)
    code = run(["datasets", "--instance", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown instance 'nope'" in err


def test_the_instance_defaults_to_edl_instance(cli, monkeypatch):
    monkeypatch.setenv("EDL_INSTANCE", "dev01")
    cli("datasets")
    assert cli.built == [("dev01", None)]


def test_the_local_cloud_not_running_is_a_clear_error(capsys, aws_credentials):
    code = run(["datasets"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Error: the local cloud is not running" in err and "edl local start" in err
    assert "Traceback" not in err


def test_an_unexpected_error_has_no_traceback_without_debug(capsys):
    def broken(instance, profile):
        raise RuntimeError("boom")

    assert run(["datasets"], connect=broken) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err and "Traceback" not in err

    assert run(["datasets", "--debug"], connect=broken) == 1
    assert "Traceback" in capsys.readouterr().err
