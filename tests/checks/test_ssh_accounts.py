"""Which accounts the SSH password checks name: root-capable accounts (UID 0, admin groups, sudo ALL, the
docker/lxd/disk groups) that can type a password; UID 0 accounts only under ssh.root_password_login."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.engine.facts import Facts
from hostguard.host.base import RootHost
from hostguard.host.root_capable import ROOT_CAPABLE, password_state
from hostguard.host.sockets import LISTENERS, Listener
from tests.conftest import build_tree, make_config, run_one

HASH = "$y$j9T$BMtPgx.5stORcnMfQ47uy.$FR0rG1SBwnJzzqTq3e0k9d8mXYdDUqFhJ3d1lc0tS9A"
OPEN_SSHD = "Port 2222\nPermitRootLogin yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n"


def _tree(tmp_path: Path, passwd: str = "", shadow: str = "", group: str = "", sudoers: str = "") -> Path:
    tree = build_tree(tmp_path / "host")
    etc = tree / "etc"
    (etc / "ssh/sshd_config").write_text(OPEN_SSHD)
    (etc / "ssh/sshd_config.d/10-keys-only.conf").unlink()
    for name, extra in (("passwd", passwd), ("shadow", shadow), ("group", group)):
        (etc / name).write_text((etc / name).read_text() + extra)
    if sudoers:
        (etc / "sudoers.d/extra").write_text(sudoers)
    return tree


def _names(check_id: str, tree: Path) -> list[str]:
    found, skipped = run_one(check_id, RootHost(str(tree)))
    assert skipped == []
    if check_id == "ssh.root_password_login":
        return [n for f in found for n in f.evidence["accounts"]]
    return sorted(f.target["user"] for f in found)


def test_uid0_account_is_subject_to_permitrootlogin_and_reported_once(tmp_path: Path) -> None:
    tree = _tree(tmp_path, "toor:x:0:0::/root:/bin/bash\n", f"toor:{HASH}:20000:0:99999:7:::\n")
    assert _names("ssh.root_password_login", tree) == ["root", "toor"]
    assert "toor" not in _names("ssh.password_auth", tree) and "root" not in _names("ssh.password_auth", tree)


def test_uid0_account_with_a_locked_password_cannot_log_in_with_one(tmp_path: Path) -> None:
    """Near miss: toor's hash is locked (``!`` before it), so no password typed for it is accepted."""
    tree = _tree(tmp_path, "toor:x:0:0::/root:/bin/bash\n", f"toor:!{HASH}:20000:0:99999:7:::\n")
    assert _names("ssh.root_password_login", tree) == ["root"]
    assert _names("ssh.password_auth", tree) == ["alice"]


def test_root_with_a_locked_password_is_not_reported(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    shadow = tree / "etc/shadow"
    shadow.write_text("\n".join("root:*:20000:0:99999:7:::" if line.startswith("root:") else line
                                for line in shadow.read_text().splitlines()) + "\n")
    assert _names("ssh.root_password_login", tree) == []


@pytest.mark.parametrize("how", ["docker", "lxd", "disk", "sudo_all", "sudo_all_nopasswd", "sudo_group_all"])
def test_root_capable_by_group_or_sudoers(tmp_path: Path, how: str) -> None:
    group = f"{how}:x:990:bob\n" if how in ("docker", "lxd", "disk") else "ops:x:991:bob\n"
    sudoers = {"sudo_all": "bob ALL=(ALL:ALL) ALL\n", "sudo_all_nopasswd": "bob ALL=(root) NOPASSWD: ALL\n",
               "sudo_group_all": "%ops ALL=(ALL) ALL\n"}.get(how, "")
    tree = _tree(tmp_path, "bob:x:1001:1001::/home/bob:/bin/bash\n", f"bob:{HASH}:20000:0:99999:7:::\n",
                 group, sudoers)
    assert _names("ssh.password_auth", tree) == ["alice", "bob"]


@pytest.mark.parametrize("how", ["narrow_sudo", "plain_group", "locked", "nologin"])
def test_not_root_capable_or_cannot_type_a_password(tmp_path: Path, how: str) -> None:
    """Near misses: a sudo rule for one command, a group that gives no root, a locked password, no shell."""
    shell = "/usr/sbin/nologin" if how == "nologin" else "/bin/bash"
    hash_ = "!" + HASH if how == "locked" else HASH
    group = "docker:x:990:bob\n" if how in ("locked", "nologin") else "users:x:100:bob\n"
    sudoers = "bob ALL=(root) /usr/bin/systemctl restart nginx\n" if how == "narrow_sudo" else ""
    tree = _tree(tmp_path, f"bob:x:1001:1001::/home/bob:{shell}\n", f"bob:{hash_}:20000:0:99999:7:::\n",
                 group, sudoers)
    assert _names("ssh.password_auth", tree) == ["alice"]


def test_root_capable_says_why(tmp_path: Path) -> None:
    tree = _tree(tmp_path, "bob:x:1001:1001::/home/bob:/bin/bash\n", f"bob:{HASH}:20000:0:99999:7:::\n",
                 "docker:x:990:bob\n", "bob ALL=(ALL) ALL\n")
    capable = Facts(RootHost(str(tree)), make_config()).get(ROOT_CAPABLE).by_name()
    assert capable["bob"].why == ("sudoers /etc/sudoers.d/extra:1", "group docker")
    assert capable["alice"].why == ("group sudo", "sudoers /etc/sudoers:4")  # %sudo ALL=(ALL:ALL) ALL
    assert capable["root"].why == ("UID 0", "group root", "sudoers /etc/sudoers:3") and capable["root"].password == "set"
    assert "daemon" not in capable


@pytest.mark.parametrize(("hash_", "state"), [("", "empty"), ("!", "locked"), ("*", "locked"), ("!!", "locked"),
                                              (f"!{HASH}", "locked"), (HASH, "set"), (None, "unknown")])
def test_password_state(hash_: str | None, state: str) -> None:
    assert password_state(hash_) == state


def _listener(port: int, process: str) -> Listener:
    return Listener("tcp", "0.0.0.0", port, (4,), 1, process, None, "root")


@pytest.mark.parametrize(("sshd_config", "listeners", "title"), [
    ("Port 22\n", None, "sshd is configured to listen on port 22"),
    ("Port 22\n", (_listener(22, "sshd"),), "sshd listens on port 22"),
    ("Port 22\n", (_listener(2200, "sshd"),), "sshd is configured for port 22 (it listens on 2200 until it is reloaded)"),
    ("Port 22\n", (_listener(22, "nginx"),), "sshd is configured for port 22 (it is not running now)"),
    ("ListenAddress 127.0.0.1\n", None, "sshd is configured to listen on port 22"),  # no Port: sshd's default
    ("Port 2222\nListenAddress 0.0.0.0:22\n", None, "sshd is configured to listen on port 22"),
])
def test_default_port_says_configured_or_listening(tmp_path: Path, sshd_config: str,
                                                   listeners: tuple[Listener, ...] | None, title: str) -> None:
    tree = _tree(tmp_path)
    (tree / "etc/ssh/sshd_config").write_text(sshd_config)
    found, skipped = run_one("ssh.default_port", RootHost(str(tree)), given={} if listeners is None else
                             {LISTENERS: listeners})
    assert skipped == [] and [f.title for f in found] == [title]


@pytest.mark.parametrize("sshd_config", ["Port 2222\n", "ListenAddress 0.0.0.0:2222\n",
                                         "Port 22\nListenAddress 0.0.0.0:2222\nListenAddress [::]:2222\n"])
def test_default_port_near_miss_listenaddress_names_its_own_port(tmp_path: Path, sshd_config: str) -> None:
    """sshd -T prints `port 22` for `ListenAddress 0.0.0.0:2222`, yet sshd binds 2222 only."""
    tree = _tree(tmp_path)
    (tree / "etc/ssh/sshd_config").write_text(sshd_config)
    assert run_one("ssh.default_port", RootHost(str(tree)))[0] == []
