"""Updates waiting to be installed on an Alpine host (apk), read from the repository indexes apk has cached.

Nothing is run: apk-tools is not on the scanning machine, and under ``--root`` no tool of the tree may run.
Instead this does what ``apk upgrade`` decides from, with the same files: the installed database
(``/lib/apk/db/installed``) against the repository indexes cached by the last ``apk update``.

Where apk keeps them (apk-tools 2 and 3, ``src/database.c``):

* the cache directory is ``/etc/apk/cache`` when that is a directory (usually a symlink set up by
  ``setup-apkcache``), else ``/var/cache/apk``;
* each remote repository's index is stored there as ``APKINDEX.<8 hex>.tar.gz``, the hex being the first
  four bytes of a hash of the repository: apk-tools 2 takes the SHA-1 of the URL as written in
  ``/etc/apk/repositories`` (after any ``@tag``), apk-tools 3 the SHA-256 of the index URL
  (``URL/ARCH/APKINDEX.tar.gz``); both names are tried, so each cached file is tied to its repository line;
* a local repository (a path or ``file://``) is never cached: apk reads ``PATH/ARCH/APKINDEX.tar.gz`` itself;
* the file is a gzip'd tar holding ``DESCRIPTION`` and ``APKINDEX``; a signed index has one more gzip
  stream in front holding ``.SIGN.RSA.<key>`` (a tar cut before its end-of-archive blocks, so the
  concatenation reads as one tar); ``APKINDEX`` is the installed database's stanza format (``P:`` name,
  ``V:`` version, ``A:`` arch, ``o:`` origin, ...).

For each installed package the candidate is the newest version (apk's order) that an index offers for the
same name and a compatible arch (the same arch, or ``noarch`` on either side), as apk would see it:

* a tagged repository (``@edge URL``) is only used for packages the world pins to that tag
  (``name@edge`` in ``/etc/apk/world``), and for those it is preferred over the untagged ones
  (apk-world(5));
* a world constraint with a version (``name=1.2-r0``, ``name<2``) rules out versions it does not allow;
* a cached index of a repository no longer listed (a release upgrade leaves the old ones behind) is
  ignored, and said so.

Alpine's repositories carry no security flag (no updateinfo), so every pending update is listed in
``other_updates`` and only those the caller's ``security`` callback names advisories for (it is backed by
the OSV Alpine records: an advisory affecting the installed version fixed at or below the new one) are
``updates``, each with a ``vulns.pending_update`` finding that upgrades exactly that package.

The result says how old the indexes are (the newest cached index's mtime: ``apk update`` gives it the
server's Last-Modified, an implicit refresh the time of the check, so the age is never understated), and a
low ``vulns.package_lists_stale`` finding asks for ``apk update`` when they are older than
``max_index_age_days``, or a configured repository has no readable index. A corrupt or foreign file is a
problem named in ``detail``, never an exception.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hostguard.findings import Finding, SkipReason
from hostguard.host.apkdb import APK_INSTALLED, parse_installed
from hostguard.host.base import Host, HostError
from hostguard.vulns.orders import InvalidVersion
from hostguard.vulns.orders import apk as apk_order
from hostguard.vulns.pending import (
    PendingResult,
    PendingUpdate,
    iso_time,
    stale_lists_finding,
    update_finding,
)

__all__ = ["CACHE_DIRS", "ApkIndexes", "CachedIndex", "IndexEntry", "Repository", "SecurityLookup",
           "WorldEntry", "apk_upgrade_argv", "cache_names", "index_entries", "index_finding", "parse_apkindex",
           "parse_repositories", "parse_world", "pending_apk_updates", "read_indexes"]

CACHE_DIRS = ("/etc/apk/cache", "/var/cache/apk")  # apk's order: the linked cache first, then the static one
REPOSITORIES = "/etc/apk/repositories"
REPOSITORIES_D = "/etc/apk/repositories.d"
WORLD = "/etc/apk/world"
ARCH_FILE = "/etc/apk/arch"
INDEX_FILE = "APKINDEX.tar.gz"
INDEX_MEMBER = "APKINDEX"
NOARCH = "noarch"
CACHE_NAME = re.compile(r"APKINDEX\.([0-9a-f]{8})\.tar\.gz")
MAX_INDEX_TEXT = 128 * 1024 * 1024  # Alpine edge community's APKINDEX is ~15 MB: anything past this is no index
_GZIP_MAGIC = b"\x1f\x8b"
_WORLD = re.compile(r"(?P<name>[^@<>~=\s!]+)(?:@(?P<tag>[^<>~=\s]+))?(?:(?P<op>[<>~=]+)(?P<version>\S+))?")

SecurityLookup = Callable[[str, str, str], Sequence[str]]
"""``(origin, installed version, new version) -> advisory ids`` fixed by the update (empty: none)."""


@dataclass(frozen=True)
class IndexEntry:
    """One stanza of an APKINDEX: what a repository offers."""

    name: str
    version: str
    arch: str
    origin: str


@dataclass(frozen=True)
class Repository:
    """One repository of /etc/apk/repositories: ``url`` as written (a trailing ``/`` kept: apk-tools 2 hashes
    it as it is), its ``tag`` ("" untagged) and ``index`` the index path apk-tools 3 appends (None: the URL
    names the index file itself)."""

    url: str
    tag: str = ""
    index: str | None = INDEX_FILE

    @property
    def local(self) -> bool:
        """A path or ``file:`` URL: apk reads its index in place and caches nothing."""
        return self.url.startswith("file:") or "://" not in self.url

    def label(self) -> str:
        """How results name it: the URL, with its tag."""
        return f"@{self.tag} {self.url}" if self.tag else self.url

    def index_url(self, arch: str) -> str:
        """The URL of its index for ``arch``, as apk-tools 3 builds it."""
        if self.index is None:
            return self.url.rstrip("/")
        return f"{self.url.rstrip('/')}/{arch}/{self.index}"

    def local_index(self, arch: str) -> str:
        """The host path of a local repository's index."""
        url = self.index_url(arch)
        return url[len("file://"):] if url.startswith("file://") else url.removeprefix("file:")


@dataclass(frozen=True)
class WorldEntry:
    """One line of /etc/apk/world: a name, the tag it is pinned to, and a version constraint."""

    name: str
    tag: str = ""
    op: str = ""
    version: str = ""


@dataclass(frozen=True)
class CachedIndex:
    """One index file read: where, of which repository (None: no configured repository has this name), its
    mtime, its entries and, when it could not be read, the problem (``entries`` then empty)."""

    path: str
    repository: Repository | None
    mtime: float | None
    entries: tuple[IndexEntry, ...] = ()
    problem: str | None = None

    @property
    def readable(self) -> bool:
        """True when the file held an APKINDEX."""
        return self.problem is None


@dataclass(frozen=True)
class ApkIndexes:
    """Every index apk would read on this host, and what was wrong on the way.

    ``indexes`` are the files of configured repositories (or, with no repository configured, every cached
    index); ``ignored`` the cached files of no configured repository; ``missing`` the remote repositories
    with no readable cached index (never fetched, or corrupt)."""

    cache_dir: str
    repositories: tuple[Repository, ...]
    indexes: tuple[CachedIndex, ...]
    ignored: tuple[str, ...] = ()
    missing: tuple[Repository, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def updated(self) -> float | None:
        """The newest mtime of a readable cached (remote) index: when ``apk update`` last brought one."""
        stamps = [i.mtime for i in self.indexes if i.readable and i.mtime is not None
                  and (i.repository is None or not i.repository.local)]
        return max(stamps) if stamps else None

    @property
    def remote(self) -> bool:
        """Whether any index needs ``apk update`` (a remote repository, or a cache without configuration)."""
        return any(not r.local for r in self.repositories) or not self.repositories


# -- parsing ----------------------------------------------------------------------------------------------

def parse_apkindex(text: str) -> tuple[IndexEntry, ...]:
    """The packages of an APKINDEX (blank-line separated ``X:value`` stanzas).

    Tolerant by design, since the file comes off the network and a cache: a line that is not ``X:value``
    is skipped, and a stanza without a name or a version offers nothing. Never raises."""
    out: list[IndexEntry] = []
    fields: dict[str, str] = {}
    for line in [*text.split("\n"), ""]:
        line = line.rstrip("\r")
        if not line:
            if fields.get("P") and fields.get("V"):
                out.append(IndexEntry(fields["P"], fields["V"], fields.get("A", ""), fields.get("o") or fields["P"]))
            fields = {}
            continue
        if len(line) >= 2 and line[1] == ":":
            fields.setdefault(line[0], line[2:].strip())
    return tuple(out)


def parse_repositories(text: str) -> list[Repository]:
    """The repositories of one repositories file: ``[@tag] URL`` per line (apk-tools 2), and apk-tools 3's
    ``[v2|v3|ndx] [@tag] URL [component...]`` (one repository per component). Comments, blank lines,
    ``set`` lines and lines apk would refuse are skipped."""
    out: list[Repository] = []
    for raw in text.splitlines():
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        kind = ""
        if not _is_url(words[0]) and not words[0].startswith("@"):
            kind, words = words[0], words[1:]
            if kind not in ("v2", "v3", "ndx"):
                continue                                # "set VAR=..." or a keyword apk would refuse
        tag = ""
        if words and words[0].startswith("@"):
            tag, words = words[0][1:], words[1:]
        if not words or "${" in words[0]:
            continue                                    # variables are apk-tools 3's to expand
        url, components = words[0], words[1:]
        if kind == "v3":
            index: str | None = "Packages.adb"
        elif kind == "ndx" or (not kind and url.endswith((".adb", ".tar.gz"))):
            index = None
        else:
            index = INDEX_FILE
        if components:
            out += [Repository(f"{url.rstrip('/')}/{c}", tag, index) for c in components]
        else:
            out.append(Repository(url, tag, index))
    return out


def _is_url(word: str) -> bool:
    return word.startswith("/") or "://" in word


def parse_world(text: str) -> dict[str, WorldEntry]:
    """The world's constraints by name (``name{@tag}{[<>~=]version}``); conflicts (``!name``) and lines
    that do not parse are left out."""
    out: dict[str, WorldEntry] = {}
    for word in text.split():
        if word.startswith("!"):
            continue
        m = _WORLD.fullmatch(word)
        if m:
            out[m["name"]] = WorldEntry(m["name"], m["tag"] or "", m["op"] or "", m["version"] or "")
    return out


def cache_names(repository: Repository, arches: Iterable[str]) -> frozenset[str]:
    """The names apk-tools 2 and 3 give the repository's cached index."""
    names = {f"APKINDEX.{hashlib.sha1(repository.url.encode()).hexdigest()[:8]}.tar.gz"}
    for arch in arches:
        digest = hashlib.sha256(repository.index_url(arch).encode()).hexdigest()[:8]
        names.add(f"APKINDEX.{digest}.tar.gz")
    return frozenset(names)


# -- reading an index file --------------------------------------------------------------------------------

def _gunzip(data: bytes, limit: int) -> bytes:
    """Every gzip stream of ``data`` inflated and joined (a signed index is two); ``ValueError`` naming the
    fault for anything else. Trailing zero bytes are allowed, as gzip(1) allows them."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        if data[pos:pos + 2] != _GZIP_MAGIC:
            if pos and not data[pos:].strip(b"\0"):
                break
            raise ValueError("not a gzip file" if pos == 0 else f"garbage after gzip stream at byte {pos}")
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data[pos:], limit + 1 - len(out))
        except zlib.error as exc:
            raise ValueError(f"corrupt gzip stream at byte {pos}: {exc}") from None
        if len(out) > limit:
            raise ValueError(f"inflates to more than {limit} bytes")
        if not inflater.eof:
            raise ValueError(f"truncated gzip stream at byte {pos}")
        pos = len(data) - len(inflater.unused_data)
    return bytes(out)


def _apkindex_member(raw: bytes) -> bytes:
    """The ``APKINDEX`` member of the inflated tar (the signature and ``DESCRIPTION`` are skipped)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", ignore_zeros=True) as tar:
            for member in tar:
                if member.name.lstrip("./") == INDEX_MEMBER and member.isfile():
                    handle = tar.extractfile(member)
                    if handle is None:
                        break
                    return handle.read()
    except Exception as exc:  # tarfile documents no complete set of errors for crafted headers
        raise ValueError(f"not a tar archive ({exc})") from None
    raise ValueError("no APKINDEX in the archive")


def index_entries(data: bytes) -> tuple[tuple[IndexEntry, ...], str | None]:
    """The entries of one ``APKINDEX.tar.gz`` file's bytes, and what was wrong with it (None: nothing).

    Never raises: a cache file may be truncated, half-written, an apk-tools 3 ``.adb`` index or plain garbage,
    and each of those only means this repository offers nothing that can be known."""
    try:
        text = _apkindex_member(_gunzip(data, MAX_INDEX_TEXT)).decode("utf-8", "replace")
    except ValueError as exc:
        return (), str(exc)
    entries = parse_apkindex(text)
    if not entries:
        return (), "the APKINDEX lists no package"
    return entries, None


def _read_index(host: Host, path: str, repository: Repository | None) -> CachedIndex:
    try:
        mtime: float | None = host.stat(path).mtime
        data = host.read_bytes(path)
    except HostError as exc:
        return CachedIndex(path, repository, None, (), str(exc))
    entries, problem = index_entries(data)
    return CachedIndex(path, repository, mtime, entries, problem)


# -- the host's indexes -----------------------------------------------------------------------------------

def _cache_dir(host: Host) -> str:
    """``/etc/apk/cache`` when it is a directory in the tree, else ``/var/cache/apk`` (apk's choice)."""
    try:
        if host.stat(CACHE_DIRS[0]).is_dir:
            return CACHE_DIRS[0]
    except HostError:
        pass
    return CACHE_DIRS[1]


def _host_arches(host: Host, installed_arches: Iterable[str]) -> tuple[str, ...]:
    """The arches apk installs (``/etc/apk/arch``, first line first), else those of the installed packages."""
    try:
        text = host.read_optional(ARCH_FILE) or ""
    except HostError:
        text = ""
    arches = tuple(dict.fromkeys(a for a in text.split() if a))
    return arches or tuple(sorted({a for a in installed_arches if a and a != NOARCH}))


def _repositories(host: Host, problems: list[str]) -> list[Repository]:
    try:
        listed = [f"{REPOSITORIES_D}/{n}" for n in host.listdir(REPOSITORIES_D) if n.endswith(".list")]
    except HostError as exc:
        problems.append(str(exc))
        listed = []
    files = [REPOSITORIES, *listed]
    out: list[Repository] = []
    for path in files:
        try:
            text = host.read_optional(path)
        except HostError as exc:
            problems.append(str(exc))
            continue
        for repo in parse_repositories(text or ""):
            if repo not in out:
                out.append(repo)
    return out


def read_indexes(host: Host, arches: Sequence[str] = ()) -> ApkIndexes:
    """The indexes apk would read on ``host``: each configured repository's cached (or, for a local one,
    in-place) index, tied to its repository line by its cache name. ``arches``: the arches apk installs
    (default ``/etc/apk/arch``)."""
    problems: list[str] = []
    arches = tuple(arches) or _host_arches(host, ())
    repositories = _repositories(host, problems)
    cache_dir = _cache_dir(host)
    try:
        cached = [n for n in host.listdir(cache_dir) if CACHE_NAME.fullmatch(n)]
    except HostError as exc:
        problems.append(str(exc))
        cached = []
    by_name: dict[str, Repository] = {}
    for repo in repositories:
        if not repo.local:
            for name in cache_names(repo, arches):
                by_name.setdefault(name, repo)
    indexes: list[CachedIndex] = []
    ignored: list[str] = []
    for name in cached:
        path = f"{cache_dir}/{name}"
        owner = by_name.get(name)
        if owner is None and repositories:
            ignored.append(path)
            continue
        indexes.append(_read_index(host, path, owner))
    for repo in repositories:
        if repo.local:
            for arch in arches[:1]:
                path = repo.local_index(arch)
                if host.exists(path):
                    indexes.append(_read_index(host, path, repo))
                else:
                    problems.append(f"{path}: the local repository {repo.url} has no index")
    if not repositories:
        problems.append(f"no repository in {REPOSITORIES}: every cached index in {cache_dir} was read")
    if ignored:
        problems.append(f"{len(ignored)} cached index(es) of no configured repository ignored: " + ", ".join(ignored))
    problems += [f"{i.path}: {i.problem}" for i in indexes if i.problem]
    covered = {i.repository for i in indexes if i.readable}
    missing = tuple(r for r in repositories if not r.local and r not in covered)
    problems += [f"{r.label()}: no readable cached index (run `apk update`)" for r in missing]
    return ApkIndexes(cache_dir, tuple(repositories), tuple(indexes), tuple(ignored), missing, tuple(problems))


# -- versions ---------------------------------------------------------------------------------------------

def _key(version: str, cache: dict[str, Any]) -> Any:
    """apk's sort key of ``version`` (None: not an apk version), computed once per version string."""
    if version not in cache:
        try:
            cache[version] = apk_order.key(version)
        except InvalidVersion:
            cache[version] = None
    return cache[version]


def _allowed(key: Any, constraint: WorldEntry, keys: dict[str, Any]) -> bool:
    """Whether a version (its key) meets the world's version constraint (``~`` fuzzy matches are not judged)."""
    if not constraint.op or "~" in constraint.op:
        return True
    bound = _key(constraint.version, keys)
    if bound is None:
        return True
    return (("<" in constraint.op and key < bound) or (">" in constraint.op and key > bound)
            or ("=" in constraint.op and key == bound))


def _arch_fits(installed: str, offered: str) -> bool:
    return installed == offered or NOARCH in (installed, offered)


# -- the result -------------------------------------------------------------------------------------------

def apk_upgrade_argv(names: Sequence[str]) -> tuple[str, ...]:
    """The command that upgrades exactly ``names`` (and what they need): ``apk upgrade NAME...``."""
    return ("apk", "upgrade", *names)


def index_finding(indexes: ApkIndexes, age_days: float | None, max_age_days: float) -> Finding:
    """The low finding: apk's repository indexes are missing, unreadable or older than ``max_age_days``.

    ``vulns.package_lists_stale`` like apt's, worded for apk (``pending.lists_finding`` names apt)."""
    updated = indexes.updated
    if updated is None:
        title = f"apk has no readable repository index in {indexes.cache_dir}: pending updates cannot be known"
    elif indexes.missing:
        title = (f"apk has no readable index for {len(indexes.missing)} of its {len(indexes.repositories)} "
                 "repositories: pending updates from them cannot be known")
    else:
        title = f"apk's repository indexes are {age_days:.0f} days old: pending updates may be missed"
    evidence: dict[str, Any] = {
        "cache_dir": indexes.cache_dir, "lists_updated": iso_time(updated), "age_days": age_days,
        "max_age_days": max_age_days, "missing": [r.label() for r in indexes.missing],
        "unreadable": [i.path for i in indexes.indexes if not i.readable]}
    return stale_lists_finding(title, indexes.cache_dir, evidence, "Refresh the repository indexes: run `apk update` "
                               "(or a periodic job that runs it).", "apk", ("apk", "update"))


def pending_apk_updates(host: Host, *, max_index_age_days: float = 7.0, now: float | None = None,
                        security: SecurityLookup | None = None) -> PendingResult:
    """The updates ``apk upgrade`` would install on ``host``, from its installed database and cached indexes.

    All of them are ``other_updates``; those ``security`` names advisories for are ``updates`` (and not in
    ``other_updates``), each with a finding whose fix is ``apk upgrade NAME``. The index age is reported as
    ``lists_updated``/``lists_age_days`` and a stale or missing index gives a ``vulns.package_lists_stale``
    finding. A host without an apk database is ``available=False`` (unsupported); problems with indexes
    are in ``detail``. Exceptions raised by ``security`` are the caller's and are not caught."""
    try:
        text = host.read_optional(APK_INSTALLED)
    except HostError as exc:
        return PendingResult(False, SkipReason.ERROR, f"{APK_INSTALLED}: {exc}")
    if text is None:
        return PendingResult(False, SkipReason.UNSUPPORTED, f"no apk database ({APK_INSTALLED}): not an Alpine host")
    try:
        installed = list(parse_installed(text, APK_INSTALLED, files=False))
    except HostError as exc:
        return PendingResult(False, SkipReason.ERROR, str(exc))
    arches = _host_arches(host, (p.arch for p in installed))
    indexes = read_indexes(host, arches)
    try:
        world = parse_world(host.read_optional(WORLD) or "")
    except HostError:
        world = {}

    offers: dict[str, list[tuple[IndexEntry, str, str]]] = {}   # name -> (entry, repository tag, label)
    for index in indexes.indexes:
        tag, label = (index.repository.tag, index.repository.label()) if index.repository else ("", index.path)
        for entry in index.entries:
            offers.setdefault(entry.name, []).append((entry, tag, label))

    keys: dict[str, Any] = {}
    problems = list(indexes.problems)
    pending: list[PendingUpdate] = []
    marked: dict[str, tuple[str, ...]] = {}
    asked: dict[tuple[str, str, str], tuple[str, ...]] = {}
    for package in installed:
        current = _key(package.version, keys)
        if current is None:
            problems.append(f"{package.name}: installed version {package.version!r} is not an apk version")
            continue
        constraint = world.get(package.name, WorldEntry(package.name))
        choices: dict[str, list[tuple[Any, str, str]]] = {"pinned": [], "plain": []}
        for entry, tag, where in offers.get(package.name, ()):
            if tag and tag != constraint.tag:
                continue                                 # a tagged repository serves only what is pinned to it
            key = _key(entry.version, keys)
            if key is None or not _arch_fits(package.arch, entry.arch) or not _allowed(key, constraint, keys):
                continue
            choices["pinned" if tag else "plain"].append((key, entry.version, where))
        pool = choices["pinned"] or choices["plain"]
        if not pool:
            continue
        best = max(item[0] for item in pool)
        if not best > current:
            continue
        new = next(item[1] for item in pool if item[0] == best)
        origins = tuple(sorted({item[2] for item in pool if item[0] == best}))
        update = PendingUpdate(package.name, package.version, new, origins, package.arch)
        pending.append(update)
        if security is not None:
            ask = (package.origin, package.version, new)
            if ask not in asked:
                asked[ask] = tuple(security(*ask))
            if asked[ask]:
                marked[package.name] = asked[ask]
    pending.sort(key=lambda u: u.name)
    secure = tuple(u for u in pending if u.name in marked)
    other = tuple(u for u in pending if u.name not in marked)

    updated = indexes.updated
    current_time = time.time() if now is None else now
    age = None if updated is None else round(max(0.0, current_time - updated) / 86400, 2)
    stale = indexes.remote and (updated is None or bool(indexes.missing)
                                or (age is not None and age > max_index_age_days))
    findings = [update_finding(u, (), manager="apk", argv=apk_upgrade_argv([u.name]), advisories=marked[u.name])
                for u in secure]
    if stale:
        findings.append(index_finding(indexes, age, max_index_age_days))
    return PendingResult(True, None, "; ".join(problems), (), secure, other, (), (), indexes.cache_dir, updated, age,
                         stale, tuple(findings), manager="apk")

