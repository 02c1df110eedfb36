"""WAF events and exclusions in state.db.

The front ends (proxy, middleware) append events to a JSON Lines log, fast and without a database lock on
the request path; :meth:`WafStore.ingest` reads what is new since last time into ``waf_events`` (keyed by the
log's path and inode, so a rotated log is read from its start, and a line cut by a crash is read when it is
whole). A line that is not an event is counted and skipped, never fatal. Events hold no request body.

An event is a request a rule matched (action ``blocked``, ``scored`` or ``detected``, with its rules) or one a
front end refused before the engine's verdict (action ``refused``, no rules, and a ``reason`` code:
``hostguard.waf.gate.REFUSALS``).

The web servers' ModSecurity audit logs are read the same way, each line turned into an event by
``hostguard.waf.auditlog.parse_line`` (``ingest(log, parse=...)``).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hostguard.store.state import StateStore

__all__ = ["Exclusion", "IngestResult", "WafEvent", "WafStore", "network_of"]

MAX_LINE = 1 << 20
PROPOSED, ACCEPTED, REJECTED = "proposed", "accepted", "rejected"


def network_of(client: str) -> str:
    """The client's network as learning counts it: its /24 (IPv4) or /48 (IPv6); the text itself otherwise."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client[:64]
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(frozen=True)
class WafEvent:
    """One stored event: a request a rule matched, or one refused before the engine's verdict (``reason``)."""

    request_id: str
    time: str
    site: str
    client: str
    network: str
    method: str
    path: str
    action: str
    status: int
    rules: tuple[dict[str, Any], ...]
    reason: str = ""

    @property
    def day(self) -> str:
        """The event's UTC day (YYYY-MM-DD)."""
        return self.time[:10]


@dataclass(frozen=True)
class Exclusion:
    """A narrow exclusion: rule ``rule_id`` no longer reads ``variable`` on ``path`` of ``site``."""

    id: str
    site: str
    rule_id: int
    path: str
    variable: str
    networks: int
    days: int
    hits: int
    state: str
    proposed_at: str
    decided_at: str | None = None


@dataclass(frozen=True)
class IngestResult:
    """How many events were read in, and how many lines were not events."""

    added: int
    skipped: int


def _event(obj: Any) -> WafEvent | None:
    if not isinstance(obj, dict):
        return None
    try:
        rules = tuple(r for r in obj["rules"] if isinstance(r, dict) and isinstance(r.get("id"), int))
        client = str(obj["client"])
        return WafEvent(str(obj["request_id"]), str(obj["time"]), str(obj.get("site", "default")), client,
                        network_of(client), str(obj.get("method", "")), str(obj.get("path", "")),
                        str(obj["action"]), int(obj.get("status", 0)), rules, str(obj.get("reason") or "")[:64])
    except (KeyError, TypeError, ValueError):
        return None


def _json_event(line: bytes) -> WafEvent | None:
    """An event the proxy or the middleware wrote (one JSON object per line)."""
    try:
        return _event(json.loads(line))
    except (ValueError, RecursionError):
        return None


class WafStore:
    """WAF rows over the state store's connection (``StateStore`` opens, migrates and owns it)."""

    def __init__(self, state: StateStore) -> None:
        self.db = state.db

    def ingest(self, log: str, parse: Callable[[bytes], WafEvent | None] | None = None) -> IngestResult:
        """Read the log's new whole lines into the store (a missing log is nothing new); ``parse`` turns a line
        into an event (default: the front ends' JSON events), None for a line that is not one."""
        parse = parse or _json_event
        try:
            fd = os.open(log, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return IngestResult(0, 0)
        with os.fdopen(fd, "rb") as f:
            inode = os.fstat(f.fileno()).st_ino
            row = self.db.execute("SELECT inode, offset FROM waf_ingest WHERE path=?", (log,)).fetchone()
            offset = row[1] if row and row[0] == inode else 0
            if offset > os.fstat(f.fileno()).st_size:
                offset = 0   # truncated in place: read from the start
            f.seek(offset)
            added = skipped = 0
            self.db.execute("BEGIN")
            try:
                while True:
                    line = f.readline(MAX_LINE)
                    if not line:
                        break
                    if not line.endswith(b"\n"):
                        if len(line) < MAX_LINE:
                            break          # not whole yet: read next time
                        skipped += 1       # a line longer than any event: skipped to its end
                        while line and not line.endswith(b"\n"):
                            line = f.readline(MAX_LINE)
                        offset = f.tell()
                        continue
                    offset = f.tell()
                    event = parse(line)
                    if event is None:
                        skipped += 1
                        continue
                    cur = self.db.execute(
                        "INSERT OR IGNORE INTO waf_events VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (event.request_id, event.time, event.day, event.site, event.client, event.network,
                         event.method, event.path, event.action, event.status, json.dumps(list(event.rules)),
                         event.reason))
                    added += cur.rowcount
                self.db.execute("INSERT INTO waf_ingest VALUES (?,?,?) ON CONFLICT(path) DO UPDATE SET "
                                "inode=excluded.inode, offset=excluded.offset", (log, inode, offset))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return IngestResult(added, skipped)

    def events(self, since: str = "", actions: tuple[str, ...] = ()) -> Iterator[WafEvent]:
        """Stored events at or after ``since`` (ISO time), of ``actions`` when given, oldest first."""
        sql = "SELECT request_id, time, site, client, network, method, path, action, status, rules, reason " \
              "FROM waf_events WHERE time >= ?"
        args: list[Any] = [since]
        if actions:
            sql += f" AND action IN ({','.join('?' * len(actions))})"
            args += list(actions)
        for row in self.db.execute(sql + " ORDER BY time", args):
            yield WafEvent(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], int(row[8]),
                           tuple(json.loads(row[9])), row[10])

    def save_proposal(self, exclusion: Exclusion) -> bool:
        """Store a proposal unless the same exclusion is already known (proposed, accepted or rejected)."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO waf_exclusions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (exclusion.id, exclusion.site, exclusion.rule_id, exclusion.path, exclusion.variable, exclusion.networks,
             exclusion.days, exclusion.hits, PROPOSED, exclusion.proposed_at, None))
        return cur.rowcount == 1

    def exclusions(self, state: str = "") -> list[Exclusion]:
        """Every exclusion (of ``state`` when given), by site, path, rule."""
        sql = "SELECT id, site, rule_id, path, variable, networks, days, hits, state, proposed_at, decided_at " \
              "FROM waf_exclusions" + (" WHERE state=?" if state else "") + " ORDER BY site, path, rule_id, variable"
        return [Exclusion(*row) for row in self.db.execute(sql, (state,) if state else ())]

    def decide(self, exclusion_id: str, state: str, when: str) -> bool:
        """Accept or reject one exclusion; False when there is none with that id."""
        if state not in (ACCEPTED, REJECTED):
            raise ValueError(f"state {state!r}")
        cur = self.db.execute("UPDATE waf_exclusions SET state=?, decided_at=? WHERE id=?", (state, when, exclusion_id))
        return cur.rowcount == 1
