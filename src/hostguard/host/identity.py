"""Who the scanned host is, as facts checks can ask for (its name feeds password guesses)."""

from __future__ import annotations

from hostguard.engine.facts import Fact
from hostguard.host.base import Host


def collect_hostname(host: Host) -> str:
    """The scanned host's name (from the tree's /etc/hostname under --root, the kernel's when live)."""
    return host.hostname()


HOSTNAME: Fact[str] = Fact("hostname", collect_hostname)
