"""The Helm chart's Deployment: hardened, the process contract, selectors and Service, and the
rooms as TOML in the ConfigMap."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import (
    BASE_SET,
    CHART,
    CI_NAMES,
    FULLNAME,
    SECRET,
    _docs,
    _env,
    _one,
    _proxy_container,
    _template,
    _values,
)

# --- the Deployment: hardened, and the process contract ---------------------------------------


@pytest.mark.parametrize("name", CI_NAMES)
def test_security_context_is_hardened(helm: str, name: str) -> None:
    docs = _docs(helm, name)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = _proxy_container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc.get("privileged", False) is False
    # A read-only root needs a writable /tmp.
    mounts = {m["mountPath"]: m["name"] for m in _proxy_container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    sa = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert all(d["automountServiceAccountToken"] is False for d in sa)
    # Bundled components and the test pod are locked down too.
    for doc in docs:
        if doc["kind"] not in {"Deployment", "StatefulSet", "Pod"}:
            continue
        spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            csc = container["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, container["name"]
            assert csc["allowPrivilegeEscalation"] is False, container["name"]
            assert csc["capabilities"]["drop"] == ["ALL"], container["name"]


@pytest.mark.parametrize("name", CI_NAMES)
def test_deployment_runs_the_process_contract(helm: str, name: str) -> None:
    docs = _docs(helm, name)
    values = _values(name)
    deployment = _one(docs, "Deployment")
    container = _proxy_container(docs)
    assert container["args"] == [
        "serve", "--config", "/etc/waitroom/waitroom.toml", "--host", "0.0.0.0",
        "--port", "8080", "--admin-port", "9090",
    ]  # fmt: skip
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8080,
        "admin": 9090,
    }
    env = _env(container)
    assert env["WAITROOM_ADMIN_HOST"]["value"] == "0.0.0.0"
    if values.get("forwardAuth", {}).get("enabled"):
        assert "WAITROOM_UPSTREAM" not in env, "forward-auth mode: serve without upstream"
        assert env["WAITROOM_AUTH_CACHE_SECONDS"]["value"] == str(
            values["forwardAuth"]["cacheSeconds"]
        )
    else:
        assert env["WAITROOM_UPSTREAM"]["value"] == values["upstream"]
    assert env["WAITROOM_LOG_LEVEL"]["value"] == values.get("logLevel", "info")
    assert env["WAITROOM_WORKERS"]["value"] == str(values.get("workers", 1))
    assert container["livenessProbe"]["httpGet"] == {"path": "/_waitroom/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/_waitroom/readyz", "port": "http"}
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/waitroom"]["readOnly"] is True
    spec = deployment["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]
    assert re.fullmatch(r"[0-9a-f]{64}", pod["metadata"]["annotations"]["checksum/config"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > int(
        container["lifecycle"]["preStop"]["exec"]["command"][1]
    )
    assert pod["spec"]["topologySpreadConstraints"]
    assert pod["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    hpa = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    if values.get("autoscaling", {}).get("enabled"):
        assert "replicas" not in spec
        assert hpa[0]["apiVersion"] == "autoscaling/v2"
        assert hpa[0]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    else:
        assert spec["replicas"] == values.get("replicaCount", 3)
        assert not hpa


@pytest.mark.parametrize("name", CI_NAMES)
def test_selectors_and_service(helm: str, name: str) -> None:
    docs = _docs(helm, name)
    deployment = _one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = _one(docs, "Service")
    assert service["spec"]["selector"] == selector
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (80, "http"),
        "admin": (9090, "admin"),
    }
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    for ingress in (d for d in docs if d["kind"] == "Ingress"):
        if ingress["metadata"]["name"] == f"{FULLNAME}-site":
            continue  # forward-auth mode: the site's own Service (test_forward_auth_ingress)
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"] == {"name": FULLNAME, "port": {"name": "http"}}
    # No other pod may be picked by the proxy Service (the helm test pod in particular).
    for doc in docs:
        if doc["kind"] == "Pod":
            assert not selector.items() <= doc["metadata"]["labels"].items()
        elif doc["kind"] in {"Deployment", "StatefulSet"} and doc is not deployment:
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert not selector.items() <= labels.items()


@pytest.mark.parametrize("name", CI_NAMES)
def test_configmap_holds_the_rooms_as_toml(helm: str, name: str) -> None:
    docs = _docs(helm, name)
    values = _values(name)
    text = _one(docs, "ConfigMap")["data"]["waitroom.toml"]
    config = tomllib.loads(text)
    if values.get("config"):
        assert config == tomllib.loads(values["config"])
        return
    chart_defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert config["server"] == values.get("server", chart_defaults["server"])
    assert config["rooms"] == values.get("rooms", chart_defaults["rooms"])


def test_toml_helper_escapes_strings_and_nests_tables(helm: str, tmp_path: Path) -> None:
    tricky = 'a "quoted" \\ path\twith <html> & ünïcode\nand a newline'
    server = {"weird key": 1.5, "nested": {"flag": True, "deeper": {"list": [1, 2]}}}
    rooms = [{"name": "x", "capacity": 1, "template": tricky, "bypass": {"paths": ["/a b"]}}]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"server": server, "rooms": rooms}))
    result = _template(
        helm, *BASE_SET, "--set", f"auth.secret={SECRET}", "-f", str(values),
        "-s", "templates/configmap.yaml",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = tomllib.loads(yaml.safe_load(result.stdout)["data"]["waitroom.toml"])
    assert config == {"server": server, "rooms": rooms}
