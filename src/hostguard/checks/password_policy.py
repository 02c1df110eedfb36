"""Password policy: what login.defs and the PAM password stacks let a new password be.

Every password stack the host has is checked (Debian: common-password; RHEL and Fedora: system-auth for
local logins and password-auth for sshd). Stacks whose problem is decided at the same place (one
pwquality.conf line, one login.defs line) share one finding; a problem on a stack's own PAM line is that
stack's finding, so a Debian host's targets are what they always were. Where authselect generates the
PAM files (links into /etc/authselect/), changes to PAM lines are given by hand the authselect way, while
changes to pwquality.conf and login.defs stay exact steps.

Only what the host has is judged: on a tree that is not an OS (no passwd, login.defs or pam.d) every check
is skipped as unsupported; a stack with nothing that checks passwords, or no pam_unix and no ENCRYPT_METHOD,
is skipped for that part; pam_unix's own defaults count only where pam_unix is on the stack. The auth
stacks are read for pam_unix's ``nullok`` (empty passwords accepted).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from hostguard.config import setting
from hostguard.engine.context import Context
from hostguard.engine.facts import Fact
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, SkipReason
from hostguard.host.accounts import ACCOUNTS, SHADOW, Accounts, Shadow
from hostguard.host.base import Host
from hostguard.host.pam import (
    LOGIN_DEFS,
    PAM,
    PAM_AUTH,
    PAM_UNIX_HASHES,
    EffectivePolicy,
    LoginDefs,
    PamAuth,
    PamLine,
    PamPolicy,
    PamStack,
    Setting,
    effective_policy,
    is_nullok,
    quality_module,
    unix_hash_option,
    unix_nullok,
)
from hostguard.remediation import Command, Edit, Param, Remediation, Step, Write


@dataclass(frozen=True)
class PasswordPolicyConfig:
    """[password_policy]: what a new password must be."""

    min_length: int = setting(8, "Shortest acceptable new password.", min=1)
    min_classes: int = setting(4, "Character classes (upper, lower, digits, others) a new password needs.", min=0, max=4)
    good_methods: tuple[str, ...] = setting(("yescrypt", "gost-yescrypt", "sha512", "bcrypt"),
                                            "Hash methods that are acceptable for new passwords.")
    min_sha_rounds: int = setting(5000, "SHA-crypt rounds below this are a finding (5000 is glibc's default).", min=0)
    max_days: int = setting(365, "PASS_MAX_DAYS above this is a finding (99999 means never expires).", min=0)
    min_days: int = setting(1, "PASS_MIN_DAYS below this is a finding.", min=0)
    warn_age: int = setting(7, "PASS_WARN_AGE below this is a finding.", min=0)


FAMILY = Family("password_policy", __doc__ or "", PasswordPolicyConfig)

WEAK_METHODS = {"des": "critical", "md5": "high", "sha256": "medium"}
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")
PWQ_CONF = "/etc/security/pwquality.conf"
PWQ_DROPIN = "/etc/security/pwquality.conf.d/00-hostguard-{key}.conf"
CREDITS = ("dcredit", "ucredit", "lcredit", "ocredit")
# The line RHEL's own profiles put above pam_unix (pam_pwquality.so ships in libpwquality, which RHEL's
# pam package requires, so the module is there whenever the stack is).
RHEL_PWQUALITY = "password    requisite                                    pam_pwquality.so local_users_only"
CUSTOM_PROFILE = "hostguard"

Member = tuple[PamStack, EffectivePolicy]


def _members(ctx: Context, part: str) -> tuple[PamPolicy, LoginDefs, list[Member]]:
    """Each password stack with the policy it enforces, where ``part`` ("quality" or "method") can be known;
    a stack (or the host without one) where it cannot is recorded as skipped with the reason, never judged
    on a default."""
    pam: PamPolicy = ctx.fact(PAM)
    defs: LoginDefs = ctx.fact(LOGIN_DEFS)
    members: list[Member] = []
    for stack in pam.stacks or (pam.stack(),):
        policy = effective_policy(pam, defs, stack)
        why = policy.quality_unknown if part == "quality" else policy.method_unknown
        if why:
            ctx.skip(SkipReason.UNSUPPORTED, why, stack.path if pam.stacks else "")
        else:
            members.append((stack, policy))
    return pam, defs, members


def _grouped(members: list[Member], at: Callable[[EffectivePolicy], Setting]) -> list[tuple[str, list[Member]]]:
    """Stacks grouped by the file that decides the problem (the stack itself for a built-in default)."""
    groups: dict[str, list[Member]] = {}
    for stack, policy in members:
        groups.setdefault(at(policy).path or stack.path, []).append((stack, policy))
    return list(groups.items())


def _via(pam: PamPolicy, group: list[Member]) -> str:
    """`` (system-auth and password-auth)`` on a host with several stacks; nothing on Debian's one."""
    if len(pam.stacks) < 2:
        return ""
    return " (" + " and ".join(os.path.basename(s.path) for s, _ in group) + ")"


class _Edits:
    """Changes to whole lines, gathered so that one line is edited by one step whatever changes it.

    A line in a file reached through a symlink is never an Edit (apply.py refuses links, and authselect
    regenerates its files): it is kept apart and said by hand in :meth:`remediation`.
    """

    def __init__(self, pam: PamPolicy) -> None:
        self.pam = pam
        self.lines: dict[tuple[str, int], tuple[str, str]] = {}  # (path, line) -> (old, new)
        self.links = {ln.path: ln.link for s in pam.stacks for ln in s.lines if ln.link}
        self.writes: list[Write] = []
        self.commands: list[Command] = []

    def current(self, path: str, line: int, old: str) -> str:
        return self.lines.get((path, line), (old, old))[1]

    def set(self, path: str, line: int, old: str, new: str) -> None:
        self.lines[(path, line)] = (old, new)

    def write(self, step: Write) -> None:
        if step not in self.writes:
            self.writes.append(step)

    def pam_arg(self, pam_line: PamLine, key: str, value: str | None) -> None:
        """Set ``key=value`` (a bare option when value is None) on a PAM line, in place or appended."""
        option = key if value is None else f"{key}={value}"

        def change(args: list[str]) -> list[str]:
            if any(a.partition("=")[0] == key for a in args):
                return [option if a.partition("=")[0] == key else a for a in args]
            return [*args, option]
        self._args(pam_line, change)

    def pam_hash(self, pam_line: PamLine, new: str) -> None:
        """Make ``new`` pam_unix's only hash option, where the first one stands (pam_unix keeps the last of
        several, so the others are dead or, like a trailing ``md5``, the weak one in force)."""
        def is_hash(a: str) -> bool:
            return any(a.startswith(token) for token, _ in PAM_UNIX_HASHES)

        def change(args: list[str]) -> list[str]:
            first = next((i for i, a in enumerate(args) if is_hash(a)), None)
            if first is None:
                return [*args, new]
            return [new if i == first else a for i, a in enumerate(args) if i == first or not is_hash(a)]
        self._args(pam_line, change)

    def _args(self, pam_line: PamLine, change: Callable[[list[str]], list[str]]) -> None:
        text = self.current(pam_line.path, pam_line.line, pam_line.raw)
        body, hash_, comment = text.partition("#")
        at = body.index(pam_line.module) + len(pam_line.module)
        args = change(body[at:].split())
        new = body[:at] + "".join(f" {a}" for a in args) + (f" #{comment}" if hash_ else "")
        self.set(pam_line.path, pam_line.line, pam_line.raw, new)

    def remediation(self, summary: str) -> Remediation:
        """The steps, plus by hand what must change in linked (authselect) files."""
        edits: list[Step] = [Edit(path, line, old, new) for (path, line), (old, new) in sorted(self.lines.items())
                             if old != new and path not in self.links]
        linked = {k: v for k, v in sorted(self.lines.items()) if v[0] != v[1] and k[0] in self.links}
        steps = (*self.commands, *edits, *self.writes)
        if not linked:
            return Remediation(summary, steps)
        reason, params = _by_hand(self.pam, self.links, linked)
        return Remediation(summary, steps, reason, params)


def _squeeze(line: str) -> str:
    return " ".join(line.split())


def _change_text(old: str, new: str) -> str:
    lines = new.split("\n")
    if len(lines) > 1 and old in lines:
        before = lines[:lines.index(old)]
        return "insert " + ", ".join(f"`{_squeeze(x)}`" for x in before) + f" above `{_squeeze(old)}`"
    return f"the line `{_squeeze(old)}` must read `{_squeeze(new)}`"


def _by_hand(pam: PamPolicy, links: dict[str, str],
             changes: dict[tuple[str, int], tuple[str, str]]) -> tuple[str, tuple[Param, ...]]:
    """Why PAM-line changes in linked files are by hand, and how: the authselect way when authselect
    generates them (a custom profile, then select it), else in the file the link leads to."""
    files = sorted({path for path, _ in changes})
    names = [os.path.basename(p) for p in files]
    what = "; ".join(f"in {os.path.basename(path)}, {_change_text(old, new)}"
                     for (path, _), (old, new) in changes.items())
    a = pam.authselect
    managed = all(any(ln.path == p and pam.managed(ln) for s in pam.stacks for ln in s.lines) for p in files)
    if a is None or not managed:
        where = ", ".join(f"{p} -> {links[p]}" for p in files)
        return (f"{where}: the PAM file is a symlink and hostguard never writes through one. Make the change in "
                f"the file the link leads to (or replace the link with a file): {what}.", ())
    verb = "is" if len(files) == 1 else "are"
    intro = (f"{' and '.join(files)} {verb} generated by authselect (links into /etc/authselect/): a hand edit "
             "is undone by the next `authselect apply-changes` or update, and hostguard never writes through "
             "a link. ")
    if a.profile.startswith("custom/"):
        templates = " and ".join(f"/etc/authselect/{a.profile}/{n}" for n in names)
        return (intro + f"The profile in use is {a.profile}: make the change in its templates {templates} ({what}), "
                "then run `authselect apply-changes` and `authselect check`.", ())
    templates = " and ".join(f"/etc/authselect/custom/{CUSTOM_PROFILE}/{n}" for n in names)
    if a.profile:
        create = shlex.join(["authselect", "create-profile", CUSTOM_PROFILE, "-b", a.profile, "--symlink-meta"])
        select = shlex.join(["authselect", "select", f"custom/{CUSTOM_PROFILE}", *a.features])
        return (intro + f"Profile {a.profile} is the vendor's and cannot be edited (a line that differs from "
                "the profile's own was edited by hand: `authselect check` says so). Carry the change in a "
                f"custom profile: run `{create}`; make the change in {templates} ({what}); then run `{select}` "
                "(the features in use today) and `authselect check`.", ())
    base = Param("PROFILE", "the authselect profile in use, as `authselect current` names it", "sssd")
    return (intro + "authselect.conf is missing, so the profile in use is unknown: run `authselect current`, then "
            f"`authselect create-profile {CUSTOM_PROFILE} -b PROFILE --symlink-meta`; make the change in {templates} "
            f"({what}); "
            f"then `authselect select custom/{CUSTOM_PROFILE}` with the features `authselect current` listed, "
            "and `authselect check`.", (base,))


Fix = Callable[[PamStack, _Edits], "str | Remediation"]


def _fix_group(pam: PamPolicy, group: list[Member], fix: Fix) -> Remediation:
    """One remediation for every stack of a finding: each line edited once, each summary said once."""
    edits = _Edits(pam)
    said: list[str] = []
    for stack, _ in group:
        out = fix(stack, edits)
        if isinstance(out, Remediation):
            return out
        if out not in said:
            said.append(out)
    return edits.remediation(" ".join(said))


def _set_conf(edits: _Edits, pam: PamPolicy, key: str, value: int) -> None:
    """Make pwquality's ``key`` read ``value``: edit the line in force, else a drop-in that wins because no
    file sets the key (libpwquality reads pwquality.conf.d/*.conf first, then pwquality.conf, last one wins)."""
    at = pam.pwquality.get(key)
    if at is not None and at.path and at.line and at.raw is not None:
        edits.set(at.path, at.line, at.raw, f"{key} = {value}")
    else:
        edits.write(Write(PWQ_DROPIN.format(key=key), f"# written by hostguard: {key} for new passwords\n"
                                                      f"{key} = {value}\n"))


def _quality_fix(pam: PamPolicy, stack: PamStack, ctx: Context, what: str, edits: _Edits) -> str | Remediation:
    """Steps that make the stack's quality module require ``what`` ("length" or "classes")."""
    cfg = ctx.config[PasswordPolicyConfig]
    want_len, want_cls = cfg.min_length, cfg.min_classes
    quality = quality_module(stack)
    line = stack.module(quality) if quality else None
    if quality == "pam_passwdqc.so" and line is not None:
        n = str(want_len)
        # min=N0,N1,N2,N3,N4: one class, two classes, passphrase, three classes, four classes
        spec = {4: ["disabled"] * 4 + [n], 3: ["disabled"] * 3 + [n, n], 2: ["disabled", n, "disabled", n, n]}.get(
            want_cls, [n, n, "disabled", n, n])
        edits.pam_arg(line, "min", ",".join(spec))
        return (f"Require {want_len}+ characters and {want_cls} classes in pam_passwdqc's min= on "
                f"{line.path} line {line.line}.")
    if quality in ("pam_pwquality.so", "pam_cracklib.so") and line is not None:
        cracklib = quality == "pam_cracklib.so"
        if what == "length":
            keys = [("minlen", max(want_len, _current(pam, line, "minlen", cracklib)))] + [
                (c, 0) for c in CREDITS if (line.arg(c) is None and cracklib) or _positive(pam, line, c)]
        else:
            keys = [("minclass", max(want_cls, _current(pam, line, "minclass", cracklib)))]
        for key, value in keys:
            if line.arg(key) is not None or cracklib:  # an option on the PAM line overrides pwquality.conf
                edits.pam_arg(line, key, str(value))
            else:
                _set_conf(edits, pam, key, value)
        said = ", ".join(f"{k}={v}" for k, v in keys)
        return f"Make {quality} require {said} where each is set today."
    if stack.path.endswith("/common-password"):  # Debian: the package's pam-auth-update adds the line
        key, want = ("minlen", want_len) if what == "length" else ("minclass", want_cls)
        _set_conf(edits, pam, key, max(want, _conf_number(pam, key)))
        install = Command(("apt-get", "install", "-y", "libpam-pwquality"), live_only=True,
                          undo=("apt-get", "remove", "-y", "libpam-pwquality"), reversible=True)
        if install not in edits.commands:
            edits.commands.append(install)
        return ("No password quality module is in the PAM stack: install libpam-pwquality (its pam-auth-update "
                "adds pam_pwquality.so to /etc/pam.d/common-password) and set the policy in pwquality's "
                "configuration.")
    unix = stack.module("pam_unix.so")
    if unix is None:
        return Remediation.by_hand(
            f"Add pam_pwquality.so to the password stack {stack.path} and require {want_len}+ characters and "
            f"{want_cls} classes in {PWQ_CONF}.",
            f"{stack.path} has no pam_unix.so password line to put the quality check above: the stack is set up "
            "in a way hostguard does not know.")
    # RHEL shape: the quality module goes above pam_unix, which takes the checked password (use_authtok).
    # Both settings are written at once: adding the module is one change, whichever finding asked for it.
    _set_conf(edits, pam, "minlen", max(want_len, _conf_number(pam, "minlen")))
    _set_conf(edits, pam, "minclass", max(want_cls, _conf_number(pam, "minclass")))
    if unix.arg("use_authtok") is None:
        edits.pam_arg(unix, "use_authtok", None)
    edits.set(unix.path, unix.line, unix.raw, f"{RHEL_PWQUALITY}\n{edits.current(unix.path, unix.line, unix.raw)}")
    return (f"No password quality module is in {stack.path}: add pam_pwquality.so above pam_unix.so (which then "
            f"takes the checked password, use_authtok) and require {want_len}+ characters and {want_cls} classes "
            "in pwquality's configuration.")


def _conf_number(pam: PamPolicy, key: str) -> int:
    now = pam.pwquality.get(key)
    return int(now.value) if now is not None and now.value.isdigit() else 0


def _current(pam: PamPolicy, line: PamLine, key: str, cracklib: bool) -> int:
    """The number ``key`` is set to now (0 when unset): a fix never lowers a stricter value."""
    value = line.arg(key)
    if value is None and not cracklib and key in pam.pwquality:
        value = pam.pwquality[key].value
    return int(value) if value is not None and value.isdigit() else 0


def _positive(pam: PamPolicy, line: PamLine, key: str) -> bool:
    arg = line.arg(key)
    if arg is not None:
        return arg.lstrip("+").isdigit() and int(arg) > 0
    at = pam.pwquality.get(key)
    return at is not None and at.value.lstrip("+").isdigit() and int(at.value) > 0


def _worst(group: list[Member], key: Callable[[EffectivePolicy], int]) -> EffectivePolicy:
    return min((p for _, p in group), key=key)


@check(id="password_policy.min_length", severity="medium",
       summary="Minimum password length below the policy", needs=(PAM, LOGIN_DEFS), tags=("T1110.001",),
       references=("https://man7.org/linux/man-pages/man5/pwquality.conf.5.html",))
def min_length(ctx: Context) -> Iterator[Finding]:
    """New passwords shorter than 8 characters fall to online guessing; positive pwquality/cracklib credits
    lower the real minimum below ``minlen``, so the effective figure is what counts. Every password stack
    is checked (RHEL's password-auth serves sshd, system-auth local logins)."""
    pam, _, members = _members(ctx, "quality")
    want = ctx.config[PasswordPolicyConfig].min_length
    bad = [(s, p) for s, p in members if p.min_length < want]
    for path, group in _grouped(bad, lambda p: p.min_length_at):
        policy = _worst(group, lambda p: p.min_length)
        yield ctx.finding(f"new passwords may be {policy.min_length} characters long (policy: {want})"
                          f"{_via(pam, group)}", {"kind": "config", "path": path, "setting": "minlen"},
                          evidence={"module": policy.module or "pam_unix.so only", "effective_min_length":
                                    policy.min_length, "set_at": policy.min_length_at.where(),
                                    "value": policy.min_length_at.value, "stacks": [s.path for s, _ in group]},
                          remediation=_fix_group(pam, group, lambda s, e: _quality_fix(pam, s, ctx, "length", e)))


@check(id="password_policy.char_classes", severity="medium",
       summary="Fewer character classes required than the policy", needs=(PAM, LOGIN_DEFS), tags=("T1110.001",),
       references=("https://man7.org/linux/man-pages/man5/pwquality.conf.5.html",))
def char_classes(ctx: Context) -> Iterator[Finding]:
    """The checklist asks for upper, lower, digits and symbols; only ``minclass`` or negative credits
    enforce classes. Every password stack is checked."""
    pam, _, members = _members(ctx, "quality")
    want = ctx.config[PasswordPolicyConfig].min_classes
    bad = [(s, p) for s, p in members if p.classes < want]
    for path, group in _grouped(bad, lambda p: p.classes_at):
        policy = _worst(group, lambda p: p.classes)
        yield ctx.finding(f"new passwords need {policy.classes} character classes (policy: {want}){_via(pam, group)}",
                          {"kind": "config", "path": path, "setting": "minclass"},
                          evidence={"module": policy.module or "pam_unix.so only", "required_classes": policy.classes,
                                    "set_at": policy.classes_at.where(), "stacks": [s.path for s, _ in group]},
                          remediation=_fix_group(pam, group, lambda s, e: _quality_fix(pam, s, ctx, "classes", e)))


@check(id="password_policy.hash_method", severity="high",
       summary="Weak hash method for new passwords", needs=(PAM, LOGIN_DEFS), tags=("T1110.002",),
       references=("https://man7.org/linux/man-pages/man5/login.defs.5.html",
                   "https://man7.org/linux/man-pages/man8/pam_unix.8.html"))
def hash_method(ctx: Context) -> Iterator[Finding]:
    """DES and MD5 hashes are cracked in hours. The method in force is pam_unix's last hash option (it
    keeps only the last), else ENCRYPT_METHOD in login.defs as pam_unix reads it (a value pam_unix does
    not know, such as BCRYPT, leaves it on DES); every password stack is checked."""
    pam, defs, members = _members(ctx, "method")
    good = ctx.config[PasswordPolicyConfig].good_methods
    bad = [(s, p) for s, p in members if p.method not in good]
    for path, group in _grouped(bad, lambda p: p.method_at):
        policy = min((p for _, p in group),
                     key=lambda p: SEVERITY_ORDER.index(WEAK_METHODS.get(p.method, "medium")))
        default = (" (pam_unix's built-in default: no hash option on its line, no ENCRYPT_METHOD in "
                   "/etc/login.defs)") if policy.method_at.path is None else ""
        yield ctx.finding(f"new passwords are hashed with {policy.method}{default}{_via(pam, group)}",
                          {"kind": "config", "path": path, "setting": "hash_method"},
                          severity=WEAK_METHODS.get(policy.method, "medium"),
                          evidence={"method": policy.method, "set_at": policy.method_at.where(),
                                    "value": policy.method_at.value, "stacks": [s.path for s, _ in group]},
                          remediation=_fix_group(pam, group, lambda s, e: _method_fix(s, defs, e)))


def _method_fix(stack: PamStack, defs: LoginDefs, edits: _Edits) -> str | Remediation:
    """yescrypt where the method is chosen today: pam_unix's option, else ENCRYPT_METHOD in login.defs."""
    unix = stack.module("pam_unix.so")
    after = "; then have users change their passwords (existing hashes keep their scheme until then)."
    option = unix_hash_option(unix) if unix is not None else None
    if unix is not None and option is not None:
        edits.pam_hash(unix, "yescrypt")
        return (f"Hash new passwords with yescrypt: pam_unix's `{option[0]}` (its last hash option, the one in "
                f"force) becomes `yescrypt` on {unix.path} line {unix.line}{after}")
    enc = defs.get("ENCRYPT_METHOD")
    if enc is not None and enc.path and enc.line and enc.raw is not None:
        edits.set(enc.path, enc.line, enc.raw, "ENCRYPT_METHOD YESCRYPT")
        return f"Hash new passwords with yescrypt: ENCRYPT_METHOD YESCRYPT on {enc.path} line {enc.line}{after}"
    if unix is not None:  # nothing chooses a method: pam_unix's option is read first
        edits.pam_arg(unix, "yescrypt", None)
        return (f"Hash new passwords with yescrypt: add `yescrypt` to pam_unix.so on {unix.path} line "
                f"{unix.line}{after}")
    return Remediation.by_hand(  # a method is known only from pam_unix or a login.defs line: not reached
        "Hash new passwords with yescrypt (ENCRYPT_METHOD YESCRYPT in /etc/login.defs).",
        f"{stack.path} has no pam_unix.so line and /etc/login.defs no ENCRYPT_METHOD line to change.")


@check(id="password_policy.sha_rounds", severity="low",
       summary="Too few SHA-crypt rounds", needs=(PAM, LOGIN_DEFS), tags=("T1110.002",),
       references=("https://man7.org/linux/man-pages/man5/login.defs.5.html",))
def sha_rounds(ctx: Context) -> Iterator[Finding]:
    """SHA-crypt with few rounds is fast to brute-force offline; every password stack is checked."""
    pam, defs, members = _members(ctx, "method")
    floor = ctx.config[PasswordPolicyConfig].min_sha_rounds
    bad = [(s, p) for s, p in members
           if p.method in ("sha512", "sha256") and p.rounds is not None and p.rounds < floor]
    for path, group in _grouped(bad, lambda p: p.rounds_at or p.method_at):
        policy = _worst(group, lambda p: p.rounds or 0)
        at = policy.rounds_at or policy.method_at
        yield ctx.finding(f"{policy.method} uses {policy.rounds} rounds (at least {floor}){_via(pam, group)}",
                          {"kind": "config", "path": path, "setting": "rounds"},
                          evidence={"rounds": policy.rounds, "set_at": at.where(), "stacks": [s.path for s, _ in group]},
                          remediation=_fix_group(pam, group, lambda s, e: _rounds_fix(s, defs, max(floor, 65536), e)))


def _rounds_fix(stack: PamStack, defs: LoginDefs, rounds: int, edits: _Edits) -> str | Remediation:
    """``rounds`` SHA-crypt rounds where they are decided: pam_unix's rounds= (or its method option), else both
    SHA_CRYPT_MIN_ROUNDS and SHA_CRYPT_MAX_ROUNDS in login.defs (shadow's tools read both, pam_unix the max)."""
    unix = stack.module("pam_unix.so")
    option = unix_hash_option(unix) if unix is not None else None
    if unix is not None and (unix.arg("rounds") is not None or (option and option[1] in ("sha512", "sha256"))):
        edits.pam_arg(unix, "rounds", str(rounds))
        return (f"Hash new passwords with {rounds} SHA-crypt rounds: rounds={rounds} on pam_unix.so "
                f"({unix.path} line {unix.line}); then have users change their passwords.")
    low, high = defs.get("SHA_CRYPT_MIN_ROUNDS"), defs.get("SHA_CRYPT_MAX_ROUNDS")
    enc = defs.get("ENCRYPT_METHOD")
    missing = [f"{key} {rounds}" for key, s in (("SHA_CRYPT_MIN_ROUNDS", low), ("SHA_CRYPT_MAX_ROUNDS", high))
               if s is None]
    for key, at in (("SHA_CRYPT_MIN_ROUNDS", low), ("SHA_CRYPT_MAX_ROUNDS", high)):
        if at is not None and at.path and at.line and at.raw is not None:
            edits.set(at.path, at.line, at.raw, f"{key} {rounds}")
    anchor = high or low or enc
    if missing and anchor is not None and anchor.path and anchor.line and anchor.raw is not None:
        now = edits.current(anchor.path, anchor.line, anchor.raw)
        if not all(m in now.split("\n") for m in missing):
            edits.set(anchor.path, anchor.line, anchor.raw, "\n".join([now, *missing]))
    elif missing:
        return Remediation.by_hand(
            f"Set SHA_CRYPT_MIN_ROUNDS and SHA_CRYPT_MAX_ROUNDS to {rounds} in /etc/login.defs.",
            "/etc/login.defs has no line to place them after: add them where this host's tools read them.")
    return (f"Hash new passwords with {rounds} SHA-crypt rounds: SHA_CRYPT_MIN_ROUNDS and "
            f"SHA_CRYPT_MAX_ROUNDS {rounds} in /etc/login.defs (pam_unix reads the MAX, shadow's "
            "tools both); then have users change their passwords.")


@check(id="password_policy.ageing", severity="low",
       summary="Password ageing defaults outside the policy", needs=(LOGIN_DEFS,),
       references=("https://man7.org/linux/man-pages/man5/login.defs.5.html",))
def ageing(ctx: Context) -> Iterator[Finding]:
    """PASS_MAX_DAYS, PASS_MIN_DAYS and PASS_WARN_AGE in login.defs apply to accounts created from now on.
    Without a login.defs there is nothing to judge: the tool that creates accounts uses its own defaults."""
    defs: LoginDefs = ctx.fact(LOGIN_DEFS)
    if not defs.present:
        ctx.skip(SkipReason.UNSUPPORTED, "/etc/login.defs does not exist: no ageing defaults are set where "
                                         "hostguard can read them")
        return
    cfg = ctx.config[PasswordPolicyConfig]
    rules = (("PASS_MAX_DAYS", cfg.max_days, "at most"), ("PASS_MIN_DAYS", cfg.min_days, "at least"),
             ("PASS_WARN_AGE", cfg.warn_age, "at least"))
    for key, want, how in rules:
        setting = defs.get(key)
        value = int(setting.value) if setting and setting.value.lstrip("-").isdigit() else None
        bad = value is None or (value > want if how == "at most" else value < want)
        if bad:
            where = setting.where() if setting else "/etc/login.defs (unset)"
            yield ctx.finding(f"{key} is {value if value is not None else 'unset'} ({how} {want} expected)",
                              {"kind": "config", "path": "/etc/login.defs", "setting": key},
                              evidence={"value": setting.value if setting else None, "set_at": where},
                              remediation=_ageing_fix(defs, key, want, setting))


def _ageing_fix(defs: LoginDefs, key: str, want: int, setting: Setting | None) -> Remediation:
    """``key want`` on the line that sets it, or after the last line of login.defs when unset."""
    note = "; existing accounts keep their ageing until changed with `chage`."
    if setting is not None and setting.path and setting.line and setting.raw is not None:
        return Remediation(f"Set {key} {want} in {setting.path} line {setting.line}{note}",
                           (Edit(setting.path, setting.line, setting.raw, f"{key} {want}"),))
    last = max((s for s in defs.settings.values() if s.path and s.line and s.raw is not None),
               key=lambda s: s.line or 0, default=None)
    if last is not None and last.path and last.line and last.raw is not None:
        return Remediation(f"Add {key} {want} to {last.path}{note}",
                           (Edit(last.path, last.line, last.raw, f"{last.raw}\n{key} {want}"),))
    return Remediation.by_hand(f"Add {key} {want} to /etc/login.defs{note}",
                               "/etc/login.defs sets nothing: there is no line to add it after without guessing "
                               "the file's layout.")


def collect_empty_passwords(host: Host, accounts: Accounts | None, shadow: Shadow | None) -> tuple[str, ...] | None:
    """Accounts whose password field is empty (in /etc/shadow, or in /etc/passwd itself): today they log in
    through nullok without a password, so removing nullok shuts them out. None when /etc/shadow cannot be
    read here (not root): then nobody can say who would be shut out."""
    if shadow is None:
        return None
    names = [e.name for e in shadow.entries if e.hash == ""]
    names += [u.name for u in (accounts.users if accounts else ()) if u.password == "" and u.name not in names]
    return tuple(names)


EMPTY_PASSWORDS: Fact[tuple[str, ...] | None] = Fact("empty_password_accounts", collect_empty_passwords,
                                                     inputs=(ACCOUNTS.best_effort, SHADOW.best_effort))


@check(id="password_policy.pam_nullok", severity="low",
       summary="pam_unix accepts empty passwords (nullok)", needs=(PAM_AUTH, EMPTY_PASSWORDS),
       tags=("T1078.003",), references=("https://man7.org/linux/man-pages/man8/pam_unix.8.html",))
def pam_nullok(ctx: Context) -> Iterator[Finding]:
    """``nullok`` on pam_unix's auth line lets an account whose password field is empty log in without typing
    anything; without it pam_unix refuses an empty password. Alone it opens nothing, but one ``passwd -d`` by
    mistake, or an account an intruder planted with no password, is then a login without a secret (Debian
    ships it in common-auth, RHEL's authselect profiles unless ``without-nullok`` is on). The auth lines of
    every service in /etc/pam.d are read, includes followed; pam_unix matches options by prefix, so
    ``nullok_secure`` counts as ``nullok``, and ``nullresetok`` lets an empty password in whenever the password
    must be changed (checked against libpam itself). One finding per file."""
    auth: PamAuth = ctx.fact(PAM_AUTH)
    empty: tuple[str, ...] | None = ctx.fact(EMPTY_PASSWORDS)
    by_file: dict[str, list[PamLine]] = {}
    for line in auth.nullok_lines():
        by_file.setdefault(line.path, []).append(line)
    for path, lines in by_file.items():
        yield ctx.finding(f"{path} lets an account with an empty password log in without one (pam_unix nullok)",
                          {"kind": "config", "path": path, "setting": "nullok"},
                          evidence={"set_at": f"{path}:{lines[0].line}", "lines": [ln.line for ln in lines],
                                    "options": sorted({o for ln in lines for o in unix_nullok(ln)}),
                                    "services": list(auth.used_by.get(path, ())),
                                    "empty_password_accounts": list(empty) if empty is not None else None},
                          remediation=_nullok_fix(auth, lines, empty))


def _without_nullok(line: PamLine) -> str:
    """The line as written, pam_unix's nullok options dropped (control, spacing and comment kept)."""
    body, hash_, comment = line.raw.partition("#")
    at = body.index(line.module) + len(line.module)
    args = [a for a in body[at:].split() if not is_nullok(a)]
    return body[:at] + "".join(f" {a}" for a in args) + (f" #{comment}" if hash_ else "")


def _nullok_fix(auth: PamAuth, lines: list[PamLine], empty: tuple[str, ...] | None) -> Remediation:
    """Drop nullok from each line: an Edit, unless that shuts out an account that logs in with an empty
    password today (then set one or lock it first, by hand) or the file is a link (authselect's feature)."""
    path = lines[0].path
    options = " and ".join(f"`{o}`" for o in sorted({o for ln in lines for o in unix_nullok(ln)}))
    summary = (f"Remove {options} from pam_unix.so on {path} line{'s' if len(lines) > 1 else ''} "
               f"{', '.join(str(ln.line) for ln in lines)}: an empty password then never logs in.")
    if empty:
        names = ", ".join(f"'{n}'" for n in empty)
        return Remediation.by_hand(
            summary, f"{names} {'has' if len(empty) == 1 else 'have'} an empty password and can log in today only "
            "because of nullok: removing it now would shut them out, and one may be how the owner gets in. Give "
            "each a password (`passwd NAME`) or lock it (`usermod -L NAME`) first (accounts.empty_password "
            "lists them), then remove nullok.")
    line = lines[0]
    if line.link is not None:
        return Remediation.by_hand(summary, _nullok_by_hand(auth, line))
    note = (" Debian's pam-auth-update does not silently undo a local edit of common-auth: it keeps the change or "
            "asks before overwriting it (`--force` overwrites)." if path.endswith("/common-auth") else "")
    unknown = ("" if empty is not None else " /etc/shadow could not be read here: check first that no account "
               "you log in with has an empty password.")
    return Remediation(summary + note + unknown, tuple(Edit(ln.path, ln.line, ln.raw, _without_nullok(ln))
                                                       for ln in lines))


def _nullok_by_hand(auth: PamAuth, line: PamLine) -> str:
    """How to drop nullok from a file hostguard must not write: authselect's feature, or the link's target."""
    if not auth.managed(line) or auth.authselect is None:
        return (f"{line.path} -> {line.link}: the PAM file is a symlink and hostguard never writes through one. "
                f"Remove `nullok` from pam_unix.so in the file the link leads to (line {line.line}).")
    profile = auth.authselect.profile
    fix = ("run `authselect enable-feature without-nullok` (authselect then writes pam_unix without nullok "
           "everywhere), then `authselect check`")
    if profile.startswith("custom/"):
        template = f"/etc/authselect/{profile}/{os.path.basename(line.path)}"
        return (f"{line.path} is generated by authselect (profile {profile}), and hostguard never writes through "
                f"a link: {fix}. If {template} writes nullok without the `without-nullok` condition, remove it "
                "there and run `authselect apply-changes`.")
    return (f"{line.path} is generated by authselect (a link into /etc/authselect/), and hostguard never writes "
            f"through a link: {fix}.")
