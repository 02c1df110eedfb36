"""respond/apply.py: line edits, deletions and drop-ins applied safely, refused when unsafe."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hostguard.remediation import Command, DeleteLine, Edit, Remediation, Write
from hostguard.respond.apply import ApplyError, apply


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\nsshd:x:105:65534::/run/sshd:/usr/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    cfg = root / "etc/ssh/sshd_config"
    cfg.write_text("Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nPasswordAuthentication yes\n")
    cfg.chmod(0o600)
    return root


def test_edit_delete_and_write(tree: Path) -> None:
    cfg = tree / "etc/ssh/sshd_config"
    done = apply([Edit("/etc/ssh/sshd_config", 2, "PermitRootLogin yes", "PermitRootLogin prohibit-password"),
                  DeleteLine("/etc/ssh/sshd_config", 3, "PasswordAuthentication yes"),
                  Write("/etc/ssh/sshd_config.d/00-hostguard-x11forwarding.conf", "X11Forwarding no\n", "0600",
                        "sshd:nogroup"),
                  Command(("systemctl", "reload", "sshd"))], str(tree))
    assert cfg.read_text() == "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin prohibit-password\n"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600  # mode kept
    dropin = tree / "etc/ssh/sshd_config.d/00-hostguard-x11forwarding.conf"
    assert dropin.read_text() == "X11Forwarding no\n"
    st = dropin.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 105, 65534)  # owner from the tree's files
    assert [s.kind for s in done.written] == ["write", "edit", "delete_line"]  # drop-ins before what names them
    assert done.not_run == [Command(("systemctl", "reload", "sshd"))]
    assert [p.name for p in (tree / "etc/ssh").iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_an_edit_may_insert_lines(tree: Path) -> None:
    apply([Edit("/etc/ssh/sshd_config", 1, "Include /etc/ssh/sshd_config.d/*.conf",
                "MaxAuthTries 4\nInclude /etc/ssh/sshd_config.d/*.conf")], str(tree))
    assert (tree / "etc/ssh/sshd_config").read_text().splitlines()[:2] == [
        "MaxAuthTries 4", "Include /etc/ssh/sshd_config.d/*.conf"]


def test_a_changed_line_is_refused_and_nothing_is_written(tree: Path) -> None:
    cfg = tree / "etc/ssh/sshd_config"
    before = cfg.read_text()
    with pytest.raises(ApplyError, match="line 3 reads `PasswordAuthentication yes`, not `PasswordAuthentication no`"):
        apply([Edit("/etc/ssh/sshd_config", 2, "PermitRootLogin yes", "PermitRootLogin no"),
               DeleteLine("/etc/ssh/sshd_config", 3, "PasswordAuthentication no")], str(tree))
    assert cfg.read_text() == before


def test_several_steps_on_one_file_keep_their_line_numbers(tree: Path) -> None:
    apply([Edit("/etc/ssh/sshd_config", 1, "Include /etc/ssh/sshd_config.d/*.conf", "A\nB"),
           Edit("/etc/ssh/sshd_config", 3, "PasswordAuthentication yes", "PasswordAuthentication no")], str(tree))
    assert (tree / "etc/ssh/sshd_config").read_text() == "A\nB\nPermitRootLogin yes\nPasswordAuthentication no\n"


@pytest.mark.parametrize("where", ["file", "directory"])
def test_a_symlink_is_never_followed(tree: Path, tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sshd_config").write_text("PermitRootLogin yes\n")
    if where == "file":
        (tree / "etc/ssh/sshd_config").unlink()
        (tree / "etc/ssh/sshd_config").symlink_to(outside / "sshd_config")
    else:
        os.rename(tree / "etc/ssh", tree / "etc/ssh.real")
        (tree / "etc/ssh").symlink_to(outside)
    with pytest.raises(ApplyError):
        apply([Edit("/etc/ssh/sshd_config", 1, "PermitRootLogin yes", "PermitRootLogin no")], str(tree))
    assert (outside / "sshd_config").read_text() == "PermitRootLogin yes\n"


@pytest.mark.parametrize("path", ["etc/passwd", "/etc/../../x", "/"])
def test_paths_must_be_absolute_and_plain(tree: Path, path: str) -> None:
    with pytest.raises(ApplyError, match="absolute"):
        apply([Write(path, "x\n")], str(tree))


def test_remediation_json_and_placeholders() -> None:
    rem = Remediation("Turn off root's password login", (
        Edit("/etc/ssh/sshd_config", 2, "PermitRootLogin yes", "PermitRootLogin prohibit-password"),
        Command(("sshd", "-t"), live_only=True)))
    assert rem.to_dict() == {
        "summary": "Turn off root's password login",
        "steps": [{"kind": "edit", "path": "/etc/ssh/sshd_config", "line": 2, "old": "PermitRootLogin yes",
                   "new": "PermitRootLogin prohibit-password"},
                  {"kind": "command", "argv": ["sshd", "-t"], "live_only": True, "undo": None, "reversible": False}],
        "manual": None, "params": []}
    assert rem.placeholders() == []
    bad = Remediation("x", (Write("/etc/nftables.d/x.nft", "ip saddr TRUSTED_NET accept\\n"),
                            Command(("usermod", "-u", "NEWUID", "bob"))))
    assert bad.placeholders() == ["TRUSTED_NET", "NEWUID"]


@pytest.mark.parametrize("trap", ["directory", "symlink", "unknown owner"])
def test_nothing_is_written_when_any_write_would_fail(tree: Path, tmp_path: Path, trap: str) -> None:
    """An include line must never land when the drop-in it names cannot be written."""
    cfg = tree / "etc/ssh/sshd_config"
    before = cfg.read_text()
    target = tree / "etc/ssh/sshd_config.d/00-hostguard-x.conf"
    owner = "root:root"
    if trap == "directory":
        target.mkdir()
    elif trap == "symlink":
        target.symlink_to(tmp_path / "elsewhere")
    else:
        owner = "nobody:nogroup"
    with pytest.raises(ApplyError):
        apply([Edit("/etc/ssh/sshd_config", 1, "Include /etc/ssh/sshd_config.d/*.conf",
                    "Include /etc/ssh/sshd_config.d/*.conf\nInclude /etc/ssh/extra.conf"),
               Write("/etc/ssh/sshd_config.d/00-hostguard-x.conf", "X11Forwarding no\n", "0644", owner)], str(tree))
    assert cfg.read_text() == before
    assert not (tmp_path / "elsewhere").exists()
