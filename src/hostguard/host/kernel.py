"""What the running kernel says about itself: its loaded modules, and which pids it answers for.

Both are live facts (a ``--root`` tree has no kernel running), but they are read differently:

* **Loaded modules** are read through the :class:`~hostguard.host.base.Host`, at the paths the kernel
  shows them (``/proc/modules``, ``/proc/sys/kernel/osrelease``, ``/sys/module/<name>/taint``) and the
  paths the module tools keep (``/lib/modules/<release>/modules.dep``, ``modules.builtin``,
  ``/var/lib/dkms``). :func:`loaded_modules` takes any host, so a test points it at a directory holding
  ``proc/``, ``sys/`` and ``lib/modules/`` written by the test (a :class:`RootHost`) and hands the result
  to the check as a given fact; the fact's collector :func:`collect_kernel_modules` only adds the live-only
  rule and passes the live host, so a scan reads the real files.
* **The pid sweep** asks the kernel for every pid from 1 to ``pid_max``. It goes straight to the kernel
  through ``os`` (it is nothing but the running system), is driven by the check under its time budget
  (:meth:`PidSweep.run`), and says how far it got.

Why ``pidfd_open(2)`` for the sweep: it answers from the kernel's pid table, not from procfs, where
process-hiding rootkits put their hooks, and it succeeds only for a thread-group leader (a process), so a
thread id needs no second look. It costs 0.6 us per pid against 3.9 us for opening ``/proc/<pid>/status``
(both on this machine, 1,000,000 pids). Where the kernel lacks it (before 5.3), the sweep falls back to the
``/proc/<pid>/status`` lookup. No range of pids may be skipped: a pid is chosen by whoever writes
``/proc/sys/kernel/ns_last_pid`` or calls ``clone3`` with ``set_tid``, so neither the last pid handed out
nor the lowest one listed bounds where a hidden process can be.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import FileMissing, Host, HostError, Unavailable
from hostguard.host.packages import package_owners

# -- loaded modules ------------------------------------------------------------------------------------

PROC_MODULES = "/proc/modules"
OSRELEASE = "/proc/sys/kernel/osrelease"
SYS_MODULE = "/sys/module"
MODULES_DIR = "/lib/modules"
DKMS_DIR = "/var/lib/dkms"
KO_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
TAINT = re.compile(r"\([A-Z]*\)")
DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class ProcModule:
    """One line of ``/proc/modules``."""

    name: str
    size: int
    refcount: int | None        # None on a kernel built without module unloading ("-")
    used_by: tuple[str, ...]    # modules using it; "[permanent]" when it can never be unloaded
    state: str                  # Live, Loading, Unloading
    taint: str                  # the letters in "(OE)", "" when untainted


def parse_proc_modules(text: str, label: str = PROC_MODULES) -> list[ProcModule]:
    """The modules ``/proc/modules`` lists; a line that is not the kernel's format is a :class:`HostError`.

    The format is ``name size refcount users state address [(taint)]``; the kernel writes it, so a line that
    does not read so means the file is not what it claims (or a broken fixture), and guessing would hide it.
    """
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (6, 7):
            raise HostError(f"{label} line {number}: {len(fields)} fields, not the kernel's 6 or 7")
        name, size, refcount, users, state = fields[:5]
        taint = fields[6] if len(fields) == 7 else "()"
        if not (DIGITS.fullmatch(size) and (DIGITS.fullmatch(refcount) or refcount == "-") and TAINT.fullmatch(taint)):
            raise HostError(f"{label} line {number}: not a module line ({line.strip()[:80]!r})")
        used = tuple(u for u in users.split(",") if u and u != "-")
        out.append(ProcModule(name, int(size), None if refcount == "-" else int(refcount), used, state,
                              taint[1:-1]))
    return out


def module_name(path: str) -> str | None:
    """The name the kernel gives the module file at ``path`` (``kernel/net/foo-bar.ko.xz`` -> ``foo_bar``)."""
    base = path.rstrip().rsplit("/", 1)[-1]
    for suffix in KO_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)].replace("-", "_")
    return None


def parse_modules_dep(text: str, label: str = "modules.dep") -> dict[str, str]:
    """Module name -> its file as ``modules.dep`` names it (relative to the release's directory, or absolute).

    Each line is ``path: dependencies``; a line without the colon is a :class:`HostError`. The first line for
    a name wins, as modprobe takes it.
    """
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        path, colon, _deps = line.partition(":")
        name = module_name(path.strip())
        if not colon or name is None:
            raise HostError(f"{label} line {number}: not 'path.ko: dependencies' ({line.strip()[:80]!r})")
        out.setdefault(name, path.strip())
    return out


def parse_modules_builtin(text: str) -> frozenset[str]:
    """Names of the modules built into the kernel (``modules.builtin``: one ``.ko`` path a line)."""
    return frozenset(n for n in (module_name(line) for line in text.splitlines() if line.strip()) if n)


@dataclass(frozen=True)
class DkmsBuild:
    """A module DKMS built for this kernel: the DKMS package, its version, and the package owning its source."""

    package: str
    version: str
    source: str                     # /usr/src/<package>-<version>/dkms.conf
    source_owner: str | None        # the system package that installed that source, if any


@dataclass(frozen=True)
class LoadedModule:
    """A loaded module, where it comes from, and who installed it."""

    name: str
    size: int
    refcount: int | None
    used_by: tuple[str, ...]
    state: str
    taint: str                      # letters from /proc/modules and /sys/module/<name>/taint, merged
    path: str | None                # its file under /lib/modules/<release>/, None when modules.dep has no such name
    builtin_name: bool              # modules.builtin names it: a loadable module shadowing a built-in
    owner: str | None               # the package owning ``path``
    dkms: DkmsBuild | None

    def label(self) -> str:
        """How a skipped entry names it."""
        return f"module {self.name}"


@dataclass(frozen=True)
class KernelModules:
    """The loaded modules of the running kernel, located in its module tree."""

    release: str
    modules: tuple[LoadedModule, ...]
    database: str | None            # the package database read ("dpkg"), None when the host has none
    dep_file: str = ""              # the modules.dep read


def _dkms_builds(host: Host, release: str) -> dict[str, tuple[str, str]]:
    """Module name -> (DKMS package, version) for modules DKMS built for ``release``
    (``/var/lib/dkms/<package>/<version>/<release>/<arch>/module/<name>.ko*``)."""
    out: dict[str, tuple[str, str]] = {}
    for package in host.listdir(DKMS_DIR):
        for version in host.listdir(f"{DKMS_DIR}/{package}"):
            for arch in host.listdir(f"{DKMS_DIR}/{package}/{version}/{release}"):
                for file in host.listdir(f"{DKMS_DIR}/{package}/{version}/{release}/{arch}/module"):
                    name = module_name(file)
                    if name:
                        out.setdefault(name, (package, version))
    return out


def _sys_taint(host: Host, name: str) -> str:
    try:
        return "".join(ch for ch in host.read_text(f"{SYS_MODULE}/{name}/taint") if ch.isalpha())
    except FileMissing:
        return ""


def loaded_modules(host: Host) -> KernelModules:
    """The loaded modules of the kernel whose ``/proc``, ``/sys`` and ``/lib/modules`` ``host`` shows.

    :class:`Unavailable` (unsupported) when there is no ``/proc/modules`` (a kernel without loadable
    modules: nothing can be loaded, so nothing to judge) or no ``modules.dep`` for the running release
    (modules cannot be told apart from strays without it; a skip says so rather than calling all of them
    strays).
    """
    text = host.read_optional(PROC_MODULES)
    if text is None:
        raise Unavailable(SkipReason.UNSUPPORTED, "no /proc/modules: this kernel was built without loadable module "
                                                  "support (monolithic), so no module can have been loaded")
    release = host.read_text(OSRELEASE).strip()  # the host's own kernel, never this machine's uname
    if not release or "/" in release or release in (".", ".."):
        raise HostError(f"{OSRELEASE}: {release[:80]!r} is not a kernel release")
    base = f"{MODULES_DIR}/{release}"
    dep_text = host.read_optional(f"{base}/modules.dep")
    if dep_text is None:
        raise Unavailable(SkipReason.UNSUPPORTED, f"no {base}/modules.dep: the modules of the running kernel "
                                                  f"({release}) are not installed here, so none can be located")
    dep = parse_modules_dep(dep_text, f"{base}/modules.dep")
    builtin = parse_modules_builtin(host.read_optional(f"{base}/modules.builtin") or "")
    procs = parse_proc_modules(text)
    paths = {m.name: (dep[m.name] if dep[m.name].startswith("/") else f"{base}/{dep[m.name]}")
             for m in procs if m.name in dep}
    builds = _dkms_builds(host, release)
    sources = {name: f"/usr/src/{pkg}-{ver}/dkms.conf" for name, (pkg, ver) in builds.items()}
    owners = package_owners(host, sorted({*paths.values(), *sources.values()}))
    modules = []
    for m in procs:
        taint = "".join(dict.fromkeys(m.taint + _sys_taint(host, m.name)))
        path = paths.get(m.name)
        dkms = None
        if m.name in builds:
            pkg, ver = builds[m.name]
            dkms = DkmsBuild(pkg, ver, sources[m.name], owners.owner(sources[m.name]))
        modules.append(LoadedModule(m.name, m.size, m.refcount, m.used_by, m.state, taint, path, m.name in builtin,
                                    owners.owner(path), dkms))
    return KernelModules(release, tuple(modules), owners.database, f"{base}/modules.dep")


def collect_kernel_modules(host: Host) -> KernelModules:
    """The running kernel's modules (live only: a tree's /proc is not a running kernel)."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "loaded modules are only known on a running system, not under --root")
    return loaded_modules(host)


KERNEL_MODULES: Fact[KernelModules] = Fact("kernel_modules", collect_kernel_modules)


# -- the pid sweep -----------------------------------------------------------------------------------------

RECHECKS = 2  # a pid must stay missing from the listing and answer as a process this many more times
CGROUP_ROOT = "/sys/fs/cgroup"
CHUNK = 4096  # pids probed between two looks at the deadline (about 3 ms)


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


def lookup_is_process(pid: int) -> bool:
    """A procfs lookup by number reaches a thread-group leader at ``pid`` (a thread answers with another Tgid)."""
    return proc_tgid(pid) == pid


def pidfd_is_process(pid: int) -> bool:
    """``pidfd_open(pid)`` succeeds: the kernel's pid table holds a process (not a thread) at ``pid``."""
    try:
        os.close(os.pidfd_open(pid))
    except OSError:
        return False
    return True


def pidfd_supported() -> bool:
    """Whether ``pidfd_open`` answers here (Linux 5.3; a seccomp profile may refuse it with EPERM): it must
    open our own process, or every probe would fail and the sweep would call a hiding host clean."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def pidfd_range(lo: int, hi: int) -> list[int]:
    """The processes among pids ``lo``..``hi``-1, by ``pidfd_open`` (the sweep's inner loop, kept tight)."""
    found = []
    opener, close = os.pidfd_open, os.close
    for pid in range(lo, hi):
        try:
            close(opener(pid))
        except OSError:
            continue
        found.append(pid)
    return found


def lookup_range(lo: int, hi: int) -> list[int]:
    """The processes among pids ``lo``..``hi``-1, by the procfs lookup (where pidfd_open is refused)."""
    return [pid for pid in range(lo, hi) if lookup_is_process(pid)]


def find_hidden(listing: Callable[[], set[int]], is_process: Callable[[int], bool], pids: Iterable[int],
                cgroup_pids: Iterable[int], rechecks: int = RECHECKS, view: str = "pidfd") -> dict[int, tuple[str, ...]]:
    """Pids missing from ``listing()`` that ``is_process`` says are processes, named by the views that saw them.

    ``pids`` are probed as ``view``; ``cgroup_pids`` (a listing the usual hooks do not filter) is a second
    view. A process that started after the listing, or exited after the probe, fails one of the ``rechecks``
    (each re-lists and probes again), so the race of a busy host is not a finding.
    """
    listed = listing()
    seen: dict[int, list[str]] = {}
    for pid in pids:
        if pid not in listed and is_process(pid):
            seen.setdefault(pid, []).append(view)
    for pid in set(cgroup_pids):
        if pid > 0 and pid not in listed and is_process(pid):
            seen.setdefault(pid, []).append("cgroup.procs")
    for _ in range(rechecks):
        if not seen:
            break
        listed = listing()
        seen = {pid: views for pid, views in seen.items() if pid not in listed and is_process(pid)}
    return {pid: tuple(views) for pid, views in sorted(seen.items())}


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


@dataclass(frozen=True)
class HiddenProcess:
    """A process the kernel answers for by number but leaves out of the ``/proc`` listing."""

    pid: int
    seen_by: tuple[str, ...]    # "pidfd" (or "lookup" without pidfd_open) and/or "cgroup.procs"
    name: str | None
    exe: str | None
    proc_lookup: bool           # /proc/<pid>/status answers too (False: hidden from procfs lookups as well)
    pid_max: int
    sweep_seconds: float

    def describe(self) -> dict[str, Any]:
        """Evidence: the pid, how it was seen, what it is, and how the sweep went."""
        return {"pid": self.pid, "seen_by": list(self.seen_by), "name": self.name, "exe": self.exe,
                "proc_lookup": self.proc_lookup, "pid_max": self.pid_max,
                "sweep_seconds": round(self.sweep_seconds, 3)}


@dataclass(frozen=True)
class SweepResult:
    """What one sweep found, and how far it got: ``reached`` == ``pid_max`` when every pid was asked."""

    hidden: tuple[HiddenProcess, ...]
    pid_max: int
    reached: int                # pids 1..reached-1 were probed
    seconds: float
    view: str

    @property
    def complete(self) -> bool:
        """Every pid below pid_max was probed."""
        return self.reached >= self.pid_max


@dataclass(frozen=True)
class PidSweep:
    """The sweep of pids 1..``top``-1, run by the check under its deadline (a fact's value: nothing is read
    until :meth:`run`). ``probe_range``/``is_process`` default to ``pidfd_open``, or the procfs lookup where
    the kernel has no pidfd."""

    top: int
    view: str = "pidfd"
    probe_range: Callable[[int, int], list[int]] = field(default=pidfd_range, repr=False)
    is_process: Callable[[int], bool] = field(default=pidfd_is_process, repr=False)
    listing: Callable[[], set[int]] = field(default=proc_listing, repr=False)
    cgroups: Callable[[], set[int]] = field(default=cgroup_procs, repr=False)

    @classmethod
    def live(cls, top: int | None = None) -> PidSweep:
        """The sweep of this machine, up to its pid_max (or ``top``), by the fastest sound view it has."""
        top = top or pid_max()
        if pidfd_supported():
            return cls(top)
        return cls(top, "lookup", lookup_range, lookup_is_process)

    def run(self, deadline: float | None = None, cancel: threading.Event | None = None,
            progress: Callable[[int, int], None] | None = None) -> SweepResult:
        """Probe every pid, stopping at ``deadline`` (``time.monotonic()``) or on ``cancel``; then confirm."""
        reached = 1
        t0 = time.perf_counter()

        def probed() -> Iterator[int]:
            nonlocal reached
            for lo in range(1, self.top, CHUNK):
                if (deadline is not None and time.monotonic() >= deadline) or (cancel is not None and cancel.is_set()):
                    return
                hi = min(lo + CHUNK, self.top)
                yield from self.probe_range(lo, hi)
                reached = hi
                if progress is not None:
                    progress(hi, self.top)

        found = find_hidden(self.listing, self.is_process, probed(), self.cgroups(), view=self.view)
        seconds = time.perf_counter() - t0
        out = []
        for pid, views in found.items():
            try:
                exe: str | None = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                exe = None
            out.append(HiddenProcess(pid, views, _status_field(pid, b"Name"), exe, lookup_is_process(pid), self.top,
                                     seconds))
        return SweepResult(tuple(out), self.top, reached, seconds, self.view)


def collect_pid_sweep(host: Host) -> PidSweep:
    """The sweep of the running system (probing other users' pids and reading their status needs root)."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "processes are only known on a running system, not under --root")
    if os.geteuid() != 0:
        raise Unavailable(SkipReason.NOT_ROOT, "looking up every pid needs root")
    try:
        return PidSweep.live()
    except (OSError, ValueError) as exc:
        raise HostError(f"/proc/sys/kernel/pid_max: {exc}") from exc


PID_SWEEP: Fact[PidSweep] = Fact("pid_sweep", collect_pid_sweep)
