"""Every command the documentation gives is run here, or rendered where it cannot run.

``test_every_doc_command_has_a_check`` extracts the commands from the docs
(:mod:`tests.docs.commands`) and fails on one that no check covers, and on a registered command
the docs no longer give: ``CHECKS`` (``registry.py``) is the list of doc commands and the check
of each (``test_readme_commands.py``, ``test_example_commands.py``).
The checks run the documented text itself, with free ports substituted for the documented ones
(textually, or through ``WAITROOM_PORT``/``WAITROOM_UPSTREAM`` where a config file holds them);
long-running commands are started, probed and stopped by process group.

What cannot run here is rendered or parsed instead, and the check says so in its docstring:
``helm install``/``helm test`` (no Kubernetes cluster: ``helm template``), ``docker compose``
(no Docker: the compose file is parsed and its proxy configuration loaded), ``scripts/test``
(it *is* this suite, as ``.ci/run`` runs it), ``scripts/lock`` (it re-resolves the lock from
the package index: syntax and the files it writes are checked) and ``pytest`` lines of test
directories this suite runs anyway (collected, not run twice).
"""

from __future__ import annotations

import importlib

from tests.docs.commands import doc_commands
from tests.docs.registry import CHECKS

CHECK_MODULES = ("tests.docs.test_readme_commands", "tests.docs.test_example_commands")


def test_every_doc_command_has_a_check() -> None:
    extracted = doc_commands()
    assert len(extracted) >= 20, "the extractor found too few commands"
    uncovered = [f"{c.where()}: {c.text}" for c in extracted if c.text not in CHECKS]
    assert not uncovered, "doc commands without a check (add one to CHECKS):\n" + "\n".join(
        uncovered
    )
    stale = sorted(set(CHECKS) - {c.text for c in extracted})
    assert not stale, f"registered commands no doc gives any more: {stale}"
    defined = {name for module in CHECK_MODULES for name in vars(importlib.import_module(module))}
    assert set(CHECKS.values()) <= defined, set(CHECKS.values()) - defined
