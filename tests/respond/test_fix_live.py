"""`hostguard fix` on a live system (no ``--root``) — a system the test builds, never this machine.

Each test runs hostguard in the server namespace of a ``netns_pair()`` and, inside it, a private mount
namespace where a copy of a fixture tree's /etc is bind-mounted over /etc and /run is a fresh tmpfs (so
``/run/systemd/system`` is absent and the timed rollback is a detached process, not a systemd unit). systemd
cannot run in a test namespace, so ``systemctl`` is a stand-in (``tests/respond/live_ns.py``) that records
its argv and, for ``reload sshd``, sends SIGHUP to the test's own sshd: on a machine where systemd is PID 1
the real ``systemctl`` would reach the real units. ``live_ns`` checks afterwards that this machine's own
systemctl, /etc/ssh and /etc/nftables.conf are exactly as before.

What is proved with real tools: the firewall fix loads a real nft table in the server namespace; real TCP
connections from the client namespace see 8080 closed, the SSH port open and an established session kept;
the timed rollback either is cancelled by ``--confirm`` from a new session or fires and *unloads* the table
(restoring the files alone would not); a real sshd keeps answering after an SSH fix and its undo.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from hostguard.store.state import StateStore
from tests.conftest import HITS, HOSTS
from tests.netns import SERVER_V4, connects_many
from tests.respond.live_ns import LiveNs, Session, live_ns

NFT_ACCEPT = HOSTS / "fixes" / "firewall" / "nft_accept"


def wait_for(what: Callable[[], bool], seconds: float = 15.0) -> bool:
    """Poll ``what`` until it holds (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.1)
    return what()


def fix_id(out: str) -> str:
    [line] = [line for line in out.splitlines() if line.strip().startswith("undo with:")]
    return line.split()[-1]


def manifest(ns: LiveNs, fid: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((ns.state / "fixes" / fid / "manifest.json").read_text())
    return data


def audit(ns: LiveNs) -> list[tuple[str, str]]:
    store = StateStore(str(ns.state))
    try:
        return [(e.action, e.reason) for e in store.audit_log()]
    finally:
        store.close()


def alive(pid: int) -> bool:
    try:
        return b"fix" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def reach(ns: LiveNs) -> dict[int, bool]:
    """Whether new TCP connections from the client namespace reach the SSH port and 8080."""
    got = connects_many(ns.pair, ns.pair.client, [(SERVER_V4, 2222), (SERVER_V4, 8080)])
    return {port: ok for (_, port), ok in got.items()}


def has_table(ns: LiveNs) -> bool:
    return ns.pair.run(ns.pair.server, ["nft", "list", "table", "inet", "hostguard"]).returncode == 0


def firewall_fixed(ns: LiveNs, seconds: int) -> tuple[str, Session]:
    """The accept-all ruleset loaded, the test's sshd on 2222 with an SSH connection established to it (the
    owner's session) and an echo listener on 8080, then the live fix; returns the fix id and the session."""
    loaded = ns.pair.run(ns.pair.server, ["nft", "-f", str(ns.tree / "etc/nftables.conf")])
    assert loaded.returncode == 0, loaded.stderr
    ns.start_sshd()
    ns.echo_server("0.0.0.0:8080")
    assert reach(ns) == {2222: True, 8080: True}
    session = ns.hold(SERVER_V4, 2222)   # established (banner read) before the fix: must survive it
    done = ns.hostguard("fix", "--yes", "--all", "--only", "firewall", "--rollback-after", str(seconds))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nftables: /etc/nftables.conf: nft accepts it" in done.stdout
    assert f"rolled back in {seconds} s unless you confirm" in done.stdout
    return fix_id(done.stdout), session


def test_live_firewall_fix_closes_the_port_keeps_ssh_and_is_kept_by_confirm(tmp_path: Path) -> None:
    with live_ns(tmp_path, NFT_ACCEPT) as ns:
        ns.host_key()
        before = files(ns.tree / "etc")
        fid, session = firewall_fixed(ns, 10)
        assert has_table(ns)
        assert reach(ns) == {2222: True, 8080: False}
        assert (session.send("SSH-2.0-hgtest\\r") or "").startswith("\0")   # sshd answers with its KEXINIT
        assert answers(ns)   # sshd behind the new table still completes a handshake
        assert ns.systemctl_calls() == ["enable nftables"]
        assert files(ns.tree / "etc") != before
        record = manifest(ns, fid)
        assert record["undo"] == [["nft", "delete", "table", "inet", "hostguard"]]
        timer = record["timer"]
        assert isinstance(timer, dict) and timer["kind"] == "process" and alive(timer["pid"])

        same = ns.hostguard("fix", "--confirm", fid)
        assert same.returncode == 2 and "from a new session" in same.stderr
        confirmed = ns.hostguard("fix", "--confirm", fid, new_session=True)
        assert confirmed.returncode == 0, confirmed.stderr
        assert wait_for(lambda: not alive(timer["pid"]), 5)
        assert manifest(ns, fid)["status"] == "confirmed"
        assert has_table(ns) and reach(ns) == {2222: True, 8080: False}
        assert [a for a, _ in audit(ns)] == ["fix", "confirm"]


def test_live_firewall_fix_not_confirmed_is_rolled_back_and_the_table_unloaded(tmp_path: Path) -> None:
    with live_ns(tmp_path, NFT_ACCEPT) as ns:
        ns.host_key()
        before = files(ns.tree / "etc")
        fid, session = firewall_fixed(ns, 2)
        assert reach(ns) == {2222: True, 8080: False}
        assert wait_for(lambda: manifest(ns, fid)["status"] == "rolled back", 20), manifest(ns, fid)
        notes = manifest(ns, fid)["notes"]
        assert isinstance(notes, list) and notes[-1] == "rollback done"
        assert not has_table(ns)   # the undo command ran: restoring the files alone leaves the table loaded
        assert reach(ns) == {2222: True, 8080: True}
        assert (session.send("SSH-2.0-hgtest\\r") or "").startswith("\0")
        assert answers(ns)
        assert files(ns.tree / "etc") == before
        assert audit(ns) == [("fix", "fixed"), ("rollback", "timed rollback: not confirmed")]
        assert set(ns.systemctl_calls()) == {"enable nftables"}   # never a reload of another service


def sshd_t(ns: LiveNs) -> dict[str, str]:
    done = ns.run("/usr/sbin/sshd", "-T", "-f", "/etc/ssh/sshd_config")
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def answers(ns: LiveNs) -> bool:
    """A real SSH handshake from the client namespace to the test's sshd (the host key comes back)."""
    done = ns.pair.run(ns.pair.client, ["ssh-keyscan", "-T", "3", "-p", "2222", SERVER_V4])
    return "ssh-ed25519" in done.stdout


def hups(ns: LiveNs) -> int:
    log = ns.tmp / "sshd.log"
    return log.read_text().count("Received SIGHUP") if log.exists() else 0


def test_live_sshd_fix_reloads_the_running_sshd_which_still_answers_and_undo_restores(tmp_path: Path) -> None:
    with live_ns(tmp_path, HITS / "ssh.max_auth_tries") as ns:
        sshd = ns.start_sshd()
        pid = int(ns.pidfile.read_text())
        assert wait_for(lambda: answers(ns), 10)
        assert sshd_t(ns)["maxauthtries"] == "10"
        before = files(ns.tree / "etc/ssh")

        done = ns.hostguard("fix", "--yes", "--all", "--only", "ssh.max_auth_tries", "--rollback-after", "60")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "sshd: sshd -t accepts the config" in done.stdout
        fid = fix_id(done.stdout)
        assert ns.systemctl_calls() == ["reload sshd"]
        assert wait_for(lambda: hups(ns) == 1, 10)
        assert sshd_t(ns)["maxauthtries"] == "4"
        assert "MaxAuthTries 4\n" in (ns.tree / "etc/ssh/sshd_config").read_text()
        assert wait_for(lambda: answers(ns), 10)
        assert sshd.poll() is None and int(ns.pidfile.read_text()) == pid   # reloaded in place, not restarted
        timer = manifest(ns, fid)["timer"]
        assert isinstance(timer, dict) and alive(timer["pid"])

        undone = ns.hostguard("fix", "--undo", fid)
        assert undone.returncode == 0, undone.stdout + undone.stderr
        assert not alive(timer["pid"])   # the undo cancelled the armed rollback
        assert files(ns.tree / "etc/ssh") == before
        assert ns.systemctl_calls() == ["reload sshd", "reload sshd"]
        assert wait_for(lambda: hups(ns) == 2, 10)
        assert sshd_t(ns)["maxauthtries"] == "10"
        assert wait_for(lambda: answers(ns), 10)
        assert [a for a, _ in audit(ns)] == ["fix", "undo"]
