"""Client addresses in every form the daemons print them, as one canonical IP text.

sshd prints ``192.0.2.7``, ``2001:db8::7`` or a host name (``UseDNS yes``); vsftpd and dual-stack
listeners print IPv4 clients as ``::ffff:192.0.2.7``; postfix ``unknown[192.0.2.7]``; PAM ``rhost=``;
pure-ftpd ``(?@2001:db8::7)``; some print ``[::1]``. Detectors group and block by address, so the same
client must always read the same: IPv4-mapped IPv6 becomes the IPv4 address, IPv6 is compressed and
lower-case. A host name is not an address: it gives ``ip = null`` (resolving it would be a network lookup
an attacker controls).
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache

MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96, IPv4-mapped
ZERO96 = bytes(12)  # ::/96: "::", "::1" and IPv4-compatible addresses, which inet_ntop prints its own way
SEEN_KEPT = 4096  # addresses whose canonical form is kept: bots come back again and again from the same few
_seen: dict[str, str | None] = {}


def normalize_ip(text: str) -> str | None:
    """The canonical form of an address as printed (brackets and a trailing ``:port``-free form accepted);
    None when ``text`` is a host name or not an address at all."""
    known = _seen.get(text, "")
    if known != "":
        return known
    if len(_seen) >= SEEN_KEPT:
        _seen.clear()
    known = _seen[text] = _canonical(text)
    return known


def _canonical(text: str) -> str | None:
    """:func:`normalize_ip` worked out.

    The common forms go through the C library's ``inet_pton``/``inet_ntop`` (a busy log has more distinct
    IPv6 clients than any cache; ``ipaddress`` costs ~30 µs each): a dotted quad it accepts is already
    canonical (no leading zeros, each part up to 255), and an IPv6 address comes back compressed as RFC 5952
    says, as ``ipaddress`` writes it. Anything else (brackets, ``::/96``, host names) takes ``ipaddress``.
    """
    try:
        if ":" not in text:
            socket.inet_pton(socket.AF_INET, text)
            return text
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return _normalize(text)
    prefix = packed[:12]
    if prefix == MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    if prefix == ZERO96:
        return _normalize(text)
    return socket.inet_ntop(socket.AF_INET6, packed)


@lru_cache(maxsize=4096)
def _normalize(text: str) -> str | None:
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if not value or len(value) > 64 or not (value[0].isdigit() or value[0] in ":abcdefABCDEF"):
        return None
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def parse_port(text: str | None) -> int | None:
    """A TCP port as printed, None when absent or out of range."""
    if not text or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None
