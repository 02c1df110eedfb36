"""How long the "writable by the web user" walk takes: 10 document roots with 10,000 files each.

Issue 10's anchor: ``hostguard scan --only web`` on a host with 10 sites and 100k files under the roots in
under 10 s (this walk is the part of it that grows with the number of files). The trees are made in a temp
directory: each root holds ~500 directories of 20 files, owned by another user, 0644/0755, with a WordPress
uploads directory the web user owns and 5% of the files group-writable to a group it is in (so the walk must
read their ACL). Printed: a clean run (first run, then best of three), the worst case where every entry is
writable (every one costs an ACL read and a ``chattr`` flags read), and, for comparison, what reading the ACL
attribute of every entry would cost. Run: ``.venv/bin/python benchmarks/web_writable.py`` (as root to give
the files their owners; otherwise they all belong to the current user, which is not the web user).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from hostguard.host.base import RootHost
from hostguard.host.web.writable import XATTR_ACL_ACCESS, Identity, WritableReport, default_allow, writable_under

ANCHOR_SECONDS = 10.0
ROOTS = 10
DIRS_PER_ROOT = 500
FILES_PER_DIR = 20
WEB = 4242        # the web user's uid (no passwd entry needed)
TEAM = 4343       # a group the web user is in
WEB_ID = Identity(WEB, frozenset({WEB, TEAM}), "web")


def make_tree(base: Path, writable: bool) -> list[str]:
    """Ten roots of DIRS_PER_ROOT x FILES_PER_DIR files; ``writable``: every entry mode 0777/0666."""
    owner = os.geteuid() == 0
    roots = []
    for r in range(ROOTS):
        root = base / f"var/www/site{r}"
        for d in range(DIRS_PER_ROOT):
            sub = root / ("wp-content/uploads" if d == 0 else f"app/m{d // 25}/d{d}")
            sub.mkdir(parents=True, exist_ok=True)
            if d == 0 and owner:
                os.chown(sub, WEB, WEB)
            for f in range(FILES_PER_DIR):
                path = sub / f"f{f}.php"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
                os.close(fd)
                if writable:
                    os.chmod(path, 0o666)
                elif f == 0 and owner:  # one file in 20
                    os.chown(path, 0, TEAM)
                    os.chmod(path, 0o664)
            if writable:
                os.chmod(sub, 0o777)
        (root / "wp-includes").mkdir(exist_ok=True)
        (root / "wp-includes/version.php").write_text("<?php\n")
        roots.append(f"/var/www/site{r}")
    return roots


def walk_all(base: Path, roots: list[str]) -> tuple[float, list[WritableReport]]:
    host = RootHost(str(base))
    allow = default_allow()
    t0 = time.perf_counter()
    reports = [writable_under(host, root, WEB_ID, allow) for root in roots]
    return time.perf_counter() - t0, reports


def every_acl(base: Path) -> tuple[float, int]:
    """What reading ``system.posix_acl_access`` on every entry would cost (what the walk avoids)."""
    t0 = time.perf_counter()
    n = 0
    for dirpath, dirnames, filenames in os.walk(base / "var/www"):
        for name in dirnames + filenames:
            n += 1
            with contextlib.suppress(OSError):
                os.getxattr(os.path.join(dirpath, name), XATTR_ACL_ACCESS, follow_symlinks=False)
    return time.perf_counter() - t0, n


def main() -> None:
    for label, writable in (("typical (0644/0755, 5% group-writable, uploads owned by the web user)", False),
                            ("worst case (every entry 0666/0777)", True)):
        base = Path(tempfile.mkdtemp(prefix="hg-bench-writable-"))
        try:
            roots = make_tree(base, writable)
            runs = [walk_all(base, roots) for _ in range(3)]
            best, reports = min(runs, key=lambda r: r[0])
            entries = sum(r.entries for r in reports)
            found = sum(r.files + r.dirs for r in reports)
            allowed = sum(r.allowed_files + r.allowed_dirs for r in reports)
            print(f"{label}: {ROOTS} roots, {entries} entries: first run {runs[0][0]:.2f} s, best of 3 {best:.2f} s "
                  f"(anchor: whole `scan --only web` under {ANCHOR_SECONDS:.0f} s); {found} writable, "
                  f"{allowed} in allowed directories")
            if not writable:
                cost, n = every_acl(base)
                print(f"  for comparison, os.walk with one ACL read on each of {n} entries: {cost:.2f} s")
        finally:
            shutil.rmtree(base)


if __name__ == "__main__":
    main()
