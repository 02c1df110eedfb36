"""Country of a source address, offline, with geoip2fast (its data ships in the wheel).

Loading its tables costs ~35 MB and a tenth of a second, so nothing is loaded until a lookup is really
needed: :func:`lookup` returns a function that loads on its first call, and the unusual-logon detector calls
it only for a successful logon from a non-local address. Private, loopback, link-local and shared addresses
(``data/detect/networks.toml``) are never looked up: their "country" means nothing. Tests hand detectors their
own function answering for documentation addresses instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import cache
from typing import Any

from hostguard.data import load_toml

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@cache
def local_networks() -> tuple[Network, ...]:
    """The networks never geolocated."""
    return tuple(ipaddress.ip_network(n) for n in load_toml("detect/networks.toml")["local"])


def is_local(ip: str) -> bool:
    """Whether ``ip`` is private, loopback, link-local or shared (never geolocated); True for non-addresses."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return True
    return any(addr.version == net.version and addr in net for net in local_networks())


def lookup() -> Callable[[str], str | None]:
    """A country lookup (ISO 3166 code, None when unknown) that loads geoip2fast on its first use."""
    loaded: list[Any] = []

    def country(ip: str) -> str | None:
        if is_local(ip):
            return None
        if not loaded:
            from geoip2fast import GeoIP2Fast  # type: ignore[import-untyped]

            loaded.append(GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz"))
        code = str(getattr(loaded[0].lookup(ip), "country_code", "") or "")
        return code.upper() if len(code) == 2 and code.isalpha() else None

    return country
