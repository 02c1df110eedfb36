"""The effective sshd configuration.

On a live host the answer comes from sshd itself: ``sshd -T`` for the global settings, and
``sshd -T -C user=...,addr=...`` for connection specs, because ``-T`` alone ignores ``Match`` blocks.
Under ``--root`` (or when ``sshd -T`` cannot run) the files are parsed the way sshd reads them:
``Include`` globs expanded in order at the place they stand, the first value of a keyword winning, and
``Match`` blocks evaluated for a connection spec, their values overriding the global ones.
"""

from __future__ import annotations

import fnmatch
import glob
import ipaddress
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hostguard.data import load_toml
from hostguard.engine.facts import Fact, config_input
from hostguard.findings import SkipReason
from hostguard.host.base import FileMissing, Host, HostError, Unavailable
from hostguard.host.processes import PROCESSES
from hostguard.host.root_capable import ROOT_CAPABLE, RootCapable

if TYPE_CHECKING:
    from hostguard.checks.ssh import SshConfig
    from hostguard.host.base import ProcessInfo

MAX_INCLUDE_DEPTH = 16


@dataclass(frozen=True)
class ConnSpec:
    """A connection to evaluate Match blocks for (what ``sshd -T -C`` takes)."""

    user: str
    addr: str
    host: str = "client.test"
    laddr: str = "127.0.0.1"
    lport: int = 22
    groups: tuple[str, ...] = ()

    def arg(self) -> str:
        """The ``-C`` argument."""
        return f"user={self.user},host={self.host},addr={self.addr},laddr={self.laddr},lport={self.lport}"

    def label(self) -> str:
        """Short form for evidence."""
        return f"user={self.user},addr={self.addr}"


@dataclass(frozen=True)
class SshdView:
    """One effective configuration: global (spec None) or for one connection."""

    spec: ConnSpec | None
    settings: Mapping[str, tuple[str, ...]]

    def get(self, key: str) -> str:
        """First value of a keyword ("" when unset)."""
        values = self.settings.get(key, ())
        return values[0] if values else ""

    def all(self, key: str) -> tuple[str, ...]:
        """Every value of a multi-valued keyword."""
        return tuple(self.settings.get(key, ()))

    def listen_ports(self) -> tuple[int, ...]:
        """The TCP ports sshd listens on: a ``ListenAddress host:port`` uses its own port, one without a port
        uses every ``Port`` (22 when none is set). ``sshd -T`` prints ``port 22`` even when every
        ListenAddress names another port, so ``port`` alone is not the answer."""
        ports = tuple(int(p) for p in self.all("port") if p.isdigit()) or (22,)
        addresses = [a.split()[0] for a in self.all("listenaddress") if a.split()]
        if not addresses:
            return tuple(sorted(set(ports)))
        out: set[int] = set()
        for address in addresses:
            m = re.fullmatch(r"\[[^\]]*\]:(\d+)|[^:\[\]]*:(\d+)", address)
            if m:
                out.add(int(m.group(1) or m.group(2)))
            else:
                out |= set(ports)
        return tuple(sorted(out))


@dataclass(frozen=True)
class SshdFacts:
    """The global view and the per-connection views of root-capable accounts."""

    source: str  # "sshd -T" or "config files"
    config_file: str
    files: tuple[str, ...]
    views: tuple[SshdView, ...]
    note: str = ""

    @property
    def global_view(self) -> SshdView:
        """Settings that apply when no Match block does."""
        return self.views[0]


# -- parsing files -----------------------------------------------------------------------------------

@dataclass
class _Line:
    keyword: str
    args: list[str]
    path: str
    number: int
    match: tuple[tuple[str, ...], ...] | None  # criteria of the enclosing Match, None when global


@dataclass(frozen=True)
class IncludeLine:
    """An ``Include`` line: where it stands, what it names (absolute patterns) and where its files start."""

    path: str
    number: int
    patterns: tuple[str, ...]
    match: tuple[tuple[str, ...], ...] | None
    index: int  # how many config lines were read before it (its position in ``ParsedConfig.lines``)

    def names(self, path: str) -> bool:
        """Whether ``path`` would be read through this Include (sshd uses glob(3): ``*`` stops at ``/``)."""
        directory, _, name = path.rpartition("/")
        for pattern in self.patterns:
            pdir, _, pname = pattern.rpartition("/")
            if pdir == directory and fnmatch.fnmatchcase(name, pname) and not name.startswith("."):
                return True
        return False


@dataclass
class ParsedConfig:
    """Every effective line in file order, with the Match block it belongs to.

    ``texts`` keeps each file's lines as read (a fix edits a line and must quote it exactly) and
    ``includes`` every Include line, so a fix can tell where a new drop-in would be read.
    """

    lines: list[_Line] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    texts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    includes: list[IncludeLine] = field(default_factory=list)

    def raw(self, line: _Line) -> str:
        """The exact text of a parsed line."""
        return self.texts[line.path][line.number - 1]


def _split(line: str) -> list[str]:
    try:
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:
        words = line.split()
    if words and "=" in words[0]:
        key, _, value = words[0].partition("=")
        words = [key] + ([value] if value else []) + words[1:]
    elif len(words) > 1 and words[1].startswith("="):
        rest = words[1][1:]
        words = [words[0]] + ([rest] if rest else []) + words[2:]
    return words


def parse_files(host: Host, path: str, *, _depth: int = 0, _match: tuple[tuple[str, ...], ...] | None = None,
                _out: ParsedConfig | None = None) -> ParsedConfig:
    """Read ``path`` and everything it includes, in the order sshd would."""
    out = _out if _out is not None else ParsedConfig()
    if _depth > MAX_INCLUDE_DEPTH:
        out.errors.append(f"{path}: Include nested too deeply")
        return out
    text = host.read_text(path)
    out.files.append(path)
    out.texts.setdefault(path, tuple(text.splitlines()))
    match = _match
    for number, raw in enumerate(text.splitlines(), 1):
        words = _split(raw.strip())
        if not words:
            continue
        keyword = words[0].lower()
        args = words[1:]
        if keyword == "match":
            crit = tuple(a for a in args)
            match = (*(_match or ()), crit) if crit else _match
            continue
        if keyword == "include":
            fulls = tuple(p if p.startswith("/") else f"/etc/ssh/{p}" for p in args)
            out.includes.append(IncludeLine(path, number, fulls, match, len(out.lines)))
            for full in fulls:
                for inc in _glob(host, full):
                    try:
                        parse_files(host, inc, _depth=_depth + 1, _match=match, _out=out)
                    except HostError as exc:
                        out.errors.append(str(exc))
            continue
        out.lines.append(_Line(keyword, args, path, number, match))
    return out


def _glob(host: Host, pattern: str) -> list[str]:
    """Host paths matching a glob, sorted (sshd uses glob(3), which sorts)."""
    if not glob.has_magic(pattern):
        return [pattern] if host.exists(pattern) else []
    return host.glob(pattern)


def _pattern_list_match(value: str, patterns: str) -> bool:
    """sshd's match_pattern_list: comma list, ``!`` negates and wins, wildcards * and ?."""
    positive = False
    for pat in patterns.split(","):
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        if fnmatch.fnmatchcase(value, pat):
            if neg:
                return False
            positive = True
    return positive


def _addr_match(addr: str, patterns: str) -> bool:
    positive = False
    for pat in patterns.split(","):
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        try:
            hit = "/" in pat and ipaddress.ip_address(addr) in ipaddress.ip_network(pat, strict=False)
        except ValueError:
            hit = False
        hit = hit or fnmatch.fnmatchcase(addr, pat)
        if hit:
            if neg:
                return False
            positive = True
    return positive


def addr_match(addr: str, patterns: str) -> bool:
    """sshd's address pattern list (CIDR, wildcards, ``!`` negates and wins), as ``from=`` and Match use it."""
    return _addr_match(addr, patterns)


def match_applies(criteria: tuple[str, ...], spec: ConnSpec | None) -> bool:
    """Whether one Match line's criteria all hold for ``spec`` (only ``all`` holds without a spec)."""
    words = list(criteria)
    i = 0
    while i < len(words):
        kw = words[i].lower()
        if kw == "all":
            i += 1
            continue
        if spec is None or i + 1 >= len(words):
            return False
        arg = words[i + 1]
        i += 2
        if kw == "user":
            ok = _pattern_list_match(spec.user, arg)
        elif kw == "group":
            ok = any(_pattern_list_match(g, arg) for g in spec.groups)
        elif kw == "host":
            ok = _pattern_list_match(spec.host, arg)
        elif kw == "address":
            ok = _addr_match(spec.addr, arg)
        elif kw == "localaddress":
            ok = _addr_match(spec.laddr, arg)
        elif kw == "localport":
            ok = str(spec.lport) in arg.split(",")
        elif kw == "rdomain":
            ok = _pattern_list_match("", arg)
        else:
            return False
        if not ok:
            return False
    return True


def _apply_list_modifier(default: str, value: str) -> str:
    """Cipher/MAC/KEX lists: ``+`` appends, ``-`` removes (wildcards), ``^`` prepends."""
    base = default.split(",")
    if value.startswith("+"):
        extra = [v for v in value[1:].split(",") if v not in base]
        return ",".join(base + extra)
    if value.startswith("-"):
        pats = value[1:].split(",")
        return ",".join(b for b in base if not any(fnmatch.fnmatchcase(b, p) for p in pats))
    if value.startswith("^"):
        front = value[1:].split(",")
        return ",".join(front + [b for b in base if b not in front])
    return value


def evaluate(parsed: ParsedConfig, spec: ConnSpec | None) -> SshdView:
    """The effective settings for ``spec`` (global when None), as ``sshd -T`` would print them."""
    data = load_toml("ssh/sshd-defaults.toml")
    aliases: dict[str, str] = data["aliases"]
    value_aliases: dict[str, str] = data["value_aliases"]
    multi = set(data["multi"]["keywords"])
    glob_vals: dict[str, list[str]] = {}
    match_vals: dict[str, list[str]] = {}
    for line in parsed.lines:
        key = aliases.get(line.keyword, line.keyword)
        if not line.args:
            continue
        if line.match is None:
            target = glob_vals
        elif all(match_applies(c, spec) for c in line.match):
            target = match_vals
        else:
            continue
        if key in multi:
            target.setdefault(key, []).extend(line.args)
        elif key not in target:
            value = " ".join(line.args) if key in ("authorizedkeysfile", "authenticationmethods") else line.args[0]
            target[key] = [value]
    settings: dict[str, tuple[str, ...]] = {}
    for key, values in data["defaults"].items():
        settings[key] = tuple(values)
    for source in (glob_vals, match_vals):
        for key, values in source.items():
            settings[key] = tuple(values)
    for key in ("ciphers", "macs", "kexalgorithms"):
        chosen = (match_vals.get(key) or glob_vals.get(key) or [""])[0]
        if chosen:
            settings[key] = (_apply_list_modifier(data["defaults"][key][0], chosen),)
    for key, values in list(settings.items()):
        norm = tuple(value_aliases.get(v.lower(), v.lower()) if key != "authorizedkeysfile" else v for v in values)
        settings[key] = norm
    if "port" in glob_vals and "listenaddress" not in glob_vals:
        settings["listenaddress"] = tuple(f"{a}:{p}" for p in settings["port"] for a in ("[::]", "0.0.0.0"))
    return SshdView(spec, settings)


def canonical_keyword(keyword: str) -> str:
    """The name ``sshd -T`` prints for a keyword as written (lowercase, old spellings mapped)."""
    aliases: dict[str, str] = load_toml("ssh/sshd-defaults.toml")["aliases"]
    return aliases.get(keyword.lower(), keyword.lower())


def occurrences(parsed: ParsedConfig, keyword: str) -> list[tuple[int, _Line]]:
    """Every line that sets ``keyword`` (any spelling, in or out of Match blocks), with its read position."""
    key = canonical_keyword(keyword)
    return [(i, line) for i, line in enumerate(parsed.lines)
            if line.args and canonical_keyword(line.keyword) == key]


def setting_line(parsed: ParsedConfig, keyword: str, spec: ConnSpec | None) -> _Line | None:
    """The line whose value is in force for ``spec`` (global when None), None for sshd's built-in default.

    Mirrors :func:`evaluate`: the first line of a Match block that applies wins (for the global view only
    ``Match all`` applies), then the first global line.
    """
    found = occurrences(parsed, keyword)
    for _, line in found:
        if line.match is not None and all(match_applies(c, spec) for c in line.match):
            return line
    for _, line in found:
        if line.match is None:
            return line
    return None


# -- sshd -T -----------------------------------------------------------------------------------------

def parse_dump(text: str, spec: ConnSpec | None) -> SshdView:
    """Parse ``sshd -T`` output (``keyword value`` lines, multi-valued keywords repeated)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            settings.setdefault(key.lower(), []).append(value.strip())
    return SshdView(spec, {k: tuple(v) for k, v in settings.items()})


def connection_specs(capable: RootCapable | None, ssh: SshConfig) -> list[ConnSpec]:
    """Root and every root-capable account, from each probe address (root alone when accounts are unknown)."""
    users = [(a.name, a.groups) for a in capable.accounts] if capable is not None else []
    if not any(name == "root" for name, _ in users):
        users.insert(0, ("root", ("root",)))
    return [ConnSpec(name, addr, groups=groups) for name, groups in users for addr in ssh.probe_addresses]


def collect_sshd_files(host: Host, ssh: SshConfig) -> ParsedConfig:
    """sshd_config and everything it includes, parsed once per scan."""
    try:
        return parse_files(host, ssh.config_file)
    except FileMissing as exc:
        raise Unavailable(SkipReason.UNSUPPORTED,
                          f"{ssh.config_file} does not exist (OpenSSH server not installed)") from exc


SSHD_FILES: Fact[ParsedConfig] = Fact("sshd_files", collect_sshd_files, inputs=(config_input("ssh"),))


def collect_sshd(host: Host, parsed: ParsedConfig, capable: RootCapable | None, ssh: SshConfig) -> SshdFacts:
    """The effective configuration, from ``sshd -T`` on a live host, else from the files."""
    specs = connection_specs(capable, ssh)
    note = ""
    if host.live:
        try:
            return _collect_live(host, ssh, parsed, specs)
        except Unavailable as exc:
            note = f"sshd -T could not run ({exc.detail}); computed from the config files"
    views = [evaluate(parsed, None)] + [evaluate(parsed, s) for s in specs]
    return SshdFacts("config files", ssh.config_file, tuple(parsed.files), tuple(views), note)


SSHD: Fact[SshdFacts] = Fact("sshd", collect_sshd, inputs=(SSHD_FILES, ROOT_CAPABLE.best_effort, config_input("ssh")))


def _collect_live(host: Host, ssh: SshConfig, parsed: ParsedConfig, specs: list[ConnSpec]) -> SshdFacts:
    base = [ssh.sshd, "-T", "-f", ssh.config_file]
    views = []
    for spec in [None, *specs]:
        argv = base + ([] if spec is None else ["-C", spec.arg()])
        result = host.run(argv)
        if result.returncode != 0:
            err = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise Unavailable(SkipReason.ERROR, err[-1] if err else f"exit {result.returncode}")
        views.append(parse_dump(result.stdout.decode("utf-8", "surrogateescape"), spec))
    return SshdFacts("sshd -T", ssh.config_file, tuple(parsed.files), tuple(views))


@dataclass(frozen=True)
class SshdFreshness:
    """When the running sshd started and which config files changed after that."""

    pid: int
    started: float
    newer_files: tuple[tuple[str, float], ...]


def collect_sshd_freshness(host: Host, processes: tuple[ProcessInfo, ...], parsed: ParsedConfig | None,
                           ssh: SshConfig) -> SshdFreshness | None:
    """The listening sshd master and config files modified after it started (None: no sshd runs)."""
    if parsed is None:
        return None
    master = _sshd_master(processes, ssh.config_file)
    if master is None:
        return None
    newer = []
    for f in parsed.files:
        try:
            mtime = os.stat(host.resolve(f)).st_mtime
        except (OSError, HostError):
            continue
        if mtime > master.create_time + 1:
            newer.append((f, mtime))
    return SshdFreshness(master.pid, master.create_time, tuple(newer))


SSHD_FRESHNESS: Fact[SshdFreshness | None] = Fact("sshd_freshness", collect_sshd_freshness,
                                                  inputs=(PROCESSES, SSHD_FILES.optional, config_input("ssh")))


def _sshd_master(processes: tuple[ProcessInfo, ...], config_file: str) -> ProcessInfo | None:
    """The listening sshd master process reading ``config_file`` (not a per-connection child)."""
    by_pid = {p.pid: p for p in processes}
    for info in processes:
        parent = by_pid.get(info.ppid)
        if info.name != "sshd" or (parent is not None and parent.name == "sshd"):
            continue
        argv = list(info.cmdline)
        if "-T" in argv or "-t" in argv:
            continue
        config = argv[argv.index("-f") + 1] if "-f" in argv[:-1] else "/etc/ssh/sshd_config"
        if os.path.realpath(config) == os.path.realpath(config_file):
            return info
    return None
