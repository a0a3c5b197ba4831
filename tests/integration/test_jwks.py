"""Asymmetric session keys: the origin verifies ``Waitroom-Verified`` with the published JWKS."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.server import build_app


async def test_origin_verifies_session_with_jwks(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / "session.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    async def echo(request: Request) -> Response:
        return JSONResponse({"token": request.headers.get("waitroom-verified")})

    origin = Starlette(routes=[Route("/{p:path}", echo)])
    async with serve_asgi(origin) as origin_url:
        settings = Settings(
            rooms=(RoomPolicy(name="sale", capacity=5),),
            upstream=origin_url,
            secret="jwks-" + "k" * 32,
            signing_key_file=str(pem),
        )
        async with serve_asgi(build_app(settings, store=MemoryStore())) as url:
            async with httpx.AsyncClient(base_url=url) as c:
                token = (await c.get("/buy")).json()["token"]
                jwks = (await c.get("/_waitroom/jwks.json")).json()
    assert len(jwks["keys"]) == 1 and jwks["keys"][0]["alg"] == "EdDSA"
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == jwks["keys"][0]["kid"]
    public = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(token, public, algorithms=["EdDSA"], audience="sale",
                        issuer="waitroom-proxy")  # fmt: skip
    assert claims["sub"] and claims["jti"]
