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
from hostguard.host.packages import PACKAGE_VERIFY, ChangedFile, Verification
from hostguard.remediation import Command, Remediation

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
        yield ctx.finding(f"{item.path} ({kind} of {item.package}) differs from its {digest_name(item)}",
                          {"kind": "path", "path": item.path}, evidence=evidence,
                          remediation=_reinstall(verification, item.package, item.path),
                          severity="high" if high else "low")
    for (tree_path, manager, package), items in sorted(trees.items()):
        yield ctx.finding(f"{len(items)} files of {package} under {tree_path} differ: probably updated in place by "
                          f"{manager}, not by the package",
                          {"kind": "path", "path": tree_path}, severity="low",
                          evidence={"package": package, "manager": manager, "files": len(items),
                                    "digest": digest_name(items[0]), "paths": [i.path for i in items[:SHOWN]]},
                          remediation=_reinstall(verification, package, tree_path))

