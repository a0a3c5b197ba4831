"""The Helm chart refuses incomplete or bad values with a clear message (render and schema)."""

from __future__ import annotations

import pytest
import yaml

from tests.helm.chart import BASE_SET, SECRET, _env, _proxy_container, _template

# --- refusals with a clear message ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(BASE_SET, "auth.secret is required", id="no-secret"),
        pytest.param(
            [*BASE_SET, "--set", "auth.secret=short"], "at least 32 characters", id="short-secret"
        ),
        pytest.param(
            ["--set", f"auth.secret={SECRET}", "--set", "store.url=redis://store:6379/0"],
            "upstream is required",
            id="no-upstream",
        ),
        pytest.param(
            ["--set", "upstream=http://shop:8080", "--set", f"auth.secret={SECRET}"],
            "more than one replica needs a shared store",
            id="replicas-without-store",
        ),
        pytest.param(
            [
                *BASE_SET,
                "--set",
                f"auth.secret={SECRET}",
                "--set",
                "metrics.serviceMonitor.enabled=true",
            ],
            "needs auth.adminToken",
            id="servicemonitor-without-token",
        ),
        pytest.param(
            [
                *BASE_SET,
                "--set",
                f"auth.secret={SECRET}",
                "--set",
                "autoscaling.enabled=true",
                "--set",
                "autoscaling.targetCPUUtilizationPercentage=null",
            ],
            "autoscaling.enabled needs",
            id="hpa-without-metric",
        ),
        pytest.param(
            [
                *BASE_SET,
                "--set",
                f"auth.secret={SECRET}",
                "--set",
                "nats.enabled=true",
                "--set",
                "nats.streamReplicas=3",
            ],
            "nats.streamReplicas > 1 needs a NATS cluster",
            id="replicated-streams-on-the-bundled-nats",
        ),
    ],
)
def test_render_refuses_incomplete_values(helm: str, args: list[str], message: str) -> None:
    result = _template(helm, *args)
    assert result.returncode != 0, result.stdout
    assert message in result.stderr


def test_single_replica_may_use_the_in_process_store(helm: str) -> None:
    result = _template(
        helm, "--set", "upstream=http://shop:8080", "--set", f"auth.secret={SECRET}",
        "--set", "replicaCount=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert "WAITROOM_STORE_URL" not in _env(_proxy_container(docs))


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("rooms[0].mode=lifo", "rooms.0.mode"),
        ("rooms[0].fail_mode=maybe", "rooms.0.fail_mode"),
        ("rooms[0].page_status=418", "rooms.0.page_status"),
        ("logLevel=verbose", "logLevel"),
        ("rooms[0].name=Bad Name", "rooms.0.name"),
        ("rooms[0].capcity=5", "rooms.0"),
        ("replicas=2", "replicas"),
        ("store.url=http://cache:6379", "store.url"),
        ("store.url=redis+mirror://a:1/0", "store.url"),
        ("nats.url=nats://a:4222 nats://b:4222", "nats.url"),
        ("nats.url=ws://a:4222", "nats.url"),
        ("nats.streamReplicas=7", "nats.streamReplicas"),
    ],
)
def test_schema_rejects_bad_values(helm: str, setting: str, path: str) -> None:
    result = _template(
        helm, *BASE_SET, "--set", f"auth.secret={SECRET}",
        "--set", "rooms[0].name=default", "--set", "rooms[0].capacity=10", "--set", setting,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "values don't meet the specifications of the schema" in result.stderr
    assert path in result.stderr


def test_schema_names_the_allowed_modes(helm: str) -> None:
    result = _template(
        helm, *BASE_SET, "--set", f"auth.secret={SECRET}",
        "--set", "rooms[0].name=default", "--set", "rooms[0].capacity=10",
        "--set", "rooms[0].mode=lifo",
    )  # fmt: skip
    assert result.returncode != 0
    for mode in ("fifo", "random", "passthrough", "reject", "queue_all"):
        assert f'"{mode}"' in result.stderr
