"""Prometheus metrics, all declared here on an injected registry.

Labels are bounded: room, outcome, status class, store operation — never a visitor id.
Tests and host apps pass their own ``CollectorRegistry`` so nothing collides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

OUTCOMES = ("passed", "queued", "bypassed", "rejected", "failed_open", "failed_closed")

_WAIT_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, float("inf"))
_ETA_ERR_BUCKETS = (
    -1800, -600, -300, -120, -60, -30, -10, 0, 10, 30, 60, 120, 300, 600, 1800, float("inf"),
)  # fmt: skip


class Metrics:
    """Every metric of one process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.queue_length = Gauge(
            "waitroom_queue_length", "Visitors waiting in the queue.", ["room"], registry=r
        )
        self.active_sessions = Gauge(
            "waitroom_active_sessions", "Active sessions (store view).", ["room"], registry=r
        )
        self.promoted = Gauge(
            "waitroom_promoted", "Promoted visitors not yet claimed.", ["room"], registry=r
        )
        self.admissions = Counter(
            "waitroom_admissions",
            "Admissions by this replica (direct at arrival, and promotions by its controller).",
            ["room"],
            registry=r,
        )
        self.abandoned = Counter(
            "waitroom_abandoned", "Waiters who stopped heart-beating.", ["room"], registry=r
        )
        self.no_shows = Counter(
            "waitroom_no_shows", "Promotions never claimed.", ["room"], registry=r
        )
        self.sessions_ended = Counter(
            "waitroom_sessions_ended", "Sessions ended, by reason.", ["room", "reason"], registry=r
        )
        self.store_losses = Counter(
            "waitroom_store_losses",
            "Losses of a room's state in the store this replica detected, once per episode: "
            "kind marker (the incarnation marker vanished or changed) or sessions (sessions "
            "or ends lost while the marker stayed).",
            ["room", "kind"],
            registry=r,
        )
        self.sessions_recounted = Counter(
            "waitroom_sessions_recounted",
            "Sessions the store had lost, counted again from their tokens (readded), and ends "
            "it had lost, applied again (dropped).",
            ["room", "change"],
            registry=r,
        )
        self.wait_seconds = Histogram(
            "waitroom_wait_seconds",
            "Time from joining the queue to admission.",
            ["room"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.eta_error_seconds = Histogram(
            "waitroom_eta_error_seconds",
            "Predicted minus actual waiting time (p50 prediction at enqueue).",
            ["room"],
            buckets=_ETA_ERR_BUCKETS,
            registry=r,
        )
        self.store_seconds = Histogram(
            "waitroom_store_operation_seconds",
            "Store operation latency.",
            ["op"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.store_errors = Counter(
            "waitroom_store_errors", "Failed store operations.", ["op"], registry=r
        )
        self.store_up = Gauge(
            "waitroom_store_up",
            "1 when the store answers for every room, 0 while it is down for any of them.",
            registry=r,
        )
        self.room_store_up = Gauge(
            "waitroom_room_store_up",
            "1 when the store answers for the room (its shard), 0 while its breaker is open.",
            ["room"],
            registry=r,
        )
        self.fail_open = Gauge(
            "waitroom_fail_open", "1 while the room lets newcomers pass unchecked.", ["room"],
            registry=r,
        )  # fmt: skip
        self.paused = Gauge(
            "waitroom_paused", "1 while admissions are paused.", ["room"], registry=r
        )
        self.capacity = Gauge(
            "waitroom_capacity",
            "Configured capacity (with runtime overrides).",
            ["room"],
            registry=r,
        )
        # The two counters bumped on every proxied request are plain integers, exported at
        # scrape time: prometheus_client's Counter.inc takes a lock, twice per request.
        self._requests: dict[tuple[str, str], int] = {}
        self._upstream = [0] * 6
        r.register(_HotCounters(self._requests, self._upstream))
        self.store_up.set(1)

    def request(self, room: str, outcome: str) -> None:
        """Count one request (``waitroom_requests_total{room, outcome}``)."""
        key = (room, outcome)
        self._requests[key] = self._requests.get(key, 0) + 1

    def upstream_response(self, status: int) -> None:
        """Count one origin response (``waitroom_upstream_responses_total{status_class}``)."""
        cls = status // 100
        self._upstream[cls if 1 <= cls <= 5 else 0] += 1

    def request_count(self, room: str, outcome: str) -> int:
        return self._requests.get((room, outcome), 0)

    def watch_publisher(self, counters: Callable[[], dict[str, float]]) -> None:
        """Expose an event publisher's counters (published, dropped, retries, buffered)."""
        self.registry.register(_PublisherCollector(counters))


class _HotCounters(Collector):
    """Exports the per-request counters kept as plain integers."""

    _CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")

    def __init__(self, requests: dict[tuple[str, str], int], upstream: list[int]) -> None:
        self._requests = requests
        self._upstream = upstream

    def collect(self) -> Iterable[CounterMetricFamily]:
        req = CounterMetricFamily(
            "waitroom_requests", "Requests by room and outcome.", labels=["room", "outcome"]
        )
        for (room, outcome), n in list(self._requests.items()):
            req.add_metric([room, outcome], n)
        yield req
        up = CounterMetricFamily(
            "waitroom_upstream_responses",
            "Responses from the origin by status class.",
            labels=["status_class"],
        )
        for cls, n in zip(self._CLASSES, self._upstream, strict=True):
            if n or cls in ("2xx", "5xx"):
                up.add_metric([cls], n)
        yield up


class _PublisherCollector(Collector):
    def __init__(self, counters: Callable[[], dict[str, float]]) -> None:
        self._counters = counters

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        c = self._counters()
        yield CounterMetricFamily(
            "waitroom_events_published", "Events accepted by the bus.", value=c.get("published", 0)
        )
        yield CounterMetricFamily(
            "waitroom_events_dropped",
            "Events dropped (buffer full or retries exhausted).",
            value=c.get("dropped", 0),
        )
        yield CounterMetricFamily(
            "waitroom_events_retries", "Publish retries.", value=c.get("retries", 0)
        )
        yield GaugeMetricFamily(
            "waitroom_events_buffered",
            "Events waiting to be published.",
            value=c.get("buffered", 0),
        )
        yield GaugeMetricFamily(
            "waitroom_events_stream_config_mismatch",
            "Event streams found with a configuration other than the proxy's (used as they "
            "are; the log names what differs).",
            value=c.get("stream_mismatches", 0),
        )
