"""A namespace pair for the block tests: the server runs hostguard's table (nft through ``ip netns exec``), the
client connects from several source addresses so one test can show a blocked, a neighbouring and an allowed
address side by side. Everything lives in namespaces the test made; this machine's ruleset is never read or
written (the tests compare it before and after)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hostguard.respond.block import Blocker, BlockRefused
from hostguard.respond.block_config import BlockConfig
from hostguard.respond.nft_block import Nft
from hostguard.respond.protect import LOOPBACK, Protected, ProtectedNet
from hostguard.store.state import StateStore
from tests.conftest import need_tool
from tests.netns import CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6, Pair, ip, netns_pair

PORT = 8022
# extra client addresses outside the server's own networks, reached through routes on the server
OTHER_V4 = ("203.0.113.5", "203.0.113.6")
OTHER_V6 = ("2001:db8:200::5", "2001:db8:200::6")
ALLOWED_V4 = "198.51.100.3"  # in the test's [block] never list
SPARE_V4 = "198.51.100.4"    # never blocked by any test: the near miss that must keep connecting
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

CONNECT_FROM = """
import json, socket, sys
out = []
for source, target, port in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET6 if ':' in target else socket.AF_INET)
    s.settimeout(1.0)
    try:
        s.bind((source, 0))
        out.append(s.connect_ex((target, port)) == 0)
    finally:
        s.close()
print(json.dumps(out))
"""


@dataclass
class BlockNs:
    """The pair, the server's nft, and a clock the tests move."""

    pair: Pair
    nft: Nft
    now: datetime = T0

    def reaches(self, *sources: str, target: str | None = None, port: int = PORT) -> dict[str, bool]:
        """Real TCP connects from each client source address to the server (or ``target``)."""
        jobs = [(s, target or (SERVER_V6 if ":" in s else SERVER_V4), port) for s in sources]
        done = self.pair.run(self.pair.client, [sys.executable, "-c", CONNECT_FROM, json.dumps(jobs)])
        assert done.returncode == 0, done.stderr
        return dict(zip(sources, json.loads(done.stdout), strict=True))

    def kernel_set(self, name: str) -> list[dict[str, Any]]:
        """The set's elements as ``nft -j list set`` prints them (each normalised to a dict)."""
        done = subprocess.run([*self.nft.prefix, "-j", "list", "set", "inet", "hostguard", name],
                              capture_output=True, text=True, check=True)
        [entry] = [i["set"] for i in json.loads(done.stdout)["nftables"] if "set" in i]
        out = []
        for elem in entry.get("elem", []):
            inner = elem["elem"] if isinstance(elem, dict) and "elem" in elem else {"val": elem}
            val = inner["val"]
            text = f"{val['prefix']['addr']}/{val['prefix']['len']}" if isinstance(val, dict) else val
            out.append({"val": text, "timeout": inner.get("timeout"), "expires": inner.get("expires")})
        return out

    def blocker(self, state: StateStore, never: tuple[str, ...] = (ALLOWED_V4,)) -> Blocker:
        """A blocker on the server's nft, protecting what the server's own collector would (loopback and its
        addresses) plus ``never``, on the test's clock."""
        protected = Protected(tuple([ProtectedNet(n, "loopback") for n in LOOPBACK]
                                    + [ProtectedNet(network, "an address of this machine")
                                       for network in (_net(SERVER_V4), _net(SERVER_V6))]
                                    + [ProtectedNet(_net(n), "in the [block] never list") for n in never]))
        return Blocker(state, self.nft, lambda: protected, BlockConfig(never=never), "test-host", lambda: self.now)


def _net(address: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(address)


def this_machines_ruleset() -> str:
    """This machine's own tables (not their counters, which move), only to prove the tests left them alone."""
    done = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


@contextlib.contextmanager
def block_ns() -> Iterator[BlockNs]:
    """The pair with the extra client addresses, a listener on the server, and its nft."""
    need_tool("nft")
    before = this_machines_ruleset()
    with netns_pair() as pair:
        veth_c = "hgc" + pair.server[5:]
        for address in (ALLOWED_V4, SPARE_V4):
            ip("-n", pair.client, "addr", "add", f"{address}/24", "dev", veth_c)
        for address in OTHER_V4:
            ip("-n", pair.client, "addr", "add", f"{address}/32", "dev", veth_c)
        for address in OTHER_V6:
            ip("-n", pair.client, "addr", "add", f"{address}/128", "dev", veth_c, "nodad")
        ip("-n", pair.server, "route", "add", "203.0.113.0/24", "dev", pair.server_if)
        ip("-n", pair.server, "-6", "route", "add", "2001:db8:200::/64", "dev", pair.server_if)
        pair.listen(f"tcp:0.0.0.0:{PORT}", f"tcp6only:[::]:{PORT}")
        ns = BlockNs(pair, Nft(("ip", "netns", "exec", pair.server, "nft")))
        everyone = (CLIENT_V4, ALLOWED_V4, SPARE_V4, *OTHER_V4, CLIENT_V6, *OTHER_V6)
        assert all(ns.reaches(*everyone).values()), "the namespaces are not wired"
        yield ns
    assert this_machines_ruleset() == before, "a block test changed this machine's own ruleset"


@contextlib.contextmanager
def blocking(tmp_path: Path, never: tuple[str, ...] = (ALLOWED_V4,)) -> Iterator[tuple[BlockNs, Blocker]]:
    with block_ns() as ns:
        state = StateStore(str(tmp_path / "state"))
        try:
            yield ns, ns.blocker(state, never)
        finally:
            state.close()


def test_blocked_addresses_cannot_connect_and_the_others_still_can(tmp_path: Path) -> None:
    """IPv4 address, IPv6 address widened to its /64 (its neighbour falls too), the allowed and spare ones not."""
    with blocking(tmp_path) as (ns, blocker):
        blocker.block(CLIENT_V4, 3600, "brute force")
        outcome = blocker.block(OTHER_V6[0], 3600, "brute force")
        assert str(outcome.record.network) == "2001:db8:200::/64"
        seen = ns.reaches(CLIENT_V4, SPARE_V4, ALLOWED_V4, OTHER_V4[0], *OTHER_V6, CLIENT_V6)
        assert seen == {CLIENT_V4: False, SPARE_V4: True, ALLOWED_V4: True, OTHER_V4[0]: True,
                        OTHER_V6[0]: False, OTHER_V6[1]: False, CLIENT_V6: True}
        assert [e["val"] for e in ns.kernel_set("block4")] == [CLIENT_V4]
        assert [e["val"] for e in ns.kernel_set("block6")] == ["2001:db8:200::/64"]
        assert {e["val"] for e in ns.kernel_set("allow4")} == {"127.0.0.0/8", SERVER_V4, ALLOWED_V4}
        # unblocked: reachable again, and both the store and the audit log say so
        [ended] = blocker.unblock(CLIENT_V4, "owner says fine")
        assert str(ended.network) == f"{CLIENT_V4}/32"
        assert ns.reaches(CLIENT_V4, OTHER_V6[0]) == {CLIENT_V4: True, OTHER_V6[0]: False}
        assert [(a.action, a.subject) for a in blocker.state.audit_log("test-host")] == [
            ("block", f"{CLIENT_V4}/32"), ("block", "2001:db8:200::/64"), ("unblock", f"{CLIENT_V4}/32")]


def test_an_ipv6_slash_64_holding_the_servers_own_address_falls_back_to_the_address(tmp_path: Path) -> None:
    with blocking(tmp_path) as (ns, blocker):
        outcome = blocker.block(CLIENT_V6, 600, "scan")
        assert str(outcome.record.network) == f"{CLIENT_V6}/128"
        assert any("blocking the address alone" in note for note in outcome.notes)
        assert ns.reaches(CLIENT_V6, OTHER_V6[0], CLIENT_V4) == {CLIENT_V6: False, OTHER_V6[0]: True, CLIENT_V4: True}
        neighbour = "2001:db8:100::9"  # another address of the same /64, blocked alone as well
        assert str(blocker.block(neighbour, 600, "scan").record.network) == f"{neighbour}/128"
        # unblocking one address ends its own block only, not the other one in the same /64
        assert [str(r.network) for r in blocker.unblock(CLIENT_V6)] == [f"{CLIENT_V6}/128"]
        assert [str(r.network) for r in blocker.listing()] == [f"{neighbour}/128"]
        assert ns.reaches(CLIENT_V6) == {CLIENT_V6: True}


def test_owner_addresses_are_refused_and_a_forced_block_loses_to_the_kernel_allow_set(tmp_path: Path) -> None:
    with blocking(tmp_path) as (ns, blocker):
        with pytest.raises(BlockRefused, match=r"198\.51\.100\.3/32: it is 198\.51\.100\.3/32 \(in the \[block\] never"):
            blocker.block(ALLOWED_V4, None, "typo")
        with pytest.raises(BlockRefused, match=r"198\.51\.100\.0/24: it covers 198\.51\.100\.1/32 \(an address of this"):
            blocker.block("198.51.100.0/24", None, "too wide")
        with pytest.raises(BlockRefused, match=r"lies in 127\.0\.0\.0/8 \(loopback\)"):
            blocker.block("127.0.0.9", None, "")
        assert blocker.listing() == []
        forced = blocker.block(ALLOWED_V4, None, "owner insists", force=True)
        assert forced.record.forced and [str(h.network) for h in forced.overridden] == [f"{ALLOWED_V4}/32"]
        assert any("kernel still accepts" in note for note in forced.notes)
        assert [e["val"] for e in ns.kernel_set("block4")] == [ALLOWED_V4]
        assert ns.reaches(ALLOWED_V4, SPARE_V4) == {ALLOWED_V4: True, SPARE_V4: True}


def test_re_adding_refreshes_the_kernel_timeout(tmp_path: Path) -> None:
    with blocking(tmp_path) as (ns, blocker):
        blocker.block(OTHER_V4[0], 600, "first")
        [first] = ns.kernel_set("block4")
        assert first["timeout"] == 600
        ns.now = T0 + timedelta(minutes=5)
        blocker.block(OTHER_V4[0], 3600, "again")
        [again] = ns.kernel_set("block4")
        assert again["val"] == OTHER_V4[0] and again["timeout"] == 3600 and 3590 <= again["expires"] <= 3600
        # a shorter request never cuts a longer block short
        blocker.block(OTHER_V4[0], 60, "short")
        [kept] = ns.kernel_set("block4")
        assert kept["timeout"] == 3600 and [r.reason for r in blocker.listing()] == ["again"]


@pytest.mark.parametrize("order", ["address first", "network first"])
def test_a_covering_network_and_an_address_inside_it_in_either_order(tmp_path: Path, order: str) -> None:
    """No "interval overlaps": the address keeps its longer time as its own element, the rest of the network
    its own time; traffic from both is dropped."""
    with blocking(tmp_path) as (ns, blocker):
        steps = [(OTHER_V4[0], 3600), ("203.0.113.0/24", 600)]
        for target, seconds in steps if order == "address first" else steps[::-1]:
            blocker.block(target, seconds, order)
        elements = {e["val"]: e["timeout"] for e in ns.kernel_set("block4")}
        assert elements[OTHER_V4[0]] == 3600
        assert elements["203.0.113.6/31"] == 600 and elements["203.0.113.0/30"] == 600
        assert set(elements.values()) == {600, 3600}
        assert ns.reaches(*OTHER_V4, SPARE_V4) == {OTHER_V4[0]: False, OTHER_V4[1]: False, SPARE_V4: True}
        # the network ends first: the address stays blocked, its neighbour is free
        ns.now = T0 + timedelta(minutes=11)
        assert blocker.verify_and_restore().restored
        assert [e["val"] for e in ns.kernel_set("block4")] == [OTHER_V4[0]]
        assert ns.reaches(*OTHER_V4) == {OTHER_V4[0]: False, OTHER_V4[1]: True}


def test_a_wider_block_that_outlasts_an_inner_one_absorbs_it(tmp_path: Path) -> None:
    with blocking(tmp_path) as (ns, blocker):
        blocker.block(OTHER_V4[0], 600, "inner")
        blocker.block("203.0.113.0/24", None, "whole range")
        assert ns.kernel_set("block4") == [{"val": "203.0.113.0/24", "timeout": None, "expires": None}]


def test_flush_ruleset_then_verify_and_restore_brings_back_the_remaining_time(tmp_path: Path) -> None:
    with blocking(tmp_path) as (ns, blocker):
        blocker.block(CLIENT_V4, 3600, "long")
        blocker.block(OTHER_V4[0], 600, "short")
        blocker.block(OTHER_V6[0], None, "forever")
        assert blocker.verify_and_restore().problems == ()
        subprocess.run([*ns.nft.prefix, "flush", "ruleset"], check=True)  # what a reload of nftables.conf does
        assert ns.reaches(CLIENT_V4, OTHER_V6[0]) == {CLIENT_V4: True, OTHER_V6[0]: True}
        ns.now = T0 + timedelta(minutes=20)
        outcome = blocker.verify_and_restore()
        assert outcome.problems == ("table inet hostguard is missing (a firewall reload or a reboot flushed it)",)
        [restored] = ns.kernel_set("block4")
        assert (restored["val"], restored["timeout"]) == (CLIENT_V4, 2400)
        assert 2390 <= restored["expires"] <= 2400
        assert [e["val"] for e in ns.kernel_set("block6")] == ["2001:db8:200::/64"]
        assert ns.kernel_set("block6")[0]["timeout"] is None
        assert ns.reaches(CLIENT_V4, OTHER_V4[0], OTHER_V6[0]) == {CLIENT_V4: False, OTHER_V4[0]: True, OTHER_V6[0]: False}
        assert ("restore", "table inet hostguard") in [(a.action, a.subject) for a in blocker.state.audit_log()]
        # a removed element or a changed rule is noticed too
        subprocess.run([*ns.nft.prefix, "delete", "element", "inet", "hostguard", "block4", "{", CLIENT_V4, "}"], check=True)
        assert blocker.verify() == [f"set block4 lacks {CLIENT_V4}/32"]
        subprocess.run([*ns.nft.prefix, "flush", "chain", "inet", "hostguard", "prerouting"], check=True)
        assert "chain prerouting's rules were changed" in blocker.verify()
        assert blocker.verify_and_restore().restored and blocker.verify() == []


def test_prerouting_drop_covers_a_dnat_published_container_port(tmp_path: Path) -> None:
    """Like Docker's published port: DNAT in nat prerouting to a container namespace; the forwarded traffic
    never reaches the input hook, so only the prerouting drop (at raw, before DNAT) stops it."""
    with blocking(tmp_path) as (ns, blocker):
        container = ns.pair.add_container("192.0.2.2", "192.0.2.1")
        ns.pair.listen_in(container, "tcp:0.0.0.0:80")
        dnat = ("table ip hgdocker {\n chain prerouting {\n  type nat hook prerouting priority dstnat;\n"
                "  tcp dport 8080 dnat to 192.0.2.2:80\n }\n}\n")
        subprocess.run([*ns.nft.prefix, "-f", "-"], input=dnat, text=True, check=True)
        assert ns.reaches(CLIENT_V4, SPARE_V4, port=8080) == {CLIENT_V4: True, SPARE_V4: True}
        blocker.block(CLIENT_V4, 600, "scanner")
        assert ns.reaches(CLIENT_V4, SPARE_V4, port=8080) == {CLIENT_V4: False, SPARE_V4: True}
        counters = subprocess.run([*ns.nft.prefix, "list", "chain", "inet", "hostguard", "prerouting"],
                                  capture_output=True, text=True, check=True).stdout
        drop4 = counters.split("@block4")[1].split("\n")[0]
        assert "packets 0 " not in drop4 and "packets 0 " in counters.split("@block6")[1]


def test_blocking_again_is_idempotent(tmp_path: Path) -> None:
    with blocking(tmp_path) as (ns, blocker):
        first = blocker.block(CLIENT_V4, None, "x")
        again = blocker.block(CLIENT_V4, None, "x")
        assert first.changed and not again.changed and again.record.id == first.record.id
        assert [e["val"] for e in ns.kernel_set("block4")] == [CLIENT_V4]
        assert len(blocker.store.history()) == 1
