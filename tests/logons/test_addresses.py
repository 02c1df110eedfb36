"""normalize_ip (inet_pton/inet_ntop for the common forms) gives exactly what the ipaddress module gives, on
every form an address is printed in and on garbage near them."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.logons.addresses import normalize_ip


def reference(text: str) -> str | None:
    """The canonical text by the ipaddress module alone (IPv4-mapped IPv6 as IPv4)."""
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


GROUP = st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xDB8, 0x2001, 0xFF]) | st.integers(0, 0xFFFF)


@settings(max_examples=3000)
@given(st.text(alphabet="0123456789abcdefABCDEF:.% []", max_size=45))
def test_near_address_garbage(text: str) -> None:
    assert normalize_ip(text) == reference(text)


@settings(max_examples=3000)
@given(st.lists(GROUP, min_size=8, max_size=8), st.integers(0, 3), st.booleans())
def test_every_way_an_ipv6_address_is_written(groups: list[int], style: int, upper: bool) -> None:
    addr = ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups))
    text = [addr.compressed, addr.exploded, ":".join(f"{g:x}" for g in groups), ":".join(f"{g:04x}" for g in groups)][style]
    text = text.upper() if upper else text
    assert normalize_ip(text) == reference(text)


@settings(max_examples=2000)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["", "::ffff:", "::FFFF:", "::", "64:ff9b::", "::ffff:0:", "0"]))
def test_ipv4_plain_mapped_compatible_and_zero_padded(value: int, prefix: str) -> None:
    text = prefix + str(ipaddress.IPv4Address(value))
    assert normalize_ip(text) == reference(text)


def test_host_names_and_scoped_addresses() -> None:
    assert normalize_ip("gw.test") is None and normalize_ip("198.51.100.7") == "198.51.100.7"
    assert normalize_ip("[2001:DB8::7]") == "2001:db8::7" and normalize_ip("::ffff:192.0.2.1") == "192.0.2.1"
    assert normalize_ip("fe80::1%eth0") == reference("fe80::1%eth0")
