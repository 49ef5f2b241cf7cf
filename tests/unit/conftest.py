"""Unit tests: no network, no AWS emulator, no subprocess, no Spark.

Fakes the tests share live in `fakes.py`; the fixtures of this folder are defined here.
"""

from __future__ import annotations

import pytest

from edl.cloudformation import render


@pytest.fixture
def shared_lint_cache(tmp_path_factory, monkeypatch):
    """Every plan lints the core templates; lint them for real once per session, not per test."""
    folder = tmp_path_factory.getbasetemp() / "stack-manager-cache"
    monkeypatch.setattr(render, "cache_dir", lambda: folder)
