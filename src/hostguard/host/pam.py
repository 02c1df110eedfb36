"""Password policy as the host enforces it: /etc/login.defs, the PAM password stacks and pwquality.

Each value keeps the file and line it came from, so a finding can say exactly where to change it.

A host may have several password stacks: Debian (and SUSE) one, ``common-password``, which every service
includes; RHEL, Fedora and their rebuilds two, ``system-auth`` (local logins, su, passwd) and
``password-auth`` (sshd and other remote services), each with its own pam_unix and quality lines. Every
stack the host has is read, so a weak line in one is not hidden by a good one in the other. On RHEL 8+
both files are usually authselect's symlinks into ``/etc/authselect/``: a line keeps the path services
name it by and also where the link leads, so a fix can tell a file it may edit from one it must not.

The auth lines of every PAM service are read too (:data:`PAM_AUTH`), for pam_unix's ``nullok``, which lets an
account with an empty password field log in without typing anything.

What is not there is never filled in with a default: a tree with none of /etc/passwd, /etc/login.defs and
/etc/pam.d is not an OS tree, and every fact here is :class:`Unavailable` (``unsupported``) on it; a file that
is not text (NUL bytes, control characters) is ``error``. Defaults are used only where the program that
applies them is there (pam_unix on the stack hashes with DES when nothing chooses a method).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.host.identity import not_an_os_tree

# The shared password stacks, in the order a report names them; `passwd` only when none of them exists.
PAM_STACKS = ("/etc/pam.d/common-password", "/etc/pam.d/system-auth", "/etc/pam.d/password-auth")
FALLBACK_STACK = "/etc/pam.d/passwd"
AUTHSELECT_DIR = "/etc/authselect"
AUTHSELECT_CONF = "/etc/authselect/authselect.conf"

# pam_unix's hash options, each with the method it selects. pam_unix matches an option by prefix
# (``sha512foo`` selects sha512) and every hash option clears the others, so the LAST one on the line wins
# (``yescrypt md5`` hashes with md5); ENCRYPT_METHOD in login.defs is matched the same way but
# case-insensitively, and a value it does not know (``BCRYPT``, which shadow's own tools accept) leaves
# pam_unix on its DES default. Checked with chpasswd -R on Debian 12's pam_unix (tests/host/test_pam.py).
PAM_UNIX_HASHES = (("md5", "md5"), ("bigcrypt", "des"), ("sha256", "sha256"), ("sha512", "sha512"),
                   ("blowfish", "bcrypt"), ("gost_yescrypt", "gost-yescrypt"), ("yescrypt", "yescrypt"),
                   ("des", "des"))
# shadow's own tools (chpasswd -c, newusers) read ENCRYPT_METHOD by exact name, BCRYPT included.
LOGIN_DEFS_METHODS = {"YESCRYPT": "yescrypt", "GOST_YESCRYPT": "gost-yescrypt", "SHA512": "sha512",
                      "SHA256": "sha256", "BCRYPT": "bcrypt", "MD5": "md5", "DES": "des"}
# pam_unix options that let an empty password in. It matches options by prefix: on Debian 12 (Linux-PAM 1.5.2)
# ``nullok_secure`` (a Debian option of old, no longer known) and ``nullokfoo`` act as ``nullok``;
# ``nullresetok`` lets it in when the password must be changed (expired, or ``chage -d 0``), and the new one
# is then chosen by whoever typed nothing. tests/host/test_pam.py asks libpam itself.
NULLOK_OPTIONS = ("nullok", "nullresetok")
# Text that is not a config file: NUL and the C0 controls no editor writes (tab, LF, VT, FF, CR are fine).
BINARY = {chr(c) for c in range(32) if chr(c) not in "\t\n\v\f\r"}
def read_config(host: Host, path: str) -> str | None:
    """A config file's text, None when it does not exist; :class:`Unavailable` (error) when it is not text.

    A binary login.defs or PAM file is damage or a planted file: reading settings out of it would be guessing.
    """
    text = host.read_optional(path)
    if text is None:
        return None
    bad = next((i for i, ch in enumerate(text) if ch in BINARY), None)
    if bad is not None:
        raise Unavailable(SkipReason.ERROR, f"{path} is not a text file (byte 0x{ord(text[bad]):02x} at offset {bad}): "
                                            "no setting is read from it")
    return text


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
    """The host's login.defs (``present`` False and no settings when an OS tree has none)."""
    why = not_an_os_tree(host, "password policy")
    if why:
        raise Unavailable(SkipReason.UNSUPPORTED, why)
    text = read_config(host, "/etc/login.defs")
    return LoginDefs(parse_login_defs(text or ""), text is not None)


LOGIN_DEFS: Fact[LoginDefs] = Fact("login_defs", collect_login_defs)


@dataclass(frozen=True)
class PamLine:
    """One line of a PAM stack of one type (``password``, ``auth``), after includes are followed."""

    path: str                   # the file as PAM opens it (/etc/pam.d/system-auth)
    line: int
    control: str
    module: str
    args: tuple[str, ...]
    raw: str = field(default="", compare=False)  # the line as written (what a fix edits)
    link: str | None = None     # where ``path`` leads when it is a symlink (/etc/authselect/system-auth)

    def arg(self, name: str) -> str | None:
        """Value of ``name=value`` (or ``""`` for a bare flag), None when absent."""
        for a in self.args:
            key, eq, value = a.partition("=")
            if key == name:
                return value if eq else ""
        return None

    def is_module(self, name: str) -> bool:
        """True when this line runs module ``name`` (``pam_unix.so``), named bare or by full path."""
        return self.module.rsplit("/", 1)[-1] == name


def unix_hash_option(line: PamLine) -> tuple[str, str] | None:
    """The hash option pam_unix acts on (the last one, matched by prefix) and the method it selects."""
    found = None
    for arg in line.args:
        for token, method in PAM_UNIX_HASHES:
            if arg.startswith(token):
                found = (arg, method)
                break
    return found


def unix_login_defs_method(value: str) -> str | None:
    """The method pam_unix takes from ``ENCRYPT_METHOD value``; None when it does not know the value."""
    for token, method in PAM_UNIX_HASHES:
        if value.lower().startswith(token):
            return method
    return None


@dataclass(frozen=True)
class PamStack:
    """One password stack a service uses (its ``password`` lines, includes followed)."""

    path: str
    lines: tuple[PamLine, ...]

    def module(self, name: str) -> PamLine | None:
        """First line using module ``name`` (e.g. ``pam_unix.so``)."""
        return next((line for line in self.lines if line.is_module(name)), None)


@dataclass(frozen=True)
class Authselect:
    """authselect's state: the profile and features from authselect.conf (RHEL 8+, Fedora)."""

    profile: str                # "local", "sssd", "custom/NAME"; "" when authselect.conf is missing
    features: tuple[str, ...]
    conf_present: bool


@dataclass(frozen=True)
class PamPolicy:
    """Every password stack plus pwquality.conf, and authselect when it manages the PAM files."""

    stacks: tuple[PamStack, ...]
    pwquality: dict[str, Setting]
    authselect: Authselect | None = None
    pam_d: bool = True          # /etc/pam.d exists (False: PAM is not installed in this tree)

    def stack(self, path: str | None = None) -> PamStack:
        """The stack at ``path`` (the first one when None; an empty one when the host has none)."""
        for stack in self.stacks:
            if path is None or stack.path == path:
                return stack
        return PamStack(path or PAM_STACKS[0], ())

    def managed(self, line: PamLine) -> bool:
        """True when authselect generates the file of ``line`` (a link into /etc/authselect/)."""
        return line.link is not None and line.link.startswith(AUTHSELECT_DIR + "/")


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


def link_target(host: Host, path: str) -> str | None:
    """Where ``path`` leads inside the host when its last component is a symlink, else None."""
    parent, name = os.path.split(path)
    try:
        real = host.resolve(path)
        real_parent = host.resolve(parent)
    except HostError:
        return None
    if real == os.path.join(real_parent, name):
        return None
    rel = os.path.relpath(real, host.root)
    return str(PurePosixPath("/", rel))


def _include_path(name: str) -> str:
    return name if name.startswith("/") else f"/etc/pam.d/{name}"


def parse_pam_stack(host: Host, path: str, depth: int = 0, kind: str = "password") -> list[PamLine]:
    """``kind`` lines (``password``, ``auth``) of one PAM file, following @include, include and substack."""
    text = read_config(host, path) if depth <= 8 else None
    if text is None:
        return []
    link = link_target(host, path)
    lines: list[PamLine] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = _pam_words(line)
        if words[0] == "@include" and len(words) > 1:
            lines += parse_pam_stack(host, _include_path(words[1]), depth + 1, kind)
            continue
        if words[0].lstrip("-") != kind or len(words) < 3:
            continue
        if words[1] in ("include", "substack"):
            lines += parse_pam_stack(host, _include_path(words[2]), depth + 1, kind)
            continue
        lines.append(PamLine(path, number, words[1], words[2], tuple(words[3:]), raw, link))
    return lines


def _authselect(host: Host, links: list[str | None]) -> Authselect | None:
    """authselect's profile and features when it is in charge: authselect.conf, or PAM files linked into
    /etc/authselect/ (a host that ran ``authselect opt-out`` has regular files and is edited by hand)."""
    text = host.read_optional(AUTHSELECT_CONF)
    linked = any(link and link.startswith(AUTHSELECT_DIR + "/") for link in links)
    if not linked:
        return None
    words = [w for w in (line.split("#", 1)[0].strip() for line in (text or "").splitlines()) if w]
    return Authselect(words[0] if words else "", tuple(words[1:]), text is not None)


def _pwquality(host: Host) -> dict[str, Setting]:
    pwq: dict[str, Setting] = {}
    # libpwquality reads pwquality.conf.d/*.conf (sorted) first and pwquality.conf last: the main file wins
    files = [f"/etc/security/pwquality.conf.d/{n}" for n in host.listdir("/etc/security/pwquality.conf.d")
             if n.endswith(".conf")] + ["/etc/security/pwquality.conf"]
    for path in files:
        text = read_config(host, path) or ""
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            key, eq, value = line.partition("=")
            if eq:
                pwq[key.strip()] = Setting(value.strip(), path, number, raw)
            elif line:
                pwq[line] = Setting("", path, number, raw)
    return pwq


def collect_pam(host: Host) -> PamPolicy:
    """Every shared password stack the host has (``passwd`` alone when it has none), pwquality.conf (plus
    its .d directory) and authselect."""
    why = not_an_os_tree(host, "password policy")
    if why:
        raise Unavailable(SkipReason.UNSUPPORTED, why)
    roots = [p for p in PAM_STACKS if host.exists(p)] or ([FALLBACK_STACK] if host.exists(FALLBACK_STACK) else [])
    stacks = tuple(PamStack(p, tuple(parse_pam_stack(host, p))) for p in roots)
    authselect = _authselect(host, [link_target(host, p) for p in roots])
    return PamPolicy(stacks, _pwquality(host), authselect, host.exists("/etc/pam.d"))


PAM: Fact[PamPolicy] = Fact("pam", collect_pam)


def is_nullok(option: str) -> bool:
    """True for a pam_unix option that lets an empty password in (``nullok``, ``nullresetok``, by prefix)."""
    return option.startswith(NULLOK_OPTIONS)


def unix_nullok(line: PamLine) -> tuple[str, ...]:
    """The options of a pam_unix line that let an empty password in."""
    return tuple(a for a in line.args if is_nullok(a)) if line.is_module("pam_unix.so") else ()


@dataclass(frozen=True)
class PamAuth:
    """The ``auth`` lines every PAM service runs (includes followed, each written line once), the services
    that reach each file, and authselect when it generates the shared files."""

    lines: tuple[PamLine, ...]
    used_by: dict[str, tuple[str, ...]]  # file -> the services (/etc/pam.d names) whose auth stack reads it
    authselect: Authselect | None = None

    def nullok_lines(self) -> tuple[PamLine, ...]:
        """pam_unix auth lines with ``nullok`` (or ``nullresetok``): where an account with an empty password
        logs in with none.

        For other checks: ``accounts.empty_password`` names these lines in its fix.
        """
        return tuple(line for line in self.lines if unix_nullok(line))

    def managed(self, line: PamLine) -> bool:
        """True when authselect generates the file of ``line`` (a link into /etc/authselect/)."""
        return self.authselect is not None and line.link is not None and line.link.startswith(AUTHSELECT_DIR + "/")


def _service_names(host: Host) -> list[str]:
    """PAM service files: every name in /etc/pam.d except the copies package managers and editors leave
    (``sshd.dpkg-old``, ``system-auth.rpmnew``, ``login~``), which no service opens (service names have no dot)."""
    return [n for n in host.listdir("/etc/pam.d") if "." not in n and not n.endswith("~")]


def collect_pam_auth(host: Host) -> PamAuth:
    """The auth lines of every service in /etc/pam.d (the shared stacks first: common-auth, system-auth,
    password-auth), each written line once however many services include it."""
    why = not_an_os_tree(host, "password policy")
    if why:
        raise Unavailable(SkipReason.UNSUPPORTED, why)
    if not host.exists("/etc/pam.d"):
        raise Unavailable(SkipReason.UNSUPPORTED, "no /etc/pam.d in this tree: PAM is not installed, so no "
                                                  "service authenticates through pam_unix")
    shared = [n for n in ("common-auth", "system-auth", "password-auth") if host.exists(f"/etc/pam.d/{n}")]
    seen: dict[tuple[str, int], PamLine] = {}
    used_by: dict[str, list[str]] = {}
    for name in [*shared, *(n for n in _service_names(host) if n not in shared)]:
        for line in parse_pam_stack(host, f"/etc/pam.d/{name}", kind="auth"):
            seen.setdefault((line.path, line.line), line)
            users = used_by.setdefault(line.path, [])
            if name not in shared and name not in users:
                users.append(name)
    links = [link_target(host, f"/etc/pam.d/{n}") for n in shared]
    return PamAuth(tuple(seen.values()), {k: tuple(v) for k, v in used_by.items()}, _authselect(host, links))


PAM_AUTH: Fact[PamAuth] = Fact("pam_auth", collect_pam_auth)


def collect_pam_nullok(host: Host, auth: PamAuth | None) -> tuple[PamLine, ...]:
    """The pam_unix nullok auth lines, empty when PAM cannot be read here: for checks that only name them in
    advice (``accounts.empty_password``) and must run without PAM."""
    return auth.nullok_lines() if auth is not None else ()


PAM_NULLOK: Fact[tuple[PamLine, ...]] = Fact("pam_nullok", collect_pam_nullok, inputs=(PAM_AUTH.best_effort,))


@dataclass(frozen=True)
class EffectivePolicy:
    """What a new password must satisfy through one stack, with where each part is decided."""

    module: str | None          # pam_pwquality.so, pam_cracklib.so, pam_passwdqc.so or None
    min_length: int             # fewest characters a password can have and pass
    min_length_at: Setting
    classes: int                # character classes required
    classes_at: Setting
    method: str                 # hash method for new passwords
    method_at: Setting
    rounds: int | None
    rounds_at: Setting | None
    stack: str | None = None    # the stack this is the policy of
    quality_unknown: str | None = None  # why length and classes cannot be known here (then they mean nothing)
    method_unknown: str | None = None   # why the hash method cannot be known here (then method means nothing)


QUALITY_MODULES = ("pam_pwquality.so", "pam_cracklib.so", "pam_passwdqc.so")


def _num(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def quality_module(stack: PamStack) -> str | None:
    """The password quality module the stack runs, if any."""
    return next((m for m in QUALITY_MODULES if stack.module(m)), None)


def effective_policy(pam: PamPolicy, defs: LoginDefs, stack: PamStack | None = None) -> EffectivePolicy:
    """Combine one stack (the first when None), pwquality.conf and login.defs into the policy in force.

    pwquality/cracklib: a positive credit lowers the length needed (a password with that class may be
    shorter); a negative credit requires that class; ``minclass`` requires classes. The hash method is
    pam_unix's last hash option, else ENCRYPT_METHOD in login.defs as pam_unix reads it.
    """
    stack = stack if stack is not None else pam.stack()
    quality = quality_module(stack)
    unix = stack.module("pam_unix.so")
    default = Setting("", None, None)
    name, name_at, rounds, rounds_at, method_unknown = _method(unix, defs, _no_stack(pam, stack))
    method = (name, name_at, rounds, rounds_at, stack.path)
    if quality is None and unix is None:  # nothing on the stack checks a new password that we know of
        why = _no_stack(pam, stack) or (f"{stack.path} has neither pam_unix.so nor a password quality module: "
                                        "hostguard does not know what it asks of a new password")
        return EffectivePolicy(None, 0, default, 0, default, *method, quality_unknown=why,
                               method_unknown=method_unknown)
    if quality == "pam_passwdqc.so":
        line = stack.module(quality)
        assert line is not None
        spec = line.arg("min") or "disabled,24,11,8,7"
        at = Setting(spec, line.path, line.line, line.raw)
        # N0 one class, N1 two, N2 passphrase (not counted here), N3 three classes, N4 four classes.
        options = [(c, int(v)) for c, v in zip((1, 2, None, 3, 4), spec.split(","), strict=False)
                   if c is not None and v.isdigit()]
        min_len = min((length for _, length in options), default=0)
        classes = min((c for c, _ in options), default=4)
        return EffectivePolicy(quality, min_len, at, classes, at, *method, method_unknown=method_unknown)
    if quality in ("pam_pwquality.so", "pam_cracklib.so"):
        line = stack.module(quality)
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
        return EffectivePolicy(quality, effective_len, minlen_at, classes, classes_at, *method,
                               method_unknown=method_unknown)
    assert unix is not None
    unix_minlen = unix.arg("minlen")
    at = Setting(unix_minlen or "6", unix.path, unix.line, unix.raw)  # pam_unix's own minimum is 6
    return EffectivePolicy(None, _num(unix_minlen, 6), at, 0, at, *method, method_unknown=method_unknown)


def _no_stack(pam: PamPolicy, stack: PamStack) -> str | None:
    """Why there is no password stack to read (None when ``stack`` is one of the host's)."""
    if stack in pam.stacks:
        return None
    if not pam.pam_d:
        return "no /etc/pam.d in this tree: PAM is not installed, so no PAM password stack checks new passwords"
    return (f"none of {', '.join([*PAM_STACKS, FALLBACK_STACK])} exists: this host's password stack is set up "
            "in a way hostguard does not know")


def _method(unix: PamLine | None, defs: LoginDefs, no_stack: str | None
            ) -> tuple[str, Setting, int | None, Setting | None, str | None]:
    """The hash method, where it is decided, the SHA rounds and where, and why the method is unknown (None
    when it is known): pam_unix's last hash option, else ENCRYPT_METHOD as pam_unix reads it, else pam_unix's
    own default (DES); without pam_unix, ENCRYPT_METHOD as shadow's tools read it, else unknown."""
    method = None
    at = Setting("", None, None)
    enc = defs.get("ENCRYPT_METHOD")
    if unix is not None:
        option = unix_hash_option(unix)
        if option is not None:
            method, at = option[1], Setting(option[0], unix.path, unix.line, unix.raw)
        elif enc is not None:  # pam_unix's reading of it: a value it does not know leaves DES
            method, at = unix_login_defs_method(enc.value) or "des", enc
    elif enc is not None:
        method, at = LOGIN_DEFS_METHODS.get(enc.value.upper(), enc.value.lower()), enc
    if method is None and unix is None:
        where = no_stack or "the password stack has no pam_unix.so line"
        file = "/etc/login.defs sets no ENCRYPT_METHOD" if defs.present else "there is no /etc/login.defs"
        return "", at, None, None, f"{where}, and {file}: hostguard does not know what hashes new passwords"
    if method is None:  # pam_unix with no hash option and no ENCRYPT_METHOD: its built-in DES (chpasswd -R shows)
        method, at = "des", Setting("des", None, None)
    rounds: int | None = None
    rounds_at: Setting | None = None
    if unix is not None and unix.arg("rounds"):
        rounds = _num(unix.arg("rounds"), 0)
        rounds_at = Setting(unix.arg("rounds") or "", unix.path, unix.line, unix.raw)
    elif method in ("sha512", "sha256"):
        rounds, rounds_at = _login_defs_rounds(defs, unix is not None)
    return method, at, rounds, rounds_at, None


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
