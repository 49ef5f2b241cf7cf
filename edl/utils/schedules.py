"""When an EventBridge schedule expression fires next: what the local runtime uses to start
scheduled Lambda projects and pipelines as EventBridge (or a Glue trigger) does in AWS.

    rate(N minute[s] | hour[s] | day[s])    every N units from `anchor` (the deploy time)
    cron(minutes hours day-of-month month day-of-week year)

Cron fields as EventBridge reads them, all in UTC: numbers, `*`, lists `a,b`, ranges `a-b`,
steps `*/n` and `a-b/n`, month names JAN-DEC, day names SUN-SAT (1 = Sunday), `?` in one of the
two day fields; in day-of-month `L` (the last day), `nW` (the weekday nearest to day n, within the
month) and `LW`; in day-of-week `nL` (the month's last weekday n) and `n#k` (its k-th weekday n).
`parse_schedule` refuses what does not parse, naming the field.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from edl.errors import ConfigError

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\(([^()]+)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name: n for n, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}
_DAYS = {name: n for n, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (("minutes", 0, 59, {}), ("hours", 0, 23, {}), ("day-of-month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day-of-week", 1, 7, _DAYS), ("year", 1970, 2199, {}))
# How far ahead a cron expression is searched for its next time (a Feb 29 fits in).
_SEARCH_DAYS = 8 * 366


@dataclass(frozen=True)
class Rate:
    seconds: int

    def next_after(self, after: datetime, anchor: datetime) -> datetime:
        if after < anchor:
            return anchor
        periods = int((after - anchor).total_seconds() // self.seconds) + 1
        return anchor + timedelta(seconds=periods * self.seconds)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    day_of_month: str      # the field's text ("?" when day-of-week decides)
    day_of_week: str

    def next_after(self, after: datetime, anchor: datetime | None = None) -> datetime | None:
        """The first time strictly after `after` (UTC, to the minute); None if there is none in
        the next eight years."""
        start = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if day.year in self.years and day.month in self.months and self._day_matches(day):
                first_hour = start.hour if day == start.date() else 0
                for hour in sorted(h for h in self.hours if h >= first_hour):
                    first_minute = start.minute if (day, hour) == (start.date(), start.hour) \
                        else 0
                    minutes = [m for m in sorted(self.minutes) if m >= first_minute]
                    if minutes:
                        return datetime(day.year, day.month, day.day, hour, minutes[0],
                                        tzinfo=UTC)
            day += timedelta(days=1)
        return None

    def _day_matches(self, day: date) -> bool:
        if self.day_of_month != "?":
            return _day_of_month_matches(self.day_of_month, day)
        return _day_of_week_matches(self.day_of_week, day)


def parse_schedule(expression: str, where: str = "schedule") -> Rate | Cron:
    """A schedule expression, parsed; `ConfigError` naming the part that is wrong."""
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        count = int(rate.group(1))
        if count < 1:
            raise ConfigError(f"{where}: {text}: a rate is at least 1")
        return Rate(count * _UNIT_SECONDS[rate.group(2).rstrip("s")])
    cron = _CRON.match(text)
    if not cron:
        raise ConfigError(f"{where}: {expression!r} does not parse as a schedule",
                          hint='cron(minutes hours day-of-month month day-of-week year), e.g. '
                          '"cron(0 6 * * ? *)", or "rate(1 hour)"')
    fields = cron.group(1).upper().split()
    if len(fields) != 6:
        raise ConfigError(f"{where}: {expression!r} needs six cron fields, found "
                          f"{len(fields)}", hint='e.g. "cron(0 6 * * ? *)": minutes hours '
                          "day-of-month month day-of-week year")
    dom, dow = fields[2], fields[4]
    if (dom == "?") == (dow == "?"):
        raise ConfigError(f"{where}: {expression!r}: exactly one of day-of-month and "
                          "day-of-week must be ?", hint='e.g. "cron(0 6 * * ? *)"')
    at = f"{where}: {expression!r}"
    if dom != "?":
        _check_day_of_month(dom, at)
    if dow != "?":
        _check_day_of_week(dow, at)
    return Cron(minutes=_values(fields[0], _FIELDS[0], at),
                hours=_values(fields[1], _FIELDS[1], at),
                months=_values(fields[3], _FIELDS[3], at),
                years=_values(fields[5], _FIELDS[5], at),
                day_of_month=dom, day_of_week=dow)


def next_fire(expression: str, after: datetime, anchor: datetime) -> datetime | None:
    """The first time `expression` fires strictly after `after`; a rate counts from `anchor`."""
    return parse_schedule(expression).next_after(after, anchor)


# -- the fields -----------------------------------------------------------------------------------

def _values(text: str, spec: tuple, where: str) -> frozenset[int]:
    """The numbers a plain field (minutes, hours, month, year, or a day field without L/W/#)
    stands for."""
    name, low, high, _ = spec
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        if (step_text and not step_text.isdigit()) or step_text == "0":
            raise ConfigError(f"{where}: {name} step {part!r} is not a positive number")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first, last = _number(first_text, spec, where), _number(last_text, spec, where)
        else:
            first = _number(base, spec, where)
            last = high if step_text else first
        if first > last:
            raise ConfigError(f"{where}: {name} range {base!r} runs backwards")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _number(text: str, spec: tuple, where: str) -> int:
    name, low, high, names = spec
    value = names.get(text) if text in names else int(text) if text.isdigit() else None
    if value is None or not low <= value <= high:
        raise ConfigError(f"{where}: {name} value {text!r} is not in {low}-{high}"
                          + (f" or {min(names)}…" if names else ""))
    return value


def _check_day_of_month(text: str, where: str) -> None:
    if text in ("L", "LW") or (re.fullmatch(r"\d{1,2}W", text) and 1 <= int(text[:-1]) <= 31):
        return
    _values(text, _FIELDS[2], where)


def _check_day_of_week(text: str, where: str) -> None:
    special = re.fullmatch(r"([A-Z]{3}|\d)(L|#[1-5])", text)
    if special:
        _number(special.group(1), _FIELDS[4], where)
        return
    if text == "L":
        return
    _values(text, _FIELDS[4], where)


def _weekday(day: date) -> int:
    """EventBridge's day number: 1 = Sunday … 7 = Saturday."""
    return (day.weekday() + 1) % 7 + 1


def _day_of_month_matches(text: str, day: date) -> bool:
    last = calendar.monthrange(day.year, day.month)[1]
    if text == "L":
        return day.day == last
    if text.endswith("W"):
        target = last if text == "LW" else min(int(text[:-1]), last)
        return day == _nearest_weekday(date(day.year, day.month, target))
    return day.day in _values(text, _FIELDS[2], "day-of-month")


def _nearest_weekday(day: date) -> date:
    """The Monday-to-Friday day nearest to `day` without leaving its month."""
    if day.weekday() == 5:   # Saturday: Friday before, or Monday after on the 1st
        return day - timedelta(days=1) if day.day > 1 else day + timedelta(days=2)
    if day.weekday() == 6:   # Sunday: Monday after, or Friday before on the last day
        last = calendar.monthrange(day.year, day.month)[1]
        return day + timedelta(days=1) if day.day < last else day - timedelta(days=2)
    return day


def _day_of_week_matches(text: str, day: date) -> bool:
    if text == "L":   # alone, L in day-of-week is Saturday (the week's last day)
        return _weekday(day) == 7
    special = re.fullmatch(r"([A-Z]{3}|\d)(L|#([1-5]))", text)
    if special:
        wanted = _number(special.group(1), _FIELDS[4], "day-of-week")
        if _weekday(day) != wanted:
            return False
        if special.group(2) == "L":
            return day.day + 7 > calendar.monthrange(day.year, day.month)[1]
        return (day.day - 1) // 7 + 1 == int(special.group(3))
    return _weekday(day) in _values(text, _FIELDS[4], "day-of-week")
