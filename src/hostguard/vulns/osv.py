"""OSV advisories (osv-schema 1.x) read from a local copy laid out as osv.dev exports them.

The copy is a directory of per-ecosystem directories holding ``<ID>.json`` files or an ``all.zip`` of
them, read recursively (a single ``.zip`` or ``.json`` file is accepted too). Real exports carry the odd
broken record, and a copy may be truncated or tampered with: a record that cannot be read or is not an OSV
object is skipped and counted with its source, never fatal, so one bad file never hides every other
advisory. Only the fields matching needs are kept (ids, aliases, affected packages, ranges, versions,
severities, summary), in frozen dataclasses, so 100,000 records stay small in memory.

Matching (``hostguard.vulns.match``) filters on ``affected[].package.ecosystem`` exactly: a base
ecosystem's export holds every release (``Debian:11`` and ``Debian:12`` side by side), so the loader keeps
the ecosystem string as written and can drop, while loading, the records of ecosystems nobody asks about.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_RECORD_BYTES", "Affected", "Database", "Event", "LoadStats", "MalformedRecord", "OsvError",
           "Range", "Severity", "Skipped", "Vulnerability", "check_source", "iter_records", "load", "parse_record",
           "source_files", "supersedes"]

MAX_RECORD_BYTES = 32 * 1024 * 1024
"""A record larger than this is skipped: the largest real ones (kernel records with long version lists) are
a few MB; anything far above is a broken or hostile export and would only cost memory."""

EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")


class OsvError(Exception):
    """The advisory copy itself cannot be read (missing, not a directory or archive): one line for the user."""


class MalformedRecord(ValueError):
    """A record is not a usable OSV object; the loader skips and counts it."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a range: ``kind`` is introduced, fixed, last_affected or limit."""

    kind: str
    version: str


@dataclass(frozen=True, slots=True)
class Range:
    """``affected[].ranges[]``: ``type`` as written (ECOSYSTEM, SEMVER, GIT, ...) and its events in file order."""

    type: str
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Severity:
    """A severity as the record gives it: ``type`` is the ``severity[].type`` (CVSS_V3, Ubuntu, ...) or
    ``database_specific``/``ecosystem_specific`` for the free-form ``severity`` string of those objects."""

    type: str
    score: str


@dataclass(frozen=True, slots=True)
class Affected:
    """``affected[]``: one package, its ranges and enumerated versions, and severities given for it alone."""

    ecosystem: str
    name: str
    ranges: tuple[Range, ...]
    versions: frozenset[str]
    severity: tuple[Severity, ...] = ()


@dataclass(frozen=True, slots=True)
class Vulnerability:
    """One OSV record, reduced to what matching and reporting use."""

    id: str
    aliases: tuple[str, ...]
    modified: str
    withdrawn: str | None
    summary: str
    severity: tuple[Severity, ...]
    affected: tuple[Affected, ...]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record or file the loader could not use: where (a path, or ``archive.zip:member``) and why."""

    source: str
    reason: str


@dataclass
class LoadStats:
    """What loading saw, so "no advisory" can be told apart from "not read"."""

    files: int = 0
    records: int = 0
    kept: int = 0
    withdrawn: int = 0
    duplicates: int = 0
    git_ranges: int = 0
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class Database:
    """The usable, non-withdrawn records by id, and the load statistics."""

    vulns: dict[str, Vulnerability]
    stats: LoadStats


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedRecord(f"{what} is not a string")
    return value


def _opt_str(obj: dict[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    return None if value is None else _str(value, what)


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedRecord(f"{what} is not a list")
    return value


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedRecord(f"{what} is not an object")
    return value


def _severities(obj: dict[str, Any], where: str) -> list[Severity]:
    out = []
    for i, item in enumerate(_list(obj.get("severity"), f"{where}severity")):
        sev = _obj(item, f"{where}severity[{i}]")
        out.append(Severity(_str(sev.get("type"), f"{where}severity[{i}].type"),
                            _str(sev.get("score"), f"{where}severity[{i}].score")))
    for key in ("database_specific", "ecosystem_specific"):
        specific = obj.get(key)
        # free-form objects: only a plain severity string (GHSA's "HIGH", Go's "CRITICAL") is read from them
        if isinstance(specific, dict) and isinstance(specific.get("severity"), str) and specific["severity"]:
            out.append(Severity(key, specific["severity"]))
    return out


def _events(value: object, where: str) -> tuple[Event, ...]:
    events = []
    for i, item in enumerate(_list(value, f"{where}.events")):
        evt = _obj(item, f"{where}.events[{i}]")
        # the schema allows one kind per event object; one written with two keeps both rather than losing
        # the record (the events are sorted by version before evaluation anyway)
        for kind in EVENT_KINDS:
            if kind in evt:
                version = _str(evt[kind], f"{where}.events[{i}].{kind}")
                if not version:
                    raise MalformedRecord(f"{where}.events[{i}].{kind} is empty")
                events.append(Event(kind, version))
    return tuple(events)


def _affected(item: object, where: str) -> Affected | None:
    aff = _obj(item, where)
    package = aff.get("package")
    if package is None:
        return None  # a GIT-only entry with no package: nothing an installed package can be matched with
    pkg = _obj(package, f"{where}.package")
    ecosystem = _str(pkg.get("ecosystem"), f"{where}.package.ecosystem")
    name = _str(pkg.get("name"), f"{where}.package.name")
    ranges = []
    for j, r in enumerate(_list(aff.get("ranges"), f"{where}.ranges")):
        rng = _obj(r, f"{where}.ranges[{j}]")
        ranges.append(Range(_str(rng.get("type"), f"{where}.ranges[{j}].type"),
                            _events(rng.get("events"), f"{where}.ranges[{j}]")))
    versions = frozenset(_str(v, f"{where}.versions[]") for v in _list(aff.get("versions"), f"{where}.versions"))
    return Affected(ecosystem, name, tuple(ranges), versions, tuple(_severities(aff, f"{where}.")))


def parse_record(data: object) -> Vulnerability:
    """The record of a decoded JSON value; ``MalformedRecord`` when it is not a usable OSV object.

    Strict on the fields matching reads (a wrong type there would make the answer a guess), silent on every
    other field (the schema grows, and databases add their own)."""
    rec = _obj(data, "the record")
    vid = _str(rec.get("id"), "id")
    if not vid:
        raise MalformedRecord("id is empty")
    aliases = tuple(_str(a, "aliases[]") for a in _list(rec.get("aliases"), "aliases"))
    affected = tuple(a for i, item in enumerate(_list(rec.get("affected"), "affected"))
                     if (a := _affected(item, f"affected[{i}]")) is not None)
    return Vulnerability(
        id=vid, aliases=aliases, modified=_opt_str(rec, "modified", "modified") or "",
        withdrawn=_opt_str(rec, "withdrawn", "withdrawn"), summary=_opt_str(rec, "summary", "summary") or "",
        severity=tuple(_severities(rec, "")), affected=affected)


def _decode(raw: bytes) -> Vulnerability:
    if len(raw) > MAX_RECORD_BYTES:
        raise MalformedRecord(f"larger than {MAX_RECORD_BYTES} bytes")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise MalformedRecord("not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise MalformedRecord(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise MalformedRecord("JSON nested too deeply") from exc
    return parse_record(data)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read(MAX_RECORD_BYTES + 1)
    if len(raw) > MAX_RECORD_BYTES:
        raise MalformedRecord(f"larger than {MAX_RECORD_BYTES} bytes")
    return raw


def _zip_records(path: str, stats: LoadStats) -> Iterator[tuple[str, bytes]]:
    """The ``.json`` members of an archive; a member too large (a zip bomb) or unreadable is counted."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.endswith(".json"):
                    continue
                source = f"{path}:{info.filename}"
                stats.files += 1
                try:
                    if info.file_size > MAX_RECORD_BYTES:
                        raise MalformedRecord(f"larger than {MAX_RECORD_BYTES} bytes")
                    with archive.open(info) as member:
                        raw = member.read(MAX_RECORD_BYTES + 1)  # the declared size may lie
                    if len(raw) > MAX_RECORD_BYTES:
                        raise MalformedRecord(f"larger than {MAX_RECORD_BYTES} bytes")
                except Exception as exc:  # noqa: BLE001 - each decompressor (zlib, bz2, lzma) has its own errors
                    stats.skipped.append(Skipped(source, _reason(exc)))
                    continue
                yield source, raw
    except Exception as exc:  # noqa: BLE001 - a damaged archive raises BadZipFile, NotImplementedError, OSError, ...
        stats.skipped.append(Skipped(path, f"unreadable archive: {_reason(exc)}"))


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, MalformedRecord) else f"{type(exc).__name__}: {text}"


def _paths(root: str, stats: LoadStats) -> Iterator[str]:
    """Every file under ``root``, names sorted so the order (and which duplicate wins a tie) is stable. A
    directory below the root that cannot be listed is counted; the root itself is an ``OsvError``."""
    if os.path.isfile(root):
        yield root
        return

    def failed(exc: OSError) -> None:
        if os.path.normpath(exc.filename or "") == os.path.normpath(root):
            raise OsvError(f"{root}: {exc.strerror or exc}")
        stats.skipped.append(Skipped(str(exc.filename), f"unreadable directory: {exc.strerror or exc}"))

    for directory, dirs, files in os.walk(root, onerror=failed):
        dirs.sort()
        for name in sorted(files):
            yield os.path.join(directory, name)


def _sources(root: str, stats: LoadStats) -> Iterator[tuple[str, bytes]]:
    """Every record's bytes under ``root``, with where it came from."""
    for path in _paths(root, stats):
        if path.endswith(".zip"):
            yield from _zip_records(path, stats)
        elif path.endswith(".json"):
            stats.files += 1
            try:
                yield path, _read_file(path)
            except (MalformedRecord, OSError) as exc:
                stats.skipped.append(Skipped(path, _reason(exc)))


def check_source(path: str | os.PathLike[str]) -> str:
    """``path`` as a string when it can be an advisory copy (a directory, ``.zip`` or ``.json``), else ``OsvError``."""
    root = os.fspath(path)
    if not os.path.exists(root):
        raise OsvError(f"{root}: no such file or directory")
    if not (os.path.isdir(root) or root.endswith((".zip", ".json"))):
        raise OsvError(f"{root}: not a directory, .zip or .json file")
    return root


def source_files(path: str | os.PathLike[str]) -> Iterator[str]:
    """Every file the loader would look at under ``path`` (sorted walk), for the index's identity of a copy;
    ``OsvError`` when ``path`` itself cannot be read."""
    stats = LoadStats()
    yield from _paths(check_source(path), stats)


def iter_records(path: str | os.PathLike[str], stats: LoadStats) -> Iterator[Vulnerability]:
    """Every readable record under ``path`` in the loader's stable order, withdrawn ones and duplicates
    included (see :func:`supersedes`); unreadable ones are counted in ``stats``. One record at a time, so a
    consumer that writes them elsewhere (the SQLite index) never holds the whole copy in memory."""
    root = check_source(path)
    for source, raw in _sources(root, stats):
        try:
            vuln = _decode(raw)
        except MalformedRecord as exc:
            stats.skipped.append(Skipped(source, str(exc)))
            continue
        stats.records += 1
        yield vuln


def supersedes(vuln: Vulnerability, seen_modified: str | None) -> bool:
    """Whether ``vuln`` replaces an earlier copy of its id last modified at ``seen_modified`` (None: not seen):
    the later ``modified`` wins, the first copy a tie (a withdrawal counts like any copy: a later withdrawal
    beats an earlier copy, an earlier one is undone by a later edit)."""
    return seen_modified is None or vuln.modified > seen_modified


def load(path: str | os.PathLike[str], ecosystems: Collection[str] | None = None) -> Database:
    """The records under ``path`` (directory, ``all.zip`` or one ``.json``), withdrawn ones left out.

    With ``ecosystems`` (exact OSV ecosystem strings), only the records that affect a package of one of them
    are kept. When one id is found twice (an export copied over another), the later ``modified`` wins.
    ``OsvError`` when ``path`` itself cannot be read; everything below it is skipped and counted instead."""
    stats = LoadStats()
    wanted = None if ecosystems is None else frozenset(ecosystems)
    vulns: dict[str, Vulnerability] = {}
    for vuln in iter_records(path, stats):
        if wanted is not None and not any(a.ecosystem in wanted for a in vuln.affected):
            continue
        seen = vulns.get(vuln.id)
        if seen is not None:
            stats.duplicates += 1
        if not supersedes(vuln, None if seen is None else seen.modified):
            continue
        vulns[vuln.id] = vuln  # withdrawn ones too, until the end: a later withdrawal beats an earlier copy
    for vid in [vid for vid, vuln in vulns.items() if vuln.withdrawn is not None]:
        del vulns[vid]
        stats.withdrawn += 1
    stats.git_ranges = sum(r.type == "GIT" for v in vulns.values() for a in v.affected for r in a.ranges)
    stats.kept = len(vulns)
    return Database(vulns, stats)
