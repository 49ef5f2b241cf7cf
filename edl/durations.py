"""Durations as people write them: `90s`, `15m`, `12h`, `30d` (and plain seconds, `3600`).

Shared ground: `edl-api` parses `--for`, `--duration` and `--since` with it before any request,
and the API parses the same text again, so a duration means the same on both sides.
"""

from __future__ import annotations

import re

from edl.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"(\d{1,9})([smhd]?)")
FORMAT_HINT = "write a whole number with a unit: 90s, 15m, 12h or 30d"


def parse_duration(text: str, *, what: str = "duration") -> int:
    """The number of seconds `text` stands for; a `UsageError` naming `what` for anything else,
    zero and negative durations included."""
    if not isinstance(text, str):
        raise UsageError(f"{what} must be text like 15m, not {type(text).__name__}",
                         hint=FORMAT_HINT)
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(f"{what} {text[:40]!r} is not a duration", hint=FORMAT_HINT)
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise UsageError(f"{what} must be more than zero, not {text!r}", hint=FORMAT_HINT)
    return seconds


def format_duration(seconds: float) -> str:
    """`5400` -> `1h30m`: the two largest units, for messages and tables."""
    left = max(0, int(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            count, left = divmod(left, size)
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return "".join(parts)
