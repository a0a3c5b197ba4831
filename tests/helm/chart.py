"""Shared by the Helm chart tests: the chart, its values files, and ``helm template`` renders
(cached per values file) with ways to pick objects, values and the proxy container out of them."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

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
    values: dict[str, Any] = yaml.safe_load(VALUES_FILES[name].read_text())
    return values


def _proxy_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    named: list[dict[str, Any]] = [c for c in pod["containers"] if c["name"] == "waitroom-proxy"]
    (container,) = named
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}
