"""What the proxy does to the origin's response before the visitor sees it (pure, no I/O).

- **Redirects to the origin's own address** are rewritten to the public one, as nginx's
  ``proxy_redirect default`` does: a ``Location`` (also ``Content-Location`` and ``Refresh``)
  of ``http://127.0.0.1:18300/std/vec/`` would send the visitor to the origin directly, past the
  room. ``Location`` and ``Content-Location`` become absolute URLs on the visitor's scheme and
  Host; ``Refresh`` becomes a path (as nginx writes it). Only URLs on the configured upstream
  (and under its path prefix, if any) are touched; relative ones and other sites are left.
- **Proxy errors** (502/504) answer a short JSON object when the client asked for JSON (API
  clients, the waiting page's own script), the HTML page otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from .headers import Header

ErrorPage = Callable[[int, str], bytes]

# The most an HTTP/1.0 client's response is buffered to give it a Content-Length (the ASGI
# server would otherwise frame an unknown-length body as chunked, which HTTP/1.0 lacks).
HTTP10_BUFFER_MAX = 8 * 1024 * 1024

REASONS = {
    502: "Bad Gateway",
    504: "Gateway Timeout",
}
ERROR_TEXTS: dict[int, tuple[str, str]] = {
    429: ("Too many requests", "Please wait a moment before trying again."),
    500: ("Something went wrong", "Please try again in a moment."),
    502: ("The site is not answering", "The site is not answering; try again in a moment."),
    503: ("The site is unavailable", "The site is unavailable; try again in a moment."),
    504: (
        "The site is taking too long",
        "The site is taking too long to answer; try again in a moment.",
    ),
}
"""(title, message) a visitor reads for each error status, on the HTML page
(``asgi.page.PageRenderer.status_page``) and in the JSON answer alike."""


def error_text(status: int) -> tuple[str, str]:
    """The (title, message) of an error status (:data:`ERROR_TEXTS`, or a generic one)."""
    return ERROR_TEXTS.get(
        status, ("Something went wrong", "The site could not answer; try again in a moment.")
    )


_REDIRECT_HEADERS = frozenset({b"location", b"content-location", b"refresh"})
_ERROR_CODES = {502: "bad_gateway", 504: "gateway_timeout"}


class RedirectRewriter:
    """Rewrites absolute URLs that point at the upstream itself to the visitor's address.

    Args:
        secure: the upstream is ``https``.
        host: the upstream's host name or address (IPv6 without brackets).
        port: the upstream's port.
        prefix: the upstream URL's path prefix (``b""`` or ``b"/std"``), stripped on rewrite.
    """

    __slots__ = ("_origins", "_prefix")

    def __init__(self, *, secure: bool, host: str, port: int, prefix: bytes) -> None:
        scheme = "https" if secure else "http"
        name = f"[{host}]" if ":" in host else host
        default = 443 if secure else 80
        spellings = [f"{scheme}://{name}:{port}"]
        if port == default:
            spellings.append(f"{scheme}://{name}")
        self._origins = tuple(s.lower().encode("latin-1") for s in spellings)
        self._prefix = prefix

    def _url(self, url: bytes, public: bytes) -> bytes | None:
        low = url.lower()
        for origin in self._origins:
            if not low.startswith(origin):
                continue
            rest = url[len(origin) :]
            if rest and rest[:1] not in (b"/", b"?", b"#"):
                continue  # e.g. http://127.0.0.1:18300 vs http://127.0.0.1:183001
            if self._prefix:
                if not (rest == self._prefix or rest.startswith(self._prefix + b"/")):
                    continue  # outside the prefix: nginx's default leaves it too
                rest = rest[len(self._prefix) :]
            return public + (rest or b"/")
        return None

    def rewrite(self, headers: list[Header], public: bytes) -> list[Header]:
        """``headers`` with upstream URLs replaced by ``public`` (``scheme://host``).

        Returns the same list object when nothing needed a change (the common case).
        """
        out: list[Header] | None = None
        for i, (name, value) in enumerate(headers):
            if name not in _REDIRECT_HEADERS:
                continue
            if name == b"refresh":
                new = self._refresh(value, public)
            else:
                new = self._url(value.strip(), public)
            if new is not None:
                if out is None:
                    out = list(headers)
                out[i] = (name, new)
        return headers if out is None else out

    def _refresh(self, value: bytes, public: bytes) -> bytes | None:
        # ``Refresh: 5; url=http://...`` (the URL is the rest of the value, maybe quoted).
        at = value.lower().find(b"url=")
        if at < 0:
            return None
        start = at + 4
        quote = value[start : start + 1]
        if quote in (b'"', b"'"):
            start += 1
        url = value[start:]
        if quote in (b'"', b"'") and url.endswith(quote):
            url = url[:-1]
        # As nginx does, the URL becomes a path on the same site (the browser keeps the public
        # scheme and host), so no public address needs to be known.
        new = self._url(url.strip(), b"")
        if new is None:
            return None
        return value[:start] + new + (quote if quote in (b'"', b"'") else b"")


def accepts_json(headers: Iterable[Header]) -> bool:
    """The client asked for JSON rather than HTML (the waiting page's script, API clients)."""
    for name, value in headers:
        if name == b"accept":
            return b"application/json" in value and b"text/html" not in value
    return False


def error_response(
    status: int, reason: str, message: str, *, json_wanted: bool, page: ErrorPage
) -> tuple[list[Header], bytes]:
    """Headers and body of a proxy error: small JSON when asked for, else the HTML page."""
    if json_wanted:
        code = _ERROR_CODES.get(status, "upstream_error")
        body = json.dumps({"error": code, "status": status, "message": message}).encode()
        content_type = b"application/json"
    else:
        body = page(status, reason)
        content_type = b"text/html; charset=utf-8"
    return [
        (b"content-type", content_type),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
    ], body
