"""Who the scanned host is, as facts checks can ask for (its name feeds password guesses), and whether a
``--root`` tree is an operating system at all."""

from __future__ import annotations

from hostguard.engine.facts import Fact
from hostguard.host.base import Host


def collect_hostname(host: Host) -> str:
    """The scanned host's name (from the tree's /etc/hostname under --root, the kernel's when live)."""
    return host.hostname()


HOSTNAME: Fact[str] = Fact("hostname", collect_hostname)


OS_MARKERS = ("/etc/passwd", "/etc/os-release", "/usr/lib/os-release", "/etc/login.defs", "/etc/pam.d")


def not_an_os_tree(host: Host, what: str) -> str | None:
    """Why ``host`` is no OS tree (none of :data:`OS_MARKERS`: an empty directory, a source checkout), or None.

    Families whose absence of configuration would otherwise read as a finding ("no firewall", "no password
    policy") ask this first: in such a tree nothing about ``what`` can be known, and nothing is assumed.
    """
    if any(host.exists(p) for p in OS_MARKERS):
        return None
    return f"not an OS tree: none of {', '.join(OS_MARKERS)} exists in {host.root}, so there is no {what} to read"
