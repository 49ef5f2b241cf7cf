"""AWS profiles whose credentials come from the lake's credential broker (`edl-api profile`).

A profile with a `credential_process` makes the AWS CLI, boto3, pyarrow and Spark (through the AWS
SDKs' shared config) run `edl-api credentials … --format credential-process` whenever they need
credentials, and again before those expire: they refresh through the broker by themselves.

The file is `--config-file`, else `$AWS_CONFIG_FILE`, else `~/.aws/config`. Writing a profile
replaces one section and keeps every other byte: the text is split at its section headers (the
way configparser finds them), the section of that name is replaced where it stands (comment and
blank lines at its end, which usually introduce the next section, stay), or a new one is
appended. The file must parse the way botocore parses it (`configparser.RawConfigParser`) before,
and the result after, or nothing is written; the write is atomic (a temporary file in the same
folder, fsync, rename) and keeps the file's mode (0600 for a new file).
"""

from __future__ import annotations

import configparser
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from edl.errors import EdlError, UsageError

PROFILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+@-]{0,63}")
_HEADER_RE = re.compile(r"\[(?P<header>.+)\]")  # configparser's SECTCRE


class ProfileFileError(EdlError):
    """The AWS config file cannot be read, parsed or written."""


def config_file_path(explicit: str | None = None,
                     environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    chosen = explicit or environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    return Path(chosen).expanduser().absolute()


def validate_profile_name(name: str) -> str:
    if not PROFILE_NAME_RE.fullmatch(name or ""):
        raise UsageError(f"invalid profile name {name!r}",
                         hint="use letters, digits and _ . + @ - (at most 64), e.g. "
                              "edl-trials-read")
    return name


def section_name(profile: str) -> str:
    """The config file's section of a profile: `[default]`, else `[profile NAME]`."""
    return "default" if profile == "default" else f"profile {profile}"


def render_section(section: str, values: Mapping[str, str]) -> str:
    lines = [f"[{section}]"]
    for key, value in values.items():
        if "\n" in value or "\r" in value:
            raise UsageError(f"the value of {key} spans lines, which the AWS config cannot hold")
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str, body: str) -> tuple[str, bool]:
    """`text` with the section named `section` replaced by `body` (a rendered section), or with
    `body` appended; and whether a section was replaced."""
    lines = text.splitlines(keepends=True)
    headers = [i for i, line in enumerate(lines) if _header(line) is not None]
    wanted = _normal(section)
    start = next((i for i in headers if _normal(_header(lines[i]) or "") == wanted), None)
    if start is None:
        prefix = text
        if prefix and not prefix.endswith(("\n", "\r")):
            prefix += "\n"
        if prefix.strip() and not prefix.endswith(("\n\n", "\r\n\r\n")):
            prefix += "\n"
        return prefix + body, False
    end = next((i for i in headers if i > start), len(lines))
    tail = end
    while tail > start + 1 and _is_comment_or_blank(lines[tail - 1]):
        tail -= 1
    kept_tail = lines[tail:end]
    separator = ["\n"] if end < len(lines) and not kept_tail else []
    return "".join([*lines[:start], body, *separator, *kept_tail, *lines[end:]]), True


def write_profile(path: Path, profile: str, values: Mapping[str, str]) -> bool:
    """Write `[profile NAME]` with `values` into the AWS config file at `path`, replacing a
    section of that name and keeping the rest; whether one was replaced."""
    target = Path(os.path.realpath(path))  # a symlinked config (dotfiles) is written through
    try:
        with target.open(encoding="utf-8", newline="") as file:
            text = file.read()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileFileError(f"cannot read {path}: {exc}") from None
    _parse(text, path, "it")
    section = section_name(profile)
    updated, replaced = replace_section(text, section, render_section(section, values))
    parsed = _parse(updated, path, "the updated file")
    if dict(parsed[section]) != dict(values):  # never write what the SDKs would read otherwise
        raise ProfileFileError(f"cannot write profile {profile!r} into {path}: the result "
                               "would not read back as written",
                               hint="write it elsewhere with --config-file PATH")
    _write_atomically(target, updated)
    return replaced


def _parse(text: str, path: Path, what: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep keys as written
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        first_line = str(exc).splitlines()[0]
        raise ProfileFileError(f"cannot update {path}: {what} does not parse as an AWS config "
                               f"file ({first_line})",
                               hint="fix the file, or write the profile elsewhere with "
                                    "--config-file PATH") from None
    return parser


def _write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o600
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
    except OSError as exc:
        raise ProfileFileError(f"cannot write {path}: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise ProfileFileError(f"cannot write {path}: {exc}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _header(line: str) -> str | None:
    """The section name a line opens, as configparser reads it (an indented line continues a
    value instead)."""
    if not line or line[0].isspace():
        return None
    match = _HEADER_RE.match(line.strip())
    return match.group("header") if match else None


def _normal(header: str) -> str:
    return " ".join(header.split())


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith(("#", ";"))
