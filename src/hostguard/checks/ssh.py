"""Remote logon: the effective sshd configuration (``sshd -T``, or the files under --root)."""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from hostguard.config import setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding
from hostguard.host.sshd import SSHD, SSHD_FRESHNESS, SshdFacts, SshdView


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

DROPIN = "/etc/ssh/sshd_config.d/50-hostguard.conf"


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


@check(id="ssh.default_port", severity="low", summary="sshd listens on the default port 22",
       needs=(SSHD,), tags=("T1021.004",),
       references=("https://man.openbsd.org/sshd_config#Port",))
def default_port(ctx: Context) -> Iterator[Finding]:
    """The checklist moves remote logon off port 22: it cuts the noise of internet-wide scanners (it does
    not stop a targeted attacker, so it is low severity)."""
    facts: SshdFacts = ctx.fact(SSHD)
    if not ctx.config[SshConfig].report_default_port:
        return
    view = facts.global_view
    if "22" in view.all("port"):
        yield ctx.finding("sshd listens on port 22", _target(facts, "Port"),
                          evidence=_evidence(facts, view, ports=list(view.all("port"))),
                          remediation=f"Allow the new port in the firewall first, then put `Port 22022` (any unused "
                                      f"port) in {DROPIN}, `sshd -t && systemctl reload ssh`, and test a new session "
                                      "before closing this one.")


@check(id="ssh.root_password_login", severity="high", summary="root can log in with a password",
       needs=(SSHD,), tags=("T1110.001", "T1021.004"),
       references=("https://man.openbsd.org/sshd_config#PermitRootLogin",))
def root_password_login(ctx: Context) -> Iterator[Finding]:
    """PermitRootLogin yes with password or PAM keyboard-interactive auth lets the internet guess root's
    password; Match blocks are evaluated for root from an outside address."""
    facts: SshdFacts = ctx.fact(SSHD)
    for view in facts.views:
        if view.spec is None or view.spec.user != "root":
            continue
        paths = password_paths(view)
        if view.get("permitrootlogin") == "yes" and paths:
            yield ctx.finding("root can log in over SSH with a password", _target(facts, "PermitRootLogin"),
                              evidence=_evidence(facts, view, permitrootlogin="yes", via=paths),
                              remediation=f"Put `PermitRootLogin prohibit-password` in {DROPIN} (and in any Match "
                                          "block that sets it), then `sshd -t && systemctl reload ssh`.")
            return


@check(id="ssh.password_auth", severity="medium",
       summary="Password authentication enabled for root-capable accounts", needs=(SSHD,), tags=("T1110.001", "T1021.004"),
       references=("https://man.openbsd.org/sshd_config#PasswordAuthentication",))
def password_auth(ctx: Context) -> Iterator[Finding]:
    """Passwords can be guessed; keys cannot. Keyboard-interactive through PAM asks for the same password
    even with ``PasswordAuthentication no``."""
    facts: SshdFacts = ctx.fact(SSHD)
    reported: set[str] = set()
    for view in facts.views:
        if view.spec is None or view.spec.user in reported:
            continue
        if view.spec.user == "root" and view.get("permitrootlogin") not in ("yes",):
            continue
        paths = password_paths(view)
        if paths:
            reported.add(view.spec.user)
            fix = []
            if "password" in paths:
                fix.append("`PasswordAuthentication no`")
            if any("keyboard" in p for p in paths):
                fix.append("`KbdInteractiveAuthentication no`")
            yield ctx.finding(f"'{view.spec.user}' can log in over SSH with a password ({', '.join(paths)})",
                              {**_target(facts, "PasswordAuthentication"), "user": view.spec.user},
                              evidence=_evidence(facts, view, via=paths),
                              remediation=f"Install your public key first, then put {' and '.join(fix)} in {DROPIN} "
                                          "(and in Match blocks that override it); `sshd -t && systemctl reload ssh`.")


@check(id="ssh.empty_passwords", severity="critical", summary="sshd permits empty passwords",
       needs=(SSHD,), tags=("T1078.003", "T1021.004"),
       references=("https://man.openbsd.org/sshd_config#PermitEmptyPasswords",))
def empty_passwords(ctx: Context) -> Iterator[Finding]:
    """PermitEmptyPasswords yes lets accounts without a password log in remotely."""
    facts: SshdFacts = ctx.fact(SSHD)
    for view in facts.views:
        if view.get("permitemptypasswords") == "yes":
            yield ctx.finding("sshd permits login with an empty password", _target(facts, "PermitEmptyPasswords"),
                              evidence=_evidence(facts, view),
                              remediation=f"Set `PermitEmptyPasswords no` in {DROPIN}; `systemctl reload ssh`.")
            return


@check(id="ssh.weak_algorithms", severity="medium", summary="Weak SSH ciphers, MACs or key exchange",
       needs=(SSHD,), tags=("T1557",),
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
            yield ctx.finding(f"sshd enables weak {keyword}: {', '.join(bad)}", _target(facts, keyword),
                              evidence=_evidence(facts, view, weak=bad, enabled=enabled),
                              remediation=f"Put `{keyword} {keep}` in {DROPIN}; `systemctl reload ssh`.")


@check(id="ssh.max_auth_tries", severity="low", summary="High MaxAuthTries", needs=(SSHD,), tags=("T1110.001",),
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
                          remediation=f"Set `MaxAuthTries {limit}` in {DROPIN}; `systemctl reload ssh`.")


@check(id="ssh.config_not_reloaded", severity="low",
       summary="sshd config changed after sshd started (not reloaded)", needs=(SSHD_FRESHNESS,))
def config_not_reloaded(ctx: Context) -> Iterator[Finding]:
    """The running sshd still uses the old settings: what the files say is not what is in force."""
    fresh = ctx.fact(SSHD_FRESHNESS)
    if fresh is None or not fresh.newer_files:
        return
    yield ctx.finding("sshd runs with an older configuration than its files",
                      {"kind": "process", "process": "sshd"},
                      evidence={"pid": fresh.pid, "files": [f for f, _ in fresh.newer_files]},
                      remediation="`sshd -t && systemctl reload ssh` (keeps existing sessions).")
