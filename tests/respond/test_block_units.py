"""The pure parts of blocking: durations, targets, the disjoint kernel elements, the owner's addresses and
the readers of nft's and ip's JSON (each with hits, near misses and a property test)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.config import ConfigError, build
from hostguard.host.base import HostError, ProcessInfo, SocketInfo
from hostguard.respond.block import (
    Blocker,
    BlockError,
    BlockRefused,
    allow_elements,
    differences,
    parse_duration,
    parse_target,
    plan,
    render,
)
from hostguard.respond.block_config import BlockConfig
from hostguard.respond.nft_block import KernelElement, KernelTable, Nft, NftError, parse_element, parse_table
from hostguard.respond.protect import (
    Protected,
    ProtectedNet,
    parse_ip_addr,
    parse_ip_route,
    parse_resolv_conf,
    ssh_session_peers,
)
from hostguard.store.blocks import BlockRecord
from hostguard.store.state import StateStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
net = ipaddress.ip_network


def record(network: str, seconds: int | None, rid: int = 1) -> BlockRecord:
    expires = None if seconds is None else T0 + timedelta(seconds=seconds)
    return BlockRecord(rid, net(network), "r", "manual", T0, T0, expires, False)


# -- durations and targets ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("1h", 3600), ("7d", 604800), ("2w", 1209600),
                                               ("1h30m", 5400), ("45s", 45), (" 1H ", 3600), ("365d", 31536000)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["3x", "", "10", "m", "1.5h", "-1h", "0s", "366d", "1h 30m", "10mm"])
def test_bad_durations_say_what_a_duration_is(text: str) -> None:
    with pytest.raises(BlockError, match="--for"):
        parse_duration(text)


@given(st.text(max_size=20))
def test_any_duration_text_is_a_number_of_seconds_or_a_block_error(text: str) -> None:
    with contextlib.suppress(BlockError):
        assert 1 <= parse_duration(text) <= 365 * 86400


@pytest.mark.parametrize(("text", "prefix", "network", "widened"), [
    ("198.51.100.7", 64, "198.51.100.7/32", False),
    ("198.51.100.7/24", 64, "198.51.100.0/24", False),
    ("2001:db8:1:2::5", 64, "2001:db8:1:2::/64", True),
    ("2001:db8:1:2::5", 48, "2001:db8:1::/48", True),
    ("2001:db8:1:2::5", 128, "2001:db8:1:2::5/128", False),
    ("2001:db8:1:2::5/128", 64, "2001:db8:1:2::5/128", False),  # a network written out is kept as written
    ("::ffff:198.51.100.9", 64, "198.51.100.9/32", False),
])
def test_targets(text: str, prefix: int, network: str, widened: bool) -> None:
    assert parse_target(text, prefix) == (net(network), widened)


@pytest.mark.parametrize("text", ["999.1.1.1", "example.test", "198.51.100.0/33", "", "1.2.3.4/24/1"])
def test_bad_targets(text: str) -> None:
    with pytest.raises(BlockError, match="is not an IP address or network"):
        parse_target(text, 64)


def test_the_block_section_checks_its_never_list() -> None:
    assert BlockConfig(never=("192.0.2.0/24", "2001:db8::1")).never == ("192.0.2.0/24", "2001:db8::1")
    with pytest.raises(ConfigError, match=r"never: 'gateway\.test' is not an IP address"):
        build({"block": {"never": ["192.0.2.1", "gateway.test"]}}, {"block": BlockConfig})
    with pytest.raises(ConfigError, match="ipv6_prefix"):
        build({"block": {"ipv6_prefix": 129}}, {"block": BlockConfig})


# -- kernel elements ----------------------------------------------------------------------------------------

def test_a_covering_network_becomes_pieces_around_a_longer_inner_block() -> None:
    elements = plan([record("192.0.2.0/30", 600, 1), record("192.0.2.1/32", 3600, 2)], T0)
    assert elements[4] == [(net("192.0.2.0/32"), 600), (net("192.0.2.1/32"), 3600), (net("192.0.2.2/31"), 600)]
    assert elements[6] == []


def test_an_inner_block_ending_first_is_absorbed() -> None:
    elements = plan([record("192.0.2.1/32", 600, 1), record("192.0.2.0/24", None, 2)], T0)
    assert elements[4] == [(net("192.0.2.0/24"), None)]


def test_expired_and_almost_expired_blocks_are_left_out() -> None:
    elements = plan([record("192.0.2.1/32", 600), record("192.0.2.2/32", 1200, 2)], T0 + timedelta(seconds=900))
    assert elements[4] == [(net("192.0.2.2/32"), 300)]
    assert plan([record("192.0.2.3/32", 10)], T0 + timedelta(seconds=9.5))[4] == []


networks_v4 = st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False),
                        st.integers(0xC0000200, 0xC00002FF), st.integers(24, 32))


@settings(max_examples=200)
@given(st.lists(st.tuples(networks_v4, st.one_of(st.none(), st.integers(1, 5000))), min_size=1, max_size=8))
def test_elements_are_disjoint_and_give_each_address_its_longest_block(
        blocks: list[tuple[ipaddress.IPv4Network, int | None]]) -> None:
    elements = plan([record(str(n), s, i) for i, (n, s) in enumerate(blocks)], T0)[4]
    for i, (a, _) in enumerate(elements):
        assert not any(a.overlaps(b) for b, _ in elements[i + 1:])
    for address in ipaddress.ip_network("192.0.2.0/24"):
        covering = [s for n, s in blocks if address in n]
        got = [s for n, s in elements if address in n]
        if not covering:
            assert got == []
        else:
            assert got == [None if None in covering else max(c for c in covering if c is not None)]


def test_render_writes_each_set_and_both_chains() -> None:
    text = render(plan([record("192.0.2.1/32", 600), record("2001:db8::/64", None, 2)], T0),
                  allow_elements(Protected((ProtectedNet(net("127.0.0.0/8"), "loopback"),))))
    assert "elements = { 192.0.2.1 timeout 600s }" in text and "elements = { 2001:db8::/64 }" in text
    assert "elements = { 127.0.0.0/8 }" in text and "hook prerouting priority -300;" in text
    assert text.index("@allow4 accept") < text.index("@block4 counter drop")


# -- reading nft's JSON -------------------------------------------------------------------------------------

def test_kernel_elements_of_every_shape() -> None:
    assert parse_element("192.0.2.1") == [KernelElement(net("192.0.2.1/32"))]
    assert parse_element({"prefix": {"addr": "2001:db8::", "len": 64}}) == [KernelElement(net("2001:db8::/64"))]
    assert parse_element({"range": ["192.0.2.1", "192.0.2.2"]}) == [KernelElement(net("192.0.2.1/32")),
                                                                    KernelElement(net("192.0.2.2/32"))]
    assert parse_element({"elem": {"val": "192.0.2.9", "timeout": 600, "expires": 590}}) == [
        KernelElement(net("192.0.2.9/32"), 600, 590)]
    with pytest.raises(NftError, match="unexpected set element"):
        parse_element({"concat": ["192.0.2.1", 80]})


def test_differences_name_what_is_missing_and_what_is_extra() -> None:
    elements = plan([record("192.0.2.1/32", 600)], T0)
    allow = {4: [net("127.0.0.0/8")], 6: []}
    rules = ["@allow4 accept", "@allow6 accept", "@block4 drop", "@block6 drop"]
    good = KernelTable(sets={"block4": [KernelElement(net("192.0.2.1/32"), 600, 500)], "block6": [],
                             "allow4": [KernelElement(net("127.0.0.0/8"))], "allow6": []},
                       chains={"prerouting": ("prerouting", -300), "input": ("input", -10)},
                       rules={"prerouting": rules, "input": rules})
    assert differences(good, elements, allow) == []
    bad = KernelTable(sets={**good.sets, "block4": [KernelElement(net("192.0.2.7/32"))]},
                      chains={**good.chains, "input": ("input", 0)}, rules=good.rules)
    assert differences(bad, elements, allow) == [
        "chain input is missing or not hooked at input priority -10", "set block4 lacks 192.0.2.1/32",
        "set block4 holds 192.0.2.7/32 the store does not"]
    assert differences(None, elements, allow) == ["table inet hostguard is missing (a firewall reload or a reboot "
                                                   "flushed it)"]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                               st.sampled_from(["nftables", "set", "elem", "val", "prefix", "addr", "len", "range",
                                                "name", "chain", "rule", "expr", "timeout", "hook", "prio"]),
                               inner, max_size=4), max_leaves=20)


@given(st.one_of(st.text(max_size=60), json_values.map(json.dumps)))
def test_any_nft_output_is_read_or_refused_in_one_line(text: str) -> None:
    try:
        parse_table(text)
    except NftError as exc:
        assert "\n" not in str(exc)


# -- the owner's addresses ----------------------------------------------------------------------------------

def test_resolvers_are_the_nameserver_lines() -> None:
    text = ("# generated\nsearch example.test\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n"
            "nameserver not-an-address\noptions edns0\n#nameserver 198.51.100.53\n")
    assert parse_resolv_conf(text) == [net("192.0.2.53/32"), net("fe80::1/128")]


@given(st.text(max_size=200))
def test_any_resolv_conf_gives_addresses_only(text: str) -> None:
    assert all(isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network) for n in parse_resolv_conf(text))


def test_own_addresses_and_gateways_from_ip_json() -> None:
    addrs = json.dumps([{"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}, {"local": "::1"}]},
                        {"ifname": "eth0", "addr_info": [{"local": "192.0.2.10", "prefixlen": 24},
                                                         {"family": "inet6", "local": "fe80::2"}]},
                        {"ifname": "eth1"}])
    assert parse_ip_addr(addrs) == [(net("127.0.0.1/32"), "lo"), (net("::1/128"), "lo"),
                                    (net("192.0.2.10/32"), "eth0"), (net("fe80::2/128"), "eth0")]
    routes = json.dumps([{"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
                         {"dst": "default", "nexthops": [{"gateway": "fe80::1", "dev": "eth0"},
                                                         {"gateway": "fe80::2", "dev": "eth1"}]},
                         {"dst": "default", "dev": "wg0"}])
    assert parse_ip_route(routes) == [(net("192.0.2.1/32"), "eth0"), (net("fe80::1/128"), "eth0"),
                                      (net("fe80::2/128"), "eth1")]


@given(st.one_of(st.text(max_size=60), json_values.map(json.dumps)))
def test_any_ip_output_is_read_or_refused_as_a_host_error(text: str) -> None:
    for parse in (parse_ip_addr, parse_ip_route):
        try:
            parse(text)
        except HostError as exc:
            assert "\n" not in str(exc)


def proc(pid: int, ppid: int, title: str) -> ProcessInfo:
    return ProcessInfo(pid, ppid, title.split(":")[0], None, "root", 0.0, (title,))


def sock(status: str, port: int, remote: str | None, pid: int | None) -> SocketInfo:
    return SocketInfo("tcp", 6 if remote and ":" in remote else 4, "0.0.0.0", port, remote,
                      40000 if remote else None, status, pid)


def test_only_authenticated_ssh_sessions_protect_their_peer() -> None:
    """A logged-in session (child titled USER@TTY) is protected; a connection still authenticating ([net],
    [priv]) is not: that is what a brute-forcer holds. A connection to another service never is."""
    processes = [proc(10, 1, "sshd"), proc(20, 10, "sshd: alice [priv]"), proc(21, 20, "sshd: alice@pts/0"),
                 proc(30, 10, "sshd: root [priv]"), proc(31, 30, "sshd: root [net]"),
                 proc(40, 10, "sshd-session: bob [priv]"), proc(41, 40, "sshd-session: bob@notty"),
                 proc(50, 1, "nginx")]
    sockets = [sock("LISTEN", 2222, None, 10), sock("LISTEN", 80, None, 50),
               sock("ESTABLISHED", 2222, "192.0.2.7", 20), sock("ESTABLISHED", 2222, "198.51.100.66", 30),
               sock("ESTABLISHED", 2222, "2001:db8::9", 40), sock("ESTABLISHED", 80, "192.0.2.8", 50),
               sock("ESTABLISHED", 2222, "192.0.2.99", None)]
    assert ssh_session_peers(sockets, processes) == [
        (net("192.0.2.7/32"), "peer of a current SSH session (port 2222)"),
        (net("2001:db8::9/128"), "peer of a current SSH session (port 2222)"),
        (net("192.0.2.99/32"), "peer of a current SSH session (port 2222)")]  # owner unseen: the safe side


def test_a_block_overlapping_a_protected_network_is_named() -> None:
    protected = Protected((ProtectedNet(net("192.0.2.0/24"), "never"), ProtectedNet(net("2001:db8::1/128"), "own")))
    assert [p.why for p in protected.overlapping(net("192.0.2.5/32"))] == ["never"]
    assert [p.why for p in protected.overlapping(net("192.0.0.0/16"))] == ["never"]
    assert protected.overlapping(net("192.0.3.0/24")) == []
    assert protected.overlapping(net("2001:db8::2/128")) == []


def test_unknown_owner_addresses_refuse_unless_forced_and_a_failing_nft_is_one_line(tmp_path: Path) -> None:
    """When a part of the owner's addresses could not be read, blocking is refused (never guessed); forced,
    it goes on, and an nft that fails (here: `false`, a program that always fails, never the real nft) is one
    line, before anything is recorded."""
    state = StateStore(str(tmp_path / "state"))
    try:
        blocker = Blocker(state, Nft(("false",)), lambda: Protected(unknown=("SSH session peers (needs root)",)),
                          host_key="h", clock=lambda: T0)
        with pytest.raises(BlockRefused, match=r"cannot tell the owner's addresses: SSH session peers \(needs root\)"):
            blocker.block("192.0.2.7", 600)
        assert state.audit_log() == []
        with pytest.raises(BlockError, match=r"^nft -j list table inet hostguard: \(no message\)$"):
            blocker.block("192.0.2.7", 600, force=True)  # the table could not be read: nothing recorded
        assert state.audit_log() == [] and blocker.listing() == []
    finally:
        state.close()
