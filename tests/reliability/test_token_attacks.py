"""Hostile session tokens: 10k mutations and every known forgery, refused; key rotation.

The bulk goes through ``Gatekeeper.session_for`` (what the middleware calls for every request
with a session cookie; includes the verified-token cache); a sample of each kind is then sent
through the real proxy, where the visitor must get the waiting page and the origin nothing.
"""

from __future__ import annotations

import base64
import json
import random
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.reliability.rig import JSON, SECRET, admitted_client, client, proxy_rig, report
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.tokens import SESSION_TYP, SessionSigner, Ticket, TicketSigner

ROOM = "tok"
MUTATIONS = 10_000
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/% "


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode_parts(token: str) -> tuple[bytes, ...] | None:
    try:
        return tuple(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in token.split("."))
    except ValueError:
        return None


def mutate(token: str, rng: random.Random) -> str:
    chars = list(token)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        i = rng.randrange(len(chars))
        if op < 0.5:
            chars[i] = rng.choice(ALPHABET)
        elif op < 0.7:
            del chars[i]
        elif op < 0.85:
            chars.insert(i, rng.choice(ALPHABET))
        else:
            chars = chars[: rng.randrange(1, len(chars))]
    return "".join(chars)


def forged(signer: SessionSigner, ed_pem_public: bytes, ed_kid: str, now: float) -> dict[str, Any]:
    """One list of tokens per forgery kind, each of which must be refused."""
    good, _ = signer.issue(ROOM, "place-1", now=now, ttl=300)
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    hs_kid = header["kid"]

    def hs(c: dict[str, Any], h: dict[str, Any] | None = None, key: bytes = SECRET.encode()) -> str:
        return jwt.encode(c, key, algorithm="HS256", headers={"kid": hs_kid, "typ": SESSION_TYP,
                                                              **(h or {})})  # fmt: skip

    def none_alg(c: dict[str, Any], kid: str) -> str:
        h = {"alg": "none", "typ": SESSION_TYP, "kid": kid}
        return f"{_b64(json.dumps(h).encode())}.{_b64(json.dumps(c).encode())}."

    expired, _ = signer.issue(ROOM, "place-2", now=now - 3600, ttl=300)
    kinds: dict[str, list[str]] = {
        "expired": [expired, hs({**claims, "exp": int(now) - 1})],
        "not_yet_valid": [hs({**claims, "nbf": int(now) + 60})],
        "none": [none_alg(claims, hs_kid), none_alg(claims, ed_kid), good.rsplit(".", 1)[0] + "."],
        "hs_with_public_key": [_hs_raw(claims, ed_pem_public, ed_kid)],
        "wrong_aud": [hs({**claims, "aud": "other-room"}), hs({**claims, "aud": [ROOM, "x"]})],
        "wrong_iss": [hs({**claims, "iss": "someone-else"})],
        "wrong_typ": [hs(claims, {"typ": "JWT"}), hs(claims, {"typ": "waitroom-ticket"})],
        "missing_claims": [
            hs({k: v for k, v in claims.items() if k != drop})
            for drop in ("exp", "sub", "jti", "aud", "iss")
        ],
        "unknown_kid": [hs(claims, {"kid": "hs-000000000000"})],
        "other_secret": [hs(claims, key=("x" * 40).encode())],
        "ticket_as_session": [
            TicketSigner([SECRET]).dumps(Ticket(ROOM, "place-1", 1, int(now), int(now)))
        ],
        "empty_or_huge": ["", "." * 3, "a" * 5000],
    }
    return kinds


def _hs_raw(claims: dict[str, Any], key: bytes, kid: str) -> str:
    """HS256 over the public key's PEM, built by hand (PyJWT refuses PEM keys as HMAC secrets)."""
    import hashlib
    import hmac

    h = _b64(json.dumps({"alg": "HS256", "typ": SESSION_TYP, "kid": kid}).encode())
    p = _b64(json.dumps(claims).encode())
    sig = hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{_b64(sig)}"


async def test_hostile_tokens_all_refused() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_pem = ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())  # fmt: skip
    ed_pub = ed.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    policy = RoomPolicy(name=ROOM, capacity=1)
    async with proxy_rig(policy, store=MemoryStore(), server={"client_rate_limit": 0}) as rig:
        gate = rig.gate
        # An EdDSA signer alongside, to build algorithm-confusion tokens against its key.
        ed_signer = SessionSigner([SECRET], private_key_pem=ed_pem)
        ed_kid = jwt.get_unverified_header(ed_signer.issue(ROOM, "p", now=time.time(), ttl=60)[0])[
            "kid"
        ]
        gate.sessions.signer = SessionSigner([SECRET], private_key_pem=None,
                                    extra_public_keys_pem=[ed_pub])  # fmt: skip
        room = gate.rooms[ROOM]
        # The one slot is taken first: the good token below is verified by hand, and a replica
        # counts every session it verified again (service.census), so it may add a second one.
        holder = await admitted_client(rig.url)
        now = time.time()
        good, _ = gate.sessions.signer.issue(ROOM, "place-1", now=now, ttl=300)
        good_parts = _decode_parts(good)
        assert gate.sessions.session_for(good, room, now) is not None

        rng = random.Random(7)
        accepted_different = 0
        accepted_equivalent = 0
        mutated: list[str] = []
        while len(mutated) < MUTATIONS:
            m = mutate(good, rng)
            if m != good:
                mutated.append(m)
        for m in mutated:
            if gate.sessions.session_for(m, room, now) is not None:
                if _decode_parts(m) == good_parts:
                    accepted_equivalent += 1  # same bytes, other base64 spelling: not a forgery
                else:
                    accepted_different += 1
        kinds = forged(gate.sessions.signer, ed_pub, ed_kid, now)
        refused_by_kind = {
            k: sum(1 for t in ts if gate.sessions.session_for(t, room, now) is None)
            for k, ts in kinds.items()
        }
        totals = {k: len(ts) for k, ts in kinds.items()}

        # Through the proxy: capacity is taken, so a refused token means the waiting page.
        # Leading or trailing whitespace is not a legal header value for the client library
        # (and a server strips it as optional whitespace): send the other mutations.
        sendable = [m for m in mutated if m == m.strip()]
        sample = rng.sample(sendable, 200) + [t for ts in kinds.values() for t in ts]
        served = 0
        try:
            async with client(rig.url) as c:
                for t in sample:
                    c.cookies.clear()
                    r = await c.get("/secret", headers={**JSON, "cookie": f"waitroom_session={t}"})
                    if r.status_code == 200 and r.json() == {"origin": True}:
                        served += 1
        finally:
            await holder.aclose()
        report(
            "hostile tokens",
            mutated=MUTATIONS,
            mutated_accepted_forged=accepted_different,
            mutated_accepted_same_bytes=accepted_equivalent,
            forged_kinds=len(kinds),
            forged_refused=f"{sum(refused_by_kind.values())}/{sum(totals.values())}",
            through_proxy=len(sample),
            through_proxy_served=served,
            origin_hits_secret=rig.origin.hits["/secret"],
        )
        assert accepted_different == 0
        assert refused_by_kind == totals
        assert served == 0 and rig.origin.hits["/secret"] == 0


async def test_key_rotation_keeps_visitors_and_retires_old_key() -> None:
    old, new = "old-key-" + "o" * 32, "new-key-" + "n" * 32
    policy = RoomPolicy(name=ROOM, capacity=50)
    store = MemoryStore()
    async with proxy_rig(policy, store=store, server={"secret": old}) as rig:
        visitors = [await admitted_client(rig.url) for _ in range(20)]
        cookies = [c.cookies["waitroom_session"] for c in visitors]
        for c in visitors:
            await c.aclose()
    # Rotated: the new secret signs, the old one still verifies.
    async with proxy_rig(
        policy, store=store, server={"secret": new, "previous_secrets": (old,)}
    ) as rig:
        kept = 0
        renewed_with_new = 0
        for token in cookies:
            async with client(rig.url) as c:
                r = await c.get("/s", headers={"cookie": f"waitroom_session={token}"})
                kept += r.status_code == 200 and r.json() == {"origin": True}
        fresh = await admitted_client(rig.url)
        fresh_token = fresh.cookies["waitroom_session"]
        await fresh.aclose()
        renewed_with_new = int(
            SessionSigner([new]).verify(fresh_token, now=time.time(), room=ROOM) is not None
        )
    # After the window: the old key is gone.
    async with proxy_rig(policy, store=store, server={"secret": new}) as rig:
        refused = 0
        for token in cookies:
            async with client(rig.url) as c:
                r = await c.get("/s", headers={**JSON, "cookie": f"waitroom_session={token}"})
                # Refused = not accepted as a session: the visitor is queued, or (free capacity)
                # admitted afresh with a new session cookie; never let in on the old token.
                fresh_cookie = any(
                    v.startswith("waitroom_session=ey") for v in r.headers.get_list("set-cookie")
                )
                refused += r.json() != {"origin": True} or fresh_cookie
        refused_locally = sum(
            rig.gate.sessions.session_for(t, rig.gate.rooms[ROOM], time.time()) is None
            for t in cookies
        )
    report("key rotation", visitors=len(cookies), kept_during_window=kept,
           new_tokens_signed_with_new_key=renewed_with_new,
           old_refused_after_window=refused, old_refused_by_verifier=refused_locally)  # fmt: skip
    assert kept == len(cookies)
    assert renewed_with_new == 1
    assert refused == len(cookies) and refused_locally == len(cookies)
