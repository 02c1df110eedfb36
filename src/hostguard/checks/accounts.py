"""Hidden or unknown accounts: extra UID 0, empty passwords, shadow/passwd mismatches, duplicates,
service accounts that can log in, passwordless sudo, planted SSH keys, accounts and SSH keys new since the first
scan."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from hostguard.config import setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.facts import HOST_ID, SCAN_TIME, STATE, Fact
from hostguard.engine.registry import Family, ScanEnd, check
from hostguard.findings import Finding, HostId, fingerprint
from hostguard.host.accounts import ACCOUNTS, SHADOW, SHADOW_IF_READABLE, Accounts, Malformed, Shadow, ShadowEntry, User
from hostguard.host.authorized_keys import (
    AUTHORIZED_KEYS,
    DEFAULT_KEY_FILES,
    KEY_TYPES,
    AuthorizedKey,
    AuthorizedKeys,
    split_key_options,
)
from hostguard.host.base import Host
from hostguard.host.pam import PAM_NULLOK
from hostguard.host.root_capable import ROOT_CAPABLE, Capable, password_state
from hostguard.host.sudoers import SUDOERS, SudoRule
from hostguard.remediation import Command, DeleteLine, Edit, Param, Remediation, Step
from hostguard.store.state import KnownAccounts, KnownKeys, PresentKey, StateStore


@dataclass(frozen=True)
class AccountsConfig:
    """[accounts]: who the admins are and which shells mean "cannot log in"."""

    admin_groups: tuple[str, ...] = setting(
        ("sudo", "wheel", "admin", "root"),
        "Groups whose members may be root-capable admins (sudo without password is expected of them).")
    root_groups: tuple[str, ...] = setting(
        ("docker", "lxd", "disk"),
        "Groups whose members can become root without sudo (a container with the host's / mounted, the raw disk): "
        "they count as root-capable for the SSH checks.")
    nologin_shells: tuple[str, ...] = setting(
        ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/sync", "/usr/bin/nologin",
         "/sbin/shutdown", "/usr/sbin/shutdown", "/sbin/halt", "/usr/sbin/halt", ""),
        'Shells that mean "cannot log in" (sync, shutdown and halt run one command and exit).')
    shell_allowed: tuple[str, ...] = setting(("root", "sync"), "Service accounts that legitimately have a login shell.")
    new_account_days: int = setting(
        7, "Days a new account stays reported after it was first seen, unless accepted earlier "
           "(`hostguard accept FINGERPRINT`); 0: reported until accepted.", min=0)
    new_key_days: int = setting(
        7, "Days a new SSH authorized key, or a known key's changed options, stays reported after it was first "
           "seen, unless accepted earlier (`hostguard accept FINGERPRINT`); 0: reported until accepted.", min=0)


def _known_accounts(host: object, state: StateStore, host_id: HostId, now: datetime) -> KnownAccounts | None:
    """Accounts earlier scans of this host saw, with when each was first seen (None before the first scan)."""
    accounts = state.known_accounts(host_id.id)
    return None if accounts is None else KnownAccounts(now, accounts)


KNOWN_ACCOUNTS: Fact[KnownAccounts | None] = Fact("known_accounts", _known_accounts,
                                                  inputs=(STATE, HOST_ID, SCAN_TIME))


def _known_keys(host: Host, state: StateStore, host_id: HostId, now: datetime) -> KnownKeys | None:
    """SSH keys earlier scans of this host and root saw (None before the first scan that read keys there).

    Keyed by the root as well as the host key: a mounted image of this machine (same machine-id) has keys
    of its own time, and must neither baseline nor retire the live system's."""
    history = state.known_keys(host_id.id, host.root)
    return None if history is None else KnownKeys(now, history)


KNOWN_KEYS: Fact[KnownKeys | None] = Fact("known_keys", _known_keys, inputs=(STATE, HOST_ID, SCAN_TIME))


def remember_accounts(end: ScanEnd) -> None:
    """After any scan that read the accounts (an ``--only ssh`` scan reads them too), record their first
    sighting: how long an account has been new is measured from it, so no scan "uses up" a new account.
    The same goes for the SSH keys, when the scan read them (:func:`remember_keys`).

    The first scan that reads a host's accounts is its baseline. An account that is gone is forgotten as
    new: if it comes back it is reported again, and an earlier accept of its finding lapses (recorded in
    the audit log), since a re-created account is not the one the owner accepted.
    """
    if not end.facts.loaded(ACCOUNTS):
        return
    accounts = end.facts.get(ACCOUNTS)
    gone = end.state.remember_accounts(end.host.id, [(u.name, u.uid) for u in accounts.users], end.started)
    if gone:
        end.state.unaccept(end.host.id, [fingerprint("accounts.new_since_last_scan", _user(name)) for name in gone],
                           "the account is gone: if it comes back it is a new account", end.started, action="lapse")
    if end.facts.loaded(AUTHORIZED_KEYS):
        remember_keys(end)


def remember_keys(end: ScanEnd) -> None:
    """Record the SSH keys this scan read, by account and fingerprint (the first scan that reads a host's keys
    is their baseline; a host upgraded from a state.db without key history gets its key baseline then).

    Keys behind a key file that could not be read are left as they were: an unreadable home must not make
    its keys gone (and new again once readable). A key that is gone is forgotten, and accepts of its
    findings lapse: if it comes back it is a new key, not the one the owner accepted.
    """
    keys = end.facts.get(AUTHORIZED_KEYS)
    unread = keys.unread_users
    read = {u.name for u in end.facts.get(ACCOUNTS).users} - unread
    present = [PresentKey(user, fp, occ[0].key_type, _key_options(occ)) for (user, fp), occ in _by_key(keys).items()]
    gone = end.state.remember_keys(end.host.id, end.facts.host.root, present, read, unread, end.started)
    if gone:
        end.state.unaccept(end.host.id, [fp for k in gone for fp in (
            fingerprint(KEY_NEW, _key_target(k.user, k.fingerprint)),
            fingerprint(KEY_NEW, _key_target(k.user, k.fingerprint, k.options)))],
            "the key is gone: if it comes back it is a new key", end.started, action="lapse")


FAMILY = Family("accounts", __doc__ or "", AccountsConfig, after_scan=remember_accounts)


def _user(name: str) -> dict[str, str]:
    return {"kind": "user", "user": name}


NOLOGIN = "/usr/sbin/nologin"


def _cmd(*argv: str, undo: tuple[str, ...] | None = None) -> Command:
    """A shadow-utils command: it also works on a tree (``usermod -R DIR``, ``passwd -R DIR``), so not live-only."""
    return Command(tuple(argv), live_only=False, undo=undo, reversible=undo is not None)


def _lock(name: str) -> Command:
    """Lock the password (``!`` before the hash): reversible with ``usermod -U``."""
    return _cmd("usermod", "-L", name, undo=("usermod", "-U", name))


def _password_locked(hash_: str | None) -> bool:
    """True when the account has no password sudo could ask for: no shadow line, or a field
    :func:`password_state` does not call "set" (locked, disabled, empty, or ``x``, which no password matches)."""
    return hash_ is None or password_state(hash_) != "set"


@check(id="accounts.extra_uid0", severity="critical", summary="Account other than root has UID 0",
       needs=(ACCOUNTS,), tags=("T1136.001", "T1078.003"))
def extra_uid0(ctx: Context) -> Iterator[Finding]:
    """Any account with UID 0 is root under another name; attackers add one to keep access."""
    accounts: Accounts = ctx.fact(ACCOUNTS)
    for u in accounts.users:
        if u.uid == 0 and u.name != "root":
            yield ctx.finding(f"account '{u.name}' has UID 0 (full root rights)", _user(u.name),
                              evidence={"path": "/etc/passwd", "line": u.line, "uid": 0, "shell": u.shell},
                              remediation=_uid0_fix(u))


def _uid0_fix(u: User) -> Remediation:
    """Contain now (lock the password and expire the account, which also stops key logins), decide after."""
    return Remediation(
        f"Disable '{u.name}' now: lock its password and expire it (key logins stop too); both are undone with "
        f"`usermod -U -e -1 {u.name}`.",
        (_cmd("usermod", "-L", "-e", "1", u.name, undo=("usermod", "-U", "-e", "-1", u.name)),),
        manual=f"Then decide: if '{u.name}' is not yours, investigate the break-in and remove it (`userdel {u.name}`;"
               f" its home {u.home} may be root's own, so never with -r). If it is yours, give it a UID of its own "
               "with `vipw` (not `usermod -u`: it would re-own the files in its home, root's files when they share "
               "one).")


@check(id="accounts.empty_password", severity="critical",
       summary="Account with an empty password field", needs=(ACCOUNTS, SHADOW, PAM_NULLOK), tags=("T1078.003",))
def empty_password(ctx: Context) -> Iterator[Finding]:
    """An empty password field lets anyone log in as that account without a password (through PAM's
    ``nullok``, which names the doors it opens: password_policy.pam_nullok)."""
    accounts: Accounts = ctx.fact(ACCOUNTS)
    shadow: Shadow = ctx.fact(SHADOW)
    nullok = ctx.fact(PAM_NULLOK)
    doors = "; ".join(f"{ln.path} line {ln.line}" for ln in nullok[:3])
    via = (f" It logs in with nothing typed through pam_unix's `nullok` ({doors}: password_policy.pam_nullok); "
           "once no account has an empty password, remove `nullok` there too." if nullok else "")
    for e in shadow.entries:
        if e.hash == "":
            yield ctx.finding(f"account '{e.name}' has no password: anyone can log in as it", _user(e.name),
                              evidence={"path": "/etc/shadow", "line": e.line,
                                        "nullok": [f"{ln.path}:{ln.line}" for ln in nullok]},
                              remediation=Remediation(
                                  f"Lock '{e.name}' (an empty password cannot be unlocked back: set one with "
                                  f"`passwd {e.name}` if the account needs password logins).{via}",
                                  (_cmd("usermod", "-L", e.name),)))
    for u in accounts.users:
        if u.password == "":
            yield ctx.finding(f"account '{u.name}' has an empty password field in /etc/passwd", _user(u.name),
                              evidence={"path": "/etc/passwd", "line": u.line},
                              remediation=Remediation(
                                  f"Move the password field to /etc/shadow (`pwconv`), then lock '{u.name}'.",
                                  (_cmd("pwconv"), _cmd("usermod", "-L", u.name))))


@check(id="accounts.shadow_only", severity="high",
       summary="Account in /etc/shadow but not in /etc/passwd", needs=(ACCOUNTS, SHADOW), tags=("T1136.001", "T1564.002"),
       references=("https://man7.org/linux/man-pages/man5/shadow.5.html",))
def shadow_only(ctx: Context) -> Iterator[Finding]:
    """A shadow entry without a passwd entry is left over or planted; tools that list users miss it."""
    names = set(ctx.fact(ACCOUNTS).by_name())
    for e in ctx.fact(SHADOW).entries:
        if e.name not in names:
            yield ctx.finding(f"'{e.name}' has a password hash in /etc/shadow but no /etc/passwd entry",
                              _user(e.name), evidence={"path": "/etc/shadow", "line": e.line,
                                                       "has_hash": e.hash not in ("", "*", "!", "!!", "!*")},
                              remediation=Remediation(
                                  f"Remove the stray /etc/shadow line of '{e.name}' (no account uses it: logins "
                                  "need a passwd entry); keep a copy of the line as evidence first.",
                                  (DeleteLine("/etc/shadow", e.line, e.raw),)))


@check(id="accounts.passwd_only", severity="medium",
       summary="Account in /etc/passwd without a shadow entry", needs=(ACCOUNTS, SHADOW), tags=("T1136.001",),
       references=("https://man7.org/linux/man-pages/man8/pwck.8.html",))
def passwd_only(ctx: Context) -> Iterator[Finding]:
    """A passwd entry with no shadow line was added by hand, bypassing the account tools."""
    shadow = ctx.fact(SHADOW).by_name()
    for u in ctx.fact(ACCOUNTS).users:
        if u.name not in shadow:
            yield ctx.finding(f"'{u.name}' is in /etc/passwd but not in /etc/shadow", _user(u.name),
                              evidence={"path": "/etc/passwd", "line": u.line, "password_field": u.password},
                              remediation=Remediation(
                                  f"Create the missing shadow entry with `pwconv`, lock '{u.name}' until you know "
                                  "who added it (`usermod -U` undoes the lock).",
                                  (_cmd("pwconv"), _lock(u.name))))


@check(id="accounts.duplicate", severity="high", summary="Duplicate account name or UID",
       needs=(ACCOUNTS,), tags=("T1136.001",))
def duplicate(ctx: Context) -> Iterator[Finding]:
    """Two accounts with one UID share files and rights; two lines with one name hide the second."""
    accounts: Accounts = ctx.fact(ACCOUNTS)
    by_name: dict[str, list[int]] = defaultdict(list)
    by_uid: dict[int, list[str]] = defaultdict(list)
    for u in accounts.users:
        by_name[u.name].append(u.line)
        by_uid[u.uid].append(u.name)
    for name, lines in by_name.items():
        if len(lines) > 1:
            yield ctx.finding(f"account name '{name}' appears {len(lines)} times in /etc/passwd",
                              {"kind": "user", "user": name, "problem": "name"},
                              evidence={"path": "/etc/passwd", "lines": lines},
                              remediation=Remediation.by_hand(
                                  f"Keep one '{name}' line in /etc/passwd (`vipw`) and remove or rename the others "
                                  f"(lines {', '.join(map(str, lines))}).",
                                  "Which line is the real account is only known to you: logins use the first, "
                                  "lookups by UID may find another."))
    taken: set[int] = set()
    for uid, names in by_uid.items():
        if len(names) > 1 and uid != 0:
            yield ctx.finding(f"UID {uid} is shared by {', '.join(names)}",
                              {"kind": "user", "user": ",".join(sorted(names)), "problem": "uid", "uid": uid},
                              evidence={"uid": uid, "accounts": names},
                              remediation=_renumber(accounts, names, uid, taken))


def _renumber(accounts: Accounts, names: list[str], uid: int, taken: set[int]) -> Remediation:
    """Keep the UID for the first account and give each other one the lowest free UID from UID_MIN."""
    steps = []
    for name in names[1:]:
        free = accounts.free_uid(frozenset(taken))
        if free is None:
            return Remediation.by_hand(
                f"Give each of {', '.join(names)} its own UID (`usermod -u`).",
                f"No UID from UID_MIN {accounts.uid_min} to UID_MAX {accounts.uid_max} is free.",
                Param("uid", "an unused UID for the account", str(accounts.uid_min)))
        taken.add(free)
        steps.append(_cmd("usermod", "-u", str(free), name, undo=("usermod", "-o", "-u", str(uid), name)))
    return Remediation(f"'{names[0]}' keeps UID {uid}; the others get the lowest free UIDs (usermod also re-owns "
                       "the files in their home directories; files elsewhere keep the old UID: find them with "
                       f"`find / -xdev -uid {uid}`).", tuple(steps))


@check(id="accounts.service_shell", severity="medium",
       summary="Service account with a login shell", needs=(ACCOUNTS, SHADOW, AUTHORIZED_KEYS), tags=("T1078.003",))
def service_shell(ctx: Context) -> Iterator[Finding]:
    """System accounts (UID below UID_MIN) should not have a shell: one with a password or an SSH key is a
    door (medium); one with a locked password still gives a shell to ``su``, cron and a webshell that writes
    its ``~/.ssh/authorized_keys`` (low). nologin, false, sync, shutdown and halt are quiet."""
    accounts: Accounts = ctx.fact(ACCOUNTS)
    shadow = ctx.fact(SHADOW).by_name()
    keys = ctx.fact(AUTHORIZED_KEYS).keys
    cfg = ctx.config[AccountsConfig]
    for u in accounts.users:
        if u.uid == 0 or u.uid >= accounts.uid_min or u.name in cfg.shell_allowed or u.shell in cfg.nologin_shells:
            continue
        entry = shadow.get(u.name)
        state = password_state(entry.hash if entry is not None else "!")
        mine = [f"{k.path}:{k.line}" for k in keys if k.user == u.name]
        doors = (["a password"] if state in ("set", "empty") else []) + (["SSH keys"] if mine else [])
        steps: list[Step] = [_cmd("usermod", "-s", NOLOGIN, u.name, undo=("usermod", "-s", u.shell, u.name))]
        if state in ("set", "empty"):
            steps.append(_lock(u.name))
        title = (f"service account '{u.name}' (UID {u.uid}) has shell {u.shell} and {' and '.join(doors)}" if doors
                 else f"service account '{u.name}' (UID {u.uid}) has shell {u.shell} (password locked)")
        keep = (f" Its keys ({', '.join(mine)}) stop working with the shell: remove them if they are not yours."
                if mine else "")
        yield ctx.finding(title, _user(u.name),
                          evidence={"uid": u.uid, "shell": u.shell, "path": "/etc/passwd", "line": u.line,
                                    "password": state, "authorized_keys": mine},
                          severity="medium" if doors else "low",
                          remediation=Remediation(
                              f"Give '{u.name}' no login shell" + (" and lock its password." if len(steps) > 1
                                                                   else ".") + keep
                              + f" (`sudo -u {u.name} CMD` still works; `usermod -s {u.shell} {u.name}` undoes it.)",
                              tuple(steps)))


@check(id="accounts.sudo_nopasswd", severity="high",
       summary="Passwordless root through sudo for a non-admin account", needs=(ACCOUNTS, SUDOERS, SHADOW_IF_READABLE),
       tags=("T1548.003",),
       references=("https://www.sudo.ws/docs/man/sudoers.man/",))
def sudo_nopasswd(ctx: Context) -> Iterator[Finding]:
    """NOPASSWD: ALL as root turns any compromise of that account into root without a password."""
    accounts: Accounts = ctx.fact(ACCOUNTS)
    admin = set(ctx.config[AccountsConfig].admin_groups)
    users = accounts.by_name()
    readable = ctx.fact(SHADOW_IF_READABLE)
    shadow = readable.by_name() if readable is not None else None
    for rule in ctx.fact(SUDOERS):
        if not rule.nopasswd or "ALL" not in rule.commands or not ({"root", "ALL"} & set(rule.runas)):
            continue
        for who in rule.who:
            if who.startswith("%"):
                if who[1:] in admin:
                    continue
            else:
                u = users.get(who)
                if who == "root" or (u is not None and admin & accounts.groups_of(u)):
                    continue
            yield ctx.finding(f"'{who}' may run anything as root without a password", _user(who),
                              evidence={"path": rule.path, "line": rule.line, "rule": rule.text},
                              remediation=_nopasswd_fix(rule, who, accounts, shadow))


def _members(who: str, accounts: Accounts) -> list[str]:
    """Account names a sudoers user entry stands for (a %group: its members and primary-group users)."""
    if who.startswith("%"):
        gids = {g.gid for g in accounts.groups if g.name == who[1:]}
        members = {m for g in accounts.groups if g.name == who[1:] for m in g.members}
        return sorted(members | {u.name for u in accounts.users if u.gid in gids})
    return [who]


def _ask_for_all(raw: str, first: bool) -> str:
    """The line with the ``ALL`` command tagged ``PASSWD:`` (a ``NOPASSWD:`` right before it dropped), so sudo
    asks for the password for everything while narrow NOPASSWD commands (service restarts) keep working.
    On the rule's first line only the commands part (after ``=`` and the run-as list) is touched."""
    head, body = "", raw
    if first:
        m = re.match(r"^(.*?=\s*(?:\([^)]*\)\s*)?)(.*)$", raw)
        if m is None:
            return raw
        head, body = m.groups()
    items = body.split(",")
    for i, item in enumerate(items):
        tags = re.match(r"^(\s*)((?:[A-Z_]+\s*:\s*)*)(ALL)(\s*\\?\s*)$", item)
        if tags is None:
            continue
        kept = re.sub(r"\b(NOPASSWD|PASSWD)\s*:\s*", "", tags.group(2))
        items[i] = f"{tags.group(1)}{kept}PASSWD: ALL{tags.group(4)}"
    return head + ",".join(items)


def _nopasswd_fix(rule: SudoRule, who: str, accounts: Accounts,
                  shadow: dict[str, ShadowEntry] | None) -> Remediation:
    """Drop NOPASSWD from the rule's line, unless someone it covers has no password sudo could ask for."""
    if shadow is None:
        return Remediation.by_hand(
            f"Remove NOPASSWD from {rule.path} line {rule.line} (`visudo -f {rule.path}`) once everyone it covers "
            "has a password.", "/etc/shadow is readable by root only: whether the accounts it covers have a "
            "password (without one, removing NOPASSWD loses root) is not known; scan as root for the exact edit.")
    covered = sorted({name for w in rule.who if not w.startswith(("+", "ALL")) for name in _members(w, accounts)})
    stuck = [n for n in covered if _password_locked(shadow[n].hash if n in shadow else None)]
    if stuck or any(w == "ALL" or w.startswith("+") for w in rule.who):
        return Remediation.by_hand(
            f"Remove NOPASSWD from {rule.path} line {rule.line} once everyone it covers has a password.",
            (f"{', '.join(stuck)} {'has' if len(stuck) == 1 else 'have'} no usable password (locked or empty): "
             "without NOPASSWD sudo would ask for one that does not exist, and root would be lost. Set one first "
             f"(`passwd {stuck[0]}`), then remove NOPASSWD (`visudo -f {rule.path}`), or limit the rule to the "
             "commands needed.") if stuck else
            "The rule covers ALL users or a netgroup: who would lose root is not known from this host's files.")
    steps: list[Step] = []
    for offset, raw in enumerate(rule.raw):
        new = _ask_for_all(raw, first=offset == 0)
        if new != raw:
            steps.append(Edit(rule.path, rule.line + offset, raw, new))
    for line in rule.noauth:  # `Defaults:deploy !authenticate` turns the password off for every rule of deploy
        rest = re.sub(r"\s*,?\s*!\s*authenticate\b", "", line.text.split(None, 1)[1] if " " in line.text else "")
        rest = rest.strip().strip(",").strip()
        steps.append(Edit(line.path, line.line, line.text, line.text.split(None, 1)[0] + " " + rest) if rest
                     else DeleteLine(line.path, line.line, line.text))
    if not steps:
        return Remediation.by_hand(f"Remove NOPASSWD from {rule.path} line {rule.line} (`visudo -f {rule.path}`).",
                                   "NOPASSWD comes from an alias or Defaults: the line to change is not this one.")
    others = [n for n in covered if n != who]
    return Remediation(f"Make sudo ask for the password on {rule.path} line {rule.line}"
                       + (f" (this also applies to {', '.join(others)})" if others else "") + ".", tuple(steps))


@cache
def _backdoor_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """data/accounts/forced-commands.toml: what a forced command does that only a backdoor needs."""
    return tuple((p["what"], re.compile(p["regex"], re.IGNORECASE))
                 for p in load_toml("accounts/forced-commands.toml")["pattern"])


def _option(key: AuthorizedKey, name: str) -> str | None:
    """The value of ``name="..."`` on the key line (quotes removed), None when absent."""
    for option in key.options:
        k, eq, value = option.partition("=")
        if eq and k.lower() == name:
            return value.strip('"')
    return None


def forced_command_threat(command: str) -> list[str]:
    """What a forced command does that only a backdoor needs (empty for an ordinary one)."""
    return [what for what, regex in _backdoor_patterns() if regex.search(command)]


def _from_everyone(value: str) -> bool:
    """``from="*"`` (or a list with a bare ``*`` and no negation) lets every address in."""
    patterns = [p.strip() for p in value.split(",")]
    return "*" in patterns and not any(p.startswith("!") for p in patterns)


@check(id="accounts.ssh_key_unusual", severity="medium",
       summary="SSH authorized key with no comment, a suspicious forced command or source option, or in an "
               "unusual file",
       needs=(AUTHORIZED_KEYS,), tags=("T1098.004",),
       references=("https://man.openbsd.org/sshd#AUTHORIZED_KEYS_FILE_FORMAT",))
def ssh_key_unusual(ctx: Context) -> Iterator[Finding]:
    """Planted keys tend to lack a comment or sit in files only a modified AuthorizedKeysFile reads. A forced
    ``command=`` that downloads or runs code (curl | sh, /dev/tcp, base64 -d, nc) is a backdoor that runs at
    every logon with the key (high); ``from="*"`` looks like a restriction and restricts nothing."""
    keys = ctx.fact(AUTHORIZED_KEYS)
    unusual_files = {path for _, path, pattern in keys.files if pattern not in DEFAULT_KEY_FILES}
    for k in keys.keys:
        target = {"kind": "path", "path": k.path, "line": k.line, "user": k.user}
        reasons = []
        if not k.comment:
            reasons.append("no comment")
        command, source = _option(k, "command"), _option(k, "from")
        threat = forced_command_threat(command) if command is not None else []
        if threat:
            reasons.append(f"forced command that {'; '.join(threat)}: {command}")
        elif command is not None:
            reasons.append(f'forced command "{command}"')
        if source is not None:
            reasons.append(f'from="{source}" allows every address (restricts nothing)' if _from_everyone(source)
                           else f'from="{source}"')
        if k.path in unusual_files:
            reasons.append("file named only by a non-default AuthorizedKeysFile")
        if not reasons:
            continue
        severity = "high" if threat else "medium" if (k.path in unusual_files or not k.comment) else "info"
        yield ctx.finding(f"{k.key_type} key of '{k.user}' in {k.path}: {'; '.join(reasons)}", target,
                          evidence={"path": k.path, "line": k.line, "key_type": k.key_type,
                                    "key_tail": k.fingerprint_source, "options": list(k.options),
                                    "comment": k.comment, "authorized_keys_file": list(keys.patterns),
                                    "forced_command_does": threat},
                          severity=severity, remediation=_key_fix(k, bool(threat)))


def _key_fix(k: AuthorizedKey, backdoor: bool) -> Remediation:
    if backdoor:
        return Remediation(
            f"Delete line {k.line} of {k.path}: its forced command fetches or runs code at every logon with the key, "
            "which only a backdoor does. Then look for what it ran (`last`, the auth log, the URL it fetches) and "
            "for other planted keys.", (DeleteLine(k.path, k.line, k.raw),))
    return Remediation.by_hand(
        f"If you do not know this key, delete line {k.line} of {k.path}; give keys you know a comment naming "
        "their owner.",
        "Only you know whether this key is yours: deleting it unasked could lock you out, keeping a planted one "
        "leaves the door open.")


@check(id="accounts.new_since_last_scan", severity="medium",
       summary="Account new since the first scan, not yet accepted", needs=(ACCOUNTS, KNOWN_ACCOUNTS),
       tags=("T1136.001",))
def new_since_last_scan(ctx: Context) -> Iterator[Finding]:
    """A new account nobody announced is a classic sign of a break-in. The first scan that reads a host's
    accounts is the baseline; an account first seen after it is reported on every scan until the owner
    accepts its finding (``hostguard accept FINGERPRINT``) or ``[accounts] new_account_days`` have passed
    since it was first seen (0: until accepted). An account that is deleted and comes back is new again."""
    known = ctx.fact(KNOWN_ACCOUNTS)
    if known is None:
        return
    days = ctx.config[AccountsConfig].new_account_days
    for u in ctx.fact(ACCOUNTS).users:
        seen = known.accounts.get(u.name)
        if seen is not None and seen.baseline:
            continue
        first = known.now if seen is None else datetime.fromisoformat(seen.first_seen)
        until = first + timedelta(days=days) if days else None
        if until is not None and known.now >= until:
            continue
        target = _user(u.name)
        evidence: dict[str, object] = {"uid": u.uid, "shell": u.shell, "home": u.home, "line": u.line,
                                       "first_seen": first.isoformat(timespec="seconds")}
        if until is not None:
            evidence["reported_until"] = until.isoformat(timespec="seconds")
        yield ctx.finding(f"account '{u.name}' (UID {u.uid}) is new: first seen {first.date().isoformat()}", target,
                          evidence=evidence,
                          remediation=Remediation.by_hand(
                              f"Confirm who created '{u.name}' (`journalctl -g useradd`, /var/log/auth.log); if "
                              f"nobody did, disable it: `usermod -L -e 1 {u.name}`. If it is expected, accept it: "
                              f"`hostguard accept {fingerprint(ctx.spec.id, target)}`.",
                              "Only you know whether a new account was expected: locking a colleague's new "
                              "account unasked is as wrong as leaving an intruder's open."))


KEY_NEW = "accounts.ssh_key_new"


def _key_target(user: str, fp: str, options: tuple[str, ...] | None = None) -> dict[str, str]:
    """A key is its account and fingerprint (never its file or line: moving a line changes nothing); a change
    of its options is that plus the options it changed to, so accepting one change does not hide the next."""
    target = {"kind": "user", "user": user, "key": fp}
    if options is not None:
        target["options"] = _show_options(options)
    return target


def _by_key(keys: AuthorizedKeys) -> dict[tuple[str, str], list[AuthorizedKey]]:
    """The lines of each (account, fingerprint), in file order; lines whose blob is no key sshd could use are
    left out (they let nobody in)."""
    out: dict[tuple[str, str], list[AuthorizedKey]] = defaultdict(list)
    for k in keys.keys:
        if k.fingerprint:
            out[(k.user, k.fingerprint)].append(k)
    return dict(out)


def _key_options(lines: list[AuthorizedKey]) -> tuple[str, ...]:
    """The options of a key: one string per distinct line (options sorted within it), sorted; so moving,
    re-ordering or duplicating lines is no change, and adding or dropping an option is."""
    return tuple(sorted({",".join(sorted(k.options)) for k in lines}))


def _show_options(options: tuple[str, ...]) -> str:
    return " | ".join(o or "(no options)" for o in options) or "(no options)"


def _split_options(options: tuple[str, ...]) -> set[str]:
    """The single options of a key's option strings (quotes respected: a comma inside command="..." stays)."""
    return {o for text in options for o in split_key_options(text)[0] if o}


def _option_name(option: str) -> str:
    return option.partition("=")[0].strip().lower()


def _risky_options(options: set[str]) -> list[str]:
    """What in these options makes a key a backdoor: a forced command that fetches or runs code (it runs at
    every logon with the key), or ``environment=`` (variables such as LD_PRELOAD set for the logon shell)."""
    out: list[str] = []
    for option in sorted(options):
        name, _, value = option.partition("=")
        if name.strip().lower() == "command":
            threat = forced_command_threat(value.strip().strip('"'))
            if threat:
                out.append(f"a forced command that {'; '.join(threat)}")
        elif name.strip().lower() == "environment":
            out.append(f"sets {value.strip().strip(chr(34))} at every logon (environment=)")
    return out


def _account_risk(user: str, accounts: Accounts, capable: dict[str, Capable]) -> list[str]:
    """Why a key of this account matters more: it can become root, or it is a system account people do not
    log in as (a webshell plants keys in the web user's home)."""
    cap = capable.get(user)
    if cap is not None:
        return [f"'{user}' can become root ({', '.join(cap.why)})"]
    u = accounts.by_name().get(user)
    if u is not None and u.uid < accounts.uid_min:
        return [f"'{user}' is a system account (UID {u.uid} below UID_MIN {accounts.uid_min})"]
    return []


def _period(first: datetime, days: int, now: datetime) -> tuple[bool, datetime | None]:
    """Whether something first seen at ``first`` is still reported, and until when (None: until accepted)."""
    if not days:
        return True, None
    until = first + timedelta(days=days)
    return now < until, until


def _mtime(keys: AuthorizedKeys, path: str) -> str | None:
    m = keys.mtimes.get(path)
    return datetime.fromtimestamp(m, UTC).isoformat(timespec="seconds") if m is not None else None


def _lockout(user: str, fp: str, keys: AuthorizedKeys, capable: dict[str, Capable]) -> str | None:
    """Why removing or restricting this key could lock the owner out (None when it cannot): the account can
    become root, has no password it could log in with, and this is its only key without a forced command."""
    cap = capable.get(user)
    if cap is None or cap.password == "set":
        return None
    others = {k.fingerprint for k in keys.keys
              if k.user == user and k.fingerprint and k.fingerprint != fp and _option(k, "command") is None}
    if others:
        return None
    password = "its password is unknown (/etc/shadow unreadable)" if cap.password == "unknown" else \
        f"its password is {cap.password}"
    return (f"'{user}' can become root ({', '.join(cap.why)}), {password}, and this is its only key without a "
            "forced command: if it is the owner's, changing it unasked would leave no way to log in as "
            f"'{user}'. Add a key you control (or set a password with `passwd {user}`) first.")


def _restored_line(k: AuthorizedKey, options: str) -> str:
    """The key line with its options replaced by ``options`` (key type, blob and comment as written)."""
    line = k.raw.strip()
    rest = line if line.split()[0] in KEY_TYPES else split_key_options(line)[1]
    return f"{options} {rest}" if options else rest


@check(id=KEY_NEW, severity="medium",
       summary="SSH authorized key new since the first scan, or a known key's options changed, not yet accepted",
       needs=(AUTHORIZED_KEYS, KNOWN_KEYS, ACCOUNTS, ROOT_CAPABLE), tags=("T1098.004",),
       references=("https://man.openbsd.org/sshd#AUTHORIZED_KEYS_FILE_FORMAT",))
def ssh_key_new(ctx: Context) -> Iterator[Finding]:
    """A key added to an authorized_keys file is how intruders keep a way back in (ATT&CK T1098.004). The
    first scan that reads a host's keys is the baseline; a key (an account and the key's SHA256 fingerprint,
    as ``ssh-keygen -l`` prints it) first seen after it is reported on every scan until its finding is
    accepted (``hostguard accept FINGERPRINT``) or ``[accounts] new_key_days`` have passed (0: until
    accepted). Moving a line is no change; a key removed and added again is new again. A known key whose
    options change (``command=`` added, ``from=`` dropped) is reported too, as a change with its own
    fingerprint (accepting it does not hide the next change); putting the options back ends it.

    High instead of medium when the key lets in an account that can become root or a system account, or
    carries a forced command that fetches or runs code or ``environment=``. An account whose key files could
    not all be read is judged on what was read; its first complete read is a first look, not news."""
    known = ctx.fact(KNOWN_KEYS)
    if known is None:
        return
    keys = ctx.fact(AUTHORIZED_KEYS)
    accounts = ctx.fact(ACCOUNTS)
    capable = ctx.fact(ROOT_CAPABLE).by_name()
    days = ctx.config[AccountsConfig].new_key_days
    partial = keys.unread_users
    for (user, fp), lines in _by_key(keys).items():
        seen = known.history.keys.get((user, fp))
        options = _key_options(lines)
        if seen is None:
            if known.history.owners.get(user) is False and user not in partial:
                continue  # the first complete read of this account's keys: its baseline
            first: datetime | None = known.now
        else:
            first = None if seen.baseline else datetime.fromisoformat(seen.first_seen)
        if first is not None and (period := _period(first, days, known.now))[0]:
            yield _new_key(ctx, user, fp, lines, keys, first, period[1], accounts, capable)
        if seen is None:
            continue
        if options != seen.options and options == seen.previous_options:
            continue  # the change was undone (the fix put the options back)
        if options != seen.options:
            since, before = known.now, seen.options
        elif seen.options_since is not None:
            since, before = datetime.fromisoformat(seen.options_since), seen.previous_options or ("",)
        else:
            continue
        if (period := _period(since, days, known.now))[0]:
            yield _changed_key(ctx, user, fp, lines, keys, since, period[1], before, options, accounts, capable)


def _key_evidence(user: str, fp: str, lines: list[AuthorizedKey], keys: AuthorizedKeys, since: datetime,
                  until: datetime | None, why: list[str]) -> dict[str, object]:
    k = lines[0]
    evidence: dict[str, object] = {
        "user": user, "fingerprint": fp, "key_type": k.key_type, "bits": k.bits, "comment": k.comment,
        "lines": [{"path": x.path, "line": x.line, "mtime": _mtime(keys, x.path), "options": list(x.options)}
                  for x in lines],
        "first_seen": since.isoformat(timespec="seconds"), "why_high": why}
    if until is not None:
        evidence["reported_until"] = until.isoformat(timespec="seconds")
    return evidence


def _new_key(ctx: Context, user: str, fp: str, lines: list[AuthorizedKey], keys: AuthorizedKeys, first: datetime,
             until: datetime | None, accounts: Accounts, capable: dict[str, Capable]) -> Finding:
    k = lines[0]
    why = _account_risk(user, accounts, capable) + _risky_options(_split_options(_key_options(lines)))
    target = _key_target(user, fp)
    where = ", ".join(f"{x.path} line {x.line}" for x in lines)
    accept = f"If it is yours, accept it: `hostguard accept {fingerprint(ctx.spec.id, target)}`."
    lockout = _lockout(user, fp, keys, capable)
    remove = (f"If you do not know this key, remove it ({where}), then find how it got there (the auth log and "
              f"`last` around the file's mtime, and who else can write {k.path.rsplit('/', 1)[0]}). ")
    remediation = (Remediation.by_hand(remove + accept, lockout) if lockout is not None else
                   Remediation(remove + accept, tuple(DeleteLine(x.path, x.line, x.raw) for x in lines)))
    return ctx.finding(
        f"new SSH key for '{user}': {k.key_type} {fp} ({k.comment or 'no comment'}) in {k.path}, "
        f"first seen {first.date().isoformat()}", target,
        evidence=_key_evidence(user, fp, lines, keys, first, until, why),
        severity="high" if why else "medium", remediation=remediation)


def _changed_key(ctx: Context, user: str, fp: str, lines: list[AuthorizedKey], keys: AuthorizedKeys, since: datetime,
                 until: datetime | None, before: tuple[str, ...], after: tuple[str, ...], accounts: Accounts,
                 capable: dict[str, Capable]) -> Finding:
    k = lines[0]
    old, new = _split_options(before), _split_options(after)
    added, removed = sorted(new - old), sorted(old - new)
    why = _risky_options(new - old) + (_account_risk(user, accounts, capable) if removed else [])
    target = _key_target(user, fp, after)
    accept = f"If you changed them, accept the change: `hostguard accept {fingerprint(ctx.spec.id, target)}`."
    summary = (f"If you did not change the options of this key, put back the ones it had "
               f"({_show_options(before)}) and find who changed {k.path}. " + accept)
    lockout = _lockout(user, fp, keys, capable)
    if lockout is not None:
        remediation = Remediation.by_hand(summary, lockout)
    elif len(lines) == 1 and len(before) == 1:
        remediation = Remediation(summary, (Edit(k.path, k.line, k.raw, _restored_line(k, before[0])),))
    else:
        remediation = Remediation.by_hand(summary, "The key is on several lines now or was before: which line "
                                                   "should carry which options is yours to say.")
    evidence = _key_evidence(user, fp, lines, keys, since, until, why)
    evidence.pop("first_seen")
    evidence.update({"changed": since.isoformat(timespec="seconds"), "options_before": list(before),
                     "options_after": list(after), "added": added, "removed": removed})
    return ctx.finding(
        f"options of {user}'s {k.key_type} key {fp} changed: {_show_options(before)} -> {_show_options(after)}",
        target, evidence=evidence, severity="high" if why else "medium", remediation=remediation)


@check(id="accounts.malformed_line", severity="medium",
       summary="Malformed line in passwd, shadow or group", needs=(ACCOUNTS, SHADOW), tags=("T1564.002",))
def malformed_line(ctx: Context) -> Iterator[Finding]:
    """A line the account tools cannot parse is invisible to `getent` and most audits, yet some programs
    still read it: a place to hide an account, or damage worth repairing."""
    for bad in (*ctx.fact(ACCOUNTS).malformed, *ctx.fact(SHADOW).malformed):
        yield ctx.finding(f"{bad.path} line {bad.line} is malformed ({bad.reason})",
                          {"kind": "path", "path": bad.path, "line": bad.line},
                          evidence={"path": bad.path, "line": bad.line, "reason": bad.reason},
                          remediation=_malformed_fix(bad))


def _malformed_fix(bad: Malformed) -> Remediation:
    """Delete the line: the account tools and getent already ignore it, so nothing that works changes."""
    return Remediation(f"Delete line {bad.line} of {bad.path} (keep it as evidence first): getent and the login "
                       "tools already ignore it; if it was meant to be an account, add it again with useradd.",
                       (DeleteLine(bad.path, bad.line, bad.raw),))
