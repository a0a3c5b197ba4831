"""Tickets and session tokens: what is accepted and, above all, what is refused."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from waitroom_proxy.domain.session_cache import SessionCache
from waitroom_proxy.domain.tokens import (
    SESSION_TYP,
    SessionSigner,
    Ticket,
    TicketSigner,
    new_place_id,
)
from waitroom_proxy.errors import TokenError

NOW = 1_800_000_000.0
K = "k" * 32
SECRET = "secret-" + "s" * 32
OTHER = "another-" + "a" * 32


def _pem(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_ticket_round_trip_and_rotation() -> None:
    old = TicketSigner(["old-secret"])
    t = Ticket("sale", new_place_id(), 42, int(NOW), int(NOW) - 5, 60, "/checkout?a=1")
    value = old.dumps(t)
    rotated = TicketSigner(["new-secret", "old-secret"])
    assert rotated.loads(value) == t
    assert rotated.loads(rotated.dumps(t)) == t
    with pytest.raises(TokenError):
        TicketSigner(["new-secret"]).loads(value)


def test_a_ticket_carries_its_last_touch_and_version_0_1_tickets_still_read() -> None:
    """Waiters holding a ticket of version 0.1 (seven fields, no touch) keep their place
    through an upgrade; their next poll touches the store (``domain.pacing``)."""
    signer = TicketSigner([SECRET])
    t = Ticket("sale", "pid", 42, int(NOW), int(NOW), 60, "/", 5_000, 77, int(NOW) - 3, "ab12cd34")
    assert signer.loads(signer.dumps(t)) == t
    old = signer._serializer.dumps(["sale", "pid", 42, int(NOW), int(NOW), 60, "/"])
    legacy = signer.loads(str(old))
    assert (legacy.score, legacy.position, legacy.touched, legacy.epoch) == (42, 0, 0, "")
    for bad in (
        ["sale", "pid", 42, int(NOW), int(NOW), 60, "/", -1, 77, int(NOW), "e"],
        ["sale", "pid", 42, int(NOW), int(NOW), 60, "/", 5, 77, int(NOW), 7],
        ["sale", "pid", 42, int(NOW), int(NOW), 60, "/", 5, True, int(NOW), "e"],
        ["sale", "pid", 42, int(NOW), int(NOW), 60, "/", 5],
    ):
        with pytest.raises(TokenError):
            signer.loads(str(signer._serializer.dumps(bad)))


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_ticket_parser_never_crashes(value: str) -> None:
    signer = TicketSigner(["s"])
    try:
        signer.loads(value)
    except TokenError:
        pass


def test_ticket_tampered_payload_refused() -> None:
    signer = TicketSigner(["s"])
    value = signer.dumps(Ticket("sale", "abc", 1, 1, 1, -1, "/"))
    payload, _, sig = value.rpartition(".")
    forged = base64.urlsafe_b64encode(json.dumps(["sale", "abc", 0, 1, 1, -1, "/"]).encode())
    with pytest.raises(TokenError):
        signer.loads(forged.decode().rstrip("=") + "." + sig)
    with pytest.raises(TokenError):
        signer.loads(value[:-3])


def test_session_hs256_round_trip() -> None:
    s = SessionSigner([SECRET])
    token, sess = s.issue("sale", "pid1", now=NOW, ttl=300)
    got = s.verify(token, now=NOW + 10, room="sale")
    assert got == sess
    assert got.expires_at == int(NOW) + 300
    header = jwt.get_unverified_header(token)
    assert header["typ"] == SESSION_TYP and header["alg"] == "HS256" and header["kid"]


def test_session_refusals() -> None:
    s = SessionSigner([SECRET])
    token, _ = s.issue("sale", "pid1", now=NOW, ttl=300)
    with pytest.raises(TokenError, match="expired"):
        s.verify(token, now=NOW + 301, room="sale")
    with pytest.raises(TokenError):
        s.verify(token, now=NOW, room="other-room")
    with pytest.raises(TokenError):
        SessionSigner([SECRET], issuer="someone-else").verify(token, now=NOW, room="sale")
    with pytest.raises(TokenError):
        SessionSigner([OTHER]).verify(token, now=NOW, room="sale")
    for bad in ("", "a.b.c", "x" * 5000, token[:-2], token + "x"):
        with pytest.raises(TokenError):
            s.verify(bad, now=NOW, room="sale")


def test_alg_none_and_wrong_typ_refused() -> None:
    s = SessionSigner([SECRET])
    token, _ = s.issue("sale", "pid1", now=NOW, ttl=300)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    none_token = jwt.encode(
        claims, None, algorithm="none", headers={"kid": header["kid"], "typ": SESSION_TYP}
    )
    with pytest.raises(TokenError):
        s.verify(none_token, now=NOW, room="sale")
    wrong_typ = jwt.encode(
        claims, SECRET.encode(), algorithm="HS256", headers={"kid": header["kid"], "typ": "JWT"}
    )
    with pytest.raises(TokenError, match="type"):
        s.verify(wrong_typ, now=NOW, room="sale")


def test_ticket_never_passes_as_session() -> None:
    tickets = TicketSigner(["secret"])
    sessions = SessionSigner([SECRET])
    value = tickets.dumps(Ticket("sale", "pid", 1, int(NOW), int(NOW), -1, "/"))
    with pytest.raises(TokenError):
        sessions.verify(value, now=NOW, room="sale")


@pytest.mark.parametrize("kind", ["ed25519", "p256"])
def test_asymmetric_keys_and_algorithm_confusion(kind: str) -> None:
    key = (
        ed25519.Ed25519PrivateKey.generate()
        if kind == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    s = SessionSigner([SECRET], private_key_pem=_pem(key))
    token, _ = s.issue("sale", "pid", now=NOW, ttl=60)
    assert s.verify(token, now=NOW, room="sale").place_id == "pid"
    jwks = s.jwks()["keys"]
    assert len(jwks) == 1 and jwks[0]["kid"] == jwt.get_unverified_header(token)["kid"]
    # Verify with the published JWK alone, as an origin would.
    pub = jwt.PyJWK(jwks[0])
    opts = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    origin_view = jwt.decode(token, pub.key, algorithms=[jwks[0]["alg"]], audience="sale",
                             options=opts)  # fmt: skip
    assert origin_view["sub"] == "pid"
    # HS256 "signed" with the public key as the HMAC secret, under the asymmetric kid.
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    import hashlib
    import hmac

    h = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "kid": jwks[0]["kid"], "typ": SESSION_TYP}).encode()
    ).rstrip(b"=")
    p = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    sig = base64.urlsafe_b64encode(hmac.new(public_pem, h + b"." + p, hashlib.sha256).digest())
    confused = (h + b"." + p + b"." + sig.rstrip(b"=")).decode()
    with pytest.raises(TokenError):
        s.verify(confused, now=NOW, room="sale")


def test_session_max_caps_expiry() -> None:
    s = SessionSigner([K])
    _, sess = s.issue("r", "p", now=NOW, ttl=300, started_at=int(NOW) - 3500, max_age=3600)
    assert sess.expires_at == int(NOW) - 3500 + 3600


def test_cache_expiry_and_revocation() -> None:
    s = SessionSigner([K])
    cache = SessionCache(max_entries=4)
    token, sess = s.issue("r", "p", now=NOW, ttl=10)
    cache.put(token, sess)
    assert cache.get(token, NOW + 1) == sess
    assert cache.get(token, NOW + 11) is None
    cache.put(token, sess)
    cache.revoke("p", NOW + 100)
    assert cache.get(token, NOW + 1) is None
    cache.prune(NOW + 101)
    assert cache.revoked == {}
    for i in range(10):
        t, x = s.issue("r", f"p{i}", now=NOW, ttl=10)
        cache.put(t, x)
    assert len(cache) <= 4


def test_ticket_carries_its_first_position_and_old_tickets_still_read() -> None:
    signer = TicketSigner([SECRET])
    t = Ticket("sale", "pid", 1, int(NOW), int(NOW), -1, "/", first=17)
    assert signer.loads(signer.dumps(t)).first == 17
    # A ticket signed before ``first`` existed (seven fields) keeps its place: first unknown.
    legacy = signer._serializer.dumps(["sale", "pid", 1, int(NOW), int(NOW), -1, "/"])
    assert signer.loads(str(legacy)) == Ticket("sale", "pid", 1, int(NOW), int(NOW), -1, "/")
    for bad in (-1, "3", 1.5, True):
        forged = signer._serializer.dumps(["sale", "pid", 1, 1, 1, -1, "/", 0, 0, 0, "", bad])
        with pytest.raises(TokenError, match="malformed"):
            signer.loads(str(forged))
