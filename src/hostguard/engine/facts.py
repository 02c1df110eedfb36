"""The typed fact graph: host facts declared once, collected at most once per scan, even under threads.

A fact is a :class:`Fact` handle declared next to its collector (in ``host/``, or in a family module for
facts that are not read from the host, such as the accounts seen by earlier scans). The handle names
its inputs: other facts (``ACCOUNTS``), optional facts and config sections (``config_input("ssh")``).
An optional input is ``None`` where the fact does not exist here: ``X.optional`` when it is absent
(not installed, live only, not root) while a broken file still makes the reading fact fail with the
error; ``X.best_effort`` also when reading it failed (the reader falls back to defaults). The
collector receives the host, then one argument per input, in order; it never calls another collector,
so each file is read once per scan.

A collector may raise :class:`~hostguard.host.base.Unavailable` (the fact cannot be known here) or
:class:`~hostguard.host.base.HostError` (reading failed); either is remembered, and every check needing
the fact is reported in ``skipped`` with the reason. A fact whose required input is unavailable is
unavailable for the same reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from hostguard.findings import HostId, SkipReason
from hostguard.host.base import Host, HostError, Unavailable

if TYPE_CHECKING:
    from hostguard.config import Config
    from hostguard.store.state import StateStore

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class FactError(Exception):
    """The fact graph is declared wrongly (a cycle, an unknown config section)."""


class Fact(Generic[T_co]):
    """A typed handle on one fact: its name, its collector and what it is derived from.

    ``collect`` is ``None`` for a *given* fact, which the runner provides (the state store, the host id).
    Handles compare by identity, so two facts may never be confused by a shared name.
    """

    __slots__ = ("collect", "inputs", "name")

    def __init__(self, name: str, collect: Callable[..., T_co] | None, *, inputs: Sequence[Input] = ()) -> None:
        self.name = name
        self.collect = collect
        self.inputs: tuple[Input, ...] = tuple(inputs)

    @property
    def optional(self) -> OptionalInput[T_co]:
        """This fact as an input that is ``None`` when the fact is absent here; a reading error still fails."""
        return OptionalInput(self)

    @property
    def best_effort(self) -> OptionalInput[T_co]:
        """This fact as an input that is ``None`` whenever it cannot be had, errors included."""
        return OptionalInput(self, tolerate_errors=True)

    def __repr__(self) -> str:
        return f"Fact({self.name!r})"


@dataclass(frozen=True)
class OptionalInput(Generic[T_co]):
    """An input that tolerates the fact being unavailable (the collector gets ``None``)."""

    fact: Fact[T_co]
    tolerate_errors: bool = False


@dataclass(frozen=True)
class ConfigInput:
    """An input that is one family's config section (typed by the collector's annotation)."""

    section: str


def config_input(section: str) -> ConfigInput:
    """The config section ``section`` as a collector input; validated when the registry loads."""
    return ConfigInput(section)


Input = Fact[Any] | OptionalInput[Any] | ConfigInput

# Given facts: the runner provides them; a collector lists them as inputs like any other fact.
STATE: Fact[StateStore] = Fact("state", None)  # the state store (state.db) of this scan
HOST_ID: Fact[HostId] = Fact("host_id", None)  # who the scanned host is (machine-id, state UUID, hostname)
# when this scan started (with its offset): facts that measure time since something the store remembers ("new
# for 7 days") read it, never the wall clock, so a test can run scans days apart
SCAN_TIME: Fact[datetime] = Fact("scan_time", None)
# the hostguard config file this scan was configured from (None: defaults, no file); every Facts knows it from
# its config, so it needs no giving. The virtual-patch offer edits the file the host's WAF reads.
CONFIG_FILE: Fact[str | None] = Fact("config_file", None)


def input_facts(fact: Fact[Any]) -> Iterator[Fact[Any]]:
    """The facts ``fact`` reads directly (required or optional)."""
    for item in fact.inputs:
        if isinstance(item, Fact):
            yield item
        elif isinstance(item, OptionalInput):
            yield item.fact


def closure(roots: Sequence[Fact[Any]]) -> list[Fact[Any]]:
    """Every fact ``roots`` depend on, inputs before the facts that read them; a cycle is an error."""
    order: list[Fact[Any]] = []
    state: dict[int, str] = {}

    def visit(fact: Fact[Any], path: tuple[str, ...]) -> None:
        mark = state.get(id(fact))
        if mark == "done":
            return
        if mark == "open":
            raise FactError(f"fact cycle: {' -> '.join((*path, fact.name))}")
        state[id(fact)] = "open"
        for dep in input_facts(fact):
            visit(dep, (*path, fact.name))
        state[id(fact)] = "done"
        order.append(fact)

    for root in roots:
        visit(root, ())
    return order


class _Slot:
    """One fact's value in one scan, and the lock that makes concurrent askers wait for one computation."""

    __slots__ = ("done", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.value: Any = None


class Facts:
    """One scan's facts, each collected at most once (thread-safe: concurrent askers wait for the first)."""

    def __init__(self, host: Host, config: Config, given: Mapping[Fact[Any], Any] | None = None) -> None:
        self.host = host
        self.config = config
        self._slots: dict[Fact[Any], _Slot] = {}
        self._lock = threading.Lock()
        self._computing = threading.local()  # facts this thread is computing: a cycle must fail, not hang
        for fact, value in {CONFIG_FILE: config.path, **(given or {})}.items():
            slot = self._slot(fact)
            slot.value, slot.done = value, True

    def _slot(self, fact: Fact[Any]) -> _Slot:
        with self._lock:
            slot = self._slots.get(fact)
            if slot is None:
                slot = self._slots[fact] = _Slot()
            return slot

    def get(self, fact: Fact[T]) -> T:
        """The fact's value; raises its :class:`Unavailable` for every caller."""
        slot = self._slot(fact)
        busy: set[Fact[Any]] = self._computing.__dict__.setdefault("facts", set())
        if fact in busy:
            raise FactError(f"fact cycle through {fact.name}")
        with slot.lock:
            if not slot.done:
                busy.add(fact)
                try:
                    slot.value = self._collect(fact)
                finally:
                    busy.discard(fact)
                slot.done = True
            value = slot.value
        if isinstance(value, Unavailable):
            raise Unavailable(value.reason, value.detail)  # a fresh one: tracebacks must not pile up on one object
        return value  # type: ignore[no-any-return]

    def loaded(self, fact: Fact[Any]) -> bool:
        """True when the fact was collected (or given) successfully."""
        with self._lock:
            slot = self._slots.get(fact)
        return slot is not None and slot.done and not isinstance(slot.value, Unavailable)

    def _argument(self, item: Input) -> Any:
        if isinstance(item, Fact):
            return self.get(item)
        if isinstance(item, OptionalInput):
            try:
                return self.get(item.fact)
            except Unavailable as exc:
                if exc.reason == SkipReason.ERROR and not item.tolerate_errors:
                    raise
                return None
        return self.config.section_named(item.section)

    def _collect(self, fact: Fact[Any]) -> Any:
        if fact.collect is None:
            return Unavailable(SkipReason.ERROR, f"fact {fact.name!r} is provided by the runner, and was not given")
        try:
            args = [self._argument(item) for item in fact.inputs]
            value = fact.collect(self.host, *args)
            # a fact is read by many checks: an iterator would be used up by the first one
            return tuple(value) if isinstance(value, Iterator) else value
        except Unavailable as exc:
            return exc
        except FactError:
            raise
        except HostError as exc:
            return Unavailable(SkipReason.ERROR, str(exc))
        except PermissionError as exc:
            return Unavailable(SkipReason.NOT_ROOT, f"{fact.name}: {exc}")
        except Exception as exc:  # a bug in one collector is reported per check, never a traceback
            return Unavailable(SkipReason.ERROR, f"collecting {fact.name}: {type(exc).__name__}: {exc}")
