"""The commands of ``examples/nginx/README.md`` and ``examples/caddy/README.md``, run as
written: waitroom-proxy in forward-auth mode, then real nginx and real Caddy on their shipped
configs (ports substituted in a copy of each config, which the command then names; nginx's
copy also runs in the foreground with its pid and cache in the test's directory). A first
visitor reaches the site through each.

Imported by ``test_example_commands.py`` (the registry names checks of that module).
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tests.docs.helpers import clean_env, start, stop_group, substitute, wait_for
from tests.docs.registry import covered_by
from tests.examples.procs import Proc, free_port
from tests.fixtures.balancers import caddy_binary, caddy_config, nginx_binary, nginx_config


def test_forward_auth_by_hand(tmp_path: Path) -> None:
    """``waitroom-proxy serve`` without ``--upstream``, ``nginx -c examples/nginx/nginx.conf``
    and ``caddy run --config examples/caddy/Caddyfile``: the site through both."""
    serve, nginx_cmd, caddy_cmd = covered_by("test_forward_auth_by_hand")
    nginx_binary(), caddy_binary()  # a missing server fails under CI, never a quiet pass
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "index.html").write_text("<h1>the site</h1>\n")
    site_port, waitroom_port, nginx_port, caddy_port = (free_port() for _ in range(4))
    site = Proc([sys.executable, "-m", "http.server", str(site_port), "--bind", "127.0.0.1",
                 "--directory", str(site_dir)], tmp_path / "site.log")  # fmt: skip
    procs = [site]
    try:
        waitroom = start(substitute(serve, {8080: waitroom_port}), tmp_path / "waitroom.log")
        procs.append(waitroom)
        wait_for(f"http://127.0.0.1:{waitroom_port}/_waitroom/healthz", waitroom,
                 lambda r: r.status_code == 200)  # fmt: skip
        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir()
        conf = nginx_dir / "nginx.conf"
        conf.write_text(nginx_config(site_port, waitroom_port, nginx_port, nginx_dir))
        assert '"$PWD/examples/nginx/nginx.conf"' in nginx_cmd
        procs.append(start(nginx_cmd.replace('"$PWD/examples/nginx/nginx.conf"', str(conf))
                           + f" -p {nginx_dir} -e {nginx_dir / 'error.log'}",
                           tmp_path / "nginx.log"))  # fmt: skip
        caddyfile = tmp_path / "Caddyfile"
        caddyfile.write_text(caddy_config(site_port, waitroom_port, caddy_port))
        assert "examples/caddy/Caddyfile" in caddy_cmd
        env = clean_env(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path))
        procs.append(start(caddy_cmd.replace("examples/caddy/Caddyfile", str(caddyfile)),
                           tmp_path / "caddy.log", env=env))  # fmt: skip
        for port, proc in ((nginx_port, procs[2]), (caddy_port, procs[3])):
            wait_for(f"http://127.0.0.1:{port}/_waitroom/healthz", proc,
                     lambda r: r.status_code == 200)  # fmt: skip
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as c:
                r = c.get("/")
                assert r.status_code == 200 and "<h1>the site</h1>" in r.text, r.text
                assert "waitroom_session" in c.cookies
                c.post("/_waitroom/leave")  # the next LB's first visitor finds room too
    finally:
        for proc in reversed(procs):
            if proc is site:
                proc.stop()
            else:
                stop_group(proc)
