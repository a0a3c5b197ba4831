"""examples/README.md lists every example, and every file it links exists."""

from __future__ import annotations

import re

from tests.examples.procs import REPO

EXAMPLES = REPO / "examples"


def test_links_resolve() -> None:
    text = (EXAMPLES / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert links
    missing = [link for link in links if not (EXAMPLES / link).exists()]
    assert not missing, missing


def test_every_example_is_listed() -> None:
    text = (EXAMPLES / "README.md").read_text()
    for path in sorted(EXAMPLES.iterdir()):
        if path.name == "README.md" or path.name.startswith((".", "__")):
            continue
        assert f"]({path.name}" in text, f"examples/README.md does not link {path.name}"
