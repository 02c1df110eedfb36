"""Hidden or unknown accounts: extra UID 0, empty passwords, shadow/passwd mismatches, duplicates,
service accounts that can log in, passwordless sudo, planted SSH keys, accounts new since the last scan."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from hostguard.config import setting
from hostguard.engine.context import Context
from hostguard.engine.facts import HOST_ID, STATE, Fact
from hostguard.engine.registry import Family, check
from hostguard.engine.runner import ScanEnd
from hostguard.findings import Finding, HostId
from hostguard.host.accounts import ACCOUNTS, SHADOW, Accounts, Shadow
from hostguard.host.authorized_keys import AUTHORIZED_KEYS, DEFAULT_KEY_FILES
from hostguard.host.sudoers import SUDOERS
from hostguard.store.state import StateStore


@dataclass(frozen=True)
class AccountsConfig:
    """[accounts]: who the admins are and which shells mean "cannot log in"."""

    admin_groups: tuple[str, ...] = setting(
        ("sudo", "wheel", "admin", "root"),
        "Groups whose members may be root-capable admins (sudo without password is expected of them).")
    nologin_shells: tuple[str, ...] = setting(
        ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/sync", "/usr/bin/nologin", ""),
        'Shells that mean "cannot log in".')
    shell_allowed: tuple[str, ...] = setting(("root", "sync"), "Service accounts that legitimately have a login shell.")


def _known_accounts(host: object, state: StateStore, host_id: HostId) -> dict[str, str] | None:
    """Account names earlier scans of this host saw (None before the first scan)."""
    return state.known_accounts(host_id.id)


KNOWN_ACCOUNTS: Fact[dict[str, str] | None] = Fact("known_accounts", _known_accounts, inputs=(STATE, HOST_ID))


def remember_accounts(end: ScanEnd) -> None:
    """After a scan that looked for new accounts, record the accounts present, so the next scan can say which
    are new. A scan that did not run that check records nothing: it never reported what it would baseline."""
    if "accounts.new_since_last_scan" in end.ran and end.facts.loaded(ACCOUNTS):
        accounts = end.facts.get(ACCOUNTS)
        end.state.remember_accounts(end.host.id, [(u.name, u.uid) for u in accounts.users], end.started)


FAMILY = Family("accounts", __doc__ or "", AccountsConfig, after_scan=remember_accounts)


def _user(name: str) -> dict[str, str]:
    return {"kind": "user", "user": name}


@check(id="accounts.extra_uid0", severity="critical", summary="Account other than root has UID 0",
       needs=(ACCOUNTS,), tags=("T1136.001", "T1078.003"))
def extra_uid0(ctx: Context) -> Iterator[Finding]:
    """Any account with UID 0 is root under another name; attackers add one to keep access."""
    accounts: Accounts = ctx.fact(ACCOUNTS)
    for u in accounts.users:
        if u.uid == 0 and u.name != "root":
            yield ctx.finding(f"account '{u.name}' has UID 0 (full root rights)", _user(u.name),
                              evidence={"path": "/etc/passwd", "line": u.line, "uid": 0, "shell": u.shell},
                              remediation=f"If '{u.name}' is not yours: `usermod -L {u.name}` and investigate; "
                                          f"otherwise give it its own UID (`usermod -u NEWUID {u.name}`).")


@check(id="accounts.empty_password", severity="critical",
       summary="Account with an empty password field", needs=(ACCOUNTS, SHADOW), tags=("T1078.003",))
def empty_password(ctx: Context) -> Iterator[Finding]:
    """An empty password field lets anyone log in as that account without a password."""
    accounts: Accounts = ctx.fact(ACCOUNTS)
    shadow: Shadow = ctx.fact(SHADOW)
    for e in shadow.entries:
        if e.hash == "":
            yield ctx.finding(f"account '{e.name}' has no password: anyone can log in as it", _user(e.name),
                              evidence={"path": "/etc/shadow", "line": e.line},
                              remediation=f"`passwd -l {e.name}` to lock it, or `passwd {e.name}` to set one.")
    for u in accounts.users:
        if u.password == "":
            yield ctx.finding(f"account '{u.name}' has an empty password field in /etc/passwd", _user(u.name),
                              evidence={"path": "/etc/passwd", "line": u.line},
                              remediation=f"`pwconv` to move hashes to /etc/shadow, then `passwd -l {u.name}`.")


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
                              remediation="Run `pwck` and remove the stray line with `vipw -s` once investigated.")


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
                              remediation="Run `pwck` and `pwconv`; find out who added the account.")


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
                              remediation="Remove or rename the extra lines with `vipw`.")
    for uid, names in by_uid.items():
        if len(names) > 1 and uid != 0:
            yield ctx.finding(f"UID {uid} is shared by {', '.join(names)}",
                              {"kind": "user", "user": ",".join(sorted(names)), "problem": "uid", "uid": uid},
                              evidence={"uid": uid, "accounts": names},
                              remediation="Give each account its own UID (`usermod -u NEWUID NAME`).")


@check(id="accounts.service_shell", severity="medium",
       summary="Service account with a login shell and a usable password", needs=(ACCOUNTS, SHADOW), tags=("T1078.003",))
def service_shell(ctx: Context) -> Iterator[Finding]:
    """System accounts (UID below UID_MIN) should not log in; one with a shell and a password is a door."""
    accounts: Accounts = ctx.fact(ACCOUNTS)
    shadow = ctx.fact(SHADOW).by_name()
    cfg = ctx.config[AccountsConfig]
    for u in accounts.users:
        if u.uid == 0 or u.uid >= accounts.uid_min or u.name in cfg.shell_allowed:
            continue
        if u.shell in cfg.nologin_shells:
            continue
        entry = shadow.get(u.name)
        usable = entry is not None and entry.hash not in ("*", "!", "!!", "!*") and not entry.hash.startswith("!")
        if usable:
            yield ctx.finding(f"service account '{u.name}' (UID {u.uid}) has shell {u.shell} and a password",
                              _user(u.name), evidence={"uid": u.uid, "shell": u.shell, "path": "/etc/passwd",
                                                       "line": u.line},
                              remediation=f"`usermod -s /usr/sbin/nologin {u.name}` and `passwd -l {u.name}`.")


@check(id="accounts.sudo_nopasswd", severity="high",
       summary="Passwordless root through sudo for a non-admin account", needs=(ACCOUNTS, SUDOERS), tags=("T1548.003",),
       references=("https://www.sudo.ws/docs/man/sudoers.man/",))
def sudo_nopasswd(ctx: Context) -> Iterator[Finding]:
    """NOPASSWD: ALL as root turns any compromise of that account into root without a password."""
    accounts: Accounts = ctx.fact(ACCOUNTS)
    admin = set(ctx.config[AccountsConfig].admin_groups)
    users = accounts.by_name()
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
                              remediation=f"Remove NOPASSWD from {rule.path} line {rule.line} (edit with "
                                          f"`visudo -f {rule.path}`), or limit it to the commands needed.")


@check(id="accounts.ssh_key_unusual", severity="medium",
       summary="SSH authorized key with no comment, forced command/source options, or in an unusual file",
       needs=(AUTHORIZED_KEYS,), tags=("T1098.004",),
       references=("https://man.openbsd.org/sshd#AUTHORIZED_KEYS_FILE_FORMAT",))
def ssh_key_unusual(ctx: Context) -> Iterator[Finding]:
    """Planted keys tend to lack a comment or sit in files only a modified AuthorizedKeysFile reads;
    command= and from= options can hide a backdoor or a restriction worth knowing about."""
    keys = ctx.fact(AUTHORIZED_KEYS)
    unusual_files = {path for _, path, pattern in keys.files if pattern not in DEFAULT_KEY_FILES}
    for k in keys.keys:
        target = {"kind": "path", "path": k.path, "line": k.line, "user": k.user}
        reasons = []
        if not k.comment:
            reasons.append("no comment")
        opts = [o for o in k.options if o.split("=", 1)[0].lower() in ("command", "from")]
        if opts:
            reasons.append("options " + ",".join(opts))
        if k.path in unusual_files:
            reasons.append("file named only by a non-default AuthorizedKeysFile")
        if not reasons:
            continue
        severity = "medium" if (k.path in unusual_files or not k.comment) else "info"
        yield ctx.finding(f"{k.key_type} key of '{k.user}' in {k.path}: {'; '.join(reasons)}", target,
                          evidence={"path": k.path, "line": k.line, "key_type": k.key_type,
                                    "key_tail": k.fingerprint_source, "options": list(k.options),
                                    "comment": k.comment, "authorized_keys_file": list(keys.patterns)},
                          severity=severity,
                          remediation=f"Check that you know this key; if not, remove line {k.line} of {k.path}. "
                                      "Give known keys a comment naming their owner.")


@check(id="accounts.new_since_last_scan", severity="medium",
       summary="Account created since the previous scan", needs=(ACCOUNTS, KNOWN_ACCOUNTS), tags=("T1136.001",))
def new_since_last_scan(ctx: Context) -> Iterator[Finding]:
    """A new account nobody announced is a classic sign of a break-in. The first scan records the baseline."""
    known = ctx.fact(KNOWN_ACCOUNTS)
    if known is None:
        return
    for u in ctx.fact(ACCOUNTS).users:
        if u.name not in known:
            yield ctx.finding(f"account '{u.name}' (UID {u.uid}) is new since the previous scan", _user(u.name),
                              evidence={"uid": u.uid, "shell": u.shell, "home": u.home, "line": u.line},
                              remediation=f"Confirm who created '{u.name}' (`journalctl -g useradd`, "
                                          "/var/log/auth.log); lock it with `usermod -L` if unknown.")


@check(id="accounts.malformed_line", severity="medium",
       summary="Malformed line in passwd, shadow or group", needs=(ACCOUNTS, SHADOW), tags=("T1564.002",))
def malformed_line(ctx: Context) -> Iterator[Finding]:
    """A line the account tools cannot parse is invisible to `getent` and most audits, yet some programs
    still read it: a place to hide an account, or damage worth repairing."""
    for bad in (*ctx.fact(ACCOUNTS).malformed, *ctx.fact(SHADOW).malformed):
        yield ctx.finding(f"{bad.path} line {bad.line} is malformed ({bad.reason})",
                          {"kind": "path", "path": bad.path, "line": bad.line},
                          evidence={"path": bad.path, "line": bad.line, "reason": bad.reason},
                          remediation=f"Inspect line {bad.line} of {bad.path} (`vipw`/`vigr`, `pwck -r`, `grpck -r`) "
                                      "and repair or remove it.")
