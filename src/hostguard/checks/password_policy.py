"""Password policy: what login.defs and the PAM password stack let a new password be."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hostguard.config import setting
from hostguard.engine.context import Context
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding
from hostguard.host.pam import LOGIN_DEFS, PAM, EffectivePolicy, LoginDefs, PamPolicy, Setting, effective_policy


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


def _quality_fix(policy: EffectivePolicy, ctx: Context) -> str:
    want_len = ctx.config[PasswordPolicyConfig].min_length
    want_cls = ctx.config[PasswordPolicyConfig].min_classes
    if policy.module == "pam_pwquality.so":
        return (f"In /etc/security/pwquality.conf set `minlen = {want_len}`, `minclass = {want_cls}` and no positive "
                "credits (`dcredit = 0`, `ucredit = 0`, `lcredit = 0`, `ocredit = 0`); remove minlen/minclass/credit "
                f"arguments from {policy.min_length_at.where()} if present.")
    if policy.module == "pam_cracklib.so":
        return (f"On {policy.min_length_at.where()} use `pam_cracklib.so minlen={want_len} dcredit=-1 ucredit=-1 "
                "lcredit=-1 ocredit=-1`.")
    if policy.module == "pam_passwdqc.so":
        return f"On {policy.min_length_at.where()} use `min=disabled,disabled,disabled,disabled,{want_len}`."
    return (f"`apt-get install libpam-pwquality` (adds pam_pwquality.so to /etc/pam.d/common-password), then set "
            f"`minlen = {want_len}` and `minclass = {want_cls}` in /etc/security/pwquality.conf.")


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
                          remediation=_quality_fix(policy, ctx))


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
                          remediation=_quality_fix(policy, ctx))


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
                          remediation=f"Use yescrypt: on {policy.method_at.where()} replace `{policy.method_at.value}`"
                                      " with `yescrypt` (pam_unix option) or `ENCRYPT_METHOD YESCRYPT` (login.defs); "
                                      "then make users change their passwords.")


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
                          remediation=f"Set `rounds={max(floor, 65536)}` on pam_unix.so or SHA_CRYPT_MIN_ROUNDS "
                                      f"in /etc/login.defs ({at.where()}), or switch to yescrypt.")


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
                              remediation=f"Set `{key} {want}` in /etc/login.defs"
                                          f"{' line ' + str(setting.line) if setting else ''}; for existing "
                                          f"accounts use `chage`.")
