"""Password policy: what login.defs and the PAM password stack let a new password be."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hostguard.config import setting
from hostguard.engine.context import Context
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding
from hostguard.host.pam import LOGIN_DEFS, PAM, EffectivePolicy, LoginDefs, PamLine, PamPolicy, Setting, effective_policy
from hostguard.remediation import Command, Edit, Remediation, Step, Write


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


def _policy(ctx: Context) -> EffectivePolicy:
    pam: PamPolicy = ctx.fact(PAM)
    defs: LoginDefs = ctx.fact(LOGIN_DEFS)
    return effective_policy(pam, defs)


def _target(at: Setting, key: str) -> dict[str, object]:
    return {"kind": "config", "path": at.path or "/etc/pam.d/common-password", "setting": key}


PWQ_CONF = "/etc/security/pwquality.conf"
PWQ_DROPIN = "/etc/security/pwquality.conf.d/00-hostguard-{key}.conf"
CREDITS = ("dcredit", "ucredit", "lcredit", "ocredit")


class _Edits:
    """Changes to whole lines, gathered so that one line is edited by one step whatever changes it."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str, int], tuple[str, str]] = {}  # (path, line) -> (old, new)
        self.writes: list[Write] = []

    def current(self, path: str, line: int, old: str) -> str:
        return self.lines.get((path, line), (old, old))[1]

    def set(self, path: str, line: int, old: str, new: str) -> None:
        self.lines[(path, line)] = (old, new)

    def pam_arg(self, pam_line: PamLine, key: str, value: str | None) -> None:
        """Set ``key=value`` (a bare option when value is None) on a PAM line, in place or appended."""
        text = self.current(pam_line.path, pam_line.line, pam_line.raw)
        body, hash_, comment = text.partition("#")
        at = body.index(pam_line.module) + len(pam_line.module)
        args = body[at:].split()
        option = key if value is None else f"{key}={value}"
        if any(a.partition("=")[0] == key for a in args):
            args = [option if a.partition("=")[0] == key else a for a in args]
        else:
            args.append(option)
        new = body[:at] + "".join(f" {a}" for a in args) + (f" #{comment}" if hash_ else "")
        self.set(pam_line.path, pam_line.line, pam_line.raw, new)

    def pam_swap(self, pam_line: PamLine, old: str, new: str) -> None:
        """Replace option ``old`` (a bare word like ``md5``) with ``new`` on a PAM line."""
        text = self.current(pam_line.path, pam_line.line, pam_line.raw)
        body, hash_, comment = text.partition("#")
        at = body.index(pam_line.module) + len(pam_line.module)
        args = [new if a == old else a for a in body[at:].split()]
        self.set(pam_line.path, pam_line.line, pam_line.raw,
                 body[:at] + "".join(f" {a}" for a in args) + (f" #{comment}" if hash_ else ""))

    def steps(self) -> tuple[Step, ...]:
        edits = [Edit(path, line, old, new) for (path, line), (old, new) in sorted(self.lines.items()) if old != new]
        return (*edits, *self.writes)


def _set_conf(edits: _Edits, pam: PamPolicy, key: str, value: int) -> None:
    """Make pwquality's ``key`` read ``value``: edit the line in force, else a drop-in that wins because no
    file sets the key (libpwquality reads pwquality.conf.d/*.conf first, then pwquality.conf, last one wins)."""
    at = pam.pwquality.get(key)
    if at is not None and at.path and at.line and at.raw is not None:
        edits.set(at.path, at.line, at.raw, f"{key} = {value}")
    else:
        edits.writes.append(Write(PWQ_DROPIN.format(key=key), f"# written by hostguard: {key} for new passwords\n"
                                                             f"{key} = {value}\n"))


def _quality_fix(pam: PamPolicy, ctx: Context, what: str) -> Remediation:
    """Steps that make the quality module in force require ``what`` ("length" or "classes")."""
    cfg = ctx.config[PasswordPolicyConfig]
    want_len, want_cls = cfg.min_length, cfg.min_classes
    quality = next((m for m in ("pam_pwquality.so", "pam_cracklib.so", "pam_passwdqc.so") if pam.module(m)), None)
    edits = _Edits()
    line = pam.module(quality) if quality else None
    if quality == "pam_passwdqc.so" and line is not None:
        n = str(want_len)
        # min=N0,N1,N2,N3,N4: one class, two classes, passphrase, three classes, four classes
        spec = {4: ["disabled"] * 4 + [n], 3: ["disabled"] * 3 + [n, n], 2: ["disabled", n, "disabled", n, n]}.get(
            want_cls, [n, n, "disabled", n, n])
        edits.pam_arg(line, "min", ",".join(spec))
        return Remediation(f"Require {want_len}+ characters and {want_cls} classes in pam_passwdqc's min= on "
                           f"{line.path} line {line.line}.", edits.steps())
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
        return Remediation(f"Make {quality} require {said} where each is set today.", edits.steps())
    key, want = ("minlen", want_len) if what == "length" else ("minclass", want_cls)
    now = pam.pwquality.get(key)
    _set_conf(edits, pam, key, max(want, int(now.value) if now is not None and now.value.isdigit() else 0))
    install = Command(("apt-get", "install", "-y", "libpam-pwquality"), live_only=True,
                      undo=("apt-get", "remove", "-y", "libpam-pwquality"), reversible=True)
    return Remediation("No password quality module is in the PAM stack: install libpam-pwquality (its "
                       "pam-auth-update adds pam_pwquality.so to /etc/pam.d/common-password) and set the policy "
                       "in pwquality's configuration.", (install, *edits.steps()))


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


@check(id="password_policy.min_length", severity="medium",
       summary="Minimum password length below the policy", needs=(PAM, LOGIN_DEFS), tags=("T1110.001",),
       references=("https://man7.org/linux/man-pages/man5/pwquality.conf.5.html",))
def min_length(ctx: Context) -> Iterator[Finding]:
    """New passwords shorter than 8 characters fall to online guessing; positive pwquality/cracklib credits
    lower the real minimum below ``minlen``, so the effective figure is what counts."""
    policy = _policy(ctx)
    want = ctx.config[PasswordPolicyConfig].min_length
    if policy.min_length < want:
        yield ctx.finding(f"new passwords may be {policy.min_length} characters long (policy: {want})",
                          _target(policy.min_length_at, "minlen"),
                          evidence={"module": policy.module or "pam_unix.so only", "effective_min_length":
                                    policy.min_length, "set_at": policy.min_length_at.where(),
                                    "value": policy.min_length_at.value},
                          remediation=_quality_fix(ctx.fact(PAM), ctx, "length"))


@check(id="password_policy.char_classes", severity="medium",
       summary="Fewer character classes required than the policy", needs=(PAM, LOGIN_DEFS), tags=("T1110.001",),
       references=("https://man7.org/linux/man-pages/man5/pwquality.conf.5.html",))
def char_classes(ctx: Context) -> Iterator[Finding]:
    """The checklist asks for upper, lower, digits and symbols; only ``minclass`` or negative credits
    enforce classes."""
    policy = _policy(ctx)
    want = ctx.config[PasswordPolicyConfig].min_classes
    if policy.classes < want:
        yield ctx.finding(f"new passwords need {policy.classes} character classes (policy: {want})",
                          _target(policy.classes_at, "minclass"),
                          evidence={"module": policy.module or "pam_unix.so only", "required_classes": policy.classes,
                                    "set_at": policy.classes_at.where()},
                          remediation=_quality_fix(ctx.fact(PAM), ctx, "classes"))


@check(id="password_policy.hash_method", severity="high",
       summary="Weak hash method for new passwords", needs=(PAM, LOGIN_DEFS), tags=("T1110.002",),
       references=("https://man7.org/linux/man-pages/man5/login.defs.5.html",))
def hash_method(ctx: Context) -> Iterator[Finding]:
    """DES and MD5 hashes are cracked in hours; the method in force is pam_unix's option, then login.defs."""
    policy = _policy(ctx)
    good = ctx.config[PasswordPolicyConfig].good_methods
    if policy.method not in good:
        yield ctx.finding(f"new passwords are hashed with {policy.method}", _target(policy.method_at, "hash_method"),
                          severity=WEAK_METHODS.get(policy.method, "medium"),
                          evidence={"method": policy.method, "set_at": policy.method_at.where()},
                          remediation=_method_fix(ctx.fact(PAM), ctx.fact(LOGIN_DEFS), policy))


def _method_fix(pam: PamPolicy, defs: LoginDefs, policy: EffectivePolicy) -> Remediation:
    """yescrypt where the method is chosen today: pam_unix's option, else ENCRYPT_METHOD in login.defs."""
    edits = _Edits()
    at = policy.method_at
    unix = pam.module("pam_unix.so")
    after = "; then have users change their passwords (existing hashes keep their scheme until then)."
    if unix is not None and at.path == unix.path and at.line == unix.line:
        edits.pam_swap(unix, at.value, "yescrypt")
        return Remediation(f"Hash new passwords with yescrypt: pam_unix's `{at.value}` becomes `yescrypt` on "
                           f"{unix.path} line {unix.line}{after}", edits.steps())
    enc = defs.get("ENCRYPT_METHOD")
    if enc is not None and enc.path and enc.line and enc.raw is not None:
        edits.set(enc.path, enc.line, enc.raw, "ENCRYPT_METHOD YESCRYPT")
        return Remediation(f"Hash new passwords with yescrypt: ENCRYPT_METHOD YESCRYPT on {enc.path} line "
                           f"{enc.line}{after}", edits.steps())
    if unix is not None:  # nothing chooses a method: pam_unix's option is read first
        edits.pam_arg(unix, "yescrypt", None)
        return Remediation(f"Hash new passwords with yescrypt: add `yescrypt` to pam_unix.so on {unix.path} line "
                           f"{unix.line}{after}", edits.steps())
    return Remediation.by_hand(
        "Hash new passwords with yescrypt (ENCRYPT_METHOD YESCRYPT in /etc/login.defs).",
        "Neither a pam_unix password line nor /etc/login.defs exists here to edit: this host's password "
        "tools are set up in a way hostguard does not know; add ENCRYPT_METHOD YESCRYPT where they read it.")


@check(id="password_policy.sha_rounds", severity="low",
       summary="Too few SHA-crypt rounds", needs=(PAM, LOGIN_DEFS), tags=("T1110.002",),
       references=("https://man7.org/linux/man-pages/man5/login.defs.5.html",))
def sha_rounds(ctx: Context) -> Iterator[Finding]:
    """SHA-crypt with few rounds is fast to brute-force offline."""
    policy = _policy(ctx)
    floor = ctx.config[PasswordPolicyConfig].min_sha_rounds
    if policy.method in ("sha512", "sha256") and policy.rounds is not None and policy.rounds < floor:
        at = policy.rounds_at or policy.method_at
        yield ctx.finding(f"{policy.method} uses {policy.rounds} rounds (at least {floor})", _target(at, "rounds"),
                          evidence={"rounds": policy.rounds, "set_at": at.where()},
                          remediation=_rounds_fix(ctx.fact(PAM), ctx.fact(LOGIN_DEFS), max(floor, 65536)))


def _rounds_fix(pam: PamPolicy, defs: LoginDefs, rounds: int) -> Remediation:
    """``rounds`` SHA-crypt rounds where they are decided: pam_unix's rounds= (or its method option), else both
    SHA_CRYPT_MIN_ROUNDS and SHA_CRYPT_MAX_ROUNDS in login.defs (shadow's tools read both, pam_unix the max)."""
    edits = _Edits()
    unix = pam.module("pam_unix.so")
    if unix is not None and (unix.arg("rounds") is not None
                             or any(unix.arg(o) is not None for o in ("sha512", "sha256"))):
        edits.pam_arg(unix, "rounds", str(rounds))
        return Remediation(f"Hash new passwords with {rounds} SHA-crypt rounds: rounds={rounds} on pam_unix.so "
                           f"({unix.path} line {unix.line}); then have users change their passwords.", edits.steps())
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
        edits.set(anchor.path, anchor.line, anchor.raw, "\n".join([now, *missing]))
    elif missing:
        return Remediation.by_hand(
            f"Set SHA_CRYPT_MIN_ROUNDS and SHA_CRYPT_MAX_ROUNDS to {rounds} in /etc/login.defs.",
            "/etc/login.defs has no line to place them after: add them where this host's tools read them.")
    return Remediation(f"Hash new passwords with {rounds} SHA-crypt rounds: SHA_CRYPT_MIN_ROUNDS and "
                       f"SHA_CRYPT_MAX_ROUNDS {rounds} in /etc/login.defs (pam_unix reads the MAX, shadow's "
                       "tools both); then have users change their passwords.", edits.steps())


@check(id="password_policy.ageing", severity="low",
       summary="Password ageing defaults outside the policy", needs=(LOGIN_DEFS,),
       references=("https://man7.org/linux/man-pages/man5/login.defs.5.html",))
def ageing(ctx: Context) -> Iterator[Finding]:
    """PASS_MAX_DAYS, PASS_MIN_DAYS and PASS_WARN_AGE in login.defs apply to accounts created from now on."""
    defs: LoginDefs = ctx.fact(LOGIN_DEFS)
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
    if not defs.present:
        return Remediation(f"Create /etc/login.defs with {key} {want}{note}", (Write("/etc/login.defs", f"{key} {want}\n"),))
    return Remediation.by_hand(f"Add {key} {want} to /etc/login.defs{note}",
                               "/etc/login.defs sets nothing: there is no line to add it after without guessing "
                               "the file's layout.")
