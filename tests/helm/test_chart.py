"""Checks of the Helm chart ``helm/waitroom-proxy`` (DESIGN §10).

Every ``ci/*-values.yaml`` (and ``examples/helm-production-values.yaml``) is linted (plain and
``--strict``), rendered, validated against the Kubernetes 1.37 schemas with
``kubernetes-validate --strict`` and compared with its golden render in ``tests/helm/golden/``. ``UPDATE_GOLDEN=1`` rewrites the golden files instead of comparing.
The Prometheus Operator resources (no schema in kubernetes-validate) are checked by hand here.

helm comes from PATH or ``<repo>/.tools/helm`` (``scripts/install-helm.sh``); when it is missing
the tests skip, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "waitroom-proxy"
GOLDEN = Path(__file__).resolve().parent / "golden"
VALUES_FILES = {
    p.name.removesuffix("-values.yaml"): p for p in (CHART / "ci").glob("*-values.yaml")
}
# The documented production example is held to the same checks.
VALUES_FILES["example-production"] = REPO / "examples" / "helm-production-values.yaml"
CI_NAMES = sorted(VALUES_FILES)
RELEASE = "wr"
NAMESPACE = "shop"
FULLNAME = f"{RELEASE}-waitroom-proxy"
SECRET = "ci-only-secret-0123456789abcdef0123456789abcdef"
BASE_SET = ["--set", "upstream=http://shop:8080", "--set", "store.url=redis://store:6379/0"]
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _find_helm() -> str | None:
    found = shutil.which("helm")
    if found:
        return found
    local = REPO / ".tools" / "helm"
    return str(local) if local.is_file() and os.access(local, os.X_OK) else None


@pytest.fixture(scope="session")
def helm() -> str:
    path = _find_helm()
    if path is None:
        message = "helm not found on PATH or in .tools/ (run scripts/install-helm.sh .tools)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _template(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args])


@functools.cache
def _rendered(helm: str, name: str) -> str:
    result = _template(helm, "-f", str(VALUES_FILES[name]))
    assert result.returncode == 0, result.stderr
    return result.stdout


def _docs(helm: str, name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(_rendered(helm, name)) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str = FULLNAME) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _values(name: str) -> dict[str, Any]:
    return yaml.safe_load(VALUES_FILES[name].read_text())


def _proxy_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "waitroom-proxy"]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_ci_values_cover_the_required_scenarios() -> None:
    assert {
        "default-with-secret",
        "bundled-deps",
        "ingress-hpa-monitoring",
        "existing-secret",
        "redis-cluster",
        "redis-sentinel",
    } <= set(CI_NAMES)


# --- helm lint ---------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("name", CI_NAMES)
def test_lint(helm: str, name: str, strict: bool) -> None:
    args = [helm, "lint", str(CHART), "-f", str(VALUES_FILES[name])]
    result = _run([*args, "--strict"] if strict else args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ERROR]" not in result.stdout
    if strict:
        assert "[WARNING]" not in result.stdout


# --- rendered manifests are valid Kubernetes -----------------------------------------------


@pytest.mark.parametrize("name", CI_NAMES)
def test_render_validates_against_kubernetes_schemas(helm: str, name: str, tmp_path: Path) -> None:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(_rendered(helm, name))
    result = _run(
        [
            sys.executable,
            "-c",
            "import sys; from kubernetes_validate.__main__ import main; sys.exit(main())",
            "--strict",
            "--quiet",
            str(manifest),
        ]
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for line in output.splitlines():
        # Only the Prometheus Operator kinds may lack a schema; they are checked below.
        assert line.startswith("WARN") and re.search(
            r"kind (ServiceMonitor|PrometheusRule) ", line
        ), line


@pytest.mark.parametrize("name", CI_NAMES)
def test_every_object_has_standard_metadata(helm: str, name: str) -> None:
    for doc in _docs(helm, name):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, doc["metadata"]["name"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"].startswith("waitroom-proxy-")
        assert doc["metadata"]["name"].startswith(FULLNAME)


# --- golden renders ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CI_NAMES)
def test_golden_render(helm: str, name: str) -> None:
    rendered = _rendered(helm, name)
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(rendered)
        return
    assert golden.is_file(), f"{golden.name} missing: run with UPDATE_GOLDEN=1 to create it"
    expected = golden.read_text()
    if rendered != expected:
        import difflib

        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                f"golden/{name}.yaml",
                "rendered",
            )
        )
        pytest.fail(
            f"render of {VALUES_FILES[name].name} differs from golden/{name}.yaml; if intended, "
            f"rerun with UPDATE_GOLDEN=1 and review the diff:\n{diff}"
        )


def test_no_stale_golden_files() -> None:
    assert {p.stem for p in GOLDEN.glob("*.yaml")} <= set(CI_NAMES)


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


@pytest.mark.parametrize("name", CI_NAMES)
def test_rendered_config_and_env_load_in_the_process(helm: str, name: str, tmp_path: Path) -> None:
    """The ConfigMap, env and args of the pod are accepted by the real settings loader."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from waitroom_proxy.config import load_settings
    from waitroom_proxy.errors import ConfigError

    docs = _docs(helm, name)
    container = _proxy_container(docs)
    text = _one(docs, "ConfigMap")["data"]["waitroom.toml"]
    # Operator templates are mounted files in the pod: stand in for them here.
    page = tmp_path / "page.html"
    page.write_text("<p>{{ position }}</p>")
    text = re.sub(r'(?m)^template = ".*"$', f"template = {json.dumps(str(page))}", text)
    config = tmp_path / "waitroom.toml"
    config.write_text(text)
    pem = tmp_path / "signing-key.pem"
    pem.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    stand_ins = {
        "WAITROOM_SECRET": "s" * 40,
        "WAITROOM_PREVIOUS_SECRETS": "p" * 40,
        "WAITROOM_ADMIN_TOKEN": "t" * 24,
        "WAITROOM_STORE_URL": "redis://store.example:6379/0",
    }
    env = {}
    for var, entry in _env(container).items():
        if "valueFrom" in entry:
            env[var] = stand_ins[var]
        elif var == "WAITROOM_SIGNING_KEY_FILE":
            env[var] = str(pem)
        else:
            env[var] = entry["value"]
    args = container["args"]
    assert args[:3] == ["serve", "--config", "/etc/waitroom/waitroom.toml"]
    flags = {
        args[i].removeprefix("--").replace("-", "_"): args[i + 1] for i in range(3, len(args), 2)
    }
    try:
        forward_auth = _values(name).get("forwardAuth", {}).get("enabled", False)
        settings = load_settings(
            str(config), env=env, flags=flags, require_upstream=not forward_auth
        )
    except ConfigError as exc:
        pytest.fail(f"{VALUES_FILES[name].name} makes a config the process refuses:\n{exc}")
    values = _values(name)
    assert (settings.upstream is None) is forward_auth
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert (settings.admin_host, settings.admin_port) == ("0.0.0.0", 9090)
    assert settings.workers == values.get("workers", 1)
    assert len(settings.trusted_proxies) == len(values.get("trustedProxies", []))
    expected = values.get("rooms") or [{"name": "default"}]
    if values.get("config"):
        expected = tomllib.loads(values["config"])["rooms"]
    assert [r.name for r in settings.rooms] == [r["name"] for r in expected]


@pytest.mark.parametrize("name", CI_NAMES)
def test_secrets_are_wired(helm: str, name: str) -> None:
    docs = _docs(helm, name)
    values = _values(name)
    auth = values["auth"]
    keys = {
        "secret": "secret",
        "previousSecrets": "previous-secrets",
        "adminToken": "admin-token",
        **auth.get("existingSecretKeys", {}),
    }
    env = _env(_proxy_container(docs))
    secret_name = auth.get("existingSecret") or FULLNAME
    for var, key in [
        ("WAITROOM_SECRET", "secret"),
        ("WAITROOM_PREVIOUS_SECRETS", "previousSecrets"),
        ("WAITROOM_ADMIN_TOKEN", "adminToken"),
    ]:
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret_name, keys[key])
        assert "value" not in env[var]
    chart_secrets = [d for d in docs if d["kind"] == "Secret"]
    if auth.get("existingSecret"):
        assert not chart_secrets
        assert (
            "checksum/secret"
            not in (_one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"])
        )
    else:
        (secret,) = chart_secrets
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data[keys["secret"]] == auth["secret"]
        if auth.get("previousSecrets"):
            assert data[keys["previousSecrets"]] == ",".join(auth["previousSecrets"])
        if auth.get("adminToken"):
            assert data[keys["adminToken"]] == auth["adminToken"]
    # Secret values appear nowhere but in the chart's Secret.
    for doc in docs:
        if doc["kind"] != "Secret":
            dumped = yaml.safe_dump(doc)
            for value in [
                auth.get("secret"),
                auth.get("adminToken"),
                *auth.get("previousSecrets", []),
            ]:
                assert not value or value not in dumped, doc["kind"]
    signing = auth.get("signingKey", {}).get("existingSecret")
    if signing:
        path = env["WAITROOM_SIGNING_KEY_FILE"]["value"]
        pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == signing]
        (mount,) = [
            m for m in _proxy_container(docs)["volumeMounts"] if m["name"] == volume["name"]
        ]
        assert path == f"{mount['mountPath']}/{volume['secret']['items'][0]['path']}"
    else:
        assert "WAITROOM_SIGNING_KEY_FILE" not in env


@pytest.mark.parametrize("name", CI_NAMES)
def test_store_and_nats_urls(helm: str, name: str) -> None:
    docs = _docs(helm, name)
    values = _values(name)
    env = _env(_proxy_container(docs))
    store, nats = values.get("store", {}), values.get("nats", {})
    if store.get("existingSecret"):
        ref = env["WAITROOM_STORE_URL"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (store["existingSecret"], store["existingSecretKey"])
    elif store.get("url"):
        assert env["WAITROOM_STORE_URL"]["value"] == store["url"]
    elif values.get("dragonfly", {}).get("enabled"):
        service = _one(docs, "Service", f"{FULLNAME}-dragonfly")
        assert service["spec"]["ports"][0]["port"] == 6379
        assert env["WAITROOM_STORE_URL"]["value"] == f"redis://{FULLNAME}-dragonfly:6379/0"
        dragonfly = _one(docs, "Deployment", f"{FULLNAME}-dragonfly")
        assert service["spec"]["selector"].items() <= (
            dragonfly["spec"]["template"]["metadata"]["labels"].items()
        )
    if nats.get("url") or nats.get("enabled"):
        replicas = env["WAITROOM_NATS_STREAM_REPLICAS"]["value"]
        assert replicas == str(nats.get("streamReplicas", 1))
    else:
        assert "WAITROOM_NATS_STREAM_REPLICAS" not in env
    if nats.get("url"):
        assert env["WAITROOM_NATS_URL"]["value"] == nats["url"]
    elif nats.get("enabled"):
        service = _one(docs, "Service", f"{FULLNAME}-nats")
        assert service["spec"]["ports"][0]["port"] == 4222
        assert env["WAITROOM_NATS_URL"]["value"] == f"nats://{FULLNAME}-nats:4222"
        sts = _one(docs, "StatefulSet", f"{FULLNAME}-nats")
        assert sts["spec"]["serviceName"] == f"{FULLNAME}-nats-headless"
        conf = _one(docs, "ConfigMap", f"{FULLNAME}-nats")["data"]["nats.conf"]
        assert "jetstream" in conf
        if nats.get("persistence", {}).get("enabled"):
            claim = sts["spec"]["volumeClaimTemplates"][0]
            assert claim["spec"]["resources"]["requests"]["storage"] == nats["persistence"]["size"]
    else:
        assert "WAITROOM_NATS_URL" not in env
    bundled = {d["metadata"]["name"] for d in docs if d["kind"] in {"StatefulSet", "Deployment"}}
    assert (f"{FULLNAME}-dragonfly" in bundled) == bool(
        values.get("dragonfly", {}).get("enabled") and not store
    )
    assert (f"{FULLNAME}-nats" in bundled) == bool(nats.get("enabled") and not nats.get("url"))


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


@pytest.mark.parametrize("source", ["existingConfigMap", "existingSecret"])
def test_upstream_ca_is_mounted_and_passed(helm: str, source: str, tmp_path: Path) -> None:
    result = _template(
        helm, *BASE_SET, "--set", "upstream=https://shop:8443", "--set", f"auth.secret={SECRET}",
        "--set", f"upstreamCA.{source}=internal-ca", "--set", "upstreamCA.key=bundle.pem",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    container = _proxy_container(docs)
    path = _env(container)["WAITROOM_UPSTREAM_CA_FILE"]["value"]
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "upstream-ca"]
    ref = volume["configMap"] if source == "existingConfigMap" else volume["secret"]
    assert ref.get("name", ref.get("secretName")) == "internal-ca"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "upstream-ca"]
    assert mount["readOnly"] is True
    assert path == f"{mount['mountPath']}/{ref['items'][0]['path']}"
    assert ref["items"][0]["key"] == "bundle.pem"


def test_upstream_ca_from_both_sources_is_refused(helm: str) -> None:
    result = _template(
        helm, *BASE_SET, "--set", f"auth.secret={SECRET}",
        "--set", "upstreamCA.existingConfigMap=a", "--set", "upstreamCA.existingSecret=b",
    )  # fmt: skip
    assert result.returncode != 0
    assert "upstreamCA: set existingConfigMap or existingSecret, not both" in result.stderr


def test_no_upstream_ca_by_default(helm: str) -> None:
    for name in CI_NAMES:
        assert "WAITROOM_UPSTREAM_CA_FILE" not in _env(_proxy_container(_docs(helm, name)))
