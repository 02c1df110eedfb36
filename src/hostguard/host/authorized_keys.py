"""SSH keys planted for the host's accounts: every file sshd's AuthorizedKeysFile names, plus the defaults."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from hostguard.engine.facts import Fact
from hostguard.host.accounts import ACCOUNTS, Accounts
from hostguard.host.base import Host, HostError
from hostguard.host.sshd import SSHD_FILES, ParsedConfig, evaluate

KEY_TYPES = ("ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
DEFAULT_KEY_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")


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


@dataclass(frozen=True)
class AuthorizedKeys:
    """Every key file found for the host's accounts, and the AuthorizedKeysFile patterns in force."""

    keys: tuple[AuthorizedKey, ...]
    patterns: tuple[str, ...]
    files: tuple[tuple[str, str, str], ...]  # (user, path, AuthorizedKeysFile pattern) of each key file


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
        keys.append(AuthorizedKey(user, path, number, words[0], tuple(o for o in options if o), comment,
                                  words[1][-12:], raw))
    return keys


def expand_key_file_pattern(pattern: str, user: str, home: str, uid: int) -> str:
    """AuthorizedKeysFile tokens (%h %u %U %%); a relative pattern is relative to the home directory."""
    out = pattern.replace("%%", "\0").replace("%h", home).replace("%u", user).replace("%U", str(uid))
    out = out.replace("\0", "%")
    return out if out.startswith("/") else f"{home.rstrip('/')}/{out}"


def collect_authorized_keys(host: Host, accounts: Accounts, sshd_files: ParsedConfig | None) -> AuthorizedKeys:
    """Keys of every account, from the files sshd reads (AuthorizedKeysFile) plus the default ones."""
    configured = evaluate(sshd_files, None).get("authorizedkeysfile") if sshd_files else None
    patterns = tuple(shlex.split(configured)) if configured else DEFAULT_KEY_FILES
    keys: list[AuthorizedKey] = []
    files: list[tuple[str, str, str]] = []
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
            except HostError:
                continue
            seen.add(path)
            files.append((user.name, path, pattern))
            keys.extend(parse_authorized_keys(text, user.name, path))
    return AuthorizedKeys(tuple(keys), patterns, tuple(files))


AUTHORIZED_KEYS: Fact[AuthorizedKeys] = Fact("authorized_keys", collect_authorized_keys,
                                             inputs=(ACCOUNTS, SSHD_FILES.best_effort))
