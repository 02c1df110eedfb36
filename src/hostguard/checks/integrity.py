"""Trojaned system binaries: packaged files compared with the package manager's own digests.

A signature list of "known rootkit strings" flags /bin/diff after every update; the package manager's
digests do not: a file differs from what its package installed, or it does not. dpkg's md5sums, the rpm
database's file digests (sha256 on current distributions, md5 on old ones) and apk's SHA-1 checksums are
read by hostguard itself, also under ``--root``. Configuration (dpkg conffiles, rpm ``%config``, files under
apk's protected paths) is meant to be edited and is never a finding; files dpkg was told not to install
(``path-exclude``), rpm ``%ghost`` files and missing files are not either (removing docs is common and runs
nothing). What changed decides the severity: code that runs
on its own or inside other programs is high, anything else low with its package named. /etc/ld.so.preload
is the persistence family's (``persistence.ld_preload``): one problem, one finding.

Content is not the only thing a package installs: ``chmod u+s /usr/bin/find`` keeps every digest and gives
any user root. The rpm database and apk's record each file's mode, so a packaged file that gained a setuid,
setgid or world-write bit is found too (``integrity.mode_changed``); dpkg records no modes, so on a dpkg host
that check says it could not look.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from typing import Any

from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, SkipReason
from hostguard.host.packages import PACKAGE_VERIFY, STAT_OVERRIDES, ChangedFile, ModeChange, StatOverride, Verification
from hostguard.remediation import Command, Remediation, Step

FAMILY = Family("integrity", __doc__ or "")
SHOWN = 20  # paths listed in one grouped finding's evidence


@dataclass(frozen=True)
class Classes:
    """data/integrity/classes.toml: which changed files are high, and the trees language managers update."""

    path_dirs: tuple[str, ...]
    libraries: tuple[str, ...]
    pam_modules: tuple[str, ...]
    language_trees: tuple[tuple[str, str], ...]  # (prefix, manager)


@cache
def classes() -> Classes:
    """The classification data, read once."""
    data = load_toml("integrity/classes.toml")
    return Classes(tuple(data["path_dirs"]), tuple(data["libraries"]), tuple(data["pam_modules"]),
                   tuple((t["prefix"], t["manager"]) for t in data["language_trees"]))


def why_high(item: ChangedFile) -> str | None:
    """What makes a changed file dangerous (None: it is data, documentation or an unused script)."""
    known = classes()
    name = item.path.rpartition("/")[2]
    if item.setid:
        return "a setuid/setgid file"
    if any(fnmatchcase(item.path, p) for p in known.pam_modules):
        return "a PAM module"
    if any(fnmatchcase(name, p) for p in known.libraries) and item.elf:
        return "a shared library"
    if item.elf:
        return "an ELF executable"
    if item.path.rpartition("/")[0] in known.path_dirs and (item.script or item.mode & 0o111):
        return "a script in a PATH directory"
    return None


def language_tree(item: ChangedFile) -> tuple[str, str] | None:
    """``(tree, manager)`` when a language package manager probably rewrote the file in place."""
    if item.elf or item.setid:
        return None
    for prefix, manager in classes().language_trees:
        if item.path.startswith(prefix):
            top = item.path[len(prefix):].partition("/")[0]
            return prefix + top, manager
    return None


@cache
def databases() -> dict[str, dict[str, Any]]:
    """data/integrity/databases.toml: how each database's digest is named, and each front end's reinstall."""
    return load_toml("integrity/databases.toml")


def digest_name(item: ChangedFile) -> str:
    """Which digest was compared: "dpkg md5sums", "rpm sha256", "apk sha1"."""
    return str(databases()["digests"][item.database]).format(algorithm=item.algorithm)


def _reinstall(verification: Verification, package: str, what: str) -> Remediation:
    argv = (*databases()["reinstall"][verification.front_end], package)
    return Remediation(f"Keep a copy of {what} for investigation (it may be a trojan), then reinstall {package}, "
                       f"which writes the packaged files back; if it was not you, treat the host as compromised.",
                       steps=(Command(tuple(argv)),))


@check(id="integrity.changed_file", severity="high",
       summary="A packaged file differs from the digest its package manager recorded",
       needs=(PACKAGE_VERIFY,), tags=("T1554", "T1036.005"),
       references=("https://manpages.debian.org/bookworm/dpkg/dpkg.1.en.html#V,",
                   "https://rpm-software-management.github.io/rpm/man/rpm.8.html",
                   "https://wiki.alpinelinux.org/wiki/Alpine_Package_Keeper"))
def changed_file(ctx: Context) -> Iterator[Finding]:
    """Every file of every installed package is hashed and compared with the digest the host's package
    manager recorded: dpkg's ``md5sums`` (``<pkg>:<arch>.md5sums`` for Multi-Arch packages), the rpm
    database's file digests (its sqlite or Berkeley DB form, sha256 or md5 as the package says) or apk's
    ``Z:`` checksums, at the place the file really is: through the tree's own merged-/usr links and at its
    diverted place for ``dpkg-divert``. Configuration (conffiles, ``%config``, apk protected paths),
    ``path-exclude``d, ``%ghost`` and missing files are not findings. A changed ELF, shared library, PAM module,
    setuid file or script in a PATH directory is high; any other changed file low with its package named;
    files a language package manager rewrites inside a distro tree (npm over nodejs's npm) are one low finding
    per tree that says so. The fix reinstalls the package with the host's own tool (apt-get, dnf or yum,
    apk fix)."""
    verification = ctx.fact(PACKAGE_VERIFY)
    for what, why in verification.problems:
        ctx.skip(SkipReason.ERROR, why, what)
    trees: dict[tuple[str, str, str], list[ChangedFile]] = defaultdict(list)
    seen: set[str] = set()
    for item in verification.changed:
        if item.path in seen:
            continue  # Multi-Arch: same packages of two architectures list the same file
        seen.add(item.path)
        high = why_high(item)
        tree = None if high else language_tree(item)
        if tree is not None:
            trees[(tree[0], tree[1], item.package)].append(item)
            continue
        kind = high or "a packaged file"
        evidence = {"package": item.package, "listed_as": item.listed, "digest": digest_name(item),
                    "expected": item.expected, "actual": item.actual, "mode": f"{item.mode & 0o7777:04o}",
                    "why": kind}
        if item.recorded_mode is not None:
            evidence["recorded_mode"] = f"{item.recorded_mode:04o}"
        yield ctx.finding(f"{item.path} ({kind} of {item.package}) differs from its {digest_name(item)}",
                          {"kind": "path", "path": item.path}, evidence=evidence,
                          remediation=_reinstall(verification, item.package, item.path),
                          severity="high" if high else "low")
    for (tree_path, manager, package), items in sorted(trees.items()):
        files = f"{len(items)} files of {package} under {tree_path} differ" if len(items) != 1 else \
            f"1 file of {package} under {tree_path} differs"
        yield ctx.finding(f"{files}: probably updated in place by {manager}, not by the package",
                          {"kind": "path", "path": tree_path}, severity="low",
                          evidence={"package": package, "manager": manager, "files": len(items),
                                    "digest": digest_name(items[0]), "paths": [i.path for i in items[:SHOWN]]},
                          remediation=_reinstall(verification, package, tree_path))



@dataclass(frozen=True)
class ModeBit:
    """One entry of data/integrity/modes.toml: a bit a packaged file may not gain, and how to drop it."""

    name: str
    bit: int
    drop: str
    restore: str
    severity: str
    data_severity: str


@cache
def mode_bits() -> tuple[ModeBit, ...]:
    """The watched bits, in the file's order (setuid first: the fix's steps follow it)."""
    return tuple(ModeBit(b["name"], int(b["bit"]), b["drop"], b["restore"], b["severity"],
                         b.get("data_severity", b["severity"])) for b in load_toml("integrity/modes.toml")["bits"])


SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")


def _declared(item: ModeChange, override: StatOverride | None) -> int:
    """The gained bits the administrator did not declare: a statoverride entry's mode is their decision."""
    gained = item.gained
    return gained & ~override.mode if override is not None else gained


def _mode_fix(verification: Verification, item: ModeChange, bits: list[ModeBit]) -> Remediation:
    steps: list[Step] = [Command(("chmod", b.drop, item.path), live_only=True, undo=("chmod", b.restore, item.path),
                                 reversible=True) for b in bits]
    reinstall = " ".join((*databases()["reinstall"][verification.front_end], item.package))
    return Remediation(f"Find out who changed the mode of {item.path} and why; if nobody you trust did, drop the "
                       f"bit{'s' if len(bits) > 1 else ''} again (or `{reinstall}`, which writes the package's mode "
                       "back) and look for what else was changed: whoever could chmod it was root.", tuple(steps),
                       manual="Under --root these commands would act on this machine's own path: run them on the "
                              "file inside the mounted tree instead.")


@check(id="integrity.mode_changed", severity="high",
       summary="A packaged file gained a setuid, setgid or world-write bit its package manager did not record",
       needs=(PACKAGE_VERIFY, STAT_OVERRIDES), tags=("T1548.001", "T1222.002"),
       references=("https://rpm-software-management.github.io/rpm/man/rpm.8.html",
                   "https://wiki.alpinelinux.org/wiki/Alpine_Package_Keeper",
                   "https://manpages.debian.org/bookworm/dpkg/dpkg-statoverride.1.en.html",
                   "https://attack.mitre.org/techniques/T1548/001/"))
def mode_changed(ctx: Context) -> Iterator[Finding]:
    """``chmod u+s /usr/bin/find`` (or python3, vim, bash) is a way back to root that every digest check
    misses, since the content is still the package's, and that ``persistence.suid_unpackaged`` leaves alone,
    since a package owns the file. The rpm database (FILEMODES) and apk's installed database (``a:`` lines,
    apk's default 0644 otherwise) record the mode each file was installed with: a packaged regular file that
    now holds a setuid, setgid or world-write bit its recorded mode does not is a finding, configuration
    (``%config``, apk protected paths) included, since nobody edits a configuration file by making it setuid.
    Bits taken away (0755 to 0750) are not: they grant nothing. An entry of ``dpkg-statoverride`` granting
    the bit is the administrator's declared mode and stays quiet, on any database. A file whose content
    differs too is left to ``integrity.changed_file`` (one problem, one finding: its reinstall restores both).
    dpkg records no modes (only the .deb does): on a dpkg host this check is skipped as unsupported rather
    than passing for clean. The fix drops each gained bit with chmod (undone by adding it back)."""
    verification = ctx.fact(PACKAGE_VERIFY)
    if not verification.records_modes:
        ctx.skip(SkipReason.UNSUPPORTED, f"the {verification.database} database records no file modes (only the "
                                         "package files do): a packaged file made setuid cannot be told apart here")
        return
    for what, why in verification.problems:
        ctx.skip(SkipReason.ERROR, why, what)
    overrides = ctx.fact(STAT_OVERRIDES)
    seen: set[str] = set()
    for item in verification.mode_changes:
        if item.content == "changed" or item.path in seen:
            continue  # changed content: integrity.changed_file reports the file; seen: one file, two packages
        seen.add(item.path)
        override = overrides.get(item.path, item.listed)
        gained = _declared(item, override)
        bits = [b for b in mode_bits() if gained & b.bit]
        if not bits:
            continue
        executable = bool(item.actual_mode & 0o111)
        severity = max((b.severity if executable else b.data_severity for b in bits), key=SEVERITY_ORDER.index)
        names = [b.name for b in bits]
        evidence: dict[str, object] = {
            "package": item.package, "listed_as": item.listed, "database": item.database,
            "recorded_mode": f"{item.expected_mode:04o}", "mode": f"{item.actual_mode:04o}", "gained": names,
            "uid": item.uid, "gid": item.gid,
            "content": "matches the package" if item.content == "same" else "not compared (configuration)"}
        if override is not None:
            evidence["statoverride"] = f"{override.owner} {override.group} {override.mode:04o} {override.path}"
        yield ctx.finding(f"{item.path} of {item.package} is {' and '.join(names)} ({item.actual_mode:04o}); "
                          f"its package installed it {item.expected_mode:04o}",
                          {"kind": "path", "path": item.path}, evidence=evidence,
                          remediation=_mode_fix(verification, item, bits), severity=severity)
