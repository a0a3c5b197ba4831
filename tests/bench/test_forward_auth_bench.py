"""Smoke test of ``python -m bench.forward_auth``: it runs the shipped nginx config side by side
with nginx alone and prints every row. No timing thresholds (the figures depend on the
machine); the report section survives a full run's rewrite of RESULTS.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.forward_auth import BEGIN, END, carry_over
from tests.fixtures.nginx import nginx_binary
from tests.fixtures.redis_server import missing

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_forward_auth_bench_prints_every_row() -> None:
    nginx_binary()
    for name in ("wrk", "redis-server"):
        if subprocess.run(["bash", "-c", f"command -v {name}"], capture_output=True).returncode:
            missing(f"the forward-auth bench needs {name}")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.forward_auth", "--duration", "1", "--rounds", "1",
         "--connections", "8"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for row in ("| nginx proxy_pass alone |", "| nginx + forward-auth, cached (as shipped) |",
                "| nginx + forward-auth, uncached |",
                "| /_waitroom/auth alone (uncached decisions) |"):  # fmt: skip
        assert row in proc.stdout


def test_section_survives_a_full_run(tmp_path: Path) -> None:
    previous = tmp_path / "RESULTS.md"
    previous.write_text(f"# old\n\n{BEGIN}\nrows\n{END}\n")
    assert carry_over("# new\n", previous) == f"# new\n\n{BEGIN}\nrows\n{END}\n"
    assert carry_over("# new\n", tmp_path / "none.md") == "# new\n"
