"""Unusual processes: what an owner would look for in `ps -ef` and `top`, judged for them.

Programs running from a deleted file, from memory or from a world-writable directory; user processes
dressed as kernel threads; shells whose input and output are a network connection, or that a web server
or database started; miners; command lines that download code and run it. The running system only:
under ``--root`` these checks are listed as not checked (live only).

Each finding names the process (pid, start time, executable, command line with secrets masked, user and
parent chain) and the fix: hostguard's audited kill of exactly that process (pid, start time and exe
re-checked, so a reused pid is never hit), then what to inspect or quarantine by hand.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from typing import Any

from hostguard.config import setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding
from hostguard.host.base import ProcessInfo
from hostguard.host.processes import PROCESS_TABLE, PROCESSES, exe_path, names_of, parents
from hostguard.remediation import Action, Remediation


@dataclass(frozen=True)
class ProcessesConfig:
    """[processes]: thresholds of the process checks."""

    cpu_share: float = setting(0.8, "A program outside the system directories using at least this share of one "
                                    "CPU, averaged over its whole life ((utime+stime)/age), is reported as a "
                                    "possible miner.", min=0.01)
    cpu_min_age_seconds: int = setting(600, "Only processes older than this many seconds are judged by their CPU "
                                            "use (a short burst is not sustained).", min=1)


FAMILY = Family("processes", __doc__ or "", ProcessesConfig)

MAX_ARG = 200       # evidence keeps this much of one argument
MAX_CMDLINE = 1024  # and this much of the whole command line


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
                 tuple(d["memfd_allowed"]))


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


def kill_fix(proc: ProcessInfo, inspect: str) -> Remediation:
    """Kill exactly this process (hostguard's audited kill re-checks pid, start time and exe), then look."""
    exe = exe_path(proc) or ""
    step = Action("kill", (("pid", str(proc.pid)), ("start_time", repr(proc.create_time)), ("exe", exe)))
    return Remediation(f"Stop process {proc.pid} ({proc.name}) and find how it was started", (step,), inspect)


def _matches(names: tuple[str, ...], globs: tuple[str, ...]) -> bool:
    return any(fnmatchcase(n, g) for n in names for g in globs)


def _cmd(proc: ProcessInfo) -> str:
    return " ".join(proc.cmdline)


def _user_process(proc: ProcessInfo) -> bool:
    """Kernel threads have no executable and no user memory; everything else is a user process."""
    return bool(proc.exe_link or proc.exe or proc.user_maps)


# -- checks --------------------------------------------------------------------------------------------


@check(id="processes.deleted_exe", severity="high", summary="Process runs from a deleted file or from memory",
       needs=(PROCESS_TABLE,), each=PROCESSES, tags=("T1070.004", "T1620"))
def deleted_exe(proc: ProcessInfo, ctx: Context) -> Iterator[Finding]:
    """A program whose file was deleted after it started, or that runs from a memfd (no file ever), leaves
    nothing on disk to scan: droppers do this to hide. A file replaced at the same path (a package upgrade
    while the service ran) is not reported: only a restart is due then; nor is a program that runs from
    memory by design (runc's sealed copy of itself: memfd_allowed in data/processes/rules.toml)."""
    link = proc.exe_link or ""
    if link.startswith("/memfd:"):
        memfd = link.removeprefix("/memfd:").removesuffix(" (deleted)")
        if any(fnmatchcase(memfd, g) for g in rules().memfd_allowed):
            return
        yield ctx.finding(f"Process {proc.pid} ({proc.name}) runs from memory ({link})", target(proc),
                          evidence=evidence(proc, ctx, memfd=True),
                          remediation=kill_fix(proc, f"Copy /proc/{proc.pid}/exe aside before killing it: it is the "
                                                     "only copy of the program; then find what started it "
                                                     "(parents, cron, units)."), severity="critical")
    elif link.endswith(" (deleted)") and not proc.exe_replaced:
        yield ctx.finding(f"Process {proc.pid} ({proc.name}) runs a deleted file {exe_path(proc)}", target(proc),
                          evidence=evidence(proc, ctx, deleted=True),
                          remediation=kill_fix(proc, f"Copy /proc/{proc.pid}/exe aside (the deleted program) and "
                                                     "scan it before killing; then find what started it."))


def _hidden_dir(path: str) -> str | None:
    """The first hidden directory on the executable's path, unless it is a developer tool's known place."""
    if any(allowed in path for allowed in rules().hidden_dirs_allowed):
        return None
    for part in os.path.dirname(path).split("/"):
        if part.startswith(".") and part not in (".", ".."):
            return part
    return None


@check(id="processes.exe_location", severity="high",
       summary="Process runs from /tmp, /var/tmp, /dev/shm or a hidden directory",
       needs=(PROCESS_TABLE,), each=PROCESSES, tags=("T1036.005", "T1564.001"))
def exe_location(proc: ProcessInfo, ctx: Context) -> Iterator[Finding]:
    """No installed program lives in a world-writable directory or a hidden one: a program running from
    there was dropped, usually by an exploit or a download-and-run command line."""
    path = exe_path(proc)
    if not path or path.startswith("/memfd:"):
        return
    temp = next((d for d in rules().temp_dirs if path.startswith(d)), None)
    hidden = None if temp else _hidden_dir(path)
    if temp is None and hidden is None:
        return
    where = temp.rstrip("/") if temp else f"hidden directory {hidden}"
    yield ctx.finding(f"Process {proc.pid} ({proc.name}) runs {path} from {where}", target(proc),
                      evidence=evidence(proc, ctx, location=where),
                      remediation=kill_fix(proc, f"Quarantine {path} after the kill (`hostguard` keeps a copy) and "
                                                 "find what put it there (its owner, mtime, web and cron logs)."),
                      severity=None if temp else "medium")


BRACKETED = re.compile(r"^\[[^\]]+\]$")


@check(id="processes.fake_kernel_thread", severity="high", summary="User process named like a kernel thread",
       needs=(PROCESS_TABLE,), each=PROCESSES, tags=("T1036.004",))
def fake_kernel_thread(proc: ProcessInfo, ctx: Context) -> Iterator[Finding]:
    """`ps` shows kernel threads as ``[kworker/0:1]``; malware renames itself that way to blend in. A real
    kernel thread has no executable and no user-space memory; a process with either is a disguise."""
    shown = proc.cmdline[0] if proc.cmdline else ""
    if not BRACKETED.match(shown.strip()) or not _user_process(proc):
        return
    yield ctx.finding(f"Process {proc.pid} calls itself {shown.strip()} but runs {exe_path(proc)}", target(proc),
                      evidence=evidence(proc, ctx, shown_as=shown, user_memory=proc.user_maps),
                      remediation=kill_fix(proc, f"Quarantine {exe_path(proc)} after the kill and find what "
                                                 "started it (parents, cron, systemd units)."))


@check(id="processes.reverse_shell", severity="critical",
       summary="Shell or interpreter talking over a network socket (reverse or bind shell)",
       needs=(PROCESS_TABLE,), each=PROCESSES, tags=("T1059.004", "T1071"))
def reverse_shell(proc: ProcessInfo, ctx: Context) -> Iterator[Finding]:
    """A shell or interpreter whose standard input or output is a TCP/UDP socket is being driven from the
    network: that is what `bash -i >& /dev/tcp/...`, `nc -e /bin/sh` and their kin set up. Command lines of
    those shapes count too. A shell on a terminal (a pty-upgraded shell, an SSH session) is not reported."""
    r = rules()
    names = names_of(proc)
    on_net = [fd for fd in proc.stdio_inet if fd in (0, 1)]
    if on_net and _matches(names, r.shells + r.interpreters):
        how = f"its {' and '.join(('stdin', 'stdout')[fd] for fd in on_net)} is a network socket"
    else:
        cmd = _cmd(proc)
        hit = next((p for p in r.reverse_shell if p.search(cmd)), None)
        if hit is None:
            return
        how = "its command line opens a shell over the network"
    yield ctx.finding(f"Process {proc.pid} ({proc.name}) is a remote shell: {how}", target(proc),
                      evidence=evidence(proc, ctx, stdio=list(proc.stdio), reason=how),
                      remediation=kill_fix(proc, "Find the peer (`hostguard scan --only connections`) and how the "
                                                 "shell was started (the parent chain: a web server means a "
                                                 "webshell or an exploited application)."))


@check(id="processes.shell_under_service", severity="high", summary="Shell started by a web server or database",
       needs=(PROCESS_TABLE,), each=PROCESSES, tags=("T1505.003", "T1059.004"))
def shell_under_service(proc: ProcessInfo, ctx: Context) -> Iterator[Finding]:
    """A web server or database does not run shells in its normal work; a webshell or an injected query
    does. Known normal children are quiet (data/processes/rules.toml: PHP's mail() runs
    ``sh -c /usr/sbin/sendmail -t -i``; PostgreSQL's archiver runs ``archive_command`` through ``sh -c``,
    while a shell under a client's backend is ``COPY … FROM PROGRAM`` and is reported)."""
    r = rules()
    if not _matches(names_of(proc), r.shells):
        return
    parent = ctx.fact(PROCESS_TABLE).get(proc.ppid)
    if parent is None:
        return
    pnames = names_of(parent)
    if not _matches(pnames, r.service_parents):
        return
    cmd = _cmd(proc)
    if any(_matches(pnames, (c.parent,)) and c.parent_cmdline.match(_cmd(parent)) and c.cmdline.match(cmd)
           for c in r.service_children):
        return
    yield ctx.finding(f"Shell {proc.pid} was started by {parent.name} (pid {parent.pid})", target(proc),
                      evidence=evidence(proc, ctx, service=_brief(parent)),
                      remediation=kill_fix(proc, f"Look in {parent.name}'s web root or data for the file that ran "
                                                 "it (a webshell: `hostguard scan --only web`), and in its "
                                                 "access log for the request at the process's start time."))


@check(id="processes.miner", severity="high", summary="Cryptocurrency miner",
       needs=(PROCESS_TABLE,), each=PROCESSES, tags=("T1496",))
def miner(proc: ProcessInfo, ctx: Context) -> Iterator[Finding]:
    """Miners are named (xmrig and kin) or take arguments only miners take (``--donate-level``,
    ``stratum+tcp://``); a renamed one still burns CPU: a program outside the system directories whose
    CPU use averaged over its whole life ((utime+stime)/age, not one sample) is high is reported too."""
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
        return
    yield ctx.finding(f"Process {proc.pid} ({proc.name}) looks like a miner: {'; '.join(reasons)}", target(proc),
                      evidence=evidence(proc, ctx, reasons=reasons, cpu_share=round(share, 3)),
                      remediation=kill_fix(proc, f"Quarantine {path} after the kill and remove what restarts it "
                                                 "(`hostguard scan --only persistence`: cron, units, rc files)."))


@check(id="processes.download_exec", severity="high", summary="Command line downloads code and runs it",
       needs=(PROCESS_TABLE,), each=PROCESSES, tags=("T1105", "T1059.004"))
def download_exec(proc: ProcessInfo, ctx: Context) -> Iterator[Finding]:
    """``curl … | sh``, ``wget … | sh``, ``base64 -d | sh`` and download-then-``chmod +x`` in /tmp run code
    nobody read: it is how most droppers and miners arrive. Only the running process's own command line
    is read."""
    cmd = _cmd(proc)
    if not any(p.search(cmd) for p in rules().download_exec):
        return
    yield ctx.finding(f"Process {proc.pid} ({proc.name}) downloads and runs code", target(proc),
                      evidence=evidence(proc, ctx),
                      remediation=kill_fix(proc, "Fetch the URL on an isolated machine to see what it runs, and "
                                                 "find what started this command line (parent chain, cron, "
                                                 "units, shell history)."))
