"""What is installed on a host, keyed the way advisories are: the inventory ``vulns scan`` matches.

Everything is read through the :class:`~hostguard.host.base.Host`, so a ``--root`` tree is inventoried as
itself, never the scanning machine. One :class:`Item` per thing an advisory can name:

* dpkg (Debian, Ubuntu): one item per *source* package and source version (the security trackers key
  their records by source), carrying the installed binary packages built from it (what ``apt-get`` is
  told to upgrade). The source version is the status file's ``Source: name (version)``, else the binary's
  version less a binNMU's ``+bN``.
* rpm: one item per binary package (OSV's AlmaLinux and Rocky records list binary names), version
  ``[epoch:]version-release``.
* apk: one item per origin (the aports package the binaries come from).
* PyPI: ``*.dist-info/METADATA`` and ``*.egg-info`` (``PKG-INFO``) of the system's site directories and of
  virtualenvs (a ``pyvenv.cfg``) found under the configured paths; npm: ``package-lock.json`` (lockfile v1
  ``dependencies`` tree, v2/v3 ``packages``) and, for a project without a lock, ``node_modules/*/package.json``;
  Packagist: ``composer.lock`` (``packages`` and ``packages-dev``).

The release's OSV ecosystem (``Debian:12``) comes from ``/etc/os-release`` through
``data/vulns/releases.toml``. Distribution packages from other repositories (nodesource, PGDG, docker-ce,
backports: ``data/vulns/third_party.toml``) and Python distributions installed by the distribution's package
manager (``/usr/lib/python3/dist-packages``: their fixes are backported under the distribution's version)
get ``not_covered`` with the reason: they are listed, never matched against advisories that do not
describe them.
"""

from __future__ import annotations

import json
import os
import re
import stat as stat_mod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from hostguard.data import load_toml
from hostguard.host import apkdb, rpmdb
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.host.packages import DPKG_STATUS, DpkgPackage, parse_status, rpm_front_end

__all__ = ["DEFAULT_PATHS", "Inventory", "InventoryOptions", "Item", "Release", "collect_inventory",
           "dpkg_items", "npm_lock_items", "os_release", "release_ecosystem", "third_party_reason"]

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
APT_LISTS = "/var/lib/apt/lists"
SYSTEM_SITE_GLOBS = ("/usr/lib/python3/dist-packages", "/usr/lib/python3*/site-packages",
                     "/usr/lib64/python3*/site-packages", "/usr/local/lib/python3*/dist-packages",
                     "/usr/local/lib/python3*/site-packages")
DISTRO_SITE = re.compile(r"^/usr/lib(64)?/python3")  # the package manager's own, not pip's /usr/local
# why a distribution's own Python distribution is not matched against PyPI: its source package is, against the
# distribution's advisories (so it is covered, not a gap)
DISTRO_MANAGED = "installed by the distribution's package manager: its advisories are the distribution package's"
DEFAULT_PATHS = ("/srv", "/opt", "/var/www", "/home", "/root", "/usr/lib/node_modules", "/usr/local/lib/node_modules")
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".cache", "proc", "sys", "dev"})
HEADER = re.compile(r"([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)")


@dataclass(frozen=True)
class InventoryOptions:
    """Where language packages are looked for: ``paths`` walked ``max_depth`` directories deep, at most
    ``max_dirs`` directories in all (the walk never follows a symlinked directory)."""

    paths: tuple[str, ...] = DEFAULT_PATHS
    max_depth: int = 6
    max_dirs: int = 50_000


@dataclass(frozen=True)
class Release:
    """The host's release as /etc/os-release says it, and the OSV ecosystem of its distribution (None: none)."""

    id: str
    version_id: str
    pretty: str
    ecosystem: str | None


@dataclass(frozen=True)
class Item:
    """One thing an advisory can name.

    ``ecosystem``/``name``/``version`` are what the advisories are keyed by (the source package for dpkg,
    the origin for apk); ``binaries`` the installed packages the package manager upgrades (``name`` or
    ``name:arch``), with ``binary_versions`` their own versions; ``manager`` the tool that upgrades it
    (apt-get, dnf, yum, apk, pip, npm, composer); ``location`` the environment: the site directory's
    interpreter prefix for pip (the virtualenv), the project directory for npm and composer, "" for the
    system's package manager; ``origin`` the file the item was read from. ``not_covered`` says why the
    item is not matched against advisories (None: it is).
    """

    ecosystem: str
    name: str
    version: str
    manager: str
    origin: str
    location: str = ""
    binaries: tuple[str, ...] = ()
    binary_versions: tuple[str, ...] = ()
    not_covered: str | None = None

    def label(self) -> str:
        """``ecosystem name version`` (and where), for lists and skipped entries."""
        where = f" in {self.location}" if self.location else ""
        return f"{self.ecosystem or '?'} {self.name} {self.version}{where}"


@dataclass(frozen=True)
class Inventory:
    """Every item found, the release, and ``problems`` (what, why) for sources that could not be read."""

    items: tuple[Item, ...]
    release: Release | None = None
    problems: tuple[tuple[str, str], ...] = ()

    def covered(self) -> list[Item]:
        """The items matched against advisories."""
        return [i for i in self.items if i.not_covered is None]

    def not_covered(self) -> list[Item]:
        """The items listed as not covered, with their reasons."""
        return [i for i in self.items if i.not_covered is not None]

    def to_jsonl(self) -> list[dict[str, str]]:
        """The covered items as ``vulns match`` reads them (``{"ecosystem", "name", "version"}``)."""
        return [{"ecosystem": i.ecosystem, "name": i.name, "version": i.version} for i in self.covered()]


# -- the release -------------------------------------------------------------------------------------------

def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): ``KEY=value`` lines, values optionally quoted (shell-style escapes in double quotes)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not key or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            if line.strip().partition("=")[2].strip().startswith('"'):
                value = re.sub(r'\\(["\\$`])', r"\1", value)
        out[key] = value
    return out


def release_ecosystem(fields: dict[str, str]) -> str | None:
    """The OSV ecosystem of an os-release (``data/vulns/releases.toml``); None when the table has none."""
    rid, vid, version = fields.get("ID", ""), fields.get("VERSION_ID", ""), fields.get("VERSION", "")
    if not rid or not vid:
        return None
    numbers = re.match(r"(\d+)(?:\.(\d+))?", vid)
    major = numbers.group(1) if numbers else vid
    major_minor = f"{numbers.group(1)}.{numbers.group(2)}" if numbers and numbers.group(2) else major
    for entry in load_toml("vulns/releases.toml")["releases"]:
        if entry["id"] != rid:
            continue
        if "version_contains" in entry and entry["version_contains"] not in version:
            continue
        return str(entry["ecosystem"]).format(version_id=vid, major=major, major_minor=major_minor)
    return None


def os_release(host: Host) -> Release | None:
    """The host's release (None when it has no os-release file)."""
    for path in OS_RELEASE:
        text = host.read_optional(path)
        if text is not None:
            fields = parse_os_release(text)
            return Release(fields.get("ID", ""), fields.get("VERSION_ID", ""), fields.get("PRETTY_NAME", ""),
                           release_ecosystem(fields))
    return None


# -- third-party distribution packages ---------------------------------------------------------------------

@cache
def _third_party() -> tuple[list[tuple[re.Pattern[str], str]], dict[str, Any]]:
    data = load_toml("vulns/third_party.toml")
    return [(re.compile(v["pattern"]), str(v["reason"])) for v in data["versions"]], data


def version_reason(version: str) -> str | None:
    """The reason a version string shows a third-party build (None: it looks like the distribution's)."""
    rules, _ = _third_party()
    for pattern, reason in rules:
        if pattern.search(version):
            return reason
    return None


def _archive_reason(list_names: Iterable[str]) -> str | None:
    """None when one of the apt lists carrying a version is the distribution's own (backports excluded),
    else the reason naming the repositories."""
    _, data = _third_party()
    archives = data["archives"]
    patterns = [re.compile(p) for p in archives["distribution_patterns"]]
    others = []
    for name in list_names:
        backports = any(s in name for s in archives["not_covered_suites"])
        ours = name.startswith(tuple(archives["distribution"])) or any(p.search(name) for p in patterns)
        if ours and not backports:
            return None
        others.append(name.split("_dists_")[0].replace("_", "/") + (" (backports)" if backports else ""))
    return "from " + ", ".join(sorted(set(others)))


def _maintainer_reason(maintainer: str) -> str | None:
    _, data = _third_party()
    address = maintainer.rpartition("<")[2].rstrip(">").strip().lower()
    domain = address.rpartition("@")[2]
    for known in data["maintainers"]["domains"]:
        if domain == known or domain.endswith("." + known):
            return f"maintained by {domain}, not the distribution"
    return None


def apt_list_versions(host: Host) -> dict[tuple[str, str], list[str]]:
    """``(package, version)`` -> the uncompressed apt lists (``*_Packages``) carrying it. Compressed lists
    (``.lz4``, ``.gz``: apt's ``Acquire::GzipIndexes``) are not read: then the version rules decide alone."""
    found: dict[tuple[str, str], list[str]] = {}
    for name in host.listdir(APT_LISTS):
        if not name.endswith("_Packages"):
            continue
        try:
            data = host.read_bytes(f"{APT_LISTS}/{name}")
        except HostError:
            continue
        package = None
        for line in data.split(b"\n"):
            if line.startswith(b"Package:"):
                package = line[8:].strip().decode("utf-8", "replace")
            elif line.startswith(b"Version:") and package is not None:
                found.setdefault((package, line[8:].strip().decode("utf-8", "replace")), []).append(name)
            elif not line:
                package = None
    return found


def third_party_reason(package: DpkgPackage, lists: dict[tuple[str, str], list[str]]) -> str | None:
    """Why a dpkg package is not the distribution's (None: it is): its version, else the apt lists carrying
    that exact version, else its maintainer's domain (``data/vulns/third_party.toml``)."""
    reason = version_reason(package.version)
    if reason is not None:
        return reason
    carried = lists.get((package.name, package.version))
    if carried:
        return _archive_reason(carried)
    return _maintainer_reason(package.maintainer)


# -- distribution packages ---------------------------------------------------------------------------------

def dpkg_items(packages: Iterable[DpkgPackage], ecosystem: str | None,
               lists: dict[tuple[str, str], list[str]] | None = None) -> list[Item]:
    """Installed dpkg packages grouped by (source, source version, reason not covered): one item each."""
    installed = [p for p in packages if p.state == "installed"]
    arches: dict[str, set[str]] = {}
    for p in installed:
        arches.setdefault(p.name, set()).add(p.arch)
    groups: dict[tuple[str, str, str | None], list[DpkgPackage]] = {}
    for p in installed:
        reason = third_party_reason(p, lists or {})
        if reason is None and ecosystem is None:
            reason = "no OSV ecosystem known for this release (data/vulns/releases.toml)"
        groups.setdefault((p.source_name(), p.source_version(), reason), []).append(p)
    items = []
    for (source, version, reason), members in groups.items():
        members.sort(key=lambda p: (p.name, p.arch))
        binaries = tuple(p.label() if len(arches[p.name]) > 1 else p.name for p in members)
        items.append(Item(ecosystem or "", source, version, "apt-get", DPKG_STATUS, "", binaries,
                          tuple(p.version for p in members), reason))
    return sorted(items, key=lambda i: (i.name, i.version))


def _rpm_items(host: Host, location: rpmdb.RpmDbLocation, ecosystem: str | None) -> list[Item]:
    manager = rpm_front_end(host)
    db = rpmdb.read_rpmdb(host, location)
    items = []
    for p in db.packages:
        if p.name == "gpg-pubkey":
            continue
        reason = None if ecosystem else "no OSV ecosystem known for this release (data/vulns/releases.toml)"
        items.append(Item(ecosystem or "", p.name, p.evr(), manager, location.path, "", (p.label(),), (p.evr(),),
                          reason))
    return sorted(items, key=lambda i: (i.name, i.version))


def _apk_items(text: str, ecosystem: str | None) -> list[Item]:
    groups: dict[tuple[str, str], list[apkdb.ApkPackage]] = {}
    for p in apkdb.parse_installed(text, files=False):
        groups.setdefault((p.origin, p.version), []).append(p)
    reason = None if ecosystem else "no OSV ecosystem known for this release (data/vulns/releases.toml)"
    return [Item(ecosystem or "", origin, version, "apk", apkdb.APK_INSTALLED, "",
                 tuple(sorted(p.name for p in members)), tuple(p.version for p in members), reason)
            for (origin, version), members in sorted(groups.items())]


def system_items(host: Host, release: Release | None, problems: list[tuple[str, str]]) -> list[Item]:
    """The distribution's packages: dpkg, else rpm, else apk (the order the other package readers use)."""
    ecosystem = release.ecosystem if release else None
    try:
        status = host.read_optional(DPKG_STATUS)
        if status is not None:
            return dpkg_items(parse_status(status), ecosystem, apt_list_versions(host))
        try:
            location = rpmdb.locate(host)
        except Unavailable as exc:
            problems.append(("rpm", exc.detail))
            return []
        if location is not None:
            return _rpm_items(host, location, ecosystem)
        text = host.read_optional(apkdb.APK_INSTALLED)
        if text is not None:
            return _apk_items(text, ecosystem)
    except HostError as exc:
        problems.append(("packages", str(exc)))
    return []


# -- Python ------------------------------------------------------------------------------------------------

def parse_metadata(text: str) -> tuple[str, str] | None:
    """(Name, Version) of a core-metadata file (``METADATA``/``PKG-INFO``: email-style headers)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        match = HEADER.match(line)
        if match:
            fields.setdefault(match.group(1).lower(), match.group(2).strip())
    name, version = fields.get("name"), fields.get("version")
    return (name, version) if name and version else None


def site_items(host: Host, site: str, prefix: str, problems: list[tuple[str, str]]) -> list[Item]:
    """The distributions of one site directory; ``prefix`` is the environment (a venv, ``/usr/local``)."""
    items = []
    distro = bool(DISTRO_SITE.match(site))
    for name in host.listdir(site):
        path = f"{site}/{name}"
        if name.endswith(".dist-info"):
            meta = f"{path}/METADATA"
        elif name.endswith(".egg-info"):
            meta = f"{path}/PKG-INFO" if _is_dir(host, path) else path
        else:
            continue
        try:
            text = host.read_optional(meta)
        except HostError as exc:
            problems.append((meta, str(exc)))
            continue
        parsed = parse_metadata(text or "")
        if parsed is None:
            continue
        reason = DISTRO_MANAGED if distro else None
        items.append(Item("PyPI", parsed[0], parsed[1], "pip", meta,
                          "" if distro else prefix, not_covered=reason))
    return items


def _is_dir(host: Host, path: str) -> bool:
    try:
        return stat_mod.S_ISDIR(host.stat(path).mode)
    except HostError:
        return False


def venv_sites(host: Host, venv: str) -> list[str]:
    """The site-packages directories of a virtualenv (``lib/python3.X/site-packages``, also lib64)."""
    return host.glob(f"{venv}/lib/python*/site-packages") + host.glob(f"{venv}/lib64/python*/site-packages")


# -- npm and Composer --------------------------------------------------------------------------------------

def npm_lock_items(text: str, origin: str, project: str) -> list[Item]:
    """The packages of a ``package-lock.json``: v2/v3 ``packages`` (keys ``node_modules/a/node_modules/b``;
    links and the root left out; an aliased dependency named by its ``name``), else v1's nested
    ``dependencies``. Raises ValueError for a file that is not such JSON."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    found: dict[tuple[str, str], None] = {}
    packages = data.get("packages")
    if isinstance(packages, dict) and packages:
        for key, entry in packages.items():
            if not key or not isinstance(entry, dict) or entry.get("link") or "node_modules/" not in key:
                continue
            name = entry.get("name") or key.rpartition("node_modules/")[2]
            version = entry.get("version")
            if isinstance(name, str) and isinstance(version, str) and version:
                found[(name, version)] = None
    else:
        stack = [data.get("dependencies")]
        while stack:
            deps = stack.pop()
            if not isinstance(deps, dict):
                continue
            for name, entry in deps.items():
                if isinstance(entry, dict):
                    version = entry.get("version")
                    if isinstance(version, str) and version and not version.startswith(("file:", "link:")):
                        found[(name, version.removeprefix("npm:").rpartition("@")[2] if version.startswith("npm:")
                               else version)] = None
                    stack.append(entry.get("dependencies"))
    return [Item("npm", n, v, "npm", origin, project) for n, v in sorted(found)]


def node_modules_items(host: Host, directory: str, project: str) -> list[Item]:
    """``node_modules/*/package.json`` and ``node_modules/@scope/*/package.json`` (one level: a project
    without a lock file, or a global prefix)."""
    items = []
    for name in host.listdir(directory):
        names = [f"{name}/{sub}" for sub in host.listdir(f"{directory}/{name}")] if name.startswith("@") else [name]
        for pkg in names:
            path = f"{directory}/{pkg}/package.json"
            try:
                data = json.loads(host.read_optional(path) or "null")
            except (HostError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("name"), str) and isinstance(data.get("version"), str):
                items.append(Item("npm", data["name"], data["version"], "npm", path, project))
    return items


def composer_items(text: str, origin: str, project: str) -> list[Item]:
    """``composer.lock``'s ``packages`` and ``packages-dev`` (Packagist names; a leading ``v`` dropped, as
    the advisories write versions)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    items = []
    for section in ("packages", "packages-dev"):
        for entry in data.get(section) or ():
            if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("version"), str):
                version = re.sub(r"^v(?=\d)", "", entry["version"])
                items.append(Item("Packagist", entry["name"], version, "composer", origin, project))
    return items


# -- the walk ----------------------------------------------------------------------------------------------

def _walk(host: Host, options: InventoryOptions,
          problems: list[tuple[str, str]] | None = None) -> Iterator[tuple[str, list[str]]]:
    """(directory, names) of every directory under the configured paths, breadth first, bounded; not into
    node_modules, VCS or cache directories, nor through symlinks (a link to a directory is not followed: it
    could lead the walk anywhere, or round in circles). Reaching ``max_dirs`` with directories left is a
    problem said, so the directories not read are never taken for empty."""
    seen = 0
    queue: list[tuple[str, int]] = [(p.rstrip("/") or "/", 0) for p in options.paths]
    while queue and seen < options.max_dirs:
        directory, depth = queue.pop(0)
        try:
            names = host.listdir(directory)
            real = host.resolve(directory)
        except HostError:
            continue
        seen += 1
        yield directory, names
        if depth >= options.max_depth:
            continue
        for name in names:
            if name in SKIP_DIRS or name == "node_modules" or name.endswith(("-packages", ".dist-info")):
                continue
            try:
                is_dir = stat_mod.S_ISDIR(os.lstat(os.path.join(real, name)).st_mode)
            except OSError:
                continue
            if is_dir:
                queue.append((f"{directory}/{name}", depth + 1))
    if queue and problems is not None:
        problems.append((", ".join(options.paths), f"stopped after {options.max_dirs} directories ([vulns] paths): "
                                                   f"{len(queue)} or more not read, e.g. {queue[0][0]}"))


def project_items(host: Host, options: InventoryOptions, problems: list[tuple[str, str]]) -> list[Item]:
    """Virtualenvs, npm projects and Composer projects under the configured paths."""
    items: list[Item] = []
    for directory, names in _walk(host, options, problems):
        present = set(names)
        try:
            if "pyvenv.cfg" in present:
                for site in venv_sites(host, directory):
                    items += site_items(host, site, directory, problems)
            if "package-lock.json" in present:
                path = f"{directory}/package-lock.json"
                items += npm_lock_items(host.read_text(path), path, directory)
            elif directory.endswith("/node_modules"):
                items += node_modules_items(host, directory, directory.rpartition("/")[0] or "/")
            elif "node_modules" in present and "package.json" in present:
                items += node_modules_items(host, f"{directory}/node_modules", directory)
            if "composer.lock" in present:
                path = f"{directory}/composer.lock"
                items += composer_items(host.read_text(path), path, directory)
        except (HostError, ValueError) as exc:
            problems.append((directory, str(exc)))
    return items


def collect_inventory(host: Host, options: InventoryOptions | None = None) -> Inventory:
    """The host's inventory: its distribution packages, system Python distributions and the virtualenvs,
    npm and Composer projects under ``options.paths``. Unreadable sources are ``problems``, never fatal."""
    options = options or InventoryOptions()
    problems: list[tuple[str, str]] = []
    try:
        release = os_release(host)
    except HostError as exc:
        problems.append(("os-release", str(exc)))
        release = None
    items = system_items(host, release, problems)
    sites: list[str] = []
    for pattern in SYSTEM_SITE_GLOBS:
        sites += [s for s in host.glob(pattern) if s not in sites]
    for site in sites:
        prefix = "/usr/local" if site.startswith("/usr/local/") else ""
        items += site_items(host, site, prefix, problems)
    items += project_items(host, options, problems)
    unique = list(dict.fromkeys(items))
    return Inventory(tuple(unique), release, tuple(problems))
