"""Honest numbers and a live message on the waiting page, through real proxies and the admin
API (issue 15, items 3 and 4): one progress formula for the JSON, the scripted page and the
script-free page; a message set with ``PATCH /admin/rooms/{room}`` reaches every replica's
JSON and page, escaped, and goes away when cleared.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import escape

from tests.integration.admin_helpers import AUTH, JSON, client, eventually
from waitroom_proxy.domain.progress import progress_percent

BAR = re.compile(r'<progress id="wr-progress" max="100" value="(\d+)">')


async def test_progress_is_one_formula_from_the_position_at_joining(make_env: Any) -> None:
    async with make_env(capacity=1) as env:
        async with client(env.a.url) as holder:
            assert (await holder.get("/", headers=JSON)).json().get("verified")
            waiters = [client(env.a.url) for _ in range(3)]
            for w in waiters:
                await w.get("/", headers=JSON)
            last = waiters[-1]
            joined = (await last.get("/", headers=JSON)).json()
            assert (joined["position"], joined["first_position"]) == (3, 3)
            assert joined["progress"] == progress_percent(3, 3) == 25
            await waiters[0].post("/_waitroom/leave")
            await waiters[1].post("/_waitroom/leave")
            now = (await last.post("/_waitroom/heartbeat")).json()
            assert (now["position"], now["first_position"]) == (1, 3)
            assert now["progress"] == progress_percent(3, 1) == 75
            page = await last.get("/")  # the script-free page: the same bar
            match = BAR.search(page.text)
            assert match is not None and int(match[1]) == now["progress"]
            for w in waiters:
                await w.aclose()


async def test_a_waiter_at_the_front_sees_half_a_bar(make_env: Any) -> None:
    async with make_env(capacity=1) as env, client(env.a.url) as holder:
        await holder.get("/")
        async with client(env.a.url) as front:
            body = (await front.get("/", headers=JSON)).json()
            assert (body["position"], body["progress"]) == (1, 50)
            match = BAR.search((await front.get("/")).text)
            assert match is not None and match[1] == "50", "0.1 showed an empty bar here"


async def test_a_message_set_live_reaches_every_replica_escaped(make_env: Any) -> None:
    async with make_env(n=2, capacity=1) as env:
        text = 'Sold out soon <script>alert("x")</script> & more'
        async with (
            client(env.a.url) as holder,
            client(env.a.url) as wa,
            client(env.b.url) as wb,
            client(env.a.admin, headers=AUTH) as adm,
        ):
            await holder.get("/")
            assert (await wa.get("/", headers=JSON)).json()["message"] is None
            r = await adm.patch(f"/admin/rooms/{env.room}", json={"message": text})
            assert r.status_code == 200 and r.json()["policy"]["message"] == text, r.text

            async def seen_on_b() -> bool:
                body = (await wb.get("/", headers=JSON)).json()
                return bool(body.get("message") == text)

            await eventually(seen_on_b, 5, "the message on the other replica")
            assert (await wa.post("/_waitroom/heartbeat")).json()["message"] == text
            page = (await wb.get("/")).text
            assert str(escape(text)) in page and "<script>alert" not in page
            assert '<p id="wr-message" class="notice" role="status">' in page

            r = await adm.patch(f"/admin/rooms/{env.room}", json={"message": "x" * 501})
            assert r.status_code == 422 and r.json()["detail"][0]["field"] == "message"
            r = await adm.patch(f"/admin/rooms/{env.room}", json={"message": ""})
            assert r.status_code == 200 and r.json()["policy"]["message"] is None

            async def cleared() -> bool:
                return (await wb.get("/", headers=JSON)).json().get("message") is None

            await eventually(cleared, 5, "the message cleared on the other replica")
            assert 'id="wr-message" class="notice" role="status" hidden' in (await wb.get("/")).text
