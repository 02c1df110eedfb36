"""The real offline country lookup (geoip2fast's own data), loaded only when a lookup is made."""

from __future__ import annotations

import subprocess
import sys

from hostguard.detect.geo import is_local, lookup


def test_public_addresses_get_their_country_and_local_ones_none() -> None:
    country = lookup()
    assert country("8.8.8.8") == "US"            # a well-known public resolver, IPv4
    assert country("2001:4860:4860::8888") == "US"  # and IPv6
    assert [country(ip) for ip in ("10.0.0.1", "127.0.0.1", "192.168.1.1", "fe80::1", "::1")] == [None] * 5
    assert country("192.0.2.1") is None          # documentation addresses are in no country


def test_private_loopback_and_shared_addresses_are_local_documentation_ones_are_not() -> None:
    assert [is_local(ip) for ip in ("10.1.2.3", "172.31.0.1", "100.64.0.1", "169.254.1.1", "fd00::1", "::1")] == [True] * 6
    assert [is_local(ip) for ip in ("198.51.100.7", "203.0.113.9", "2001:db8::1", "8.8.8.8")] == [False] * 4
    assert is_local("not-an-address")


def test_the_data_is_loaded_only_by_a_lookup() -> None:
    code = ("import sys; from hostguard.detect.geo import lookup; c = lookup(); c('10.0.0.1'); "
            "assert 'geoip2fast' not in sys.modules; c('8.8.8.8'); assert 'geoip2fast' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
