"""Security updates waiting to be installed (apt): a simulated upgrade, kept where the candidate comes from a
security archive, one finding per package with the command that installs it.

:func:`pending_security_updates` runs ``apt-get -s -o Debug::NoLocking=1 dist-upgrade`` (a simulation: it
changes nothing and takes no lock) under the apt configuration it is given (``APT_CONFIG`` and ``-o``
options, so tests point apt at a private ``Dir::State``/``Dir::Etc``), parses the ``Inst PKG [OLD] (NEW
ORIGINS [ARCH])`` lines and keeps the upgrades whose candidate's origins include a security archive (label
``Debian-Security``, or an archive ending in ``-security``: Debian's ``bookworm-security``/``stable-security``,
Ubuntu's ``jammy-security``, Ubuntu ESM's ``jammy-infra-security``).

``dist-upgrade`` rather than ``upgrade``: ``upgrade`` keeps back an upgrade that needs a new package (a
kernel ABI bump, a library soname change), and security updates often do, so ``upgrade`` would hide
them; the simulation of ``dist-upgrade`` shows them. A candidate from a non-security archive that supersedes a
security version (a point release newer than the security upload) still counts: ``apt-cache policy`` says
whether a security archive offers a version newer than the installed one. Only upgrades of installed packages become findings
(an ``Inst`` line with an ``[OLD]`` version); packages it would newly install or remove are listed in the
result. The fix installs exactly the package (``apt-get install --only-upgrade PKG``), which brings in a
new dependency when needed and never removes anything silently.

It never runs ``apt-get update``: what it sees is as fresh as the package lists, so the result says when
the lists were last updated (the newest ``*_Packages*`` file in ``Dir::State::Lists``) and a low finding
asks for ``apt-get update`` when that is older than ``max_list_age_days``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hostguard.findings import Finding, Severity, SkipReason
from hostguard.remediation import Action, Remediation

__all__ = ["CHECK_ID", "LISTS_CHECK_ID", "PendingResult", "PendingUpdate", "is_security_origin",
           "parse_kept_back", "parse_policy", "parse_simulation", "pending_security_updates"]

CHECK_ID = "vulns.pending_update"
LISTS_CHECK_ID = "vulns.package_lists_stale"
FAMILY = "vulns"
DEFAULT_LISTS = "/var/lib/apt/lists/"
SECURITY_LABELS = ("Debian-Security",)

# Inst NAME [OLD] (NEW ORIGIN, ORIGIN [ARCH]) [broken deps]: apt's pkgSimulate::Describe
_INST = re.compile(r"Inst (?P<name>\S+)(?: \[(?P<old>[^\]\s]+)\])? \((?P<new>\S+)(?: (?P<origins>.*?))?"
                   r"(?: \[(?P<arch>[^\]\s]+)\])?\)(?: \[[^\]]*\])?\s*")
_REMV = re.compile(r"Remv (?P<name>\S+)(?: \[(?P<old>[^\]\s]+)\])?.*")


@dataclass(frozen=True)
class PendingUpdate:
    """One line of the simulation: ``name`` from ``old`` (None: newly installed) to ``new``."""

    name: str
    old: str | None
    new: str
    origins: tuple[str, ...]
    arch: str
    superseded: str | None = None      # a security version the candidate (from another archive) supersedes
    superseded_origin: str = ""
    kept_back: bool = False            # the simulation keeps it back (held, or its dependencies conflict)

    def security_origins(self, labels: Iterable[str] = SECURITY_LABELS) -> tuple[str, ...]:
        """The origins that are security archives."""
        wanted = tuple(labels)
        return tuple(o for o in self.origins if is_security_origin(o, wanted))


@dataclass(frozen=True)
class PendingResult:
    """What the simulation found. ``available`` False: apt could not be asked (``reason``, ``detail``), and
    ``updates`` says nothing."""

    available: bool
    reason: SkipReason | None = None
    detail: str = ""
    command: tuple[str, ...] = ()
    updates: tuple[PendingUpdate, ...] = ()          # security upgrades of installed packages
    other_updates: tuple[PendingUpdate, ...] = ()    # upgrades from other archives only
    new_packages: tuple[PendingUpdate, ...] = ()     # what the upgrade would newly install
    removals: tuple[str, ...] = ()                   # what it would remove
    lists_dir: str = DEFAULT_LISTS
    lists_updated: float | None = None               # newest *_Packages* mtime, None: no lists at all
    lists_age_days: float | None = None
    lists_stale: bool = False
    findings: tuple[Finding, ...] = field(default=())
    manager: str = "apt-get"                         # whose answer this is (apt-get, dnf, yum, apk)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        def upd(u: PendingUpdate) -> dict[str, Any]:
            return {"name": u.name, "old": u.old, "new": u.new, "origins": list(u.origins), "arch": u.arch,
                    "security_version": u.superseded, "security_version_origin": u.superseded_origin or None,
                    "kept_back": u.kept_back}
        return {"available": self.available, "reason": str(self.reason) if self.reason else None,
                "detail": self.detail, "command": list(self.command),
                "updates": [upd(u) for u in self.updates], "other_updates": [upd(u) for u in self.other_updates],
                "new_packages": [upd(u) for u in self.new_packages], "removals": list(self.removals),
                "lists_dir": self.lists_dir, "lists_updated": iso_time(self.lists_updated),
                "lists_age_days": self.lists_age_days, "lists_stale": self.lists_stale,
                "findings": [f.to_dict() for f in self.findings]}


def is_security_origin(origin: str, labels: Iterable[str] = SECURITY_LABELS) -> bool:
    """Whether one origin of apt's simulation (``LABEL:VERSION/ARCHIVE``, ``LABEL:ARCHIVE``, ``ARCHIVE``,
    e.g. ``Debian-Security:12/stable-security``, ``Ubuntu:22.04/jammy-security``) is a security archive."""
    label, colon, rest = origin.rpartition(":")
    if not colon:
        label = ""
    archive = rest.rpartition("/")[2].strip().lower()
    return label.strip().lower() in {lab.lower() for lab in labels} or archive.endswith("-security")


def parse_simulation(text: str) -> tuple[list[PendingUpdate], list[str]]:
    """The ``Inst`` lines (upgrades and new installs) and the names of ``Remv`` lines of ``apt-get -s``'s
    output; any other line is ignored, never an error."""
    updates: list[PendingUpdate] = []
    removals: list[str] = []
    for line in text.splitlines():
        m = _INST.fullmatch(line)
        if m:
            origins = tuple(o.strip() for o in (m["origins"] or "").split(", ") if o.strip())
            updates.append(PendingUpdate(m["name"], m["old"], m["new"], origins, m["arch"] or ""))
            continue
        r = _REMV.fullmatch(line)
        if r:
            removals.append(r["name"])
    return updates, removals


def parse_kept_back(text: str) -> list[str]:
    """The names apt lists under "The following packages have been kept back:" (held packages, or upgrades
    whose dependencies cannot be met)."""
    out: list[str] = []
    reading = False
    for line in text.splitlines():
        if line.startswith("The following packages have been kept back"):
            reading = True
        elif reading and line.startswith(" "):
            out += line.split()
        else:
            reading = False
    return out


def upgrade_argv(names: Sequence[str]) -> tuple[str, ...]:
    """The command that upgrades exactly ``names`` (the shape of ``vulns.findings.upgrade_argv``)."""
    return ("apt-get", "install", "--only-upgrade", *names)


def iso_time(stamp: float | None) -> str | None:
    """A file time as ISO 8601 in UTC (None stays None), as the findings' evidence gives it."""
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def _argv_options(options: Mapping[str, str] | None) -> list[str]:
    out: list[str] = []
    for key, value in (options or {}).items():
        out += ["-o", f"{key}={value}"]
    return out


def _env(apt_config: str | os.PathLike[str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env["LC_ALL"] = "C"
    env.pop("APT_CONFIG", None)
    if apt_config is not None:
        env["APT_CONFIG"] = os.fspath(apt_config)
    return env


def _lists_dir(apt_get: str, opts: list[str], env: Mapping[str, str], timeout: float) -> str:
    """``Dir::State::Lists`` as apt resolves it under this configuration (``apt-config`` beside apt-get)."""
    beside = Path(apt_get).with_name("apt-config")
    apt_config = str(beside) if beside.is_file() else shutil.which("apt-config", path=env.get("PATH"))
    if apt_config is None:
        return DEFAULT_LISTS
    try:
        out = subprocess.run([apt_config, *opts, "shell", "D", "Dir::State::Lists/d"], env=env,
                             capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_LISTS
    m = re.search(r"^D=(.*)$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        return DEFAULT_LISTS
    parts = shlex.split(m.group(1))
    return parts[0] if parts else DEFAULT_LISTS


def lists_updated(lists_dir: str | os.PathLike[str]) -> float | None:
    """The newest mtime of the ``*_Packages*`` lists in ``lists_dir`` (None: there are none).

    apt gives a downloaded list the archive's Last-Modified time (and a ``file:`` source's list is a symlink
    to the archive's file), so this is when the newest index apt holds was published: never later than the
    last ``apt-get update``, so the age is never understated."""
    newest: float | None = None
    try:
        entries = list(os.scandir(lists_dir))
    except OSError:
        return None
    for entry in entries:
        if "_Packages" in entry.name and not entry.name.endswith(".diff_Index"):
            try:
                mtime = entry.stat().st_mtime  # a file: source's list is a symlink to the archive's file
            except OSError:
                continue
            newest = mtime if newest is None else max(newest, mtime)
    return newest


def _release_is_security(fields: Mapping[str, str], labels: Iterable[str]) -> bool:
    return (fields.get("l", "").lower() in {lab.lower() for lab in labels}
            or fields.get("a", "").lower().endswith("-security") or fields.get("n", "").lower().endswith("-security"))


def parse_policy(files: str, packages: str,
                 labels: Iterable[str] = SECURITY_LABELS) -> dict[str, tuple[str, str, str]]:
    """From ``apt-cache policy`` (``files``: without arguments, ``packages``: with package names), the
    packages that a security archive offers a version of newer than the installed one: name -> (the newest
    such version, the archive as ``LABEL:VERSION/ARCHIVE``, the installed version). Unreadable lines are
    ignored."""
    wanted = tuple(labels)
    security: dict[str, str] = {}                    # "URI DIST ARCH Packages" of a security index -> origin
    source: str | None = None
    for line in files.splitlines():
        m = re.fullmatch(r" *-?\d+ (\S.*\S)", line)
        if m and not line.strip().startswith("release"):
            source = m.group(1)
            continue
        r = re.fullmatch(r" +release (.*)", line)
        if r and source is not None:
            fields: dict[str, str] = {}
            for kv in r.group(1).split(","):
                key, _, value = kv.partition("=")
                fields[key] = value
            if _release_is_security(fields, wanted):
                label, version = fields.get("l", ""), fields.get("v", "")
                security[source] = (f"{label}:" if label else "") + (f"{version}/" if version else "") + \
                    (fields.get("a") or fields.get("n") or "")
            source = None
    out: dict[str, tuple[str, str, str]] = {}
    name: str | None = None
    installed = ""
    newer: str | None = None                         # the version line being read, while above the installed one
    for line in packages.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            name, newer, installed = line[:-1], None, ""
            continue
        if name is None:
            continue
        inst = re.fullmatch(r"  Installed: (\S+)", line)
        if inst:
            installed = inst.group(1)
            continue
        v = re.fullmatch(r" (\*\*\*| {3}) (\S+) -?\d+", line)
        if v:
            if v.group(1) == "***":
                name = None                          # older versions follow: stop looking at this package
            else:
                newer = v.group(2)
            continue
        src = re.fullmatch(r" {8}-?\d+ (\S.*\S)", line)
        if src and newer is not None and src.group(1) in security and name not in out:
            out[name] = (newer, security[src.group(1)], installed)
    return out


def _superseded(exe: str, names: Sequence[str], opts: list[str], env: Mapping[str, str], timeout: float,
                labels: Iterable[str]) -> dict[str, tuple[str, str, str]]:
    """Of ``names`` (upgrades whose candidate comes from no security archive), those with a security version
    newer than the installed one, through ``apt-cache policy`` beside apt-get (empty when it cannot be asked)."""
    apt_cache = Path(exe).with_name("apt-cache")
    if not names or not apt_cache.is_file():
        return {}
    try:
        runs = [subprocess.run([str(apt_cache), *opts, "policy", *args], env=env, capture_output=True, text=True,
                               errors="replace", timeout=timeout, check=False, stdin=subprocess.DEVNULL)
                for args in ((), tuple(names))]
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if any(r.returncode != 0 for r in runs):
        return {}
    return parse_policy(runs[0].stdout, runs[1].stdout, labels)


def update_finding(update: PendingUpdate, labels: Iterable[str] = SECURITY_LABELS, *, manager: str = "apt-get",
                   argv: Sequence[str] | None = None, severity: Severity = Severity.MEDIUM,
                   advisories: Sequence[str] = ()) -> Finding:
    """The finding for one pending security upgrade of ``manager`` (apt-get, dnf, yum, apk): ``argv`` is the
    command that installs exactly it (default apt's), ``advisories`` the ids the package manager names
    (dnf's updateinfo), ``severity`` theirs where it gives one."""
    argv = tuple(argv) if argv is not None else upgrade_argv([update.name])
    security = update.security_origins(labels) or tuple(o for o in update.superseded_origin.split(", ") if o)
    where = security[0] if security else ", ".join(advisories[:3]) or "security update"
    title = f"Security update waiting for {update.name}: {update.old} → {update.new} ({where})"
    evidence: dict[str, Any] = {"installed": update.old, "available": update.new, "origins": list(update.origins),
                                "security_origins": list(security), "arch": update.arch, "manager": manager}
    if advisories:
        evidence["advisories"] = list(advisories)
    if update.superseded:
        evidence["security_version"] = update.superseded
    why = ""
    if update.kept_back:
        evidence["kept_back"] = True
        why = (" apt keeps it back: if it is held (`apt-mark showhold`) and the hold is no longer wanted, "
               f"`apt-mark unhold {update.name}` first; otherwise resolve the dependencies it needs.")
    remediation = Remediation(
        f"Upgrade {update.name} to {update.new}: run `{shlex.join(argv)}`.{why}",
        steps=(Action("upgrade", (("manager", manager), ("command", shlex.join(argv)),
                                  ("packages", update.name), ("to", update.new))),))
    return Finding(id=CHECK_ID, category=FAMILY, severity=severity, title=title,
                   target={"kind": "package", "name": update.name}, evidence=evidence, remediation=remediation)


def refresh_step(manager: str, argv: Sequence[str]) -> Action:
    """The step that refreshes ``manager``'s package lists (``hostguard fix`` runs it as the package manager's
    own action: not reversible, and the updates it reveals are news, not a failed fix)."""
    return Action("refresh", (("manager", manager), ("command", shlex.join(argv))))


def stale_lists_finding(title: str, path: str, evidence: Mapping[str, Any], summary: str, manager: str,
                        argv: Sequence[str]) -> Finding:
    """The low ``vulns.package_lists_stale`` finding every package manager gives in its own words: about
    ``path`` (its lists, cache or indexes), fixed by its refresh command ``argv``."""
    return Finding(id=LISTS_CHECK_ID, category=FAMILY, severity=Severity.LOW, title=title,
                   target={"kind": "path", "path": path}, evidence=dict(evidence),
                   remediation=Remediation(summary, steps=(refresh_step(manager, argv),)))


def lists_finding(lists_dir: str, updated: float | None, age_days: float | None, max_age_days: float) -> Finding:
    """The low finding: apt's package lists are older than ``max_age_days`` (or missing)."""
    if updated is None:
        title = f"apt has no package lists in {lists_dir}: pending updates cannot be known"
    else:
        title = f"apt's package lists are {age_days:.0f} days old: pending updates may be missed"
    return stale_lists_finding(
        title, lists_dir, {"lists_updated": iso_time(updated), "age_days": age_days, "max_age_days": max_age_days},
        "Refresh the package lists: run `apt-get update` (or enable a daily timer such as apt-daily.timer or "
        "unattended-upgrades).", "apt-get", ("apt-get", "update"))


def pending_security_updates(*, apt_get: str = "apt-get", apt_config: str | os.PathLike[str] | None = None,
                             options: Mapping[str, str] | None = None, lists_dir: str | None = None,
                             max_list_age_days: float = 7.0, security_labels: Iterable[str] = SECURITY_LABELS,
                             now: float | None = None, timeout: float = 300.0) -> PendingResult:
    """Simulate ``apt-get dist-upgrade`` under the given configuration and report the pending security
    upgrades (one ``vulns.pending_update`` finding each) and how old the package lists are (a
    ``vulns.package_lists_stale`` finding past ``max_list_age_days``).

    ``apt_get`` is a name looked up in PATH or a path; ``apt_config`` becomes ``APT_CONFIG``; ``options``
    are passed as ``-o KEY=VALUE``; ``lists_dir`` overrides ``Dir::State::Lists`` as apt-config resolves
    it. A missing apt-get, a timeout or a failing simulation give ``available=False`` with the reason."""
    labels = tuple(security_labels)
    env = _env(apt_config)
    exe = apt_get if os.sep in apt_get else shutil.which(apt_get, path=env.get("PATH"))
    if exe is None or not os.access(exe, os.X_OK):
        return PendingResult(False, SkipReason.TOOL_MISSING, f"{apt_get} not found: not an apt system")
    opts = _argv_options(options)
    argv = (exe, "-s", "-o", "Debug::NoLocking=1", *opts, "dist-upgrade")
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, errors="replace",
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return PendingResult(False, SkipReason.BUDGET, f"apt-get -s dist-upgrade took over {timeout:g} s",
                             command=argv)
    except OSError as exc:
        return PendingResult(False, SkipReason.TOOL_MISSING, f"{exe}: {exc.strerror or exc}", command=argv)
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("E:")] or proc.stderr.splitlines()[-1:]
        return PendingResult(False, SkipReason.ERROR,
                             f"apt-get -s dist-upgrade failed (exit {proc.returncode}): " + " ".join(errors),
                             command=argv)
    parsed, removals = parse_simulation(proc.stdout)
    upgrades = [u for u in parsed if u.old is not None]
    kept = [n for n in parse_kept_back(proc.stdout) if n not in {u.name for u in upgrades}]
    other_names = [u.name for u in upgrades if not u.security_origins(labels)]
    superseded = _superseded(exe, other_names + kept, opts, env, timeout, labels)
    upgrades = [replace(u, superseded=superseded[u.name][0], superseded_origin=superseded[u.name][1])
                if u.name in superseded else u for u in upgrades]
    upgrades += [PendingUpdate(n, superseded[n][2] or None, superseded[n][0], (superseded[n][1],), "",
                               kept_back=True) for n in kept if n in superseded]
    upgrades.sort(key=lambda u: u.name)
    security = tuple(u for u in upgrades if u.security_origins(labels) or u.superseded)
    other = tuple(u for u in upgrades if not (u.security_origins(labels) or u.superseded))
    new = tuple(u for u in parsed if u.old is None)

    lists = lists_dir if lists_dir is not None else _lists_dir(exe, opts, env, timeout)
    updated = lists_updated(lists)
    current = time.time() if now is None else now
    age = None if updated is None else round(max(0.0, current - updated) / 86400, 2)
    stale = updated is None or (age is not None and age > max_list_age_days)
    findings = [update_finding(u, labels) for u in security]
    if stale:
        findings.append(lists_finding(lists, updated, age, max_list_age_days))
    return PendingResult(True, None, "", argv, security, other, new, tuple(removals), lists, updated, age, stale,
                         tuple(findings))
