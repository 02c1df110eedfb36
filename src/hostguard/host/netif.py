"""Network interfaces of the running system as the kernel flags them, and who holds packet sockets on them.

An interface in promiscuous mode hands every frame on the wire to the host, the mark of a sniffer. The flag
is read from ``/sys/class/net/<if>/flags`` (``IFF_PROMISC``, 0x100) on purpose: sysfs shows the device's
real flags, which include promiscuity a packet socket asked for (libpcap's ``PACKET_MR_PROMISC``
membership, what tcpdump does), while ``ip link`` and ``SIOCGIFFLAGS`` show only the flag set by hand.

Packet sockets (``/proc/net/packet``, the namespace's own) are matched to the processes holding them through
``/proc/<pid>/fd`` links (``socket:[inode]``): evidence of which program listens to raw frames. The process
names come from the shared process table. All of it is the live namespace hostguard runs in (under
``ip netns exec`` that namespace's /sys and /proc/net); under ``--root`` it is unavailable.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import FileMissing, Host, HostError, ProcessInfo, Unavailable
from hostguard.host.processes import PROCESS_TABLE

IFF_UP = 0x1
IFF_PROMISC = 0x100
SYS_NET = "/sys/class/net"
PROC_PACKET = "/proc/net/packet"
SIOCGIFFLAGS = 0x8913
HEX = re.compile(r"(?:0[xX])?[0-9a-fA-F]+")
NUMBER = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class PacketSocket:
    """One line of ``/proc/net/packet``: a raw (``SOCK_RAW``, 3) or cooked (``SOCK_DGRAM``, 2) packet socket."""

    type: int
    protocol: int       # ethertype in host order as the kernel prints it (0x0003: every protocol)
    ifindex: int        # 0: bound to every interface
    uid: int
    inode: int


def parse_flags(text: str, label: str) -> int:
    """An interface's ``flags`` file (``0x1103``); anything else is a :class:`HostError`."""
    value = text.strip()
    if not HEX.fullmatch(value):
        raise HostError(f"{label}: {value[:40]!r} is not a hexadecimal flags word")
    return int(value, 16)


def parse_packet_table(text: str, label: str = PROC_PACKET) -> list[PacketSocket]:
    """The packet sockets of ``/proc/net/packet`` (``sk RefCnt Type Proto Iface R Rmem User Inode``).

    The kernel writes the file, so a line that does not read so is a :class:`HostError`.
    """
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or (number == 1 and fields[0] == "sk"):
            continue
        if len(fields) != 9 or not (HEX.fullmatch(fields[0]) and HEX.fullmatch(fields[3])
                                    and all(NUMBER.fullmatch(f) for f in (*fields[1:3], *fields[4:]))):
            raise HostError(f"{label} line {number}: not a packet socket line ({line.strip()[:80]!r})")
        out.append(PacketSocket(int(fields[2]), int(fields[3], 16), int(fields[4]), int(fields[7]), int(fields[8])))
    return out


@dataclass(frozen=True)
class PacketHolder:
    """A process holding a packet socket: on one interface, or on all of them (``everywhere``)."""

    pid: int
    name: str | None
    exe: str | None
    user: str | None
    everywhere: bool

    def describe(self) -> dict[str, Any]:
        """Evidence for a finding."""
        return {"pid": self.pid, "name": self.name, "exe": self.exe, "user": self.user,
                "bound_to": "every interface" if self.everywhere else "this interface"}


@dataclass(frozen=True)
class Interface:
    """One network interface of the namespace hostguard runs in."""

    name: str
    index: int
    flags: int
    operstate: str
    master: str | None          # the bridge, bond or switch it is a port of
    bridge_port: bool           # /sys/class/net/<if>/brport exists
    holders: tuple[PacketHolder, ...] = ()
    # IFF_PROMISC as SIOCGIFFLAGS reports it: only what was set by hand (ip link, ifconfig), not what a packet
    # socket or a bridge asked for; None when not asked (not promiscuous) or the interface could not be asked
    set_by_hand: bool | None = None

    @property
    def promiscuous(self) -> bool:
        """IFF_PROMISC in the device's flags, whoever asked for it."""
        return bool(self.flags & IFF_PROMISC)

    def label(self) -> str:
        """How a skipped entry names it."""
        return f"interface {self.name}"


def _socket_inodes(host: Host, wanted: set[int]) -> dict[int, set[int]]:
    """pid -> the inodes of ``wanted`` among its open files (``/proc/<pid>/fd/*`` -> ``socket:[inode]``).

    Read with ``os`` under the host's root: :class:`Host` has no link reading, and these links are no files
    to open. A process that exits meanwhile, or whose fds another user's rights hide, is skipped.
    """
    out: dict[int, set[int]] = {}
    proc = os.path.join(host.root, "proc")
    for pid in (int(n) for n in host.listdir("/proc") if n.isdigit()):
        fd_dir = os.path.join(proc, str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:[") and target.endswith("]") and target[8:-1].isdigit():
                inode = int(target[8:-1])
                if inode in wanted:
                    out.setdefault(pid, set()).add(inode)
    return out


def ioctl_flags(name: str) -> int | None:
    """The interface's flags as ``SIOCGIFFLAGS`` gives them (promiscuity only as set by hand); None when the
    name is not an interface of this namespace (it went away) or is too long for the call."""
    raw = os.fsencode(name)
    if len(raw) >= 16:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, struct.pack("16sH22x", raw, 0))
    except OSError:
        return None
    return int(struct.unpack_from("16sH", answer)[1])


def _read(host: Host, name: str, leaf: str) -> str | None:
    try:
        return host.read_text(f"{SYS_NET}/{name}/{leaf}")
    except FileMissing:
        return None


def interfaces(host: Host, table: dict[int, ProcessInfo] | None,
               user_flags: Callable[[str], int | None] = ioctl_flags) -> tuple[Interface, ...]:
    """Every interface ``host``'s /sys shows, with the processes holding packet sockets on it (those only
    looked for when some interface is promiscuous: the fd walk is the costly part) and, for a promiscuous
    one, whether the flag was set by hand (``user_flags``: the live ioctl by default)."""
    found = []
    for name in host.listdir(SYS_NET):
        flags_text = _read(host, name, "flags")
        if flags_text is None:      # bonding_masters and other files beside the interfaces
            continue
        index_text = (_read(host, name, "ifindex") or "").strip()
        if not NUMBER.fullmatch(index_text):
            raise HostError(f"{SYS_NET}/{name}/ifindex: {index_text[:40]!r} is not an interface index")
        master = None
        if host.exists(f"{SYS_NET}/{name}/master"):
            master = os.path.basename(host.resolve(f"{SYS_NET}/{name}/master"))
        found.append(Interface(name, int(index_text), parse_flags(flags_text, f"{SYS_NET}/{name}/flags"),
                               (_read(host, name, "operstate") or "").strip(), master,
                               host.exists(f"{SYS_NET}/{name}/brport")))
    if not any(i.promiscuous for i in found):
        return tuple(found)
    found = [i if not i.promiscuous else replace(i, set_by_hand=_by_hand(user_flags(i.name))) for i in found]
    sockets = parse_packet_table(host.read_optional(PROC_PACKET) or "")
    by_inode = {s.inode: s for s in sockets}
    holders: dict[int, list[PacketHolder]] = {}
    for pid, inodes in sorted(_socket_inodes(host, set(by_inode)).items()):
        proc = (table or {}).get(pid)
        for index in sorted({by_inode[i].ifindex for i in inodes}):
            holder = PacketHolder(pid, proc.name if proc else None, proc.exe if proc else None,
                                  proc.user if proc else None, index == 0)
            holders.setdefault(index, []).append(holder)
    return tuple(replace(i, holders=(*holders.get(i.index, ()), *holders.get(0, ()))) for i in found)


def _by_hand(flags: int | None) -> bool | None:
    return None if flags is None else bool(flags & IFF_PROMISC)


def collect_interfaces(host: Host, table: dict[int, ProcessInfo] | None) -> tuple[Interface, ...]:
    """The interfaces of the running system (live only: a tree's /sys is no running kernel)."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "interface flags are only known on a running system, not under --root")
    return interfaces(host, table)


NET_INTERFACES: Fact[tuple[Interface, ...]] = Fact("net_interfaces", collect_interfaces,
                                                   inputs=(PROCESS_TABLE.best_effort,))
