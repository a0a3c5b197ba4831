"""Tickets and session tokens. Pure: no I/O; every check takes ``now``.

- **Ticket** (``waitroom_ticket`` cookie): an itsdangerous-signed value holding the room, the
  place id, the place's score (arrival sequence or lottery draw) and when the holder was last
  seen. It never grants access by itself; it lets a waiter keep the place across replicas and
  even across a store that lost its data (the score is re-entered), as long as the holder kept
  heart-beating (``last_seen`` within ``abandon_after``). It also carries what the store said
  at the place's last touch (position, the room's promotion count, the store's clock, the
  room's incarnation), so that most polls far from the front need no store call
  (``domain.pacing``). Tickets of version 0.1 (seven fields) are still read: they carry no
  touch, and their next poll touches the store.
- **Session** (``waitroom_session`` cookie): a JWT with ``iss``, ``aud`` = room, ``sub`` = place
  id, ``iat``, ``nbf``, ``exp``, ``jti``, ``sst`` (session start, for ``session_max``) and the
  header ``kid`` and ``typ`` = ``waitroom-session+jwt``. HS256 with a shared secret, or
  EdDSA/ES256 with a private key (public keys served as JWKS). Verification looks the key up
  by ``kid`` and pins the algorithm to that key's own: ``alg: none``, algorithm confusion (an
  HS256 token "signed" with a public key) and tokens of another type are refused.

Verification costs ~30 µs, so the gatekeeper keeps a cache of tokens it already verified
(``SessionCache``): the hot path is a dict lookup and an expiry comparison.

**Only the canonical encoding is accepted.** Base64 decoders are lenient (itsdangerous and PyJWT
both end in ``base64.urlsafe_b64decode``, which skips characters outside the alphabet, takes
``+``/``/`` for ``-``/``_``, and ignores the unused low bits of the last character), so one
real token could be spelled in unlimited ways that all verify, each a new entry in a cache of
verified tokens. Both readers therefore refuse any character outside the URL-safe alphabet and
any signature whose text is not exactly the encoding of its bytes: one token, one spelling. The
caches are bounded by entries and bytes besides (``domain.cache.BoundedCache``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from itsdangerous import BadSignature, URLSafeSerializer

from waitroom_proxy.domain.cache import BoundedCache
from waitroom_proxy.errors import TokenError

SESSION_TYP = "waitroom-session+jwt"
TICKET_SALT = "waitroom-ticket-v1"
MAX_COOKIE_LEN = 4096
CLOCK_SKEW = 300
"""Seconds a token's ``nbf`` lies before its ``iat``: replicas whose clocks differ by up to this
accept each other's fresh tokens (with 5 s, a replica 90 s ahead issued sessions that every
other replica refused as "not yet valid", and a visitor could not even leave)."""


_TICKET_TEXT = re.compile(r"^\.?[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\Z")
"""itsdangerous' ``URLSafeSerializer`` output: payload (``.``-prefixed when zlib-compressed),
a dot, the signature."""
_JWT_TEXT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\Z")


def _canonical_b64(text: str) -> bool:
    """True if ``text`` is exactly the unpadded URL-safe base64 encoding of what it decodes to
    (the caller has checked the alphabet)."""
    if len(text) % 4 == 1:
        return False
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return False
    return _b64(raw) == text


def _check_text(value: str, shape: re.Pattern[str], what: str) -> None:
    """Refuse a ``what`` (ticket, session) that is empty, too long, or not in the one spelling
    ``shape`` matches with a signature (its group 1) in canonical encoding."""
    if not value or len(value) > MAX_COOKIE_LEN:
        raise TokenError(f"{what}: empty or too long")
    match = shape.match(value)
    if match is None or not _canonical_b64(match.group(1)):
        raise TokenError(f"{what}: not in canonical encoding")


def new_place_id() -> str:
    """A fresh, unguessable place id (16 url-safe characters, 96 bits)."""
    return secrets.token_urlsafe(12)


@dataclass(frozen=True, slots=True)
class Ticket:
    """A place in a room's queue."""

    room: str
    place_id: str
    score: int
    last_seen: int
    """Unix seconds when the holder was last seen heart-beating."""
    joined: int = 0
    """Unix seconds when the place was taken (for the time-waited metric)."""
    eta_p50: int = -1
    """The p50 ETA (seconds) predicted at joining, -1 if unknown (for the ETA-error metric)."""
    return_to: str = "/"
    """The same-site path first asked for; the admitted visitor is sent back there."""
    position: int = 0
    """The place's position at its last touch (0: no touch recorded, e.g. a 0.1 ticket)."""
    promoted: int = 0
    """The room's ``promoted_total`` at the last touch."""
    touched: int = 0
    """The store's clock (Unix seconds) at the last touch."""
    epoch: str = ""
    """``pacing.epoch_of`` the room's incarnation marker at the last touch."""
    first: int = 0
    """The position at joining, 0 if unknown: the progress bar measures from it
    (``domain.progress``), the same with and without the page script."""


@dataclass(frozen=True, slots=True)
class Session:
    """The verified claims of a session token."""

    room: str
    place_id: str
    jti: str
    issued_at: int
    expires_at: int
    started_at: int
    binding: str = ""
    """The client property the session is bound to (``domain.binding``; "" = unbound)."""


class TicketSigner:
    """Signs and reads tickets. The first secret signs; all of them verify (rotation)."""

    def __init__(self, secrets_: Sequence[str]) -> None:
        if not secrets_:
            raise ValueError("at least one secret is needed")
        self._serializer = URLSafeSerializer(list(reversed(secrets_)), salt=TICKET_SALT)
        self._verified: BoundedCache[str, Ticket] = BoundedCache(
            max_entries=100_000, max_bytes=32 * 1024 * 1024
        )
        """Tickets already verified: a waiter's page sends the same value every poll."""

    def __repr__(self) -> str:
        return "TicketSigner(secrets=***)"

    def dumps(self, ticket: Ticket) -> str:
        payload = [
            ticket.room, ticket.place_id, ticket.score, ticket.last_seen, ticket.joined,
            ticket.eta_p50, ticket.return_to, ticket.position, ticket.promoted, ticket.touched,
            ticket.epoch, ticket.first,
        ]  # fmt: skip
        return str(self._serializer.dumps(payload))

    def loads(self, value: str) -> Ticket:
        """Read a ticket; raise TokenError for anything malformed, truncated or forged."""
        known = self._verified.get(value)
        if known is not None:
            return known
        ticket = self._loads(value)
        self._verified.put(value, ticket, len(value))
        return ticket

    def _loads(self, value: str) -> Ticket:
        # One ticket, one spelling: the URL-safe alphabet only, and a signature that is the
        # exact encoding of its bytes (the payload text itself is what the signature covers).
        _check_text(value, _TICKET_TEXT, "ticket")
        try:
            payload = self._serializer.loads(value)
        except BadSignature as exc:
            raise TokenError("ticket: bad signature") from exc
        except Exception as exc:  # malformed base64/JSON inside a validly signed value
            raise TokenError("ticket: malformed") from exc
        if (
            not isinstance(payload, list)
            # 7 fields: a 0.1 ticket (still read: a rolling upgrade keeps every place); 12: with
            # the last touch (``domain.pacing``) and the position at joining (``first``).
            or len(payload) not in (7, 12)
            or not isinstance(payload[0], str)
            or not isinstance(payload[1], str)
            or not all(type(v) is int for v in payload[2:6])
            or not isinstance(payload[6], str)
        ):
            raise TokenError("ticket: malformed payload")
        if len(payload) == 12 and (
            not all(type(v) is int and v >= 0 for v in payload[7:10])
            or not isinstance(payload[10], str)
            or type(payload[11]) is not int
            or payload[11] < 0
        ):
            raise TokenError("ticket: malformed payload")
        return Ticket(*payload)


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    alg: str
    signing: Any
    verifying: Any
    public_jwk: dict[str, str] | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hmac_key(secret: str) -> _Key:
    kid = "hs-" + hashlib.sha256(b"waitroom-kid:" + secret.encode()).hexdigest()[:12]
    raw = secret.encode()
    return _Key(kid=kid, alg="HS256", signing=raw, verifying=raw, public_jwk=None)


def _asymmetric_key(pem: bytes) -> _Key:
    private = serialization.load_pem_private_key(pem, password=None)
    public = private.public_key()
    found = _jwk_members(public)
    if found is None:
        raise TokenError("signing key: only Ed25519 and P-256 (ES256) private keys are supported")
    return _public_key(public, private, *found)


def _jwk_members(public: object) -> tuple[dict[str, str], str] | None:
    """The JWK members RFC 7638 hashes, and the algorithm, of an Ed25519 or P-256 public key;
    None for any other key."""
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}, "EdDSA"
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1":
        nums = public.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(nums.x.to_bytes(32, "big")),
            "y": _b64(nums.y.to_bytes(32, "big")),
        }, "ES256"
    return None


def _public_key(public: object, signing: object, members: dict[str, str], alg: str) -> _Key:
    """The key with its RFC 7638 thumbprint as kid, and its public JWK."""
    canon = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = _b64(hashlib.sha256(canon).digest())[:16]
    jwk = {**members, "kid": kid, "alg": alg, "use": "sig"}
    return _Key(kid=kid, alg=alg, signing=signing, verifying=public, public_jwk=jwk)


class SessionSigner:
    """Issues and verifies session JWTs.

    Args:
        secrets_: HS256 secrets; the first signs (unless ``private_key_pem`` is given), all verify.
        private_key_pem: an Ed25519 or P-256 private key; when given it signs every new token
            (EdDSA or ES256) and its public key is published as JWKS.
        issuer: the ``iss`` claim.
    """

    def __init__(
        self,
        secrets_: Sequence[str],
        *,
        private_key_pem: bytes | None = None,
        extra_public_keys_pem: Iterable[bytes] = (),
        issuer: str = "waitroom-proxy",
    ) -> None:
        keys = [_hmac_key(s) for s in secrets_]
        if private_key_pem is not None:
            keys.insert(0, _asymmetric_key(private_key_pem))
        for pem in extra_public_keys_pem:
            keys.append(_public_only_key(pem))
        if not keys:
            raise ValueError("at least one key is needed")
        self._signing = keys[0]
        self._keys = {k.kid: k for k in keys}
        self.issuer = issuer

    def __repr__(self) -> str:
        return f"SessionSigner(alg={self._signing.alg!r}, kids={list(self._keys)!r})"

    @property
    def algorithm(self) -> str:
        return self._signing.alg

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Public keys that verify session tokens (empty for HS256-only setups)."""
        return {"keys": [k.public_jwk for k in self._keys.values() if k.public_jwk is not None]}

    def issue(
        self,
        room: str,
        place_id: str,
        *,
        now: float,
        ttl: float,
        started_at: int | None = None,
        max_age: float | None = None,
        binding: str = "",
    ) -> tuple[str, Session]:
        """Sign a session token valid for ``ttl`` seconds, never beyond ``started_at + max_age``
        (``binding``: the ``bnd`` claim, ``domain.binding``)."""
        iat = int(now)
        sst = iat if started_at is None else started_at
        exp = iat + max(1, int(ttl))
        if max_age is not None:
            exp = min(exp, sst + int(max_age))
        jti = secrets.token_urlsafe(9)
        claims = {
            "iss": self.issuer,
            "aud": room,
            "sub": place_id,
            "iat": iat,
            "nbf": iat - CLOCK_SKEW,
            "exp": exp,
            "jti": jti,
            "sst": sst,
        }
        if binding:
            claims["bnd"] = binding
        token = jwt.encode(
            claims,
            self._signing.signing,
            algorithm=self._signing.alg,
            headers={"kid": self._signing.kid, "typ": SESSION_TYP},
        )
        return token, Session(room, place_id, jti, iat, exp, sst, binding)

    def verify(self, token: str, *, now: float, room: str | None = None) -> Session:
        """Verify a session token; raise TokenError if it is not acceptable in any way."""
        _check_text(token, _JWT_TEXT, "session")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("session: malformed") from exc
        if header.get("typ") != SESSION_TYP:
            raise TokenError("session: wrong token type")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("session: unknown key id")
        if header.get("alg") != key.alg:
            raise TokenError("session: algorithm does not match the key")
        try:
            claims = jwt.decode(
                token,
                key.verifying,
                algorithms=[key.alg],
                audience=room,
                issuer=self.issuer,
                options={
                    "require": ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"],
                    "verify_aud": room is not None,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"session: {exc.__class__.__name__}") from exc
        exp, nbf = claims["exp"], claims["nbf"]
        if type(exp) is not int or type(nbf) is not int:
            raise TokenError("session: bad time claims")
        if now >= exp:
            raise TokenError("session: expired")
        if now < nbf:
            raise TokenError("session: not yet valid")
        aud, sub, jti = claims["aud"], claims["sub"], claims["jti"]
        if not (isinstance(aud, str) and isinstance(sub, str) and isinstance(jti, str)):
            raise TokenError("session: bad claims")
        sst = claims.get("sst", claims["iat"])
        bnd = claims.get("bnd", "")
        if not isinstance(bnd, str):
            raise TokenError("session: bad binding claim")
        return Session(aud, sub, jti, int(claims["iat"]), exp, int(sst), bnd)


def _public_only_key(pem: bytes) -> _Key:
    """A verification-only asymmetric key (an old key kept during rotation)."""
    public = serialization.load_pem_public_key(pem)
    found = _jwk_members(public)
    if found is None:
        raise TokenError("verification key: only Ed25519 and P-256 public keys are supported")
    return _public_key(public, None, *found)
