"""Accounts of a host from its own passwd, shadow and group files (never from pwd/grp of this machine).

Names and fields are kept as ``str`` decoded with ``surrogateescape``, so a non-UTF-8 name survives
exactly until findings.py writes it out.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hostguard.findings import SkipReason
from hostguard.host.base import FileMissing, Host, HostError, Unavailable


@dataclass(frozen=True)
class User:
    """One /etc/passwd line."""

    name: str
    password: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str
    line: int


@dataclass(frozen=True)
class ShadowEntry:
    """One /etc/shadow line; ageing fields are None when empty."""

    name: str
    hash: str
    last_change: int | None
    min_days: int | None
    max_days: int | None
    warn_days: int | None
    line: int


@dataclass(frozen=True)
class Group:
    """One /etc/group line."""

    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Malformed:
    """A line that could not be parsed: reported, never silently dropped."""

    path: str
    line: int
    reason: str


@dataclass(frozen=True)
class Accounts:
    """passwd and group of the host, plus the UID range that login.defs calls "normal users"."""

    users: tuple[User, ...]
    groups: tuple[Group, ...]
    uid_min: int
    malformed: tuple[Malformed, ...]

    def by_name(self) -> dict[str, User]:
        """First passwd entry per name."""
        out: dict[str, User] = {}
        for user in self.users:
            out.setdefault(user.name, user)
        return out

    def groups_of(self, user: User) -> set[str]:
        """Names of the user's primary and supplementary groups."""
        names = {g.name for g in self.groups if user.name in g.members or g.gid == user.gid}
        return names


@dataclass(frozen=True)
class Shadow:
    """/etc/shadow of the host."""

    entries: tuple[ShadowEntry, ...]
    malformed: tuple[Malformed, ...]

    def by_name(self) -> dict[str, ShadowEntry]:
        """First shadow entry per name."""
        out: dict[str, ShadowEntry] = {}
        for entry in self.entries:
            out.setdefault(entry.name, entry)
        return out


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, colon-separated fields) of a passwd-style file; blanks, comments and NIS +/- skipped."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.startswith("#") and line[0] not in "+-":
            yield number, line.split(":")


def parse_passwd(text: str, path: str = "/etc/passwd") -> tuple[list[User], list[Malformed]]:
    """Users and malformed lines of a passwd file."""
    users: list[User] = []
    bad: list[Malformed] = []
    for number, f in _records(text):
        if len(f) != 7:
            bad.append(Malformed(path, number, f"{len(f)} fields instead of 7"))
        elif not (f[2].isdigit() and f[3].isdigit()) or not f[0]:
            bad.append(Malformed(path, number, "empty name or non-numeric UID/GID"))
        else:
            users.append(User(f[0], f[1], int(f[2]), int(f[3]), f[4], f[5], f[6], number))
    return users, bad


def parse_shadow(text: str, path: str = "/etc/shadow") -> tuple[list[ShadowEntry], list[Malformed]]:
    """Entries and malformed lines of a shadow file."""
    entries: list[ShadowEntry] = []
    bad: list[Malformed] = []
    for number, f in _records(text):
        if len(f) < 2 or not f[0]:
            bad.append(Malformed(path, number, "fewer than 2 fields"))
            continue
        f += [""] * (9 - len(f))
        entries.append(ShadowEntry(f[0], f[1], _int_or_none(f[2]), _int_or_none(f[3]), _int_or_none(f[4]),
                                   _int_or_none(f[5]), number))
    return entries, bad


def parse_group(text: str, path: str = "/etc/group") -> tuple[list[Group], list[Malformed]]:
    """Groups and malformed lines of a group file."""
    groups: list[Group] = []
    bad: list[Malformed] = []
    for number, f in _records(text):
        if len(f) != 4 or not f[2].isdigit():
            bad.append(Malformed(path, number, "not name:password:GID:members"))
        else:
            groups.append(Group(f[0], int(f[2]), tuple(m for m in f[3].split(",") if m)))
    return groups, bad


def login_defs_value(host: Host, key: str) -> str | None:
    """One setting of the host's /etc/login.defs (last occurrence wins, as shadow-utils reads it)."""
    text = host.read_optional("/etc/login.defs") or ""
    value = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == key:
            value = parts[1]
    return value


def collect_accounts(host: Host, config: dict[str, Any]) -> Accounts:
    """passwd + group of the host. A missing passwd means this is not a Linux tree."""
    try:
        passwd = host.read_text("/etc/passwd")
    except FileMissing as exc:
        raise Unavailable(SkipReason.UNSUPPORTED, "no /etc/passwd in this tree") from exc
    users, bad = parse_passwd(passwd)
    groups, bad_groups = parse_group(host.read_optional("/etc/group") or "")
    uid_min_text = login_defs_value(host, "UID_MIN")
    uid_min = int(uid_min_text) if uid_min_text and uid_min_text.isdigit() else 1000
    return Accounts(tuple(users), tuple(groups), uid_min, tuple(bad + bad_groups))


def collect_shadow(host: Host, config: dict[str, Any]) -> Shadow:
    """The host's /etc/shadow; reading it needs root on a live host."""
    try:
        text = host.read_text("/etc/shadow")
    except FileMissing as exc:
        raise Unavailable(SkipReason.UNSUPPORTED, "no /etc/shadow in this tree") from exc
    except HostError as exc:
        if "Permission denied" in str(exc):
            raise Unavailable(SkipReason.NOT_ROOT, "/etc/shadow is readable by root only") from exc
        raise
    entries, bad = parse_shadow(text)
    return Shadow(tuple(entries), tuple(bad))


# -- authorized_keys ---------------------------------------------------------------------------------

KEY_TYPES = ("ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
DEFAULT_KEY_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")


@dataclass(frozen=True)
class AuthorizedKey:
    """One key line of an authorized_keys file."""

    user: str
    path: str
    line: int
    key_type: str
    options: tuple[str, ...]
    comment: str
    fingerprint_source: str  # the base64 blob's tail, enough to tell keys apart in evidence


@dataclass(frozen=True)
class AuthorizedKeys:
    """Every key file found for the host's accounts, and the AuthorizedKeysFile patterns in force."""

    keys: tuple[AuthorizedKey, ...]
    patterns: tuple[str, ...]
    files: tuple[tuple[str, str, str], ...]  # (user, path, AuthorizedKeysFile pattern) of each key file


def split_key_options(line: str) -> tuple[list[str], str]:
    """Split a key line's leading options (comma separated, quotes respected) from the rest."""
    options: list[str] = []
    current = []
    in_quotes = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == "\\" and in_quotes and i + 1 < len(line):
            current.append(ch)
            i += 1
            ch = line[i]
        elif not in_quotes and ch == ",":
            options.append("".join(current))
            current = []
            i += 1
            continue
        elif not in_quotes and ch in " \t":
            options.append("".join(current))
            return options, line[i:].strip()
        current.append(ch)
        i += 1
    return options + ["".join(current)], ""


def parse_authorized_keys(text: str, user: str, path: str) -> list[AuthorizedKey]:
    """Keys of one file. A line whose first word is not a key type carries options first."""
    keys: list[AuthorizedKey] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        options: list[str] = []
        rest = line
        if line.split()[0] not in KEY_TYPES:
            options, rest = split_key_options(line)
        words = rest.split(None, 2)
        if len(words) < 2 or words[0] not in KEY_TYPES:
            continue
        comment = words[2].strip() if len(words) > 2 else ""
        keys.append(AuthorizedKey(user, path, number, words[0], tuple(o for o in options if o), comment,
                                  words[1][-12:]))
    return keys


def expand_key_file_pattern(pattern: str, user: str, home: str, uid: int) -> str:
    """AuthorizedKeysFile tokens (%h %u %U %%); a relative pattern is relative to the home directory."""
    out = pattern.replace("%%", "\0").replace("%h", home).replace("%u", user).replace("%U", str(uid))
    out = out.replace("\0", "%")
    return out if out.startswith("/") else f"{home.rstrip('/')}/{out}"


def collect_authorized_keys(host: Host, config: dict[str, Any]) -> AuthorizedKeys:
    """Keys of every account, from the files sshd reads (AuthorizedKeysFile) plus the default ones."""
    from hostguard.host.sshd import static_setting

    accounts = collect_accounts(host, config)
    configured = static_setting(host, "authorizedkeysfile")
    patterns = tuple(shlex.split(configured)) if configured else DEFAULT_KEY_FILES
    keys: list[AuthorizedKey] = []
    files: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for user in accounts.users:
        for pattern in dict.fromkeys((*patterns, *DEFAULT_KEY_FILES)):
            if pattern.lower() == "none":
                continue
            path = expand_key_file_pattern(pattern, user.name, user.home, user.uid)
            if path in seen:
                continue
            try:
                text = host.read_text(path)
            except HostError:
                continue
            seen.add(path)
            files.append((user.name, path, pattern))
            keys.extend(parse_authorized_keys(text, user.name, path))
    return AuthorizedKeys(tuple(keys), patterns, tuple(files))
