"""SSH keys planted for the host's accounts: every file sshd's AuthorizedKeysFile names, plus the defaults.

Each key carries its SHA256 fingerprint as ``ssh-keygen -l`` prints it (what owners compare keys by, and what
the key history in state.db is keyed on) and its size in bits. A key file that exists but cannot be read is
listed in ``unread``: "no keys" must never be confused with "not looked" (the key history would call the
unread keys gone, and report them as new once the file is readable again).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from hostguard.engine.facts import Fact
from hostguard.host.accounts import ACCOUNTS, Accounts
from hostguard.host.base import FileMissing, Host, HostError
from hostguard.host.sshd import SSHD_FILES, ParsedConfig, evaluate

KEY_TYPES = ("ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
DEFAULT_KEY_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")
# bits ssh-keygen -l prints for the key types whose size the curve fixes
CURVE_BITS = {"ssh-ed25519": 256, "sk-ssh-ed25519@openssh.com": 256, "ecdsa-sha2-nistp256": 256,
              "ecdsa-sha2-nistp384": 384, "ecdsa-sha2-nistp521": 521, "sk-ecdsa-sha2-nistp256@openssh.com": 256}


@dataclass(frozen=True)
class AuthorizedKey:
    """One key line of an authorized_keys file."""

    user: str
    path: str
    line: int
    key_type: str
    options: tuple[str, ...]
    comment: str
    fingerprint_source: str  # the base64 blob's tail, enough to tell keys apart in evidence
    raw: str = field(default="", compare=False)  # the line as written (what a fix deletes)
    fingerprint: str = ""  # "SHA256:..." as ssh-keygen -l prints it; "" when the blob is not a key sshd could use
    bits: int | None = None  # the size ssh-keygen -l prints (None when the blob does not say)


@dataclass(frozen=True)
class AuthorizedKeys:
    """Every key file found for the host's accounts, and the AuthorizedKeysFile patterns in force."""

    keys: tuple[AuthorizedKey, ...]
    patterns: tuple[str, ...]
    files: tuple[tuple[str, str, str], ...]  # (user, path, AuthorizedKeysFile pattern) of each key file
    mtimes: Mapping[str, float] = field(default_factory=dict)  # path -> mtime of each key file read
    unread: tuple[tuple[str, str, str], ...] = ()  # (user, path, why) of key files that exist but were not read

    @property
    def unread_users(self) -> frozenset[str]:
        """Accounts with a key file that could not be read: their keys are not all known."""
        return frozenset(user for user, _, _ in self.unread)


def split_key_options(line: str) -> tuple[list[str], str]:
    """Split a key line's leading options (comma separated, quotes respected) from the rest."""
    options: list[str] = []
    current = []
    in_quotes = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == "\\" and in_quotes and i + 1 < len(line):
            current.append(ch)
            i += 1
            ch = line[i]
        elif not in_quotes and ch == ",":
            options.append("".join(current))
            current = []
            i += 1
            continue
        elif not in_quotes and ch in " \t":
            options.append("".join(current))
            return options, line[i:].strip()
        current.append(ch)
        i += 1
    return options + ["".join(current)], ""


def _wire_strings(blob: bytes) -> list[bytes]:
    """The SSH wire-format strings (uint32 length, bytes) a public key blob is made of; ValueError if cut short."""
    out: list[bytes] = []
    at = 0
    while at < len(blob):
        if at + 4 > len(blob):
            raise ValueError("truncated length")
        size = int.from_bytes(blob[at:at + 4], "big")
        at += 4
        if at + size > len(blob):
            raise ValueError("truncated string")
        out.append(blob[at:at + size])
        at += size
    return out


def key_identity(key_type: str, blob_b64: str) -> tuple[str, int | None] | None:
    """The SHA256 fingerprint (``ssh-keygen -l``'s form) and size in bits of a key, or None when the base64 blob
    is not a well-formed key of ``key_type`` (sshd ignores such a line, so it is no key to track)."""
    try:
        blob = base64.b64decode(blob_b64, validate=True)
        fields = _wire_strings(blob)
    except (binascii.Error, ValueError):
        return None
    if not fields or fields[0] != key_type.encode():
        return None
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    bits: int | None = CURVE_BITS.get(key_type)
    if key_type == "ssh-rsa" and len(fields) >= 3:
        bits = int.from_bytes(fields[2], "big").bit_length()  # e, then the modulus n
    elif key_type == "ssh-dss" and len(fields) >= 2:
        bits = int.from_bytes(fields[1], "big").bit_length()  # p
    return f"SHA256:{digest}", bits


def parse_authorized_keys(text: str, user: str, path: str) -> list[AuthorizedKey]:
    """Keys of one file. A line whose first word is not a key type carries options first."""
    keys: list[AuthorizedKey] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        options: list[str] = []
        rest = line
        if line.split()[0] not in KEY_TYPES:
            options, rest = split_key_options(line)
        words = rest.split(None, 2)
        if len(words) < 2 or words[0] not in KEY_TYPES:
            continue
        comment = words[2].strip() if len(words) > 2 else ""
        fingerprint, bits = key_identity(words[0], words[1]) or ("", None)
        keys.append(AuthorizedKey(user, path, number, words[0], tuple(o for o in options if o), comment,
                                  words[1][-12:], raw, fingerprint, bits))
    return keys


def expand_key_file_pattern(pattern: str, user: str, home: str, uid: int) -> str:
    """AuthorizedKeysFile tokens (%h %u %U %%); a relative pattern is relative to the home directory."""
    out = pattern.replace("%%", "\0").replace("%h", home).replace("%u", user).replace("%U", str(uid))
    out = out.replace("\0", "%")
    return out if out.startswith("/") else f"{home.rstrip('/')}/{out}"


def collect_authorized_keys(host: Host, accounts: Accounts, sshd_files: ParsedConfig | None) -> AuthorizedKeys:
    """Keys of every account, from the files sshd reads (AuthorizedKeysFile) plus the default ones.

    A missing file is no keys; a file (or a directory on its way) that exists but cannot be read is listed in
    ``unread`` instead, so nothing downstream takes its keys for gone.
    """
    configured = evaluate(sshd_files, None).get("authorizedkeysfile") if sshd_files else None
    patterns = tuple(shlex.split(configured)) if configured else DEFAULT_KEY_FILES
    keys: list[AuthorizedKey] = []
    files: list[tuple[str, str, str]] = []
    mtimes: dict[str, float] = {}
    unread: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for user in accounts.users:
        # defaults first: a configured pattern naming the same file (%h/.ssh/authorized_keys) is not unusual
        for pattern in dict.fromkeys((*DEFAULT_KEY_FILES, *patterns)):
            if pattern.lower() == "none":
                continue
            path = expand_key_file_pattern(pattern, user.name, user.home, user.uid)
            if path in seen:
                continue
            try:
                text = host.read_text(path)
            except FileMissing:
                continue
            except HostError as exc:
                unread.append((user.name, path, str(exc)))
                continue
            seen.add(path)
            files.append((user.name, path, pattern))
            keys.extend(parse_authorized_keys(text, user.name, path))
            with contextlib.suppress(HostError):  # read a moment ago: at worst the evidence lacks the mtime
                mtimes[path] = host.stat(path).mtime
    return AuthorizedKeys(tuple(keys), patterns, tuple(files), mtimes, tuple(unread))


AUTHORIZED_KEYS: Fact[AuthorizedKeys] = Fact("authorized_keys", collect_authorized_keys,
                                             inputs=(ACCOUNTS, SSHD_FILES.best_effort))
