"""rootkit.promiscuous_interface in a network namespace this test creates, with the real collector and fix.

Inside one private namespace: a veth pair whose one end is set promiscuous by hand (``ip link ... promisc on``:
the hit) and whose other end is up but not (the near miss); a second pair whose one end a real sniffer holds
promiscuous the way libpcap does (a packet socket with a ``PACKET_MR_PROMISC`` membership, which ``ip link``
does not show) and whose other end is a bridge port (promiscuous because the kernel's bridge made it so:
quiet). hostguard runs inside the namespace (``ip netns exec`` gives it the namespace's /sys and /proc/net),
and ``hostguard fix`` applies the fix there and undoes it. Nothing outside the namespace is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_root, need_tool

SNIFFER = """
import os, socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((sys.argv[1], 0))
# struct packet_mreq {int mr_ifindex; unsigned short mr_type, mr_alen; unsigned char mr_address[8];}
# SOL_PACKET 263, PACKET_ADD_MEMBERSHIP 1, PACKET_MR_PROMISC 1
s.setsockopt(263, 1, struct.pack("iHH8s", socket.if_nametoindex(sys.argv[1]), 1, 0, b""))
print(os.getpid(), flush=True)
time.sleep(120)
"""


@dataclass
class SniffNs:
    name: str
    state: Path

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True, timeout=120)

    def hostguard(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """hostguard inside the namespace, with the test's own state (and config) directory."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        cfg = ["--config", str(config or self.state.parent / "empty.toml")]  # never this machine's own config
        return subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-m", "hostguard.cli", *cfg,
                               "--state", str(self.state), *args], capture_output=True, text=True, env=env, timeout=120)

    def findings(self, config: Path | None = None) -> dict[str, dict[str, Any]]:
        r = self.hostguard("scan", "--only", "rootkit.promiscuous_interface", "--format", "json", config=config)
        assert r.returncode in (0, 1), r.stderr
        report = json.loads(r.stdout)
        assert report["skipped"] == []
        return {f["target"]["interface"]: f for f in report["findings"]}

    def flags(self, dev: str) -> int:
        return int(self.run(["cat", f"/sys/class/net/{dev}/flags"]).stdout, 16)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def sniff_ns(tmp: Path) -> Iterator[tuple[SniffNs, int]]:
    """The namespace with its interfaces and sniffer (its pid is yielded); everything removed afterwards."""
    need_root("network namespaces")
    need_tool("ip")
    ns = SniffNs(f"hgrk{secrets.token_hex(3)}", tmp / "state")
    ns.state.mkdir()
    (tmp / "empty.toml").write_text("")
    sniffer = None
    ip("netns", "add", ns.name)
    try:
        ip("-n", ns.name, "link", "add", "hgpa", "type", "veth", "peer", "name", "hgpb")
        ip("-n", ns.name, "link", "add", "hgsc", "type", "veth", "peer", "name", "hgsd")
        ip("-n", ns.name, "link", "add", "hgbr", "type", "bridge")
        ip("-n", ns.name, "link", "set", "hgsd", "master", "hgbr")
        for dev in ("lo", "hgpa", "hgpb", "hgsc", "hgsd", "hgbr"):
            ip("-n", ns.name, "link", "set", dev, "up")
        ip("-n", ns.name, "link", "set", "hgpa", "promisc", "on")
        sniffer = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", SNIFFER, "hgsc"],
                                   stdout=subprocess.PIPE, text=True)
        assert sniffer.stdout is not None
        pid = int(sniffer.stdout.readline())
        yield ns, pid
    finally:
        if sniffer is not None:
            sniffer.kill()
            sniffer.wait()
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)


def test_promiscuous_interfaces_hit_and_near_miss(tmp_path: Path) -> None:
    with sniff_ns(tmp_path) as (ns, sniffer):
        # the setting is what it claims: sysfs shows both promiscuous ends and the bridge port, ip link only hgpa
        assert [dev for dev in ("hgpa", "hgpb", "hgsc", "hgsd") if ns.flags(dev) & 0x100] == ["hgpa", "hgsc", "hgsd"]
        shown = ns.run(["ip", "-o", "link", "show"]).stdout
        assert [line.split(":")[1].strip().split("@")[0] for line in shown.splitlines() if "PROMISC" in line] == ["hgpa"]

        found = ns.findings()
        assert set(found) == {"hgpa", "hgsc"}  # not hgpb (up, not promiscuous), hgsd (bridge port), hgbr, lo
        by_hand, sniffed = found["hgpa"], found["hgsc"]
        assert by_hand["severity"] == "medium" and by_hand["target"] == {"kind": "host", "interface": "hgpa"}
        assert by_hand["evidence"]["set_by_hand"] is True and by_hand["evidence"]["packet_sockets"] == []
        assert by_hand["evidence"]["flags"] == f"{ns.flags('hgpa'):#x}"
        assert [s["argv"] for s in by_hand["remediation"]["steps"]] == [["ip", "link", "set", "dev", "hgpa",
                                                                          "promisc", "off"]]
        assert by_hand["remediation"]["steps"][0]["undo"] == ["ip", "link", "set", "dev", "hgpa", "promisc", "on"]
        assert sniffed["evidence"]["set_by_hand"] is False
        assert [(h["pid"], h["bound_to"]) for h in sniffed["evidence"]["packet_sockets"]] == [(sniffer, "this interface")]
        assert sniffed["evidence"]["packet_sockets"][0]["name"].startswith("python")
        assert sniffed["remediation"]["steps"] == [] and f"pid {sniffer}" in sniffed["remediation"]["summary"]

        # near miss by configuration: the owner's capture interface is expected to be promiscuous
        config = tmp_path / "hostguard.toml"
        config.write_text('[rootkit]\ncapture_interfaces = ["hgs*"]\n')
        assert set(ns.findings(config)) == {"hgpa"}


def test_the_fix_turns_promiscuous_mode_off_and_its_undo_back_on(tmp_path: Path) -> None:
    """The finding's own command, run by ``hostguard fix`` in the namespace, then re-scanned; then undone."""
    with sniff_ns(tmp_path) as (ns, _sniffer):
        fp = ns.findings()["hgpa"]["fingerprint"]
        r = ns.hostguard("fix", "--yes", "--only", "rootkit.promiscuous_interface", str(fp))
        assert r.returncode == 0, r.stdout + r.stderr
        assert not ns.flags("hgpa") & 0x100
        assert set(ns.findings()) == {"hgsc"}
        [line] = [line for line in r.stdout.splitlines() if line.strip().startswith("undo with:")]
        r = ns.hostguard("fix", "--undo", line.split()[-1])
        assert r.returncode == 0, r.stdout + r.stderr
        assert ns.flags("hgpa") & 0x100 and set(ns.findings()) == {"hgpa", "hgsc"}


def test_under_root_the_check_says_live_only(tmp_path: Path) -> None:
    from hostguard.host.base import RootHost
    from tests.conftest import CLEAN, run_one

    found, skipped = run_one("rootkit.promiscuous_interface", RootHost(str(CLEAN)))
    assert found == [] and [s.reason for s in skipped] == ["live_only"]


@pytest.mark.parametrize("dev", ["hgpb", "hgsd"])
def test_the_sniffers_socket_is_not_evidence_on_other_interfaces(tmp_path: Path, dev: str) -> None:
    """The packet socket is bound to hgsc: neither the other veth nor the bridge port carries it."""
    with sniff_ns(tmp_path) as (ns, _sniffer):
        code = ("from hostguard.host.base import LiveHost\nfrom hostguard.host.netif import interfaces\n"
                f"[i] = [i for i in interfaces(LiveHost(), None) if i.name == {dev!r}]\nprint(len(i.holders))\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        r = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", code], capture_output=True,
                           text=True, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "0"
