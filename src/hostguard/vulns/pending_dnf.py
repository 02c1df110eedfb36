"""Security updates waiting to be installed on dnf and yum hosts (RHEL, Fedora, AlmaLinux, Rocky Linux, Amazon
Linux): the security advisories that the repositories' ``updateinfo`` names for installed packages, one
finding per package with the command that installs it.

:func:`pending_dnf_updates` asks the package manager three questions, each with ``-C`` (cache only):

1. ``dnf -C updateinfo list --updates --security`` (yum 3: ``yum -C updateinfo list updates security``): one
   ``ADVISORY SEVERITY/Sec. NEVRA`` line per security advisory and package that a newer available version
   of an installed package fixes. ``--updates`` rather than dnf's default ``--available``: an advisory
   whose package no enabled repository offers cannot be installed, so it is no pending update.
2. ``dnf -C list --upgrades`` (yum: ``list updates``): every upgrade with its repository. ``dnf upgrade NAME``
   installs the newest version, which may be newer than the advisory's (the finding says what it
   installs, and keeps the advisory's as ``security_version``); the upgrades without a security advisory
   are the result's ``other_updates``.
3. ``dnf -C list --installed NAME...`` (yum: ``list installed``): the installed versions.

``list`` rather than ``repoquery --qf``: yum 3 has no ``repoquery`` (it comes from yum-utils), and ``list``
prints the same ``NAME.ARCH [EPOCH:]VERSION-RELEASE REPO`` table in dnf 4, dnf 5 and yum 3. The advisory
lines of dnf 5 (``ID TYPE SEVERITY NEVRA ISSUED``) are read too.

Like the apt version it never refreshes metadata (no downloads, no waiting on mirrors, nothing dnf's own
timer would not do): ``-C`` uses the metadata the host already has, and the result says how old that is.
dnf's own measure of a repository's age is the modification time of its cached primary metadata (libdnf
touches it whenever a refresh finds the metadata unchanged, while ``repomd.xml`` is only rewritten when
it changed), yum 3's the repository's ``cachecookie``; the newest across repositories is what dnf prints
as "Last metadata expiration check". A low ``vulns.package_lists_stale`` finding asks for ``dnf makecache
--refresh`` when that is older than ``max_metadata_age_days``, when there is no cached metadata, or when
dnf ignored a repository for want of a cache (``skip_if_unavailable``: its advisories were not seen).
``-q`` is not used, because it hides that warning.

The fix is ``dnf upgrade NAME`` (yum 3: ``yum update NAME``): exactly that package, to its newest version,
with whatever new dependency it needs.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hostguard.data import load_toml
from hostguard.findings import Finding, Severity, SkipReason
from hostguard.vulns.orders import InvalidVersion
from hostguard.vulns.orders import rpm as rpm_order
from hostguard.vulns.pending import (
    CHECK_ID,
    LISTS_CHECK_ID,
    PendingResult,
    PendingUpdate,
    iso_time,
    stale_lists_finding,
    update_finding,
)

__all__ = ["CHECK_ID", "LISTS_CHECK_ID", "Advisory", "Listed", "advisory_severity", "cache_dirs", "fix_argv",
           "metadata_finding", "metadata_updated", "parse_ignored_repos", "parse_list", "parse_nevra",
           "parse_updateinfo", "pending_dnf_updates", "security_updates"]

DEFAULT_CACHE_DIRS = {"dnf": ("/var/cache/dnf", "/var/cache/libdnf5"), "yum": ("/var/cache/yum",)}
DEFAULT_CONFIGS = {"dnf": ("/etc/dnf/dnf.conf",), "yum": ("/etc/yum.conf", "/etc/yum/yum.conf")}
SUBCOMMANDS = {
    "dnf": {"updateinfo": ("updateinfo", "list", "--updates", "--security"), "upgrades": ("list", "--upgrades"),
            "installed": ("list", "--installed")},
    "yum": {"updateinfo": ("updateinfo", "list", "updates", "security"), "upgrades": ("list", "updates"),
            "installed": ("list", "installed")},
}
_TYPES = frozenset({"security", "bugfix", "enhancement", "newpackage", "unspecified", "unknown"})
_SEC = re.compile(r"(?:(?P<severity>[A-Za-z]+)/)?Sec\.")           # dnf 4 and yum 3: Important/Sec.
_ARCH = re.compile(r"\w+")
_EVR = re.compile(r"(?:\d+:)?[^\s:-]+-[^\s:-]+")
_IGNORED = re.compile(r"^Ignoring repositories: (.+)$", re.M)
_NO_CACHE = re.compile(r"Cache-only enabled but no cache for '([^'\s]+)'")
_SCAN_DEPTH = 4            # /var/cache/yum/x86_64/7/REPO/repomd.xml is three levels below the cache dir


@dataclass(frozen=True)
class Advisory:
    """One line of ``updateinfo list``: advisory ``id`` of ``type`` (lower case: security, bugfix, ...) with
    its ``severity`` as the advisory words it (``Important``; empty when it gives none), for package
    ``name`` at ``evr`` (``[EPOCH:]VERSION-RELEASE``) on ``arch``."""

    id: str
    type: str
    severity: str
    name: str
    evr: str
    arch: str

    @property
    def security(self) -> bool:
        """Whether this is a security advisory."""
        return self.type == "security"


@dataclass(frozen=True)
class Listed:
    """One row of ``dnf list``: ``name``.``arch`` at ``evr`` from ``repo`` (``@REPO`` when installed)."""

    name: str
    arch: str
    evr: str
    repo: str


def parse_nevra(text: str) -> tuple[str, str, str] | None:
    """``(name, evr, arch)`` of ``NAME-[EPOCH:]VERSION-RELEASE.ARCH`` (``openssl-libs-1:3.0.7-27.el9.x86_64``
    -> ``("openssl-libs", "1:3.0.7-27.el9", "x86_64")``); None when the text is not one."""
    if not text or any(c.isspace() for c in text):
        return None
    rest, dot, arch = text.rpartition(".")
    if not dot or not _ARCH.fullmatch(arch):
        return None
    parts = rest.rsplit("-", 2)
    if len(parts) != 3 or not all(parts) or parts[0].startswith("-"):
        return None
    name, version, release = parts
    epoch, colon, ver = version.partition(":")
    if ":" in release or (colon and (not epoch.isdigit() or not ver or ":" in ver)):
        return None
    return name, f"{version}-{release}", arch


def parse_updateinfo(text: str) -> list[Advisory]:
    """The advisory lines of ``updateinfo list``; any other line (headers, "Last metadata expiration
    check", yum's "Loaded plugins") is ignored, never an error.

    dnf 4 and yum 3 print ``ID TYPE NEVRA`` where TYPE is ``bugfix``, ``enhancement``, ``newpackage`` or, for
    security advisories, ``SEVERITY/Sec.`` (dnf 4 writes ``Unknown/Sec.`` when the advisory gives no
    severity; a bare ``Sec.`` or ``security`` is read as a security advisory without one), followed by the
    issue date under ``-v``; dnf 5 prints ``ID TYPE SEVERITY NEVRA ISSUED``."""
    out: list[Advisory] = []
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 3:
            continue
        adv_id, kind, rest = tokens[0], tokens[1], tokens[2:]
        sec = _SEC.fullmatch(kind)
        if sec:
            type_, severity = "security", sec["severity"] or ""
        elif kind.lower() in _TYPES:
            type_, severity = kind.lower(), ""
            if len(rest) >= 2 and parse_nevra(rest[0]) is None and parse_nevra(rest[1]) is not None:
                severity, rest = rest[0], rest[1:]          # dnf 5's severity column
        else:
            continue
        nevra = parse_nevra(rest[0])
        if nevra is None or len(rest) > 3:                  # at most the issue date and time after the NEVRA
            continue
        out.append(Advisory(adv_id, type_, severity, *nevra))
    return out


def _listed(tokens: Sequence[str]) -> Listed | None:
    if len(tokens) != 3:
        return None
    name, dot, arch = tokens[0].rpartition(".")
    if not dot or not name or name.startswith("-") or not _ARCH.fullmatch(arch) or not _EVR.fullmatch(tokens[1]):
        return None
    return Listed(name, arch, tokens[1], tokens[2])


def _starts_row(tokens: Sequence[str]) -> bool:
    name, dot, arch = tokens[0].rpartition(".")
    return bool(dot and name and _ARCH.fullmatch(arch)) and (len(tokens) == 1 or bool(_EVR.fullmatch(tokens[1])))


def parse_list(text: str) -> list[Listed]:
    """The package rows of ``dnf list`` / ``yum list`` (``NAME.ARCH EVR REPO``), whatever the section.

    A name too long for its column pushes the rest of its row onto the next, indented line; such rows are
    joined. Rows under "Obsoleting Packages" (the packages an upgrade replaces) are not upgrades and are
    skipped. Any other line is ignored, never an error."""
    out: list[Listed] = []
    pending: list[str] = []
    obsoleting = False
    for line in text.splitlines():
        tokens = line.split()
        if not tokens:
            pending = []
            continue
        continued = line[0].isspace() and bool(pending)
        if continued:
            tokens = pending + tokens
        pending = []
        row = _listed(tokens)
        if row is not None:
            if not obsoleting:
                out.append(row)
            continue
        if not continued and not line[0].isspace() and len(tokens) <= 2 and _starts_row(tokens):
            pending = tokens
        elif not line[0].isspace():
            obsoleting = line.strip().lower().startswith("obsoleting")
    return out


def parse_ignored_repos(stderr: str) -> list[str]:
    """The repositories dnf skipped for want of cached metadata (``skip_if_unavailable``): their advisories
    were not seen."""
    names: list[str] = []
    for m in _IGNORED.finditer(stderr):
        names += [n.strip() for n in m.group(1).split(",") if n.strip()]
    names += _NO_CACHE.findall(stderr)
    return sorted(set(names))


@cache
def _severity_table() -> tuple[Severity, dict[str, Severity]]:
    data = load_toml("vulns/updateinfo-severity.toml")
    return Severity(data["default"]), {k.lower(): Severity(v) for k, v in data["severities"].items()}


def advisory_severity(word: str) -> Severity:
    """The hostguard severity of a security advisory's severity word (data/vulns/updateinfo-severity.toml)."""
    default, table = _severity_table()
    return table.get(word.strip().lower(), default)


def _evr_key(evr: str) -> tuple[int, object]:
    """rpm's order of ``evr``; a version rpm would refuse sorts below every valid one."""
    try:
        return 1, rpm_order.key(evr)
    except InvalidVersion:
        return 0, ()


def _newest(evrs: Iterable[str]) -> str:
    return max(evrs, key=_evr_key)


def _same(a: str, b: str) -> bool:
    return _evr_key(a) == _evr_key(b)


def security_updates(advisories: Iterable[Advisory], installed: Iterable[Listed], upgrades: Iterable[Listed]
                     ) -> tuple[list[tuple[PendingUpdate, Severity, tuple[str, ...]]], list[PendingUpdate]]:
    """Pair the security advisories with the installed versions and the upgrades: one entry per package
    name (its advisories merged: the highest severity, every id) and the upgrades without a security
    advisory.

    An advisory counts only when an upgrade reaches its version: ``updateinfo --updates`` lists an
    advisory whenever its package has *some* newer version available, even one older than the fix (an
    advisory for 9.5 while the repositories offer 9.1), and upgrading to that would leave the advisory
    open, the printed fix not fixing it. ``new`` is what ``dnf upgrade NAME`` installs (the newest
    upgrade), ``superseded`` the newest version an advisory names when that is older; ``old`` the newest
    installed version (several for install-only packages such as the kernel), None when dnf listed none."""
    inst: dict[str, list[Listed]] = {}
    for row in installed:
        inst.setdefault(row.name, []).append(row)
    upg: dict[str, list[Listed]] = {}
    for row in upgrades:
        upg.setdefault(row.name, []).append(row)
    by_name: dict[str, list[Advisory]] = {}
    for adv in advisories:
        if adv.security and any(_evr_key(r.evr) >= _evr_key(adv.evr) for r in upg.get(adv.name, ())):
            by_name.setdefault(adv.name, []).append(adv)

    def old(name: str) -> str | None:
        return _newest(r.evr for r in inst[name]) if name in inst else None

    security: list[tuple[PendingUpdate, Severity, tuple[str, ...]]] = []
    for name in sorted(by_name):
        advs = by_name[name]
        severity = max((advisory_severity(a.severity) for a in advs), key=lambda s: s.rank)
        ids = tuple(sorted({a.id for a in advs}))
        fixed = _newest(a.evr for a in advs)
        rows = upg[name]
        new = _newest(r.evr for r in rows)
        origins = tuple(sorted({r.repo for r in rows}))
        arch = ",".join(sorted({a.arch for a in advs}))
        superseded = None if _same(new, fixed) else fixed
        security.append((PendingUpdate(name, old(name), new, origins, arch, superseded=superseded), severity, ids))
    other = [PendingUpdate(name, old(name), _newest(r.evr for r in rows), tuple(sorted({r.repo for r in rows})),
                           ",".join(sorted({r.arch for r in rows})))
             for name, rows in sorted(upg.items()) if name not in by_name]
    return security, other


def fix_argv(manager: str, name: str) -> tuple[str, ...]:
    """The command that upgrades exactly ``name``: ``dnf upgrade NAME`` (yum 3: ``yum update NAME``)."""
    return ("yum", "update", name) if manager == "yum" else ("dnf", "upgrade", name)


def refresh_argv(manager: str) -> tuple[str, ...]:
    """The command that refreshes the repository metadata even when dnf does not consider it expired."""
    return ("yum", "makecache") if manager == "yum" else ("dnf", "makecache", "--refresh")


def _option_values(options: Sequence[str], long: str, short: str | None = None) -> list[str]:
    """The values given to ``long`` (``--opt VALUE`` or ``--opt=VALUE``) or ``short`` (``-c VALUE``, ``-cVALUE``)."""
    out: list[str] = []
    i = 0
    while i < len(options):
        opt = options[i]
        if opt == long or (short is not None and opt == short):
            if i + 1 < len(options):
                out.append(options[i + 1])
            i += 2
            continue
        if opt.startswith(long + "="):
            out.append(opt[len(long) + 1:])
        elif short is not None and opt.startswith(short) and not opt.startswith("--") and len(opt) > len(short):
            out.append(opt[len(short):])
        i += 1
    return out


def _in_root(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path


def _config_cachedir(path: str) -> str | None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    value = parser.get("main", "cachedir", fallback="").strip()
    return value or None


def cache_dirs(manager: str, options: Sequence[str] = ()) -> list[str]:
    """Where the package manager keeps its repository metadata under these options, as dnf resolves it:
    ``--setopt=cachedir=DIR`` as given (a command-line path is the host's), else the config file's
    ``cachedir`` (``--config``/``-c``, else the default one, looked for inside ``--installroot`` first) inside
    the install root, else the defaults inside it (dnf 4 and dnf 5's for dnf, yum 3's for yum).

    ``-C`` makes dnf use the system cache even for a user, so no per-user cache is considered."""
    setopt = [v.partition("=")[2] for v in _option_values(options, "--setopt") if v.partition("=")[0] == "cachedir"]
    if setopt and setopt[-1]:
        return [setopt[-1]]
    roots = _option_values(options, "--installroot")
    root = roots[-1] if roots else "/"
    configs = _option_values(options, "--config", "-c")
    candidates = configs[-1:] or [p for d in DEFAULT_CONFIGS.get(manager, ()) for p in (_in_root(root, d), d)]
    for conf in candidates:
        if os.path.isfile(conf):
            value = _config_cachedir(conf)
            if value:
                return [_in_root(root, value)]
            break
    return [_in_root(root, d) for d in DEFAULT_CACHE_DIRS.get(manager, DEFAULT_CACHE_DIRS["dnf"])]


def _scan_base(path: str) -> str:
    """The part of a cache path before any ``$basearch``/``$releasever`` (yum 3's default has both)."""
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if "$" in part:
            return str(Path(*parts[:i])) if i else "."
    return path


def metadata_updated(cache_dir: str | os.PathLike[str]) -> float | None:
    """When dnf or yum last refreshed (or confirmed unchanged) any repository's metadata in ``cache_dir``:
    the newest modification time of a repository's ``repomd.xml``, primary metadata or ``cachecookie``
    (None: no repository metadata at all).

    Repositories are the directories holding a ``repomd.xml``: ``REPO-HASH/repodata/`` for dnf 4 and 5,
    ``$basearch/$releasever/REPO/`` for yum 3; up to four levels are looked through, never following
    symbolic links."""
    newest: float | None = None

    def visit(path: str, depth: int) -> None:
        nonlocal newest
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        if any(e.name == "repomd.xml" for e in entries):
            for e in entries:
                if e.name in ("repomd.xml", "cachecookie") or "primary" in e.name:
                    try:
                        mtime = e.stat(follow_symlinks=False).st_mtime
                    except OSError:
                        continue
                    newest = mtime if newest is None else max(newest, mtime)
        if depth > 0:
            for e in entries:
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir and e.name != "packages":
                    visit(e.path, depth - 1)

    visit(_scan_base(os.fspath(cache_dir)), _SCAN_DEPTH)
    return newest


def metadata_finding(manager: str, cache_dir: str, updated: float | None, age_days: float | None,
                     max_age_days: float, uncached: Sequence[str] = ()) -> Finding:
    """The low finding: the repository metadata is older than ``max_age_days``, missing, or missing for
    the repositories ``uncached`` (dnf skipped them).

    The same check as apt's stale package lists (``vulns.package_lists_stale``), in dnf's words and with
    dnf's command."""
    if uncached:
        title = (f"{manager} has no cached metadata for {', '.join(uncached)}: their pending updates cannot be "
                 "known")
    elif updated is None:
        title = f"{manager} has no cached repository metadata in {cache_dir}: pending updates cannot be known"
    else:
        title = f"{manager}'s repository metadata is {age_days:.0f} days old: pending updates may be missed"
    argv = refresh_argv(manager)
    timer = "dnf-makecache.timer" if manager == "dnf" else "yum-cron"
    evidence: dict[str, object] = {"metadata_updated": iso_time(updated), "age_days": age_days,
                                   "max_age_days": max_age_days, "manager": manager}
    if uncached:
        evidence["repos_without_cache"] = list(uncached)
    return stale_lists_finding(title, cache_dir, evidence, f"Refresh the repository metadata: run "
                               f"`{shlex.join(argv)}` (or enable {timer}, which does it regularly).", manager, argv)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env["LC_ALL"] = "C"
    return env


def _find(dnf: str, env: Mapping[str, str]) -> tuple[str | None, str]:
    """The executable and the manager's name: ``dnf`` as given (a path, or a name in PATH), and yum when
    the default name "dnf" is not found (yum 3 hosts: RHEL/CentOS 7, Amazon Linux 2)."""
    names = [dnf] + (["yum"] if dnf == "dnf" else [])
    for name in names:
        exe = name if os.sep in name else shutil.which(name, path=env.get("PATH"))
        if exe is not None and os.path.isfile(exe) and os.access(exe, os.X_OK):
            return exe, "yum" if os.path.basename(name).startswith("yum") else "dnf"
    return None, "dnf"


class _Failed(Exception):
    def __init__(self, reason: SkipReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _run(argv: Sequence[str], env: Mapping[str, str], deadline: float, timeout: float, manager: str,
         sub: Sequence[str], *, empty_ok: bool = False) -> subprocess.CompletedProcess[str]:
    """Run one query; a timeout, a missing executable or a failure (other than ``list`` matching nothing,
    when ``empty_ok``) raise :class:`_Failed`."""
    what = f"{manager} {' '.join(sub)}"
    try:
        proc = subprocess.run(list(argv), env=dict(env), capture_output=True, text=True, errors="replace",
                              timeout=max(0.1, deadline - time.monotonic()), check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise _Failed(SkipReason.BUDGET, f"{what} took over {timeout:g} s") from None
    except OSError as exc:
        raise _Failed(SkipReason.TOOL_MISSING, f"{argv[0]}: {exc.strerror or exc}") from None
    if proc.returncode != 0 and not (empty_ok and "no matching packages" in proc.stderr.lower()):
        lines = proc.stderr.splitlines()
        errors = [ln.strip() for ln in lines if ln.startswith("Error")] or [ln.strip() for ln in lines[-1:]]
        raise _Failed(SkipReason.ERROR, f"{what} failed (exit {proc.returncode}): " + " ".join(errors))
    return proc


def pending_dnf_updates(*, dnf: str = "dnf", options: Sequence[str] = (), cache_dir: str | None = None,
                        max_metadata_age_days: float = 7.0, now: float | None = None,
                        timeout: float = 300.0) -> PendingResult:
    """Report the pending security updates of a dnf or yum host (one ``vulns.pending_update`` finding per
    package, its severity the highest of its advisories') and how old the cached repository metadata is (a
    ``vulns.package_lists_stale`` finding past ``max_metadata_age_days``), from the cached metadata only.

    ``dnf`` is a name looked up in PATH or a path (yum when the default "dnf" is not found); ``options`` are
    dnf's own (``--config``, ``--installroot``, ``--setopt``, ``--releasever``), put before each query;
    ``cache_dir`` overrides where the metadata's age is read (see :func:`cache_dirs`). A missing dnf/yum,
    a timeout (``timeout`` for the three queries together) or a failing query give ``available=False``
    with the reason. The result's ``lists_*`` fields describe the metadata cache."""
    env = _env()
    exe, manager = _find(dnf, env)
    if exe is None:
        missing = "dnf and yum" if dnf == "dnf" else dnf
        return PendingResult(False, SkipReason.TOOL_MISSING, f"{missing} not found: not a dnf or yum system")
    subs = SUBCOMMANDS[manager]
    opts = list(options)
    info_argv = (exe, "-C", *opts, *subs["updateinfo"])
    deadline = time.monotonic() + timeout
    try:
        info = _run(info_argv, env, deadline, timeout, manager, subs["updateinfo"])
        advisories = parse_updateinfo(info.stdout)
        upg = _run((exe, "-C", *opts, *subs["upgrades"]), env, deadline, timeout, manager, subs["upgrades"],
                   empty_ok=True)
        upgrades = parse_list(upg.stdout)
        names = sorted({a.name for a in advisories if a.security} | {r.name for r in upgrades})
        installed: list[Listed] = []
        stderr = info.stderr + upg.stderr
        if names:
            inst = _run((exe, "-C", *opts, *subs["installed"], *names), env, deadline, timeout, manager,
                        subs["installed"], empty_ok=True)
            wanted = set(names)
            installed = [r for r in parse_list(inst.stdout) if r.name in wanted]
            stderr += inst.stderr
    except _Failed as failed:
        return PendingResult(False, failed.reason, failed.detail, command=info_argv)

    security, other = security_updates(advisories, installed, upgrades)
    uncached = parse_ignored_repos(stderr)
    if cache_dir is not None:
        where, updated = cache_dir, metadata_updated(cache_dir)
    else:
        stamps = [(d, metadata_updated(d)) for d in cache_dirs(manager, opts)]
        known = [(d, u) for d, u in stamps if u is not None]
        where, updated = max(known, key=lambda s: s[1]) if known else stamps[0]
    current = time.time() if now is None else now
    age = None if updated is None else round(max(0.0, current - updated) / 86400, 2)
    stale = updated is None or bool(uncached) or (age is not None and age > max_metadata_age_days)
    findings = [update_finding(u, (), manager=manager, argv=fix_argv(manager, u.name), severity=sev, advisories=ids)
                for u, sev, ids in security]
    if stale:
        findings.append(metadata_finding(manager, where, updated, age, max_metadata_age_days, uncached))
    return PendingResult(True, None, "", info_argv, tuple(u for u, _, _ in security), tuple(other), (), (), where,
                         updated, age, stale, tuple(findings), manager=manager)
