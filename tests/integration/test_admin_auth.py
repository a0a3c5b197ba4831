"""The admin listener end to end: every route needs the token, the dashboard shell holds no data,
and GET routes answer HEAD."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from starlette.applications import Starlette

from tests.integration.admin_helpers import AUTH, TOKEN, client
from waitroom_proxy.admin import BearerAuth

# ---------------------------------------------------------------------------- authentication
ROUTES = [
    ("GET", "/metrics"),
    ("GET", "/admin/rooms"),
    ("GET", "/admin/rooms/{room}"),
    ("PATCH", "/admin/rooms/{room}"),
    ("DELETE", "/admin/rooms/{room}/overrides"),
    ("POST", "/admin/rooms/{room}/pause"),
    ("POST", "/admin/rooms/{room}/resume"),
    ("POST", "/admin/rooms/{room}/admit?count=1"),
    ("POST", "/admin/rooms/{room}/sessions/abc/revoke"),
    ("GET", "/admin/stats"),
    ("GET", "/admin/openapi.json"),
    ("GET", "/admin/nope"),
    ("GET", "/"),
    ("POST", "/admin/rooms/unknown-room/pause"),
]


@pytest.mark.parametrize("store_kind", ["memory"], indirect=True)
async def test_every_route_needs_the_token(make_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong = [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Bearer {TOKEN}x"},
        {"authorization": f"Bearer {TOKEN[:-1]}"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": TOKEN},
        {"authorization": "Bearer"},
        {"x-admin-token": TOKEN},
    ]
    async with make_env() as env, client(env.a.admin) as c:
        for i, (method, path) in enumerate(ROUTES):
            url = path.replace("{room}", env.room)
            # Every route without a token and with one wrong form; every wrong form on one route.
            forms = wrong if i == 0 else [wrong[0], wrong[1 + i % (len(wrong) - 1)]]
            for headers in forms:
                r = await c.request(method, url, headers=headers, json={"capacity": 3})
                assert r.status_code == 401, (method, url, headers, r.status_code)
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert r.json() == {"detail": "missing or invalid bearer token"}
                assert env.room not in r.text
            ok = await c.request(method, url, headers=AUTH, json={"capacity": 3})
            assert ok.status_code != 401, (method, url)
        # Nothing changed through all those refused requests... except by the valid ones.
        assert (await c.get("/admin/nope", headers=AUTH)).status_code == 404
        assert (await c.get("/", headers=AUTH)).json() == {"detail": "Not Found"}
        r = await c.post(
            f"/admin/rooms/{env.room}/pause", headers={"authorization": "bearer " + TOKEN}
        )
        assert r.status_code == 200, "the scheme is case-insensitive (RFC 9110)"
    # Constant time by construction: every comparison saw two SHA-256 digests.
    assert compared and set(compared) == {(32, 32)}


@pytest.mark.parametrize("store_kind", ["memory"], indirect=True)
async def test_dashboard_shell_is_public_but_holds_no_data(make_env: Any) -> None:
    async with make_env() as env, client(env.a.admin) as c:
        for path in ("/admin/", "/admin/dashboard"):
            r = await c.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            csp = r.headers["content-security-policy"]
            nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
            assert f'<script nonce="{nonce}">' in r.text and f'<style nonce="{nonce}">' in r.text
            assert "default-src 'none'" in csp and "connect-src 'self'" in csp
            assert env.room not in r.text and TOKEN not in r.text
            assert "sessionStorage" in r.text and '"Authorization": "Bearer "' in r.text
            assert "http://" not in r.text and "https://" not in r.text, "no external resources"
            assert r.headers["cache-control"] == "no-store"
        second = await c.get("/admin/")
        assert second.headers["content-security-policy"] != csp, "a fresh nonce per response"
        # The shell is public only for reading.
        assert (await c.post("/admin/")).status_code == 401
        assert (await c.get("/admin/stats")).status_code == 401


@pytest.mark.parametrize("store_kind", ["memory"], indirect=True)
async def test_every_get_route_answers_head(make_env: Any) -> None:
    async with make_env() as env, client(env.a.admin) as c:
        for path in ("/metrics", "/admin/rooms", f"/admin/rooms/{env.room}", "/admin/stats",
                     "/admin/openapi.json", "/admin/", "/admin/dashboard"):  # fmt: skip
            got = await c.get(path, headers=AUTH)
            r = await c.head(path, headers=AUTH)
            assert r.status_code == 200 == got.status_code, (path, r.status_code)
            assert r.content == b"" and r.headers["content-type"] == got.headers["content-type"]
        assert (await c.head("/admin/stats")).status_code == 401
        assert (await c.head("/admin/")).status_code == 200, "the public shell"


def test_bearer_auth_refuses_an_empty_token() -> None:
    with pytest.raises(ValueError):
        BearerAuth(Starlette(), "", public_paths=frozenset())
    assert TOKEN not in repr(BearerAuth(Starlette(), TOKEN, public_paths=frozenset()))
    digest = hashlib.sha256(TOKEN.encode()).digest()
    assert TOKEN.encode() not in digest
