"""Durations read the way `--for 30d` and `--since 1h` are written, on the client and the API."""

from __future__ import annotations

import pytest

from edl.durations import format_duration, parse_duration
from edl.errors import UsageError


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("12h", 43200), ("30d", 2592000), ("3600", 3600), (" 2H ", 7200),
])
def test_durations_read_with_their_unit(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "0", "-5m", "5w", "1.5h", "", "h", "15 m", "1e3"])
def test_a_duration_that_is_not_one_is_refused_naming_it(text):
    with pytest.raises(UsageError) as caught:
        parse_duration(text, what="--for")
    assert "--for" in caught.value.message
    assert "30d" in caught.value.hint


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59, "59s"), (90, "1m30s"), (5400, "1h30m"), (2592000, "30d"), (90061, "1d1h"),
])
def test_durations_print_in_their_two_largest_units(seconds, text):
    assert format_duration(seconds) == text
