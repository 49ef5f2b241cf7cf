"""The pyspark 3.5 virtualenv the compatibility tests run in: `.venv-spark35/` at the repo root.

AWS Glue 5.0 runs Spark 3.5.4 on Python 3.11 and Java 17; this venv holds that pyspark, the few
packages the pipeline wrapper and the test's moto server import, and this repository itself (an
editable install, so the venv always runs the working tree's `edl`). Versions come from
`constraints-spark35.txt` (pyspark and what it pins) and, for everything else, from the repo's
`constraints.txt`, so the venv differs from `.venv` in Spark alone.

It is made once and reused: a stamp inside it records the hash of what it was made from, and a
change to either constraints file or to the package list makes it again. A file lock keeps two
test processes from making it at the same time.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-spark35"
CONSTRAINTS = ROOT / "constraints.txt"
SPARK35_CONSTRAINTS = ROOT / "constraints-spark35.txt"
# What the wrapper imports (boto3, pyarrow, pyyaml), what the test's local cloud needs, and
# paramiko, which the functional tests' lake helpers (`create_metadata_tables`) import.
PACKAGES = ("pyspark", "pyarrow", "boto3", "PyYAML", "moto[server]", "paramiko")
STAMP = ".edl-stamp"


class VenvError(Exception):
    """The venv could not be made; the message says which step failed and its output."""


@dataclass(frozen=True)
class Venv:
    python: Path
    created_seconds: float | None    # None: it was already there


def _name(line: str) -> str:
    return line.split("==", 1)[0].split("[", 1)[0].strip().lower().replace("_", "-")


def merged_constraints() -> str:
    """constraints-spark35.txt, then every pin of constraints.txt it does not override."""
    own = [line.strip() for line in SPARK35_CONSTRAINTS.read_text().splitlines()]
    pins = [line for line in own if line and not line.startswith("#")]
    overridden = {_name(line) for line in pins}
    inherited = [line.strip() for line in CONSTRAINTS.read_text().splitlines()
                 if line.strip() and not line.startswith("#")
                 and _name(line) not in overridden]
    return "\n".join([*pins, *inherited]) + "\n"


def _fingerprint(constraints: str) -> str:
    return hashlib.sha256("\n".join([sys.version, constraints, *PACKAGES]).encode()).hexdigest()


def _run(step: str, argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-25:]
        raise VenvError(f"making {VENV.name} failed at {step} (exit {done.returncode}):\n"
                        + "\n".join(tail))


def ensure_venv() -> Venv:
    """The venv's Python, making the venv first if it is missing or stale."""
    constraints = merged_constraints()
    fingerprint = _fingerprint(constraints)
    python = VENV / "bin" / "python"
    lock_path = ROOT / ".venv-spark35.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = VENV / STAMP
        if python.exists() and stamp.exists() and stamp.read_text() == fingerprint:
            return Venv(python, None)
        started = time.monotonic()
        shutil.rmtree(VENV, ignore_errors=True)
        _run("python -m venv", [sys.executable, "-m", "venv", str(VENV)])
        pinned = VENV / "constraints.txt"
        pinned.write_text(constraints)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run("pip install " + " ".join(PACKAGES), [*pip, "-c", str(pinned), *PACKAGES])
        _run("pip install -e . --no-deps", [*pip, "--no-deps", "-e", str(ROOT)])
        stamp.write_text(fingerprint)
        return Venv(python, time.monotonic() - started)
