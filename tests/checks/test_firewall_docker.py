"""hostguard's firewall answers on the iptables rules Docker's own dockerd writes, checked against reality.

Debian's dockerd (unpacked, never installed: tests/docker_helpers.py) runs inside the server namespace of
a namespace pair and publishes a busybox httpd container's ports. Docker writes its rules (nat DOCKER
DNATs, filter FORWARD -> DOCKER-USER -> DOCKER-ISOLATION-* -> DOCKER) through iptables, and its
docker-proxy listens on the published ports too. The owner adds a rule to DOCKER-USER, as Docker's
documentation says to. hostguard, run in that namespace, answers for every port (docker-proxy listeners
and DNAT-published ports); every answer is compared with real TCP connections from the client namespace
(IPv4 and IPv6) and from the server's own loopback.

What reaches a published port from elsewhere is the DNAT path (prerouting, then forward): the docker-proxy
listener on the same port sees only what no DNAT takes (this host's own loopback connections, and IPv6
when Docker writes no ip6tables rules: then the proxy carries IPv6 clients to the container, past
DOCKER-USER). Run again with ``--userland-proxy=false``: no docker-proxy, and Docker's nat OUTPUT rule
carries this host's own connections (127.0.0.1 too) straight to the container. A port "reaches" a client
when any of hostguard's answers for it says so.
"""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import pytest

from tests.checks.test_firewall_reality import OTHER, _predicted, _scan
from tests.conftest import FIXTURES
from tests.docker_helpers import dockerd
from tests.netns import CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6, Pair, connects_many, netns_pair

# The owner's own rules, inserted into the DOCKER-USER chain Docker made for them (Docker's documented
# way to restrict published ports). The client is 198.51.100.2: HTTPS (container port 443) is closed to
# it; the near miss closes HTTP (port 80) to another source only. Host ports 8080 and 9090 both publish
# container port 80: the form Docker documents, conntrack's original destination port, closes 9090 alone
# to the client.
DOCKER_USER = [
    ["-I", "DOCKER-USER", "-s", "198.51.100.99", "-p", "tcp", "--dport", "80", "-j", "DROP"],
    ["-I", "DOCKER-USER", "-s", CLIENT_V4, "-p", "tcp", "--dport", "443", "-j", "DROP"],
    ["-I", "DOCKER-USER", "-s", CLIENT_V4, "-p", "tcp", "-m", "conntrack", "--ctorigdstport", "9090",
     "--ctdir", "ORIGINAL", "-j", "DROP"],
]
PORTS = (8080, 8081, 8443, 9090)


def _predicts(entries: list[dict], version: int, iface: str, source: str, dest: str) -> bool:
    """Whether any of hostguard's answers for one port lets ``source`` connect to ``dest`` on it."""
    for entry in entries:
        answer = entry["reach"].get(f"IPv{version}")
        if answer is None:
            continue
        address = entry["address"]
        if not (address.startswith("dnat ") or address in ("0.0.0.0", "::")
                or ipaddress.ip_address(address) == ipaddress.ip_address(dest)):
            continue
        if iface not in answer and OTHER not in answer:
            continue
        if _predicted(answer, iface, source):
            return True
    return False


def _covers(networks: list[str], address: str) -> bool:
    return any(ipaddress.ip_address(address) in ipaddress.ip_network(n) for n in networks)


def _all_entries(pair: Pair) -> list[dict]:
    """hostguard's answer for every listener and published port of the server namespace (several per port:
    docker-proxy's IPv4 and IPv6 listeners and the DNAT share one)."""
    r = pair.hostguard("--config", str(FIXTURES / "fast.toml"), "firewall", "reach", "--format", "json")
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout)["ports"])


def _wait_serving(pair: Pair, address: str, ports: tuple[int, ...]) -> None:
    deadline = time.time() + 10
    while time.time() < deadline:
        if all(connects_many(pair, pair.server, [(address, p) for p in ports]).values()):
            return
        time.sleep(0.1)
    raise AssertionError(f"the container does not serve {ports}")


@pytest.mark.parametrize("userland_proxy", [True, False], ids=["docker-proxy", "no-userland-proxy"])
def test_docker_published_ports_match_real_connections(tmp_path: Path, userland_proxy: bool) -> None:
    with netns_pair() as pair, dockerd(pair, userland_proxy=userland_proxy) as docker:
        image = docker.busybox_image()
        cid = docker.run("-p", "8080:80", "-p", "127.0.0.1:8081:80", "-p", "8443:443", "-p", "9090:80", image,
                         "sh", "-c", "httpd -p 443 -h /bin; exec httpd -f -p 80 -h /bin")
        container = docker.address(cid)
        assert ipaddress.ip_address(container) in ipaddress.ip_network("203.0.113.0/24")
        for rule in DOCKER_USER:
            r = pair.run(pair.server, ["iptables", *rule])
            assert r.returncode == 0, r.stderr
        _wait_serving(pair, container, (80, 443))

        report = _scan(pair, tmp_path)
        by_port: dict[int, list[dict]] = {}
        for entry in _all_entries(pair):
            by_port.setdefault(entry["port"], []).append(entry)
        published = {e["port"]: e for es in by_port.values() for e in es if e["address"].startswith("dnat ")}
        proxies = {(e["port"], e["address"]): e for es in by_port.values() for e in es
                   if e.get("process") == "docker-proxy"}

        # What hostguard found: Docker's DNATs, and docker-proxy listening beside them when it runs.
        # 8081, published on 127.0.0.1, is reachable only from this host: through docker-proxy's loopback
        # listener (which hostguard leaves aside), or without the proxy through Docker's nat OUTPUT rule.
        assert sorted(published) == ([8080, 8443, 9090] if userland_proxy else [8080, 8081, 8443, 9090])
        assert {p: e["dnat_to"] for p, e in published.items()} == {
            8080: f"{container}:80", 8081: f"{container}:80", 8443: f"{container}:443", 9090: f"{container}:80",
        } if not userland_proxy else {8080: f"{container}:80", 8443: f"{container}:443", 9090: f"{container}:80"}
        assert sorted(proxies) == ([(p, a) for p in (8080, 8443, 9090) for a in ("0.0.0.0", "::")]
                                   if userland_proxy else [])
        # (9090 publishes port 80 too: the near miss's rule on port 80 closes it to 198.51.100.99 as well)
        for port, closed_to, open_to in ((8080, ["198.51.100.99"], CLIENT_V4), (8443, [CLIENT_V4], "198.51.100.99"),
                                         (9090, [CLIENT_V4, "198.51.100.99"], "198.51.100.3")):
            answer = published[port]["reach"]["IPv4"][OTHER]
            assert answer["state"] == "sources", (port, answer)
            assert _covers(answer["sources"], open_to), (port, answer)
            for address in closed_to:
                assert not _covers(answer["sources"], address), (port, address, answer)
                assert any("DOCKER-USER" in d and address in d for d in published[port]["decided_by"]), port
        if userland_proxy:  # DOCKER-USER does not see IPv6: docker-proxy carries it to the container
            assert proxies[(8443, "::")]["reach"]["IPv6"][OTHER] == {"state": "anyone"}
        else:  # this host's own connections: Docker's nat OUTPUT rule, not forward, so DOCKER-USER neither
            assert {p: published[p]["reach"]["IPv4"]["lo"] for p in (8081, 8443)} == {
                8081: {"state": "anyone"}, 8443: {"state": "anyone"}}

        # Every answer against reality.
        clients = [(4, pair.server_if, CLIENT_V4, SERVER_V4, pair.client),
                   (6, pair.server_if, CLIENT_V6, SERVER_V6, pair.client),
                   (4, "lo", "127.0.0.1", "127.0.0.1", pair.server)]
        for ns in (pair.client, pair.server):
            real = connects_many(pair, ns, [(dest, p) for _, _, _, dest, n in clients if n == ns for p in PORTS])
            for version, iface, source, dest, n in clients:
                if n != ns:
                    continue
                for port in PORTS:
                    if iface == "lo" and port == 8081 and userland_proxy:
                        continue  # docker-proxy's loopback-only listener: hostguard does not evaluate those
                    predicted = _predicts(by_port.get(port, []), version, iface, source, dest)
                    assert predicted == real[(dest, port)], (
                        f"port {port} IPv{version} from {source}: predicted {predicted}, real {real[(dest, port)]}: "
                        f"{json.dumps(by_port.get(port), indent=1)}")
        # the owner's rules closed 8443 and 9090 to the client over IPv4; 8080 stays open to it
        assert connects_many(pair, pair.client, [(SERVER_V4, p) for p in (8080, 8443, 9090)]) == {
            (SERVER_V4, 8080): True, (SERVER_V4, 8443): False, (SERVER_V4, 9090): False}
        assert report["skipped"] == []
