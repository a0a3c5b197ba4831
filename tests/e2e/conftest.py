"""Fixtures of the waiting-page browser tests: the scripted room and its server (one per module),
and the requests a browser context makes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext

from tests.e2e.scripted_page import WATCH_SCRIPT, BackgroundServer, ScriptedRoom, make_app
from waitroom_proxy.asgi.page import PageRenderer


@pytest.fixture(scope="module")
def scripted_room() -> ScriptedRoom:
    return ScriptedRoom()


@pytest.fixture(scope="module")
def server(scripted_room: ScriptedRoom) -> Iterator[BackgroundServer]:
    with BackgroundServer(make_app(scripted_room, PageRenderer())) as running:
        yield running


@pytest.fixture
def room(scripted_room: ScriptedRoom) -> ScriptedRoom:
    scripted_room.reset()
    return scripted_room


@pytest_asyncio.fixture(loop_scope="session")
async def requests_seen(context: BrowserContext) -> list[str]:
    seen: list[str] = []
    context.on("request", lambda request: seen.append(request.url))
    await context.add_init_script(WATCH_SCRIPT)
    return seen
