"""How long the setuid/setgid/capability walk (persistence.suid_unpackaged) takes on this machine.

The walk lists every directory and lstat()s every entry, and reads the ``security.capability`` attribute
of every executable: its cost grows with the number of files. Printed for this machine's /usr alone
(the bulk of the work on a server) and for every directory the check walks, first run (the page cache
may be cold) and best of three. Run as root: ``.venv/bin/python benchmarks/suid_walk.py``.
"""

from __future__ import annotations

import time

from hostguard.host.base import LiveHost
from hostguard.host.persistence import SetidWalk


def _run(only: tuple[str, ...]) -> tuple[float, SetidWalk, int]:
    walk = SetidWalk(LiveHost(), only=only)
    t0 = time.perf_counter()
    found = sum(1 for _ in walk.files())
    return time.perf_counter() - t0, walk, found


def main() -> None:
    for label, only in (("/usr", ("/usr",)), ("every walked directory", ())):
        runs = [_run(only) for _ in range(3)]
        best, walk, found = min(runs, key=lambda r: r[0])
        print(f"setid walk of {label} ({', '.join(walk.walked)}): first run {runs[0][0]:.2f} s, best of 3 "
              f"{best:.2f} s, {walk.directories} directories, {found} setuid/setgid/capability files, "
              f"{len(walk.unreadable)} unreadable directories")


if __name__ == "__main__":
    main()
