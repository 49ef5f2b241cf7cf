"""Code that deploys ship to S3 (the ingest job now, Lambda functions next), packaged reproducibly.

The same files always give the same bytes: entries are sorted, every entry has the same fixed
timestamp and permissions, and caches (`__pycache__`, `*.pyc`) are left out. So the sha256 of a
package names its content, and S3 keys carry it (`code/edl-<sha16>.zip`): unchanged code means
unchanged stack parameters (no stack update) and an object that already exists (no upload).

    package = package_edl()                     # the `edl` package, as imported by jobs and Lambdas
    package.key("code/edl", ".zip")             # "code/edl-<sha16>.zip"
    build_zip({"main.py": b"..."})              # any files

Deploy code packages jobs and handlers as files and never imports them (DESIGN §9).
"""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import edl

# The earliest time a zip entry can hold; any fixed value would do.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Package:
    """A built artifact: its bytes and their sha256 (hex)."""

    data: bytes = field(repr=False)
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Package:
        return cls(data, hashlib.sha256(data).hexdigest())

    @property
    def short_hash(self) -> str:
        return self.sha256[:16]

    def key(self, stem: str, suffix: str = "") -> str:
        """`<stem>-<sha16><suffix>`: an S3 key that changes exactly when the content does."""
        return f"{stem}-{self.short_hash}{suffix}"


def build_zip(files: Mapping[str, bytes]) -> Package:
    """A zip of `files` (archive path → content) whose bytes depend on nothing else."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3                 # unix, whatever the building machine is
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name], compresslevel=6)
    return Package.of(buffer.getvalue())


def tree_files(root: Path, prefix: str) -> dict[str, bytes]:
    """Every file under `root` as `<prefix>/<relative path>` → bytes, caches left out."""
    files: dict[str, bytes] = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if not path.is_file() or _SKIPPED_DIRS.intersection(relative.parts[:-1]) \
                or path.name.endswith(_SKIPPED_SUFFIXES):
            continue
        files[f"{prefix}/{relative.as_posix()}"] = path.read_bytes()
    return files


def edl_files() -> dict[str, bytes]:
    """The `edl` package as files, ready to add to a zip next to other files."""
    return tree_files(Path(edl.__file__).parent, "edl")


def yaml_files() -> dict[str, bytes]:
    """PyYAML's pure-Python modules (Lambda's runtime has no PyYAML; the C extension is built
    for this machine, not Lambda's, and PyYAML works without it)."""
    import yaml

    root = Path(yaml.__file__).parent
    return {name: data for name, data in tree_files(root, "yaml").items()
            if name.endswith(".py")}


@functools.lru_cache(maxsize=1)
def package_edl() -> Package:
    """The installed `edl` package as a zip that Glue (`--extra-py-files`) or Lambda imports."""
    return build_zip(edl_files())


def script_package(text: str) -> Package:
    """A single script (a job's entry point), hashed like a package."""
    return Package.of(text.encode())
