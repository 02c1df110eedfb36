"""The audited kill: signal exactly the process a finding named, never whatever holds its pid now.

A finding names a process by pid, start time (psutil's ``create_time``: boot time + starttime ticks /
CLK_TCK) and executable. Between the scan and the kill that process may exit and its pid go to another
one, so a bare ``kill PID`` could hit an innocent process. Here:

1. a pidfd is opened for the pid: every signal goes through it, so it can only reach the process the fd
   was opened on (if that one is gone, the kernel answers ESRCH and nothing else is signalled);
2. that process's start time, executable and kind are read from ``/proc/<pid>`` and compared with the
   finding's; any difference, a kernel thread, pid 1, ourselves or one of our parents: refused, nothing sent;
3. a null signal through the pidfd *after* those reads proves the pid still belonged to the pidfd's process
   while they were read (a pidfd does not keep a reaped pid's number from being reused: a live process does);
4. ``sig`` (SIGTERM) is sent, the pidfd is polled for the exit for ``grace`` seconds, then SIGKILL.

Nothing is printed: the caller gets a :class:`KillResult` to show and to audit. A kill cannot be undone.
"""

from __future__ import annotations

import os
import select
import signal
from dataclasses import dataclass

START_TOLERANCE = 0.01   # seconds: the checks write the start time with 2 decimals or in full
PF_KTHREAD = 0x00200000  # /proc/<pid>/stat flags: a kernel thread
DELETED = " (deleted)"
DEFAULT_GRACE = 5.0

TERMINATED, KILLED, SURVIVED, REFUSED, GONE = "terminated", "killed", "survived", "refused", "gone"


@dataclass(frozen=True)
class KillResult:
    """What happened: ``outcome`` (terminated, killed, survived, refused, gone), the signals sent, why."""

    pid: int
    outcome: str
    signals: tuple[str, ...]
    detail: str

    @property
    def stopped(self) -> bool:
        """Whether the process is no longer running because of this kill."""
        return self.outcome in (TERMINATED, KILLED)


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat a kill checks."""

    state: str
    ppid: int
    flags: int
    start_ticks: int


def read_stat(pid: int | str) -> ProcStat:
    """Parse /proc/<pid>/stat (the name may hold spaces and parentheses: fields follow the last ')')."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rfind(b")") + 2:].split()
    return ProcStat(fields[0].decode(), int(fields[1]), int(fields[6]), int(fields[19]))


def boot_time() -> float:
    """The boot time psutil adds to the start ticks (``btime`` of /proc/stat)."""
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise OSError("/proc/stat has no btime line")


def start_time(stat: ProcStat) -> float:
    """The start time in the unit the findings carry: seconds since the epoch, as psutil computes it."""
    return boot_time() + stat.start_ticks / os.sysconf("SC_CLK_TCK")


def protected() -> set[int]:
    """Pids never killed: 0, 1 (init), 2 (kthreadd), ourselves and every parent up to init."""
    pids = {0, 1, 2, os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = read_stat(pid).ppid
        except OSError:
            break
    return pids


def exe_of(pid: int) -> str | None:
    """The executable's path as the kernel names it, without the " (deleted)" mark; None without one."""
    try:
        link = os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError:
        return None
    return link.removesuffix(DELETED)


def _exited(fd: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for the pidfd to become readable (the process exited)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(seconds, 0.0) * 1000))


def kill_process(pid: int, start: float | str, exe: str | None, sig: signal.Signals = signal.SIGTERM,
         grace: float = DEFAULT_GRACE, kill_wait: float = DEFAULT_GRACE) -> KillResult:
    """Stop the process ``pid`` if it is still the one started at ``start`` from ``exe`` (empty or None:
    not compared); ``sig`` first, SIGKILL after ``grace`` seconds."""

    def refused(why: str, outcome: str = REFUSED) -> KillResult:
        return KillResult(pid, outcome, (), why)

    try:
        wanted = float(start)
    except ValueError:
        return refused(f"start time {start!r} is not a number")
    if pid in protected() or pid <= 0:
        return refused(f"pid {pid} is init, hostguard itself or one of its parents: never killed")
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return refused(f"pid {pid} is no longer running", GONE)
    except OSError as exc:
        return refused(f"pid {pid}: no pidfd ({exc.strerror})")
    try:
        return _kill_pinned(pid, fd, wanted, exe or None, sig, grace, kill_wait)
    finally:
        os.close(fd)


def _kill_pinned(pid: int, fd: int, wanted: float, exe: str | None, sig: signal.Signals, grace: float,
                 kill_wait: float) -> KillResult:
    def refused(why: str, outcome: str = REFUSED) -> KillResult:
        return KillResult(pid, outcome, (), why)

    if _exited(fd, 0):
        return refused(f"pid {pid} has already exited", GONE)
    try:
        stat = read_stat(pid)
        now_start = start_time(stat)
        now_exe = exe_of(pid)
    except (OSError, ValueError, IndexError) as exc:
        return refused(f"pid {pid} could not be read: {exc}")
    if stat.flags & PF_KTHREAD:
        return refused(f"pid {pid} is a kernel thread: never killed")
    if stat.state in ("Z", "X"):
        return refused(f"pid {pid} has already exited", GONE)
    if abs(now_start - wanted) > START_TOLERANCE:
        return refused(f"pid {pid} started at {now_start:.2f}, not {wanted:.2f}: another process holds the pid now")
    if exe is not None and now_exe != exe:
        return refused(f"pid {pid} runs {now_exe or 'no executable'}, not {exe}")
    try:  # the pid was still the pidfd's process while it was read (see the module's docstring)
        signal.pidfd_send_signal(fd, 0)
    except ProcessLookupError:
        return refused(f"pid {pid} exited while it was checked", GONE)
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return refused(f"pid {pid} exited before the signal", GONE)
    except OSError as exc:
        return refused(f"pid {pid}: {sig.name} not sent ({exc.strerror})")
    if _exited(fd, grace):
        return KillResult(pid, TERMINATED, (sig.name,), f"exited after {sig.name}")
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        return KillResult(pid, TERMINATED, (sig.name,), f"exited after {sig.name}")
    if _exited(fd, kill_wait):
        return KillResult(pid, KILLED, (sig.name, "SIGKILL"), f"still running {grace:g} s after {sig.name}: "
                                                              "killed with SIGKILL")
    return KillResult(pid, SURVIVED, (sig.name, "SIGKILL"), f"still running {kill_wait:g} s after SIGKILL "
                                                            "(stuck in the kernel?)")
