"""The Helm chart's checks and monitoring: the ``helm test`` hook, and the Prometheus Operator
resources (no schema in kubernetes-validate, so checked by hand here)."""

from __future__ import annotations

import re

import pytest

from tests.helm.chart import (
    CI_NAMES,
    FULLNAME,
    NAMESPACE,
    _docs,
    _env,
    _one,
    _proxy_container,
    _values,
)

# --- helm test hook ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CI_NAMES)
def test_helm_test_hook_checks_readyz_through_the_service(helm: str, name: str) -> None:
    docs = _docs(helm, name)
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    command = pod["spec"]["containers"][0]["command"]
    assert command[0] in {"wget", "curl"}
    service = _one(docs, "Service")
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    assert command[-1] == f"http://{service['metadata']['name']}:{port}/_waitroom/readyz"


# --- Prometheus Operator resources (no schema in kubernetes-validate) --------------------------


def _balanced(expr: str) -> bool:
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"[^"]*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


@pytest.mark.parametrize("name", CI_NAMES)
def test_service_monitor(helm: str, name: str) -> None:
    docs = _docs(helm, name)
    values = _values(name)
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    if not values.get("metrics", {}).get("serviceMonitor", {}).get("enabled"):
        assert not monitors
        return
    (monitor,) = monitors
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == FULLNAME
    for key, value in values["metrics"]["serviceMonitor"].get("labels", {}).items():
        assert monitor["metadata"]["labels"][key] == value
    service = _one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["port"] == "admin"
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
    token = endpoint["bearerTokenSecret"]
    env = _env(_proxy_container(docs))
    admin_ref = env["WAITROOM_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    # Prometheus presents the same token the proxy expects.
    assert (token["name"], token["key"]) == (admin_ref["name"], admin_ref["key"])
    chart_secrets = [d for d in docs if d["kind"] == "Secret"]
    if chart_secrets:
        assert token["key"] in chart_secrets[0]["data"]
    # Only the selected Service exposes the admin port.
    selected = [
        d
        for d in docs
        if d["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
    ]
    assert selected == [service]


@pytest.mark.parametrize("name", CI_NAMES)
def test_prometheus_rule(helm: str, name: str) -> None:
    docs = _docs(helm, name)
    values = _values(name)
    rules_docs = [d for d in docs if d["kind"] == "PrometheusRule"]
    if not values.get("metrics", {}).get("prometheusRule", {}).get("enabled"):
        assert not rules_docs
        return
    (rule,) = rules_docs
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == FULLNAME
    groups = rule["spec"]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}
    expected_metric = {
        "WaitroomStoreDown": "waitroom_store_up",
        "WaitroomFailOpen": "waitroom_fail_open",
        "WaitroomQueueGrowing": "waitroom_queue_length",
        "WaitroomUpstream5xx": 'waitroom_upstream_responses_total{namespace="shop", job="wr-waitroom-proxy", status_class="5xx"}',
        "WaitroomFailedOpenRequests": 'outcome="failed_open"',
    }
    assert set(expected_metric) <= set(alerts)
    extra = values["metrics"]["prometheusRule"].get("additionalAlertLabels", {})
    for alert, r in alerts.items():
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert isinstance(r["expr"], str) and _balanced(r["expr"]), alert
        assert re.fullmatch(r"\d+[smh]", r["for"]), alert
        assert r["labels"]["severity"] in {"critical", "warning", "info"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        assert extra.items() <= r["labels"].items()
        # Metric names follow the waitroom_ prefix and are scoped to this release.
        for metric in re.findall(r"\b(waitroom_[a-z_]+)\{", r["expr"]):
            assert metric.startswith("waitroom_")
        assert f'job="{FULLNAME}"' in r["expr"]
        assert "{{ $labels" not in r["expr"]
    for alert, fragment in expected_metric.items():
        assert fragment in alerts[alert]["expr"], alert
