"""Which package owns a file: dpkg's file lists in a tree, and on this machine checked against dpkg-query."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hostguard.engine.facts import Facts
from hostguard.host.base import LiveHost, RootHost
from hostguard.host.packages import EXE_OWNERS, FileOwners, dpkg_owners, usr_aliases
from tests.conftest import make_config, need_tool


def _lists(root: Path, lists: dict[str, str]) -> RootHost:
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    for name, text in lists.items():
        (info / name).write_text(text)
    (info / "redis-tools.md5sums").write_text("0123  usr/bin/redis-check-rdb\n")  # not a list: ignored
    return RootHost(str(root))


def test_owners_from_a_trees_dpkg_lists(tmp_path: Path) -> None:
    host = _lists(tmp_path, {
        "redis-tools.list": "/.\n/usr\n/usr/bin\n/usr/bin/redis-check-rdb\n/usr/bin/redis-cli\n",
        "bash.list": "/.\n/bin\n/bin/bash\n",                    # listed before /usr was merged
        "libc6:amd64.list": "/.\n/usr/lib/x86_64-linux-gnu/libc.so.6\n",
    })
    owners = dpkg_owners(host, ["/usr/bin/redis-check-rdb", "/usr/bin/bash",
                                "/usr/lib/x86_64-linux-gnu/libc.so.6", "/tmp/.x/redis-server", "/usr/bin/redis"])
    assert owners == FileOwners({"/usr/bin/redis-check-rdb": "redis-tools", "/usr/bin/bash": "bash",
                                 "/usr/lib/x86_64-linux-gnu/libc.so.6": "libc6"}, "dpkg")
    assert owners.owner("/tmp/.x/redis-server") is None and owners.owner(None) is None


def test_no_dpkg_database_says_unknown_not_unpackaged(tmp_path: Path) -> None:
    assert dpkg_owners(RootHost(str(tmp_path)), ["/usr/bin/bash"]) == FileOwners({}, None)


def test_merged_usr_spellings() -> None:
    assert usr_aliases("/usr/sbin/sshd") == ("/usr/sbin/sshd", "/sbin/sshd")
    assert usr_aliases("/bin/bash") == ("/bin/bash", "/usr/bin/bash")
    assert usr_aliases("/usr/share/elasticsearch/jdk/bin/java") == ("/usr/share/elasticsearch/jdk/bin/java",)
    assert usr_aliases("/opt/bin/x") == ("/opt/bin/x",)


def _dpkg_query(path: str) -> str | None:
    """dpkg's own answer (which knows no merged-/usr aliases, so both spellings are asked)."""
    for spelling in (path, path.removeprefix("/usr")):
        r = subprocess.run(["dpkg-query", "-S", spelling], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    return None


def test_live_owners_match_dpkg_query(tmp_path: Path) -> None:
    """On this machine, the owners of running executables agree with ``dpkg-query -S``, including a file
    listed under its pre-merge path (coreutils lists /bin/sleep) and a file no package owns."""
    need_tool("dpkg-query")
    unowned = tmp_path / "sleep"
    unowned.write_bytes(Path("/usr/bin/sleep").read_bytes())
    unowned.chmod(0o755)
    procs = [subprocess.Popen([exe, "30"]) for exe in ("/usr/bin/sleep", str(unowned))]
    try:
        owners = Facts(LiveHost(), make_config()).get(EXE_OWNERS)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    sleep = os.path.realpath("/usr/bin/sleep")
    assert owners.database == "dpkg"
    assert owners.owner(sleep) == _dpkg_query(sleep) is not None
    assert owners.owner(str(unowned)) is None and _dpkg_query(str(unowned)) is None
    assert dpkg_owners(LiveHost(), ["/usr/bin/dpkg"]).owner("/usr/bin/dpkg") == _dpkg_query("/usr/bin/dpkg") == "dpkg"
