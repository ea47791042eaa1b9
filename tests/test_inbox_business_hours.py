"""Business hours: SLA deadlines and measured business time, across nights, weekends, holidays and DST."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tertulia.inbox.business_hours import Schedule, ScheduleError, business_seconds, deadline
from tertulia.inbox.models import default_business_hours

MADRID = Schedule.parse(hours=default_business_hours(), holidays=["2026-12-08"], zone="Europe/Madrid")


def madrid(*args) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(*args, tzinfo=ZoneInfo("Europe/Madrid"))


def test_inside_hours_the_target_is_plain_time():
    assert deadline(MADRID, madrid(2026, 12, 3, 10, 0), 60) == madrid(2026, 12, 3, 11, 0)


def test_the_clock_stops_at_night_and_on_weekends_and_holidays():
    # Thursday 17:30 + 1 h -> Friday 09:30
    assert deadline(MADRID, madrid(2026, 12, 3, 17, 30), 60) == madrid(2026, 12, 4, 9, 30)
    # Friday 17:00 + 2 h -> Monday 10:00
    assert deadline(MADRID, madrid(2026, 12, 4, 17, 0), 120) == madrid(2026, 12, 7, 10, 0)
    # Monday 17:30 + 1 h: Tuesday 8 December is a holiday -> Wednesday 09:30
    assert deadline(MADRID, madrid(2026, 12, 7, 17, 30), 60) == madrid(2026, 12, 9, 9, 30)
    # A message on Saturday night waits for Monday's opening.
    assert deadline(MADRID, madrid(2026, 12, 5, 23, 0), 30) == madrid(2026, 12, 7, 9, 30)


def test_business_seconds_counts_only_open_time():
    assert business_seconds(MADRID, madrid(2026, 12, 4, 17, 0), madrid(2026, 12, 7, 10, 0)) == 2 * 3600
    assert business_seconds(MADRID, madrid(2026, 12, 5, 10, 0), madrid(2026, 12, 6, 20, 0)) == 0
    assert business_seconds(MADRID, madrid(2026, 12, 7, 10, 0), madrid(2026, 12, 7, 9, 0)) == 0


def test_summer_time_changes_keep_the_opening_hours():
    # Sunday 29 March 2026 clocks go forward; Monday still opens at 09:00 local (07:00 UTC, not 08:00).
    assert deadline(MADRID, madrid(2026, 3, 27, 18, 0), 1) == datetime(2026, 3, 30, 7, 1, tzinfo=UTC)
    # Sunday 25 October 2026 clocks go back; Monday opens at 09:00 local = 08:00 UTC.
    assert deadline(MADRID, madrid(2026, 10, 23, 18, 0), 1) == datetime(2026, 10, 26, 8, 1, tzinfo=UTC)


def test_a_schedule_without_hours_never_closes_and_24_00_ends_a_day():
    always = Schedule.parse(hours={}, zone="UTC")
    start = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)
    assert deadline(always, start, 90) == start + timedelta(minutes=90)
    late = Schedule.parse(hours={"sat": [["20:00", "24:00"]]}, zone="UTC")
    assert deadline(late, start, 90) == datetime(2026, 12, 12, 20, 30, tzinfo=UTC)


@pytest.mark.parametrize("hours, field", [
    ({"monday": []}, "business_hours.monday"),
    ({"mon": [["9:00", "18:00"]]}, "business_hours.mon[0]"),
    ({"mon": [["18:00", "09:00"]]}, "business_hours.mon[0]"),
    ({"mon": [["09:00", "13:00"], ["12:00", "18:00"]]}, "business_hours.mon"),
    ({"mon": "09:00-18:00"}, "business_hours.mon"),
])
def test_invalid_schedules_name_the_field(hours, field):
    with pytest.raises(ScheduleError) as error:
        Schedule.parse(hours=hours, zone="UTC")
    assert error.value.field == field
    with pytest.raises(ScheduleError) as error:
        Schedule.parse(hours={}, holidays=["31-12-2026"], zone="UTC")
    assert error.value.field == "holidays[0]"


split = Schedule.parse(hours={"mon": [["09:00", "14:00"], ["16:00", "20:00"]], "tue": [["00:00", "24:00"]],
                              "thu": [["10:00", "11:30"]], "sat": [["10:00", "14:00"]]},
                       holidays=["2026-04-02"], zone="Europe/Madrid")


@settings(max_examples=300, deadline=None)
@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
       minutes=st.integers(min_value=0, max_value=60 * 24 * 20))
def test_the_deadline_is_exactly_the_target_of_business_time_later(start, minutes):
    for schedule in (MADRID, split):
        due = deadline(schedule, start, minutes)
        assert due >= start
        assert business_seconds(schedule, start, due) == minutes * 60
        # ... and no earlier moment would do: one minute before, less business time has passed.
        if minutes:
            assert business_seconds(schedule, start, due - timedelta(minutes=1)) < minutes * 60
