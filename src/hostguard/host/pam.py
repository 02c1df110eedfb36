"""Password policy as the host enforces it: /etc/login.defs, the PAM password stack and pwquality.

Each value keeps the file and line it came from, so a finding can say exactly where to change it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostguard.engine.facts import Fact
from hostguard.host.base import Host

PAM_STACKS = ("/etc/pam.d/common-password", "/etc/pam.d/system-auth", "/etc/pam.d/password-auth",
              "/etc/pam.d/passwd")
HASH_OPTIONS = {"yescrypt": "yescrypt", "gost_yescrypt": "gost-yescrypt", "sha512": "sha512",
                "sha256": "sha256", "blowfish": "bcrypt", "md5": "md5", "bigcrypt": "des", "des": "des"}
LOGIN_DEFS_METHODS = {"YESCRYPT": "yescrypt", "GOST_YESCRYPT": "gost-yescrypt", "SHA512": "sha512",
                      "SHA256": "sha256", "BCRYPT": "bcrypt", "MD5": "md5", "DES": "des"}


@dataclass(frozen=True)
class Setting:
    """A value and where it is set (path None: the built-in default)."""

    value: str
    path: str | None
    line: int | None
    raw: str | None = field(default=None, compare=False)  # the whole line as written (what a fix edits)

    def where(self) -> str:
        """``path:line`` or "built-in default"."""
        return f"{self.path}:{self.line}" if self.path else "built-in default"


@dataclass(frozen=True)
class LoginDefs:
    """Settings of /etc/login.defs (last occurrence wins)."""

    settings: dict[str, Setting]
    present: bool

    def get(self, key: str) -> Setting | None:
        """One setting, or None when unset."""
        return self.settings.get(key)


def parse_login_defs(text: str, path: str = "/etc/login.defs") -> dict[str, Setting]:
    """``KEY value`` lines; comments and blank lines ignored."""
    out: dict[str, Setting] = {}
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#"):
            out[parts[0]] = Setting(parts[1], path, number, line)
    return out


def collect_login_defs(host: Host) -> LoginDefs:
    """The host's login.defs (empty when absent)."""
    text = host.read_optional("/etc/login.defs")
    return LoginDefs(parse_login_defs(text or ""), text is not None)


LOGIN_DEFS: Fact[LoginDefs] = Fact("login_defs", collect_login_defs)


@dataclass(frozen=True)
class PamLine:
    """One ``password`` line of a PAM stack, after includes are followed."""

    path: str
    line: int
    control: str
    module: str
    args: tuple[str, ...]
    raw: str = field(default="", compare=False)  # the line as written (what a fix edits)

    def arg(self, name: str) -> str | None:
        """Value of ``name=value`` (or ``""`` for a bare flag), None when absent."""
        for a in self.args:
            key, eq, value = a.partition("=")
            if key == name:
                return value if eq else ""
        return None


@dataclass(frozen=True)
class PamPolicy:
    """The password stack plus pwquality.conf, and the policy they add up to."""

    stack_path: str | None
    lines: tuple[PamLine, ...]
    pwquality: dict[str, Setting]

    def module(self, name: str) -> PamLine | None:
        """First line using module ``name`` (e.g. ``pam_unix.so``)."""
        for line in self.lines:
            if line.module.rsplit("/", 1)[-1] == name:
                return line
        return None


def _pam_words(line: str) -> list[str]:
    words: list[str] = []
    current = ""
    depth = 0
    for ch in line:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch.isspace() and depth == 0:
            if current:
                words.append(current)
            current = ""
        else:
            current += ch
    if current:
        words.append(current)
    return words


def parse_pam_stack(host: Host, path: str, depth: int = 0) -> list[PamLine]:
    """``password`` lines of one PAM file, following @include, include and substack."""
    text = host.read_optional(path)
    if text is None or depth > 8:
        return []
    lines: list[PamLine] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = _pam_words(line)
        if words[0] == "@include" and len(words) > 1:
            lines += parse_pam_stack(host, f"/etc/pam.d/{words[1]}", depth + 1)
            continue
        if words[0].lstrip("-") != "password" or len(words) < 3:
            continue
        if words[1] in ("include", "substack"):
            lines += parse_pam_stack(host, f"/etc/pam.d/{words[2]}", depth + 1)
            continue
        lines.append(PamLine(path, number, words[1], words[2], tuple(words[3:]), raw))
    return lines


def collect_pam(host: Host) -> PamPolicy:
    """The first password stack found, and pwquality.conf (plus its .d directory)."""
    stack = next((p for p in PAM_STACKS if host.exists(p)), None)
    lines = parse_pam_stack(host, stack) if stack else []
    pwq: dict[str, Setting] = {}
    # libpwquality reads pwquality.conf.d/*.conf (sorted) first and pwquality.conf last: the main file wins
    files = [f"/etc/security/pwquality.conf.d/{n}" for n in host.listdir("/etc/security/pwquality.conf.d")
             if n.endswith(".conf")] + ["/etc/security/pwquality.conf"]
    for path in files:
        text = host.read_optional(path) or ""
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            key, eq, value = line.partition("=")
            if eq:
                pwq[key.strip()] = Setting(value.strip(), path, number, raw)
            elif line:
                pwq[line] = Setting("", path, number, raw)
    return PamPolicy(stack, tuple(lines), pwq)


PAM: Fact[PamPolicy] = Fact("pam", collect_pam)


@dataclass(frozen=True)
class EffectivePolicy:
    """What a new password must satisfy, with where each part is decided."""

    module: str | None          # pam_pwquality.so, pam_cracklib.so, pam_passwdqc.so or None
    min_length: int             # fewest characters a password can have and pass
    min_length_at: Setting
    classes: int                # character classes required
    classes_at: Setting
    method: str                 # hash method for new passwords
    method_at: Setting
    rounds: int | None
    rounds_at: Setting | None


def _num(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def effective_policy(pam: PamPolicy, defs: LoginDefs) -> EffectivePolicy:
    """Combine PAM and login.defs into the policy in force.

    pwquality/cracklib: a positive credit lowers the length needed (a password with that class may be
    shorter); a negative credit requires that class; ``minclass`` requires classes. The hash method comes
    from pam_unix's options before login.defs' ENCRYPT_METHOD.
    """
    quality = next((m for m in ("pam_pwquality.so", "pam_cracklib.so", "pam_passwdqc.so") if pam.module(m)), None)
    unix = pam.module("pam_unix.so")
    default = Setting("", None, None)
    if quality == "pam_passwdqc.so":
        line = pam.module(quality)
        assert line is not None
        spec = line.arg("min") or "disabled,24,11,8,7"
        at = Setting(spec, line.path, line.line, line.raw)
        # N0 one class, N1 two, N2 passphrase (not counted here), N3 three classes, N4 four classes.
        options = [(c, int(v)) for c, v in zip((1, 2, None, 3, 4), spec.split(","), strict=False)
                   if c is not None and v.isdigit()]
        min_len = min((length for _, length in options), default=0)
        classes = min((c for c, _ in options), default=4)
        return EffectivePolicy(quality, min_len, at, classes, at, *_method(unix, defs))
    if quality in ("pam_pwquality.so", "pam_cracklib.so"):
        line = pam.module(quality)
        assert line is not None
        cracklib = quality == "pam_cracklib.so"

        def value(key: str, dflt: int) -> tuple[int, Setting]:
            arg = line.arg(key)
            if arg is not None:
                return _num(arg, dflt), Setting(arg, line.path, line.line, line.raw)
            if not cracklib and key in pam.pwquality:
                s = pam.pwquality[key]
                return _num(s.value, dflt), s
            return dflt, Setting(str(dflt), None, None)

        minlen, minlen_at = value("minlen", 9 if cracklib else 8)
        credit_default = 1 if cracklib else 0
        credits = {k: value(k, credit_default) for k in ("dcredit", "ucredit", "lcredit", "ocredit")}
        positive = sum(v for v, _ in credits.values() if v > 0)
        required = sum(1 for v, _ in credits.values() if v < 0)
        minclass, minclass_at = value("minclass", 0)
        classes = max(minclass, required)
        classes_at = minclass_at if minclass >= required else next(s for v, s in credits.values() if v < 0)
        effective_len = max(minlen - positive, 6)
        return EffectivePolicy(quality, effective_len, minlen_at, classes, classes_at, *_method(unix, defs))
    unix_minlen = unix.arg("minlen") if unix else None
    at = Setting(unix_minlen, unix.path, unix.line, unix.raw) if unix and unix_minlen else (
        Setting("6", unix.path, unix.line, unix.raw) if unix else default)
    return EffectivePolicy(None, _num(unix_minlen, 6), at, 0, at, *_method(unix, defs))


def _method(unix: PamLine | None, defs: LoginDefs) -> tuple[str, Setting, int | None, Setting | None]:
    method = None
    at = Setting("", None, None)
    if unix is not None:
        for opt, name in HASH_OPTIONS.items():
            if unix.arg(opt) is not None:
                method, at = name, Setting(opt, unix.path, unix.line, unix.raw)
                break
    if method is None:
        enc = defs.get("ENCRYPT_METHOD")
        if enc is not None:
            method, at = LOGIN_DEFS_METHODS.get(enc.value.upper(), enc.value.lower()), enc
        else:
            method, at = "des", Setting("DES (no ENCRYPT_METHOD, no pam_unix option)", None, None)
    rounds: int | None = None
    rounds_at: Setting | None = None
    if unix is not None and unix.arg("rounds"):
        rounds = _num(unix.arg("rounds"), 0)
        rounds_at = Setting(unix.arg("rounds") or "", unix.path, unix.line, unix.raw)
    elif method in ("sha512", "sha256"):
        rounds, rounds_at = _login_defs_rounds(defs, unix is not None)
    return method, at, rounds, rounds_at


def _login_defs_rounds(defs: LoginDefs, pam_unix: bool) -> tuple[int, Setting | None]:
    """The fewest SHA-crypt rounds login.defs lets a new hash have, and the line that decides it.

    shadow's own tools (chpasswd -c, newusers) pick between SHA_CRYPT_MIN_ROUNDS and SHA_CRYPT_MAX_ROUNDS
    (one alone sets both; neither: 5000), but pam_unix reads SHA_CRYPT_MAX_ROUNDS only (chpasswd -R shows
    ``SHA_CRYPT_MIN_ROUNDS 7000`` alone still yields 5000-round hashes through PAM): the weaker path counts.
    """
    low, high = defs.get("SHA_CRYPT_MIN_ROUNDS"), defs.get("SHA_CRYPT_MAX_ROUNDS")
    shadow_side = low or high
    candidates: list[tuple[int, Setting | None]] = [(_num(shadow_side.value, 5000), shadow_side) if shadow_side
                                                     else (5000, None)]
    if pam_unix:
        candidates.append((_num(high.value, 5000), high) if high else (5000, None))
    return min(candidates, key=lambda c: c[0])
