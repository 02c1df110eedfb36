"""Alpine's installed package database (``/lib/apk/db/installed``) and apk's protected paths.

The database is a text file of stanzas, one per package, blank-line separated; each line is one letter,
a colon and a value: ``P:`` name, ``V:`` version, ``A:`` arch, ``o:`` origin (the source package, what
Alpine's advisories name), then the file list: ``F:`` a directory (relative to the root), ``M:`` its
``uid:gid:mode``, and under it ``R:`` a file name, ``a:`` its ``uid:gid:mode`` and ``Z:`` its checksum
(``Q1`` + base64 of a SHA-1, ``Q2`` + base64 of a SHA-256, or an md5/sha1 in hex in old databases).
A symlink's checksum is that of its target text, not of the file it points to. apk writes ``a:`` only when a
file's owner or mode differs from its default, ``0:0:644``, so a file without one was installed 0644 by root;
a file carrying extended attributes (file capabilities) has their checksum as a fourth field,
``a:0:0:755:Q1...``. The mode is the permission bits alone (``& 07777``): what
``integrity.mode_changed`` compares the file's current mode with.

apk marks no file as configuration. Instead it *protects* paths (``/etc/apk/protected_paths.d/*.list``,
after its built-in ``+etc``, ``@etc/init.d``, ``!etc/apk``): a modified file there is kept on upgrade and
the new one written beside it as ``.apk-new``, and ``apk audit --system`` leaves protected files out. That
is the same promise dpkg's conffiles make, so hostguard treats them the same way: a file under a ``+`` or
``!`` rule is configuration and never a finding; under ``@`` only a changed symlink is allowed (init scripts
are code run as root, so a changed one *is* a finding); ``-`` takes a path back out.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache

from hostguard.data import load_toml
from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import Host, HostError, Unavailable

APK_INSTALLED = "/lib/apk/db/installed"
PROTECTED_DIR = "/etc/apk/protected_paths.d"
LIST_NAME = re.compile(r"[^/]+\.list")
OWNER_MODE = re.compile(r"(\d+):(\d+):([0-7]{1,6})(?::(.+))?")  # uid:gid:mode[:xattr checksum]
DEFAULT_FILE_MODE = 0o644  # what an R: entry without an a: line was installed with (apk's default file acl)
HEX_DIGESTS = {32: "md5", 40: "sha1"}
B64_DIGESTS = {"1": ("sha1", 20), "2": ("sha256", 32)}
PROTECT_MODES = {"+": "config", "!": "ignore", "@": "symlinks", "-": "check"}


@dataclass(frozen=True)
class ApkFile:
    """One ``R:`` entry: its path, checksum (hex, with its algorithm) and mode (None when no ``a:`` line
    was written: see :attr:`recorded_mode`)."""

    path: str
    algorithm: str
    digest: str
    mode: int | None = None

    @property
    def recorded_mode(self) -> int:
        """The permission bits apk installed the file with: its ``a:`` mode, else apk's default 0644."""
        return DEFAULT_FILE_MODE if self.mode is None else self.mode


@dataclass(frozen=True)
class ApkPackage:
    """One installed apk package (``files`` only when the file list was asked for)."""

    name: str
    version: str
    arch: str
    origin: str
    files: tuple[ApkFile, ...] = ()

    def label(self) -> str:
        """The name: what ``apk fix`` takes (Alpine installs one architecture)."""
        return self.name


def decode_digest(value: str, where: str) -> tuple[str, str]:
    """``(algorithm, hex digest)`` of a ``Z:`` value; anything else is a :class:`HostError`."""
    if value.startswith("Q") and len(value) > 2:
        known = B64_DIGESTS.get(value[1])
        if known is not None:
            try:
                raw = base64.b64decode(value[2:], validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) == known[1]:
                return known[0], raw.hex()
    elif len(value) in HEX_DIGESTS and all(c in "0123456789abcdef" for c in value):
        return HEX_DIGESTS[len(value)], value
    raise HostError(f"{where}: {value[:60]!r} is not a checksum apk writes")


def parse_installed(text: str, where: str = APK_INSTALLED, files: bool = True) -> Iterator[ApkPackage]:
    """The packages of an installed database, one stanza at a time (so a verifier holds one file list).

    A line that is not ``X:value``, a stanza without ``P:``, a file entry outside a directory or a bad
    checksum or mode is a :class:`HostError` naming the line: apk itself would refuse the database.
    """
    fields: dict[str, str] = {}
    entries: list[ApkFile] = []
    directory: str | None = None
    start = 1
    for number, line in enumerate([*text.split("\n"), ""], 1):
        at = f"{where} line {number}"
        if not line:
            if fields or entries:
                if not fields.get("P"):
                    raise HostError(f"{where} line {start}: a package stanza without a P: (name) line")
                yield ApkPackage(fields["P"], fields.get("V", ""), fields.get("A", ""),
                                 fields.get("o", fields["P"]), tuple(entries))
            fields, entries, directory, start = {}, [], None, number + 1
            continue
        if len(line) < 2 or line[1] != ":":
            raise HostError(f"{at}: not a 'X:value' line")
        key, value = line[0], line[2:]
        if key == "F":
            if value.startswith("/") or "\0" in value:
                raise HostError(f"{at}: a directory that is not relative to the root")
            directory = value.strip("/")
        elif key in ("R", "a", "Z"):
            if directory is None:
                raise HostError(f"{at}: a file entry before any F: (directory) line")
            if not files:
                continue
            if key == "R":
                if not value or "/" in value or "\0" in value:
                    raise HostError(f"{at}: {value!r} is not a file name")
                entries.append(ApkFile(f"/{directory}/{value}" if directory else f"/{value}", "", ""))
            elif not entries:
                raise HostError(f"{at}: a file attribute before any R: (file) line")
            elif key == "Z":
                algorithm, digest = decode_digest(value, at)
                last = entries[-1]
                entries[-1] = ApkFile(last.path, algorithm, digest, last.mode)
            else:
                match = OWNER_MODE.fullmatch(value)
                if match is None:
                    raise HostError(f"{at}: not 'uid:gid:mode'")
                if match.group(4) is not None:
                    decode_digest(match.group(4), at)  # the xattr checksum: validated, not kept
                last = entries[-1]
                entries[-1] = ApkFile(last.path, last.algorithm, last.digest, int(match.group(3), 8) & 0o7777)
        else:
            fields.setdefault(key, value)


@dataclass(frozen=True)
class ProtectedPaths:
    """apk's protected path rules, in the order apk reads them (the last matching rule decides)."""

    rules: tuple[tuple[str, str], ...]  # (mode, glob relative to the root)

    def mode(self, path: str) -> str:
        """"config", "ignore", "symlinks" or "check" for the absolute ``path``."""
        rel = path.lstrip("/")
        parts = rel.split("/")
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        decided = "check"
        for mode, pattern in self.rules:
            if any(fnmatchcase(c, pattern) for c in candidates):
                decided = mode
        return decided


def parse_protected(text: str) -> list[tuple[str, str]]:
    """The rules of one ``.list`` file (``+etc/``, ``-etc/ssl/certs/*.pem``...); other lines are ignored."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if len(line) > 1 and line[0] in PROTECT_MODES:
            pattern = line[1:].strip().strip("/")
            if pattern:
                rules.append((PROTECT_MODES[line[0]], pattern))
    return rules


@cache
def builtin_protected() -> tuple[tuple[str, str], ...]:
    """apk's own rules, applied before any list file (data/integrity/apk.toml)."""
    return tuple(parse_protected("\n".join(load_toml("integrity/apk.toml")["builtin_protected_paths"])))


def read_protected(host: Host) -> ProtectedPaths:
    """The built-in rules, then every ``*.list`` of the tree's protected_paths.d in name order."""
    rules = list(builtin_protected())
    for name in host.listdir(PROTECTED_DIR):
        if LIST_NAME.fullmatch(name):
            rules += parse_protected(host.read_optional(f"{PROTECTED_DIR}/{name}") or "")
    return ProtectedPaths(tuple(rules))


@dataclass(frozen=True)
class ApkDatabase:
    """The installed apk packages (without file lists: the verifier streams them) and the protected paths."""

    packages: tuple[ApkPackage, ...]
    protected: ProtectedPaths


def collect_apkdb(host: Host) -> ApkDatabase:
    """The host's apk database (``Unavailable`` when it keeps none)."""
    text = host.read_optional(APK_INSTALLED)
    if text is None:
        raise Unavailable(SkipReason.UNSUPPORTED, f"no apk database ({APK_INSTALLED})")
    return ApkDatabase(tuple(parse_installed(text, APK_INSTALLED, files=False)), read_protected(host))


APKDB: Fact[ApkDatabase] = Fact("apkdb", collect_apkdb)
