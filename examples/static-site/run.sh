#!/usr/bin/env bash
# A static site (python -m http.server) with waitroom-proxy in front of it; Ctrl-C stops both.
#
#   examples/static-site/run.sh
#
# Then open http://127.0.0.1:8080/ (the proxy); the site itself is on http://127.0.0.1:8000/.
# Environment: SITE_PORT (8000), PROXY_PORT (8080), PYTHON (python3), WAITROOM_PROXY (the
# waitroom-proxy command; default: the repository's .venv/bin/waitroom-proxy, which
# scripts/install creates, else waitroom-proxy on PATH). Any WAITROOM_* variable reaches the
# proxy, e.g. WAITROOM_CAPACITY=5.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
site_port="${SITE_PORT:-8000}"
proxy_port="${PROXY_PORT:-8080}"
python="${PYTHON:-python3}"
venv_proxy="$here/../../.venv/bin/waitroom-proxy"
if [ -n "${WAITROOM_PROXY:-}" ]; then
  proxy="$WAITROOM_PROXY"
elif [ -x "$venv_proxy" ]; then
  proxy="$venv_proxy"
else
  proxy=waitroom-proxy
fi
# Before anything starts or is printed: a missing command is one clear line, not a site left
# running after "command not found".
if ! command -v "$proxy" >/dev/null 2>&1; then
  echo "run.sh: cannot find the waitroom-proxy command ($proxy): run scripts/install from the" \
    "repository root first, or set WAITROOM_PROXY to its path" >&2
  exit 127
fi

pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  echo "stopped"
}
trap stop EXIT
trap 'exit 0' INT TERM

"$python" -m http.server "$site_port" --bind 127.0.0.1 --directory "$here/site" &
pids+=("$!")

# Flags outrank the file: the ports given above win over waitroom.toml's.
"$proxy" serve --config "$here/waitroom.toml" \
  --upstream "http://127.0.0.1:$site_port" --port "$proxy_port" &
pids+=("$!")

echo "site:  http://127.0.0.1:$site_port/   (direct, no waiting room)"
echo "proxy: http://127.0.0.1:$proxy_port/   (capacity 2: a third browser window waits)"
echo "Ctrl-C stops both."

# Until Ctrl-C, or until either process ends (the other is then stopped too).
wait -n
