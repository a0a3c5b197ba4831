"""Session binding through the real proxy (issue 15, scalper defence): a session cookie copied
to another network or browser is refused with a clear 403 (page or JSON ``moved``), never
passed to the origin and never silently re-queued; the same client keeps passing, renewals
stay bound. Clients are told apart by ``X-Forwarded-For`` from a trusted loopback proxy (the
edge resolves the client address once, as in production behind a load balancer).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability.rig import JSON, client, proxy_rig, report
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.domain.policy import RoomPolicy

ROOM = "bound"
SERVER = {"client_rate_limit": 0, "trusted_proxies": ("127.0.0.1/32",)}


def visitor(ip: str, agent: str) -> dict[str, str]:
    return {"x-forwarded-for": ip, "user-agent": agent}


async def session_of(url: str, who: dict[str, str]) -> str:
    async with client(url, headers=who) as c:
        r = await c.get("/sale")
        assert r.json() == {"origin": True}, r.text
        return str(c.cookies["waitroom_session"])


async def get_with(url: str, cookie: str, who: dict[str, str], **headers: str) -> Any:
    async with client(url, headers={**who, "cookie": f"waitroom_session={cookie}"}) as c:
        return await c.get("/sale", headers=headers)


@pytest.mark.parametrize(
    ("mode", "elsewhere", "passes"),
    [
        ("ip", visitor("198.51.100.9", "Browser A"), False),
        ("ip", visitor("203.0.113.200", "Browser B"), True),  # same /24, any browser
        ("ua", visitor("198.51.100.9", "Browser A"), True),
        ("ua", visitor("203.0.113.7", "Browser B"), False),
        ("ip+ua", visitor("203.0.113.7", "Browser B"), False),
        ("ip+ua", visitor("198.51.100.9", "Browser A"), False),
        ("ip+ua", visitor("203.0.113.8", "Browser A"), True),
        ("none", visitor("198.51.100.9", "Browser B"), True),
    ],
)
async def test_a_copied_session_cookie(mode: str, elsewhere: dict[str, str], passes: bool) -> None:
    policy = RoomPolicy(name=ROOM, capacity=5, heartbeat_interval=1, session_binding=mode)
    async with proxy_rig(policy, store=MemoryStore(), server=SERVER) as rig:
        owner = visitor("203.0.113.7", "Browser A")
        cookie = await session_of(rig.url, owner)
        hits = rig.origin.hits["/sale"]
        assert (await get_with(rig.url, cookie, owner)).json() == {"origin": True}
        page = await get_with(rig.url, cookie, elsewhere)
        api = await get_with(rig.url, cookie, elsewhere, **JSON)
        report(f"session cookie copied, binding {mode}", status=page.status_code)
        if passes:
            assert page.status_code == 200 and page.json() == {"origin": True}
            return
        assert page.status_code == 403 and api.status_code == 403
        assert "This session belongs to another browser" in page.text
        assert 'href="/sale"' in page.text, "the page's button joins the queue knowingly"
        assert api.json()["status"] == "moved" and api.json()["room"] == ROOM
        cleared = page.headers.get_list("set-cookie")
        assert any(c.startswith("waitroom_session=;") and "Max-Age=0" in c for c in cleared)
        assert rig.origin.hits["/sale"] == hits + 1, "the copy never reached the origin"
        # The owner is not disturbed, and the room did not count the copy as a newcomer.
        assert (await get_with(rig.url, cookie, owner)).json() == {"origin": True}
        assert (await rig.gate.store.stats(ROOM)).active == 1


async def test_renewed_and_ipv6_sessions_stay_bound() -> None:
    policy = RoomPolicy(
        name=ROOM, capacity=5, heartbeat_interval=1, session_ttl=4, session_binding="ip"
    )
    now = [1_800_000_000.0]
    async with proxy_rig(policy, store=MemoryStore(), server=SERVER, clock=lambda: now[0]) as rig:
        owner = visitor("2001:db8:1:2::10", "A")
        cookie = await session_of(rig.url, owner)
        now[0] += 3  # past half the session's life: the next request renews it
        async with client(rig.url, headers={**owner, "cookie": f"waitroom_session={cookie}"}) as c:
            r = await c.get("/sale")
            renewed = r.cookies.get("waitroom_session")
        assert renewed and renewed != cookie, "renewed"
        same_net = visitor("2001:db8:1:2:ffff::1", "B")
        other_net = visitor("2001:db8:1:3::10", "A")
        assert (await get_with(rig.url, renewed, same_net)).json() == {"origin": True}
        assert (await get_with(rig.url, renewed, other_net)).status_code == 403
