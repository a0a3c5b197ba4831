"""HTTPS upstreams signed by an internal CA, and what ``/readyz`` tells the public.

A real TLS origin (uvicorn with a certificate for 127.0.0.1 from a CA made here):
- without ``upstream_ca_file`` every request fails verification (502) and ``/readyz`` says
  the upstream is down: it checks the way requests connect (TLS with the same context), not
  with a plain TCP connect that would report "ok";
- with it, HTTP and WebSocket requests pass and ``/readyz`` is ok;
- ``/readyz`` answers only ok/down per check: the store's address and error go to the log.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from tests.fixtures.asgi_server import serve_asgi
from tests.fixtures.origin import Origin, run_origin
from tests.fixtures.origin import serve_asgi as serve_plain
from tests.fixtures.redis_server import free_port
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.asgi.proxy import UpstreamProxy
from waitroom_proxy.config import Settings, load_settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.errors import ConfigError
from waitroom_proxy.server import build_app

SECRET = "tls-test-" + "t" * 32


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """An internal CA and a server certificate for 127.0.0.1 signed by it."""
    out = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("waitroom test CA"))
        .issuer_name(_name("waitroom test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(out / "ca.pem", out / "cert.pem", out / "key.pem")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


@pytest.fixture
async def tls_origin(pki: Pki) -> AsyncIterator[tuple[str, Origin]]:
    async with run_origin() as plain:
        async with serve_plain(plain, ssl_certfile=str(pki.cert), ssl_keyfile=str(pki.key)) as url:
            yield url.replace("http://", "https://"), plain


def settings_for(upstream: str, **server: Any) -> Settings:
    room = RoomPolicy(name="tls", capacity=5)
    return Settings(rooms=(room,), upstream=upstream, secret=SECRET, **server)


async def test_without_the_ca_requests_fail_and_readyz_says_so(
    tls_origin: tuple[str, Origin],
) -> None:
    upstream, _ = tls_origin
    app = build_app(settings_for(upstream), store=MemoryStore(), access_log=False)
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:
        assert (await c.get("/echo")).status_code == 502
        r = await c.get("/_waitroom/readyz")
        assert r.status_code == 503, r.text
        assert r.json() == {"status": "unavailable", "checks": {"store": "ok", "upstream": "down"}}


async def test_with_upstream_ca_file_requests_pass_and_readyz_is_ok(
    tls_origin: tuple[str, Origin], pki: Pki
) -> None:
    upstream, origin = tls_origin
    settings = settings_for(upstream, upstream_ca_file=str(pki.ca))
    app = build_app(settings, store=MemoryStore(), access_log=False)
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:
        r = await c.get("/echo/x")
        assert r.status_code == 200, r.text
        assert r.json()["path"] == "/echo/x"
        r = await c.get("/_waitroom/readyz")
        assert r.status_code == 200 and r.json()["checks"] == {"store": "ok", "upstream": "ok"}
    assert origin.requests


async def test_websocket_to_a_tls_origin_uses_the_same_ca(
    tls_origin: tuple[str, Origin], pki: Pki
) -> None:
    upstream, _ = tls_origin
    proxy = UpstreamProxy(upstream, ca_file=str(pki.ca))
    try:
        async with serve_plain(proxy) as url:
            async with connect(url.replace("http://", "ws://") + "/ws") as ws:
                await ws.send("hello over wss")
                assert await ws.recv() == "hello over wss"
    finally:
        await proxy.aclose()


async def test_readyz_tells_the_public_ok_or_down_and_the_log_the_detail(
    tls_origin: tuple[str, Origin], pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    upstream, _ = tls_origin
    dead = free_port()  # nothing listens here: the store is down
    store = RedisStore.from_url(f"redis://127.0.0.1:{dead}/0", timeout=0.2)
    settings = settings_for(upstream, upstream_ca_file=str(pki.ca))
    app = build_app(settings, store=store, access_log=False)
    with caplog.at_level(logging.INFO, logger="waitroom_proxy.asgi.routes"):
        async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:
            bodies = [await c.get("/_waitroom/readyz") for _ in range(3)]
    for r in bodies:
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "checks": {"store": "down", "upstream": "ok"}}
        assert str(dead) not in r.text and "127.0.0.1" not in r.text and "Error" not in r.text
    logged = [rec.getMessage() for rec in caplog.records if "readyz" in rec.getMessage()]
    assert len(logged) == 1, logged  # once, not once per probe
    assert "store is down" in logged[0] and str(dead) in logged[0]


def test_upstream_ca_file_from_env_and_refused_when_not_pem(pki: Pki, tmp_path: Path) -> None:
    env = {"WAITROOM_CAPACITY": "1", "WAITROOM_UPSTREAM_CA_FILE": str(pki.ca)}
    assert load_settings(None, env=env).upstream_ca_file == str(pki.ca.resolve())
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={**env, "WAITROOM_UPSTREAM_CA_FILE": str(junk)})
    (problem,) = info.value.problems
    assert problem.startswith(
        f'WAITROOM_UPSTREAM_CA_FILE: not a PEM file of CA certificates "{junk}"'
    )
    json.dumps(problem)  # one line of text, no traceback object
