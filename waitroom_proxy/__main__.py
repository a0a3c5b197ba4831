"""``python -m waitroom_proxy``: the same command line as ``waitroom-proxy``."""

from __future__ import annotations

from waitroom_proxy.cli import main

if __name__ == "__main__":
    main(prog_name="waitroom-proxy")
