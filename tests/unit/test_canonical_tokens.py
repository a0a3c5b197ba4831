"""One token, one spelling (issue 11, item 9; DESIGN §5 "only its canonical encoding").

Base64 decoders are lenient: characters outside the alphabet are skipped, ``+``/``/`` stand for
``-``/``_``, padding is optional, and the last character's unused bits are ignored. Were that
accepted, one real ticket or session would verify in unlimited spellings, each a new entry in a
cache of verified tokens (100k x ~4 KiB tickets = 417 MiB against a 512 Mi pod limit). Both
readers refuse every other spelling, and the caches stay bounded by bytes whatever arrives.
"""

from __future__ import annotations

import base64
import random
import tracemalloc
from collections.abc import Callable

import itsdangerous.encoding
import jwt.utils

from waitroom_proxy.domain.session_cache import SessionCache
from waitroom_proxy.domain.tokens import SessionSigner, Ticket, TicketSigner
from waitroom_proxy.errors import TokenError

NOW = 1_800_000_000.0
SECRET = "canonical-" + "c" * 32
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def respellings(
    value: str, rng: random.Random, n: int, decode: Callable[[str], bytes]
) -> list[str]:
    """Other spellings of ``value`` whose signature the library's own lenient decoder
    (``decode``) reads as the same bytes: each would verify if spellings were not checked."""
    head, _, sig = value.rpartition(".")
    raw = decode(sig)
    out: set[str] = set()
    last = B64.index(sig[-1])
    unused = {0: 0, 2: 4, 3: 2}[len(sig) % 4]  # low bits of the last char that carry nothing
    for bits in range(1, 1 << unused):
        out.add(f"{head}.{sig[:-1]}{B64[last ^ bits]}")
    out.add(f"{head}.{sig}=")
    out.add(f"{head}.{sig}==")
    out.add(f"{head}.{sig.replace('-', '+').replace('_', '/')}")
    while len(out) < n:
        i = rng.randrange(1, len(sig))
        junk = "".join(rng.choice("!$&'()*,;:@~ %") for _ in range(rng.randint(1, 8)))
        out.add(f"{head}.{sig[:i]}{junk}{sig[i:]}")
    out.discard(value)

    def same(other: str) -> bool:
        try:
            return decode(other.rpartition(".")[2]) == raw
        except Exception:
            return False

    return sorted(o for o in out if same(o))


def _ticket_b64(text: str) -> bytes:
    return itsdangerous.encoding.base64_decode(text)


def _jwt_b64(text: str) -> bytes:
    return jwt.utils.base64url_decode(text)


def test_a_ticket_verifies_in_its_own_spelling_only() -> None:
    signer = TicketSigner([SECRET])
    rng = random.Random(11)
    accepted = tried = 0
    for i in range(20):
        value = signer.dumps(Ticket("sale", f"place-{i}", i, int(NOW), int(NOW), -1, "/"))
        assert signer.loads(value).place_id == f"place-{i}"
        for other in respellings(value, rng, 80, _ticket_b64):
            tried += 1
            try:
                TicketSigner([SECRET]).loads(other)
                accepted += 1
            except TokenError:
                pass
    assert tried >= 500
    assert accepted == 0, f"{accepted} of {tried} other spellings verified"


def test_a_session_verifies_in_its_own_spelling_only() -> None:
    signer = SessionSigner([SECRET])
    rng = random.Random(12)
    accepted = tried = 0
    for i in range(20):
        token, _ = signer.issue("sale", f"place-{i}", now=NOW, ttl=300)
        for other in respellings(token, rng, 80, _jwt_b64):
            tried += 1
            try:
                signer.verify(other, now=NOW, room="sale")
                accepted += 1
            except TokenError:
                pass
    assert tried >= 500
    assert accepted == 0, f"{accepted} of {tried} other spellings verified"


def test_the_verified_ticket_cache_is_bounded_by_bytes() -> None:
    """20k real tickets of ~3.5 KB each (long return URLs): what the cache keeps stays under
    its byte bound (32 MiB), not 20k x 3.5 KB = 70 MB."""
    signer = TicketSigner([SECRET])
    rng = random.Random(13)
    values = [
        signer.dumps(
            Ticket(
                "sale",
                f"p{i}",
                i,
                int(NOW),
                int(NOW),
                -1,
                "/" + base64.urlsafe_b64encode(rng.randbytes(2200)).decode(),
            )
        )
        for i in range(20_000)
    ]
    assert min(len(v) for v in values) > 2_800 and max(len(v) for v in values) < 4_096
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for v in values:
            signer.loads(v)
        held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert held < 40 * 1024 * 1024, f"{held / 2**20:.0f} MiB held by the ticket cache"


def test_the_session_cache_is_bounded_by_bytes_and_entries() -> None:
    signer = SessionSigner([SECRET])
    cache = SessionCache(max_entries=1_000, max_bytes=200_000)
    for i in range(5_000):
        token, s = signer.issue("sale", f"p{i}", now=NOW, ttl=300)
        cache.put(token, s)
    assert len(cache) <= 1_000
    assert cache._entries.bytes <= 200_000


def test_respellings_are_many() -> None:
    """The helper finds plenty of equivalent spellings (the library decoders are lenient)."""
    value = TicketSigner([SECRET]).dumps(Ticket("sale", "p", 1, 1, 1, -1, "/"))
    # (about 3 in 4 of the candidates decode alike; 300 keeps clear of the sampling's spread)
    assert len(respellings(value, random.Random(1), 300, _ticket_b64)) >= 150
    token, _ = SessionSigner([SECRET]).issue("sale", "p", now=NOW, ttl=60)
    assert len(respellings(token, random.Random(2), 200, _jwt_b64)) >= 150
