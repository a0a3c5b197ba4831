"""A scheduled room's lifecycle and the validation of its times (``domain.schedule``)."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waitroom_proxy.domain.schedule import (
    Phase,
    Schedule,
    ScheduleError,
    parse_schedule,
    parse_time,
    rfc3339,
    schedule_warnings,
    seconds_until,
)

T0 = datetime(2030, 6, 1, 10, 0, tzinfo=UTC)
SALE = Schedule(
    prequeue_at=T0 - timedelta(minutes=30),
    start_at=T0,
    end_at=T0 + timedelta(hours=2),
    shuffle_at_start=True,
)
ORDER = [Phase.IDLE, Phase.PREQUEUE, Phase.OPEN, Phase.ENDED]


def ts(dt: datetime) -> float:
    return dt.timestamp()


def test_phases_and_half_open_boundaries() -> None:
    pre, start, end = ts(SALE.prequeue_at or T0), ts(T0), ts(SALE.end_at or T0)
    assert SALE.phase(pre - 0.001) is Phase.IDLE
    assert SALE.phase(pre) is Phase.PREQUEUE  # a boundary belongs to the phase it opens
    assert SALE.phase(start - 0.001) is Phase.PREQUEUE
    assert SALE.phase(start) is Phase.OPEN
    assert SALE.phase(end - 0.001) is Phase.OPEN
    assert SALE.phase(end) is Phase.ENDED
    assert SALE.phase(end + 10 * 365 * 86400) is Phase.ENDED


def test_without_prequeue_idle_until_start_and_without_end_open_for_good() -> None:
    s = Schedule(start_at=T0)
    assert s.phase(ts(T0) - 1) is Phase.IDLE
    assert s.phase(ts(T0)) is Phase.OPEN
    assert s.phase(ts(T0) + 10**9) is Phase.OPEN
    only_end = Schedule(end_at=T0)
    assert only_end.phase(0) is Phase.OPEN
    assert only_end.phase(ts(T0)) is Phase.ENDED


def test_next_change_and_countdown() -> None:
    pre = ts(SALE.prequeue_at or T0)
    assert SALE.next_change(pre - 100) == (Phase.PREQUEUE, pre)
    assert SALE.next_change(pre) == (Phase.OPEN, ts(T0))
    assert SALE.next_change(ts(T0)) == (Phase.ENDED, ts(SALE.end_at or T0))
    assert SALE.next_change(ts(SALE.end_at or T0)) is None
    assert seconds_until(ts(T0), ts(T0) - 90.2) == 91
    assert seconds_until(ts(T0), ts(T0) + 5) == 0


def test_status_fields_per_phase() -> None:
    pre = ts(SALE.prequeue_at or T0)
    assert SALE.status_fields(pre - 1) == {
        "status": "idle",
        "opens_at": "2030-06-01T09:30:00Z",
        "starts_at": "2030-06-01T10:00:00Z",
    }
    assert SALE.status_fields(pre) == {"status": "prequeue", "starts_at": "2030-06-01T10:00:00Z"}
    assert SALE.status_fields(ts(T0)) == {"ends_at": "2030-06-01T12:00:00Z"}
    assert SALE.status_fields(ts(T0) + 7200) == {
        "status": "ended",
        "ended_at": "2030-06-01T12:00:00Z",
    }
    assert Schedule(start_at=T0).status_fields(ts(T0)) == {}
    assert Schedule(start_at=T0).status_fields(0)["opens_at"] == "2030-06-01T10:00:00Z"


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2030-06-01T10:00:00Z", "2030-06-01T10:00:00Z"),
        ("2030-06-01t10:00:00z", "2030-06-01T10:00:00Z"),
        ("2030-06-01 12:00:00+02:00", "2030-06-01T10:00:00Z"),
        ("2030-06-01T05:30:00-04:30", "2030-06-01T10:00:00Z"),
        ("2030-06-01T10:00:00.5Z", "2030-06-01T10:00:00.500000Z"),
        ("2030-06-01T10:00:00.123456789Z", "2030-06-01T10:00:00.123456Z"),
        ("  2030-06-01T10:00:00Z\n", "2030-06-01T10:00:00Z"),
    ],
)
def test_rfc3339_times_accepted(text: str, utc: str) -> None:
    assert rfc3339(parse_time(text)) == utc


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2030-06-01T10:00:00", "has no time zone"),
        ("2030-06-01", "is not an RFC 3339 time"),
        ("2030-06-01T10:00Z", "is not an RFC 3339 time"),  # seconds are required
        ("20300601T100000Z", "is not an RFC 3339 time"),  # ISO basic format is not RFC 3339
        ("2030-W22-6T10:00:00Z", "is not an RFC 3339 time"),
        ("2030-06-01T10:00:00+0200", "is not an RFC 3339 time"),
        ("2030-13-01T10:00:00Z", "is not a valid time"),
        ("2030-06-01T24:00:00Z", "is not a valid time"),
        ("2030-06-01T10:00:00+24:00", "is not a valid time"),
        ("2030-06-30T23:59:60Z", "leap second"),
        ("２０３０-06-01T10:00:00Z", "is not an RFC 3339 time"),  # full-width digits
        ("9999-12-31T23:59:59-23:59", "out of range"),
        ("tomorrow at ten", "is not an RFC 3339 time"),
        ("", "is not an RFC 3339 time"),
        (1_900_000_000, "expected a time as text, got int"),
        (None, "expected a time as text, got NoneType"),
        (datetime(2030, 6, 1, 10), "has no time zone"),
        (datetime(2030, 6, 1).date(), "is not a date and time"),
    ],
)
def test_bad_times_get_a_precise_message(value: object, says: str) -> None:
    with pytest.raises(ValueError, match=r"^schedule\.start_at: ") as err:
        parse_time(value, "schedule.start_at")
    assert says in str(err.value)


def test_toml_offset_datetimes_pass_and_local_ones_are_refused() -> None:
    good = tomllib.loads("start_at = 2030-06-01T12:00:00+02:00\nend_at = '2030-06-01T14:00:00Z'")
    s = parse_schedule(good)
    assert s.start_at == T0 and s.end_at == T0 + timedelta(hours=4)
    bad = tomllib.loads("prequeue_at = 2030-06-01T09:00:00\nstart_at = 2030-06-01")
    with pytest.raises(ScheduleError) as err:
        parse_schedule(bad)
    paths = [path for path, _ in err.value.problems]
    assert paths == ["schedule.prequeue_at", "schedule.start_at"]


def test_every_problem_is_reported_with_its_key_path() -> None:
    raw = {"startat": "2030-06-01T10:00:00Z", "end_at": "soon", "shuffle_at_start": "yes"}
    with pytest.raises(ScheduleError) as err:
        parse_schedule(raw, prefix="rooms.sale.schedule")
    assert [p for p, _ in err.value.problems] == [
        "rooms.sale.schedule.startat",
        "rooms.sale.schedule.end_at",
        "rooms.sale.schedule.shuffle_at_start",
    ]
    assert "unknown key (expected one of prequeue_at, start_at, end_at" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "path", "says"),
    [
        ({}, "schedule", "needs start_at, end_at or both"),
        ({"prequeue_at": "2030-06-01T09:00:00Z", "end_at": "2030-06-01T12:00:00Z"},
         "schedule.prequeue_at", "needs start_at"),
        ({"start_at": "2030-06-01T10:00:00Z", "shuffle_at_start": True},
         "schedule.shuffle_at_start", "needs prequeue_at"),
        ({"prequeue_at": "2030-06-01T10:00:00Z", "start_at": "2030-06-01T10:00:00Z"},
         "schedule.prequeue_at", "must be before start_at"),
        ({"start_at": "2030-06-01T12:00:00+02:00", "end_at": "2030-06-01T10:00:00Z"},
         "schedule.end_at", "must be after start_at"),
        ({"start_at": "2030-06-01T10:00:00Z", "end_at": "2030-06-01T09:59:59Z"},
         "schedule.end_at", "must be after start_at"),
    ],
)  # fmt: skip
def test_presence_and_ordering_rules(raw: dict[str, object], path: str, says: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule(raw)
    assert len(err.value.problems) == 1
    got_path, message = err.value.problems[0]
    assert got_path == path and says in message


def test_not_a_table() -> None:
    with pytest.raises(ScheduleError, match="schedule: must be a table"):
        parse_schedule("2030-06-01T10:00:00Z")


def test_the_model_checks_itself_too() -> None:
    with pytest.raises(ScheduleError, match="has no time zone"):
        Schedule(start_at=datetime(2030, 1, 1))
    with pytest.raises(ScheduleError, match="must be after start_at"):
        Schedule(start_at=T0, end_at=T0)


def test_round_trip_through_json() -> None:
    assert parse_schedule(SALE.as_dict()) == SALE


def test_warnings() -> None:
    assert schedule_warnings(SALE, ts(T0) - 3600) == []
    assert "the room is open" in schedule_warnings(SALE, ts(T0))[0]
    assert "the room is ended" in schedule_warnings(SALE, ts(T0) + 86400)[0]
    long = Schedule(prequeue_at=T0 - timedelta(days=8), start_at=T0)
    assert schedule_warnings(long, 0) == ["schedule: the pre-queue lasts more than 7 days"]


instants = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=45)), timezone(-timedelta(hours=11))]),
)  # fmt: skip


@given(st.lists(instants, min_size=3, max_size=3, unique_by=lambda d: d.timestamp()),
       st.lists(st.floats(946_684_800, 4_102_444_800), min_size=2, max_size=20))  # fmt: skip
def test_one_phase_at_a_time_and_never_backwards(times: list[datetime], nows: list[float]) -> None:
    pre, start, end = sorted(times, key=lambda d: d.timestamp())
    schedule = Schedule(prequeue_at=pre, start_at=start, end_at=end, shuffle_at_start=True)
    phases = [schedule.phase(now) for now in sorted(nows)]
    ranks = [ORDER.index(p) for p in phases]
    assert ranks == sorted(ranks)
    for now in nows:
        change = schedule.next_change(now)
        if change is not None:
            phase, at = change
            assert at > now and schedule.phase(at) is phase
            assert ORDER.index(phase) > ORDER.index(schedule.phase(now))


@given(instants)
def test_rfc3339_round_trips(dt: datetime) -> None:
    assert parse_time(rfc3339(dt)) == dt


def test_store_args_let_the_store_decide_with_its_own_clock() -> None:
    start = 1_906_538_400_000  # 2030-06-01T10:00:00Z
    assert SALE.store_args() == (start - 1_800_000, start, start + 7_200_000)
    assert Schedule(end_at=T0).store_args() == (0, 0, start)
    # A replica 90 s fast must not open early: the phase follows whatever clock it is given.
    store_now = ts(T0) - 30
    assert SALE.phase(store_now) is Phase.PREQUEUE and SALE.phase(store_now + 90) is Phase.OPEN
