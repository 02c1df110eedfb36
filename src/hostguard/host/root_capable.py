"""Who can become root: the accounts whose logon matters most.

An account is root-capable when it has UID 0, is in an admin group (``sudo``, ``wheel``: sudo is set up for
them), is named (itself or through a group) by a sudoers rule that runs ALL commands as root, with or without
NOPASSWD, or is in a group that is root by another door (``docker`` and ``lxd`` start a container with the
host's / mounted; ``disk`` reads and writes the raw disk). The SSH checks probe sshd for each of them and the
lockout guard counts their keys. The password state (locked, set, empty) and the login shell come along, so
a check can tell "can log in with a password" from "has a locked password" without reading shadow itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hostguard.engine.facts import Fact, config_input
from hostguard.host.accounts import ACCOUNTS, SHADOW_IF_READABLE, Accounts, Shadow
from hostguard.host.sudoers import SUDOERS, SudoRule

if TYPE_CHECKING:
    from hostguard.checks.accounts import AccountsConfig

LOCKED_PREFIXES = ("!", "*")


def password_state(hash_: str | None) -> str:
    """"set", "locked" (``!``/``*`` prefixed, or no shadow line), "empty", or "unknown" (None: unreadable)."""
    if hash_ is None:
        return "unknown"
    if hash_ == "":
        return "empty"
    if hash_.startswith(LOCKED_PREFIXES) or hash_ == "x":
        return "locked"
    return "set"


@dataclass(frozen=True)
class Capable:
    """One root-capable account."""

    name: str
    uid: int
    groups: tuple[str, ...]
    why: tuple[str, ...]   # "UID 0", "group sudo", "sudoers /etc/sudoers:21", "group docker"
    password: str          # password_state() of its shadow hash
    login_shell: bool      # False when its shell means "cannot log in"

    @property
    def is_root(self) -> bool:
        """UID 0: sshd applies PermitRootLogin to it, whatever its name."""
        return self.uid == 0


@dataclass(frozen=True)
class RootCapable:
    """Root and every account that can become root, in passwd order (root first)."""

    accounts: tuple[Capable, ...]

    def by_name(self) -> dict[str, Capable]:
        """Name -> account (the first passwd line of a duplicated name)."""
        out: dict[str, Capable] = {}
        for a in self.accounts:
            out.setdefault(a.name, a)
        return out


def _sudo_all(rules: tuple[SudoRule, ...]) -> list[SudoRule]:
    return [r for r in rules if "ALL" in r.commands and {"root", "ALL"} & set(r.runas)]


def collect_root_capable(host: object, accounts: Accounts, sudoers: tuple[SudoRule, ...] | None,
                         shadow: Shadow | None, cfg: AccountsConfig) -> RootCapable:
    """Every account that can become root and why; sudoers unreadable means only groups and UID 0 count."""
    hashes = {e.name: e.hash for e in shadow.entries} if shadow is not None else None
    admin, doors = set(cfg.admin_groups), set(cfg.root_groups)
    sudo = _sudo_all(sudoers or ())
    out: list[Capable] = []
    seen: set[str] = set()
    for user in accounts.users:
        if user.name in seen:
            continue
        groups = tuple(sorted(accounts.groups_of(user)))
        why: list[str] = []
        if user.uid == 0:
            why.append("UID 0")
        why += [f"group {g}" for g in groups if g in admin]
        why += [f"sudoers {r.path}:{r.line}" for r in sudo
                if user.name in r.who or "ALL" in r.who or any(w[1:] in groups for w in r.who if w.startswith("%"))]
        why += [f"group {g}" for g in groups if g in doors]
        if user.name == "root" and not why:
            why.append("root")
        if not why:
            continue
        seen.add(user.name)
        state = "unknown" if hashes is None else password_state(hashes.get(user.name, "!"))
        out.append(Capable(user.name, user.uid, groups, tuple(dict.fromkeys(why)), state,
                           user.shell not in cfg.nologin_shells))
    out.sort(key=lambda a: a.name != "root")
    return RootCapable(tuple(out))


ROOT_CAPABLE: Fact[RootCapable] = Fact("root_capable", collect_root_capable,
                                       inputs=(ACCOUNTS, SUDOERS.best_effort, SHADOW_IF_READABLE.best_effort,
                                               config_input("accounts")))
