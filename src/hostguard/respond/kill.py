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
4. before the signal, the program's bytes are kept (below);
5. ``sig`` (SIGTERM) is sent, the pidfd is polled for the exit for ``grace`` seconds, then SIGKILL.

Keeping the program: a process run from a deleted file or a memfd holds the only copy of its program, and
a kill would take it away from the owner and from any later analysis (the file on disk, if there is one,
may be removed by the attacker later). So when the caller names an evidence directory
(``<state>/evidence``), ``/proc/<pid>/exe`` is opened *while the process is pinned* (after the start time
and exe checks, before the null signal that proves the pid was still the pidfd's process, so the opened
file is that process's program) and copied to ``<evidence>/<sha256>``: content-addressed, directory 0700,
file 0400, created with ``O_EXCL | O_NOFOLLOW`` through a directory fd, never overwritten (the same digest
already there: nothing written) and never deleted. Bigger than ``keep_limit``: recorded as not kept. A
failed copy never stops the kill; it is reported in :attr:`KillResult.kept`.

Nothing is printed: the caller gets a :class:`KillResult` to show and to audit. A kill cannot be undone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import select
import signal
import stat as stat_mod
from dataclasses import dataclass
from typing import Any

START_TOLERANCE = 0.01   # seconds: the checks write the start time with 2 decimals or in full
PF_KTHREAD = 0x00200000  # /proc/<pid>/stat flags: a kernel thread
DELETED = " (deleted)"
DEFAULT_GRACE = 5.0
KEEP_LIMIT = 256 * 1024 * 1024   # bytes: a bigger program is recorded as not kept (a kill must not wait long)
CHUNK = 1 << 20

TERMINATED, KILLED, SURVIVED, REFUSED, GONE = "terminated", "killed", "survived", "refused", "gone"
# What became of the program's bytes (KeptCopy.status)
KEPT, ALREADY_KEPT, TOO_BIG, NOT_KEPT = "kept", "already kept", "too big", "not kept"


@dataclass(frozen=True)
class KeptCopy:
    """The copy of a program kept before its process was killed, or why there is none.

    ``status``: kept (written now), already kept (the same bytes were there: nothing written), too big, or
    not kept (an error: ``detail`` says which). ``sha256`` and ``size`` are those of the bytes read from the
    running process (``size`` alone for one too big); ``path`` is the evidence file when there is one.
    The store is content-addressed so a quarantine ledger can refer to the same bytes by digest.
    """

    status: str
    path: str | None = None
    sha256: str | None = None
    size: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the bytes are in the evidence store now."""
        return self.status in (KEPT, ALREADY_KEPT)

    def describe(self) -> dict[str, Any]:
        """For the audit record."""
        return {"status": self.status, "path": self.path, "sha256": self.sha256, "size": self.size,
                "detail": self.detail}

    def line(self) -> str:
        """One line for people."""
        if self.ok:
            return f"program {self.status}: {self.path} (sha256 {self.sha256}, {self.size} bytes)"
        if self.status == TOO_BIG:
            return f"program not kept: too big ({self.detail})"
        return f"program not kept: {self.detail}"


@dataclass(frozen=True)
class KillResult:
    """What happened: ``outcome`` (terminated, killed, survived, refused, gone), the signals sent, why, and
    the copy of the program kept before the signal (None when nothing was asked or the kill was refused)."""

    pid: int
    outcome: str
    signals: tuple[str, ...]
    detail: str
    kept: KeptCopy | None = None

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


def _digest(fd: int, limit: int) -> tuple[str, int] | None:
    """SHA-256 and size of the whole file behind ``fd`` (read with pread: the offset is not moved); None
    when it turns out bigger than ``limit``."""
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        offset += len(chunk)
        if offset > limit:
            return None
        h.update(chunk)
    return h.hexdigest(), offset


def _evidence_dir(evidence_dir: str) -> int:
    """An fd of ``evidence_dir``, created 0700 when missing and set back to 0700 when found looser (it
    holds malware samples, and root writes into it); OSError when it is a symlink, not a directory or not
    owned by hostguard's user (someone else could have planted a file under a digest)."""
    parent = os.open(os.path.dirname(os.path.abspath(evidence_dir)) or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        name = os.path.basename(os.path.abspath(evidence_dir))
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    finally:
        os.close(parent)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise OSError(errno.EPERM, f"{evidence_dir} belongs to uid {st.st_uid}, not to hostguard's user")
    if stat_mod.S_IMODE(st.st_mode) != 0o700:
        os.fchmod(fd, 0o700)
    return fd


def keep_program(source: int, evidence_dir: str, limit: int = KEEP_LIMIT) -> KeptCopy:
    """Copy the open program ``source`` into ``evidence_dir`` as ``<sha256>`` (0400), unless those bytes are
    there already. Never raises for an I/O problem: a kill goes on without the copy, and says so."""
    try:
        st = os.fstat(source)
        size = st.st_size
        if not stat_mod.S_ISREG(st.st_mode):
            return KeptCopy(NOT_KEPT, detail="the program is not a regular file")
        if size > limit:
            return KeptCopy(TOO_BIG, size=size, detail=f"{size} bytes, more than the {limit} kept")
        first = _digest(source, limit)
        if first is None:
            return KeptCopy(TOO_BIG, size=size, detail=f"grew past the {limit} bytes kept while read")
        dfd = _evidence_dir(evidence_dir)
    except OSError as exc:
        return KeptCopy(NOT_KEPT, detail=f"{evidence_dir}: {exc.strerror or exc}")
    try:
        return _store(source, dfd, evidence_dir, first, limit)
    except OSError as exc:
        return KeptCopy(NOT_KEPT, sha256=first[0], size=first[1], detail=f"{evidence_dir}: {exc.strerror or exc}")
    finally:
        os.close(dfd)


def _present(dfd: int, evidence_dir: str, digest: str, size: int) -> KeptCopy | None:
    """The existing copy of ``digest`` (None when absent): written by an earlier kill, left as it is."""
    try:
        st = os.stat(digest, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    path = os.path.join(evidence_dir, digest)
    if not stat_mod.S_ISREG(st.st_mode) or st.st_size != size:
        return KeptCopy(NOT_KEPT, sha256=digest, size=size,
                        detail=f"{path} exists but is not a {size}-byte file: left alone, nothing written")
    return KeptCopy(ALREADY_KEPT, path, digest, size, "the same bytes were kept before: nothing written")


def _store(source: int, dfd: int, evidence_dir: str, first: tuple[str, int], limit: int) -> KeptCopy:
    """Write the copy under a private name, then link it to its digest (``link`` never replaces a file)."""
    known = _present(dfd, evidence_dir, *first)
    if known is not None:
        return known
    partial = f".partial-{secrets.token_hex(8)}"
    out = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400, dir_fd=dfd)
    try:
        h = hashlib.sha256()
        offset = 0
        try:
            while chunk := os.pread(source, CHUNK, offset):
                offset += len(chunk)
                if offset > limit:
                    return KeptCopy(TOO_BIG, size=offset, detail=f"grew past the {limit} bytes kept while copied")
                h.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
            os.fchmod(out, 0o400)
            os.fsync(out)
        finally:
            os.close(out)
        digest = h.hexdigest()   # the bytes written, even if the program changed since the first read
        try:
            os.link(partial, digest, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:  # another kill kept the same bytes meanwhile
            gone = KeptCopy(NOT_KEPT, detail=f"{digest} appeared and vanished meanwhile")
            return _present(dfd, evidence_dir, digest, offset) or gone
        return KeptCopy(KEPT, os.path.join(evidence_dir, digest), digest, offset)
    finally:
        # the private name only: the bytes stay under their digest (or were there already)
        os.unlink(partial, dir_fd=dfd)


def open_program(pid: int) -> int:
    """``/proc/<pid>/exe`` opened for reading: the program file itself, deleted or memfd alike (the magic
    link must be followed, so no ``O_NOFOLLOW`` here)."""
    return os.open(f"/proc/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC)


def kill_process(pid: int, start: float | str, exe: str | None, sig: signal.Signals = signal.SIGTERM,
                 grace: float = DEFAULT_GRACE, kill_wait: float = DEFAULT_GRACE, evidence_dir: str | None = None,
                 keep_limit: int = KEEP_LIMIT) -> KillResult:
    """Stop the process ``pid`` if it is still the one started at ``start`` from ``exe`` (empty or None:
    not compared); ``sig`` first, SIGKILL after ``grace`` seconds. With ``evidence_dir``, the program's
    bytes are kept there first (up to ``keep_limit`` bytes; see the module's docstring)."""

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
        return _kill_pinned(pid, fd, wanted, exe or None, sig, grace, kill_wait, evidence_dir, keep_limit)
    finally:
        os.close(fd)


def _kill_pinned(pid: int, fd: int, wanted: float, exe: str | None, sig: signal.Signals, grace: float,
                 kill_wait: float, evidence_dir: str | None, keep_limit: int) -> KillResult:
    def refused(why: str, outcome: str = REFUSED, kept: KeptCopy | None = None) -> KillResult:
        return KillResult(pid, outcome, (), why, kept)

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
    program: int | str | None = None   # the opened program, or why it could not be opened
    if evidence_dir is not None:
        try:
            program = open_program(pid)
        except OSError as exc:
            program = f"/proc/{pid}/exe could not be opened: {exc.strerror or exc}"
    try:
        return _signal_pinned(pid, fd, now_exe, program, sig, grace, kill_wait, evidence_dir, keep_limit)
    finally:
        if isinstance(program, int):
            os.close(program)


def _signal_pinned(pid: int, fd: int, now_exe: str | None, program: int | str | None, sig: signal.Signals,
                   grace: float, kill_wait: float, evidence_dir: str | None, keep_limit: int) -> KillResult:
    """The proof that the pid is still the pidfd's process, the copy of its program, then the signals."""
    def refused(why: str, outcome: str = REFUSED, kept: KeptCopy | None = None) -> KillResult:
        return KillResult(pid, outcome, (), why, kept)

    try:  # the pid was still the pidfd's process while it was read and its program opened (module docstring)
        signal.pidfd_send_signal(fd, 0)
    except ProcessLookupError:
        return refused(f"pid {pid} exited while it was checked", GONE)
    kept: KeptCopy | None = None
    if isinstance(program, str):
        kept = KeptCopy(NOT_KEPT, detail=program)
    elif program is not None and evidence_dir is not None:
        if exe_of(pid) != now_exe:   # an exec between the check and the open: not the program checked
            kept = KeptCopy(NOT_KEPT, detail=f"pid {pid} changed its program while it was opened")
        else:
            kept = keep_program(program, evidence_dir, keep_limit)
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return refused(f"pid {pid} exited before the signal", GONE, kept)
    except OSError as exc:
        return refused(f"pid {pid}: {sig.name} not sent ({exc.strerror})", kept=kept)
    if _exited(fd, grace):
        return KillResult(pid, TERMINATED, (sig.name,), f"exited after {sig.name}", kept)
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        return KillResult(pid, TERMINATED, (sig.name,), f"exited after {sig.name}", kept)
    if _exited(fd, kill_wait):
        return KillResult(pid, KILLED, (sig.name, "SIGKILL"), f"still running {grace:g} s after {sig.name}: "
                                                              "killed with SIGKILL", kept)
    return KillResult(pid, SURVIVED, (sig.name, "SIGKILL"), f"still running {kill_wait:g} s after SIGKILL "
                                                            "(stuck in the kernel?)", kept)
