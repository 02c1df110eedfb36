"""Rootkit traces on the running system: what the kernel answers when asked directly but hides from a listing.

A kernel rootkit hides a process by filtering it out of the ``/proc`` directory listing (what ``ps`` and
``top`` read), but a lookup by number (``/proc/<pid>/status``) still reaches the task. Comparing the two
views over every possible pid, with ``cgroup.procs`` (a listing the usual hooks do not filter) as a second
view, finds such a process without any signature. Live only: a ``--root`` tree has no processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from hostguard.engine.context import Context
from hostguard.engine.facts import Fact
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, SkipReason
from hostguard.host.base import Host, Unavailable
from hostguard.remediation import Remediation

FAMILY = Family("rootkit", __doc__ or "")

RECHECKS = 2  # a pid must stay missing from the listing and answer as its own thread group this many more times
CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class HiddenProcess:
    """A process the kernel answers for by number but leaves out of the ``/proc`` listing."""

    pid: int
    seen_by: tuple[str, ...]    # "lookup" (/proc/<pid>/status) and/or "cgroup.procs"
    name: str | None
    exe: str | None
    pid_max: int
    sweep_seconds: float

    def label(self) -> str:
        """How a skipped entry names it."""
        return f"hidden pid {self.pid}"

    def describe(self) -> dict[str, Any]:
        """Evidence: the pid, how it was seen, what it is, and how the sweep went."""
        return {"pid": self.pid, "seen_by": list(self.seen_by), "name": self.name, "exe": self.exe,
                "pid_max": self.pid_max, "sweep_seconds": round(self.sweep_seconds, 3)}


def find_hidden(listing: Callable[[], set[int]], tgid_of: Callable[[int], int | None], pids: Iterable[int],
                cgroup_pids: Iterable[int], rechecks: int = RECHECKS) -> dict[int, tuple[str, ...]]:
    """Pids missing from ``listing()`` whose lookup says they lead their own thread group (Tgid == pid).

    A thread id answers a lookup too but is never listed: only Tgid == pid counts. A process that started
    after the listing, or exited after the lookup, fails one of the ``rechecks`` (each re-lists and looks
    up again), so the race of a busy host is not a finding. Returns pid -> the views that saw it.
    """
    listed = listing()
    seen: dict[int, list[str]] = {}
    for pid in pids:
        if pid not in listed and tgid_of(pid) == pid:
            seen.setdefault(pid, []).append("lookup")
    for pid in set(cgroup_pids):
        if pid > 0 and pid not in listed and tgid_of(pid) == pid:
            seen.setdefault(pid, []).append("cgroup.procs")
    for _ in range(rechecks):
        if not seen:
            break
        listed = listing()
        seen = {pid: views for pid, views in seen.items() if pid not in listed and tgid_of(pid) == pid}
    return {pid: tuple(views) for pid, views in sorted(seen.items())}


def proc_listing() -> set[int]:
    """The pids the ``/proc`` directory lists (thread group leaders only)."""
    return {int(n) for n in os.listdir("/proc") if n.isdigit()}


def proc_tgid(pid: int) -> int | None:
    """The Tgid ``/proc/<pid>/status`` gives, or None when nothing answers at that number."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return None
    for line in head.splitlines():
        if line.startswith(b"Tgid:"):
            value = line[5:].strip()
            return int(value) if value.isdigit() else None
    return None


def cgroup_procs(root: str = CGROUP_ROOT) -> set[int]:
    """Every pid named in a ``cgroup.procs`` file under ``root`` (v1 and v2 alike)."""
    out: set[int] = set()
    for folder, _dirs, files in os.walk(root):
        if "cgroup.procs" not in files:
            continue
        try:
            with open(os.path.join(folder, "cgroup.procs"), "rb") as fh:
                out.update(int(x) for x in fh.read().split() if x.isdigit())
        except OSError:
            continue
    return out


def pid_max() -> int:
    """The kernel's highest pid + 1 (``/proc/sys/kernel/pid_max``)."""
    with open("/proc/sys/kernel/pid_max", "rb") as fh:
        return int(fh.read().strip())


def _status_field(pid: int, key: bytes) -> str | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(key + b":"):
                    return line.split(b":", 1)[1].strip().decode("utf-8", "replace")
    except OSError:
        return None
    return None


def sweep(limit: int | None = None) -> tuple[HiddenProcess, ...]:
    """The live sweep over pids 1..pid_max (or ``limit``), timed."""
    top = limit or pid_max()
    t0 = time.perf_counter()
    found = find_hidden(proc_listing, proc_tgid, range(1, top), cgroup_procs())
    seconds = time.perf_counter() - t0
    out = []
    for pid, views in found.items():
        try:
            exe: str | None = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = None
        out.append(HiddenProcess(pid, views, _status_field(pid, b"Name"), exe, top, seconds))
    return tuple(out)


def collect_hidden(host: Host) -> tuple[HiddenProcess, ...]:
    """Hidden processes of the running system (lookups of other users' tasks need root)."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "processes are only known on a running system, not under --root")
    if os.geteuid() != 0:
        raise Unavailable(SkipReason.NOT_ROOT, "looking up every pid needs root")
    return sweep()


# Declared with the family (no other check reads it); it reads /proc through os only under a live host.
HIDDEN_PROCESSES: Fact[tuple[HiddenProcess, ...]] = Fact("hidden_processes", collect_hidden)


@check(id="rootkit.hidden_process", severity="critical", summary="Process hidden from the /proc listing",
       needs=(HIDDEN_PROCESSES,), each=HIDDEN_PROCESSES, tags=("T1014", "T1564"))
def hidden_process(h: HiddenProcess, ctx: Context) -> Iterator[Finding]:
    """Every pid from 1 to pid_max is looked up in /proc; one that leads its own thread group (so it is a
    process, not a thread) yet is missing from the /proc listing, twice more re-checked, is hidden by
    something in the kernel. ``cgroup.procs`` is a second view. Nothing on a sound system is hidden."""
    yield ctx.finding(f"Process {h.name or 'with no name'} (pid {h.pid}) is hidden from the /proc listing",
                      {"kind": "process", "program": h.exe or h.name or "unknown", "hidden": True},
                      evidence=h.describe(), remediation=Remediation.by_hand(
                          "Treat the host as compromised at the kernel level: keep it off the network, save "
                          "evidence (memory, disk image), and reinstall it from known-good media; change every "
                          "secret it held.",
                          "A kernel that hides processes can also hide files and lie to any tool run on it, so "
                          "no fix applied from inside the host can be trusted."))
