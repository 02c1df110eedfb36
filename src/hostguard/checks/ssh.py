"""Remote logon: the effective sshd configuration (``sshd -T``, or the files under --root)."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from hostguard.config import setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.facts import Fact
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding
from hostguard.host.root_capable import ROOT_CAPABLE, Capable
from hostguard.host.sockets import LISTENERS, Listener
from hostguard.host.ssh_keys import USABLE_ADMIN_KEYS, AdminKeys
from hostguard.host.ssh_socket import SSH_SOCKET, SshSocket
from hostguard.host.sshd import (
    SSHD,
    SSHD_FILES,
    SSHD_FRESHNESS,
    ConnSpec,
    ParsedConfig,
    SshdFacts,
    SshdView,
    occurrences,
    setting_line,
)
from hostguard.remediation import Command, Edit, Param, Remediation, Step, Write


@dataclass(frozen=True)
class SshConfig:
    """[ssh]: where sshd lives and what hostguard expects of it."""

    sshd: str = setting("sshd", "The sshd binary (found on PATH, then /usr/sbin).")
    config_file: str = setting("/etc/ssh/sshd_config", "sshd's main config file (a path inside the tree under --root).")
    max_auth_tries: int = setting(4, "Highest MaxAuthTries that is not a finding.", min=1)
    report_default_port: bool = setting(
        True, "Report port 22 (the checklist says: move remote logon off the default port).")
    probe_addresses: tuple[str, ...] = setting(
        ("192.0.2.10", "2001:db8::10"),
        "Remote addresses used to evaluate Match blocks with `sshd -T -C`: a documentation address stands for "
        '"somewhere on the internet".')

    def __post_init__(self) -> None:
        for address in self.probe_addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"probe_addresses: {address!r} is not an IP address") from None


FAMILY = Family("ssh", __doc__ or "", SshConfig)

DROPIN_DIR = "/etc/ssh/sshd_config.d"
DEFAULT_CONFIG = "/etc/ssh/sshd_config"
LOCKOUT = "no root-capable account has a key sshd would accept now: install one first with ssh-copy-id"


# -- fixes -------------------------------------------------------------------------------------------
#
# sshd keeps the FIRST value it reads (and, for a connection, the first value of a Match block that
# applies). So a fix edits the line in force today; only a built-in default gets a new line, in a drop-in
# of its own when sshd_config's Include reads it before every other occurrence of the keyword, else at the
# very top of sshd_config (before the Include and every Match block).

@dataclass(frozen=True)
class Want:
    """A keyword that must read ``value`` for each of ``specs`` (None: the global settings)."""

    keyword: str  # as sshd_config spells it
    value: str
    specs: tuple[ConnSpec | None, ...]


def _with_value(raw: str, value: str) -> str:
    """The same line (indentation and keyword spelling kept) with ``value``."""
    m = re.match(r"(\s*)([A-Za-z0-9]+)", raw)
    if m is None:  # cannot happen for a parsed setting line
        return raw
    return f"{m.group(1)}{m.group(2)} {value}"


def dropin_path(keyword: str) -> str:
    """The drop-in hostguard writes for one keyword (one per keyword, so fixes never overwrite each other)."""
    return f"{DROPIN_DIR}/00-hostguard-{keyword.lower()}.conf"


def dropin_read_first(parsed: ParsedConfig, config_file: str, keyword: str) -> bool:
    """Whether sshd would read our drop-in before every line that sets ``keyword`` (so its value wins)."""
    dropin = dropin_path(keyword)
    include = next((i for i in parsed.includes
                    if i.path == config_file and i.match is None and i.names(dropin)), None)
    if include is None:
        return False
    directory, _, name = dropin.rpartition("/")
    for index, line in occurrences(parsed, keyword):
        if index < include.index:
            return False
        ldir, _, lname = line.path.rpartition("/")
        if ldir == directory and lname < name and include.names(line.path):
            return False
    return True


def reload_steps(config_file: str) -> tuple[Command, ...]:
    """Check the files with sshd itself, then reload (existing sessions stay). ``sshd`` names the unit on
    Debian (an alias of ssh.service) and on RHEL, where there is no ``ssh``."""
    test = ("sshd", "-t") if config_file == DEFAULT_CONFIG else ("sshd", "-t", "-f", config_file)
    return Command(test), Command(("systemctl", "reload", "sshd"))


def fix_steps(parsed: ParsedConfig, config_file: str, wants: Iterable[Want]) -> tuple[Step, ...]:
    """The file steps that make each wanted value the one in force, then ``sshd -t`` and the reload."""
    edits: dict[tuple[str, int], Edit] = {}
    defaults: list[Want] = []
    for want in wants:
        for spec in want.specs:
            line = setting_line(parsed, want.keyword, spec)
            if line is None:
                if all(d.keyword != want.keyword for d in defaults):
                    defaults.append(want)
                continue
            raw = parsed.raw(line)
            edits[(line.path, line.number)] = Edit(line.path, line.number, raw, _with_value(raw, want.value))
    writes: list[Step] = []
    inserts: list[str] = []
    for want in defaults:
        if dropin_read_first(parsed, config_file, want.keyword):
            writes.append(Write(dropin_path(want.keyword), f"{want.keyword} {want.value}\n", "0644", "root:root"))
        else:
            inserts.append(f"{want.keyword} {want.value}")
    if inserts:
        first = edits.get((config_file, 1))
        lines = parsed.texts.get(config_file, ())
        if first is not None:
            edits[(config_file, 1)] = Edit(config_file, 1, first.old, "\n".join([*inserts, first.new]))
        elif lines:
            edits[(config_file, 1)] = Edit(config_file, 1, lines[0], "\n".join([*inserts, lines[0]]))
        else:
            writes.append(Write(config_file, "".join(f"{i}\n" for i in inserts), "0644", "root:root"))
    ordered = [edits[k] for k in sorted(edits)]
    return (*ordered, *writes, *reload_steps(config_file))


def _summary(wants: Iterable[Want]) -> str:
    return "Set " + " and ".join(f"`{w.keyword} {w.value}`" for w in wants) + " where sshd reads it first, check " \
        "with `sshd -t` and reload sshd (existing sessions stay)"


def _fix(facts: SshdFacts, parsed: ParsedConfig, *wants: Want) -> Remediation:
    return Remediation(_summary(wants), fix_steps(parsed, facts.config_file, wants))


def _guarded_fix(facts: SshdFacts, parsed: ParsedConfig, keys: AdminKeys, *wants: Want) -> Remediation:
    """A fix that turns a password logon off: steps only when a root-capable account can log in with a key."""
    if keys.usable:
        return _fix(facts, parsed, *wants)
    return Remediation.by_hand(_summary(wants), LOCKOUT)


def _key_evidence(keys: AdminKeys) -> dict[str, object]:
    return {"usable_admin_keys": [v.label() for v in keys.usable]}


def _target(facts: SshdFacts, setting: str) -> dict[str, str]:
    return {"kind": "config", "path": facts.config_file, "setting": setting}


def _evidence(facts: SshdFacts, view: SshdView, **extra: object) -> dict[str, object]:
    ev: dict[str, object] = {"source": facts.source, "connection": view.spec.label() if view.spec else "global"}
    if facts.note:
        ev["note"] = facts.note
    ev.update(extra)
    return ev


def password_paths(view: SshdView) -> list[str]:
    """How a password can be typed for this view: "password", "keyboard-interactive (PAM)"."""
    methods = view.get("authenticationmethods") or "any"
    if methods != "any" and all("password" not in m and "keyboard-interactive" not in m for m in methods.split()):
        return []
    paths = []
    if view.get("passwordauthentication") == "yes":
        paths.append("password")
    if view.get("kbdinteractiveauthentication") == "yes" and view.get("usepam") == "yes":
        paths.append("keyboard-interactive (PAM)")
    return paths


def collect_sshd_listening(host: object, listeners: tuple[Listener, ...] | None,
                           socket: SshSocket | None) -> tuple[int, ...] | None:
    """The TCP ports sshd accepts connections on now: sshd's own listeners, and systemd's on the ports of an
    enabled ssh.socket (empty: no sshd runs; None: not known, as under --root)."""
    if listeners is None:
        return None
    activated = set(socket.ports) if socket is not None and socket.enabled else set()
    return tuple(sorted({x.port for x in listeners if x.proto == "tcp" and (
        x.process == "sshd" or (x.process == "systemd" and x.port in activated))}))


SSHD_LISTENING: Fact[tuple[int, ...] | None] = Fact("sshd_listening", collect_sshd_listening,
                                                    inputs=(LISTENERS.best_effort, SSH_SOCKET.best_effort))


@check(id="ssh.default_port", severity="low", summary="sshd listens on the default port 22",
       needs=(SSHD, SSHD_FILES, SSHD_LISTENING), tags=("T1021.004",),
       references=("https://man.openbsd.org/sshd_config#Port",))
def default_port(ctx: Context) -> Iterator[Finding]:
    """The checklist moves remote logon off port 22: it cuts the noise of internet-wide scanners (it does
    not stop a targeted attacker, so it is low severity). The configured ports are those sshd would bind
    (a ``ListenAddress host:port`` overrides ``Port``); where sshd runs, its live listener is said too."""
    facts: SshdFacts = ctx.fact(SSHD)
    if not ctx.config[SshConfig].report_default_port:
        return
    view = facts.global_view
    configured = view.listen_ports()
    if 22 not in configured:
        return
    live = ctx.fact(SSHD_LISTENING)
    if live is None:
        title = "sshd is configured to listen on port 22"
    elif 22 in live:
        title = "sshd listens on port 22"
    elif live:
        title = f"sshd is configured for port 22 (it listens on {', '.join(map(str, live))} until it is reloaded)"
    else:
        title = "sshd is configured for port 22 (it is not running now)"
    parsed = ctx.fact(SSHD_FILES)
    line = setting_line(parsed, "Port", None)
    where = (f"change `{parsed.raw(line).strip()}` at {line.path} line {line.number} to `Port SSH_PORT`"
             if line is not None else
             f"add `Port SSH_PORT` as the first line of {facts.config_file} (22 is sshd's built-in default)")
    yield ctx.finding(title, _target(facts, "Port"),
                      evidence=_evidence(facts, view, ports=list(configured),
                                         **({} if live is None else {"listening": list(live)})),
                      remediation=Remediation.by_hand(
                          "Move sshd off port 22 to a port you choose",
                          "only you know which port is free and open in your firewall and your cloud provider's "
                          f"security group: allow SSH_PORT there first, then {where}, run `sshd -t` and "
                          "`systemctl reload sshd` (with ssh.socket, `systemctl daemon-reload` and "
                          "`systemctl restart ssh.socket`), and log in on the new port in a new session before "
                          "closing this one",
                          Param("SSH_PORT", "the port sshd should listen on instead of 22 (unused, allowed in the "
                                "firewall)", "22022")))


def _is_uid0(capable: Mapping[str, Capable], user: str) -> bool:
    """sshd applies PermitRootLogin to every UID 0 account, whatever its name."""
    account = capable.get(user)
    return account.is_root if account is not None else user == "root"


def _types_password(capable: Mapping[str, Capable], user: str) -> bool:
    """Whether a password typed for ``user`` could be accepted: it has one (or shadow is unreadable) and a
    login shell. A locked (``!``) or empty password cannot be typed in (empty ones are ssh.empty_passwords)."""
    account = capable.get(user)
    return account is None or (account.password in ("set", "unknown") and account.login_shell)


@check(id="ssh.root_password_login", severity="high", summary="root can log in with a password",
       needs=(SSHD, SSHD_FILES, USABLE_ADMIN_KEYS, ROOT_CAPABLE), tags=("T1110.001", "T1021.004"),
       references=("https://man.openbsd.org/sshd_config#PermitRootLogin",))
def root_password_login(ctx: Context) -> Iterator[Finding]:
    """PermitRootLogin yes with password or PAM keyboard-interactive auth lets the internet guess root's
    password; Match blocks are evaluated for root from an outside address. Every UID 0 account is root to
    sshd (PermitRootLogin applies to it); an account whose password is locked cannot be guessed."""
    facts: SshdFacts = ctx.fact(SSHD)
    capable = ctx.fact(ROOT_CAPABLE).by_name()
    bad = [view for view in facts.views if view.spec is not None and _is_uid0(capable, view.spec.user)
           and _types_password(capable, view.spec.user) and view.get("permitrootlogin") == "yes"
           and password_paths(view)]
    if bad:
        keys = ctx.fact(USABLE_ADMIN_KEYS)
        users = list(dict.fromkeys(v.spec.user for v in bad if v.spec is not None))
        who = "root" if users == ["root"] else f"{', '.join(users)} (UID 0)"
        want = Want("PermitRootLogin", "prohibit-password", tuple(v.spec for v in bad))
        yield ctx.finding(f"{who} can log in over SSH with a password", _target(facts, "PermitRootLogin"),
                          evidence=_evidence(facts, bad[0], permitrootlogin="yes", via=password_paths(bad[0]),
                                             accounts=users, **_key_evidence(keys)),
                          remediation=_guarded_fix(facts, ctx.fact(SSHD_FILES), keys, want))


@check(id="ssh.password_auth", severity="medium",
       summary="Password authentication enabled for root-capable accounts",
       needs=(SSHD, SSHD_FILES, USABLE_ADMIN_KEYS, ROOT_CAPABLE), tags=("T1110.001", "T1021.004"),
       references=("https://man.openbsd.org/sshd_config#PasswordAuthentication",))
def password_auth(ctx: Context) -> Iterator[Finding]:
    """Passwords can be guessed; keys cannot. Keyboard-interactive through PAM asks for the same password
    even with ``PasswordAuthentication no``. Root-capable accounts are the admin groups, sudo ALL, the
    docker/lxd/disk groups; UID 0 accounts are left to ssh.root_password_login, and an account whose
    password is locked or that has no login shell cannot log in with a password."""
    facts: SshdFacts = ctx.fact(SSHD)
    capable = ctx.fact(ROOT_CAPABLE).by_name()
    by_user: dict[str, list[SshdView]] = {}
    for view in facts.views:
        if view.spec is None or _is_uid0(capable, view.spec.user) or not _types_password(capable, view.spec.user):
            continue
        if password_paths(view):
            by_user.setdefault(view.spec.user, []).append(view)
    for user, views in by_user.items():
        paths = password_paths(views[0])
        keys = ctx.fact(USABLE_ADMIN_KEYS)
        wants = []
        password = tuple(v.spec for v in views if "password" in password_paths(v))
        keyboard = tuple(v.spec for v in views if any("keyboard" in p for p in password_paths(v)))
        if password:
            wants.append(Want("PasswordAuthentication", "no", password))
        if keyboard:
            wants.append(Want("KbdInteractiveAuthentication", "no", keyboard))
        why = list(capable[user].why) if user in capable else []
        yield ctx.finding(f"'{user}' can log in over SSH with a password ({', '.join(paths)})",
                          {**_target(facts, "PasswordAuthentication"), "user": user},
                          evidence=_evidence(facts, views[0], via=paths, root_capable_by=why, **_key_evidence(keys)),
                          remediation=_guarded_fix(facts, ctx.fact(SSHD_FILES), keys, *wants))


@check(id="ssh.empty_passwords", severity="critical", summary="sshd permits empty passwords",
       needs=(SSHD, SSHD_FILES), tags=("T1078.003", "T1021.004"),
       references=("https://man.openbsd.org/sshd_config#PermitEmptyPasswords",))
def empty_passwords(ctx: Context) -> Iterator[Finding]:
    """PermitEmptyPasswords yes lets accounts without a password log in remotely."""
    facts: SshdFacts = ctx.fact(SSHD)
    bad = [view for view in facts.views if view.get("permitemptypasswords") == "yes"]
    if bad:
        yield ctx.finding("sshd permits login with an empty password", _target(facts, "PermitEmptyPasswords"),
                          evidence=_evidence(facts, bad[0]),
                          remediation=_fix(facts, ctx.fact(SSHD_FILES),
                                           Want("PermitEmptyPasswords", "no", tuple(v.spec for v in bad))))


@check(id="ssh.weak_algorithms", severity="medium", summary="Weak SSH ciphers, MACs or key exchange",
       needs=(SSHD, SSHD_FILES), tags=("T1557",),
       references=("https://man.openbsd.org/sshd_config#Ciphers",))
def weak_algorithms(ctx: Context) -> Iterator[Finding]:
    """CBC ciphers, MD5/SHA1-96 MACs and SHA1 key exchange are broken or obsolete."""
    facts: SshdFacts = ctx.fact(SSHD)
    weak = load_toml("ssh/ssh-weak-algorithms.toml")
    view = facts.global_view
    for key, keyword in (("ciphers", "Ciphers"), ("macs", "MACs"), ("kexalgorithms", "KexAlgorithms")):
        enabled = [a for a in view.get(key).split(",") if a]
        bad = [a for a in enabled if any(fnmatch.fnmatchcase(a, p) for p in weak[key])]
        if bad:
            keep = ",".join(a for a in enabled if a not in bad)
            remediation = (_fix(facts, ctx.fact(SSHD_FILES), Want(keyword, keep, (None,))) if keep else
                           Remediation.by_hand(f"Choose {keyword} that are not weak",
                                               f"every {keyword} enabled now is weak: hostguard cannot choose the "
                                               "ones your clients support"))
            yield ctx.finding(f"sshd enables weak {keyword}: {', '.join(bad)}", _target(facts, keyword),
                              evidence=_evidence(facts, view, weak=bad, enabled=enabled), remediation=remediation)


@check(id="ssh.max_auth_tries", severity="low", summary="High MaxAuthTries", needs=(SSHD, SSHD_FILES), tags=("T1110.001",),
       references=("https://man.openbsd.org/sshd_config#MaxAuthTries",))
def max_auth_tries(ctx: Context) -> Iterator[Finding]:
    """Each connection may try this many passwords; a low number slows guessing."""
    facts: SshdFacts = ctx.fact(SSHD)
    limit = ctx.config[SshConfig].max_auth_tries
    view = facts.global_view
    value = view.get("maxauthtries")
    if value.isdigit() and int(value) > limit:
        yield ctx.finding(f"MaxAuthTries is {value} (at most {limit})", _target(facts, "MaxAuthTries"),
                          evidence=_evidence(facts, view, maxauthtries=int(value)),
                          remediation=_fix(facts, ctx.fact(SSHD_FILES), Want("MaxAuthTries", str(limit), (None,))))


@check(id="ssh.config_not_reloaded", severity="low",
       summary="sshd config changed after sshd started (not reloaded)", needs=(SSHD_FILES, SSHD_FRESHNESS))
def config_not_reloaded(ctx: Context) -> Iterator[Finding]:
    """The running sshd still uses the old settings: what the files say is not what is in force."""
    fresh = ctx.fact(SSHD_FRESHNESS)
    if fresh is None or not fresh.newer_files:
        return
    yield ctx.finding("sshd runs with an older configuration than its files",
                      {"kind": "process", "process": "sshd"},
                      evidence={"pid": fresh.pid, "files": [f for f, _ in fresh.newer_files]},
                      remediation=Remediation("Check the files with `sshd -t`, then reload sshd (existing sessions "
                                              "stay)", reload_steps(ctx.config[SshConfig].config_file)))
