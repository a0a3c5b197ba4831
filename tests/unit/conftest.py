"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from waitroom_proxy.asgi.page import PageRenderer


@pytest.fixture(scope="module")
def renderer() -> PageRenderer:
    return PageRenderer()
