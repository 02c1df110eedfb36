"""Block and unblock addresses in hostguard's own nftables table; never the owner; never silently lost.

The store (``store/blocks.py``) is the truth; the kernel table is rendered from it
(``data/block/ruleset.nft``) and replaced *whole* in one ``nft -f`` transaction on every change:

* one transaction re-adds every element, so each timeout is refreshed on every kernel (an ``add`` of an
  element that exists keeps its old timeout on some kernels: this is the delete-and-add the issue asks for,
  at the table's level);
* the elements are made disjoint before they are written (a covering CIDR and the addresses inside it
  become pieces, each with the longest remaining time of the blocks covering it), so an interval set never
  sees an overlap, in whichever order blocks arrive, and no ``auto-merge`` is needed (it would merge
  neighbours with different timeouts);
* the allow sets (loopback, own addresses, gateways, resolvers, SSH session peers, ``[block] never``, the
  logon baseline: ``respond/protect.py``) come before the drops in every chain: a forced block of an owner's
  address is recorded but has no effect in the kernel while the address stays protected.

:meth:`Blocker.verify_and_restore` compares the kernel's table (``nft -j``) with the store and re-applies it
with the *remaining* timeouts (expired blocks are not re-added). It runs before every block, at boot and on
nftables reloads (``data/block/hostguard-blocks.service``), and is meant for ``logons follow``'s timer.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from hostguard.data import load_toml
from hostguard.respond.block_config import BlockConfig
from hostguard.respond.nft_block import KernelTable, Nft, NftError
from hostguard.respond.protect import Protected, ProtectedNet
from hostguard.store.blocks import BlockRecord, BlockStore

if TYPE_CHECKING:
    from hostguard.store.state import StateStore

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MANUAL = "manual"
MAX_SECONDS = 365 * 86400  # kernels take longer timeouts, but a year is already "until unblocked" for an offender
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"(?:\d{1,9}[smhdw])+")


class BlockError(Exception):
    """A block or unblock could not be done (bad input, nft failed); one line for the owner."""


class BlockRefused(BlockError):
    """The block would drop an owner's address (or the owner's addresses could not be read)."""




def parse_duration(text: str) -> int:
    """``10m``, ``1h``, ``7d``, ``2w``, ``1h30m`` as seconds (1 s to 365 d); a BlockError otherwise."""
    spec = text.strip().lower()
    if not DURATION.fullmatch(spec):
        raise BlockError(f"--for {text!r}: a duration is a number and a unit s, m, h, d or w (10m, 1h, 7d, 1h30m)")
    seconds = sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", spec))
    if not 1 <= seconds <= MAX_SECONDS:
        raise BlockError(f"--for {text!r}: a block lasts from 1s to 365d (leave --for out for a permanent one)")
    return seconds


def parse_target(text: str, ipv6_prefix: int) -> tuple[Network, bool]:
    """The network a block or unblock names, and whether it was widened: a single IPv6 address stands for its
    /``ipv6_prefix``; an IPv4-mapped IPv6 address is the IPv4 one; host bits of a CIDR are cleared."""
    value = text.strip()
    try:
        if "/" in value:
            network = ipaddress.ip_network(value, strict=False)
        else:
            address = ipaddress.ip_address(value)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            network = ipaddress.ip_network(address)
    except ValueError:
        raise BlockError(f"{text!r} is not an IP address or network (e.g. 192.0.2.7, 198.51.100.0/24, "
                         "2001:db8::/64)") from None
    if isinstance(network, ipaddress.IPv6Network) and "/" not in value and ipv6_prefix < 128:
        return network.supernet(new_prefix=ipv6_prefix), True
    return network, False


# -- the kernel elements ----------------------------------------------------------------------------------------

def _subtract(piece: Network, other: Network) -> list[Network]:
    if piece.version != other.version or not piece.overlaps(other):
        return [piece]
    if piece.subnet_of(other):  # type: ignore[arg-type]
        return []
    return list(piece.address_exclude(other))  # type: ignore[arg-type]


def plan(records: Iterable[BlockRecord], now: datetime) -> dict[int, list[tuple[Network, int | None]]]:
    """The disjoint kernel elements for the blocks active at ``now``, per IP version: each with its remaining
    whole seconds (None: permanent), every address getting the longest time of the blocks covering it.
    Blocks with less than a second left are left out (the kernel would drop them before they matter)."""
    items: list[tuple[Network, int | None]] = []
    for record in records:
        if not record.active(now):
            continue
        left = record.remaining(now)
        if left is None:
            items.append((record.network, None))
        elif left >= 1:
            items.append((record.network, math.ceil(left)))
    items.sort(key=lambda item: (item[1] is not None, -(item[1] or 0), str(item[0])))
    placed: dict[int, list[tuple[Network, int | None]]] = {4: [], 6: []}
    for network, left in items:
        pieces = [network]
        for other, _ in placed[network.version]:
            pieces = [q for p in pieces for q in _subtract(p, other)]
        placed[network.version] += [(p, left) for p in pieces]
    out: dict[int, list[tuple[Network, int | None]]] = {}
    for version, elements in placed.items():
        by_time: dict[int | None, list[Network]] = {}
        for network, left in elements:
            by_time.setdefault(left, []).append(network)
        out[version] = sorted(((n, left) for left, nets in by_time.items()
                               for n in ipaddress.collapse_addresses(nets)),  # type: ignore[type-var]
                              key=lambda e: e[0])
    return out


def allow_elements(protected: Protected) -> dict[int, list[Network]]:
    """The allow sets' elements: the protected networks, merged, per IP version."""
    return {v: list(ipaddress.collapse_addresses([p.network for p in protected.nets  # type: ignore[type-var]
                                                  if p.network.version == v])) for v in (4, 6)}


def _element(network: Network) -> str:
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


def _elements_line(values: list[str]) -> str:
    return f"\t\telements = {{ {', '.join(values)} }}\n" if values else ""


@cache
def _layout() -> dict[str, Any]:
    return load_toml("block/block.toml")


@cache
def _template() -> string.Template:
    return string.Template(resources.files("hostguard.data").joinpath("block/ruleset.nft").read_text("utf-8"))


def table_name() -> str:
    """hostguard's nftables table (family ``inet``)."""
    return str(_layout()["table"])


def render(elements: dict[int, list[tuple[Network, int | None]]], allow: dict[int, list[Network]]) -> str:
    """The whole table as one ``nft -f`` transaction (create, delete, create: replaced even when absent)."""
    def timed(version: int) -> str:
        return _elements_line([_element(n) + (f" timeout {left}s" if left is not None else "")
                               for n, left in elements.get(version, [])])

    chains = _layout()["chains"]
    return _template().substitute(
        table=table_name(), allow4=_elements_line([_element(n) for n in allow.get(4, [])]),
        allow6=_elements_line([_element(n) for n in allow.get(6, [])]), block4=timed(4), block6=timed(6),
        prerouting_priority=chains["prerouting"]["priority"], input_priority=chains["input"]["priority"])


def differences(kernel: KernelTable | None, elements: dict[int, list[tuple[Network, int | None]]],
                allow: dict[int, list[Network]]) -> list[str]:
    """What differs between the kernel's table and the one the store and the owner's addresses make (empty:
    in place). Timeouts are not compared: the kernel counts them down itself."""
    if kernel is None:
        return [f"table inet {table_name()} is missing (a firewall reload or a reboot flushed it)"]
    problems = []
    layout = _layout()
    for name, spec in layout["chains"].items():
        if kernel.chains.get(name) != (spec["hook"], spec["priority"]):
            problems.append(f"chain {name} is missing or not hooked at {spec['hook']} priority {spec['priority']}")
        elif kernel.rules.get(name, []) != list(layout["rules"]):
            problems.append(f"chain {name}'s rules were changed")
    for name, want in (("block4", [n for n, _ in elements.get(4, [])]), ("block6", [n for n, _ in elements.get(6, [])]),
                       ("allow4", allow.get(4, [])), ("allow6", allow.get(6, []))):
        if name not in kernel.sets:
            problems.append(f"set {name} is missing")
            continue
        have = {e.network for e in kernel.sets[name]}
        missing, extra = set(want) - have, have - set(want)
        if missing:
            problems.append(f"set {name} lacks {', '.join(sorted(map(str, missing))[:5])}"
                            + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        if extra:
            problems.append(f"set {name} holds {', '.join(sorted(map(str, extra))[:5])} the store does not"
                            + (f" (and {len(extra) - 5} more)" if len(extra) > 5 else ""))
    return problems


# -- the blocker ------------------------------------------------------------------------------------------------

def utcnow() -> datetime:
    """The current time, aware, in UTC (what the store records)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class BlockOutcome:
    """What :meth:`Blocker.block` did: the stored block, whether the request changed it, the owner's addresses
    it covers (a forced block: the kernel still accepts those), notes for the owner, and the table's repair
    before the block (empty when it was in place)."""

    record: BlockRecord
    changed: bool
    overridden: tuple[ProtectedNet, ...] = ()
    notes: tuple[str, ...] = ()
    repaired: tuple[str, ...] = ()


@dataclass(frozen=True)
class RestoreOutcome:
    """What :meth:`Blocker.verify_and_restore` found (``problems``: empty when the table was in place) and how
    many block elements it wrote back."""

    problems: tuple[str, ...]
    elements: int = 0

    @property
    def restored(self) -> bool:
        """Whether the table had to be written again."""
        return bool(self.problems)


@dataclass
class Blocker:
    """Blocks through ``nft`` (a prefix argv: tests point it into their own network namespace), recorded in
    ``state`` under ``host_key``, never covering what ``protected()`` returns unless forced. ``clock`` is the
    time the store and the remaining timeouts are measured with (injectable for tests)."""

    state: StateStore
    nft: Nft
    protected: Callable[[], Protected]
    config: BlockConfig = field(default_factory=BlockConfig)
    host_key: str = ""
    clock: Callable[[], datetime] = utcnow

    def __post_init__(self) -> None:
        self.store = BlockStore(self.state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer of the table at a time (``logons follow --block`` and the owner by hand): each renders the
        whole table from the store, so without the lock a slower writer could put back a table without the
        other's block."""
        with open(self.state.directory / "blocks.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _audit(self, action: str, subject: str, reason: str, now: datetime, **detail: Any) -> None:
        self.state.audit(self.host_key, action, subject, reason, now.isoformat(), json.dumps(detail, sort_keys=True))

    def block(self, target: str, seconds: int | None = None, reason: str = "", source: str = MANUAL,
              force: bool = False) -> BlockOutcome:
        """Block ``target`` (an address or CIDR) for ``seconds`` (None: permanent); refuse an owner's address
        unless ``force``. Verifies (and restores) the table first, then records and applies."""
        network, widened = parse_target(target, self.config.ipv6_prefix)
        protected = self.protected()
        hits = protected.overlapping(network)
        notes: list[str] = []
        if widened and hits:
            exact = parse_target(target, 128)[0]
            if not protected.overlapping(exact):
                notes.append(f"the /{network.prefixlen} of {target} holds {_describe(hits)}: blocking the address "
                             "alone")
            network, hits = exact, protected.overlapping(exact)
        elif widened:
            notes.append(f"{target} is blocked with its /{network.prefixlen} ([block] ipv6_prefix)")
        if hits and not force:
            raise BlockRefused(f"refusing to block {network}: it {_relation(network, hits)}; never blocking the "
                               "owner (--force records it anyway, but the kernel's allow set keeps accepting "
                               "those addresses)")
        if protected.unknown and not force:
            raise BlockRefused(f"refusing to block {network}: cannot tell the owner's addresses: "
                               f"{'; '.join(protected.unknown)} (--force blocks without knowing)")
        with self._locked(), _nft_errors():
            return self._block(network, protected, hits, notes, seconds, reason, source, force)

    def _block(self, network: Network, protected: Protected, hits: list[ProtectedNet], notes: list[str],
               seconds: int | None, reason: str, source: str, force: bool) -> BlockOutcome:
        now = self.clock()
        repaired = self._restore(protected)
        expires = now + timedelta(seconds=seconds) if seconds is not None else None
        forced = force and bool(hits or protected.unknown)  # a refusal was overridden
        record, changed = self.store.add(network, reason or "(no reason given)", source, expires, forced, now)
        if not changed:
            notes.append("already blocked " + ("permanently" if record.expires is None else
                                               f"until {record.expires.isoformat(timespec='seconds')}")
                         + ": kept (unblock first to shorten it)")
        if hits:
            notes.append(f"forced: the kernel still accepts {_describe(hits)} (the allow set comes before the "
                         "drop) for as long as it stays protected")
        self._audit("block", str(network), record.reason, now, source=source, expires=_iso(record.expires),
                    forced=force, overridden=[f"{h.network} ({h.why})" for h in hits], changed=changed)
        self._apply(protected, now, "block")
        return BlockOutcome(record, changed, tuple(hits), tuple(notes), tuple(repaired.problems))

    def unblock(self, target: str, reason: str = "") -> list[BlockRecord]:
        """End the active blocks equal to or inside ``target``; a BlockError naming the covering block when
        ``target`` is only inside a bigger one, or when nothing is blocked there."""
        network, widened = parse_target(target, self.config.ipv6_prefix)
        now = self.clock()
        active = self.store.active(now)
        exact = parse_target(target, 128)[0]
        if widened and any(r.network == exact for r in active):  # blocked alone (its /64 held an owner address)
            network = exact
        inside = [r.network for r in active if r.network.version == network.version
                  and r.network.subnet_of(network)]  # type: ignore[arg-type]
        if not inside:
            covering = [str(r.network) for r in active if r.network.version == network.version
                        and r.network.overlaps(network)]
            raise BlockError(f"{network} is not blocked" + (f"; it is inside {', '.join(covering)}: unblock that"
                                                             if covering else ""))
        protected = self.protected()
        with self._locked(), _nft_errors():
            ended = self.store.remove(inside, now)
            for record in ended:
                self._audit("unblock", str(record.network), reason or "(no reason given)", now, source=record.source,
                            was_reason=record.reason)
            self._apply(protected, now, "unblock")
        return ended

    def listing(self) -> list[BlockRecord]:
        """The blocks in force now, oldest first."""
        return self.store.active(self.clock())

    def verify(self, protected: Protected | None = None) -> list[str]:
        """What differs between the kernel's table and the store (empty: in place)."""
        protected = protected or self.protected()
        now = self.clock()
        elements = plan(self.store.active(now), now)
        kernel = self.nft.table("inet", table_name())
        if kernel is None and not any(elements.values()):
            return []  # nothing blocked, nothing lost: the next block creates the table
        return differences(kernel, elements, allow_elements(protected))

    def verify_and_restore(self, protected: Protected | None = None) -> RestoreOutcome:
        """Check the kernel's table against the store and, when it differs (flushed by a firewall reload,
        edited, a reboot), write it again with each block's remaining time; audited."""
        protected = protected or self.protected()
        with self._locked(), _nft_errors():
            return self._restore(protected)

    def _restore(self, protected: Protected) -> RestoreOutcome:
        problems = self.verify(protected)  # NftError when the table cannot even be read: nothing changed yet
        if not problems:
            return RestoreOutcome(())
        now = self.clock()
        count = self._apply(protected, now, "restore")
        self._audit("restore", f"table inet {table_name()}", "; ".join(problems), now, elements=count)
        return RestoreOutcome(tuple(problems), count)

    def _apply(self, protected: Protected, now: datetime, why: str) -> int:
        elements = plan(self.store.active(now), now)
        try:
            self.nft.apply(render(elements, allow_elements(protected)))
        except NftError as exc:
            self._audit("block-failed", f"table inet {table_name()}", str(exc), now, during=why)
            raise BlockError(f"{exc} (recorded in state.db; `hostguard blocks --restore` tries again)") from exc
        return sum(len(v) for v in elements.values())


@contextlib.contextmanager
def _nft_errors() -> Iterator[None]:
    """nft's own failures reach the caller as a BlockError (one line), like every other failure here."""
    try:
        yield
    except NftError as exc:
        raise BlockError(str(exc)) from exc


def _describe(hits: list[ProtectedNet]) -> str:
    return ", ".join(f"{h.network} ({h.why})" for h in hits[:4]) + (f" and {len(hits) - 4} more" if len(hits) > 4
                                                                      else "")


def _relation(network: Network, hits: list[ProtectedNet]) -> str:
    """How a refused block meets the owner's addresses, in words: "is", "lies in" or "covers" each."""
    parts = []
    for hit in hits[:4]:
        verb = ("is" if hit.network == network else
                "lies in" if network.subnet_of(hit.network) else "covers")  # type: ignore[arg-type]
        parts.append(f"{verb} {hit.network} ({hit.why})")
    return ", ".join(parts) + (f" and {len(hits) - 4} more" if len(hits) > 4 else "")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
