"""Patched but not yet in effect: a running kernel older than the newest installed one, and live processes
still mapping libraries that an upgrade deleted ("patched, not restarted").

Both are live facts: under ``--root`` there is no running kernel nor process to look at, and these
functions say so (:class:`~hostguard.host.base.Unavailable`) rather than guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from hostguard.findings import Finding, Severity, SkipReason
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.host.packages import DpkgPackage
from hostguard.remediation import Command, Remediation
from hostguard.vulns import versions

__all__ = ["DeletedMapping", "deleted_library_findings", "deleted_mappings", "kernel_finding", "running_kernel"]

KERNEL_ID = "vulns.kernel_not_running"
DELETED_ID = "vulns.deleted_library"
LIBRARY_DIRS = ("/usr/lib", "/lib", "/usr/lib64", "/lib64", "/usr/libexec")
IMAGE = re.compile(r"linux-image-(\d[^ ]*?)(?:-unsigned)?$")
UNIT = re.compile(r"/([^/]+\.service)(?:/|$)")


def running_kernel(host: Host) -> str:
    """``uname -r`` of the running system (live only)."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "the running kernel is only known on a running system")
    return host.read_text("/proc/sys/kernel/osrelease").strip()


def kernel_finding(running: str, packages: Iterable[DpkgPackage]) -> Finding | None:
    """A finding when the newest installed ``linux-image-<release>`` (dpkg version order) is not the running
    kernel's release; None when it is, or when no kernel image package is installed (a container)."""
    images = [(m.group(1), p.version) for p in packages
              if p.state == "installed" and (m := IMAGE.fullmatch(p.name))]
    if not images:
        return None
    newest = images[0]
    for image in images[1:]:
        if versions.compare("Debian", image[1], newest[1]) > 0:
            newest = image
    if newest[0] == running:
        return None
    return Finding(
        id=KERNEL_ID, category="vulns", severity=Severity.MEDIUM,
        title=f"the running kernel {running} is not the newest installed one ({newest[0]})",
        target={"kind": "host", "what": "kernel"},
        evidence={"running": running, "newest_installed": newest[0], "newest_version": newest[1],
                  "installed": sorted(r for r, _ in images)},
        remediation=Remediation.by_hand(
            f"Reboot into the installed kernel {newest[0]}: its fixes are not in effect until then.",
            "a reboot interrupts every service on the host: choose the time"))


@dataclass(frozen=True)
class DeletedMapping:
    """A live process mapping library files that were deleted (replaced by an upgrade)."""

    pid: int
    exe: str
    unit: str | None
    libraries: tuple[str, ...]


def deleted_mappings(host: Host, library_dirs: tuple[str, ...] = LIBRARY_DIRS) -> list[DeletedMapping]:
    """Every live process whose ``/proc/PID/maps`` lists a file under ``library_dirs`` as `` (deleted)``."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "processes are only known on a running system")
    prefixes = tuple(d.rstrip("/") + "/" for d in library_dirs)
    out = []
    for name in host.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            maps = host.read_text(f"/proc/{name}/maps")
        except HostError:
            continue  # gone, or a kernel thread
        libs = sorted({path for line in maps.splitlines() if line.endswith(" (deleted)")
                       for path in [line.split(None, 5)[-1][:-len(" (deleted)")]] if path.startswith(prefixes)})
        if not libs:
            continue
        try:
            exe = host.resolve(f"/proc/{name}/exe")
        except HostError:
            exe = ""
        try:
            cgroup = host.read_text(f"/proc/{name}/cgroup")
        except HostError:
            cgroup = ""
        units = UNIT.findall(cgroup)
        out.append(DeletedMapping(int(name), exe, units[-1] if units else None, tuple(libs)))
    return out


def deleted_library_findings(mappings: Iterable[DeletedMapping]) -> list[Finding]:
    """One finding per service (systemd unit), else per executable: restart it to load the patched libraries."""
    groups: dict[tuple[str, str], list[DeletedMapping]] = {}
    for m in mappings:
        key = ("unit", m.unit) if m.unit else ("exe", m.exe or f"pid {m.pid}")
        groups.setdefault(key, []).append(m)
    out = []
    for (kind, name), members in sorted(groups.items()):
        libs = sorted({lib for m in members for lib in m.libraries})
        evidence = {"pids": sorted(m.pid for m in members), "libraries": libs,
                    "executables": sorted({m.exe for m in members if m.exe})}
        if kind == "unit":
            target = {"kind": "process", "unit": name}
            remediation = Remediation(f"Restart {name} so it loads the upgraded libraries.",
                                      steps=(Command(("systemctl", "restart", name), live_only=True),))
        else:
            target = {"kind": "process", "exe": name}
            remediation = Remediation.by_hand(
                f"Restart {name} so it loads the upgraded libraries.",
                "the process is not a systemd service: restart it the way it was started")
        out.append(Finding(id=DELETED_ID, category="vulns", severity=Severity.MEDIUM,
                           title=f"{name} still runs deleted libraries ({', '.join(libs[:3])})",
                           target=target, evidence=evidence, remediation=remediation))
    return out
