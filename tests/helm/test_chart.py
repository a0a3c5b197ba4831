"""Checks of the Helm chart ``helm/waitroom-proxy`` (DESIGN §10).

Every ``ci/*-values.yaml`` (and ``examples/helm-production-values.yaml``) is linted (plain and
``--strict``), rendered, validated against the Kubernetes 1.37 schemas with
``kubernetes-validate --strict`` and compared with its golden render in ``tests/helm/golden/``. ``UPDATE_GOLDEN=1`` rewrites the golden files instead of comparing.
The other chart checks stand in ``test_chart_*.py``; helpers in ``chart.py``, the ``helm``
fixture in ``conftest.py``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.helm.chart import (
    CHART,
    CI_NAMES,
    FULLNAME,
    GOLDEN,
    RELEASE,
    VALUES_FILES,
    _docs,
    _rendered,
    _run,
)


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
