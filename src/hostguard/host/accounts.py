"""Accounts of a host from its own passwd, shadow and group files (never from pwd/grp of this machine).

Names and fields are kept as ``str`` decoded with ``surrogateescape``, so a non-UTF-8 name survives
exactly until findings.py writes it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import FileMissing, Host, HostError, Unavailable
from hostguard.host.pam import LOGIN_DEFS, LoginDefs


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
    raw: str = field(default="", compare=False)  # the line as written (what a fix edits)


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
    raw: str = field(default="", compare=False)


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
    raw: str = field(default="", compare=False)


@dataclass(frozen=True)
class Accounts:
    """passwd and group of the host, plus the UID range that login.defs calls "normal users"."""

    users: tuple[User, ...]
    groups: tuple[Group, ...]
    uid_min: int
    malformed: tuple[Malformed, ...]
    uid_max: int = 60000

    def free_uid(self, taken: frozenset[int] = frozenset()) -> int | None:
        """The lowest UID from UID_MIN to UID_MAX that no passwd entry (nor ``taken``) uses."""
        used = {u.uid for u in self.users} | taken
        return next((uid for uid in range(self.uid_min, self.uid_max + 1) if uid not in used), None)

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


def _records(text: str) -> Iterator[tuple[int, list[str], str]]:
    """(line number, colon-separated fields, the line) of a passwd-style file; blanks, comments and NIS +/-
    skipped."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.startswith("#") and line[0] not in "+-":
            yield number, line.split(":"), line


def parse_passwd(text: str, path: str = "/etc/passwd") -> tuple[list[User], list[Malformed]]:
    """Users and malformed lines of a passwd file."""
    users: list[User] = []
    bad: list[Malformed] = []
    for number, f, raw in _records(text):
        if len(f) != 7:
            bad.append(Malformed(path, number, f"{len(f)} fields instead of 7", raw))
        elif not (f[2].isdigit() and f[3].isdigit()) or not f[0]:
            bad.append(Malformed(path, number, "empty name or non-numeric UID/GID", raw))
        else:
            users.append(User(f[0], f[1], int(f[2]), int(f[3]), f[4], f[5], f[6], number, raw))
    return users, bad


def parse_shadow(text: str, path: str = "/etc/shadow") -> tuple[list[ShadowEntry], list[Malformed]]:
    """Entries and malformed lines of a shadow file."""
    entries: list[ShadowEntry] = []
    bad: list[Malformed] = []
    for number, f, raw in _records(text):
        if len(f) < 2 or not f[0]:
            bad.append(Malformed(path, number, "fewer than 2 fields", raw))
            continue
        f += [""] * (9 - len(f))
        entries.append(ShadowEntry(f[0], f[1], _int_or_none(f[2]), _int_or_none(f[3]), _int_or_none(f[4]),
                                   _int_or_none(f[5]), number, raw))
    return entries, bad


def parse_group(text: str, path: str = "/etc/group") -> tuple[list[Group], list[Malformed]]:
    """Groups and malformed lines of a group file."""
    groups: list[Group] = []
    bad: list[Malformed] = []
    for number, f, raw in _records(text):
        if len(f) != 4 or not f[2].isdigit():
            bad.append(Malformed(path, number, "not name:password:GID:members", raw))
        else:
            groups.append(Group(f[0], int(f[2]), tuple(m for m in f[3].split(",") if m)))
    return groups, bad


def collect_accounts(host: Host, login_defs: LoginDefs | None) -> Accounts:
    """passwd + group of the host (UID_MIN from login.defs). A missing passwd means this is not a Linux tree."""
    try:
        passwd = host.read_text("/etc/passwd")
    except FileMissing as exc:
        raise Unavailable(SkipReason.UNSUPPORTED, "no /etc/passwd in this tree") from exc
    users, bad = parse_passwd(passwd)
    groups, bad_groups = parse_group(host.read_optional("/etc/group") or "")
    uid_min_setting = login_defs.get("UID_MIN") if login_defs else None
    uid_min = int(uid_min_setting.value) if uid_min_setting and uid_min_setting.value.isdigit() else 1000
    uid_max_setting = login_defs.get("UID_MAX") if login_defs else None
    uid_max = int(uid_max_setting.value) if uid_max_setting and uid_max_setting.value.isdigit() else 60000
    return Accounts(tuple(users), tuple(groups), uid_min, tuple(bad + bad_groups), uid_max)


ACCOUNTS: Fact[Accounts] = Fact("accounts", collect_accounts, inputs=(LOGIN_DEFS.optional,))


def collect_shadow(host: Host) -> Shadow:
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


SHADOW: Fact[Shadow] = Fact("shadow", collect_shadow)


def collect_shadow_if_readable(host: Host, shadow: Shadow | None) -> Shadow | None:
    """/etc/shadow when it can be read here, None otherwise (a check that only refines its advice with it
    still runs as a normal user)."""
    return shadow


SHADOW_IF_READABLE: Fact[Shadow | None] = Fact("shadow_if_readable", collect_shadow_if_readable,
                                               inputs=(SHADOW.optional,))
