"""Which installed package owns a file, from the package database.

Naming a listening service by the package that installed its executable (``redis-tools`` owns the binary
Debian starts as ``redis-server``) is stronger than its process name, which any program can set. Only
dpkg's file lists are read for now (``/var/lib/dpkg/info/*.list``, each read once per scan, about 0.1 s
for 700 packages); rpm and apk come with the vulnerability inventory that needs them too.

Paths are compared as bytes (a list is not always UTF-8), and both spellings of a merged-/usr path are
tried: a running ``/usr/bin/bash`` is listed by dpkg as ``/bin/bash`` on a Debian 12 that merged /usr.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hostguard.engine.facts import Fact
from hostguard.host.base import FileMissing, Host, ProcessInfo
from hostguard.host.processes import PROCESSES

DPKG_INFO = "/var/lib/dpkg/info"
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class FileOwners:
    """The owning package of each path asked about (paths no package owns are absent).

    ``database`` names the database that was read (``"dpkg"``), or is None when the host has none that
    hostguard reads: then "no owner" means "not known", not "unpackaged".
    """

    owners: Mapping[str, str] = field(default_factory=dict)
    database: str | None = None

    def owner(self, path: str | None) -> str | None:
        """The package owning ``path``, if known."""
        return self.owners.get(path) if path else None


def usr_aliases(path: str) -> tuple[str, ...]:
    """``path`` and its other spelling on a merged-/usr system (``/usr/bin/x`` and ``/bin/x``)."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "usr" and parts[2] in MERGED_DIRS:
        return (path, "/" + "/".join(parts[2:]))
    if len(parts) > 2 and parts[1] in MERGED_DIRS:
        return (path, "/usr" + path)
    return (path,)


def dpkg_owners(host: Host, paths: Iterable[str]) -> FileOwners:
    """The dpkg package owning each of ``paths``; every file list is read once, whatever the number of paths.

    A list that vanishes while being read (a package removed meanwhile) is skipped; any other unreadable
    list is a :class:`HostError` for the caller's fact.
    """
    names = host.listdir(DPKG_INFO)
    if not names:
        return FileOwners({}, None)
    wanted: dict[bytes, str] = {}
    for path in paths:
        for alias in usr_aliases(path):
            wanted.setdefault(os.fsencode(alias), path)
    owners: dict[str, str] = {}
    for name in names:
        if not name.endswith(".list") or not wanted:
            continue
        try:
            data = host.read_bytes(f"{DPKG_INFO}/{name}")
        except FileMissing:
            continue
        package = name[:-len(".list")].partition(":")[0]  # libc6:amd64.list -> libc6
        for line in wanted.keys() & set(data.split(b"\n")):
            owners.setdefault(wanted[line], package)
    return FileOwners(owners, "dpkg")


def collect_exe_owners(host: Host, processes: tuple[ProcessInfo, ...]) -> FileOwners:
    """The package owning each running process's executable (live only: it needs the process list)."""
    return dpkg_owners(host, sorted({p.exe for p in processes if p.exe}))


EXE_OWNERS: Fact[FileOwners] = Fact("executable_packages", collect_exe_owners, inputs=(PROCESSES,))
