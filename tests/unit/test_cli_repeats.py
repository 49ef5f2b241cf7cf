"""Options that may be repeated (`--key`, `--allow-replace`) accumulate, through argparse's
public API only."""

from __future__ import annotations

import pytest

from edl.installed_scripts.dl import gather_repeated


@pytest.mark.parametrize(("given", "parsed"), [
    (["--key", "a", "--key", "b"], ["--key", "a", "b"]),
    (["--key", "a", "b", "--tier", "t", "--key=c"], ["--key", "a", "b", "c", "--tier", "t"]),
    (["name", "--owner", "o"], ["name", "--owner", "o"]),
    (["--key"], ["--key"]),  # no value: argparse itself says what is missing
])
def test_repeated_options_gather_their_values(given, parsed):
    assert gather_repeated(given, {"--key"}) == parsed


def test_deploy_dataset_takes_every_key_given(capsys):
    from edl.installed_scripts.commands import COMMANDS
    from edl.installed_scripts.dl import _parse

    options = _parse(COMMANDS["deploy-dataset"], "edl deploy-dataset",
                     ["trials", "--tier", "sensitive", "--owner", "alice", "--key", "site",
                      "--op-column", "op", "--key", "visit", "day"])
    assert options.key == ["site", "visit", "day"]
