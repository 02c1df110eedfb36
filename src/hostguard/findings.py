"""Finding, Skipped and the JSON contract: the only types that cross from detection to output.

This module imports nothing of ours but ``remediation.py`` (plain data too), so every layer (checks,
engine, report, later the agent and the console) can depend on it without cycles.

Bytes policy, decided once here: host data (paths, user names, log lines) need not be UTF-8. Collectors
keep such values as ``bytes`` or as ``str`` decoded with ``surrogateescape``. When a finding is written
out, a value that is valid UTF-8 becomes a plain string; anything else becomes
``{"text": <readable lossy form with \\xNN escapes>, "base64": <the exact bytes>}``. Lone surrogates are
never emitted.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hostguard.remediation import Remediation

SCHEMA_VERSION = 2  # 2: remediation is data (summary, steps, manual, params), see remediation.py


class Severity(StrEnum):
    """Severities in decreasing order of urgency."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is more severe; used for sorting and ``--fail-on``."""
        return _RANK[self]


_RANK = {Severity.CRITICAL: 4, Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1, Severity.INFO: 0}


class SkipReason(StrEnum):
    """Why a check could not run. "Nothing found" must never hide "not looked"."""

    NOT_ROOT = "not_root"
    LIVE_ONLY = "live_only"
    TOOL_MISSING = "tool_missing"
    UNSUPPORTED = "unsupported"
    BUDGET = "budget"
    ERROR = "error"


TARGET_KINDS = frozenset({"path", "user", "port", "process", "package", "ip", "config", "host"})


def portable(value: Any) -> Any:
    """Turn host data into JSON-safe data, applying the bytes policy above recursively."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"text": value.decode("utf-8", "backslashreplace"), "base64": base64.b64encode(value).decode()}
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return portable(value.encode("utf-8", "surrogateescape"))
    if isinstance(value, Mapping):
        return {str(portable(k)) if not isinstance(k, str) else k: portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [portable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return value


def readable(value: Any) -> str:
    """A human form of a host value (lossy for non-UTF-8 bytes, never raises). It keeps newlines: a file's
    content or a diff is shown as lines; where one value must stay on one line use :func:`one_line`."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return str(value)


def one_line(value: Any) -> str:
    """:func:`readable` with newlines and every other control character escaped (``\\n``, ``\\x1b``): a
    file or program name an attacker chose cannot forge or hide a line of output."""
    text = readable(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def fingerprint(check_id: str, target: Mapping[str, Any]) -> str:
    """Stable identity of a problem: the check id and the canonical target key, never a pid or a time."""
    canonical = json.dumps(portable(dict(target)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{check_id}\0{canonical}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Finding:
    """One problem on one target, with the facts seen and the fix."""

    id: str
    category: str
    severity: Severity
    title: str
    target: Mapping[str, Any]
    evidence: Mapping[str, Any] = field(default_factory=dict)
    remediation: Remediation = field(default_factory=lambda: Remediation(""))

    def __post_init__(self) -> None:
        kind = self.target.get("kind")
        if kind not in TARGET_KINDS:
            raise ValueError(f"finding {self.id}: target kind {kind!r} is not one of {sorted(TARGET_KINDS)}")
        object.__setattr__(self, "severity", Severity(self.severity))

    @property
    def fingerprint(self) -> str:
        """See :func:`fingerprint`."""
        return fingerprint(self.id, self.target)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of a finding."""
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "category": self.category,
            "severity": str(self.severity),
            "title": readable(self.title),
            "target": portable(dict(self.target)),
            "evidence": portable(dict(self.evidence)),
            "remediation": portable(self.remediation.to_dict()),
        }


@dataclass(frozen=True)
class Alert(Finding):
    """A finding raised by a detector from activity (logon events, later connections and downloads).

    It adds ``time`` (ISO 8601 with the offset: when the event that raised it happened, null when the log line
    had no time) and ``event`` (that event as data, e.g. the ``logons parse`` object). The fingerprint stays
    the finding's (detector id and canonical target, never a time), so one attacker is one alert fingerprint
    from day to day and an episode can be merged, suppressed or accepted like any finding.
    """

    time: str | None = None
    event: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The finding's JSON contract plus ``time`` and ``event``."""
        return {**super().to_dict(), "time": self.time, "event": portable(dict(self.event))}


@dataclass(frozen=True)
class Skipped:
    """A check (or one item of a per-item check) that did not run, and why.

    ``item`` names the process, file, port or account a per-item check could not finish; it is empty
    when the whole check is concerned.
    """

    family: str
    check: str
    reason: SkipReason
    detail: str = ""
    item: str = ""

    def to_dict(self) -> dict[str, str]:
        """The JSON contract of a skipped entry: strings (readable forms), ``item`` only when there is one."""
        out = {"family": self.family, "check": self.check, "reason": str(self.reason), "detail": readable(self.detail)}
        if self.item:
            out["item"] = readable(self.item)
        return out


@dataclass(frozen=True)
class Rule:
    """What output formats may know of a check: its record, never the engine or host facts.

    Reports carry the rules of the checks they ran, so SARIF and the ``checks`` listing are rendered
    from data alone.
    """

    id: str
    family: str
    severity: Severity
    summary: str
    doc: str = ""
    references: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    looks_at: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``hostguard checks --format json``."""
        return {"id": self.id, "family": self.family, "severity": str(self.severity), "title": self.summary,
                "summary": self.summary, "doc": self.doc, "references": list(self.references),
                "tags": list(self.tags), "aliases": list(self.aliases), "looks_at": list(self.looks_at)}


@dataclass(frozen=True)
class HostId:
    """Who the report is about: machine-id plus a state UUID (stable), and the hostname for people."""

    machine_id: str
    state_uuid: str
    hostname: str

    @property
    def id(self) -> str:
        """The stable host key the console and baselines use."""
        return f"{self.machine_id or 'no-machine-id'}:{self.state_uuid}"

    def to_dict(self) -> dict[str, str]:
        """The JSON contract of ``host``."""
        return {"id": self.id, "machine_id": self.machine_id, "state_uuid": self.state_uuid,
                "hostname": readable(self.hostname)}


@dataclass(frozen=True)
class Report:
    """The result of one scan: findings, what was not checked, and whether coverage is complete."""

    host: HostId
    started: str
    findings: tuple[Finding, ...]
    skipped: tuple[Skipped, ...]
    root: str | None = None
    rules: tuple[Rule, ...] = ()

    @property
    def complete(self) -> bool:
        """True only when every selected check ran."""
        return not self.skipped

    def sorted_findings(self) -> list[Finding]:
        """Most severe first, then by check id and target, so output is deterministic."""
        return sorted(self.findings, key=lambda f: (-f.severity.rank, f.id, f.fingerprint))

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``hostguard scan --format json``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "host": self.host.to_dict(),
            "root": self.root,
            "started": self.started,
            "complete": self.complete,
            "findings": [f.to_dict() for f in self.sorted_findings()],
            "skipped": [s.to_dict() for s in self.skipped],
        }
