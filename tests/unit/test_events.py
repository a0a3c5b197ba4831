"""Domain events: factory, subjects, CloudEvents form; the log and memory publishers."""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import datetime

import pytest

from waitroom_proxy.adapters.log_events import LogPublisher, MemoryPublisher
from waitroom_proxy.domain import events as ev
from waitroom_proxy.ports import EventPublisher

NOW = 1_735_689_600.123  # 2025-01-01T00:00:00.123Z


def test_event_types_are_the_documented_ones() -> None:
    assert set(ev.EVENT_TYPES) == {
        "position.enqueued",
        "position.admitted",
        "position.expired",
        "position.left",
        "session.started",
        "session.renewed",
        "session.ended",
        "session.revoked",
        "queue.paused",
        "queue.resumed",
        "queue.config_changed",
        "queue.prequeue_opened",
        "queue.shuffled",
        "queue.ended",
        "system.replica_started",
        "system.replica_stopped",
        "system.store_down",
        "system.store_up",
        "system.fail_open_engaged",
    }
    assert all(t.startswith("system.") for t in ev.SYSTEM_EVENT_TYPES)
    assert not any(t.startswith("system.") for t in ev.ROOM_EVENT_TYPES)


def test_new_event_copies_data_and_keeps_time() -> None:
    data = {"place": "p1"}
    e = ev.new_event(ev.POSITION_ENQUEUED, "shop", data, NOW)
    data["place"] = "changed"
    assert e.type == "position.enqueued"
    assert e.room == "shop"
    assert e.data == {"place": "p1"}
    assert e.time == NOW
    assert ev.new_event(ev.QUEUE_PAUSED, "shop", None, NOW).data == {}
    assert ev.new_event(ev.QUEUE_PAUSED, "shop", None, NOW, id="fixed").id == "fixed"


def test_ids_are_unique_time_ordered_uuid7() -> None:
    ids = [ev.new_event(ev.SESSION_STARTED, "shop", {}, NOW + i * 0.002).id for i in range(2000)]
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert ids == sorted(ids)  # later milliseconds sort later
    assert int(parsed[0].hex[:12], 16) == int(NOW * 1000)
    same_ms = {ev.new_event(ev.SESSION_STARTED, "shop", {}, NOW).id for _ in range(1000)}
    assert len(same_ms) == 1000


def test_uuid7_is_deterministic_with_given_randomness() -> None:
    a = ev.uuid7(NOW, rand=b"\x00" * 10)
    assert a == ev.uuid7(NOW, rand=b"\x00" * 10)
    assert a != ev.uuid7(NOW, rand=b"\x01" * 10)


@pytest.mark.parametrize(
    ("type_", "room"),
    [
        ("position.teleported", "shop"),  # unknown type
        (ev.POSITION_ENQUEUED, None),  # room event without room
        (ev.POSITION_ENQUEUED, "a.b"),  # would break the subject
        (ev.POSITION_ENQUEUED, "*"),
        (ev.POSITION_ENQUEUED, ">"),
        (ev.POSITION_ENQUEUED, "Shop"),
        (ev.POSITION_ENQUEUED, ""),
        (ev.POSITION_ENQUEUED, "x" * 65),
        (ev.SYSTEM_STORE_DOWN, "shop"),  # system event with room
    ],
)
def test_new_event_refuses_bad_type_or_room(type_: str, room: str | None) -> None:
    with pytest.raises(ValueError):
        ev.new_event(type_, room, {}, NOW)


def test_subjects() -> None:
    assert (
        ev.subject_for(ev.new_event(ev.POSITION_ENQUEUED, "shop", {}, NOW))
        == "waitroom.shop.position.enqueued"
    )
    assert (
        ev.subject_for(ev.new_event(ev.QUEUE_CONFIG_CHANGED, "a_b-1", {}, NOW))
        == "waitroom.a_b-1.queue.config_changed"
    )
    assert (
        ev.subject_for(ev.new_event(ev.SYSTEM_FAIL_OPEN_ENGAGED, None, {}, NOW))
        == "waitroom.system.fail_open_engaged"
    )
    token = re.compile(r"^[A-Za-z0-9_-]+$")
    for t in ev.ROOM_EVENT_TYPES:
        parts = ev.subject_for(ev.new_event(t, "system", {}, NOW)).split(".")
        assert len(parts) == 4 and all(token.match(p) for p in parts)
    for t in ev.SYSTEM_EVENT_TYPES:
        parts = ev.subject_for(ev.new_event(t, None, {}, NOW)).split(".")
        assert len(parts) == 3 and all(token.match(p) for p in parts)


def test_cloudevent_fields() -> None:
    e = ev.new_event(ev.POSITION_ADMITTED, "shop", {"place": "p1", "waited_s": 12.5}, NOW)
    ce = ev.to_cloudevent(e, "waitroom-proxy/replica-a")
    assert ce == {
        "specversion": "1.0",
        "id": e.id,
        "type": "io.waitroom.position.admitted",
        "source": "waitroom-proxy/replica-a",
        "time": "2025-01-01T00:00:00.123Z",
        "subject": "shop",
        "datacontenttype": "application/json",
        "data": {"place": "p1", "waited_s": 12.5},
    }
    assert datetime.fromisoformat(ce["time"]).timestamp() == pytest.approx(NOW, abs=1e-3)
    assert ev.event_type_of(ce["type"]) == "position.admitted"


def test_system_cloudevent_has_no_subject() -> None:
    ce = ev.to_cloudevent(ev.new_event(ev.SYSTEM_STORE_DOWN, None, {}, NOW), "src")
    assert "subject" not in ce
    assert ce["type"] == "io.waitroom.system.store_down"


def test_encode_cloudevent_is_compact_json_and_tolerates_odd_values() -> None:
    e = ev.new_event(
        ev.SESSION_ENDED, "shop", {"reason": "idle", "when": datetime(2025, 1, 1)}, NOW
    )
    raw = ev.encode_cloudevent(e, "src")
    assert b": " not in raw
    doc = json.loads(raw)
    assert doc["data"] == {"reason": "idle", "when": "2025-01-01 00:00:00"}
    assert doc == json.loads(json.dumps(ev.to_cloudevent(e, "src"), default=str))


# -- log and memory publishers -------------------------------------------------------------


async def test_memory_publisher_records_events() -> None:
    pub = MemoryPublisher()
    assert isinstance(pub, EventPublisher)
    await pub.start()
    a = ev.new_event(ev.POSITION_ENQUEUED, "shop", {}, NOW)
    b = ev.new_event(ev.SYSTEM_STORE_UP, None, {}, NOW)
    pub.publish(a)
    pub.publish(b)
    assert pub.events == [a, b]
    assert pub.types() == ["position.enqueued", "system.store_up"]
    assert pub.of_type(ev.SYSTEM_STORE_UP) == [b]
    assert (pub.published, pub.dropped, pub.retries, pub.buffered, pub.connected) == (
        2,
        0,
        0,
        0,
        True,
    )
    assert pub.counters()["published"] == 2
    pub.clear()
    assert pub.events == []
    await pub.close()
    assert pub.closed


async def test_log_publisher_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    pub = LogPublisher(source="waitroom-proxy/test")
    assert isinstance(pub, EventPublisher)
    await pub.start()
    e = ev.new_event(ev.SESSION_STARTED, "shop", {"place": "p1"}, NOW)
    with caplog.at_level(logging.DEBUG, logger="waitroom_proxy.events"):
        pub.publish(e)
    (rec,) = [r for r in caplog.records if r.name == "waitroom_proxy.events"]
    assert rec.levelno == logging.DEBUG
    msg = rec.getMessage()
    assert "waitroom.shop.session.started" in msg
    assert json.loads(msg.split(" ", 1)[1])["id"] == e.id
    with caplog.at_level(logging.INFO, logger="waitroom_proxy.events"):
        pub.publish(e)  # not logged at INFO, still counted
    assert pub.published == 2 and pub.dropped == 0 and pub.buffered == 0
    assert pub.counters() == {
        "published": 2,
        "dropped": 0,
        "retries": 0,
        "buffered": 0,
        "connected": 1.0,
    }
    await pub.close()


def test_log_publisher_never_raises_on_unencodable_data(caplog: pytest.LogCaptureFixture) -> None:
    pub = LogPublisher()
    loop: dict[str, object] = {}
    loop["self"] = loop
    e = ev.new_event(ev.SESSION_STARTED, "shop", loop, NOW)
    with caplog.at_level(logging.DEBUG, logger="waitroom_proxy.events"):
        pub.publish(e)
    assert pub.dropped == 1 and pub.published == 0
