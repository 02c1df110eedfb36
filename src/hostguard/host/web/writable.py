"""What the web or PHP user can write under a document root: the file-system half of "web accounts
read-only on the file system" (issue 10).

A web shell gets in by writing a file the server then runs, so what matters is what the *serving account*
could change, not what the owner intended: files it owns (a ``chmod 444`` does not help, the owner can
chmod it back), files writable through its primary or supplementary groups or by everyone, POSIX ACL
entries (masked as the kernel masks them), and directories it can write, where it can create or replace
entries, up to the parents of the document root itself (a writable ``/var/www`` lets it swap the whole
tree).

This module knows nothing of web servers: it takes an :class:`Identity` (uid and gids as the *host's*
passwd/group give them, never this machine's ``pwd``/``grp``) and a directory, and answers per root with
counts and a few samples per reason instead of 100,000 findings. :func:`can_write` is the kernel's own
access check for ``MAY_WRITE`` (``fs/namei.c`` ``acl_permission_check`` and ``fs/posix_acl.c``
``posix_acl_permission``), tested against the kernel itself. Which writable directories would *execute*
a dropped ``.php`` file is the server's policy (:meth:`AccessPolicy.runs_php`): the report returns them,
the check asks.

Speed: one ``scandir`` per directory and one ``lstat`` per entry; an ACL can only change the answer when
the mode has a group or other write bit (with an extended ACL the group bits *are* the mask, so without
them no named entry can grant write), so the ``system.posix_acl_access`` attribute is read only then; the
``chattr`` flags (``ioctl(FS_IOC_GETFLAGS)``) only for entries found writable. A clean tree (0644/0755
owned by someone else) costs no extended-attribute read at all.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat as stat_mod
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from time import monotonic

from hostguard.host.accounts import Accounts
from hostguard.host.base import FileStat, Host, HostError

XATTR_ACL_ACCESS = "system.posix_acl_access"
XATTR_ACL_DEFAULT = "system.posix_acl_default"

# <linux/posix_acl_xattr.h>: a little-endian u32 version (2), then entries of u16 tag, u16 perm, u32 id.
ACL_VERSION = 2
ACL_USER_OBJ = 0x01
ACL_USER = 0x02
ACL_GROUP_OBJ = 0x04
ACL_GROUP = 0x08
ACL_MASK = 0x10
ACL_OTHER = 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
_TAG_NAMES = {ACL_USER_OBJ: "user", ACL_USER: "user", ACL_GROUP_OBJ: "group", ACL_GROUP: "group",
              ACL_MASK: "mask", ACL_OTHER: "other"}
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")

MAY_EXEC = 1
MAY_WRITE = 2
MAY_READ = 4

# <linux/fs.h>: FS_IOC_GETFLAGS is _IOR('f', 1, long); the kernel reads and writes an int through it.
FS_IOC_GETFLAGS = 0x80086601 if struct.calcsize("l") == 8 else 0x80046601
FS_IMMUTABLE_FL = 0x10
FS_APPEND_FL = 0x20

_WRITE_BITS = stat_mod.S_IWGRP | stat_mod.S_IWOTH


class Reason(StrEnum):
    """How the identity gets write access: the samples are kept per reason."""

    ROOT = "root"      # uid 0 writes anything (CAP_DAC_OVERRIDE): a site served as root is its own finding
    OWNER = "owner"    # it owns the entry: the mode does not matter, the owner can chmod it
    GROUP = "group"    # the owning group's bits (or ACL group-owner entry), through a group it is in
    ACL = "acl"        # a named-user or named-group ACL entry
    OTHER = "other"    # the "other" bits


# -- identity ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """The account a process runs as, as the kernel sees it: a uid and the set of its group ids (the
    primary one and the supplementary ones), plus a name for people."""

    uid: int
    gids: frozenset[int]
    name: str = ""

    def label(self) -> str:
        """How reports name the account."""
        return f"{self.name} (uid {self.uid})" if self.name else f"uid {self.uid}"


def identity_for(accounts: Accounts, user: str, group: str | None = None) -> Identity:
    """The identity of a web or PHP worker that runs as ``user`` (and ``group``, when its configuration
    names one), from the host's own passwd and group files.

    Servers drop privileges with ``initgroups(user, group)`` then ``setgid(group)``: the process has the
    configured group (the passwd entry's group when none is configured) and every group that lists the
    user as a member. ``user`` and ``group`` may be numbers (a uid seen on a live process with no passwd
    entry). Raises :class:`HostError` for a name the host does not know.
    """
    users = accounts.by_name()
    primary: int | None
    entry = users.get(user)
    if entry is not None:
        uid, primary = entry.uid, entry.gid
    elif user.isdigit():
        uid = int(user)
        match = next((u for u in accounts.users if u.uid == uid), None)
        entry, primary = match, (match.gid if match else None)
    else:
        raise HostError(f"web user {user!r}: not in the host's /etc/passwd")
    if group is not None:
        found = next((g for g in accounts.groups if g.name == group), None)
        if found is not None:
            primary = found.gid
        elif group.isdigit():
            primary = int(group)
        else:
            raise HostError(f"web group {group!r}: not in the host's /etc/group")
    name = entry.name if entry is not None else user
    gids = {g.gid for g in accounts.groups if name in g.members}
    if primary is not None:
        gids.add(primary)
    return Identity(uid, frozenset(gids), name)


# -- POSIX ACLs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AclEntry:
    """One ACL entry: its tag (``ACL_USER`` ...), its rwx bits, and the uid/gid of a named entry."""

    tag: int
    perm: int
    id: int | None = None

    def __str__(self) -> str:
        name = _TAG_NAMES.get(self.tag, f"tag{self.tag:#x}")
        who = "" if self.id is None else str(self.id)
        bits = "".join(c if self.perm & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))
        return f"{name}:{who}:{bits}"


@dataclass(frozen=True)
class Acl:
    """A POSIX ACL in the order it is stored (the kernel keeps it sorted by tag, then id)."""

    entries: tuple[AclEntry, ...]

    def mask(self) -> AclEntry | None:
        """The mask entry (present whenever there are named entries)."""
        return next((e for e in self.entries if e.tag == ACL_MASK), None)

    def __str__(self) -> str:
        return ",".join(str(e) for e in self.entries)


def decode_acl(raw: bytes, label: str) -> Acl:
    """An ACL from the binary value of ``system.posix_acl_access``/``_default``; :class:`HostError` naming
    ``label`` for a value that is not one (a damaged image must not stop the scan with a traceback)."""
    if len(raw) < _HEADER.size or (len(raw) - _HEADER.size) % _ENTRY.size:
        raise HostError(f"{label}: POSIX ACL attribute of {len(raw)} bytes is not a header and whole entries")
    (version,) = _HEADER.unpack_from(raw)
    if version != ACL_VERSION:
        raise HostError(f"{label}: POSIX ACL version {version}, expected {ACL_VERSION}")
    entries = []
    for offset in range(_HEADER.size, len(raw), _ENTRY.size):
        tag, perm, ident = _ENTRY.unpack_from(raw, offset)
        if tag not in _TAG_NAMES:
            raise HostError(f"{label}: POSIX ACL entry with unknown tag {tag:#x}")
        if perm & ~7:
            raise HostError(f"{label}: POSIX ACL entry with permission bits {perm:#x}")
        named = tag in (ACL_USER, ACL_GROUP)
        entries.append(AclEntry(tag, perm, ident if named else None))
    return Acl(tuple(entries))


def encode_acl(acl: Acl) -> bytes:
    """The binary attribute value of ``acl`` (the inverse of :func:`decode_acl`; tests build fixtures and
    check the decoder with it)."""
    body = b"".join(_ENTRY.pack(e.tag, e.perm, ACL_UNDEFINED_ID if e.id is None else e.id) for e in acl.entries)
    return _HEADER.pack(ACL_VERSION) + body


def read_acl(real: str, label: str, name: str = XATTR_ACL_ACCESS) -> Acl | None:
    """The ACL stored on the real path ``real`` (not following a symlink), None when it has none or the file
    system keeps no ACLs."""
    try:
        raw = os.getxattr(real, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
            return None
        raise HostError(f"{label}: reading its ACL: {exc.strerror}") from exc
    return decode_acl(raw, label)


# -- the access check -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether the identity can write an entry, and why.

    ``kernel`` is what ``access(path, W_OK)`` says for the process now; ``writable`` adds what it can get by
    itself: an owner can chmod its own file. ``reason`` is None when not writable.
    """

    writable: bool
    why: str
    reason: Reason | None = None
    kernel: bool = False

    def __bool__(self) -> bool:
        return self.writable


def _bits(perm: int) -> str:
    return "".join(c if perm & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))


def permits(identity: Identity, mode: int, uid: int, gid: int, acl: Acl | None,
            want: int) -> tuple[bool, Reason | None, str]:
    """The kernel's permission check for ``want`` (``MAY_WRITE``, ``MAY_EXEC``, or'ed) by a process with
    ``identity`` on an inode of ``mode``/``uid``/``gid`` carrying the access ACL ``acl``: (granted, the class
    that decided, why). Capabilities: uid 0 is taken to have ``CAP_DAC_OVERRIDE`` (as a root worker has);
    any other identity none (workers drop them)."""
    want &= 7
    if identity.uid == 0:
        return True, Reason.ROOT, "runs as uid 0: root writes any file whatever its mode"
    if identity.uid == uid:
        owner = (mode >> 6) & 7
        return owner & want == want, Reason.OWNER, f"owner uid {uid} ({_bits(owner)})"
    if acl is not None and mode & stat_mod.S_IRWXG:
        return _acl_permits(identity, gid, acl, want)
    # The kernel asks about group membership only when group and other bits differ in what is wanted;
    # when they agree the answer is the same either way, and naming the group is what people expect.
    group, other = (mode >> 3) & 7, mode & 7
    if gid in identity.gids:
        return group & want == want, Reason.GROUP, f"owning group {gid} ({_bits(group)})"
    return other & want == want, Reason.OTHER, f"others ({_bits(other)})"


def _acl_permits(identity: Identity, gid: int, acl: Acl, want: int) -> tuple[bool, Reason | None, str]:
    """``posix_acl_permission``: the first matching entry decides, a named or group-class entry masked by
    the mask that follows it; a process in some matching group whose entries all lack ``want`` is refused
    even when others would be allowed."""
    found = False
    entries = acl.entries
    for i, e in enumerate(entries):
        if e.tag == ACL_USER_OBJ:
            continue  # the owner was decided before (identity.uid == file uid)
        if e.tag == ACL_USER:
            if e.id == identity.uid:
                return _masked(entries, i, want, Reason.ACL)
        elif e.tag == ACL_GROUP_OBJ:
            if gid in identity.gids:
                found = True
                if e.perm & want == want:
                    return _masked(entries, i, want, Reason.GROUP)
        elif e.tag == ACL_GROUP:
            if e.id in identity.gids:
                found = True
                if e.perm & want == want:
                    return _masked(entries, i, want, Reason.ACL)
        elif e.tag == ACL_OTHER:
            if found:
                return False, Reason.GROUP, f"in a group the ACL names, none granting it ({acl})"
            return e.perm & want == want, Reason.OTHER, f"others ({_bits(e.perm)}) by ACL {acl}"
    return False, None, f"ACL without an other entry ({acl}): the kernel refuses access (EIO)"


def _masked(entries: tuple[AclEntry, ...], i: int, want: int, reason: Reason) -> tuple[bool, Reason, str]:
    entry = entries[i]
    mask = next((m for m in entries[i + 1:] if m.tag == ACL_MASK), None)
    if mask is None:
        return entry.perm & want == want, reason, f"ACL {entry}"
    return entry.perm & mask.perm & want == want, reason, f"ACL {entry} (mask {_bits(mask.perm)})"


def can_write(identity: Identity, st: FileStat | os.stat_result, acl: Acl | None = None, flags: int = 0,
              read_only: bool = False) -> Verdict:
    """Whether ``identity`` can write the entry with stat ``st`` and access ACL ``acl`` (None: it has none),
    given its ``chattr`` ``flags`` and whether its file system is mounted read-only.

    The kernel's check decides ``kernel``; an owner that lacks the write bit can still chmod its own file,
    so ownership alone makes it ``writable``. Immutable (``chattr +i``) entries and read-only mounts are
    not writable by anyone, root included, and their owner cannot lift that (it needs
    ``CAP_LINUX_IMMUTABLE`` or a remount). Append-only (``+a``) files stay writable: appending PHP to a
    script is all a web shell needs.
    """
    if isinstance(st, FileStat):
        mode, uid, gid = st.mode, st.uid, st.gid
    else:
        mode, uid, gid = st.st_mode, st.st_uid, st.st_gid
    if read_only:
        return Verdict(False, "on a file system mounted read-only")
    if flags & FS_IMMUTABLE_FL:
        return Verdict(False, "immutable (chattr +i)")
    ok, reason, why = permits(identity, mode, uid, gid, acl, MAY_WRITE)
    if flags & FS_APPEND_FL:
        why += ", append-only (chattr +a): it can still append"
    if ok:
        return Verdict(True, why, reason, True)
    if reason is Reason.OWNER:
        return Verdict(True, f"owned by uid {uid} (mode {stat_mod.S_IMODE(mode):04o}): the owner can chmod it "
                             f"writable again", reason, False)
    return Verdict(False, why)


def inode_flags(real: str, mode: int) -> int:
    """The ``chattr`` flags of a regular file or directory at ``real`` (0 when they cannot be read: another
    file type, which is never opened, a file system without them, a vanished file)."""
    if not (stat_mod.S_ISREG(mode) or stat_mod.S_ISDIR(mode)):
        return 0
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        return int(struct.unpack_from("=i", buf)[0]) & 0xFFFFFFFF
    except OSError:
        return 0
    finally:
        os.close(fd)


def default_acl_grants(identity: Identity, acl: Acl) -> str | None:
    """Why files created later in a directory with default ACL ``acl`` would be writable by ``identity``
    (by someone else's hand: the creator's own files are its own), None when they would not be. A named
    entry counts through the default mask; the owning-group entry is not judged (the new file's group
    depends on who creates it)."""
    mask = acl.mask()
    mperm = mask.perm if mask is not None else 7
    for e in acl.entries:
        if e.tag == ACL_USER and e.id == identity.uid and e.perm & mperm & MAY_WRITE:
            return f"default ACL {e}" + (f" (mask {_bits(mperm)})" if mask else "")
        if e.tag == ACL_GROUP and e.id in identity.gids and e.perm & mperm & MAY_WRITE:
            return f"default ACL {e}" + (f" (mask {_bits(mperm)})" if mask else "")
        if e.tag == ACL_OTHER and e.perm & MAY_WRITE and identity.uid != 0:
            return f"default ACL {e}"
    return None


# -- allow list ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowRule:
    """Directories an application must be able to write (``data/web/writable_allow.toml``), or an owner's
    own globs (``markers`` empty: relative to the document root, or absolute host paths)."""

    app: str
    paths: tuple[str, ...]
    why: str
    markers: tuple[str, ...] = ()


def allow_from_globs(globs: Iterable[str], why: str = "allowed in the configuration") -> tuple[AllowRule, ...]:
    """Allow rules for an owner's globs (one rule per glob, so the report says which one matched)."""
    return tuple(AllowRule(g, (g,), why) for g in globs)


def default_allow() -> tuple[AllowRule, ...]:
    """The shipped allow list of common applications' upload and cache directories."""
    from hostguard.data import load_toml

    data = load_toml("web/writable_allow.toml")
    return tuple(AllowRule(str(r["app"]), tuple(r["paths"]), str(r["why"]), tuple(r.get("markers", ())))
                 for r in data.get("allow", ()))


def never_walk() -> frozenset[str]:
    """Host directories no walk enters (kernel file systems)."""
    from hostguard.data import load_toml

    return frozenset(str(p) for p in load_toml("web/writable_allow.toml").get("never_walk", ()))


def glob_regex(pattern: str) -> str:
    """A regular expression for a path glob: ``*`` and ``?`` within one name, ``[...]`` a class, ``**/``
    any number of directories (none included). Matched against whole host paths."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            neg = body[:1] in ("!", "^")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Active:
    """An allow rule anchored at a directory: the compiled paths below it."""

    rule: AllowRule
    regex: re.Pattern[str]


def _anchor(rule: AllowRule, host_dir: str) -> _Active:
    base = host_dir.rstrip("/")
    alts = []
    for p in rule.paths:
        p = p.rstrip("/")
        alts.append(glob_regex(p) if p.startswith("/") else re.escape(base) + "/" + glob_regex(p))
    return _Active(rule, re.compile("(?:" + "|".join(alts) + ")"))


# -- the report ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One writable entry, kept as an example: its host path, whether a directory, and why."""

    path: str
    is_dir: bool
    reason: Reason
    why: str


@dataclass(frozen=True)
class DropDir:
    """A directory the identity can create files in (write and search): where a ``.php`` file could be
    dropped. ``rel`` is its path below the document root ("" for the root itself, no slashes around) so a
    check can make its URL; ``allowed`` names the allow rule that expects it writable (None: none)."""

    path: str
    rel: str
    why: str
    allowed: str | None = None


@dataclass(frozen=True)
class WritableReport:
    """What ``identity`` can write under the document root ``root`` (host paths throughout).

    ``files``/``dirs`` count writable entries outside allowed directories, ``by_reason`` splits them, and
    ``samples`` keeps up to ``max_samples`` per reason. A writable directory counts once: what it lets the
    account do to the entries in it (create, replace) is what makes it a finding. ``allowed_*`` count
    writable entries inside allow-listed directories, per rule in ``allowed_by``. ``root_dir`` is the root
    itself when writable, ``parents`` the directories above it whose write lets the account replace the
    whole tree. ``complete`` is False when the deadline stopped the walk (``stopped_in``) or directories
    could not be read (``unreadable``) or entries not judged (``errors``).
    """

    root: str
    identity: Identity
    entries: int = 0
    files: int = 0
    dirs: int = 0
    by_reason: dict[Reason, int] = field(default_factory=dict)
    samples: tuple[Sample, ...] = ()
    allowed_files: int = 0
    allowed_dirs: int = 0
    allowed_by: dict[str, int] = field(default_factory=dict)
    root_dir: Sample | None = None
    parents: tuple[Sample, ...] = ()
    drop_dirs: tuple[DropDir, ...] = ()
    drop_dirs_left_out: int = 0
    default_acls: tuple[Sample, ...] = ()
    default_acl_dirs: int = 0
    immutable: int = 0
    read_only: tuple[str, ...] = ()
    mounts: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    complete: bool = True
    stopped_in: str | None = None

    def sample_paths(self, reason: Reason | None = None) -> list[str]:
        """The sampled paths (of one reason), for evidence and tests."""
        return [s.path for s in self.samples if reason is None or s.reason is reason]


@dataclass
class _Walk:
    """The walk's running totals (turned into a frozen :class:`WritableReport` at the end)."""

    root: str
    identity: Identity
    max_samples: int
    max_dirs: int
    skip: frozenset[str]
    entries: int = 0
    files: int = 0
    dirs: int = 0
    by_reason: Counter[Reason] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    allowed_files: int = 0
    allowed_dirs: int = 0
    allowed_by: Counter[str] = field(default_factory=Counter)
    drop_dirs: list[DropDir] = field(default_factory=list)
    drop_left: int = 0
    default_acls: list[Sample] = field(default_factory=list)
    default_acl_count: int = 0
    immutable: int = 0
    read_only: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def judge(self, real: str, host_path: str, st: os.stat_result, read_only: bool) -> Verdict:
        """The verdict for one entry, reading its ACL and flags only where they can change it."""
        ident = self.identity
        mode = st.st_mode
        acl = None
        if ident.uid != 0 and ident.uid != st.st_uid:
            if not mode & _WRITE_BITS:
                return Verdict(False, "no write bit for group or others")
            if mode & stat_mod.S_IRWXG:
                acl = read_acl(real, host_path)
        verdict = can_write(ident, st, acl, read_only=read_only)
        if verdict.writable:
            flags = inode_flags(real, mode)
            if flags:
                verdict = can_write(ident, st, acl, flags, read_only)
                if flags & FS_IMMUTABLE_FL:
                    self.immutable += 1
        return verdict

    def can_enter(self, st: os.stat_result, acl_real: str, host_path: str, verdict: Verdict) -> bool:
        """Whether a writable directory is also searchable (files can be created in it): the owner and
        root always can (chmod, CAP_DAC_OVERRIDE)."""
        if verdict.reason in (Reason.ROOT, Reason.OWNER):
            return True
        acl = read_acl(acl_real, host_path) if st.st_mode & stat_mod.S_IRWXG else None
        return permits(self.identity, st.st_mode, st.st_uid, st.st_gid, acl, MAY_WRITE | MAY_EXEC)[0]

    def record(self, host_path: str, is_dir: bool, verdict: Verdict, allowed: _Active | None) -> None:
        """Count one writable entry (reason set) under its reason or its allow rule."""
        assert verdict.reason is not None
        if allowed is not None:
            if is_dir:
                self.allowed_dirs += 1
            else:
                self.allowed_files += 1
            self.allowed_by[allowed.rule.app] += 1
            return
        if is_dir:
            self.dirs += 1
        else:
            self.files += 1
        self.by_reason[verdict.reason] += 1
        if self.by_reason[verdict.reason] <= self.max_samples:
            self.samples.append(Sample(host_path, is_dir, verdict.reason, verdict.why))

    def drop(self, host_path: str, why: str, allowed: _Active | None) -> None:
        """Keep a writable, searchable directory for the PHP question."""
        if len(self.drop_dirs) >= self.max_dirs:
            self.drop_left += 1
            return
        rel = host_path[len(self.root.rstrip("/")):].strip("/")
        self.drop_dirs.append(DropDir(host_path, rel, why, allowed.rule.app if allowed else None))

    def default_acl(self, real: str, host_path: str) -> None:
        """Note a directory whose default ACL hands the identity write on files created later."""
        try:
            acl = read_acl(real, host_path, XATTR_ACL_DEFAULT)
        except HostError as exc:
            self.errors.append(str(exc))
            return
        if acl is None:
            return
        why = default_acl_grants(self.identity, acl)
        if why is not None:
            self.default_acl_count += 1
            if len(self.default_acls) < self.max_samples:
                self.default_acls.append(Sample(host_path, True, Reason.ACL, why + ": files created here later "
                                                                             "will be writable"))


def _join(host_dir: str, name: str) -> str:
    return f"{host_dir.rstrip('/')}/{name}"


def _is_read_only(real: str) -> bool:
    try:
        return bool(os.statvfs(real).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _activate(rules: Sequence[AllowRule], real_dir: str, host_dir: str, names: set[str]) -> list[_Active]:
    """The app rules whose markers this directory holds, anchored here."""
    out = []
    for rule in rules:
        first = rule.markers[0].split("/", 1)[0]
        if first in names and all(os.path.lexists(os.path.join(real_dir, m)) for m in rule.markers):
            out.append(_anchor(rule, host_dir))
    return out


def _allowed_by(active: Sequence[_Active], host_path: str) -> _Active | None:
    return next((a for a in active if a.regex.fullmatch(host_path)), None)


def writable_under(host: Host, root_dir: str, identity: Identity, allow: Sequence[AllowRule] = (),
                   deadline: float | None = None, max_samples: int = 10, max_dirs: int = 10_000) -> WritableReport:
    """Walk the document root ``root_dir`` of ``host`` for what ``identity`` can write.

    Never follows a symlink (the link's target is judged where it lives; a link is replaced through its
    directory, which is judged). Crosses mount points (a bind-mounted uploads directory is common, and it
    is served), listing them in ``mounts``, but never enters the same directory twice (bind-mount loops)
    nor a ``never_walk`` directory. ``allow``: rules with markers apply in every directory holding the
    markers; rules without apply from the root. ``deadline`` (``time.monotonic()``): stop there and
    say so. Raises :class:`HostError` when the root itself is missing or not a directory.
    """
    real_root = host.resolve(root_dir)
    try:
        root_st = os.lstat(real_root)
    except OSError as exc:
        raise HostError(f"{root_dir}: {exc.strerror}") from exc
    if not stat_mod.S_ISDIR(root_st.st_mode):
        raise HostError(f"{root_dir}: not a directory")
    walk = _Walk(root_dir, identity, max_samples, max_dirs, never_walk())
    app_rules = [r for r in allow if r.markers]
    base_active = [_anchor(r, root_dir) for r in allow if not r.markers]

    root_ro = _is_read_only(real_root)
    if root_ro:
        walk.read_only.append(root_dir)
    root_verdict = walk.judge(real_root, root_dir, root_st, root_ro)
    root_sample = (Sample(root_dir, True, root_verdict.reason, root_verdict.why)
                   if root_verdict.writable and root_verdict.reason else None)
    parents = _parents(host, root_dir, identity, walk)

    seen = {(root_st.st_dev, root_st.st_ino)}
    # (real dir, host dir, its device, read-only mount?, the allow rule covering it, active rules)
    stack: list[tuple[str, str, int, bool, _Active | None, list[_Active]]] = [
        (real_root, root_dir, root_st.st_dev, root_ro, None, base_active)]
    if root_sample is not None and walk.can_enter(root_st, real_root, root_dir, root_verdict):
        walk.drop(root_dir, root_verdict.why, None)
    walk.default_acl(real_root, root_dir)
    stopped_in = None
    while stack:
        if deadline is not None and monotonic() > deadline:
            stopped_in = stack[-1][1]
            break
        real_dir, host_dir, dev, ro, dir_allowed, active = stack.pop()
        try:
            with os.scandir(real_dir) as it:
                entries = list(it)
        except OSError as exc:
            walk.unreadable.append(f"{host_dir}: {exc.strerror}")
            continue
        if app_rules:
            active = active + _activate(app_rules, real_dir, host_dir, {e.name for e in entries})
        for n, entry in enumerate(entries, 1):
            if not n % 4096 and deadline is not None and monotonic() > deadline:
                stopped_in = host_dir  # a huge directory: stop inside it rather than overrun the budget
                break
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished since the listing
            mode = st.st_mode
            is_dir = stat_mod.S_ISDIR(mode)
            if not is_dir and not stat_mod.S_ISREG(mode):
                continue  # links, sockets, fifos, devices: what matters is the directory holding them
            walk.entries += 1
            host_path = _join(host_dir, entry.name)
            entry_ro = ro
            if is_dir:
                if host_path in walk.skip or (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                if st.st_dev != dev:
                    walk.mounts.append(host_path)
                entry_ro = _is_read_only(entry.path)
                if entry_ro and not ro:
                    walk.read_only.append(host_path)
            try:
                verdict = walk.judge(entry.path, host_path, st, entry_ro)
            except HostError as exc:
                walk.errors.append(str(exc))
                verdict = Verdict(False, str(exc))
            allowed = dir_allowed
            if is_dir:
                allowed = allowed or _allowed_by(active, host_path)
                walk.default_acl(entry.path, host_path)
                stack.append((entry.path, host_path, st.st_dev, entry_ro, allowed, active))
            if not verdict.writable:
                continue
            if not is_dir:
                allowed = allowed or _allowed_by(active, host_path)
            walk.record(host_path, is_dir, verdict, allowed)
            if is_dir:
                try:
                    enter = walk.can_enter(st, entry.path, host_path, verdict)
                except HostError as exc:
                    walk.errors.append(str(exc))
                    enter = False
                if enter:
                    walk.drop(host_path, verdict.why, allowed)
        if stopped_in is not None:
            break
    return WritableReport(
        root=root_dir, identity=identity, entries=walk.entries, files=walk.files, dirs=walk.dirs,
        by_reason=dict(walk.by_reason), samples=tuple(walk.samples), allowed_files=walk.allowed_files,
        allowed_dirs=walk.allowed_dirs, allowed_by=dict(walk.allowed_by), root_dir=root_sample,
        parents=parents, drop_dirs=tuple(walk.drop_dirs), drop_dirs_left_out=walk.drop_left,
        default_acls=tuple(walk.default_acls), default_acl_dirs=walk.default_acl_count,
        immutable=walk.immutable, read_only=tuple(walk.read_only),
        mounts=tuple(walk.mounts), unreadable=tuple(walk.unreadable), errors=tuple(walk.errors),
        notes=tuple(walk.notes), complete=stopped_in is None and not walk.unreadable and not walk.errors,
        stopped_in=stopped_in)


def _ancestors(path: str) -> list[str]:
    """``/var/www/site`` -> ``["/var/www", "/var", "/"]``."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]


def _parents(host: Host, root_dir: str, identity: Identity, walk: _Walk) -> tuple[Sample, ...]:
    """Directories above the root (as written, and above where it resolves to) that the identity can write
    and so replace the root in: a rename needs write and search on the parent; in a sticky directory
    (``/tmp``) only the owner of the entry or of the directory may replace it."""
    real_root = host.resolve(root_dir)
    resolved = "/" + os.path.relpath(real_root, host.root) if real_root != host.root else "/"
    resolved = resolved.rstrip("/") or "/"
    chains = [root_dir.rstrip("/") or "/"] + ([resolved] if resolved != (root_dir.rstrip("/") or "/") else [])
    out: list[Sample] = []
    done: set[str] = set()
    for start in chains:
        child = start
        for parent in _ancestors(start):
            if parent in done:
                child = parent
                continue
            done.add(parent)
            try:
                real = host.resolve(parent)
                st = os.lstat(real)
                verdict = walk.judge(real, parent, st, _is_read_only(real))
                searchable = verdict.writable and walk.can_enter(st, real, parent, verdict)
            except (HostError, OSError) as exc:
                walk.errors.append(f"{parent}: {exc}")
                child = parent
                continue
            if searchable and verdict.reason is not None:
                if st.st_mode & stat_mod.S_ISVTX and verdict.reason not in (Reason.ROOT, Reason.OWNER):
                    try:
                        child_uid = os.lstat(os.path.join(real, os.path.basename(child))).st_uid
                    except OSError:
                        child_uid = -1
                    if child_uid != identity.uid:
                        walk.notes.append(f"{parent} is writable ({verdict.why}) but sticky: "
                                          f"{child} cannot be replaced by another user")
                        child = parent
                        continue
                out.append(Sample(parent, True, verdict.reason, verdict.why))
            child = parent
    return tuple(out)
