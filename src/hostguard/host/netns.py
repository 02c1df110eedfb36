"""A throwaway network namespace for evaluating a tree's firewall configuration with the real tools.

Under --root, the most faithful reading of ``/etc/nftables.conf`` or of ufw's rule files is to let ``nft``
and ufw's own loader do it. They must never touch the scanning machine's firewall, so they run inside a
fresh, empty network namespace (only ``lo``, no rules) that is deleted however the block ends. Only the
scanning machine's own binaries run there; nothing from the tree is executed.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from hostguard.findings import SkipReason
from hostguard.host.base import HostError, Unavailable, system_which

TIMEOUT = 60.0  # loading a large ruleset takes well under a second; a hung tool must not hang the scan


class NetnsError(HostError):
    """A command in the private namespace (or creating it) failed; the message says which and why."""


@dataclass(frozen=True)
class Netns:
    """A private network namespace created by :func:`private_netns`; valid only inside its block."""

    name: str
    ip: str  # absolute path of the ``ip`` tool that created it

    def run(self, argv: list[str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace; the exit status is the caller's to judge.

        The tool is resolved to an absolute path here, so a missing tool is reported as missing
        (tool_missing) rather than as a failure of ``ip netns exec``. Output is text, undecodable bytes
        replaced, in the C locale so messages are stable.
        """
        exe = system_which(argv[0])
        if exe is None:
            raise Unavailable(SkipReason.TOOL_MISSING, f"`{argv[0]}` is not installed")
        try:
            return subprocess.run([self.ip, "netns", "exec", self.name, exe, *argv[1:]], capture_output=True,
                                  text=True, errors="replace", timeout=timeout, check=False,
                                  env={**os.environ, "LC_ALL": "C"})
        except subprocess.TimeoutExpired as exc:
            raise NetnsError(f"`{' '.join(argv)}` did not finish in {timeout:g}s") from exc

    def check(self, argv: list[str], what: str) -> str:
        """Standard output of ``argv`` run inside the namespace; :class:`NetnsError` naming ``what`` if it fails."""
        result = self.run(argv)
        if result.returncode != 0:
            raise NetnsError(f"{what}: {result.stderr.strip()[:200]}")
        return result.stdout


@contextmanager
def private_netns(prefix: str, purpose: str) -> Iterator[Netns]:
    """A new, empty network namespace named ``<prefix><random>``, deleted when the block ends.

    ``purpose`` completes the not-root message ("``<purpose>`` needs root"). Raises :class:`Unavailable`
    (not_root) when not root, (tool_missing) when ``ip`` is missing, and :class:`NetnsError` when the
    namespace cannot be created. The random suffix keeps concurrent scans apart; a namespace is only
    deleted by the block that created it.
    """
    if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
        raise ValueError(f"netns prefix {prefix!r}: use up to 8 lowercase letters and digits")
    if os.geteuid() != 0:
        raise Unavailable(SkipReason.NOT_ROOT, f"{purpose} needs root")
    ip = system_which("ip")
    if ip is None:
        raise Unavailable(SkipReason.TOOL_MISSING, "`ip` is not installed (iproute2)")
    name = f"{prefix}{secrets.token_hex(4)}"
    try:
        added = subprocess.run([ip, "netns", "add", name], capture_output=True, text=True, errors="replace",
                               timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        _delete(ip, name)  # it may exist half-made; the random name is ours alone
        raise NetnsError(f"ip netns add did not finish in {TIMEOUT:g}s") from exc
    if added.returncode != 0:  # not created: nothing to delete (and the name may not be ours)
        raise NetnsError(f"ip netns add: {added.stderr.strip()[:200]}")
    try:
        yield Netns(name, ip)
    finally:
        _delete(ip, name)


def _delete(ip: str, name: str) -> None:
    """Remove the namespace, never raising: it runs while another exception may be on its way out."""
    with suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=TIMEOUT, check=False)
