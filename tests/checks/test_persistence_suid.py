"""persistence.suid_unpackaged: setuid/setgid files and file capabilities in trees built here.

Git cannot carry setuid bits or xattrs, so every tree is the clean fixture plus files chmodded and setcap'd
by the test; the capability names are compared with what libcap's own ``getcap`` prints, not with our table.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from hostguard.findings import Finding, Severity
from hostguard.host.base import RootHost
from hostguard.host.persistence import SetidWalk, decode_capabilities
from tests.conftest import build_tree, need_root, need_tool, run_one

CHECK = "persistence.suid_unpackaged"


pytestmark = pytest.mark.usefixtures("no_setid_left")


def _program(root: Path, rel: str, mode: int) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexec /bin/sh -p\n")
    path.chmod(mode)
    return path


def _own(root: Path, package: str, *paths: str) -> None:
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True, exist_ok=True)
    (info / f"{package}.list").write_text("/.\n" + "".join(f"{p}\n" for p in paths))


def _getcap(path: Path) -> set[str]:
    """The permitted capability names libcap's getcap shows (``/x cap_a,cap_b=ep``)."""
    out = subprocess.run(["getcap", str(path)], capture_output=True, text=True, check=True, timeout=10).stdout
    return set(out.split()[-1].split("=")[0].split(","))


def _by_path(findings: list[Finding]) -> dict[str, Finding]:
    return {str(f.target["path"]): f for f in findings}


def test_unpackaged_setuid_setgid_and_capabilities_are_found(tmp_path: Path) -> None:
    need_root("a setuid-root file and setcap")
    need_tool("setcap", "getcap")
    root = build_tree(tmp_path / "host")
    _own(root, "login", "/usr/bin/newgrp")  # a database exists, and does not own the files below
    _program(root, "usr/local/bin/rootshell", 0o4755)
    _program(root, "opt/tool/bin/games", 0o2755)
    capped = _program(root, "var/tmp/.x/pinger", 0o755)
    subprocess.run(["setcap", "cap_setuid,cap_net_raw+ep", str(capped)], check=True, timeout=10)
    nobody = _program(root, "home/alice/bin/helper", 0o4755)
    os.chown(nobody, 1000, 1000)
    nobody.chmod(0o4755)  # chown cleared the bit

    findings, skipped = run_one(CHECK, RootHost(str(root)))

    found = _by_path(findings)
    assert sorted(found) == ["/home/alice/bin/helper", "/opt/tool/bin/games", "/usr/local/bin/rootshell",
                             "/var/tmp/.x/pinger"]
    assert skipped == []
    assert found["/usr/local/bin/rootshell"].severity is Severity.HIGH
    assert found["/usr/local/bin/rootshell"].evidence["mode"] == "4755"
    assert found["/opt/tool/bin/games"].severity is Severity.MEDIUM
    assert found["/home/alice/bin/helper"].severity is Severity.MEDIUM  # setuid, but to uid 1000
    cap = found["/var/tmp/.x/pinger"]
    assert cap.severity is Severity.MEDIUM
    caps = cap.evidence["capabilities"]
    assert isinstance(caps, dict)
    assert set(caps["permitted"]) == _getcap(capped) == {"cap_setuid", "cap_net_raw"}
    assert caps["effective"] is True
    steps = [s.describe() for s in found["/usr/local/bin/rootshell"].remediation.steps]
    assert steps == ["run `chmod u-s /usr/local/bin/rootshell`"]
    assert [s.describe() for s in cap.remediation.steps] == ["run `setcap -r /var/tmp/.x/pinger`"]


def test_packaged_plain_linked_and_outside_files_are_quiet(tmp_path: Path) -> None:
    need_root("setuid-root files")
    root = build_tree(tmp_path / "host")
    _program(root, "usr/bin/passwd", 0o4755)
    _program(root, "usr/sbin/unix_chkpwd", 0o2755)
    (root / "sbin").symlink_to("usr/sbin")  # merged /usr: dpkg lists /sbin/unix_chkpwd
    _own(root, "passwd", "/usr/bin/passwd")
    _own(root, "libpam-modules-bin", "/sbin/unix_chkpwd")
    _program(root, "usr/local/bin/plain", 0o755)
    _program(root, "usr/local/bin/readme", 0o4644)  # setuid but not executable: nothing to gain
    evil = _program(root, "etc/cron.hourly/.evil", 0o4755)  # setuid, outside the program directories
    (root / "usr/local/bin/evil").symlink_to(evil)  # a link is not followed
    (root / "usr/local/bin/evil2").symlink_to("/etc/cron.hourly/.evil")
    outside = _program(tmp_path / "elsewhere", "shm/shell", 0o4755)  # the tree's /dev points out of it
    (root / "dev").symlink_to(outside.parent.parent)
    (root / "srv").symlink_to(outside.parent)

    findings, skipped = run_one(CHECK, RootHost(str(root)))

    assert findings == []
    assert skipped == []


def test_without_a_package_database_files_are_not_judged(tmp_path: Path) -> None:
    need_root("a setuid-root file")
    root = build_tree(tmp_path / "host")
    _program(root, "usr/local/bin/rootshell", 0o4755)
    findings, skipped = run_one(CHECK, RootHost(str(root)))
    assert findings == []
    assert [s.reason.value for s in skipped] == ["unsupported"]


def test_the_walk_stops_at_its_deadline_and_says_where(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "host")
    _program(root, "usr/local/bin/tool", 0o2755)
    walk = SetidWalk(RootHost(str(root)))
    assert list(walk.files(deadline=time.monotonic() - 1)) == []
    assert walk.stopped_in == "/usr"
    again = SetidWalk(RootHost(str(root)))
    assert [f.path for f in again.files(deadline=time.monotonic() + 60)] == ["/usr/local/bin/tool"]
    assert again.stopped_in is None
    assert again.walked == ["/usr", "/home", "/root"]  # /usr/local was walked as part of /usr


def test_capability_sets_decode_like_getcap_and_garbage_does_not_raise(tmp_path: Path) -> None:
    need_root("setcap")
    need_tool("setcap", "getcap")
    path = _program(tmp_path, "prog", 0o755)
    for text in ("cap_net_bind_service=ep", "cap_sys_admin,cap_dac_override,cap_bpf=p", "cap_checkpoint_restore+ep"):
        subprocess.run(["setcap", text, str(path)], check=True, timeout=10)
        caps = decode_capabilities(os.getxattr(path, "security.capability"))
        assert set(caps.permitted) == _getcap(path), text
        assert caps.effective is text.endswith("ep")
    for junk in (b"", b"\x00\x00\x00\x09", b"\x01\x00\x00\x02\x01"):
        assert decode_capabilities(junk).decoded is False
