"""Static checks of the Dockerfile and the compose example (no Docker engine is available here).

They parse the files and check what would otherwise only fail at ``docker compose up``: the
image runs as a numeric non-root user and installs the package (not an editable checkout), and
every URL the proxy is given points at a service of the compose file.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = EXAMPLES / "docker-compose.yml"
PROMETHEUS = EXAMPLES / "prometheus.yml"


def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?-(?P<default>[^}]*))?\}")


def _interpolate(value: Any) -> Any:
    """Compose ``${VAR:-default}`` interpolation with an empty environment."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: m.group("default") or "", value)
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _interpolate(yaml.safe_load(COMPOSE.read_text()))


# --- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_runs_as_numeric_non_root_user() -> None:
    instructions = _instructions(DOCKERFILE.read_text())
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "the image must switch to a non-root USER"
    user = users[-1].split(":")[0]
    # Numeric, so Kubernetes runAsNonRoot can verify it; the chart runs as 10001 too.
    assert user.isdigit() and int(user) != 0
    assert user == "10001"
    # The final USER comes after every RUN (nothing later runs as root).
    last_user = max(i for i, (k, _) in enumerate(instructions) if k == "USER")
    assert all(k != "RUN" for k, _ in instructions[last_user:])


def test_dockerfile_installs_the_package() -> None:
    instructions = _instructions(DOCKERFILE.read_text())
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms[-1].split()[0] == "python:3.11-slim"
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert re.search(r"pip install\b", runs)
    # Dependencies come from the lock, with their hashes checked.
    assert re.search(r"pip install --require-hashes -r /src/requirements/runtime\.txt", runs)
    assert "requirements/runtime.txt" in " ".join(r for k, r in instructions if k == "COPY")
    assert "!requirements/runtime.txt" in (REPO / ".dockerignore").read_text().splitlines()
    assert not re.search(r"pip install[^&;]*\s(-e|--editable)\b", runs)
    exposed = {p for keyword, rest in instructions if keyword == "EXPOSE" for p in rest.split()}
    assert {"8080", "9090"} <= exposed
    entrypoints = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints and yaml.safe_load(entrypoints[-1]) == ["waitroom-proxy"]
    # Everything the package build reads is copied (and allowed by .dockerignore).
    copied = " ".join(rest for keyword, rest in instructions if keyword == "COPY")
    packaging = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", "README.md", "waitroom_proxy"}
    needed |= set(packaging["tool"]["setuptools"].get("package-dir", {}).values())
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for path in needed:
        assert path in copied, path
        assert f"!{path}" in ignore or f"!{path}/" in ignore, path


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_has_the_documented_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"waitroom-proxy", "origin", "dragonfly", "nats", "prometheus", "grafana"} <= set(
        services
    )
    proxy = services["waitroom-proxy"]
    context = (COMPOSE.parent / proxy["build"]["context"]).resolve()
    assert (context / proxy["build"].get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    assert services["dragonfly"]["image"].startswith("docker.dragonflydb.io/dragonflydb/dragonfly:")
    assert "-js" in services["nats"]["command"]
    assert "replicas" not in proxy.get("deploy", {}) or proxy["deploy"]["replicas"] == 1


def test_compose_proxy_urls_point_at_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["waitroom-proxy"]["environment"]
    targets = {
        "WAITROOM_UPSTREAM": ("origin", {"http", "https"}),
        "WAITROOM_STORE_URL": ("dragonfly", {"redis", "rediss"}),
        "WAITROOM_NATS_URL": ("nats", {"nats"}),
    }
    for var, (service, schemes) in targets.items():
        url = urlsplit(env[var])
        assert url.scheme in schemes, var
        assert url.hostname == service, var
        assert service in services
        depends = services["waitroom-proxy"]["depends_on"]
        assert service in depends
    assert env["WAITROOM_ADMIN_HOST"] == "0.0.0.0"
    assert len(env["WAITROOM_SECRET"]) >= 32
    assert len(env["WAITROOM_ADMIN_TOKEN"]) >= 16


def test_compose_proxy_command_and_config(compose: dict[str, Any], tmp_path: Path) -> None:
    from waitroom_proxy.config import load_settings

    proxy = compose["services"]["waitroom-proxy"]
    command = proxy["command"]
    command = shlex.split(command) if isinstance(command, str) else command
    assert command[0] == "serve"
    args = dict(zip(command[1::2], command[2::2], strict=True))
    assert args["--host"] == "0.0.0.0"
    assert (args["--port"], args["--admin-port"]) == ("8080", "9090")
    (mount,) = [c for c in proxy["configs"] if c["target"] == args["--config"]]
    config = tmp_path / "waitroom.toml"
    config.write_text(compose["configs"][mount["source"]]["content"])
    env = {k: str(v) for k, v in proxy["environment"].items()}
    flags = {"host": args["--host"], "port": args["--port"], "admin_port": args["--admin-port"]}
    settings = load_settings(str(config), env=env, flags=flags, require_upstream=True)
    assert settings.rooms and settings.store_url and settings.nats_url
    # The read-only container needs its writable /tmp.
    assert proxy.get("read_only") is not True or "/tmp" in proxy.get("tmpfs", [])
    published = [p for p in proxy["ports"] if str(p).endswith(":8080")]
    assert published and all(str(p).startswith("127.0.0.1:") for p in proxy["ports"])


def test_compose_prometheus_scrapes_the_admin_port_with_the_token(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if ":" in v}
    config_file = mounts["/etc/prometheus/prometheus.yml"]
    assert (COMPOSE.parent / config_file).resolve() == PROMETHEUS
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "waitroom-proxy"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [
        (name, sd["port"]) for sd in job.get("dns_sd_configs", []) for name in sd["names"]
    ] + [tuple(t.rsplit(":", 1)) for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert targets and all((name, int(port)) == ("waitroom-proxy", 9090) for name, port in targets)
    # The bearer token file Prometheus reads holds the proxy's admin token.
    auth = job["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    (token_mount,) = [c for c in prometheus["configs"] if c["target"] == auth["credentials_file"]]
    token = compose["configs"][token_mount["source"]]["content"].strip()
    assert token == services["waitroom-proxy"]["environment"]["WAITROOM_ADMIN_TOKEN"]
    for other in config["scrape_configs"]:
        for sc in other.get("static_configs", []):
            for target in sc["targets"]:
                host = target.rsplit(":", 1)[0]
                assert host in services or host in {"127.0.0.1", "localhost"}, target


def test_compose_grafana_reads_prometheus(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    (mount,) = [c for c in grafana["configs"] if "datasources" in c["target"]]
    datasources = yaml.safe_load(compose["configs"][mount["source"]]["content"])["datasources"]
    url = urlsplit(datasources[0]["url"])
    assert (url.hostname, url.port) == ("prometheus", 9090)
    assert datasources[0]["type"] == "prometheus"


def test_compose_publishes_ports_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
