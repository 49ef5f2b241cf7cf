"""Compatibility tests: the lake's code under the Spark the cloud runs (Glue 5: pyspark 3.5).

- `spark35_python`: the Python of `.venv-spark35/` (made once, then reused; `spark35_venv.py`).
  A venv that cannot be made fails the test that needs it, saying why: it is never skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compat.spark35_venv import VenvError, ensure_venv


@pytest.fixture(scope="session")
def spark35_python() -> Path:
    try:
        venv = ensure_venv()
    except VenvError as exc:
        pytest.fail(f"no pyspark 3.5 venv to run the Glue 5 compatibility tests in: {exc}\n"
                    "It is made from PyPI (constraints-spark35.txt and constraints.txt); "
                    "check that pip reaches the package index.", pytrace=False)
    if venv.created_seconds is not None:
        print(f"made {venv.python.parents[1].name} in {venv.created_seconds:.0f} s")
    return venv.python
