"""Session binding (a room's ``session_binding``): a session token carries a hash of the
client property it was issued to, so a copied session cookie does not work elsewhere.

Modes: ``ip`` binds to the client's network (IPv4 /24, IPv6 /64: a phone moving between
cells of one carrier, or a browser behind a NAT pool, usually keeps it), ``ua`` to the exact
``User-Agent``, ``ip+ua`` to both. The value in the token (claim ``bnd``) is 96 bits of
SHA-256 over a label and the property: it names neither the address nor the browser to the
origin that reads ``Waitroom-Verified``, and the token's signature makes it unforgeable. A
cookie moved to another network or browser is refused with a clear page, not passed and not
silently re-queued. Pure; no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress

MODES = ("none", "ip", "ua", "ip+ua")
_LABEL = b"waitroom-binding-v1"


def network_of(ip: str) -> str:
    """The client's network as bound: IPv4 /24, IPv6 /64 (the address itself if unparsable)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    bits = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


def binding_of(mode: str, ip: str, user_agent: str) -> str:
    """The binding value of a client under ``mode`` ("" for ``none``)."""
    if mode == "none" or mode not in MODES:
        return ""
    parts = [_LABEL, mode.encode()]
    if "ip" in mode:
        parts.append(network_of(ip).encode())
    if "ua" in mode:
        parts.append(user_agent.encode("utf-8", "replace"))
    digest = hashlib.sha256(b"\x00".join(parts)).digest()[:12]
    return base64.urlsafe_b64encode(digest).decode()
