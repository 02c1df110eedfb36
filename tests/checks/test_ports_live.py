"""Port checks on real sockets in a network namespace made by the test.

The same listeners are scanned twice: once with the firewall unreadable (``nft`` replaced by ``false``
in a private mount namespace of the scan, so the host's own ``nft`` and mounts are never touched), where
the ports family reports them, and once with the namespace's own (empty) ruleset readable, where the
firewall family reports each port with who can reach it and the ports family stays quiet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hostguard.checks.ports import catalogue
from tests.conftest import FIXTURES, need_tool
from tests.netns import SERVER_V4, Pair, netns_pair
from tests.sshd_helpers import prepare_sshd


def _scan(pair: Pair, tmp_path: Path, firewall_readable: bool) -> dict:
    config = tmp_path / "hostguard.toml"
    config.write_text((FIXTURES / "fast.toml").read_text() + '[ports]\nallowed = ["ssh", 80, 443, 9200]\n')
    args = ["--config", str(config), "--state", str(tmp_path / "state"),
            "scan", "--only", "ports,firewall", "--format", "json"]
    if firewall_readable:
        r = pair.hostguard(*args)
    else:
        nft = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin")
        assert nft is not None
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        r = subprocess.run(["ip", "netns", "exec", pair.server, "unshare", "--mount", "--propagation", "private",
                            "sh", "-c", 'mount --bind /bin/false "$0" && exec "$@"', nft,
                            sys.executable, "-m", "hostguard.cli", *args], capture_output=True, text=True, env=env)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def _targets(report: dict, check_id: str) -> set[tuple[int, str, str]]:
    return {(f["target"]["port"], f["target"]["proto"], f["target"]["address"])
            for f in report["findings"] if f["id"] == check_id}


def _finding(report: dict, check_id: str, port: int) -> dict:
    [f] = [f for f in report["findings"] if f["id"] == check_id and f["target"]["port"] == port]
    return f


def _wait_for(pair: Pair, *ports: int) -> None:
    deadline = time.monotonic() + 15
    while not all(pair.connects(SERVER_V4, p) for p in ports):
        assert time.monotonic() < deadline, f"listeners on {ports} did not come up"
        time.sleep(0.1)


def test_ports_hit_and_miss(tmp_path: Path) -> None:
    """Hits: a real redis-server on a port of its own is Redis (named by its executable and package, with
    Redis's fix); ``python3 -m http.server`` on Redis's port is an unknown service with no Redis fix; a TCP
    and a UDP port outside the allowed list. Near misses: loopback listeners, allowed ports (an unknown
    program on Elasticsearch's port 9200 when 9200 is allowed), sshd's port;
    and every ports.* finding when the firewall can be read (firewall.* report those ports instead)."""
    need_tool("redis-server", "unshare", "nft")
    key = prepare_sshd(tmp_path)
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"HostKey {key}\nPort 2222\nListenAddress 0.0.0.0\nPidFile {tmp_path}/sshd.pid\n")
    www = tmp_path / "www"
    www.mkdir()
    with netns_pair() as pair:
        pair.listen("tcp:127.0.0.1:3306", "tcp:0.0.0.0:8081", "tcp:[::]:80", "udp:127.0.0.1:5353", "udp:0.0.0.0:5300",
                    "tcp:0.0.0.0:9200")
        pair.spawn(pair.server, ["/usr/sbin/sshd", "-D", "-f", str(cfg)])
        pair.spawn(pair.server, ["/usr/bin/python3", "-m", "http.server", "--bind", "0.0.0.0", "--directory", str(www),
                                 "6379"])
        pair.spawn(pair.server, ["redis-server", "--port", "7000", "--bind", "0.0.0.0", "--protected-mode", "no",
                                 "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--logfile",
                                 str(tmp_path / "redis.log")])
        _wait_for(pair, 2222, 6379, 7000)
        fallback = _scan(pair, tmp_path, firewall_readable=False)
        known = _scan(pair, tmp_path, firewall_readable=True)

    # firewall unreadable: the firewall family says so, the ports family reports every port
    assert {s["check"] for s in fallback["skipped"]} >= {"firewall.port_reachable", "firewall.service_reachable"}
    assert not [s for s in fallback["skipped"] if s["family"] == "ports"]
    assert _targets(fallback, "ports.exposed_service") == {(6379, "tcp", "0.0.0.0"), (7000, "tcp", "0.0.0.0")}
    assert _targets(fallback, "ports.not_allowed") == {(8081, "tcp", "0.0.0.0"), (5300, "udp", "0.0.0.0")}
    redis = _finding(fallback, "ports.exposed_service", 7000)
    assert (redis["severity"], redis["title"]) == ("high", "Redis listens on 0.0.0.0:7000/tcp (not only loopback)")
    assert (redis["evidence"]["service"], redis["evidence"]["identified_by"], redis["evidence"]["package"]) == (
        "Redis", "executable", "redis-tools")
    assert "/etc/redis/redis.conf" in redis["remediation"]["summary"]
    web = _finding(fallback, "ports.exposed_service", 6379)
    assert web["severity"] == "medium"
    assert web["title"] == ("An unknown service (python3 -m http.server) on Redis's port 6379 listens on 0.0.0.0 "
                            "(not only loopback)")
    assert (web["evidence"]["service"], web["evidence"]["identified_by"], web["evidence"]["usual_port_of"]) == (
        None, "port", "Redis")
    fix = json.dumps(web["remediation"])
    assert "redis.conf" not in fix and "requirepass" not in fix and catalogue().unknown_fix in fix

    # firewall readable (the namespace's empty ruleset: anyone reaches everything): one finding per port,
    # from the firewall family, and none from the ports family
    assert known["skipped"] == []
    assert [f for f in known["findings"] if f["id"].startswith("ports.")] == []
    assert _targets(known, "firewall.service_reachable") >= {(6379, "tcp", "0.0.0.0"), (7000, "tcp", "0.0.0.0")}
    # 8081 is open only because nothing denies by default: firewall.default_allow names it (its fix closes it)
    [default] = [f for f in known["findings"] if f["id"] == "firewall.default_allow"]
    assert (8081, "tcp", "0.0.0.0") in {(p["port"], p["proto"], p["address"]) for p in default["evidence"]["open_now"]}
    assert "8081/tcp (python" in default["title"]
    assert _targets(known, "firewall.port_reachable") == set()
    assert _finding(known, "firewall.service_reachable", 7000)["title"].startswith("Redis 7000/tcp is reachable")
    assert _finding(known, "firewall.service_reachable", 6379)["title"].startswith(
        "An unknown service (python3 -m http.server) on Redis's port 6379/tcp is reachable")


def test_ports_unavailable_under_root(tmp_path: Path, clean_tree: Path, capsys) -> None:
    from hostguard.cli import main

    code = main(["--state", str(tmp_path / "s"), "scan", "--root", str(clean_tree), "--only", "ports", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["findings"] == [] and report["complete"] is False
    assert {(s["check"], s["reason"]) for s in report["skipped"]} == {
        ("ports.not_allowed", "live_only"), ("ports.exposed_service", "live_only")}
