"""A live host for ``hostguard fix`` that is not this machine: the server namespace of a ``netns_pair()``,
entered through a private mount namespace where a *copy* of a fixture tree's /etc is bind-mounted over /etc,
/run is a fresh tmpfs, and ``systemctl`` (and ``systemd-run``) are a stand-in.

Why the stand-in: systemd is not PID 1 here, and where it is (a CI machine), a real ``systemctl`` would talk
to the real PID 1, which does not see our mounts and could enable or reload this machine's own units. The
stand-in only appends its argv to a log in the test directory and, for ``reload sshd``, sends SIGHUP to the
test's own sshd (its pid file is in the test directory) — what systemd's reload would do, since systemd
cannot run in a test namespace. It is bind-mounted over the real binaries (inside the private mount
namespace only) and put first on PATH, so nothing can reach the real one.

Every command goes through :meth:`LiveNs.argv`, which sets the mounts up again in a new private mount
namespace (sshd and each hostguard run get their own; all see the same tree copy, as bind mounts of one
directory). ``host_fingerprint()`` is what the tests compare before and after: the real /usr/bin/systemctl,
/etc/ssh and /etc/nftables.conf of this machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import FIXTURES, build_tree, need_tool
from tests.netns import Pair, netns_pair

FAST = str(FIXTURES / "fast.toml")
ECHO = Path(__file__).parent / "echo.py"
SYSTEMD_BINARIES = ("/usr/bin/systemctl", "/bin/systemctl", "/usr/bin/systemd-run", "/bin/systemd-run")

# $1 the tree copy's /etc, $2 the stand-in, $3 its directory; then the command.
ENTER = """set -e
mount --bind "$1" /etc
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -m 755 /run/sshd
for f in {binaries}; do
  if [ -e "$f" ]; then mount --bind "$2" "$f"; fi
done
PATH="$3:$PATH"; export PATH
shift 3
exec "$@"
""".format(binaries=" ".join(SYSTEMD_BINARIES))

STANDIN = """#!/bin/sh
# Stand-in for systemctl/systemd-run inside a test namespace (see tests/respond/live_ns.py): records, never acts,
# except that "reload sshd" sends SIGHUP to the test's own sshd.
printf '%s\\n' "$*" >> {log}
case "$1 $2" in
  "reload sshd"|"reload ssh") kill -HUP "$(cat {pidfile})" ;;
esac
exit 0
"""


def _digest(path: Path) -> str:
    try:
        st = path.lstat()
        data = path.read_bytes() if path.is_file() else b""
    except FileNotFoundError:
        return "absent"
    except PermissionError:
        return f"unreadable {path.lstat().st_ino}"
    return f"{st.st_ino}:{st.st_mode:o}:{st.st_mtime_ns}:{hashlib.sha256(data).hexdigest()}"


def host_fingerprint() -> dict[str, str]:
    """This machine's own files a live fix could reach if the isolation failed."""
    paths = [Path(p) for p in SYSTEMD_BINARIES] + [Path("/etc/nftables.conf"), Path("/etc/nftables.d")]
    if Path("/etc/ssh").is_dir():
        paths += sorted(Path("/etc/ssh").rglob("*"))
    return {str(p): _digest(p) for p in paths}


@dataclass
class LiveNs:
    """The namespaces and the tree copy of one live test."""

    pair: Pair
    tmp: Path
    tree: Path
    state: Path
    standin_dir: Path
    log: Path
    pidfile: Path
    sessions: list[subprocess.Popen[str]] = field(default_factory=list)

    def argv(self, *command: str) -> list[str]:
        """``command`` run in the server namespace, in a private mount namespace over the tree copy."""
        return ["ip", "netns", "exec", self.pair.server, "unshare", "--mount", "--propagation", "private",
                "sh", "-c", ENTER, "sh", str(self.tree / "etc"), str(self.standin_dir / "systemctl"),
                str(self.standin_dir), *command]

    def hostguard(self, *args: str, new_session: bool = False) -> subprocess.CompletedProcess[str]:
        """``hostguard --config fast --state <tmp> ARGS`` live in the namespaces (no --root)."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        return subprocess.run(self.argv(sys.executable, "-m", "hostguard.cli", "--config", FAST, "--state",
                                        str(self.state), *args),
                              capture_output=True, text=True, env=env, timeout=60, start_new_session=new_session)

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*command), capture_output=True, text=True, timeout=30)

    def systemctl_calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def echo_server(self, *specs: str) -> None:
        """Echoing TCP listeners in the server namespace (they stay up until the pair is torn down)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.pair.server, sys.executable, str(ECHO), "serve",
                                 *specs], stdout=subprocess.PIPE)
        self.pair.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"

    def hold(self, address: str, port: int) -> Session:
        """An established connection from the client namespace, kept open."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.pair.client, sys.executable, str(ECHO), "hold",
                                 address, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.sessions.append(proc)
        session = Session(proc)
        assert session.line() == "connected"
        return session

    def host_key(self) -> None:
        """A host key in the tree copy (``sshd -T``, which the live scan asks, refuses to run without one)."""
        key = self.tree / "etc/ssh/ssh_host_ed25519_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                           capture_output=True)

    def start_sshd(self) -> subprocess.Popen[bytes]:
        """The test's own sshd, reading the tree copy's config, with a host key generated into the copy."""
        self.host_key()
        proc = subprocess.Popen(self.argv("/usr/sbin/sshd", "-D", "-f", "/etc/ssh/sshd_config", "-o",
                                          f"PidFile={self.pidfile}", "-E", str(self.tmp / "sshd.log")))
        self.pair.procs.append(proc)
        deadline = time.time() + 10
        while not (self.pidfile.exists() and self.pidfile.read_text().strip()):
            assert proc.poll() is None and time.time() < deadline, (self.tmp / "sshd.log").read_text()
            time.sleep(0.05)
        return proc

    def armed_pids(self) -> list[int]:
        """Pids of rollback processes the fixes of this test armed."""
        pids = []
        for manifest in (self.state / "fixes").glob("*/manifest.json"):
            timer = json.loads(manifest.read_text()).get("timer") or {}
            if timer.get("kind") == "process":
                pids.append(int(timer["pid"]))
        return pids


class Session:
    """One held connection: ``ping()`` says whether it still carries data."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, text: str) -> str | None:
        """Send ``text`` and a newline; what came back (None when nothing did within 2 s)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        answer = self.line()
        return None if answer == "lost" else str(json.loads(answer))

    def ping(self) -> bool:
        """The echo server sent our word back."""
        return self.send("ping") == "ping\n"


@contextlib.contextmanager
def live_ns(tmp: Path, overlay: Path | None = None) -> Iterator[LiveNs]:
    """A tree copy (clean tree + ``overlay``), the namespaces, the stand-in; all torn down afterwards, and this
    machine's own systemctl, /etc/ssh and /etc/nftables.conf checked to be exactly as before."""
    need_tool("unshare", "nft", "sshd", "ssh-keygen", "ssh-keyscan")
    before = host_fingerprint()
    tree = build_tree(tmp / "host", overlay)
    standin_dir = tmp / "standin"
    standin_dir.mkdir()
    log, pidfile = tmp / "systemctl.log", tmp / "sshd.pid"
    for name in ("systemctl", "systemd-run"):
        script = standin_dir / name
        script.write_text(STANDIN.format(log=shlex.quote(str(log)), pidfile=shlex.quote(str(pidfile))))
        script.chmod(0o755)
    with netns_pair() as pair:
        ns = LiveNs(pair, tmp, tree, tmp / "state", standin_dir, log, pidfile)
        try:
            yield ns
        finally:
            for proc in ns.sessions:
                proc.kill()
                proc.wait(timeout=5)
            for pid in ns.armed_pids():  # a rollback still waiting must not outlive the test
                cmdline = Path(f"/proc/{pid}/cmdline")
                with contextlib.suppress(OSError):
                    if str(ns.state).encode() in cmdline.read_bytes():
                        os.kill(pid, signal.SIGKILL)
    assert host_fingerprint() == before, "this machine's own systemctl, /etc/ssh or /etc/nftables.conf changed"
