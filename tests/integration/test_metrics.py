"""Prometheus metrics end to end, and the example alerts and Grafana dashboard kept in step.

A scripted journey through a real proxy (2 visitors, capacity 1: one passes, one queues, then is
admitted) and the values ``/metrics`` on the admin listener reports afterwards, against the
in-process store and a real Redis server. Then every metric name used by
``examples/prometheus-alerts.yml`` and ``examples/grafana-dashboard.json`` must exist in a live
``/metrics``, so renaming a metric without updating them fails here.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.fixtures.asgi_server import serve_asgi
from tests.integration.admin_helpers import (
    AUTH,
    Env,
    client,
    eventually,
    heartbeat_admitted,
    status_of,
)
from waitroom_proxy.admin import metrics_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALERTS = EXAMPLES / "prometheus-alerts.yml"
DASHBOARD = EXAMPLES / "grafana-dashboard.json"

ALLOWED_LABELS = {"room", "outcome", "status_class", "op", "reason", "le"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(parsed: dict[Any, float], name: str, **labels: str) -> float | None:
    return parsed.get((name, frozenset(labels.items())))


def exposed_names(text: str) -> set[str]:
    """Every series name a PromQL query may use against this exposition."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


async def journey(env: Env) -> tuple[str, dict[str, str]]:
    """Two visitors, capacity 1; returns the admin's /metrics text and the visitors' place ids."""
    room = env.room
    async with client(env.a.url) as a, client(env.a.url) as b:
        assert (await status_of(a, "/page"))["status"] == "passed"
        assert (await status_of(b, "/page"))["status"] == "waiting"
        assert (await a.post("/_waitroom/leave")).json()["status"] == "left"
        await eventually(lambda: heartbeat_admitted(b), 3.0, "B admitted after A left")
        assert (await status_of(b, "/page"))["status"] == "passed"
        ids = {"b_session": b.cookies["waitroom_session"]}
    async with client(env.a.admin, headers=AUTH) as adm:

        async def settled() -> str | None:
            r = await adm.get("/metrics")
            assert r.status_code == 200
            parsed = samples(r.text)
            queue = value(parsed, "waitroom_queue_length", room=room)
            active = value(parsed, "waitroom_active_sessions", room=room)
            return r.text if (queue, active) == (0.0, 1.0) else None

        text: str = await eventually(settled, 3.0, "gauges updated by the controller")
        r = await adm.get("/metrics")
        assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    return text, ids


async def test_metrics_after_a_journey(make_env: Any) -> None:
    async with make_env(capacity=1, admit_rate=60) as env:
        text, ids = await journey(env)
    room = env.room
    m = samples(text)
    assert value(m, "waitroom_requests_total", room=room, outcome="passed") == 2
    assert value(m, "waitroom_requests_total", room=room, outcome="queued") == 1
    assert value(m, "waitroom_queue_length", room=room) == 0
    assert value(m, "waitroom_active_sessions", room=room) == 1
    assert value(m, "waitroom_promoted", room=room) == 0
    assert value(m, "waitroom_admissions_total", room=room) == 2, "A at once, B by the controller"
    assert value(m, "waitroom_wait_seconds_count", room=room) == 1
    assert value(m, "waitroom_eta_error_seconds_count", room=room) == 1
    assert value(m, "waitroom_store_up") == 1
    assert value(m, "waitroom_paused", room=room) == 0
    assert value(m, "waitroom_upstream_responses_total", status_class="2xx") == 2
    assert (value(m, "waitroom_events_published_total") or 0) >= 5
    assert value(m, "waitroom_events_dropped_total") == 0
    assert (value(m, "waitroom_store_operation_seconds_count", op="arrive") or 0) >= 2
    # Bounded labels only: never a visitor id or token.
    for (_, labels), _v in m.items():
        assert {k for k, _ in labels} <= ALLOWED_LABELS, labels
    assert ids["b_session"] not in text


async def test_metrics_app_mounts_in_a_host_app() -> None:
    registry = CollectorRegistry()
    Counter("host_things", "Things.", registry=registry).inc(3)
    host = Starlette(routes=[Mount("/metrics", metrics_app(registry))])
    async with serve_asgi(host) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.get("/metrics/")
        assert r.status_code == 200 and r.headers["content-type"] == CONTENT_TYPE_LATEST
        assert value(samples(r.text), "host_things_total") == 3
        r = await c.post("/metrics/")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


# ---------------------------------------------------------------------------- examples
def alert_rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    assert isinstance(doc, dict) and set(doc) == {"groups"}
    rules: dict[str, dict[str, Any]] = {}
    for group in doc["groups"]:
        assert group["name"] and isinstance(group["rules"], list) and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            rules[rule["alert"]] = rule
    return rules


def test_alerts_file_structure() -> None:
    rules = alert_rules()
    assert {"WaitroomStoreDown", "WaitroomFailOpen", "WaitroomQueueGrowing",
            "WaitroomUpstream5xx"} <= set(rules)  # fmt: skip
    down = rules["WaitroomStoreDown"]
    assert down["expr"].strip() == "waitroom_store_up == 0" and down["for"] == "1m"
    assert rules["WaitroomFailOpen"]["expr"].strip() == "waitroom_fail_open == 1"
    growing = rules["WaitroomQueueGrowing"]
    assert "deriv(waitroom_queue_length[10m]) > 0" in growing["expr"]
    assert "waitroom_queue_length > 1000" in growing["expr"] and growing["for"] == "15m"
    upstream = " ".join(rules["WaitroomUpstream5xx"]["expr"].split())
    assert 'waitroom_upstream_responses_total{status_class="5xx"}' in upstream
    assert upstream.endswith("> 0.05")


def dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    queries = [t["expr"] for p in panels for t in p["targets"]]
    assert all(p["targets"] for p in panels)
    titles = " | ".join(p["title"].lower() for p in panels)
    for wanted in ("queue length", "active sessions vs capacity", "admissions per minute",
                   "eta error", "request outcomes", "upstream 5xx", "store up", "events dropped"):  # fmt: skip
        assert wanted in titles, wanted
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            queries.append(var["definition"])
    return queries


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bwaitroom_[a-z0-9_]+\b", expr))


@pytest.mark.parametrize("store_kind", ["memory"], indirect=True)
async def test_alerts_and_dashboard_use_only_exposed_metrics(make_env: Any) -> None:
    used: dict[str, set[str]] = {}
    for name, rule in alert_rules().items():
        used[f"alert {name}"] = metric_names_in(rule["expr"])
    for i, q in enumerate(dashboard_queries()):
        used[f"dashboard query {i}: {q}"] = metric_names_in(q)
    assert all(used.values()), [k for k, v in used.items() if not v]
    async with make_env(capacity=1, admit_rate=60) as env:
        text, _ = await journey(env)
    exposed = exposed_names(text)
    missing = {k: sorted(v - exposed) for k, v in used.items() if v - exposed}
    assert not missing, missing
    await asyncio.sleep(0)
