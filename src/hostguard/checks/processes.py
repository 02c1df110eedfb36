"""Unusual processes: what an owner would look for in `ps -ef` and `top`, judged for them.

Programs running from a deleted file, from memory, from a world-writable directory, or from a system
directory where no installed package put them; user processes dressed as kernel threads or named like a
system daemon they are not; interpreters running a script that was deleted; shells whose input and output
are a network connection, or that a web server or database started; miners; command lines that download
code and run it. The running system only: under ``--root`` these checks are listed as not checked (live
only).

Each finding is one problem: the processes that share it (four workers of one miner, three processes of
one deleted binary) are listed in the one finding (pid, start time, executable, command line with secrets
masked, user and parent chain of each) rather than reported once each, because a finding's fingerprint
never holds a pid. The fix is hostguard's audited kill of exactly those processes (pid, start time and exe
re-checked, so a reused pid is never hit), then what to inspect or quarantine by hand.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from typing import Any

from hostguard.config import setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.facts import Fact
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, Severity, SkipReason, fingerprint
from hostguard.host.base import Host, ProcessInfo, Unavailable
from hostguard.host.packages import EXE_OWNERS, FileOwners
from hostguard.host.processes import (
    DELETED,
    PROCESS_TABLE,
    PROCESSES,
    SCRIPTS,
    ScriptFile,
    argv0_name,
    exe_path,
    interpreter_of,
    names_of,
    parents,
    script_argument,
    script_interpreters,
)
from hostguard.remediation import Action, Remediation


@dataclass(frozen=True)
class ProcessesConfig:
    """[processes]: thresholds of the process checks."""

    cpu_share: float = setting(0.8, "A program outside the system directories using at least this share of one "
                                    "CPU, averaged over its whole life ((utime+stime)/age), is reported as a "
                                    "possible miner.", min=0.01)
    cpu_min_age_seconds: int = setting(600, "Only processes older than this many seconds are judged by their CPU "
                                            "use (a short burst is not sustained).", min=1)
    recent_change_days: int = setting(7, "An unpackaged program in a system directory whose file changed "
                                         "(mtime or ctime) within this many days is high rather than medium; "
                                         "0 turns the rule off.", min=0)
    processes_per_finding: int = setting(20, "At most this many processes are listed (and killed by the fix) "
                                             "in one finding; the rest are counted, and a scan after the fix "
                                             "finds them.", min=1)


FAMILY = Family("processes", __doc__ or "", ProcessesConfig)

MAX_ARG = 200       # evidence keeps this much of one argument
MAX_CMDLINE = 1024  # and this much of the whole command line
COMM_LEN = 15       # the kernel cuts a process name (comm) to this many characters


@dataclass(frozen=True)
class ServiceChild:
    """A shell a service runs in its normal work: the parent's name glob (and command line, when only one of
    its processes does it), the child's command line (regexes matched at the start), and why it is normal."""

    parent: str
    parent_cmdline: re.Pattern[str]
    cmdline: re.Pattern[str]
    why: str


@dataclass(frozen=True)
class Rules:
    """data/processes/rules.toml, compiled."""

    shells: tuple[str, ...]
    interpreters: tuple[str, ...]
    temp_dirs: tuple[str, ...]
    system_prefixes: tuple[str, ...]
    reverse_shell: tuple[re.Pattern[str], ...]
    download_exec: tuple[re.Pattern[str], ...]
    miner_names: tuple[str, ...]
    miner_args: tuple[re.Pattern[str], ...]
    service_parents: tuple[str, ...]
    service_children: tuple[ServiceChild, ...]
    redact: tuple[re.Pattern[str], ...]
    redact_next: frozenset[str]
    hidden_dirs_allowed: tuple[str, ...]
    memfd_allowed: tuple[str, ...]
    system_program_dirs: tuple[str, ...]
    script_temp_dirs: tuple[str, ...]


@cache
def rules() -> Rules:
    """The shipped rules, read and compiled once."""
    d = load_toml("processes/rules.toml")

    def rx(key: str) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p) for p in d[key])

    return Rules(tuple(d["shells"]), tuple(d["interpreters"]), tuple(d["temp_dirs"]), tuple(d["system_prefixes"]),
                 rx("reverse_shell"), rx("download_exec"), tuple(d["miner_names"]), rx("miner_args"),
                 tuple(d["service_parents"]),
                 tuple(ServiceChild(c["parent"], re.compile(c.get("parent_cmdline", "")), re.compile(c["cmdline"]),
                                    c["why"]) for c in d["service_children"]),
                 rx("redact"), frozenset(d["redact_next"]), tuple(d["hidden_dirs_allowed"]),
                 tuple(d["memfd_allowed"]), tuple(d["system_program_dirs"]), tuple(d["script_temp_dirs"]))


@dataclass(frozen=True)
class KnownProgram:
    """A well-known system program whose name malware borrows (data/processes/names.toml)."""

    names: tuple[str, ...]
    exe: tuple[str, ...]
    packages: tuple[str, ...]


@dataclass(frozen=True)
class Names:
    """data/processes/names.toml."""

    multicall: tuple[str, ...]
    programs: tuple[KnownProgram, ...]


@cache
def known_names() -> Names:
    """The well-known program names, read once."""
    d = load_toml("processes/names.toml")
    programs = tuple(KnownProgram(tuple(p["names"]), tuple(p.get("exe", p["names"])), tuple(p.get("packages", ())))
                     for p in d["program"])
    return Names(tuple(d["multicall"]), programs)


# -- evidence and fix ----------------------------------------------------------------------------------


def _mask(match: re.Match[str]) -> str:
    return match.group(1) + "***" + (match.group(2) if (match.re.groups or 0) >= 2 else "")


def redacted(cmdline: tuple[str, ...]) -> list[str]:
    """The command line as evidence: secret-looking values masked, long arguments and lines cut."""
    r = rules()
    out: list[str] = []
    total = 0
    mask_next = False
    for arg in cmdline:
        if mask_next:
            arg, mask_next = "***", False
        else:
            mask_next = arg in r.redact_next
            for pattern in r.redact:
                arg = pattern.sub(_mask, arg)
        if len(arg) > MAX_ARG:
            arg = arg[:MAX_ARG] + "…"
        total += len(arg) + 1
        if total > MAX_CMDLINE:
            out.append("…")
            break
        out.append(arg)
    while out and out[-1] == "":  # daemons that rewrite argv leave empty slots
        out.pop()
    return out


def _brief(proc: ProcessInfo) -> dict[str, Any]:
    return {"pid": proc.pid, "name": proc.name, "exe": exe_path(proc), "user": proc.user}


def evidence(proc: ProcessInfo, ctx: Context, **extra: Any) -> dict[str, Any]:
    """What was seen of the process: pid, start time, exe, masked command line, user, parent chain."""
    table = ctx.fact(PROCESS_TABLE)
    return {"pid": proc.pid, "start_time": proc.create_time, "exe": proc.exe_link or proc.exe,
            "cmdline": redacted(proc.cmdline), "user": proc.user,
            "parents": [_brief(p) for p in parents(proc, table)], **extra}


def target(proc: ProcessInfo) -> dict[str, Any]:
    """The process as a stable key (never its pid): what runs, as whom, with which command line."""
    return {"kind": "process", "exe": exe_path(proc) or "", "name": proc.name, "user": proc.user or "",
            "cmdline": " ".join(redacted(proc.cmdline))[:MAX_CMDLINE]}


def kill_step(proc: ProcessInfo) -> Action:
    """hostguard's audited kill of exactly this process (it re-checks pid, start time and exe)."""
    return Action("kill", (("pid", str(proc.pid)), ("start_time", repr(proc.create_time)),
                           ("exe", exe_path(proc) or "")))


def kill_fix(procs: Sequence[ProcessInfo], inspect: str, unlisted: int = 0) -> Remediation:
    """Kill exactly these processes (one audited kill each), then look; ``unlisted`` more were not listed."""
    first = procs[0]
    if len(procs) == 1 and not unlisted:
        summary = f"Stop process {first.pid} ({first.name}) and find how it was started"
    else:
        pids = ", ".join(str(p.pid) for p in procs)
        summary = f"Stop the {len(procs) + unlisted} processes of {first.name} ({pids}) and find how they were started"
    if unlisted:
        inspect += (f" {unlisted} more processes of the same program were not listed here: scan again after the "
                    "kill.")
    return Remediation(summary, tuple(kill_step(p) for p in procs), inspect)


@dataclass(frozen=True)
class Hit:
    """What a check saw in one process: the finding's title for it (naming its pid), what to look at by hand
    after the kill, evidence only this check gathers, a severity other than the check's default, and what
    the check adds to the target because it is part of the problem (the service a shell runs under: the
    same shell under nginx and under PostgreSQL is two problems)."""

    title: str
    inspect: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    severity: str | None = None
    key: Mapping[str, str] = field(default_factory=dict)


Judge = Callable[[ProcessInfo, Context], Hit | None]


def per_target(ctx: Context, judge: Judge) -> Iterator[Finding]:
    """Judge every process, then make one finding per target (never one per process).

    The judging is per process, like the engine's ``each=`` loop (a process that fails to be judged is
    recorded in ``skipped`` under its label, the others still count; cancellation stops the loop). The
    grouping is why these checks are not ``each=`` checks: the target holds no pid, so the processes of one
    program would make findings with one fingerprint, which the store keeps once and the report shows many
    times. Processes are listed oldest first (the parent of a forking program leads).
    """
    procs = ctx.fact(PROCESSES)
    groups: dict[str, list[tuple[ProcessInfo, Hit]]] = {}
    for index, proc in enumerate(procs):
        ctx.progress(index, len(procs))
        if ctx.cancel.is_set():
            ctx.skip(SkipReason.BUDGET, f"{len(procs) - index} of {len(procs)} processes not checked: cancelled")
            break
        try:
            hit = judge(proc, ctx)
        except Unavailable as exc:
            ctx.skip(exc.reason, exc.detail, proc.label())
            continue
        except Exception as exc:  # one process that cannot be judged must not hide the others
            ctx.skip(SkipReason.ERROR, f"{type(exc).__name__}: {exc}", proc.label())
            continue
        if hit is not None:
            groups.setdefault(fingerprint(ctx.spec.id, {**target(proc), **hit.key}), []).append((proc, hit))
    cap = ctx.config[ProcessesConfig].processes_per_finding
    for group in groups.values():
        group.sort(key=lambda ph: (ph[0].create_time, ph[0].pid))
        yield _group_finding(ctx, group, cap)


def _group_finding(ctx: Context, group: list[tuple[ProcessInfo, Hit]], cap: int) -> Finding:
    """One finding for the processes of one target: the first one's title and evidence, then every process."""
    proc, hit = group[0]
    listed = group[:cap]
    table = ctx.fact(PROCESS_TABLE)
    more = len(group) - 1
    title = hit.title if not more else f"{hit.title}, and {more} more process{'es' if more > 1 else ''} like it"
    severities = [Severity(h.severity) if h.severity else ctx.spec.severity for _, h in group]
    each = [{"pid": p.pid, "start_time": p.create_time, "user": p.user,
             "parents": [_brief(q) for q in parents(p, table)], **h.extra} for p, h in listed]
    return ctx.finding(title, {**target(proc), **hit.key},
                       evidence=evidence(proc, ctx, **hit.extra, processes=each, process_count=len(group)),
                       remediation=kill_fix([p for p, _ in listed], hit.inspect, len(group) - len(listed)),
                       severity=max(severities, key=lambda s: s.rank))


def _matches(names: tuple[str, ...], globs: tuple[str, ...]) -> bool:
    return any(fnmatchcase(n, g) for n in names for g in globs)


def _cmd(proc: ProcessInfo) -> str:
    return " ".join(proc.cmdline)


def _user_process(proc: ProcessInfo) -> bool:
    """Kernel threads have no executable and no user memory; everything else is a user process."""
    return bool(proc.exe_link or proc.exe or proc.user_maps)


def _hidden_dir(path: str) -> str | None:
    """The first hidden directory on a file's path, unless it is a developer tool's known place."""
    if any(allowed in path for allowed in rules().hidden_dirs_allowed):
        return None
    for part in os.path.dirname(path).split("/"):
        if part.startswith(".") and part not in (".", ".."):
            return part
    return None


# -- checks --------------------------------------------------------------------------------------------


@check(id="processes.deleted_exe", severity="high", summary="Process runs from a deleted file or from memory",
       needs=(PROCESSES, PROCESS_TABLE), tags=("T1070.004", "T1620"))
def deleted_exe(ctx: Context) -> Iterator[Finding]:
    """A program whose file was deleted after it started, or that runs from a memfd (no file ever), leaves
    nothing on disk to scan: droppers do this to hide. A file replaced at the same path (a package upgrade
    while the service ran) is not reported: only a restart is due then; nor is a program that runs from
    memory by design (runc's sealed copy of itself: memfd_allowed in data/processes/rules.toml)."""
    yield from per_target(ctx, _deleted_exe)


def _deleted_exe(proc: ProcessInfo, ctx: Context) -> Hit | None:
    link = proc.exe_link or ""
    if link.startswith("/memfd:"):
        memfd = link.removeprefix("/memfd:").removesuffix(DELETED)
        if any(fnmatchcase(memfd, g) for g in rules().memfd_allowed):
            return None
        return Hit(f"Process {proc.pid} ({proc.name}) runs from memory ({link})",
                   "It is the only copy of the program: `hostguard fix --kill` keeps it in the state directory's "
                   f"evidence/ before the signal (killing it another way, copy /proc/{proc.pid}/exe aside first); "
                   "then find what started it (parents, cron, units).", {"memfd": True}, "critical")
    if link.endswith(DELETED) and not proc.exe_replaced:
        return Hit(f"Process {proc.pid} ({proc.name}) runs a deleted file {exe_path(proc)}",
                   "`hostguard fix --kill` keeps the deleted program in the state directory's evidence/ before the "
                   f"signal (killing it another way, copy /proc/{proc.pid}/exe aside first); scan it, then find "
                   "what started it.", {"deleted": True})
    return None


@check(id="processes.exe_location", severity="high",
       summary="Process runs from /tmp, /var/tmp, /dev/shm or a hidden directory",
       needs=(PROCESSES, PROCESS_TABLE), tags=("T1036.005", "T1564.001"))
def exe_location(ctx: Context) -> Iterator[Finding]:
    """No installed program lives in a world-writable directory or a hidden one: a program running from
    there was dropped, usually by an exploit or a download-and-run command line."""
    yield from per_target(ctx, _exe_location)


def _exe_location(proc: ProcessInfo, ctx: Context) -> Hit | None:
    path = exe_path(proc)
    if not path or path.startswith("/memfd:"):
        return None
    temp = next((d for d in rules().temp_dirs if path.startswith(d)), None)
    hidden = None if temp else _hidden_dir(path)
    if temp is None and hidden is None:
        return None
    where = temp.rstrip("/") if temp else f"hidden directory {hidden}"
    return Hit(f"Process {proc.pid} ({proc.name}) runs {path} from {where}",
               f"Quarantine {path} after the kill (`hostguard` keeps a copy) and find what put it there (its owner, "
               "mtime, web and cron logs).", {"location": where}, None if temp else "medium")


BRACKETED = re.compile(r"^\[[^\]]+\]$")


@check(id="processes.fake_kernel_thread", severity="high", summary="User process named like a kernel thread",
       needs=(PROCESSES, PROCESS_TABLE), tags=("T1036.004",))
def fake_kernel_thread(ctx: Context) -> Iterator[Finding]:
    """`ps` shows kernel threads as ``[kworker/0:1]``; malware renames itself that way to blend in. A real
    kernel thread has no executable and no user-space memory; a process with either is a disguise."""
    yield from per_target(ctx, _fake_kernel_thread)


def _fake_kernel_thread(proc: ProcessInfo, ctx: Context) -> Hit | None:
    shown = proc.cmdline[0] if proc.cmdline else ""
    if not BRACKETED.match(shown.strip()) or not _user_process(proc):
        return None
    return Hit(f"Process {proc.pid} calls itself {shown.strip()} but runs {exe_path(proc)}",
               f"Quarantine {exe_path(proc)} after the kill and find what started it (parents, cron, systemd units).",
               {"shown_as": shown, "user_memory": proc.user_maps})


@check(id="processes.reverse_shell", severity="critical",
       summary="Shell or interpreter talking over a network socket (reverse or bind shell)",
       needs=(PROCESSES, PROCESS_TABLE), tags=("T1059.004", "T1071"))
def reverse_shell(ctx: Context) -> Iterator[Finding]:
    """A shell or interpreter whose standard input or output is a TCP/UDP socket is being driven from the
    network: that is what `bash -i >& /dev/tcp/...`, `nc -e /bin/sh` and their kin set up. Command lines of
    those shapes count too. A shell on a terminal (a pty-upgraded shell, an SSH session) is not reported."""
    yield from per_target(ctx, _reverse_shell)


def _reverse_shell(proc: ProcessInfo, ctx: Context) -> Hit | None:
    r = rules()
    on_net = [fd for fd in proc.stdio_inet if fd in (0, 1)]
    if on_net and _matches(names_of(proc), r.shells + r.interpreters):
        how = f"its {' and '.join(('stdin', 'stdout')[fd] for fd in on_net)} is a network socket"
    elif any(p.search(_cmd(proc)) for p in r.reverse_shell):
        how = "its command line opens a shell over the network"
    else:
        return None
    return Hit(f"Process {proc.pid} ({proc.name}) is a remote shell: {how}",
               "Find the peer (`hostguard scan --only connections`) and how the shell was started (the parent chain: "
               "a web server means a webshell or an exploited application).",
               {"stdio": list(proc.stdio), "reason": how})


@check(id="processes.shell_under_service", severity="high", summary="Shell started by a web server or database",
       needs=(PROCESSES, PROCESS_TABLE), tags=("T1505.003", "T1059.004"))
def shell_under_service(ctx: Context) -> Iterator[Finding]:
    """A web server or database does not run shells in its normal work; a webshell or an injected query
    does. Known normal children are quiet (data/processes/rules.toml: PHP's mail() runs
    ``sh -c /usr/sbin/sendmail -t -i``; PostgreSQL's archiver runs ``archive_command`` through ``sh -c``,
    while a shell under a client's backend is ``COPY … FROM PROGRAM`` and is reported)."""
    yield from per_target(ctx, _shell_under_service)


def _shell_under_service(proc: ProcessInfo, ctx: Context) -> Hit | None:
    r = rules()
    if not _matches(names_of(proc), r.shells):
        return None
    parent = ctx.fact(PROCESS_TABLE).get(proc.ppid)
    if parent is None:
        return None
    pnames = names_of(parent)
    service = next((n for n in pnames if _matches((n,), r.service_parents)), None)
    if service is None:
        return None
    cmd = _cmd(proc)
    if any(_matches(pnames, (c.parent,)) and c.parent_cmdline.match(_cmd(parent)) and c.cmdline.match(cmd)
           for c in r.service_children):
        return None
    return Hit(f"Shell {proc.pid} was started by {parent.name} (pid {parent.pid})",
               f"Look in {parent.name}'s web root or data for the file that ran it (a webshell: `hostguard scan "
               "--only web`), and in its access log for the request at the process's start time.",
               {"service": _brief(parent)}, key={"service": service})


@check(id="processes.miner", severity="high", summary="Cryptocurrency miner",
       needs=(PROCESSES, PROCESS_TABLE), tags=("T1496",))
def miner(ctx: Context) -> Iterator[Finding]:
    """Miners are named (xmrig and kin) or take arguments only miners take (``--donate-level``,
    ``stratum+tcp://``); a renamed one still burns CPU: a program outside the system directories whose
    CPU use averaged over its whole life ((utime+stime)/age, not one sample) is high is reported too."""
    yield from per_target(ctx, _miner)


def _miner(proc: ProcessInfo, ctx: Context) -> Hit | None:
    r = rules()
    cmd = _cmd(proc)
    reasons: list[str] = []
    if _matches(tuple(n.lower() for n in names_of(proc)), r.miner_names):
        reasons.append("a miner's name")
    arg = next((m.group(0) for p in r.miner_args if (m := p.search(cmd))), None)
    if arg:
        reasons.append(f"a miner's argument ({arg})")
    cfg = ctx.config[ProcessesConfig]
    age = max(time.time() - proc.create_time, 0.0)
    share = proc.cpu_seconds / age if age > 0 else 0.0
    path = exe_path(proc)
    outside = path is not None and not any(path.startswith(p) for p in r.system_prefixes)
    if outside and age >= cfg.cpu_min_age_seconds and share >= cfg.cpu_share:
        reasons.append(f"{share:.0%} of a CPU for {age:.0f}s from outside the system directories")
    if not reasons:
        return None
    return Hit(f"Process {proc.pid} ({proc.name}) looks like a miner: {'; '.join(reasons)}",
               f"Quarantine {path} after the kill and remove what restarts it (`hostguard scan --only persistence`: "
               "cron, units, rc files).", {"reasons": reasons, "cpu_share": round(share, 3)})


@check(id="processes.download_exec", severity="high", summary="Command line downloads code and runs it",
       needs=(PROCESSES, PROCESS_TABLE), tags=("T1105", "T1059.004"))
def download_exec(ctx: Context) -> Iterator[Finding]:
    """``curl … | sh``, ``wget … | sh``, ``base64 -d | sh`` and download-then-``chmod +x`` in /tmp run code
    nobody read: it is how most droppers and miners arrive. Only the running process's own command line
    is read."""
    yield from per_target(ctx, _download_exec)


def _download_exec(proc: ProcessInfo, ctx: Context) -> Hit | None:
    if not any(p.search(_cmd(proc)) for p in rules().download_exec):
        return None
    return Hit(f"Process {proc.pid} ({proc.name}) downloads and runs code",
               "Fetch the URL on an isolated machine to see what it runs, and find what started this command line "
               "(parent chain, cron, units, shell history).")


@check(id="processes.unpackaged_exe", severity="medium",
       summary="Program in a system directory that no installed package owns",
       needs=(PROCESSES, PROCESS_TABLE, EXE_OWNERS), tags=("T1036.005", "T1554"))
def unpackaged_exe(ctx: Context) -> Iterator[Finding]:
    """Only the package manager installs programs in /usr/bin, /usr/sbin, /usr/lib*, /usr/libexec and their
    merged-/usr twins (system_program_dirs in data/processes/rules.toml): a running program there that no
    installed package owns was put there by hand, often to pass for a system binary. High when the file
    changed within ``recent_change_days`` or is not owned by root. /usr/local and /opt are where owners
    install by hand: not looked at. Processes in a container or chroot are left out (their paths name files
    of another tree than the package database describes), and so is a deleted program
    (processes.deleted_exe's). Without a package database hostguard reads, the check is not run: an
    unknown owner is not a missing one."""
    owners = ctx.fact(EXE_OWNERS)
    if owners.database is None:
        raise Unavailable(SkipReason.UNSUPPORTED, "no package database hostguard reads on this host: which "
                                                  "programs are packaged is not known")
    yield from per_target(ctx, lambda proc, c: _unpackaged(proc, c, owners))


def _unpackaged(proc: ProcessInfo, ctx: Context, owners: FileOwners) -> Hit | None:
    link = proc.exe_link or proc.exe or ""
    path = proc.exe
    if not path or not proc.host_root or link.endswith(DELETED) or link.startswith("/memfd:"):
        return None
    if not any(fnmatchcase(path, g) for g in rules().system_program_dirs) or owners.owner(path):
        return None
    days = ctx.config[ProcessesConfig].recent_change_days
    changed = max((t for t in (proc.exe_mtime, proc.exe_ctime) if t is not None), default=None)
    reasons = []
    if days and changed is not None and time.time() - changed <= days * 86400:
        reasons.append(f"changed within {days} days")
    if proc.exe_uid not in (None, 0):
        reasons.append(f"owned by uid {proc.exe_uid}, not root")
    return Hit(f"Process {proc.pid} ({proc.name}) runs {path}, which no installed package owns",
               f"Ask the package manager who installed {path} (`dpkg -S {path}`, `rpm -qf {path}`); scan it "
               f"(`hostguard malware scan {path}`) and, if nothing installed it, quarantine it after the kill; its "
               "owner and times say when it came.",
               {"package_database": owners.database, "exe_uid": proc.exe_uid, "exe_mtime": proc.exe_mtime,
                "exe_ctime": proc.exe_ctime, "reasons": reasons}, "high" if reasons else None)


def collect_name_owners(host: Host, owners: FileOwners | None) -> FileOwners | None:
    """The package owning each executable when it can be known, else None: a missing package database
    only makes processes.name_mismatch rely on executable names."""
    return owners


NAME_OWNERS: Fact[FileOwners | None] = Fact("name_mismatch_owners", collect_name_owners,
                                            inputs=(EXE_OWNERS.best_effort,))


def _claims(claim: str, glob: str) -> bool:
    """Whether a process name claims a program: equal, or equal as far as the kernel kept it (15 chars)."""
    return fnmatchcase(claim, glob) or (len(claim) == COMM_LEN and len(glob) > COMM_LEN
                                        and fnmatchcase(claim, glob[:COMM_LEN]))


def _honest(claim: str, base: str) -> bool:
    """A name that is the executable's own (whole, or cut to 15 characters by the kernel)."""
    return base == claim or (len(claim) == COMM_LEN and base.startswith(claim))


def _script_named(proc: ProcessInfo, exe: str, claim: str) -> bool:
    """An interpreter running a script of that name: the kernel names it after the script (python3's comm is
    ``unattended-upgr``), which is honest."""
    interp = interpreter_of((), exe, script_interpreters())
    script = script_argument(proc.cmdline, interp) if interp else None
    if not script:
        return False
    base = os.path.basename(script)
    return _honest(claim, base) or os.path.splitext(base)[0] == claim


@check(id="processes.name_mismatch", severity="high", summary="Process named like a system daemon it is not",
       needs=(PROCESSES, PROCESS_TABLE, NAME_OWNERS), tags=("T1036.004", "T1036.005"))
def name_mismatch(ctx: Context) -> Iterator[Finding]:
    """Malware names itself ``sshd``, ``cron`` or ``nginx`` so a look at `ps` passes over it. A process whose
    kernel name or argv[0] is a well-known system program's (data/processes/names.toml) while its executable
    is another file is reported, unless the package that ships that program owns the executable (symlinked
    names: MariaDB's mysqld is mariadbd). Quiet: titles a daemon writes itself (``sshd: root@pts/0``,
    ``nginx: worker process``, ``php-fpm: pool www``), names the kernel cut to 15 characters, OpenSSH's
    ``sshd-session``, busybox applets, login shells (``-bash``) and interpreters named after the script they
    run. A name no list holds is not judged."""
    owners = ctx.fact(NAME_OWNERS)
    yield from per_target(ctx, lambda proc, c: _name_mismatch(proc, owners))


def _name_mismatch(proc: ProcessInfo, owners: FileOwners | None) -> Hit | None:
    exe = exe_path(proc)
    if not exe or exe.startswith("/memfd:"):
        return None
    base = os.path.basename(exe)
    names = known_names()
    if any(fnmatchcase(base, g) for g in names.multicall):
        return None
    for claim in dict.fromkeys(c for c in (proc.name, argv0_name(proc.cmdline)) if c):
        program = next((p for p in names.programs if any(_claims(claim, g) for g in p.names)), None)
        if program is None or _honest(claim, base) or any(fnmatchcase(base, g) for g in program.exe):
            continue
        package = owners.owner(proc.exe) if owners and owners.database and proc.host_root else None
        if package and any(fnmatchcase(package, g) for g in program.packages):
            continue
        if _script_named(proc, exe, claim):
            continue
        return Hit(f"Process {proc.pid} calls itself {claim} but runs {exe}",
                   f"{exe} is not {claim}: quarantine it after the kill, find what started it (parents, cron, "
                   f"systemd units) and check that the real {claim} is intact (`hostguard scan --only integrity`).",
                   {"claimed": claim, "shown_as": redacted(proc.cmdline[:1]), "expected_exe": list(program.exe),
                    "exe_package": package})
    return None


@check(id="processes.deleted_script", severity="medium", summary="Interpreter runs a script that was deleted",
       needs=(PROCESSES, PROCESS_TABLE, SCRIPTS), tags=("T1070.004", "T1059"))
def deleted_script(ctx: Context) -> Iterator[Finding]:
    """A dropper run by ``bash``, ``python3``, ``perl`` or ``php`` deletes its script once started: the
    program running is the interpreter, so processes.deleted_exe cannot see it. The script is the
    interpreter's first argument that is not an option (data/processes/interpreters.toml), resolved against
    the working directory (or the ``$PWD`` it started from) inside the process's own root, or the file the
    interpreter keeps open (bash on fd 255). High when it lived in a temp or hidden directory. Quiet: inline
    code (``python3 -c``, ``bash -c``), modules (``python3 -m``), interactive shells, a script still there,
    and a script replaced at its path (an edit or an upgrade)."""
    scripts = ctx.fact(SCRIPTS)
    yield from per_target(ctx, lambda proc, c: _deleted_script(proc, scripts))


def _deleted_script(proc: ProcessInfo, scripts: Mapping[int, ScriptFile]) -> Hit | None:
    script = scripts.get(proc.pid)
    if script is None or script.exists:
        return None
    temp = next((d.rstrip("/") for d in rules().script_temp_dirs if script.path.startswith(d)), None)
    hidden = None if temp else _hidden_dir(script.path)
    where = temp or (f"hidden directory {hidden}" if hidden else os.path.dirname(script.path))
    if script.fd is not None:
        inspect = (f"Copy the script aside before the kill: /proc/{proc.pid}/fd/{script.fd} still reads it; then "
                   "find what wrote and started it (parents, cron, units, web logs).")
    else:
        inspect = ("The interpreter holds no copy of the script open: find what wrote and started it (parents, "
                   "cron, units, shell history, web logs).")
    return Hit(f"Process {proc.pid} ({script.interpreter}) runs {script.path}, which was deleted",
               inspect, {"script": script.path, "script_argument": script.given, "script_fd": script.fd,
                         "location": where}, "high" if temp or hidden else None, {"script": script.path})
