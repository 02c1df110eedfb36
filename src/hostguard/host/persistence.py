"""Every place a program is started again after a reboot, a logon or an upgrade, as one list of entries.

Attackers who got in once make sure they come back: a cron line, a systemd unit, a line in root's
``.bashrc``, an APT hook, a ``pam_exec.so`` line, a ``.pth`` file Python runs at start-up, an
``ld.so.preload`` library. Each place has its own syntax, so each has a small parser here that turns it
into :class:`Entry` records (file, line, the text as written, what it runs); the persistence family then
judges all of them the same way. The collector also resolves what each entry runs (a bare ``run-parts``
through the usual PATH), asks the package database (dpkg, rpm or apk) once which package owns those
programs, and looks at where they live (a temporary or hidden directory, a user's home, a world-writable
directory): checks stay pure.

Everything is read through the host layer, so ``--root`` scans an image the same way the live host is
scanned. Parsers never raise on garbage: a line they cannot read is skipped (and a whole file that cannot
be read is a :class:`HostError` of the fact, so the checks say "not checked" rather than "nothing found").
"""

from __future__ import annotations

import os
import re
import shlex
import stat as stat_mod
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from hostguard.data import load_toml
from hostguard.engine.facts import SCAN_TIME, Fact, config_input
from hostguard.findings import SkipReason
from hostguard.host.accounts import ACCOUNTS, Accounts
from hostguard.host.base import FileMissing, Host, HostError, Unavailable
from hostguard.host.packages import FileOwners, package_owners
from hostguard.host.pam import PamLine, parse_pam_stack
from hostguard.host.sshd import SSHD_FILES, ParsedConfig, canonical_keyword

if TYPE_CHECKING:
    from hostguard.checks.persistence import PersistenceConfig

MAX_DEPTH = 3  # `sh -c "bash -c '...'"` nesting followed before giving up


@dataclass(frozen=True)
class PamJump:
    """An earlier line of a PAM stack whose ``value=N`` jump skips a ``pam_exec.so`` line.

    PAM counts a jump in modules: deleting the skipped line alone makes the same ``N`` skip one module more
    (a 2FA module after it, or past the end of the stack). A fix that deletes the line must shorten these
    jumps by one; the entry carries them because the line alone does not show them.
    """

    path: str
    line: int
    raw: str                              # the jump's line as written (what a fix edits)
    spans: tuple[tuple[str, int], ...]    # the (value, N) pairs of its control that skip the line
    services: tuple[str, ...]             # the services (/etc/pam.d names) whose stack has both lines


@dataclass(frozen=True)
class Entry:
    """One persistence entry: where it is written and what it runs.

    ``line`` is 0 for a whole file that is the entry (a script in /etc/cron.daily, an at job).
    ``raw`` is the text exactly as written (what a fix deletes); ``command`` what it runs. A command written
    over several lines (a shell line continued by a trailing backslash, ``&&``, ``||`` or ``|``; a systemd
    setting continued by a backslash) is one entry: ``line`` is its first line, ``end_line`` its last, and
    ``raw`` holds those physical lines joined by newlines, so a fix removes all of them or none.
    """

    kind: str
    path: str
    line: int
    raw: str
    command: str
    user: str | None = None
    unit: str | None = None          # systemd: the unit the file belongs to
    user_unit: bool = False          # systemd: a per-user unit (systemctl --user)
    dropin: bool = False             # systemd: a drop-in file, not the unit itself
    python: bool = False             # the command is Python (.pth), not shell
    programs: tuple[str, ...] = ()   # absolute paths of what it runs (resolved), in order
    owners: tuple[tuple[str, str], ...] = ()    # program -> package (only owned ones)
    entry_owner: str | None = None   # the package owning the entry's file, if any
    database: str | None = None      # the package database read ("dpkg"), None: ownership unknown
    writable: tuple[tuple[str, str], ...] = ()  # program -> why it can be swapped (temp, hidden, home, ...)
    mtime: float | None = None       # the entry file's modification time
    recent: bool | None = None       # modified within [persistence] recent_days of the scan (None: unknown)
    missing: tuple[str, ...] = ()    # programs it names that are not on the host (they run nothing today)
    end_line: int = 0                # the last line of an entry written over several lines (0: ``line`` only)
    pam_jumps: tuple[PamJump, ...] = ()  # pam_exec: earlier lines of the same stack whose jumps skip this line
    pam_unknown: str | None = None   # pam_exec: why the jumps around the line cannot be counted here

    def physical_lines(self) -> list[tuple[int, str]]:
        """(number, text) of every line the entry is written on, top to bottom (none for a whole file)."""
        if not self.line:
            return []
        return list(enumerate(self.raw.split("\n"), self.line))

    def label(self) -> str:
        """Where the entry is, for the report's skipped list."""
        return f"{self.path}:{self.line}" if self.line else self.path

    def owner_of(self, program: str) -> str | None:
        """The package owning ``program``, if any."""
        return dict(self.owners).get(program)


@dataclass
class _Rules:
    path_dirs: tuple[str, ...]
    builtins: frozenset[str]
    wrappers: frozenset[str]
    interpreters: frozenset[str]
    temp_dirs: tuple[str, ...]
    suspicious: tuple[tuple[re.Pattern[str], str], ...]
    suspicious_python: tuple[tuple[re.Pattern[str], str], ...]
    wrapper_positionals: dict[str, int] = field(default_factory=dict)
    option_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unpackaged: dict[str, str] = field(default_factory=dict)
    apt_hooks: tuple[str, ...] = ()
    shell_files: tuple[str, ...] = ()


@cache
def rules() -> _Rules:
    """The family's data file, compiled once."""
    data: dict[str, Any] = load_toml("persistence/rules.toml")
    return _Rules(tuple(data["path_dirs"]), frozenset(data["shell_builtins"]), frozenset(data["wrappers"]),
                  frozenset(data["interpreters"]), tuple(data["temp_dirs"]),
                  tuple((re.compile(s["pattern"]), s["reason"]) for s in data["suspicious"]),
                  tuple((re.compile(s["pattern"]), s["reason"]) for s in data["suspicious_python"]),
                  dict(data["wrapper_positionals"]), {k: tuple(v) for k, v in data["wrapper_options"].items()},
                  dict(data["unpackaged"]), tuple(data["apt_hooks"]), tuple(data["shell_files"]))


# -- what a shell command runs --------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_FD_BEFORE_REDIRECT = re.compile(r"(?<![\w/])\d+(?=[<>])")  # `2>` -> `>`: the fd number is not a word
_SEPARATOR_CHARS = frozenset(";&|()")


def _tokens(line: str) -> list[str]:
    """Shell tokens of one line, quotes respected, operators (``&&``, ``|``, ``>&``) as tokens of their own."""
    lexer = shlex.shlex(_FD_BEFORE_REDIRECT.sub("", line), posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: a plain split still names the program
        return line.split()


def _simple_commands(line: str) -> Iterator[list[str]]:
    """The words of each simple command of a line, redirections and their targets removed."""
    words: list[str] = []
    tokens = _tokens(line)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("#") and not words:
            break
        if token and set(token) <= _SEPARATOR_CHARS | {"<", ">"} and ("<" in token or ">" in token):
            i += 2  # a redirection and its target
            continue
        if (token and set(token) <= _SEPARATOR_CHARS) or token in ("{", "}", "`", "$("):
            if words:
                yield words
            words = []
        else:
            for n, part in enumerate(re.split(r"`|\$\(", token)):  # `cmd and $(cmd start a command of their own
                if n and words:
                    yield words
                    words = []
                if part:
                    words.append(part)
        i += 1
    if words:
        yield words


def command_words(command: str, _depth: int = 0) -> list[str]:
    """The program words of a shell command, in order: the first word of every simple command, after
    environment assignments and wrappers (``nice -n 5``, ``flock LOCK``, ``sudo -u USER``), plus the script
    an interpreter runs and the commands inside ``sh -c '...'``. Builtins (``test``, ``cd``) are left out.
    Never raises."""
    r = rules()
    out: list[str] = []
    for line in command.splitlines():
        for words in _simple_commands(line):
            i = 0
            while i < len(words):
                word = words[i]
                if _ASSIGNMENT.match(word) or re.fullmatch(r"\d+[smhd]?", word):
                    i += 1
                elif word in r.wrappers:
                    i += 1
                    skip = r.wrapper_positionals.get(word, 0)
                    while i < len(words) and (words[i].startswith("-") or skip):
                        if words[i] in r.option_values.get(word, ()):
                            i += 1
                        elif not words[i].startswith("-"):
                            skip -= 1
                        i += 1
                else:
                    break
            if i >= len(words) or words[i] in r.builtins or words[i].startswith(("$", "#", "-")):
                continue
            program = words[i]
            out.append(program)
            base = program.rsplit("/", 1)[-1]
            if base in r.interpreters or re.fullmatch(r"python[0-9.]*", base):
                rest = words[i + 1:]
                if "-c" in rest and _depth < MAX_DEPTH:
                    at = rest.index("-c")
                    if at + 1 < len(rest):
                        out += command_words(rest[at + 1], _depth + 1)
                else:
                    script = next((w for w in rest if not w.startswith("-")), None)
                    if script is not None and script.startswith("/"):
                        out.append(script)
    return out


# -- where a shell command goes on past its line ------------------------------------------------------------

_WORD_BREAKS = frozenset(" \t;&|()<>")
_OPERATOR_END = re.compile(r"(?:&&|(?<!>)\|&?)\s*$")  # `a &&`, `a ||`, `a |`, `a |&` (not the `>|` redirection)


def _shell_code(line: str, before: str = "") -> tuple[str, bool, bool]:
    """``line`` as the shell reads its words: up to an unquoted comment, each quoted or escaped character
    masked as ``_`` (so an operator inside quotes is not one), whether a quote is still open at its end, and
    whether it ends in an unquoted backslash (which joins the next line to it). The masked text has the
    length of the code it stands for. ``before`` is the code character the line follows (a line a backslash
    joined on: ``a\\`` + ``#b`` reads ``a#b``, no comment)."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote == "'":
            quote = None if ch == "'" else quote
            out.append("_")
        elif ch == "\\":
            if i + 1 == len(line):
                return "".join(out), quote is not None, quote is None
            out.append("__")
            i += 1
        elif quote == '"':
            quote = None if ch == '"' else quote
            out.append("_")
        elif ch in "'\"":
            quote = ch
            out.append("_")
        elif ch == "#" and (out[-1] if out else before) in ("", *_WORD_BREAKS):
            break  # a comment starts a word; inside one (`a#b`, `$#`) it is plain text
        else:
            out.append(ch)
        i += 1
    return "".join(out), quote is not None, False


def shell_continuation(line: str) -> str | None:
    """How a shell line goes on to the next one: ``"backslash"`` (a trailing unquoted backslash: the shell
    removes it and the newline, joining the lines), ``"operator"`` (it ends in ``&&``, ``||``, ``|`` or
    ``|&``: the command goes on at the next line that is not blank or a comment), or None.

    A quote still open at the end is not followed: what the lines mean then is left to the owner (the fix
    judges such a line part of something larger)."""
    return _continuation(line)[0]


def _continuation(line: str, before: str = "") -> tuple[str | None, str]:
    """:func:`shell_continuation` of a line that follows ``before`` (see :func:`_shell_code`), and the code
    character the next line follows when a backslash joins it."""
    code, open_quote, backslash = _shell_code(line, before)
    last = code[-1:] or before
    if open_quote:
        return None, last
    if backslash:
        return "backslash", last
    return ("operator" if _OPERATOR_END.search(code) else None), last


def _shell_command_line(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


# -- parsers: text in, entries out (never raise) ----------------------------------------------------------

_CRON_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # Debian's cron ignores /etc/cron.d files with other names
_CRON_ENV = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def _cron_command(text: str) -> str:
    """The part cron runs: up to the first unescaped ``%`` (the rest is standard input)."""
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] == "%":
            out.append("%")
            i += 2
            continue
        if text[i] == "%":
            break
        out.append(text[i])
        i += 1
    return "".join(out).strip()


def parse_crontab(text: str, path: str, *, system: bool, user: str | None = None) -> list[Entry]:
    """Cron lines of a crontab: ``system`` ones (/etc/crontab, /etc/cron.d) carry a user field.

    Environment lines (``MAILTO=root``, ``PATH = /bin``) and comments are not entries; ``@reboot`` and the
    other ``@`` nicknames take the place of the five time fields.
    """
    out: list[Entry] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or _CRON_ENV.match(line):
            continue
        fields = line.split(None, 1 if line.startswith("@") else 5)
        if line.startswith("@"):
            if len(fields) < 2:
                continue
            rest = fields[1]
        else:
            if len(fields) < 6:
                continue
            rest = fields[5]
        who = user
        if system:
            parts = rest.split(None, 1)
            if len(parts) < 2:
                continue
            who, rest = parts
        command = _cron_command(rest)
        if command:
            out.append(Entry("cron", path, number, raw, command, user=who))
    return out


_UNIT_EXEC = re.compile(r"^\s*(Exec(?:Start|StartPre|StartPost|Stop|StopPost|Reload|Condition))\s*=\s*(.*)$")
_UNIT_ENV = re.compile(r"^\s*Environment\s*=\s*(.*)$")


def parse_unit(text: str, path: str, unit: str, *, user_unit: bool = False, dropin: bool = False) -> list[Entry]:
    """``Exec*=`` lines (their ``-@:+!`` prefixes dropped) and ``Environment=`` lines that set LD_PRELOAD.

    A backslash continues a line; the entry is on the line where the setting starts.
    """
    out: list[Entry] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        start = number
        parts = [lines[number]]
        while parts[-1].endswith("\\") and number + 1 < len(lines):
            parts[-1] = parts[-1][:-1]
            number += 1
            parts.append(lines[number])
        logical = " ".join(parts)
        number += 1
        if logical.lstrip().startswith(("#", ";")):
            continue
        raw = "\n".join(lines[start:number])
        common = {"unit": unit, "user_unit": user_unit, "dropin": dropin,
                  "end_line": number if number - start > 1 else 0}
        if match := _UNIT_EXEC.match(logical):
            command = match.group(2).strip().lstrip("-@:+!")
            if command:
                out.append(Entry("systemd", path, start + 1, raw, command, **common))  # type: ignore[arg-type]
        elif (match := _UNIT_ENV.match(logical)) and "LD_PRELOAD" in match.group(1):
            out.append(Entry("systemd", path, start + 1, raw, match.group(1).strip(), **common))  # type: ignore[arg-type]
    return out


def parse_script_lines(text: str, path: str, kind: str, *, user: str | None = None) -> list[Entry]:
    """Every command of a shell file (rc.local, profile.d, .bashrc): comments and blank lines skipped.

    A command the shell reads over several lines is one entry, judged whole: a trailing backslash joins the
    next line (``curl -s URL \\`` / ``| sh``), and a line ending in ``&&``, ``||`` or ``|`` goes on at the
    next command line (``test -n "$PS1" &&`` / ``curl -s URL | sh``; ``curl -s URL |`` / ``sh``), blank and
    comment lines between them included. Read line by line, neither half of ``curl URL |`` + ``sh`` downloads
    and runs, and a fix deleting one half leaves the other to glue onto whatever follows. The entry's command
    is the joined text (comments of the inner lines left out, so they cannot swallow the rest). Other
    multi-line shapes (an open quote, a here-document, if/fi) stay one entry per line: the fix leaves
    those to the owner. Cron does not join lines (crontab(5): the command is the rest of the line), so
    :func:`parse_crontab` does not either.
    """
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if not _shell_command_line(lines[i]):
            i += 1
            continue
        # Each physical line is read once (from the state the line before left), so a file of a million
        # backslash-continued lines costs linear time, not quadratic.
        start, parts, before = i, [lines[i]], ""
        pieces: list[str] = []
        while True:
            how, before = _continuation(lines[i], before)
            if how == "backslash" and i + 1 < len(lines):
                parts[-1] = parts[-1][:-1]  # the shell removes the backslash and the newline
                i += 1
                parts.append(lines[i])
                continue
            following = None
            if how == "operator":
                following = next((j for j in range(i + 1, len(lines)) if _shell_command_line(lines[j])), None)
            if following is None:
                break
            logical = "".join(parts)
            pieces.append(logical[:len(_shell_code(logical)[0])].strip())
            i, parts, before = following, [lines[following]], ""
        pieces.append("".join(parts).strip())
        end = i + 1 if i > start else 0
        out.append(Entry(kind, path, start + 1, "\n".join(lines[start:i + 1]), " ".join(pieces), user=user,
                         end_line=end))
        i += 1
    return out


_APT_TOKEN = re.compile(r'//[^\n]*|/\*.*?\*/|#[^\n]*|"(?:[^"\\\n]|\\.)*"|[{};]|[^\s{};"]+', re.S)


def parse_apt_conf(text: str, path: str, hooks: Iterable[str]) -> list[Entry]:
    """Command strings under APT's hook options (``DPkg::Post-Invoke { "cmd"; };``, ``APT::Update::Pre-Invoke
    "cmd";``), however the scopes are nested or split over lines. Option names are matched without case,
    as APT does. Comments are ``//``, ``/* */`` and ``#`` lines other than ``#clear``/``#include``."""
    wanted = {h.lower() for h in hooks}
    lines = text.splitlines()
    out: list[Entry] = []
    scope: list[str] = []
    pending: str | None = None
    for match in _APT_TOKEN.finditer(text):
        token = match.group(0)
        if token.startswith(("//", "/*")) or (token.startswith("#") and not token.startswith("#clear")):
            continue
        if token == "{":
            scope.append(pending or "")
            pending = None
        elif token == "}":
            if scope:
                scope.pop()
            pending = None
        elif token == ";":
            pending = None
        elif token.startswith('"'):
            key = "::".join(p for p in (*scope, pending or "") if p).lower()
            if key in wanted:
                number = text.count("\n", 0, match.start()) + 1
                raw = lines[number - 1] if number <= len(lines) else ""
                out.append(Entry("apt_hook", path, number, raw, token[1:-1].replace('\\"', '"')))
        else:
            pending = token if pending is None else pending + token
    return out


_PAM_CONTROL = re.compile(r"^\s*-?(\S+)\s+(\[[^\]]*\]|\S+)\s+(\S+)\s*(.*)$")


def parse_pam(text: str, path: str) -> list[Entry]:
    """``pam_exec.so`` lines, with the command they run (after the module's own options)."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.lstrip().startswith("#"):
            continue
        match = _PAM_CONTROL.match(raw)
        if not match or match.group(3).rsplit("/", 1)[-1] != "pam_exec.so":
            continue
        args = _tokens(match.group(4))
        options = {"debug", "expose_authtok", "seteuid", "quiet", "quiet_log", "stdout"}
        while args and (args[0] in options or "=" in args[0]):
            args.pop(0)
        if args:
            out.append(Entry("pam_exec", path, number, raw, shlex.join(args)))
    return out


def parse_pth(text: str, path: str) -> list[Entry]:
    """Lines of a ``.pth`` file that Python executes at start-up (those starting with ``import``)."""
    return [Entry("python_pth", path, number, raw, raw.strip(), python=True)
            for number, raw in enumerate(text.splitlines(), 1)
            if raw.startswith(("import ", "import\t"))]


def parse_preload(text: str, path: str) -> list[Entry]:
    """Libraries listed in ``/etc/ld.so.preload``: separated by white space or colons, ``#`` comments."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        for name in re.split(r"[\s:]+", line):
            if name:
                out.append(Entry("ld_preload", path, number, raw, name))
    return out


_UDEV_RUN = re.compile(r'\bRUN(?:\{(?:program|builtin)\})?\s*\+?=\s*"([^"]*)"')


def parse_udev(text: str, path: str) -> list[Entry]:
    """``RUN+=`` programs of udev rules (``RUN{builtin}`` runs udev's own code and is left out)."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.lstrip().startswith("#"):
            continue
        for match in _UDEV_RUN.finditer(raw):
            if "{builtin}" not in match.group(0) and match.group(1).strip():
                out.append(Entry("udev", path, number, raw, match.group(1).strip()))
    return out


def parse_sshd_command(parsed: ParsedConfig) -> list[Entry]:
    """``AuthorizedKeysCommand`` lines of the sshd config files (``none`` runs nothing)."""
    out = []
    for line in parsed.lines:
        if canonical_keyword(line.keyword) == "authorizedkeyscommand" and line.args and line.args[0] != "none":
            out.append(Entry("ssh_keys_command", line.path, line.number, parsed.raw(line), " ".join(line.args)))
    return out


# -- reading the host ------------------------------------------------------------------------------------

CRON_DIRS = ("/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly")


def _text(host: Host, path: str) -> str | None:
    """A file's text, None when absent or not a regular file (a directory named like a config)."""
    try:
        return host.read_text(path)
    except FileMissing:
        return None
    except HostError as exc:
        if "not a regular file" in str(exc):
            return None
        raise


def _files(host: Host, directory: str, suffix: str = "") -> Iterator[str]:
    for name in host.listdir(directory):
        if name.endswith(suffix) and not name.endswith((".dpkg-old", ".dpkg-dist", ".dpkg-new", "~")):
            yield f"{directory}/{name}"


def _private_listdir(host: Host, directory: str) -> list[str]:
    """A spool directory only root may list (users' crontabs, at jobs): not_root rather than a partial answer."""
    try:
        return host.listdir(directory)
    except HostError as exc:
        if "ermission denied" in str(exc):
            raise Unavailable(SkipReason.NOT_ROOT, f"reading {directory} needs root") from exc
        raise


def _homes(accounts: Accounts | None) -> list[tuple[str, str]]:
    """(user, home) of root and of every account with a home outside /, as the tree's passwd says."""
    if accounts is None:
        return [("root", "/root")]
    seen: dict[str, str] = {}
    for user in accounts.users:
        if user.home and user.home != "/" and (user.uid == 0 or user.uid >= accounts.uid_min) \
                and user.home not in seen.values():
            seen.setdefault(user.name, user.home.rstrip("/"))
    return sorted(seen.items())


def _raw_entries(host: Host, accounts: Accounts | None, sshd: ParsedConfig | None) -> list[Entry]:
    out: list[Entry] = []
    for path in ("/etc/crontab", *_files(host, "/etc/cron.d")):
        named = path == "/etc/crontab" or _CRON_NAME.match(path.rsplit("/", 1)[-1])
        if named and (text := _text(host, path)) is not None:
            out += parse_crontab(text, path, system=True)
    for name in _private_listdir(host, "/var/spool/cron/crontabs"):
        path = f"/var/spool/cron/crontabs/{name}"
        if (text := _text(host, path)) is not None:
            out += parse_crontab(text, path, system=False, user=name)
    for directory in CRON_DIRS:
        for path in _files(host, directory):
            if path.rsplit("/", 1)[-1] != ".placeholder" and (text := _text(host, path)) is not None:
                out.append(Entry("scheduled_script", path, 0, "", text))
    for name in _private_listdir(host, "/var/spool/cron/atjobs"):
        path = f"/var/spool/cron/atjobs/{name}"
        if name != ".SEQ" and (text := _text(host, path)) is not None:
            out.append(Entry("scheduled_script", path, 0, "", text))
    out += _units(host, "/etc/systemd/system", user_unit=False)
    out += _units(host, "/etc/systemd/user", user_unit=True)
    for user, home in _homes(accounts):
        out += [replace(e, user=user) for e in _units(host, f"{home}/.config/systemd/user", user_unit=True)]
        for name in rules().shell_files:
            if (text := _text(host, f"{home}/{name}")) is not None:
                out += parse_script_lines(text, f"{home}/{name}", "shell_startup", user=user)
    if (text := _text(host, "/etc/rc.local")) is not None:
        out += parse_script_lines(text, "/etc/rc.local", "rc_local")
    for path in ("/etc/profile", "/etc/bash.bashrc", *_files(host, "/etc/profile.d")):
        if (text := _text(host, path)) is not None:
            out += parse_script_lines(text, path, "shell_startup")
    for path in _files(host, "/etc/init.d"):
        if (text := _text(host, path)) is not None:
            out.append(Entry("init_script", path, 0, "", text))
    for path in _files(host, "/etc/update-motd.d"):
        if (text := _text(host, path)) is not None:
            out.append(Entry("motd", path, 0, "", text))
    for path in ("/etc/apt/apt.conf", *_files(host, "/etc/apt/apt.conf.d")):
        if (text := _text(host, path)) is not None:
            out += parse_apt_conf(text, path, rules().apt_hooks)
    for path in _files(host, "/etc/pam.d"):
        if (text := _text(host, path)) is not None:
            out += parse_pam(text, path)
    if sshd is not None:
        out += parse_sshd_command(sshd)
    for directory in _site_dirs(host):
        for path in _files(host, directory, ".pth"):
            if (text := _text(host, path)) is not None:
                out += parse_pth(text, path)
    if (text := _text(host, "/etc/ld.so.preload")) is not None:
        out += parse_preload(text, "/etc/ld.so.preload")
    for path in _files(host, "/etc/udev/rules.d", ".rules"):
        if (text := _text(host, path)) is not None:
            out += parse_udev(text, path)
    return out


def _units(host: Host, directory: str, *, user_unit: bool) -> list[Entry]:
    """Unit files and drop-ins written in ``directory`` (``*.wants`` links are the enabling, not the unit)."""
    out: list[Entry] = []
    for name in host.listdir(directory):
        path = f"{directory}/{name}"
        if name.endswith(".d"):
            unit = name[:-2]
            for conf in _files(host, path, ".conf"):
                if (text := _text(host, conf)) is not None:
                    out += parse_unit(text, conf, unit, user_unit=user_unit, dropin=True)
        elif name.endswith((".service", ".socket", ".timer", ".path")) and (text := _text(host, path)) is not None:
            out += parse_unit(text, path, name, user_unit=user_unit)
    return out


def _site_dirs(host: Host) -> list[str]:
    """Python's site and dist-packages directories of the system and of /usr/local."""
    out = []
    for base in ("/usr/lib", "/usr/local/lib"):
        for name in host.listdir(base):
            if re.fullmatch(r"python3(?:\.\d+)?", name):
                out += [f"{base}/{name}/{sub}" for sub in ("dist-packages", "site-packages")
                        if host.listdir(f"{base}/{name}/{sub}")]
    return out


def resolve(host: Host, word: str, kind: str) -> str | None:
    """The absolute path a program word names: as written when absolute, else the first match in the usual
    PATH (udev also looks in /lib/udev). None when the host has no such program."""
    if word.startswith("/"):
        return word
    if "/" in word or not word:
        return None
    dirs = ("/usr/lib/udev", "/lib/udev", *rules().path_dirs) if kind == "udev" else rules().path_dirs
    for directory in dirs:
        if host.exists(f"{directory}/{word}"):
            return f"{directory}/{word}"
    return None


def _writable(host: Host, program: str, homes: Sequence[tuple[str, str]], runs_as: str | None) -> str | None:
    """Why ``program`` can be swapped by someone other than the user it runs as, or None.

    A user's own crontab or ``.bashrc`` running a program from that user's home is that user's business;
    root's running it lets the user become root.
    """
    if any(program == d or program.startswith(d + "/") for d in rules().temp_dirs):
        return "in a temporary directory"
    if any(part.startswith(".") and part not in (".", "..") for part in program.split("/")):
        return "in a hidden directory"
    for user, home in homes:
        if home != "/root" and program.startswith(home + "/") and user != runs_as:
            return f"in the home directory of {user}"
    path = program
    while path not in ("", "/"):
        try:
            st = host.stat(path)
        except HostError:
            st = None
        if st is not None and st.mode & stat_mod.S_IWOTH and (st.is_file or st.is_dir) \
                and not (st.is_dir and st.mode & stat_mod.S_ISVTX):
            return f"{path} is world-writable"
        path = path.rsplit("/", 1)[0]
    return None


def programs_of(entry: Entry) -> list[str]:
    """The program words an entry runs (shell syntax, except ``.pth`` lines and preloaded libraries).

    A whole script (``line`` 0) runs itself first, then what its lines name."""
    if entry.kind == "ld_preload":
        return [entry.command]
    if entry.python:
        return []
    if entry.line == 0:
        return [entry.path, *command_words(entry.command)]
    return command_words(entry.command)


# -- what a pam_exec line means to the jumps around it ------------------------------------------------------

PAM_TYPES = ("auth", "account", "password", "session")
_SUBSTACK = "^[ \t]*-?{}[ \t]+substack[ \t]"


class _PamStacks:
    """The stacks of every PAM service as the project's PAM parser reads them (``parse_pam_stack``: includes
    and substacks followed), each read once per type, for the pam_exec entries of one scan."""

    def __init__(self, host: Host) -> None:
        self.host = host
        # service files: what PAM opens by name (no dot: `sudo.dpkg-old`, `login~` are no service)
        self.services = sorted(n for n in host.listdir("/etc/pam.d") if "." not in n and not n.endswith("~"))
        self._stacks: dict[tuple[str, str], tuple[list[PamLine], bool] | str] = {}

    def stack(self, service: str, kind: str) -> tuple[list[PamLine], bool] | str:
        """The ``kind`` lines of ``service`` and whether a file of it has a ``substack`` line of that type (the
        parser lays a substack's lines out like an include's, but PAM counts a substack as one module when a
        jump skips it), or why they cannot be read."""
        key = (service, kind)
        if key not in self._stacks:
            path = f"/etc/pam.d/{service}"
            try:
                lines = parse_pam_stack(self.host, path, kind=kind)
                texts = [self.host.read_optional(p) or "" for p in dict.fromkeys([path, *(x.path for x in lines)])]
            except (Unavailable, HostError) as exc:
                self._stacks[key] = f"{path} cannot be read ({exc})"
            else:
                pattern = re.compile(_SUBSTACK.format(kind), re.M)
                self._stacks[key] = (lines, any(pattern.search(t) for t in texts))
        return self._stacks[key]


def _spans(line: PamLine, distance: int) -> tuple[tuple[str, int], ...]:
    """The ``value=N`` pairs of ``line``'s control that skip the module ``distance`` places below it (a jump
    of N skips the next N modules: it lands ``N + 1`` below, so ``N == distance - 1`` lands *on* the line,
    which is where it lands once the line is gone too: no change is needed for that one)."""
    if not line.control.startswith("["):
        return ()
    out = []
    for pair in line.control.strip("[]").split():
        value, _, action = pair.partition("=")
        if action.isdigit() and int(action) >= distance:
            out.append((value, int(action)))
    return tuple(out)


def pam_jumps(stacks: _PamStacks, entry: Entry) -> tuple[tuple[PamJump, ...], str | None]:
    """The earlier lines of every stack holding ``entry``'s line whose jumps skip it, or why they cannot be
    counted (a substack, an unreadable service file, a type the PAM parser does not read)."""
    kind = entry.raw.split(None, 1)[0].lstrip("-") if entry.raw.strip() else ""
    if kind not in PAM_TYPES:
        return (), f"the line's type `{kind}` is not one of {', '.join(PAM_TYPES)} as written (lower case)"
    found: dict[tuple[str, int], PamJump] = {}
    for service in stacks.services:
        read = stacks.stack(service, kind)
        if isinstance(read, str):
            return (), read  # a service we cannot read may include the line: its jumps are unknown
        lines, substack = read
        for at, line in enumerate(lines):
            if (line.path, line.line) != (entry.path, entry.line):
                continue
            if substack and any(_spans(earlier, 1) for earlier in lines[:at]):
                return (), (f"/etc/pam.d/{service}'s {kind} stack has a substack and jumps before the line: PAM "
                            "counts a substack as one module in a jump, hostguard's PAM parser counts its lines")
            for before, earlier in enumerate(lines[:at]):
                spans = _spans(earlier, at - before)
                if not spans:
                    continue
                known = found.get((earlier.path, earlier.line))
                if known is not None:
                    spans = tuple(dict.fromkeys((*known.spans, *spans)))
                    services = tuple(dict.fromkeys((*known.services, service)))
                else:
                    services = (service,)
                found[(earlier.path, earlier.line)] = PamJump(earlier.path, earlier.line, earlier.raw, spans, services)
    return tuple(sorted(found.values(), key=lambda j: (j.path, j.line))), None


def _with_pam_context(host: Host, entries: list[Entry]) -> list[Entry]:
    """pam_exec entries with the jumps that skip them (the PAM services are read only when there is one)."""
    if not any(e.kind == "pam_exec" for e in entries):
        return entries
    stacks = _PamStacks(host)
    out = []
    for entry in entries:
        if entry.kind == "pam_exec":
            jumps, unknown = pam_jumps(stacks, entry)
            entry = replace(entry, pam_jumps=jumps, pam_unknown=unknown)
        out.append(entry)
    return out


def collect_entries(host: Host, accounts: Accounts | None, sshd: ParsedConfig | None, now: datetime | None,
                    config: PersistenceConfig) -> tuple[Entry, ...]:
    """Every persistence entry of the host, with what it runs resolved, owned and located, and pam_exec
    lines with the PAM jumps that skip them."""
    raw = _with_pam_context(host, _raw_entries(host, accounts, sshd))
    cutoff = None if now is None else now.timestamp() - config.recent_days * 86400
    homes = _homes(accounts)
    resolved: list[tuple[Entry, list[str]]] = []
    for entry in raw:
        words = programs_of(entry)
        paths = [p for p in (resolve(host, w, entry.kind) for w in words) if p]
        resolved.append((entry, list(dict.fromkeys(paths))))
    wanted = {p for _, paths in resolved for p in paths} | {e.path for e, _ in resolved}
    owners = package_owners(host, sorted(wanted))
    out = []
    mtimes: dict[str, float | None] = {}
    for entry, paths in resolved:
        if entry.path not in mtimes:
            try:
                mtimes[entry.path] = host.stat(entry.path).mtime
            except HostError:
                mtimes[entry.path] = None
        writable = tuple((p, why) for p in paths if (why := _writable(host, p, homes, entry.user)) is not None)
        mtime = mtimes[entry.path]
        out.append(replace(entry, programs=tuple(paths),
                           missing=tuple(p for p in paths if not host.exists(p)),
                           recent=None if cutoff is None or mtime is None else mtime >= cutoff,
                           owners=tuple((p, o) for p in paths if (o := owners.owner(p)) is not None),
                           entry_owner=owners.owner(entry.path), database=owners.database,
                           writable=writable, mtime=mtime))
    return tuple(out)


PERSISTENCE: Fact[tuple[Entry, ...]] = Fact("persistence_entries", collect_entries,
                                            inputs=(ACCOUNTS.best_effort, SSHD_FILES.best_effort,
                                                    SCAN_TIME.best_effort, config_input("persistence")))


# -- setuid/setgid files and file capabilities ---------------------------------------------------------------
#
# A copied shell made setuid-root, or a binary given cap_setuid, is a way back to root that no start-up file
# shows. dpkg installs a few dozen such files; anything else is someone's doing. Walking /usr takes seconds,
# so the fact is only a handle on the host: the check walks through it within its own time budget, and the
# walk yields files as it finds them rather than listing trees first.

XATTR_CAPS = "security.capability"
_CAP_REVISIONS = {0x01000000: 1, 0x02000000: 2, 0x03000000: 2}  # vfs_cap_data revision -> 32-bit words
_CAP_EFFECTIVE = 0x000001
_SETID = stat_mod.S_ISUID | stat_mod.S_ISGID
_EXEC = 0o111


@cache
def _setid_data() -> tuple[tuple[str, ...], tuple[str, ...]]:
    data: dict[str, Any] = load_toml("persistence/rules.toml")
    return tuple(data["setid_dirs"]), tuple(data["capabilities"])


@dataclass(frozen=True)
class FileCaps:
    """A decoded ``security.capability`` attribute: the capabilities the program gets when run."""

    permitted: tuple[str, ...]
    inheritable: tuple[str, ...]
    effective: bool              # raised at exec (``+ep``), not only permitted
    decoded: bool = True         # False: the attribute is malformed (the names are then empty)

    def text(self) -> str:
        """The set as ``getcap`` writes it (``cap_net_raw=ep``)."""
        if not self.decoded:
            return "undecodable security.capability attribute"
        parts = []
        if self.permitted:
            parts.append(",".join(self.permitted) + ("=ep" if self.effective else "=p"))
        if self.inheritable:
            parts.append(",".join(self.inheritable) + "+i")
        return " ".join(parts) or "empty capability set"


def _cap_names(mask: int) -> tuple[str, ...]:
    names = _setid_data()[1]
    return tuple(names[bit] if bit < len(names) else f"cap_{bit}" for bit in range(64) if mask >> bit & 1)


def decode_capabilities(raw: bytes) -> FileCaps:
    """The capability sets of a ``security.capability`` value (``struct vfs_cap_data``, little-endian).

    A 4-byte magic (revision in the top byte, bit 0 the effective flag), then per 32-bit word a permitted
    and an inheritable mask; revision 3 appends the namespace's root uid. Garbage decodes as ``decoded=False``.
    """
    if len(raw) < 4:
        return FileCaps((), (), False, decoded=False)
    magic = int.from_bytes(raw[:4], "little")
    words = _CAP_REVISIONS.get(magic & 0xFF000000)
    if words is None or len(raw) < 4 + 8 * words:
        return FileCaps((), (), False, decoded=False)
    permitted = inheritable = 0
    for i in range(words):
        base = 4 + 8 * i
        permitted |= int.from_bytes(raw[base:base + 4], "little") << (32 * i)
        inheritable |= int.from_bytes(raw[base + 4:base + 8], "little") << (32 * i)
    return FileCaps(_cap_names(permitted), _cap_names(inheritable), bool(magic & _CAP_EFFECTIVE))


@dataclass(frozen=True)
class SetidFile:
    """An executable regular file that runs with more privilege than its caller (setuid, setgid, capabilities)."""

    path: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: float
    caps: FileCaps | None = None

    @property
    def setuid(self) -> bool:
        """Runs as its owner."""
        return bool(self.mode & stat_mod.S_ISUID)

    @property
    def setgid(self) -> bool:
        """Runs with its group."""
        return bool(self.mode & stat_mod.S_ISGID)

    def label(self) -> str:
        """The path, for "not checked" lines."""
        return self.path


@dataclass
class SetidWalk:
    """A bounded walk of the host's program directories for :class:`SetidFile` records.

    Never follows a symlink (a link to a setuid file elsewhere is not a file of these directories), never
    leaves the file system of the top directory it started from (so /proc, /sys and other mounts are not
    entered on a live host), and under ``--root`` stays inside the tree: each top directory's parent is
    resolved inside the root and a top that is itself a link is skipped (what it points to is walked
    under its own name). ``stopped_in`` names the directory where the deadline stopped the walk;
    ``unreadable`` the directories it could not list.
    """

    host: Host
    only: tuple[str, ...] = ()       # walk these top directories instead of the data file's (a benchmark)
    stopped_in: str | None = None
    directories: int = 0             # directories listed so far
    unreadable: list[str] = field(default_factory=list)
    walked: list[str] = field(default_factory=list)

    def tops(self) -> list[str]:
        """The top directories of the host to walk, ``/lib*`` expanded."""
        out: list[str] = []
        for top in self.only or _setid_data()[0]:
            if top.endswith("*"):
                stem = top[1:-1]
                out += [f"/{name}" for name in self.host.listdir("/") if name.startswith(stem)]
            else:
                out.append(top)
        return list(dict.fromkeys(out))

    def _real_top(self, top: str) -> tuple[str, os.stat_result] | None:
        parent, _, name = top.rpartition("/")
        try:
            real = os.path.join(self.host.resolve(parent or "/"), name)
            st = os.lstat(real)
        except (HostError, OSError):
            return None
        return (real, st) if stat_mod.S_ISDIR(st.st_mode) else None

    def files(self, deadline: float | None = None, cancel: threading.Event | None = None) -> Iterator[SetidFile]:
        """Every setuid/setgid executable and executable with file capabilities, as they are found."""
        seen: set[tuple[int, int]] = set()
        for top in self.tops():
            found = self._real_top(top)
            if found is None:
                continue
            real, st = found
            if (st.st_dev, st.st_ino) in seen:
                continue  # /usr/local when /usr was walked
            self.walked.append(top)
            stack = [(real, top)]
            seen.add((st.st_dev, st.st_ino))
            while stack:
                if (deadline is not None and time.monotonic() > deadline) or (cancel is not None and cancel.is_set()):
                    self.stopped_in = stack[-1][1]
                    return
                real_dir, host_dir = stack.pop()
                yield from self._directory(real_dir, host_dir, st.st_dev, seen, stack)

    def _directory(self, real_dir: str, host_dir: str, dev: int, seen: set[tuple[int, int]],
                   stack: list[tuple[str, str]]) -> Iterator[SetidFile]:
        try:
            entries = list(os.scandir(real_dir))
        except OSError:
            self.unreadable.append(host_dir)
            return
        self.directories += 1
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            host_path = f"{host_dir.rstrip('/')}/{entry.name}"
            if stat_mod.S_ISDIR(st.st_mode):
                if st.st_dev == dev and (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    stack.append((entry.path, host_path))
                continue
            if not stat_mod.S_ISREG(st.st_mode) or not st.st_mode & _EXEC:
                continue  # only an executable gains anything from these bits
            caps = _caps_of(entry.path)
            if st.st_mode & _SETID or caps is not None:
                yield SetidFile(host_path, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime, caps)

    def owners(self, paths: Iterable[str]) -> FileOwners:
        """Which package owns each path (one read of the package database)."""
        return package_owners(self.host, paths)


def _caps_of(real: str) -> FileCaps | None:
    """The file capabilities of a file (None: it has none, or the file system keeps no such attribute)."""
    try:
        raw = os.getxattr(real, XATTR_CAPS, follow_symlinks=False)
    except OSError:  # ENODATA (none), ENOTSUP (no xattrs here), a file that vanished
        return None
    return decode_capabilities(raw)


def collect_setid_walk(host: Host) -> SetidWalk:
    """A handle for the walk; the check runs it within its budget."""
    return SetidWalk(host)


SETID_WALK: Fact[SetidWalk] = Fact("setid_walk", collect_setid_walk)
