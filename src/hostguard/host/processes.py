"""The live host's processes and sockets, each listed once per scan and shared by every fact that needs them.

psutil lives in ``LiveHost`` alone; these facts are its listings. Under ``--root`` they are unavailable
(live only), and so is every fact built on them.

Also here: what a process *runs*, read from its command line. ``python3 -m http.server`` is named
``python3`` by the kernel; the program is ``http.server``. Interpreters and their options are data (the
caller passes them), so the same reading serves service naming and the process checks. :data:`SCRIPTS`
looks closer at the interpreters alone (their working directory and open files, through
``Host.process_files``): whether the script each one runs is still on disk. Every other process is read
once, in the listing, which is what keeps a scan of 500 processes fast.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache

from hostguard.config import build_section
from hostguard.data import load_toml
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
    (``-c``, ``-e``) run code given on the command line, which names nothing. ``file_options`` are the
    run options whose argument is a file (``php -f file``), where ``-m module`` names no file.
    """

    names: tuple[str, ...]
    run_options: tuple[str, ...] = ()
    value_options: tuple[str, ...] = ()
    inline_options: tuple[str, ...] = ()
    file_options: tuple[str, ...] = ()

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


def argv0_name(cmdline: tuple[str, ...]) -> str:
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
    names = tuple(dict.fromkeys(n for n in (name or "", argv0_name(cmdline)) if n))
    interp = interpreter_of(names, exe, interpreters)
    if interp is None:
        return Program(names, exe)
    args = list(cmdline[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in interp.inline_options:
            return Program(names, exe, inline=arg)
        if arg in interp.run_options or arg in interp.file_options:
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
    return tuple(dict.fromkeys(n for n in (proc.name, argv0_name(proc.cmdline),
                                           os.path.basename(exe) if exe else "") if n))


# -- the script an interpreter runs ------------------------------------------------------------------------

NOT_FILES = ("/dev/stdin", "/dev/fd/", "/proc/self/fd/")  # a pipe or stdin: no script file to look for


@cache
def script_interpreters() -> tuple[Interpreter, ...]:
    """data/processes/interpreters.toml: the interpreters whose script the process checks follow."""
    data = load_toml("processes/interpreters.toml")
    return tuple(build_section(Interpreter, e, f"processes/interpreters.toml interpreter {i}")
                 for i, e in enumerate(data["interpreter"], 1))


def _inline_cluster(arg: str, interp: Interpreter) -> bool:
    """``-ec`` (``-e -c``) or ``-ne``: a cluster of short options holding an inline one."""
    letters = {o[1] for o in interp.inline_options if len(o) == 2 and o[0] == "-"}
    return len(arg) > 2 and arg[0] == "-" and arg[1] != "-" and arg[1:].isalpha() and bool(letters & set(arg[1:]))


def script_argument(cmdline: tuple[str, ...], interp: Interpreter) -> str | None:
    """The script file an interpreter's command line runs: the first argument that is not an option (or the
    argument of a file option), None when it runs inline code, stdin, a module, or nothing."""
    args = cmdline[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in interp.inline_options or arg in interp.run_options or _inline_cluster(arg, interp):
            return None
        if arg in interp.file_options or arg == "--":
            script = args[i + 1] if i + 1 < len(args) else None
            break
        if arg in interp.value_options:
            i += 2
            continue
        if arg.startswith("-") and arg != "-":
            i += 1
            continue
        script = arg
        break
    else:
        return None
    if not script or script == "-" or script.startswith(NOT_FILES):
        return None
    return script


@dataclass(frozen=True)
class ScriptFile:
    """The script file an interpreter process runs, and whether it is still where the process found it.

    ``path`` is absolute as the process sees it: an open descriptor's path when the interpreter keeps the
    script open (bash, on fd 255), else the command line's name resolved against the working directory.
    ``exists``: a file is at ``path`` now; ``held_deleted``: the open descriptor says "(deleted)" (with
    ``exists`` too, the file was replaced at its path: an edit or an upgrade, not a removal).
    """

    pid: int
    interpreter: str
    given: str
    path: str
    exists: bool
    fd: int | None = None
    held_deleted: bool = False


def _holds(target: str, path: str, given: str) -> bool:
    """Whether an open file's path is the script: the same path, or for a relative name, one ending in it
    (the process may have changed directory since it started)."""
    return target == path or (not given.startswith("/") and target.endswith("/" + posixpath.normpath(given)))


def collect_scripts(host: Host, processes: tuple[ProcessInfo, ...]) -> dict[int, ScriptFile]:
    """For every process whose executable is an interpreter running a script file: that file and whether it
    is still there. Only those processes are looked at closely (their cwd and open files), so the listing
    of every process stays cheap."""
    out: dict[int, ScriptFile] = {}
    interps = script_interpreters()
    for proc in processes:
        exe = exe_path(proc)
        if not exe or exe.startswith("/memfd:"):
            continue
        interp = interpreter_of((), exe, interps)
        given = script_argument(proc.cmdline, interp) if interp else None
        if not given:
            continue
        files = host.process_files(proc.pid, (given,))
        if files is None:  # it exited meanwhile
            continue
        cwd = (files.cwd or "/").removesuffix(DELETED)
        path = posixpath.normpath(posixpath.join(cwd, given))
        exists = given in files.present
        held = next(((fd, t) for fd, t in files.open_files if _holds(t.removesuffix(DELETED), path, given)), None)
        if held is None:
            out[proc.pid] = ScriptFile(proc.pid, os.path.basename(exe), given, path, exists)
            continue
        fd, target = held
        path = target.removesuffix(DELETED)
        if target.endswith(DELETED):
            again = host.process_files(proc.pid, (path,))
            exists = again is not None and path in again.present
        else:
            exists = True
        out[proc.pid] = ScriptFile(proc.pid, os.path.basename(exe), given, path, exists, fd, target.endswith(DELETED))
    return out


SCRIPTS: Fact[dict[int, ScriptFile]] = Fact("interpreter_scripts", collect_scripts, inputs=(PROCESSES,))
