"""Where the pages come from: the built-in template files (from the installed package or the
source checkout), the CSP nonce and header of a rendered page. Split from :mod:`.page`
(which renders), whose names these stay too."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path

from jinja2 import BaseLoader, Environment, TemplateNotFound

__all__ = [
    "BuiltinLoader",
    "builtin_source",
    "content_security_policy",
    "new_nonce",
    "pow_worker_source",
]

_NONCE_RE = re.compile(r"[A-Za-z0-9+/_=-]{8,128}")


def new_nonce() -> str:
    """A fresh CSP nonce (128 random bits, URL-safe base64)."""
    return secrets.token_urlsafe(16)


def content_security_policy(nonce: str) -> str:
    """The Content-Security-Policy header value for a page rendered with ``nonce``.

    Raises:
        ValueError: ``nonce`` is not 8-128 base64/base64url characters (it goes into a header).
    """
    if not _NONCE_RE.fullmatch(nonce):
        raise ValueError("CSP nonce must be 8-128 base64 characters")
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src data:; worker-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def pow_worker_source() -> str:
    """The proof-of-work Web Worker (``templates/pow-worker.js``), served by the routes."""
    return builtin_source("pow-worker.js")


@cache
def builtin_source(name: str) -> str:
    """A built-in template file, from the installed package or the source checkout."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise TemplateNotFound(name)
    try:
        return resources.files("waitroom_proxy.templates").joinpath(name).read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    path = Path(__file__).parents[2] / "templates" / name
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        raise TemplateNotFound(name) from None


class BuiltinLoader(BaseLoader):
    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        return builtin_source(template), None, lambda: True
