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


def parse_sudoers(host: Host, path: str, depth: int = 0, aliases: dict[str, list[str]] | None = None) -> list[SudoRule]:
    """Rules of one file, following #include/#includedir/@include/@includedir."""
    aliases = {} if aliases is None else aliases
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
                rules += parse_sudoers(host, target, depth + 1, aliases)
            else:
                for name in host.listdir(target):
                    if "." not in name and not name.endswith("~"):
                        rules += parse_sudoers(host, f"{target}/{name}", depth + 1, aliases)
            continue
        stripped = stripped.split("#", 1)[0].strip()
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
    """Every user specification of the host's sudo configuration."""
    return tuple(parse_sudoers(host, "/etc/sudoers"))


SUDOERS: Fact[tuple[SudoRule, ...]] = Fact("sudoers", collect_sudoers)
