"""The Helm chart's wiring: the rendered config and env load in the process, secrets, store and
NATS URLs, and the upstream CA."""

from __future__ import annotations

import base64
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import (
    BASE_SET,
    CI_NAMES,
    FULLNAME,
    SECRET,
    VALUES_FILES,
    _docs,
    _env,
    _one,
    _proxy_container,
    _template,
    _values,
)


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
