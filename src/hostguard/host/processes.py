"""The live host's processes and sockets, each listed once per scan and shared by every fact that needs them.

psutil lives in ``LiveHost`` alone; these facts are its listings. Under ``--root`` they are unavailable
(live only), and so is every fact built on them.

Also here: what a process *runs*, read from its command line. ``python3 -m http.server`` is named
``python3`` by the kernel; the program is ``http.server``. Interpreters and their options are data (the
caller passes them), so the same reading serves service naming and, later, the process checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatchcase

from hostguard.engine.facts import Fact
from hostguard.host.base import Host, ProcessInfo, SocketInfo


def collect_processes(host: Host) -> tuple[ProcessInfo, ...]:
    """Every process of the running system (a snapshot)."""
    return host.processes()


def collect_sockets(host: Host) -> tuple[SocketInfo, ...]:
    """Every inet socket of the running system (a snapshot)."""
    return host.sockets()


PROCESSES: Fact[tuple[ProcessInfo, ...]] = Fact("processes", collect_processes)
SOCKETS: Fact[tuple[SocketInfo, ...]] = Fact("sockets", collect_sockets)
UNKNOWN_PROCESS = "unknown process"  # the label of a program of which nothing can be seen


@dataclass(frozen=True)
class Interpreter:
    """A program that runs another one named on its command line, and how its options read.

    ``run_options`` name what runs in the next argument (``-m module``, ``-jar file``); ``value_options``
    take the next argument as their value (``-cp path``), so it is not the script; ``inline_options``
    (``-c``, ``-e``) run code given on the command line, which names nothing.
    """

    names: tuple[str, ...]
    run_options: tuple[str, ...] = ()
    value_options: tuple[str, ...] = ()
    inline_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.names or any(not n for n in self.names):
            raise ValueError("an interpreter needs names, and an empty name matches nothing")


@dataclass(frozen=True)
class Program:
    """What a process runs, in each form a service can be recognised by.

    ``names`` are the kernel's process name and argv[0]'s base name (a daemon may rewrite argv[0] into a
    title, ``proftpd: (accepting connections)``; its first word counts). For an interpreter, ``script``
    is what it runs (a script path, a Python module, a Java main class or jar) and ``run_option`` the
    option that named it (``-m``, ``-jar``, or empty for a plain script argument).
    """

    names: tuple[str, ...]
    exe: str | None
    script: str | None = None
    run_option: str = ""
    inline: str = ""

    @property
    def label(self) -> str:
        """How a person would name it: ``python3 -m http.server``, ``python3 -c …``, ``nginx``."""
        first = self.names[0] if self.names else os.path.basename(self.exe) if self.exe else ""
        if not first:
            return UNKNOWN_PROCESS
        if self.script:
            return " ".join(p for p in (first, self.run_option, self.script) if p)
        return f"{first} {self.inline} …" if self.inline else first


def _argv0_name(cmdline: tuple[str, ...]) -> str:
    """argv[0]'s base name, from the first word when a daemon rewrote it into a title."""
    if not cmdline or not cmdline[0].strip():
        return ""
    word = cmdline[0].split()[0]
    return os.path.basename(word).rstrip(":").lstrip("-")


def interpreter_of(names: tuple[str, ...], exe: str | None,
                   interpreters: tuple[Interpreter, ...]) -> Interpreter | None:
    """The interpreter a process is, by its names or its executable's base name (``python3.11``)."""
    candidates = (*names, os.path.basename(exe)) if exe else names
    for interp in interpreters:
        if any(fnmatchcase(c, g) for c in candidates if c for g in interp.names):
            return interp
    return None


def program_of(name: str | None, exe: str | None, cmdline: tuple[str, ...],
               interpreters: tuple[Interpreter, ...]) -> Program:
    """Read what a process runs from its name, executable and command line."""
    names = tuple(dict.fromkeys(n for n in (name or "", _argv0_name(cmdline)) if n))
    interp = interpreter_of(names, exe, interpreters)
    if interp is None:
        return Program(names, exe)
    args = list(cmdline[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in interp.inline_options:
            return Program(names, exe, inline=arg)
        if arg in interp.run_options:
            return Program(names, exe, args[i + 1], arg) if i + 1 < len(args) else Program(names, exe)
        if arg == "--":
            return Program(names, exe, args[i + 1]) if i + 1 < len(args) else Program(names, exe)
        if arg.startswith("-") and arg != "-":
            i += 2 if arg in interp.value_options else 1
            continue
        return Program(names, exe, arg) if arg != "-" else Program(names, exe)
    return Program(names, exe)


def collect_process_table(host: Host, processes: tuple[ProcessInfo, ...]) -> dict[int, ProcessInfo]:
    """The same snapshot keyed by pid, so a check can walk a process's parents without a second listing."""
    return {p.pid: p for p in processes}


PROCESS_TABLE: Fact[dict[int, ProcessInfo]] = Fact("process_table", collect_process_table, inputs=(PROCESSES,))


def parents(proc: ProcessInfo, table: dict[int, ProcessInfo], limit: int = 8) -> list[ProcessInfo]:
    """The process's ancestors, nearest first, up to ``limit`` (a pid seen twice ends the walk)."""
    out: list[ProcessInfo] = []
    seen = {proc.pid}
    pid = proc.ppid
    while pid and pid not in seen and len(out) < limit:
        parent = table.get(pid)
        if parent is None:
            break
        out.append(parent)
        seen.add(pid)
        pid = parent.ppid
    return out


DELETED = " (deleted)"


def exe_path(proc: ProcessInfo) -> str | None:
    """The executable's path as the kernel names it, without the " (deleted)" mark."""
    link = proc.exe_link or proc.exe
    if link and link.endswith(DELETED):
        return link[: -len(DELETED)]
    return link


def names_of(proc: ProcessInfo) -> tuple[str, ...]:
    """Every name a process goes by: the kernel's, argv[0]'s base name and the executable's base name."""
    exe = exe_path(proc)
    return tuple(dict.fromkeys(n for n in (proc.name, _argv0_name(proc.cmdline),
                                           os.path.basename(exe) if exe else "") if n))
