"""The real OpenSSH server of this machine, on a loopback port with its own key and config, logging to a
file: real clients fail passwords, try an invalid user, offer a refused key, log in with a good key, and
knock without speaking SSH. The log lines this OpenSSH version writes must give exactly those attempts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.cli import main
from tests.conftest import need_root, need_tool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sshd:
    """An sshd started for one test, stopped (by its own pid) at the end."""

    def __init__(self, tmp: Path, log_level: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.log = tmp / "sshd.log"
        for name in ("host_key", "good_key", "bad_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
        (tmp / "authorized_keys").write_text((tmp / "good_key.pub").read_text())
        (tmp / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\nPidFile {tmp / 'sshd.pid'}\n"
            f"LogLevel {log_level}\nUsePAM no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
            f"PermitRootLogin prohibit-password\nAuthorizedKeysFile {tmp / 'authorized_keys'}\nStrictModes no\n"
            "MaxAuthTries 3\nLoginGraceTime 20\n")
        askpass = tmp / "askpass.sh"
        askpass.write_text("#!/bin/sh\necho 'not-the-password'\n")
        askpass.chmod(0o700)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(tmp / "sshd_config"), "-E", str(self.log)])
        deadline = time.monotonic() + 10
        while "Server listening" not in (self.log.read_text() if self.log.exists() else ""):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"sshd did not start: {self.log.read_text() if self.log.exists() else ''}")
            time.sleep(0.05)

    def ssh(self, user: str, *options: str, until: str | None = None) -> None:
        """One client connection; its failure is the point, so its exit code is not checked. With ``until``, the
        client asks for no command (``-N``: root's shell startup files are not this test's business) and is
        stopped once the log shows ``until``."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.tmp),
               "SSH_ASKPASS": str(self.tmp / "askpass.sh"), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
        argv = ["ssh", "-F", "/dev/null", "-p", str(self.port), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", *options,
                *(["-N"] if until else []), f"{user}@127.0.0.1", *([] if until else ["true"])]
        client = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while client.poll() is None and time.monotonic() < deadline:
                if until and until in self.log.read_text():
                    break
                time.sleep(0.05)
        finally:
            if client.poll() is None:
                client.terminate()
            client.wait(timeout=10)
        self.settle()

    def knock(self, payload: bytes) -> None:
        """A TCP connection that sends ``payload`` (maybe nothing) and closes: no SSH at all."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            if payload:
                s.sendall(payload)
                s.settimeout(5)
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
        self.settle()

    def settle(self) -> None:
        """Wait until sshd has written the lines of the connection that just ended."""
        last, stable = -1, 0
        while stable < 4:
            size = self.log.stat().st_size
            stable = stable + 1 if size == last else 0
            last = size
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)


@pytest.fixture(params=["VERBOSE", "INFO"])
def sshd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sshd]:
    need_tool("sshd", "ssh", "ssh-keygen")
    need_root("a real sshd (privilege separation needs root and /run/sshd)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    server = Sshd(tmp_path, request.param)
    try:
        yield server
    finally:
        server.stop()


def parse(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["logons", "parse", str(path), "--program", "sshd", "--format", "jsonl"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_real_sshd_attempts(sshd: Sshd, capsys: pytest.CaptureFixture[str]) -> None:
    password = ("-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password")
    sshd.ssh("root", *password, "-o", "NumberOfPasswordPrompts=3")  # three wrong passwords: MaxAuthTries ends it
    sshd.ssh("nosuchuser-hg", *password, "-o", "NumberOfPasswordPrompts=1")
    keys = ("-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey")
    sshd.ssh("root", *keys, "-i", str(sshd.tmp / "bad_key"))  # a key the server refuses
    sshd.ssh("root", *keys, "-i", str(sshd.tmp / "good_key"), until="Accepted publickey")
    sshd.knock(b"")                                           # connects, says nothing, leaves
    sshd.knock(b"GET / HTTP/1.0\r\n\r\n")                     # not SSH at all
    sshd.stop()
    lines = sshd.log.read_text().splitlines()
    events = parse(sshd.log, capsys)
    verbose = any(line.startswith("Connection from ") for line in lines)
    got = [(e["outcome"], e["user"], e["method"], lines[int(str(e["line"])) - 1].split(" for ")[0].split(" by ")[0])
           for e in events]
    refused_key = (("failure", "root", "publickey", "Failed publickey") if verbose else
                   ("failure", "root", None, "Connection closed"))  # at INFO a refused key leaves only the close
    assert got == [
        ("failure", "root", "password", "Failed password"),
        ("failure", "root", "password", "Failed password"),
        ("failure", "root", "password", "Failed password"),
        ("failure", "nosuchuser-hg", "password", "Failed password"),
        refused_key,
        ("success", "root", "publickey", "Accepted publickey"),
        ("probe", None, None, "Connection closed"),
        ("probe", None, None, f"banner exchange: Connection from 127.0.0.1 port {events[-1]['port']}: invalid format"),
    ], "\n".join(lines)
    assert {e["ip"] for e in events} == {"127.0.0.1"}
    assert all(isinstance(e["port"], int) for e in events)
    assert len({e["port"] for e in events[:3]}) == 1  # one connection, three attempts
    assert len({e["port"] for e in events[3:]}) == 5
    assert all(e["time"] is None and e["count"] == 1 and e["service"] == "sshd" for e in events)
    # the lines that only accompany an attempt were there, and gave nothing of their own
    assert any("maximum authentication attempts exceeded" in line for line in lines)
    assert any(line.startswith("Invalid user nosuchuser-hg") for line in lines)
