"""Issue 11 end to end: a real OpenSSH server in a network namespace the test makes, logging to a file (``-E``);
the attacker in a second namespace over veth; `hostguard logons follow LOG --block` running *inside the sshd
namespace* (its nft acts on that namespace's ruleset only, never this machine's: compared before and after).

The attacker fails three passwords for root, tries an invalid user, then logs in with root's key: the
success-after-brute-force alert (three failures of its source before a success). One more wrong password
crosses the brute-force threshold (five): the attacker is blocked and its next TCP connect to sshd fails. The
owner's approved address (``logons baseline approve ip``, made before) fails five passwords too: the brute-force
alert is raised, the block is refused (an approved baseline address) and it still connects. A firewall reload
(``flush ruleset``) is repaired by follow's timer. SIGTERM ends it with 0."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import need_root, need_tool
from tests.netns import CLIENT_V4, SERVER_V4, Pair, ip, netns_pair
from tests.respond.test_block_live import this_machines_ruleset

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
OWNER_V4 = "198.51.100.3"  # the owner's address, approved in the baseline before the attack
# count_probes off: the test's own reachability checks are bare TCP connects, which sshd logs as probes
CONFIG = """[detect.brute_force]
fast_failures = 5
count_probes = false
[detect.success_after]
failures = 3
"""
SSHD_CONFIG = """Port 22
ListenAddress 0.0.0.0
HostKey {tmp}/host_key
PidFile {tmp}/sshd.pid
LogLevel INFO
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AuthorizedKeysFile {tmp}/authorized_keys
StrictModes no
MaxAuthTries 3
LoginGraceTime 20
"""


class Server:
    """sshd in the server namespace, and clients from the client namespace."""

    def __init__(self, pair: Pair, tmp: Path) -> None:
        self.pair, self.tmp, self.log = pair, tmp, tmp / "sshd.log"
        for name in ("host_key", "good_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
        (tmp / "authorized_keys").write_text((tmp / "good_key.pub").read_text())
        (tmp / "sshd_config").write_text(SSHD_CONFIG.format(tmp=tmp))
        askpass = tmp / "askpass.sh"
        askpass.write_text("#!/bin/sh\necho 'not-the-password'\n")
        askpass.chmod(0o700)
        self.proc = pair.spawn(pair.server, ["/usr/sbin/sshd", "-D", "-f", str(tmp / "sshd_config"), "-E",
                                             str(self.log)])
        self.wait_for("Server listening", 0)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_for(self, needle: str, count: int, timeout: float = 30) -> None:
        """Until the log holds more than ``count`` lines with ``needle``."""
        deadline = time.monotonic() + timeout
        while self.text().count(needle) <= count:
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, f"no {needle!r} in the sshd log:\n{self.text()}"
            time.sleep(0.05)

    def ssh(self, user: str, source: str, *options: str, until: str | None = None) -> None:
        """One client connection from ``source`` in the client namespace; with ``until``, no command and the
        client stopped once the log shows it. Waits until sshd wrote the connection's lines."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.tmp),
               "SSH_ASKPASS": str(self.tmp / "askpass.sh"), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
        before = self.text().count(until) if until else 0
        argv = ["ip", "netns", "exec", self.pair.client, "ssh", "-F", "/dev/null", "-b", source,
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=10", *options, *(["-N"] if until else []), f"{user}@{SERVER_V4}",
                *([] if until else ["true"])]
        client = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while client.poll() is None and time.monotonic() < deadline:
                if until and self.text().count(until) > before:
                    break
                time.sleep(0.05)
        finally:
            if client.poll() is None:
                client.terminate()
            client.wait(timeout=10)
        last, stable = -1, 0
        while stable < 4:  # sshd has written the lines of the connection that just ended
            size = self.log.stat().st_size
            stable, last = (stable + 1 if size == last else 0), size
            time.sleep(0.1)

    def passwords(self, user: str, source: str, tries: int) -> None:
        self.ssh(user, source, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
                 "-o", f"NumberOfPasswordPrompts={tries}")

    def connects(self, source: str) -> bool:
        """A real TCP connect from ``source`` (client namespace) to sshd."""
        code = ("import socket,sys\ns = socket.socket(); s.settimeout(1.5); s.bind((sys.argv[1], 0))\n"
                f"sys.exit(0 if s.connect_ex(({SERVER_V4!r}, 22)) == 0 else 1)\n")
        return self.pair.run(self.pair.client, [sys.executable, "-c", code, source]).returncode == 0


def hostguard(pair: Pair, tmp: Path, *args: str) -> list[str]:
    return ["ip", "netns", "exec", pair.server, sys.executable, "-m", "hostguard.cli", "--config", str(tmp / "hg.toml"),
            "--state", str(tmp / "state"), *args]


def test_follow_block_stops_the_attacker_never_the_owner_and_raises_success_after_brute_force(tmp_path: Path) -> None:
    need_root("network namespaces, sshd and nft")
    need_tool("sshd", "ssh", "ssh-keygen", "nft", "ip")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    (tmp_path / "hg.toml").write_text(CONFIG)
    before = this_machines_ruleset()
    with netns_pair() as pair:
        ip("-n", pair.client, "addr", "add", f"{OWNER_V4}/24", "dev", "hgc" + pair.server[5:])
        server = Server(pair, tmp_path)
        assert server.connects(CLIENT_V4) and server.connects(OWNER_V4)
        done = subprocess.run(hostguard(pair, tmp_path, "logons", "baseline", "approve", "ip", OWNER_V4),
                              capture_output=True, text=True, env=ENV, timeout=60)
        assert done.returncode == 0 and done.stdout == f"approved ip {OWNER_V4}\n", done.stderr
        follow = subprocess.Popen(hostguard(pair, tmp_path, "logons", "follow", str(server.log), "--block",
                                            "--program", "sshd", "--format", "jsonl", "--interval", "0.2",
                                            "--verify-every", "1"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        alerts: queue.Queue[dict[str, object]] = queue.Queue()
        notes: list[str] = []

        def pump_out() -> None:
            assert follow.stdout is not None
            for text in follow.stdout:
                alerts.put(json.loads(text))

        def pump_err() -> None:
            assert follow.stderr is not None
            notes.extend(follow.stderr)

        threading.Thread(target=pump_out, daemon=True).start()
        err_thread = threading.Thread(target=pump_err, daemon=True)
        err_thread.start()

        def next_alert(detector: str) -> dict[str, object]:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    alert = alerts.get(timeout=0.5)
                except queue.Empty:
                    assert follow.poll() is None, "".join(notes)
                    continue
                if alert["id"] == detector:
                    return alert
            raise AssertionError(f"no {detector} alert; stderr: {''.join(notes)}")

        def blocked(network: str) -> bool:
            done = subprocess.run(hostguard(pair, tmp_path, "blocks", "--format", "json"), capture_output=True,
                                  text=True, env=ENV, timeout=60)
            return any(b["network"] == network for b in json.loads(done.stdout)["blocks"])

        try:
            server.passwords("root", CLIENT_V4, 3)              # three wrong passwords (MaxAuthTries ends it)
            server.passwords("nosuchuser-hg", CLIENT_V4, 1)      # an invalid user: four failures, under five
            server.ssh("root", CLIENT_V4, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                       "-o", "PreferredAuthentications=publickey", "-i", str(tmp_path / "good_key"),
                       until="Accepted publickey")
            success = next_alert("logon.success_after_brute_force")
            assert success["target"] == {"kind": "user", "user": "root", "service": "sshd", "address": CLIENT_V4}
            assert server.connects(CLIENT_V4), "blocked before the brute-force threshold"
            server.passwords("root", CLIENT_V4, 1)              # the fifth failure: brute force
            brute = next_alert("logon.brute_force")
            assert brute["target"] == {"kind": "ip", "address": CLIENT_V4}
            deadline = time.monotonic() + 20
            while server.connects(CLIENT_V4):
                assert time.monotonic() < deadline, "the attacker was not blocked: " + "".join(notes)
                time.sleep(0.2)
            # the owner mistypes five times from the approved address: alerted, never blocked
            server.passwords("root", OWNER_V4, 3)
            server.passwords("root", OWNER_V4, 2)
            owner = next_alert("logon.brute_force")
            assert owner["target"] == {"kind": "ip", "address": OWNER_V4}
            time.sleep(1.0)
            assert server.connects(OWNER_V4)
            assert blocked(f"{CLIENT_V4}/32") and not blocked(f"{OWNER_V4}/32")
            # a firewall reload flushes every table: follow's timer puts the block back
            subprocess.run(["ip", "netns", "exec", pair.server, "nft", "flush", "ruleset"], check=True)
            assert server.connects(CLIENT_V4)
            deadline = time.monotonic() + 20
            while server.connects(CLIENT_V4):
                assert time.monotonic() < deadline, "the flushed table was not restored: " + "".join(notes)
                time.sleep(0.2)
            assert server.connects(OWNER_V4)
            follow.send_signal(signal.SIGTERM)
            assert follow.wait(timeout=30) == 0
            err_thread.join(timeout=5)
            text = "".join(notes)
            assert f"refusing to block {OWNER_V4}/32: it is {OWNER_V4}/32 (an approved logon baseline address)" \
                in text, text
            assert f"blocked {CLIENT_V4}/32 until " in text and "restored " in text, text
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
    assert this_machines_ruleset() == before, "the test changed this machine's own ruleset"
