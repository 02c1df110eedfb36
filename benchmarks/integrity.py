"""How long the integrity family's verification takes: every installed package's digests against the tree.

dpkg (md5sums) on a Debian host or tree; on a `--root` tree without dpkg, the rpm database's or apk's digests
through the same verifier the scan uses (`--base` and `--cold` apply to dpkg only).

Anchor (issue #9): under 15 s cold on a Debian base system. This reads the host's files read-only; with
`--cold` it first asks the kernel to drop those files from the page cache (posix_fadvise DONTNEED on each
packaged file: harmless, the pages are clean), so the first run measures reads from disk.
Run: .venv/bin/python benchmarks/integrity.py [--root DIR] [--runs N] [--cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

from hostguard.host.base import HostError, Unavailable, open_host
from hostguard.host.packages import collect_dpkg, collect_package_verify, md5sums_name, parse_md5sums, verify_dpkg

ANCHOR_SECONDS = 15.0
BASE = ("required", "important")


def evict(root: str) -> tuple[int, int]:
    """Drop every packaged file of the tree from the page cache; return (files, bytes)."""
    host = open_host(None if root == "/" else root)
    db = collect_dpkg(host)
    files = size = 0
    for package in db.installed():
        where = md5sums_name(host, package)
        if where is None:
            continue
        try:
            entries = list(parse_md5sums(host.read_bytes(where), where))
        except HostError:
            continue
        for listed, _ in entries:
            try:
                fd = os.open(host.resolve(db.location(listed, package.name)), os.O_RDONLY | os.O_NONBLOCK)
            except (HostError, OSError):
                continue
            try:
                size += os.fstat(fd).st_size
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                files += 1
            finally:
                os.close(fd)
    return files, size


def other_database(root: str, runs: int) -> None:
    """rpm or apk: the scan's verifier on a tree without dpkg."""
    times = []
    for run in range(runs):
        host = open_host(None if root == "/" else root)
        t0 = time.perf_counter()
        result = collect_package_verify(host, None)
        times.append(time.perf_counter() - t0)
        print(f"run {run + 1}: {times[-1]:.2f} s, {result.database}, {result.checked} files hashed, "
              f"{result.missing} missing, {len(result.changed)} changed")
    print(f"integrity ({result.database} verify): first {times[0]:.2f} s, median {statistics.median(times):.2f} s "
          f"(anchor: under {ANCHOR_SECONDS:.0f} s cold on a base system)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="/", help="a host tree instead of this host")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--base", action="store_true",
                        help="only the packages of a Debian base system (Priority: required or important, what "
                             "debootstrap installs) among those installed here")
    parser.add_argument("--cold", action="store_true", help="evict the packaged files from the page cache first")
    args = parser.parse_args()
    try:
        collect_dpkg(open_host(None if args.root == "/" else args.root))
    except Unavailable:
        other_database(args.root, args.runs)
        return
    if args.cold:
        files, size = evict(args.root)
        print(f"evicted {files} packaged files ({size / 1e9:.2f} GB) from the page cache")
    times = []
    for run in range(args.runs):
        host = open_host(None if args.root == "/" else args.root)
        t0 = time.perf_counter()
        db = collect_dpkg(host)
        if args.base:
            db = replace(db, packages=tuple(p for p in db.packages if p.priority in BASE))
        result = verify_dpkg(host, db)
        times.append(time.perf_counter() - t0)
        label = "cold" if args.cold and run == 0 else "warm"
        print(f"run {run + 1} ({label}): {times[-1]:.2f} s, {sum(1 for _ in db.installed())} packages, "
              f"{result.checked} files hashed, {result.missing} missing, {len(result.changed)} changed")
    print(f"integrity (dpkg verify): first {times[0]:.2f} s, median {statistics.median(times):.2f} s "
          f"(anchor: under {ANCHOR_SECONDS:.0f} s cold on a Debian base system)")


if __name__ == "__main__":
    main()
