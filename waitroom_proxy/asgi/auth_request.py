"""The request a forward-auth request describes (:mod:`.forward_auth`), rebuilt as an ASGI
scope: split from the handler so each module keeps one job."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import Scope

from waitroom_proxy.asgi.edge import Refusal

__all__ = ["describe"]

Header = tuple[bytes, bytes]

_ORIGINAL_URI = b"x-original-uri"
_ORIGINAL_URL = b"x-original-url"
_ORIGINAL_METHOD = b"x-original-method"
_FORWARDED_URI = b"x-forwarded-uri"
_FORWARDED_METHOD = b"x-forwarded-method"
_FORWARDED_HOST = b"x-forwarded-host"
_DESCRIPTION = frozenset(
    {
        _ORIGINAL_URI,
        _ORIGINAL_URL,
        _ORIGINAL_METHOD,
        _FORWARDED_URI,
        _FORWARDED_METHOD,
        _FORWARDED_HOST,
        b"host",
    }
)
"""Headers of the auth request that describe the original request: none of them is a header
of the original request, and each may come once."""
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
"""The auth request's own framing (it has no body to describe)."""


def describe(scope: Scope) -> Scope:
    """The original request that an auth request describes, as an unprepared ASGI scope.

    Exactly one description must be present: ``X-Original-URL`` / ``X-Original-URI`` (nginx,
    ingress-nginx; both may come together if they name the same target) or
    ``X-Forwarded-Uri`` (Caddy, Traefik, Envoy). A second description is what a visitor adds
    to fool the LB that sets only one of them (nginx passes a visitor's ``X-Forwarded-Uri``
    on, Caddy a visitor's ``X-Original-URI``), so it is refused, as is any of them repeated.

    Raises:
        Refusal: 403, with the reason.
    """
    found: dict[bytes, bytes] = {}
    kept: list[Header] = []
    for name, value in scope["headers"]:  # one pass: the description, and the rest
        if name in _DESCRIPTION:
            if name in found:
                raise Refusal(403, f"forward-auth: {name.decode()} sent more than once")
            found[name] = value
        elif name not in _FRAMING:
            kept.append((name, value))
    one = found.get
    original_url = one(_ORIGINAL_URL)
    original_uri = one(_ORIGINAL_URI)
    forwarded_uri = one(_FORWARDED_URI)
    host = one(b"host")
    if forwarded_uri is not None:
        if original_uri is not None or original_url is not None:
            raise Refusal(403, "forward-auth: both X-Original-* and X-Forwarded-Uri were sent")
        target = forwarded_uri
        method = one(_FORWARDED_METHOD)
        host = one(_FORWARDED_HOST) or host
    elif original_url is not None:
        parts = urlsplit(original_url.decode("latin-1"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Refusal(403, "forward-auth: X-Original-URL is not an absolute http(s) URL")
        target = original_url[original_url.index(b"//") + 2 + len(parts.netloc) :] or b"/"
        if original_uri is not None and original_uri != target:
            raise Refusal(403, "forward-auth: X-Original-URL and X-Original-URI disagree")
        host = parts.netloc.encode("latin-1")
        method = one(_ORIGINAL_METHOD)
    elif original_uri is not None:
        target = original_uri
        method = one(_ORIGINAL_METHOD)
    else:
        raise Refusal(403, "forward-auth: no X-Original-URI, X-Original-URL or X-Forwarded-Uri")
    if not target.startswith(b"/"):
        raise Refusal(403, "forward-auth: the original target must start with /")
    if host:
        kept.insert(0, (b"host", host))
    path, _, query = target.partition(b"?")
    # The edge's own keys describe the auth request: the original gets its own.
    original = {k: v for k, v in scope.items() if not k.startswith("waitroom.")}
    original.update(
        method=(method.decode("latin-1").upper() if method else scope.get("method", "GET")),
        headers=kept,
        path=path.decode("latin-1"),
        raw_path=path,
        query_string=query,
    )
    original["waitroom.request_target"] = target
    return original
