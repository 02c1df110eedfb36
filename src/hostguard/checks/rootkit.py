"""Rootkit traces on the running system: processes the kernel hides from a listing, kernel modules no
package installed, and interfaces in promiscuous mode.

A kernel rootkit hides a process by filtering it out of the ``/proc`` directory listing (what ``ps`` and
``top`` read), but the kernel's pid table still holds it. Asking for every possible pid (``pidfd_open``,
which does not go through procfs) and comparing with the listing, with ``cgroup.procs`` (a listing the
usual hooks do not filter) as a second view, finds such a process without any signature. The sweep costs
time per pid, not per process: ``benchmarks/hidden_processes.py`` measured, on an idle 2-CPU machine, 0.021 s
at pid_max 32768 and 2.57 s at 4194304 (systemd's default on 64-bit systems; 0.6 us per pid, 5-7 s with the
machine loaded at 5), against 0.141 s and about 18 s when every pid was looked up in /proc. It stops at
``[rootkit] sweep_seconds`` (30 s) and then reports itself incomplete with the pid it reached.

The rootkit itself is usually a kernel module: one loaded from outside the kernel's module tree (insmod of a
file anywhere) or dropped into the tree without a package is what this family reports. All of it is live
only: a ``--root`` tree has no kernel running.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache

from hostguard.config import Config, setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, Severity, SkipReason
from hostguard.host.kernel import KERNEL_MODULES, PID_SWEEP, KernelModules, LoadedModule, PidSweep
from hostguard.host.netif import NET_INTERFACES, Interface
from hostguard.remediation import Command, Remediation


@dataclass(frozen=True)
class RootkitConfig:
    """[rootkit]: the hidden-process sweep's time budget, and interfaces a capture tool keeps promiscuous."""

    sweep_seconds: float = setting(30.0, "Seconds the hidden-process sweep (every pid up to pid_max, about 0.6 us "
                                         "each) may take; the pids it did not reach are reported as not checked.",
                                   min=1)
    capture_interfaces: tuple[str, ...] = setting((), "Interfaces (shell globs) the owner runs a capture tool on "
                                                      "(an IDS, tcpdump): their promiscuous mode is expected.")


FAMILY = Family("rootkit", __doc__ or "", RootkitConfig)


@cache
def taint_letters() -> dict[str, str]:
    """What each per-module taint letter means (``data/rootkit/taint.toml``)."""
    return {str(k): str(v) for k, v in load_toml("rootkit/taint.toml")["letters"].items()}


@cache
def promiscuous_by_design() -> tuple[str, ...]:
    """Interface name globs that are promiscuous by design (``data/rootkit/interfaces.toml``)."""
    return tuple(str(k) for k in load_toml("rootkit/interfaces.toml")["promiscuous_by_design"])


# -- hidden processes ----------------------------------------------------------------------------------------

def _sweep_budget(config: Config) -> float:
    return config[RootkitConfig].sweep_seconds


@check(id="rootkit.hidden_process", severity="critical", summary="Process hidden from the /proc listing",
       needs=(PID_SWEEP,), budget=_sweep_budget, tags=("T1014", "T1564"))
def hidden_process(ctx: Context) -> Iterator[Finding]:
    """Every pid from 1 to pid_max is asked of the kernel (``pidfd_open``, which answers only for a process,
    not a thread, and does not go through procfs); one that is a process yet is missing from the /proc
    listing, twice more re-checked, is hidden by something in the kernel. ``cgroup.procs`` is a second view.
    Nothing on a sound system is hidden. The sweep stops at ``[rootkit] sweep_seconds`` and reports the pids
    it did not reach as not checked (no range may be skipped: a pid can be chosen with ``ns_last_pid``)."""
    sweep: PidSweep = ctx.fact(PID_SWEEP)
    result = sweep.run(ctx.deadline, ctx.cancel, ctx.progress)
    if not result.complete:
        why = "cancelled" if ctx.cancel.is_set() else (
            f"time budget of {_sweep_budget(ctx.config):g} s spent (raise rootkit.sweep_seconds)")
        ctx.skip(SkipReason.BUDGET, f"the pid sweep reached pid {result.reached - 1} of pid_max {result.pid_max} in "
                                    f"{result.seconds:.1f} s: {why}; pids {result.reached}..{result.pid_max - 1} "
                                    "were not asked")
    for h in result.hidden:
        yield ctx.finding(f"Process {h.name or 'with no name'} (pid {h.pid}) is hidden from the /proc listing",
                          {"kind": "process", "program": h.exe or h.name or "unknown", "hidden": True},
                          evidence={**h.describe(), "sweep_complete": result.complete},
                          remediation=Remediation.by_hand(
                              "Treat the host as compromised at the kernel level: keep it off the network, save "
                              "evidence (memory, disk image), and reinstall it from known-good media; change every "
                              "secret it held.",
                              "A kernel that hides processes can also hide files and lie to any tool run on it, so "
                              "no fix applied from inside the host can be trusted."))


# -- kernel modules ------------------------------------------------------------------------------------------

def judge_module(m: LoadedModule, database: str | None) -> tuple[Severity | None, str]:
    """How bad a loaded module's origin is, and why; ``None`` when a package (or a packaged DKMS source)
    accounts for it, or when no package database can say.

    High: ``modules.dep`` of the running kernel has no such module, so it was loaded from a file elsewhere
    (``insmod /tmp/x.ko``), the way rootkits are loaded. Medium: its file is in the tree but no package
    installed it. Info: DKMS built it from a source no package installed (a vendor installer's).
    """
    if m.path is None:
        shadow = " and shadows a built-in module's name" if m.builtin_name else ""
        return Severity.HIGH, f"is not one of the running kernel's modules (not in modules.dep){shadow}"
    if database is None or m.owner is not None:
        return None, ""
    if m.dkms is not None:
        if m.dkms.source_owner is not None:
            return None, ""
        return Severity.INFO, (f"was built by DKMS ({m.dkms.package} {m.dkms.version}) from a source no package "
                               "installed")
    return Severity.MEDIUM, f"is in the kernel's module tree ({m.path}) but no package installed it"


def _module_evidence(m: LoadedModule, mods: KernelModules) -> dict[str, object]:
    meanings = taint_letters()
    return {"module": m.name, "state": m.state, "size": m.size, "refcount": m.refcount, "used_by": list(m.used_by),
            "taint": m.taint, "taint_meaning": {ch: meanings.get(ch, "unknown taint letter") for ch in m.taint},
            "path": m.path, "package": m.owner, "builtin_name": m.builtin_name, "kernel_release": mods.release,
            "modules_dep": mods.dep_file, "package_database": mods.database,
            "dkms": None if m.dkms is None else {"package": m.dkms.package, "version": m.dkms.version,
                                                 "source": m.dkms.source, "source_package": m.dkms.source_owner}}


def _module_fix(m: LoadedModule) -> Remediation:
    where = ("the file it was loaded from is unknown: look for the insmod in shell histories, /etc/modules, "
             "/etc/modules-load.d, /etc/rc.local, systemd units and cron" if m.path is None else
             f"its file is {m.path}")
    return Remediation.by_hand(
        f"Find out who loaded kernel module {m.name} and why ({where}). If nobody you trust did, treat the host as "
        "compromised at the kernel level: save evidence, rebuild it from trusted media and change its secrets. "
        "If it is a driver you installed, reinstall it through a package (or DKMS) so it is accounted for.",
        f"Only the owner knows whether {m.name} belongs there, and no command removes it safely: `modprobe -r "
        f"{m.name}` (or rmmod) may unload an honest module that nothing uses, but a rootkit module can refuse to "
        "unload, hide itself again, or crash the kernel when forced out, and whatever it changed while loaded "
        "stays changed. A module loaded at boot comes back on reboot unless its loading entry and file are "
        "removed first; a rebuild from trusted media is the only fix a kernel compromise allows.")


@check(id="rootkit.kernel_module", severity="high", summary="Kernel module loaded that no package installed",
       needs=(KERNEL_MODULES,), tags=("T1547.006", "T1014"),
       references=("https://docs.kernel.org/admin-guide/tainted-kernels.html",
                   "https://manpages.debian.org/bookworm/kmod/modules.dep.5.en.html",
                   "https://attack.mitre.org/techniques/T1547/006/"))
def kernel_module(ctx: Context) -> Iterator[Finding]:
    """Every module in /proc/modules is located through /lib/modules/$(uname -r)/modules.dep and its file's
    owner asked of the package database. High: not in modules.dep at all (loaded with insmod from elsewhere,
    the way rootkit modules are). Medium: in the tree but no package installed it. Modules DKMS built are quiet
    when a package installed their source (/usr/src/<name>-<version>, the ``*-dkms`` packages), info when
    not. The taint letters (O out-of-tree, E unsigned, P proprietary, F forced, ...) are evidence. A kernel
    without loadable modules (no /proc/modules) is skipped as unsupported."""
    mods = ctx.fact(KERNEL_MODULES)
    unjudged = []
    for m in mods.modules:
        severity, why = judge_module(m, mods.database)
        if severity is None:
            if mods.database is None and m.path is not None:
                unjudged.append(m.name)
            continue
        yield ctx.finding(f"Kernel module {m.name} {why}", {"kind": "host", "kernel_module": m.name},
                          severity=severity, evidence=_module_evidence(m, mods), remediation=_module_fix(m))
    if unjudged:
        ctx.skip(SkipReason.UNSUPPORTED, f"{len(unjudged)} modules in the tree not judged ({', '.join(unjudged[:10])}"
                                         f"{', ...' if len(unjudged) > 10 else ''}): no package database hostguard "
                                         "reads (dpkg) says which are stock")


# -- promiscuous interfaces ----------------------------------------------------------------------------------

def expected_promiscuity(iface: Interface, capture: tuple[str, ...]) -> str | None:
    """Why ``iface`` being promiscuous is expected, or None when nothing explains it.

    A port of a bridge, bond or switch (it has a master) is made promiscuous by the kernel to forward frames;
    some devices are promiscuous by design (``data/rootkit/interfaces.toml``); the owner names the interfaces a
    capture tool of theirs listens on (``[rootkit] capture_interfaces``).
    """
    if iface.bridge_port or iface.master is not None:
        return f"a port of {iface.master or 'a bridge'}"
    if any(fnmatchcase(iface.name, g) for g in promiscuous_by_design()):
        return "promiscuous by design"
    if any(fnmatchcase(iface.name, g) for g in capture):
        return "a capture interface of the owner's"
    return None


def _promisc_fix(iface: Interface) -> Remediation:
    holders = ", ".join(f"{h.name or '?'} (pid {h.pid})" for h in iface.holders)
    if iface.set_by_hand:
        return Remediation(
            f"Turn promiscuous mode off on {iface.name}, after finding out who turned it on"
            + (f"; processes holding packet sockets on it: {holders}" if holders else ""),
            (Command(("ip", "link", "set", "dev", iface.name, "promisc", "off"), live_only=True,
                     undo=("ip", "link", "set", "dev", iface.name, "promisc", "on"), reversible=True),))
    return Remediation.by_hand(
        f"Find the program that keeps {iface.name} promiscuous"
        + (f" (holding packet sockets on it: {holders})" if holders else "")
        + " and stop it if it is not yours; if it is, list the interface in [rootkit] capture_interfaces.",
        "The flag was not set by hand (ip link shows no PROMISC): a packet socket asked for it (libpcap does), so "
        "`ip link set promisc off` changes nothing; it goes when the program holding the socket stops, and only "
        "the owner knows whether that program is theirs.")


@check(id="rootkit.promiscuous_interface", severity="medium", summary="Network interface in promiscuous mode",
       each=NET_INTERFACES, tags=("T1040",),
       references=("https://docs.kernel.org/networking/packet_mmap.html", "https://attack.mitre.org/techniques/T1040/"))
def promiscuous_interface(iface: Interface, ctx: Context) -> Iterator[Finding]:
    """An interface whose flags in /sys/class/net/<if>/flags carry IFF_PROMISC (0x100) receives every frame on
    its wire, the mark of a sniffer. sysfs shows promiscuity a packet socket asked for too (tcpdump's), which
    ``ip link`` hides. Quiet for ports of a bridge, bond or switch (the kernel makes them promiscuous to
    forward), for devices promiscuous by design (Open vSwitch's ``ovs-system``), and for the owner's
    ``[rootkit] capture_interfaces``. The processes holding packet sockets on it are evidence; the fix turns
    the flag off where it was set by hand (``ip link set dev IF promisc off``), else says which program to
    stop."""
    if not iface.promiscuous or expected_promiscuity(iface, ctx.config[RootkitConfig].capture_interfaces):
        return
    yield ctx.finding(
        f"Interface {iface.name} is in promiscuous mode"
        + (f" ({len(iface.holders)} processes hold packet sockets on it)" if iface.holders else ""),
        {"kind": "host", "interface": iface.name},
        evidence={"interface": iface.name, "flags": f"{iface.flags:#x}", "operstate": iface.operstate,
                  "set_by_hand": iface.set_by_hand, "packet_sockets": [h.describe() for h in iface.holders]},
        remediation=_promisc_fix(iface))
