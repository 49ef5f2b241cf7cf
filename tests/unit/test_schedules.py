"""EventBridge schedule expressions: when they fire next, and what does not parse."""

from datetime import UTC, datetime

import pytest

from edl.errors import ConfigError
from edl.utils.schedules import next_fire, parse_schedule

ANCHOR = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("rate(5 minutes)", "2026-03-01T10:02:30", "2026-03-01T10:05:00"),
    ("rate(1 hour)", "2026-03-01T10:00:00", "2026-03-01T11:00:00"),
    ("rate(2 days)", "2026-01-02T00:00:00", "2026-01-03T00:00:00"),
    # every day at 06:00 UTC
    ("cron(0 6 * * ? *)", "2026-03-01T06:00:00", "2026-03-02T06:00:00"),
    ("cron(0 6 * * ? *)", "2026-03-01T05:59:59", "2026-03-01T06:00:00"),
    # every 15 minutes on weekdays (MON-FRI), from 08:00 to 17:45
    ("cron(0/15 8-17 ? * MON-FRI *)", "2026-03-06T17:50:00", "2026-03-09T08:00:00"),
    # the last day of the month; February of a leap year
    ("cron(30 23 L * ? *)", "2028-02-01T00:00:00", "2028-02-29T23:30:00"),
    # the weekday nearest to the 1st: 2026-08-01 is a Saturday, so Monday the 3rd
    ("cron(0 9 1W * ? *)", "2026-07-31T00:00:00", "2026-08-03T09:00:00"),
    # the second Tuesday (3#2) of each month
    ("cron(0 12 ? * 3#2 *)", "2026-03-01T00:00:00", "2026-03-10T12:00:00"),
    # the last Friday (6L) of the month
    ("cron(0 18 ? * 6L *)", "2026-03-01T00:00:00", "2026-03-27T18:00:00"),
    # one month and one year only
    ("cron(0 0 1 JAN ? 2027)", "2026-06-01T00:00:00", "2027-01-01T00:00:00"),
])
def test_next_fire(expression, after, expected):
    assert next_fire(expression, at(after), ANCHOR) == at(expected)


def test_a_cron_in_the_past_never_fires_again():
    assert next_fire("cron(0 0 1 1 ? 2026)", at("2026-06-01T00:00:00"), ANCHOR) is None


@pytest.mark.parametrize(("expression", "says"), [
    ("every day", "does not parse"),
    ("cron(0 6 * * *)", "six cron fields"),
    ("cron(0 6 * * * *)", "exactly one of day-of-month and day-of-week"),
    ("cron(0 6 ? * ? *)", "exactly one of day-of-month and day-of-week"),
    ("cron(61 6 * * ? *)", "minutes value '61'"),
    ("cron(0 25 * * ? *)", "hours value '25'"),
    ("cron(0 6 * FOO ? *)", "month value 'FOO'"),
    ("cron(0 6 ? * 8 *)", "day-of-week value '8'"),
    ("cron(0/0 6 * * ? *)", "step"),
    ("cron(0 9-5 * * ? *)", "runs backwards"),
    ("rate(0 minutes)", "at least 1"),
    ("rate(5 weeks)", "does not parse"),
])
def test_what_does_not_parse_is_named(expression, says):
    with pytest.raises(ConfigError) as caught:
        parse_schedule(expression, "lambda_config.yaml: trigger")
    assert says in str(caught.value)
    assert "lambda_config.yaml: trigger" in str(caught.value)
