"""The ``helm`` binary for the chart tests.

helm comes from PATH or ``<repo>/.tools/helm`` (``scripts/install-helm.sh``); when it is missing
the tests skip, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import os

import pytest

from tests.helm.chart import _find_helm


@pytest.fixture(scope="session")
def helm() -> str:
    path = _find_helm()
    if path is None:
        message = "helm not found on PATH or in .tools/ (run scripts/install-helm.sh .tools)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
