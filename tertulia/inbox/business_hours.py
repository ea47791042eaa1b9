"""Business hours: when an SLA target falls due, and how much business time passed between two moments.

Pure functions over a weekly schedule in the store's time zone ({"mon": [["09:00", "18:00"]], ...}) and a
list of holidays (dates in the store's calendar). Intervals are wall-clock times, so a day that changes to
or from summer time keeps its opening hours; a schedule with no open hour at all counts every hour (a
store that never closes), so a target can always be met.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS_AHEAD = 3 * 366  # never look further for the end of a target


class ScheduleError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _clock(value: object, field: str) -> time:
    if not isinstance(value, str):
        raise ScheduleError(field, "A time is a string HH:MM.")
    try:
        hours, minutes = value.split(":")
        if len(hours) != 2 or len(minutes) != 2:
            raise ValueError
        if hours == "24" and minutes == "00":
            return time.max
        return time(int(hours), int(minutes))
    except ValueError:
        raise ScheduleError(field, f"'{value}' is not a time HH:MM (00:00 to 24:00).") from None


@dataclass(frozen=True, slots=True)
class Schedule:
    zone: ZoneInfo
    week: tuple[tuple[tuple[time, time], ...], ...]  # per weekday (Monday first), sorted, non-overlapping
    holidays: frozenset[date] = frozenset()

    @property
    def always_open(self) -> bool:
        return not any(self.week)

    @classmethod
    def parse(cls, *, hours: Mapping[str, object], holidays: Sequence[object] = (), zone: str = "UTC") -> "Schedule":
        """Validate and build; ScheduleError names the field at fault."""
        if not isinstance(hours, Mapping):
            raise ScheduleError("business_hours", "An object with a list of [start, end] pairs per weekday.")
        unknown = set(hours) - set(DAYS)
        if unknown:
            raise ScheduleError(f"business_hours.{sorted(unknown)[0]}", f"Weekdays are {', '.join(DAYS)}.")
        week = []
        for day in DAYS:
            pairs = hours.get(day) or []
            if not isinstance(pairs, list) or len(pairs) > 6:
                raise ScheduleError(f"business_hours.{day}", "A list of at most 6 [start, end] pairs.")
            intervals = []
            for index, pair in enumerate(pairs):
                field = f"business_hours.{day}[{index}]"
                if not isinstance(pair, list | tuple) or len(pair) != 2:
                    raise ScheduleError(field, "A pair [start, end].")
                start, end = _clock(pair[0], field), _clock(pair[1], field)
                if start >= end:
                    raise ScheduleError(field, "The start comes before the end.")
                intervals.append((start, end))
            intervals.sort()
            for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
                if start < end:
                    raise ScheduleError(f"business_hours.{day}", "The intervals overlap.")
            week.append(tuple(intervals))
        days = set()
        for index, value in enumerate(holidays or []):
            try:
                days.add(date.fromisoformat(str(value)))
            except ValueError:
                raise ScheduleError(f"holidays[{index}]", f"'{value}' is not a date YYYY-MM-DD.") from None
        return cls(zone=ZoneInfo(zone), week=tuple(week), holidays=frozenset(days))

    def open_intervals(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals (aware UTC) from the local day of `start` on, in order; unbounded when always open."""
        if self.always_open:
            yield start.astimezone(UTC), datetime.max.replace(tzinfo=UTC)
            return
        day = start.astimezone(self.zone).date()
        for _ in range(MAX_DAYS_AHEAD):
            if day not in self.holidays:
                for opens, closes in self.week[day.weekday()]:
                    begin = datetime.combine(day, opens, tzinfo=self.zone).astimezone(UTC)
                    if closes == time.max:
                        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone).astimezone(UTC)
                    else:
                        end = datetime.combine(day, closes, tzinfo=self.zone).astimezone(UTC)
                    if end > begin:
                        yield begin, end
            day += timedelta(days=1)


def deadline(schedule: Schedule, start: datetime, minutes: float) -> datetime:
    """The moment `minutes` of business time after `start` have passed."""
    left = timedelta(minutes=minutes)
    start = start.astimezone(UTC)
    if left <= timedelta(0):
        return start
    for begin, end in schedule.open_intervals(start):
        if end <= start:
            continue
        begin = max(begin, start)
        if end - begin >= left:
            return begin + left
        left -= end - begin
    # A schedule open for less than the target in three years (all holidays): count plain time instead.
    return start + timedelta(minutes=minutes)


def business_seconds(schedule: Schedule, start: datetime, end: datetime) -> int:
    """Business time between two moments, in whole seconds (0 when end is before start)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return 0
    total = timedelta(0)
    for begin, close in schedule.open_intervals(start):
        if begin >= end:
            break
        overlap = min(close, end) - max(begin, start)
        if overlap > timedelta(0):
            total += overlap
    return int(total.total_seconds())
