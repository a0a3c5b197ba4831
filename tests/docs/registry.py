"""``CHECKS``: every command the docs give, and the check that runs it (see
``tests/docs/test_doc_coverage.py``). One check may cover several commands; a command given in
several docs is one entry. The check names are test functions of ``test_readme_commands.py``
and ``test_example_commands.py``.
"""

from __future__ import annotations

from tests.docs.commands import REPO, DocCommand, doc_commands

# The check of each documented command (its text, spaces collapsed). One check may cover
# several commands; a command given in several docs is one entry.
CHECKS: dict[str, str] = {
    "scripts/install && .venv/bin/waitroom-proxy demo": "test_install_then_demo",
    "scripts/install": "test_install_then_demo",
    "scripts/install test": "test_install_test_is_what_the_suite_runs",
    "scripts/test": "test_scripts_test_is_what_ci_runs",
    'scripts/install && export PATH="$PWD/.venv/bin:$PATH"': "test_quick_start_in_front_of_a_site",
    "waitroom-proxy serve --upstream http://127.0.0.1:8000 --capacity 100 --admit-rate 300 "
    "--port 8080": "test_quick_start_in_front_of_a_site",
    "export WAITROOM_STORE_URL=redis://127.0.0.1:6379/0": "test_shared_store_block",
    "export WAITROOM_SECRET=\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\"":
        "test_shared_store_block",
    "waitroom-proxy serve --config examples/waitroom.toml": "test_shared_store_block",
    "helm install sale helm/waitroom-proxy --set upstream=http://shop.default.svc:8080 --set "
    "store.url=redis://dragonfly:6379 --set nats.url=nats://nats:4222 --set "
    'auth.secret="$(openssl rand -base64 32)" --set auth.adminToken="$(openssl rand -hex 16)"':
        "test_helm_install_renders",
    "helm install wr helm/waitroom-proxy --set image.repository=REGISTRY/waitroom-proxy --set "
    "upstream=http://shop.default.svc.cluster.local:8080 --set "
    "store.url=redis://dragonfly.data.svc.cluster.local:6379/0 --set "
    'auth.secret="$(openssl rand -hex 32)" --set auth.adminToken="$(openssl rand -hex 32)"':
        "test_helm_install_renders",
    "helm test wr": "test_helm_test_hook_renders",
    "UPDATE_GOLDEN=1 .venv/bin/pytest tests/helm && git diff tests/helm/golden":
        "test_golden_update_leaves_no_diff",
    ".venv/bin/pytest tests/unit": "test_pytest_lines_collect",
    ".venv/bin/pytest tests/examples": "test_pytest_lines_collect",
    "WAITROOM_UPDATE_SCREENSHOT=1 .venv/bin/pytest tests/e2e/test_console_screenshot.py":
        "test_pytest_lines_collect",
    "scripts/lock": "test_lock_script",
    "scripts/lock --upgrade": "test_lock_script",
    "examples/static-site/run.sh": "test_static_site_run_sh",
    "SITE_PORT=9000 PROXY_PORT=9080 examples/static-site/run.sh": "test_static_site_run_sh",
    "python3 -m http.server 8000 --bind 127.0.0.1 --directory examples/static-site/site":
        "test_static_site_by_hand",
    ".venv/bin/waitroom-proxy serve --config examples/static-site/waitroom.toml":
        "test_static_site_by_hand",
    "WAITROOM_CAPACITY=1 .venv/bin/uvicorn examples.fastapi_app:app --port 8000":
        "test_fastapi_app",
    "examples/cluster/run.sh": "test_cluster_run_sh",
    "examples/cluster/run.sh --port 8080 --capacity 5 --admit-rate 60": "test_cluster_run_sh",
    "examples/cluster/run.sh --redis-cluster --nats-cluster": "test_cluster_run_sh",
    ".venv/bin/waitroom-proxy check-config examples/waitroom.toml": "test_check_config",
    "cd examples && docker compose up --build": "test_compose_file_parses_and_configures",
    ".venv/bin/waitroom-proxy serve --capacity 100 --port 8080": "test_forward_auth_by_hand",
    'nginx -c "$PWD/examples/nginx/nginx.conf"': "test_forward_auth_by_hand",
    "caddy run --config examples/caddy/Caddyfile --adapter caddyfile":
        "test_forward_auth_by_hand",
}  # fmt: skip

VENV_BIN = str(REPO / ".venv" / "bin")
TOOLS = str(REPO / ".tools")


def covered_by(check: str) -> list[str]:
    found = [text for text, name in CHECKS.items() if name == check]
    assert found, f"no doc command is registered for {check}"
    return found


def command(text: str) -> DocCommand:
    for found in doc_commands():
        if found.text == text:
            return found
    raise AssertionError(f"the docs no longer give: {text}")
