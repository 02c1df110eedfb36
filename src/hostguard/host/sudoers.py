"""sudoers rules of the host: /etc/sudoers and what it includes, aliases expanded."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from hostguard.engine.facts import Fact
from hostguard.host.base import Host

MAX_DEPTH = 8
TAG = re.compile(r"^(NOPASSWD|PASSWD|NOEXEC|EXEC|SETENV|NOSETENV|LOG_INPUT|NOLOG_INPUT|LOG_OUTPUT|NOLOG_OUTPUT|MAIL|"
                 r"NOMAIL|FOLLOW|NOFOLLOW|INTERCEPT|NOINTERCEPT)\s*:\s*(.*)$")


@dataclass(frozen=True)
class SudoRule:
    """One user specification: who may run what as whom, and whether a password is asked."""

    path: str
    line: int
    who: tuple[str, ...]        # user names, %group, +netgroup, after User_Alias expansion
    runas: tuple[str, ...]      # run-as users ("root" when unspecified)
    commands: tuple[str, ...]
    nopasswd: bool
    text: str
    raw: tuple[str, ...] = field(default=(), compare=False)  # the physical lines from ``line`` on, as written
    noauth: tuple[NoAuth, ...] = field(default=(), compare=False)  # Defaults lines that turn authentication off


@dataclass(frozen=True)
class NoAuth:
    """A ``Defaults[:who] !authenticate`` line: sudo asks nobody it covers for a password (global when
    ``scope`` is empty)."""

    path: str
    line: int
    scope: tuple[str, ...]
    text: str


def _logical_lines(text: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """(first line number, the joined logical line, its physical lines) with backslash continuations."""
    out: list[tuple[int, str, tuple[str, ...]]] = []
    buf = ""
    start = 0
    physical: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = number
            physical = []
        physical.append(raw)
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        out.append((start, buf + raw, tuple(physical)))
        buf = ""
    if buf:
        out.append((start, buf, tuple(physical)))
    return out


NOAUTH = re.compile(r"^Defaults(?::(\S+))?\s+(.*)$")


def parse_sudoers(host: Host, path: str, depth: int = 0, aliases: dict[str, list[str]] | None = None,
                  noauth: list[NoAuth] | None = None) -> list[SudoRule]:
    """Rules of one file, following #include/#includedir/@include/@includedir; ``Defaults !authenticate``
    lines are gathered into ``noauth``."""
    aliases = {} if aliases is None else aliases
    noauth = [] if noauth is None else noauth
    text = host.read_optional(path)
    if text is None or depth > MAX_DEPTH:
        return []
    rules: list[SudoRule] = []
    for number, line, physical in _logical_lines(text):
        stripped = line.strip()
        inc = re.match(r"^[#@](include|includedir)\s+(\S+)", stripped)
        if inc:
            target = inc.group(2)
            if inc.group(1) == "include":
                rules += parse_sudoers(host, target, depth + 1, aliases, noauth)
            else:
                for name in host.listdir(target):
                    if "." not in name and not name.endswith("~"):
                        rules += parse_sudoers(host, f"{target}/{name}", depth + 1, aliases, noauth)
            continue
        stripped = stripped.split("#", 1)[0].strip()
        defaults = NOAUTH.match(stripped)
        if defaults and re.search(r"(^|,)\s*!\s*authenticate\s*(,|$)", defaults.group(2)):
            scope = tuple(w.strip() for w in (defaults.group(1) or "").split(",") if w.strip())
            noauth.append(NoAuth(path, number, tuple(x for w in scope for x in aliases.get(w, [w])), physical[0]))
        if not stripped or stripped.startswith("Defaults"):
            continue
        alias = re.match(r"^(User|Runas|Host|Cmnd)_Alias\s+(.*)$", stripped)
        if alias:
            for part in alias.group(2).split(":"):
                name, _, members = part.partition("=")
                aliases[name.strip()] = [m.strip() for m in members.split(",") if m.strip()]
            continue
        rule = _parse_spec(stripped, aliases, path, number)
        if rule:
            rules.append(replace(rule, raw=physical))
    return rules


def _parse_spec(line: str, aliases: dict[str, list[str]], path: str, number: int) -> SudoRule | None:
    m = re.match(r"^(.+?)\s+(\S+?)\s*=\s*(.*)$", line)
    if not m:
        return None
    who_raw, _host, rest = m.groups()
    who: list[str] = []
    for w in (x.strip() for x in who_raw.split(",")):
        who.extend(aliases.get(w, [w]))
    runas: tuple[str, ...] = ("root",)
    rm = re.match(r"^\(([^)]*)\)\s*(.*)$", rest)
    if rm:
        users = rm.group(1).split(":")[0].strip()
        runas = tuple(u.strip() for u in users.split(",") if u.strip()) or ("root",)
        rest = rm.group(2)
    state = False
    without_password: list[bool] = []
    commands: list[str] = []
    for item in (x.strip() for x in rest.split(",")):
        # tags (NOPASSWD:, PASSWD:, ...) may precede any command and carry over to the ones after it
        while tag := TAG.match(item):
            if tag.group(1) == "NOPASSWD":
                state = True
            elif tag.group(1) == "PASSWD":
                state = False
            item = tag.group(2)
        expanded = aliases.get(item, [item])
        commands.extend(expanded)
        without_password.extend([state] * len(expanded))
    # the ALL command's own tag when there is one (NOPASSWD on a narrow command beside a PASSWD: ALL is not root)
    at_all = [flag for command, flag in zip(commands, without_password, strict=True) if command == "ALL"]
    nopasswd = any(at_all) if at_all else any(without_password)
    return SudoRule(path, number, tuple(who), runas, tuple(commands), nopasswd, line)


def collect_sudoers(host: Host) -> tuple[SudoRule, ...]:
    """Every user specification of the host's sudo configuration; a rule covered by a ``Defaults
    !authenticate`` line asks for no password, exactly as with NOPASSWD, and carries that line."""
    noauth: list[NoAuth] = []
    rules = parse_sudoers(host, "/etc/sudoers", noauth=noauth)
    out = []
    for rule in rules:
        covering = tuple(n for n in noauth if not n.scope or set(n.scope) & set(rule.who))
        out.append(replace(rule, nopasswd=True, noauth=covering) if covering else rule)
    return tuple(out)


SUDOERS: Fact[tuple[SudoRule, ...]] = Fact("sudoers", collect_sudoers)
