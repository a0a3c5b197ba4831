#!/usr/bin/env bash
# Start the cluster (nginx → 3 waitroom-proxy replicas → origin; Redis and NATS), print the URLs,
# stop everything on Ctrl-C. Options: see `examples/cluster/run.sh --help` (--port, --capacity,
# --admit-rate, --replicas, --log-level, --workdir). PYTHON: the Python where waitroom-proxy is
# installed (default: .venv/bin/python of the repository if present, else python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
default=python3
[ -x "$here/../../.venv/bin/python" ] && default="$here/../../.venv/bin/python"
exec "${PYTHON:-$default}" "$here/cluster.py" "$@"
