#!/usr/bin/env bash
# A static site (python -m http.server) with waitroom-proxy in front of it; Ctrl-C stops both.
#
#   examples/static-site/run.sh
#
# Then open http://127.0.0.1:8080/ (the proxy); the site itself is on http://127.0.0.1:8000/.
# Environment: SITE_PORT (8000), PROXY_PORT (8080), PYTHON (python3), WAITROOM_PROXY (the
# waitroom-proxy command). Any WAITROOM_* variable reaches the proxy, e.g. WAITROOM_CAPACITY=5.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
site_port="${SITE_PORT:-8000}"
proxy_port="${PROXY_PORT:-8080}"
python="${PYTHON:-python3}"
proxy="${WAITROOM_PROXY:-waitroom-proxy}"

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
