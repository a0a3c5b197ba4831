"""The console's history (``admin.history``): readings in, chart samples out, an hour kept."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from waitroom_proxy.admin.history import POINTS, History, Reading, derive, quantile
from waitroom_proxy.admin.sampler import eta_error_buckets
from waitroom_proxy.metrics import Metrics


def reading(t: float, admitted: int | None = 0, **kw: object) -> Reading:
    values: dict[str, object] = {"capacity": 10, "paused": False, "queue_length": 5,
                                 "active": 3, "promoted": 0, "admitted_total": admitted}  # fmt: skip
    values.update(kw)
    return Reading(t=t, **values)  # type: ignore[arg-type]


def test_the_first_sample_has_no_rates_and_later_ones_are_per_minute() -> None:
    first = derive(None, reading(100.0, admitted=40))
    assert first.admissions_per_minute is None and first.eta_error_seconds is None
    assert (first.queue_length, first.active, first.capacity) == (5, 3, 10)
    later = derive(reading(100.0, admitted=40), reading(110.0, admitted=45))
    assert later.admissions_per_minute == pytest.approx(30.0)  # 5 in 10 s


def test_a_counter_that_went_back_or_a_store_down_gives_no_rate() -> None:
    assert derive(reading(0, admitted=50), reading(10, admitted=3)).admissions_per_minute is None
    down = Reading(t=10, capacity=10, paused=False)
    sample = derive(reading(0), down)
    assert sample.queue_length is None and sample.active is None
    assert sample.admissions_per_minute is None
    back = derive(down, reading(20, admitted=7))
    assert back.admissions_per_minute is None, "no rate across the outage"


def buckets(*observed: float) -> tuple[tuple[float, float], ...]:
    """The histogram the proxy keeps, after ``observed`` ETA errors (cumulative counts)."""
    metrics = Metrics(CollectorRegistry())
    for value in observed:
        metrics.eta_error_seconds.labels("r").observe(value)
    return eta_error_buckets(metrics.registry).get("r", ())


def test_eta_error_is_the_median_of_the_admissions_in_the_interval() -> None:
    before = reading(0, eta_buckets=buckets(-700, -700, -700))
    # Two more admissions: 15 s and 25 s sooner than predicted (both in the 10-30 s bucket).
    now = reading(10, eta_buckets=buckets(-700, -700, -700, 15, 25))
    sample = derive(before, now)
    assert sample.eta_admissions == 2
    assert sample.eta_error_seconds == pytest.approx(20.0), "interpolated within 10-30 s"
    quiet = derive(now, reading(20, eta_buckets=now.eta_buckets))
    assert quiet.eta_error_seconds is None and quiet.eta_admissions == 0
    first = derive(None, now)
    assert first.eta_error_seconds is None, "no interval before the first reading"
    assert sample.as_dict()["eta_error_seconds"] == 20.0 and sample.as_dict()["t"] == 10
    reset = derive(now, reading(30, eta_buckets=buckets(5)))
    assert reset.eta_error_seconds is None, "a histogram that went back (a new process)"


@pytest.mark.parametrize(
    "observed, median",
    [
        ((-45.0,), -45.0),  # alone in -60..-30: the bucket's middle by interpolation
        ((-2000.0, -2000.0, -2000.0), -1800.0),  # the lowest bucket: its bound
        ((5000.0,), 1800.0),  # the +Inf bucket: the highest finite bound
        ((-5.0, -5.0, 5.0, 5.0, 5.0), 1.667),  # rank 2.5 of 5: a sixth into 0..10
    ],
)
def test_the_median_is_interpolated_as_histogram_quantile(
    observed: tuple[float, ...], median: float
) -> None:
    result = quantile(0.5, list(buckets(*observed)))
    assert result == pytest.approx(median, abs=1e-3)


def test_quantile_of_an_empty_histogram_is_unknown() -> None:
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(0.0, 0.0), (math.inf, 0.0)]) is None


def test_the_ring_keeps_the_last_points_in_order() -> None:
    history = History(points=4, interval=10)
    for i in range(7):
        history.record("r", reading(i * 10.0, admitted=i))
    samples = history.samples("r")
    assert [s.t for s in samples] == [30.0, 40.0, 50.0, 60.0]
    assert all(s.admissions_per_minute == pytest.approx(6.0) for s in samples)
    assert [s.t for s in history.samples("r", since=40.0)] == [50.0, 60.0]
    assert history.samples("r", since=60.0) == []
    assert history.samples("other") == []
    assert POINTS * 10 == 3600, "an hour at the default interval"


def test_a_reading_that_is_not_later_is_ignored() -> None:
    history = History(points=10, interval=1)
    history.record("r", reading(10.0, admitted=1))
    history.record("r", reading(10.0, admitted=99))
    history.record("r", reading(9.0, admitted=99))
    history.record("r", reading(11.0, admitted=2))
    assert [s.t for s in history.samples("r")] == [10.0, 11.0]
    assert history.samples("r")[-1].admissions_per_minute == pytest.approx(60.0)


def test_rooms_are_kept_apart() -> None:
    history = History(points=3, interval=1)
    history.extend("a", [reading(1, admitted=1), reading(2, admitted=2)])
    history.record("b", reading(1, queue_length=99))
    assert len(history.samples("a")) == 2 and history.samples("b")[0].queue_length == 99
    assert "points=3" in repr(history)


@pytest.mark.parametrize("points, interval", [(1, 10.0), (10, 0.0), (10, -1.0), (10, float("nan"))])
def test_a_history_refuses_nonsense(points: int, interval: float) -> None:
    with pytest.raises(ValueError):
        History(points=points, interval=interval)


def test_eta_error_buckets_read_the_histogram_of_each_room() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.eta_error_seconds.labels("a").observe(-20.0)
    metrics.eta_error_seconds.labels("b").observe(7.5)
    found = eta_error_buckets(metrics.registry)
    assert set(found) == {"a", "b"}
    assert found["a"][-1] == (math.inf, 1.0) and dict(found["a"])[-30.0] == 0.0
    assert dict(found["a"])[-10.0] == 1.0 and dict(found["b"])[10.0] == 1.0
    assert [b for b, _ in found["a"]] == sorted(b for b, _ in found["a"])
    assert eta_error_buckets(Metrics(CollectorRegistry()).registry) == {}
