"""Which installed package owns a file, and whether packaged files still match their digests.

Naming a listening service by the package that installed its executable (``redis-tools`` owns the binary
Debian starts as ``redis-server``) is stronger than its process name, which any program can set.
:func:`package_owners` asks dpkg's file lists (``/var/lib/dpkg/info/*.list``, each read once per scan,
about 0.1 s for 700 packages), else the rpm database (:mod:`hostguard.host.rpmdb`), else apk's
(:mod:`hostguard.host.apkdb`): a host has one package manager, and the first database found is it.

Paths are compared as bytes (a list is not always UTF-8), and both spellings of a merged-/usr path are
tried: a running ``/usr/bin/bash`` is listed by dpkg as ``/bin/bash`` on a Debian 12 that merged /usr.

The dpkg database is also read whole for the integrity family (issue 9) and the inventory (issue 11):
:data:`DPKG` is the status file (installed packages, versions, conffiles with their md5), the diversions
and the ``path-exclude``/``path-include`` filters. :data:`PACKAGE_VERIFY` (also known as
:data:`DPKG_VERIFY`, its first name) compares every packaged file with the digest its package manager
recorded (dpkg ``md5sums``, the rpm header's file digests, apk's ``Z:`` checksums), one file at a time,
keeping only the files that differ. Where the database also records each file's mode (rpm's FILEMODES, apk's
``a:`` lines), the same ``fstat`` that hashing needs tells whether the file gained a setuid, setgid or
world-write bit since (:class:`ModeChange`): ``chmod u+s /usr/bin/find`` leaves every digest intact.
dpkg records no modes (only the .deb knows them), so a dpkg host cannot be checked that way;
:data:`STAT_OVERRIDES` (``dpkg-statoverride --list``) holds the modes an administrator declared, on any host.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat as stat_mod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from typing import TypeVar

from hostguard.data import load_toml
from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host import apkdb, rpmdb
from hostguard.host.base import FileMissing, Host, HostError, ProcessInfo, Unavailable
from hostguard.host.processes import PROCESSES

DPKG_INFO = "/var/lib/dpkg/info"
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class FileOwners:
    """The owning package of each path asked about (paths no package owns are absent).

    ``database`` names the database that was read (``"dpkg"``, ``"rpm"``, ``"apk"``), or is None when the
    host has none that hostguard reads: then "no owner" means "not known", not "unpackaged".
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

    Diverted files are owned where they really are (``dpkg -S`` only names the diversion): ``dpkg-divert`` moves other
    packages' ``/usr/bin/foo`` to ``/usr/bin/foo.distrib`` (owned by the package listing ``/usr/bin/foo``
    that is not the diverting one), and ``/usr/bin/foo`` itself then belongs to the diverting package only
    (to none after a local diversion: the administrator put their own file there). Both spellings of a
    merged-/usr path are answered. A list that vanishes while being read (a package removed meanwhile) is
    skipped; any other unreadable list is a :class:`HostError` for the caller's fact.
    """
    names = host.listdir(DPKG_INFO)
    if not names:
        return FileOwners({}, None)
    by_path = parse_diversions(host.read_optional(DPKG_DIVERSIONS) or "")
    by_place = {d.divert_to: d for d in by_path.values()}
    # listed path -> (asked path, which packages may own it: None any, else (owner wanted?, package))
    wanted: dict[bytes, list[tuple[str, tuple[bool, str | None] | None]]] = {}
    for alias, asked in _wanted(paths).items():
        listed, rule = alias, None
        if alias in by_place:
            listed, rule = by_place[alias].path, (False, by_place[alias].package)
        elif alias in by_path:
            rule = (True, by_path[alias].package)
        wanted.setdefault(os.fsencode(listed), []).extend((path, rule) for path in asked)
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
            for path, rule in wanted[line]:
                if rule is None or (package == rule[1]) == rule[0]:
                    owners.setdefault(path, package)
    return FileOwners(owners, "dpkg")


def _wanted(paths: Iterable[str]) -> dict[str, list[str]]:
    """Every spelling of each asked path (merged-/usr aliases), mapped to the paths asked that way."""
    wanted: dict[str, list[str]] = {}
    for path in paths:
        for alias in usr_aliases(path):
            wanted.setdefault(alias, []).append(path)
    return wanted


def rpm_owners(host: Host, location: rpmdb.RpmDbLocation, paths: Iterable[str]) -> FileOwners:
    """The rpm package (by name) owning each of ``paths``: every header's file list is read once."""
    wanted = _wanted(paths)
    owners: dict[str, str] = {}
    for hnum, blob in rpmdb.blobs(host, location):
        if not wanted:
            break
        where = f"{location.path} header {hnum}"
        tags = rpmdb.parse_header(blob, where, rpmdb.PATH_TAGS)
        hits = wanted.keys() & set(rpmdb.file_paths(tags, where))
        if hits:
            name = rpmdb.name_of(tags, where)
            for hit in hits:
                for asked in wanted[hit]:
                    owners.setdefault(asked, name)
    return FileOwners(owners, "rpm")


def apk_owners(host: Host, text: str, paths: Iterable[str]) -> FileOwners:
    """The apk package owning each of ``paths``."""
    wanted = _wanted(paths)
    owners: dict[str, str] = {}
    for package in apkdb.parse_installed(text):
        for hit in wanted.keys() & {f.path for f in package.files}:
            for asked in wanted[hit]:
                owners.setdefault(asked, package.name)
    return FileOwners(owners, "apk")


def package_owners(host: Host, paths: Iterable[str]) -> FileOwners:
    """The package owning each of ``paths`` in the host's package database: dpkg, else rpm, else apk.

    ``database`` says which was read; None when the host has none hostguard reads (an rpm database in the
    ndb form included), so callers never take "not known" for "unpackaged".
    """
    paths = list(paths)
    owners = dpkg_owners(host, paths)
    if owners.database is not None:
        return owners
    try:
        location = rpmdb.locate(host)
    except Unavailable:
        return FileOwners({}, None)
    if location is not None:
        return rpm_owners(host, location, paths)
    text = host.read_optional(apkdb.APK_INSTALLED)
    if text is not None:
        return apk_owners(host, text, paths)
    return FileOwners({}, None)


def collect_exe_owners(host: Host, processes: tuple[ProcessInfo, ...]) -> FileOwners:
    """The package owning each running process's executable (live only: it needs the process list)."""
    return package_owners(host, sorted({p.exe for p in processes if p.exe}))


EXE_OWNERS: Fact[FileOwners] = Fact("executable_packages", collect_exe_owners, inputs=(PROCESSES,))


# -- the dpkg database: status, diversions, path filters ---------------------------------------------------

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_DIVERSIONS = "/var/lib/dpkg/diversions"
DPKG_CFG = "/etc/dpkg/dpkg.cfg"
DPKG_CFG_DIR = "/etc/dpkg/dpkg.cfg.d"
CFG_NAME = re.compile(r"[A-Za-z0-9_-]+")   # dpkg reads only these names in dpkg.cfg.d (no .dpkg-old, no ~)
MD5 = re.compile(rb"[0-9a-f]{32}")
FIELD = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*):[ \t]*(.*)")
SOURCE_VERSION = re.compile(r"\(([^)]*)\)")
BINNMU = re.compile(r"\+b[0-9]+$")


@dataclass(frozen=True)
class DpkgPackage:
    """One package of dpkg's status file."""

    name: str
    arch: str
    version: str
    state: str                                   # the Status field's last word: "installed", "config-files", ...
    multi_arch: str = ""                         # "same" packages keep "<name>:<arch>.md5sums"
    conffiles: tuple[tuple[str, str], ...] = ()  # (path, md5) as the status file lists them
    priority: str = ""                           # "required" and "important" make debootstrap's base system
    source: str = ""                             # the Source field as written: "name" or "name (version)"
    maintainer: str = ""

    def label(self) -> str:
        """``name:arch`` (what apt and dpkg accept for a Multi-Arch package)."""
        return f"{self.name}:{self.arch}" if self.arch else self.name

    def source_name(self) -> str:
        """The source package this binary was built from (its own name when the status file names none)."""
        return self.source.split(" ", 1)[0] or self.name

    def source_version(self) -> str:
        """The source package's version: ``Source: name (version)`` when the status file gives one (dpkg writes
        it only when it differs from the binary's), else the binary's version less a binNMU's ``+bN``
        (a binary-only rebuild of the same source)."""
        match = SOURCE_VERSION.search(self.source)
        if match:
            return match.group(1).strip()
        return BINNMU.sub("", self.version)


@dataclass(frozen=True)
class Diversion:
    """``dpkg-divert``: other packages' ``path`` is installed at ``divert_to``; ``package`` keeps ``path``."""

    path: str
    divert_to: str
    package: str | None  # None: a local diversion (``:``), made by the administrator


@dataclass(frozen=True)
class DpkgDatabase:
    """dpkg's view of a host: its packages, diversions and the path filters files were installed through."""

    packages: tuple[DpkgPackage, ...]
    diversions: Mapping[str, Diversion] = field(default_factory=dict)
    filters: tuple[tuple[bool, str], ...] = ()  # (include?, glob) in the order dpkg applies them

    def installed(self) -> Iterator[DpkgPackage]:
        """Packages whose files are all on disk (not half-installed, unpacked or config-files only)."""
        return (p for p in self.packages if p.state == "installed")

    def conffiles(self) -> frozenset[str]:
        """Every conffile path: administrators are expected to edit them."""
        return frozenset(path for p in self.packages for path, _ in p.conffiles)

    def excluded(self, path: str) -> bool:
        """True when ``path-exclude`` kept dpkg from installing ``path`` (the last matching filter wins)."""
        skip = False
        for include, pattern in self.filters:
            if fnmatchcase(path, pattern):
                skip = not include
        return skip

    def location(self, path: str, package: str) -> str:
        """Where ``package``'s file ``path`` is on disk: the diverted place unless the package diverts it."""
        diversion = self.diversions.get(path)
        if diversion is None or diversion.package == package:
            return path
        return diversion.divert_to


def parse_status(text: str, where: str = DPKG_STATUS) -> tuple[DpkgPackage, ...]:
    """dpkg's status file (deb822 stanzas). A stanza without Package or a line that is no field is a
    :class:`HostError` naming the line: dpkg itself refuses such a file, so nothing in it can be trusted."""
    packages: list[DpkgPackage] = []
    fields: dict[str, str] = {}
    last = ""
    start = 1
    for number, line in enumerate([*text.split("\n"), ""], 1):
        if not line.strip():
            if fields:
                packages.append(_package(fields, where, start))
            fields, last, start = {}, "", number + 1
            continue
        if line[0] in " \t":
            if not last:
                raise HostError(f"{where} line {number}: a continuation line outside a field")
            fields[last] += "\n" + line.strip()
            continue
        match = FIELD.fullmatch(line)
        if match is None:
            raise HostError(f"{where} line {number}: not a 'Field: value' line")
        last = match.group(1).lower()
        fields[last] = match.group(2).strip()
    return tuple(packages)


def _package(fields: dict[str, str], where: str, line: int) -> DpkgPackage:
    name = fields.get("package", "")
    if not name:
        raise HostError(f"{where} line {line}: a stanza without a Package field")
    conffiles = []
    for entry in fields.get("conffiles", "").split("\n"):
        words = entry.split()
        if len(words) >= 2:
            conffiles.append((words[0], words[1]))
    status = fields.get("status", "").split()
    return DpkgPackage(name, fields.get("architecture", ""), fields.get("version", ""),
                       status[-1] if status else "", fields.get("multi-arch", ""), tuple(conffiles),
                       fields.get("priority", ""), fields.get("source", ""), fields.get("maintainer", ""))


def parse_diversions(text: str, where: str = DPKG_DIVERSIONS) -> dict[str, Diversion]:
    """dpkg's diversions file: three lines per diversion (path, new place, diverting package or ``:``)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 3:
        raise HostError(f"{where}: {len(lines)} lines, not a whole number of three-line diversions")
    out: dict[str, Diversion] = {}
    for i in range(0, len(lines), 3):
        path, divert_to, package = lines[i:i + 3]
        if not path.startswith("/") or not divert_to.startswith("/"):
            raise HostError(f"{where} line {i + 1}: a diversion names a path that is not absolute")
        out[path] = Diversion(path, divert_to, None if package == ":" else package)
    return out


def parse_filters(text: str) -> list[tuple[bool, str]]:
    """``path-exclude=GLOB`` and ``path-include=GLOB`` lines of a dpkg configuration file, in order."""
    out = []
    for line in text.splitlines():
        key, _, value = line.strip().partition("=") if "=" in line else line.strip().partition(" ")
        key = key.strip()
        if key in ("path-exclude", "path-include") and value.strip():
            out.append((key == "path-include", value.strip()))
    return out


def collect_dpkg(host: Host) -> DpkgDatabase:
    """The dpkg database of the host (``Unavailable`` when the host keeps none)."""
    status = host.read_optional(DPKG_STATUS)
    if status is None:
        raise Unavailable(SkipReason.UNSUPPORTED, f"no dpkg database ({DPKG_STATUS})")
    diversions = parse_diversions(host.read_optional(DPKG_DIVERSIONS) or "")
    filters: list[tuple[bool, str]] = []
    for name in host.listdir(DPKG_CFG_DIR):  # dpkg reads the directory first, sorted, then dpkg.cfg
        if CFG_NAME.fullmatch(name):
            filters += parse_filters(host.read_optional(f"{DPKG_CFG_DIR}/{name}") or "")
    filters += parse_filters(host.read_optional(DPKG_CFG) or "")
    return DpkgDatabase(parse_status(status), diversions, tuple(filters))


DPKG: Fact[DpkgDatabase] = Fact("dpkg", collect_dpkg)


DPKG_STATOVERRIDE = "/var/lib/dpkg/statoverride"
OVERRIDE_MODE = re.compile(r"[0-7]{1,6}")


@dataclass(frozen=True)
class StatOverride:
    """One ``dpkg-statoverride`` entry: the owner, group and mode the administrator declared for ``path``
    (owner and group as written: a name, or ``#uid``)."""

    path: str
    owner: str
    group: str
    mode: int


def parse_statoverride(text: str, where: str = DPKG_STATOVERRIDE) -> dict[str, StatOverride]:
    """dpkg's statoverride file: ``owner group mode path`` per line, single spaces, the path the rest of
    the line (it may hold spaces). A line dpkg would refuse is a :class:`HostError` naming it: an override
    that cannot be read cannot excuse anything."""
    out: dict[str, StatOverride] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        parts = line.split(" ", 3)
        if len(parts) != 4 or not all(parts[:3]) or not OVERRIDE_MODE.fullmatch(parts[2]) \
                or not parts[3].startswith("/") or "\0" in line:
            raise HostError(f"{where} line {number}: not 'owner group mode /path'")
        owner, group, mode, path = parts
        out[path] = StatOverride(path, owner, group, int(mode, 8) & 0o7777)
    return out


@dataclass(frozen=True)
class StatOverrides:
    """Every statoverride entry by path (empty when the host keeps no statoverride file)."""

    entries: Mapping[str, StatOverride] = field(default_factory=dict)

    def get(self, *paths: str) -> StatOverride | None:
        """The entry for the first of ``paths`` (or their merged-/usr spellings) that has one."""
        for path in paths:
            for alias in usr_aliases(path):
                if alias in self.entries:
                    return self.entries[alias]
        return None


def collect_statoverride(host: Host) -> StatOverrides:
    """``/var/lib/dpkg/statoverride`` of the host: read on any database (an rpm host seldom has one, and then
    its entries are still the administrator's word)."""
    text = host.read_optional(DPKG_STATOVERRIDE)
    return StatOverrides(parse_statoverride(text) if text else {})


STAT_OVERRIDES: Fact[StatOverrides] = Fact("stat_overrides", collect_statoverride)


# -- verifying installed files against their package manager's digests --------------------------------------

ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class ChangedFile:
    """A packaged file whose content differs from the digest its package manager recorded.

    ``path`` is where the file really is, canonicalised through the host's own links (``/bin/ls`` of a
    merged-/usr tree is ``/usr/bin/ls``); ``listed`` is the path as the package lists it. ``database``
    (dpkg, rpm, apk) and ``algorithm`` (md5, sha256, sha1...) say which digest was compared.
    """

    path: str
    listed: str
    package: str
    expected: str
    actual: str
    mode: int
    head: bytes  # the first bytes: ELF magic, ``#!``
    database: str = "dpkg"
    algorithm: str = "md5"
    recorded_mode: int | None = None  # the permission bits the database recorded (None: dpkg records none)

    @property
    def elf(self) -> bool:
        """An ELF executable or library."""
        return self.head.startswith(ELF_MAGIC)

    @property
    def script(self) -> bool:
        """A script started through its ``#!`` line."""
        return self.head.startswith(b"#!")

    @property
    def setid(self) -> bool:
        """Setuid or setgid."""
        return bool(self.mode & (stat_mod.S_ISUID | stat_mod.S_ISGID))

    def label(self) -> str:
        """The path, for "not checked" lines."""
        return self.path


@dataclass(frozen=True)
class ModeChange:
    """A packaged regular file whose current mode holds a watched bit (setuid, setgid, world-write:
    data/integrity/modes.toml) that the mode its package manager recorded does not.

    ``expected_mode`` and ``actual_mode`` are permission bits (``& 0o7777``); ``uid``/``gid`` the file's
    current owner. ``content`` says what the digest said: "same", "changed" (then the file is also a
    :class:`ChangedFile`) or "not compared" (configuration: an edited conffile is fine, a setuid one is not).
    """

    path: str
    listed: str
    package: str
    database: str
    expected_mode: int
    actual_mode: int
    uid: int
    gid: int
    content: str = "same"

    @property
    def gained(self) -> int:
        """The watched bits the file has and its package did not give it."""
        return self.actual_mode & ~self.expected_mode & watched_bits()

    def label(self) -> str:
        """The path, for "not checked" lines."""
        return self.path


@cache
def watched_bits() -> int:
    """The mode bits a packaged file may not gain (data/integrity/modes.toml), as one mask."""
    mask = 0
    for bit in load_toml("integrity/modes.toml")["bits"]:
        mask |= int(bit["bit"])
    return mask


@dataclass(frozen=True)
class Verification:
    """What comparing every installed package's files with their recorded digests (and modes) found.

    Files that are missing, path-excluded, configuration (dpkg conffiles, rpm ``%config``, apk protected
    paths) or rpm ghosts are not changes; ``problems`` are (what, why) pairs for packages or files that could
    not be compared (unreadable, a broken md5sums file or header). ``database`` is the database read and
    ``front_end`` the tool that reinstalls a package on this host (apt-get, dnf, yum, apk).
    ``mode_changes`` are files that gained a watched mode bit; ``records_modes`` says whether the database
    records modes at all (dpkg does not: then an empty ``mode_changes`` means "not looked").
    """

    changed: tuple[ChangedFile, ...]
    problems: tuple[tuple[str, str], ...]
    checked: int
    missing: int
    database: str = "dpkg"
    front_end: str = "apt-get"
    mode_changes: tuple[ModeChange, ...] = ()
    records_modes: bool = False


@dataclass(frozen=True)
class Expected:
    """One packaged file to compare: where it is listed, where it is on disk, and the recorded digest.

    ``link_digest``: the database records a symlink's digest as that of its target text (apk);
    ``links_allowed``: a changed symlink there is the administrator's (apk's ``@`` protected paths);
    ``mode``: the permission bits recorded for a regular file (None: not recorded, as with dpkg);
    ``compare_digest``: False for configuration, whose content is the administrator's but whose mode is
    still checked (an edited conffile is normal, a setuid one is not).
    """

    listed: str
    location: str
    algorithm: str
    digest: str
    link_digest: bool = False
    links_allowed: bool = False
    mode: int | None = None
    compare_digest: bool = True


# One package's work: a label naming it if reading fails, and a reader giving (package label, entries).
Job = tuple[str, Callable[[], tuple[str, Iterable[Expected]]]]


def parse_md5sums(data: bytes, where: str) -> Iterator[tuple[str, str]]:
    """``(path, md5)`` pairs of one md5sums file (``MD5  relative/path``); a bad line is a HostError."""
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        digest, sep, rel = line.partition(b"  ")
        if not sep or not MD5.fullmatch(digest) or not rel or b"\0" in rel:
            raise HostError(f"{where} line {number}: not 'MD5  path'")
        yield "/" + os.fsdecode(rel.lstrip(b"/")), digest.decode()


class _Tree:
    """Opens packaged files of one host, resolving each directory once (inside the root)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.dirs: dict[str, str | None] = {}
        self.prefix = host.root.rstrip("/")

    def _real(self, path: str) -> str | None:
        """The path on this machine, its directory resolved inside the root; None when that is missing."""
        parent, _, base = path.rpartition("/")
        if parent not in self.dirs:
            try:
                self.dirs[parent] = self.host.resolve(parent or "/")
            except FileMissing:
                self.dirs[parent] = None
        real_dir = self.dirs[parent]
        return None if real_dir is None else os.path.join(real_dir, base)

    def readlink(self, path: str) -> bytes | None:
        """The target of ``path`` when it is a symlink (None when it is not, or is missing)."""
        real = self._real(path)
        if real is None:
            return None
        try:
            return os.readlink(os.fsencode(real))
        except OSError:
            return None

    def open(self, path: str) -> tuple[int, str, bool] | None:
        """A read-only descriptor on the file, its canonical host path, and whether a symlink was followed
        to reach it (the file is a link now); None when missing."""
        real = self._real(path)
        if real is None:
            return None
        followed = False
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise HostError(f"{path}: {exc.strerror}") from exc
            try:  # the file is a link now: follow it inside the root
                real = self.host.resolve(path)
            except FileMissing:
                return None
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
            followed = True
        return fd, self._canonical(real), followed

    def lstat(self, path: str) -> tuple[os.stat_result, str] | None:
        """The file's own status (a link is not followed) and its canonical host path; None when missing.
        For files whose content is not compared: no descriptor, no read."""
        real = self._real(path)
        if real is None:
            return None
        try:
            return os.lstat(real), self._canonical(real)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HostError(f"{path}: {exc.strerror}") from exc

    def _canonical(self, real: str) -> str:
        return "/" + real[len(self.prefix):].lstrip("/")


def _hasher(algorithm: str) -> hashlib._Hash:
    return hashlib.new(algorithm, usedforsecurity=False)


def _digest(fd: int, algorithm: str = "md5") -> tuple[str, os.stat_result, bytes] | None:
    """Digest, status and first bytes of an open regular file (None for anything else); closes ``fd``.
    The status is the one ``fstat`` the read needs anyway: the mode check costs no extra I/O."""
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        head = f.read(4)
        f.seek(0)
        digest = hashlib.file_digest(f, lambda: _hasher(algorithm)).hexdigest()
        return digest, st, head


def md5sums_name(host: Host, package: DpkgPackage) -> str | None:
    """The md5sums file of ``package`` (``name:arch.md5sums`` for Multi-Arch: same), if it has one."""
    for name in (f"{package.name}:{package.arch}.md5sums", f"{package.name}.md5sums"):
        if host.exists(f"{DPKG_INFO}/{name}"):
            return f"{DPKG_INFO}/{name}"
    return None


WORKERS = 4  # hashing releases the GIL and reading waits on the disk: a few threads overlap both
WINDOW = 4 * WORKERS  # packages read ahead of the slowest worker: bounds memory to a few file lists

Result = tuple[list[ChangedFile], list[tuple[str, str]], int, int, list[ModeChange]]
J = TypeVar("J")
R = TypeVar("R")


def _bounded_map(pool: ThreadPoolExecutor, fn: Callable[[J], R], items: Iterable[J]) -> Iterator[R]:
    """``pool.map`` that reads ``items`` only a window ahead (``Executor.map`` would read them all first)."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= WINDOW:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _verify_job(tree: _Tree, database: str, job: Job) -> Result:
    """Changed files, problems, checked and missing counts, and mode changes of one package."""
    changed: list[ChangedFile] = []
    problems: list[tuple[str, str]] = []
    modes: list[ModeChange] = []
    checked = missing = 0
    fallback, read = job
    try:
        label, entries = read()
        entries = list(entries)
    except HostError as exc:
        return changed, [(fallback, str(exc))], 0, 0, modes
    for entry in entries:
        if not entry.compare_digest:
            if entry.mode is not None:
                try:
                    seen = tree.lstat(entry.location)
                except HostError as exc:
                    problems.append((entry.listed, str(exc)))
                    continue
                if seen is not None and stat_mod.S_ISREG(seen[0].st_mode):
                    _mode_change(modes, entry, label, database, seen[1], seen[0], "not compared")
            continue
        try:
            if entry.link_digest:
                target = tree.readlink(entry.location)
                if target is not None:
                    if _link_digest(entry, target) == entry.digest:
                        checked += 1
                        continue
                    if entry.links_allowed:
                        continue
            opened = tree.open(entry.location)
            found = None if opened is None else _digest(opened[0], entry.algorithm)
        except (HostError, OSError) as exc:
            problems.append((entry.listed, str(exc)))
            continue
        if opened is None or found is None:
            missing += 1
            continue
        checked += 1
        actual, st, head = found
        differs = actual != entry.digest.lower()
        if differs:
            changed.append(ChangedFile(opened[1], entry.listed, label, entry.digest, actual, st.st_mode, head, database,
                                       entry.algorithm, entry.mode))
        if not opened[2]:  # a file that is a link now is judged by its digest alone: its target's mode is not its own
            _mode_change(modes, entry, label, database, opened[1], st, "changed" if differs else "same")
    return changed, problems, checked, missing, modes


def _mode_change(out: list[ModeChange], entry: Expected, package: str, database: str, path: str,
                 st: os.stat_result, content: str) -> None:
    """Add a :class:`ModeChange` when the file holds a watched bit its recorded mode lacks."""
    if entry.mode is None:
        return
    actual = stat_mod.S_IMODE(st.st_mode)
    if actual & ~entry.mode & watched_bits():
        out.append(ModeChange(path, entry.listed, package, database, entry.mode & 0o7777, actual, st.st_uid,
                              st.st_gid, content))


def _link_digest(entry: Expected, target: bytes) -> str:
    h = _hasher(entry.algorithm)
    h.update(target)
    return h.hexdigest()


def verify(host: Host, database: str, front_end: str, jobs: Iterable[Job], records_modes: bool = False) -> Verification:
    """Hash every listed file and keep those that differ or gained a watched mode bit (streaming: one file
    at a time per worker and a window of packages read ahead, so memory grows with the changes, not the
    tree), in database order."""
    tree = _Tree(host)
    changed: list[ChangedFile] = []
    problems: list[tuple[str, str]] = []
    modes: list[ModeChange] = []
    checked = missing = 0
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="package-verify") as pool:
        for c, p, n, m, mc in _bounded_map(pool, lambda job: _verify_job(tree, database, job), jobs):
            changed += c
            problems += p
            checked += n
            missing += m
            modes += mc
    return Verification(tuple(changed), tuple(problems), checked, missing, database, front_end, tuple(modes),
                        records_modes)


def dpkg_jobs(host: Host, db: DpkgDatabase) -> Iterator[Job]:
    """One job per installed package: its md5sums less conffiles and path-excluded files, at their diverted
    places. Metapackages and packages built without md5sums have nothing to compare."""
    conffiles = db.conffiles()
    for package in db.installed():
        def read(package: DpkgPackage = package) -> tuple[str, Iterable[Expected]]:
            where = md5sums_name(host, package)
            if where is None:
                return package.label(), ()
            return package.label(), [
                Expected(listed, db.location(listed, package.name), "md5", md5)
                for listed, md5 in parse_md5sums(host.read_bytes(where), where)
                if listed not in conffiles and not db.excluded(listed)]
        yield package.label(), read


def verify_dpkg(host: Host, db: DpkgDatabase) -> Verification:
    """Every installed dpkg package's md5sums against the tree."""
    return verify(host, "dpkg", "apt-get", dpkg_jobs(host, db))


def rpm_entries(tags: dict[int, rpmdb.HeaderValue], where: str) -> Iterator[Expected]:
    """The files of one rpm header worth comparing: regular files installed normally (not
    ``--excludedocs``'d, not a multilib file of the other colour) and not ``%ghost`` (created by the program
    with whatever mode it likes, not shipped), each with its recorded mode. The digest is compared when
    there is one and the file is not ``%config`` (meant to be edited); a ``%config`` file's mode still is.
    rpm lists merged-/usr paths as such."""
    algorithm = rpmdb.package_of(tags, where).digest_algorithm
    for f in rpmdb.files_of(tags, where):
        if not stat_mod.S_ISREG(f.mode) or f.ghost or f.state != rpmdb.FILE_STATE_NORMAL:
            continue
        yield Expected(f.path, f.path, algorithm, f.digest, mode=stat_mod.S_IMODE(f.mode),
                       compare_digest=bool(f.digest) and not f.config)


def rpm_jobs(host: Host, location: rpmdb.RpmDbLocation) -> Iterator[Job]:
    """One job per header, parsed in the worker (the main thread only reads the blob)."""
    for hnum, blob in rpmdb.blobs(host, location):
        where = f"{location.path} header {hnum}"

        def read(blob: bytes = blob, where: str = where) -> tuple[str, Iterable[Expected]]:
            tags = rpmdb.parse_header(blob, where, rpmdb.FILE_TAGS)
            return rpmdb.package_of(tags, where).label(), list(rpm_entries(tags, where))
        yield where, read


def _ready(label: str, entries: list[Expected]) -> Callable[[], tuple[str, Iterable[Expected]]]:
    """A job reader for entries already parsed."""
    return lambda: (label, entries)


def apk_jobs(host: Host, text: str, protected: apkdb.ProtectedPaths) -> Iterator[Job]:
    """One job per package of apk's installed database; files under protected paths are configuration
    (``+``, ``!``) or may be changed symlinks (``@``), as ``apk audit --system`` treats them. Every file
    carries its recorded mode (``a:``, else apk's default 0644); configuration is checked for that alone."""
    for package in apkdb.parse_installed(text):
        entries = []
        for f in package.files:
            mode = protected.mode(f.path)
            entries.append(Expected(f.path, f.path, f.algorithm, f.digest, True, mode == "symlinks",
                                    f.recorded_mode, mode not in ("config", "ignore") and bool(f.digest)))
        yield package.label(), _ready(package.label(), entries)


def rpm_front_end(host: Host) -> str:
    """dnf where the tree has it, else yum (EL7, Amazon Linux 2)."""
    if not host.exists("/usr/bin/dnf") and host.exists("/usr/bin/yum"):
        return "yum"
    return "dnf"


def collect_package_verify(host: Host, dpkg: DpkgDatabase | None) -> Verification:
    """The host's one package database verified: dpkg, else rpm, else apk (the order ownership uses)."""
    if dpkg is not None:
        return verify_dpkg(host, dpkg)
    location = rpmdb.locate(host)  # Unavailable for an rpm database in a form not read here
    if location is not None:
        return verify(host, "rpm", rpm_front_end(host), rpm_jobs(host, location), records_modes=True)
    text = host.read_optional(apkdb.APK_INSTALLED)
    if text is not None:
        return verify(host, "apk", "apk", apk_jobs(host, text, apkdb.read_protected(host)), records_modes=True)
    raise Unavailable(SkipReason.UNSUPPORTED, f"no package database hostguard reads ({DPKG_STATUS}, "
                                              f"{' or '.join(rpmdb.RPMDB_DIRS)}, {apkdb.APK_INSTALLED})")


PACKAGE_VERIFY: Fact[Verification] = Fact("package_verify", collect_package_verify, inputs=(DPKG.optional,))
DPKG_VERIFY = PACKAGE_VERIFY  # its first name, kept for the modules that import it
