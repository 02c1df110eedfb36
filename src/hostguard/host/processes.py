"""The live host's processes and sockets, each listed once per scan and shared by every fact that needs them.

psutil lives in ``LiveHost`` alone; these facts are its listings. Under ``--root`` they are unavailable
(live only), and so is every fact built on them.
"""

from __future__ import annotations

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
