"""The ``[block]`` settings, apart from the blocking code so that the engine can declare the section (every
command validates the whole config file) without importing nftables handling into ``hostguard scan``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from hostguard.config import setting


def _check_never(values: tuple[str, ...]) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"never: {value!r} is not an IP address or network") from None


@dataclass(frozen=True)
class BlockConfig:
    """[block]: blocking attackers in hostguard's own nftables table (hostguard block, logons follow --block)."""

    ipv6_prefix: int = setting(64, "An IPv6 offender given as one address is blocked with its whole /N network "
                                   "(providers hand out a /64 or more per customer; 128 blocks the address "
                                   "alone). Falls back to the address alone when the /N holds an owner's "
                                   "address.", min=16, max=128)
    never: tuple[str, ...] = setting((), 'Addresses or networks never blocked (refused, and accepted in the kernel '
                                         'before any drop), e.g. ["192.0.2.0/24"].')

    def __post_init__(self) -> None:
        _check_never(self.never)
