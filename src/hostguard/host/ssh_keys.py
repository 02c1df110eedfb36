"""Which root-capable accounts could log in with a key right now: the guard against locking the owner out.

Turning off SSH password logon (or root's password logon) is only safe when someone who can become root
already has a key that sshd would accept *now*. sshd accepts a key when, for a connection from outside:

* the account may log in at all (a login shell; ``DenyUsers``/``AllowUsers``/``DenyGroups``/``AllowGroups``;
  for root ``PermitRootLogin`` other than ``no`` or ``forced-commands-only``);
* ``PubkeyAuthentication`` is on and ``AuthenticationMethods`` has a list that ``publickey`` alone completes;
* the key is in a file the effective ``AuthorizedKeysFile`` names, and that file and its directories up to
  the home directory pass ``StrictModes`` (owned by the user or root, not group- or world-writable);
* its type is in ``PubkeyAcceptedAlgorithms`` (ssh-dss is off by default);
* it has no forced ``command=`` and no ``from=`` that excludes the outside address.

The connection views come from the ``SSHD`` fact (``sshd -T -C`` live, the parsed files under --root), one
per root-capable account and probe address; a key counts only when every probe address may use it.
"""

from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hostguard.engine.facts import Fact, config_input
from hostguard.host.accounts import ACCOUNTS, SHADOW_IF_READABLE, Accounts, Shadow, User
from hostguard.host.authorized_keys import expand_key_file_pattern, parse_authorized_keys
from hostguard.host.base import Host, HostError
from hostguard.host.root_capable import password_state
from hostguard.host.sshd import SSHD, SshdFacts, SshdView, addr_match
from hostguard.host.sudoers import SUDOERS, SudoRule

if TYPE_CHECKING:
    from hostguard.checks.accounts import AccountsConfig

# the signature algorithms a key type can use (an RSA key signs with rsa-sha2-* as well as ssh-rsa)
KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}
DEFAULT_UNACCEPTED = ("ssh-dss",)  # what OpenSSH 9 leaves out of PubkeyAcceptedAlgorithms by default
ROOT_KEY_LOGIN = ("yes", "without-password", "prohibit-password")


@dataclass(frozen=True)
class KeyVerdict:
    """One key line (or one account without any) and whether sshd would accept it from outside now."""

    user: str
    path: str  # "" when the account has no key file sshd reads
    line: int  # 0 when the verdict is about the account, not one key
    usable: bool
    reason: str  # why not ("" when usable)

    def label(self) -> str:
        """user:path:line for evidence."""
        return f"{self.user}:{self.path}:{self.line}" if self.path else self.user


@dataclass(frozen=True)
class AdminKeys:
    """Every root-capable account's keys with the verdict; ``usable`` lists the keys sshd accepts now."""

    verdicts: tuple[KeyVerdict, ...]

    @property
    def usable(self) -> tuple[KeyVerdict, ...]:
        """The keys a root-capable account can log in with now."""
        return tuple(v for v in self.verdicts if v.usable)

    def refusals(self, user: str) -> list[str]:
        """Why each of ``user``'s keys (or the account) is refused."""
        return [v.reason for v in self.verdicts if v.user == user and not v.usable]


def _pattern(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _user_rule(view: SshdView, user: str, groups: set[str], addr: str) -> str:
    """Why DenyUsers/AllowUsers/DenyGroups/AllowGroups refuse the account ("" when they let it in)."""

    def user_hit(pattern: str) -> bool:
        upat, at, hpat = pattern.partition("@")
        return _pattern(user, upat) and (not at or addr_match(addr, hpat))

    deny = [p for p in view.all("denyusers") if user_hit(p)]
    if deny:
        return f"DenyUsers {deny[0]} refuses {user}"
    allow = view.all("allowusers")
    if allow and not any(user_hit(p) for p in allow):
        return f"AllowUsers {' '.join(allow)} does not name {user}"
    deny_groups = [p for p in view.all("denygroups") if any(_pattern(g, p) for g in groups)]
    if deny_groups:
        return f"DenyGroups {deny_groups[0]} refuses {user}"
    allow_groups = view.all("allowgroups")
    if allow_groups and not any(_pattern(g, p) for g in groups for p in allow_groups):
        return f"AllowGroups {' '.join(allow_groups)} names none of {user}'s groups"
    return ""


def _account_rule(view: SshdView, user: User, groups: set[str], addr: str, nologin: tuple[str, ...]) -> str:
    """Why sshd refuses every key of this account from ``addr`` ("" when keys are looked at)."""
    if user.shell in nologin:
        return f"{user.name} has no login shell ({user.shell or 'empty'})"
    if user.uid == 0 and (view.get("permitrootlogin") or "without-password") not in ROOT_KEY_LOGIN:
        who = "root's" if user.name == "root" else f"{user.name}'s (UID 0)"
        return f"PermitRootLogin {view.get('permitrootlogin')} refuses {who} keys"
    rule = _user_rule(view, user.name, groups, addr)
    if rule:
        return rule
    if (view.get("pubkeyauthentication") or "yes") != "yes":
        return "PubkeyAuthentication no"
    methods = " ".join(view.all("authenticationmethods")) or "any"
    if methods != "any" and not any(all(m == "publickey" for m in lst.split(",")) for lst in methods.split()):
        return f"AuthenticationMethods {methods}: publickey alone cannot complete a logon"
    return ""


def _type_accepted(view: SshdView, key_type: str) -> bool:
    configured = view.get("pubkeyacceptedalgorithms")
    algorithms = KEY_ALGORITHMS.get(key_type, (key_type,))
    if not configured or configured[0] in "+-^":
        if key_type in DEFAULT_UNACCEPTED:
            return configured.startswith(("+", "^")) and any(_pattern(key_type, p) for p in configured[1:].split(","))
        if configured.startswith("-"):
            return not all(any(_pattern(a, p) for p in configured[1:].split(",")) for a in algorithms)
        return True
    return any(_pattern(a, p) for a in algorithms for p in configured.split(","))


def _strict_modes(host: Host, path: str, user: User) -> str:
    """sshd's safe_path: the file and each directory up to the home directory owned by the user or root and
    not writable by group or others ("" when it passes)."""
    current = path
    while True:
        try:
            st = host.stat(current)
        except HostError as exc:
            return f"StrictModes: {exc}"
        if st.uid not in (0, user.uid):
            return f"StrictModes: {current} is owned by uid {st.uid}, not {user.name} or root"
        if st.mode & 0o022:
            return f"StrictModes: {current} is writable by group or others (mode {st.mode & 0o7777:04o})"
        if current == path and not st.is_file:
            return f"StrictModes: {current} is not a regular file"
        if current.rstrip("/") == user.home.rstrip("/") or current == "/":
            return ""
        current = current.rsplit("/", 1)[0] or "/"


def _key_rule(view: SshdView, options: tuple[str, ...], key_type: str, addr: str) -> str:
    for option in options:
        name, _, value = option.partition("=")
        name = name.lower()
        if name == "command":
            return f"forced command ({option})"
        if name == "from" and not addr_match(addr, value.strip('"')):
            return f"{option} excludes outside address {addr}"
    if not _type_accepted(view, key_type):
        return f"key type {key_type} is not in PubkeyAcceptedAlgorithms"
    return ""


def _verdicts_for(host: Host, view: SshdView, user: User, groups: set[str], nologin: tuple[str, ...],
                  cache: dict[str, str | None]) -> list[KeyVerdict]:
    assert view.spec is not None
    addr = view.spec.addr
    rule = _account_rule(view, user, groups, addr, nologin)
    if rule:
        return [KeyVerdict(user.name, "", 0, False, rule)]
    out: list[KeyVerdict] = []
    strict = (view.get("strictmodes") or "yes") != "no"
    for pattern in shlex.split(view.get("authorizedkeysfile") or ".ssh/authorized_keys .ssh/authorized_keys2"):
        if pattern.lower() == "none":
            continue
        path = expand_key_file_pattern(pattern, user.name, user.home, user.uid)
        if path not in cache:
            try:
                cache[path] = host.read_text(path)
            except HostError:
                cache[path] = None
        text = cache[path]
        if text is None:
            continue
        file_rule = _strict_modes(host, path, user) if strict else ""
        for key in parse_authorized_keys(text, user.name, path):
            why = file_rule or _key_rule(view, key.options, key.key_type, addr)
            out.append(KeyVerdict(user.name, path, key.line, not why, why))
    if not out:
        files = view.get("authorizedkeysfile") or ".ssh/authorized_keys .ssh/authorized_keys2"
        out.append(KeyVerdict(user.name, "", 0, False, f"no key in AuthorizedKeysFile ({files})"))
    return out


def root_way(user: User, accounts: Accounts, sudoers: tuple[SudoRule, ...] | None, shadow: Shadow | None) -> str:
    """Why ``user`` could NOT become root after logging in with a key ("" when it can).

    Being in an admin group is not enough: a sudo rule must give the account (or one of its groups) every
    command as root, and sudo must be able to ask for a password the account has, unless NOPASSWD.
    """
    if user.name == "root" or user.uid == 0:
        return ""
    if sudoers is None:
        return "sudoers cannot be read, so it is unknown whether the account can become root"
    groups = accounts.groups_of(user)
    rules = [r for r in sudoers if "ALL" in r.commands and ({"root", "ALL"} & set(r.runas))
             and any(w == user.name or (w.startswith("%") and w[1:] in groups) for w in r.who)]
    if not rules:
        return "no sudo rule gives the account every command as root"
    if any(r.nopasswd for r in rules):
        return ""
    entry = shadow.by_name().get(user.name) if shadow is not None else None
    if shadow is None:
        return "shadow cannot be read, so it is unknown whether sudo can ask for the account's password"
    if entry is None or password_state(entry.hash) != "set":
        return "the account's password is locked or empty, so sudo cannot ask for it"
    return ""


def collect_admin_keys(host: Host, sshd: SshdFacts, accounts: Accounts | None, sudoers: tuple[SudoRule, ...] | None,
                       shadow: Shadow | None, accounts_config: AccountsConfig) -> AdminKeys:
    """The verdict on every key of every root-capable account, for every probe address. A key counts only
    when its account can become root once logged in (root itself, or sudo for ALL with a password it has)."""
    if accounts is None:
        return AdminKeys((KeyVerdict("root", "", 0, False, "the accounts cannot be read"),))
    by_name = accounts.by_name()
    cache: dict[str, str | None] = {}
    per_user: dict[str, list[list[KeyVerdict]]] = {}
    for view in sshd.views:
        if view.spec is None or view.spec.user not in by_name:
            continue
        user = by_name[view.spec.user]
        no_root = root_way(user, accounts, sudoers, shadow)
        if no_root:
            per_user.setdefault(user.name, []).append([KeyVerdict(user.name, "", 0, False, no_root)])
            continue
        per_user.setdefault(user.name, []).append(
            _verdicts_for(host, view, user, accounts.groups_of(user), accounts_config.nologin_shells, cache))
    verdicts: list[KeyVerdict] = []
    for user_name, views in per_user.items():
        keys = dict.fromkeys((v.path, v.line) for seen in views for v in seen if v.path)
        if not keys:  # refused as an account, or no key at all: the first view's reason
            verdicts.append(views[0][0])
            continue
        for path, line in keys:
            # a key counts only when every outside address may use it: the first refusal is the reason
            reason = ""
            for seen in views:
                mine = [v for v in seen if (v.path, v.line) == (path, line)]
                if mine:
                    reason = mine[0].reason
                elif not seen[0].path:
                    reason = seen[0].reason
                else:
                    reason = "not in the AuthorizedKeysFile sshd reads for every outside address"
                if reason:
                    break
            verdicts.append(KeyVerdict(user_name, path, line, not reason, reason))
    return AdminKeys(tuple(verdicts))


USABLE_ADMIN_KEYS: Fact[AdminKeys] = Fact("usable_admin_keys", collect_admin_keys,
                                          inputs=(SSHD, ACCOUNTS.best_effort, SUDOERS.best_effort,
                                                  SHADOW_IF_READABLE.best_effort, config_input("accounts")))
