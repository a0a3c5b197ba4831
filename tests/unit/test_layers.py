"""The README's layer rule, kept true by import-linter (the contract is in pyproject.toml).

``cli`` → ``server`` → ``asgi`` | ``bootstrap`` → ``service`` | ``adapters`` → ``config`` →
``domain`` → ``ports``: a module imports only from layers below its own. The composition root
(``bootstrap``) is imported by no one below it, and the ASGI layer never builds an engine.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).parents[2]


def test_the_layer_contract_holds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    code = lint_imports(no_cache=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1 kept, 0 broken" in out


def test_no_import_circle_between_the_parts_of_the_service() -> None:
    """Inside a layer too: each part of the service imports only parts it stands on."""
    graph = grimp.build_graph("waitroom_proxy")
    service = sorted(m for m in graph.modules if m.startswith("waitroom_proxy.service."))
    for a in service:
        for b in service:
            if a < b and graph.chain_exists(a, b) and graph.chain_exists(b, a):
                raise AssertionError(f"{a} and {b} import each other")


def test_the_composition_root_is_imported_only_from_above() -> None:
    graph = grimp.build_graph("waitroom_proxy")
    importers = graph.find_modules_that_directly_import("waitroom_proxy.bootstrap")
    assert importers <= {"waitroom_proxy.server.apps"}, importers
