"""The advisory index: a local OSV copy turned once into SQLite rows (``hostguard.store.advisories``), so a
match reads only the rows of the packages it is asked about instead of loading every record.

The index remembers which copy it was built from: the copy's absolute path and a digest of every file the
loader reads under it (relative name, size, mtime in nanoseconds, inode). :func:`open_index` reuses it when
the digest is unchanged and rebuilds it when anything changed (a file added, removed, rewritten or
replaced), when it was built from another copy, or when it cannot be read (then ``note`` says so).

Building streams the records (``osv.iter_records``): one record in memory at a time, with the loader's own
rules for duplicates (``osv.supersedes``) and withdrawn records, so the index holds exactly the records
``osv.load`` would. Each (ecosystem, normalized name) row holds the record's affected entries for that
package; matching rebuilds ``Vulnerability`` objects whose ``affected`` are the entries of the asked package
only, and evaluates them with ``match.evaluate``: the evaluation stays one implementation.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostguard.store.advisories import AdvisoryReader, AdvisoryStoreError, AdvisoryWriter, remove
from hostguard.vulns.match import PackageResult, evaluate, normalize_name
from hostguard.vulns.osv import (
    Affected,
    Event,
    LoadStats,
    OsvError,
    Range,
    Severity,
    Skipped,
    Vulnerability,
    iter_records,
    source_files,
    supersedes,
)

__all__ = ["INDEX_FORMAT", "AdvisoryIndex", "IndexInfo", "build", "describe", "match_packages", "open_index",
           "source_identity"]

INDEX_FORMAT = "1"
"""Changes when the row encoding changes: an index of another format is rebuilt."""
MAX_SKIPPED_KEPT = 20
"""Skipped records remembered by source and reason (the count is always exact)."""


def source_identity(source: str | os.PathLike[str]) -> str:
    """The digest that tells an unchanged copy from a changed one: every file's relative name, size, mtime and
    inode, in name order (``OsvError`` when the copy cannot be read). One ``scandir`` per directory and one
    digest update per directory: a copy of 100,000 ``<ID>.json`` files is told unchanged in about 0.5 s."""
    root = os.path.abspath(os.fspath(source))
    digest = hashlib.sha256(f"hostguard-osv-index {INDEX_FORMAT}\0{root}\0".encode("utf-8", "surrogateescape"))
    if not os.path.isdir(root):
        for path in source_files(root):   # a single file (an all.zip given directly)
            st = os.stat(path)
            digest.update(f"{os.path.basename(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode(
                "utf-8", "surrogateescape"))
        return digest.hexdigest()
    skip = len(root) + 1

    def walk(directory: str) -> None:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if directory == root:
                raise OsvError(f"{root}: {exc.strerror or exc}") from exc
            return   # the loader counts it as skipped too
        lines = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path)
                continue
            try:
                st = entry.stat()
            except OSError:
                continue  # gone between listing and stat: the loader will skip it too
            lines.append(f"{entry.path[skip:]}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n")
        digest.update("".join(lines).encode("utf-8", "surrogateescape"))

    walk(root)
    return digest.hexdigest()


@dataclass
class IndexInfo:
    """What an index was built from and what loading saw (for the warning line and ``vulns update``)."""

    source: str
    identity: str
    built_at: str
    seconds: float
    packages: int
    stats: LoadStats = field(default_factory=LoadStats)

    def meta(self) -> dict[str, str]:
        s = self.stats
        return {"format": INDEX_FORMAT, "source": self.source, "identity": self.identity, "built_at": self.built_at,
                "seconds": f"{self.seconds:.3f}", "packages": str(self.packages),
                "stats": json.dumps({"files": s.files, "records": s.records, "kept": s.kept, "withdrawn": s.withdrawn,
                                     "duplicates": s.duplicates, "git_ranges": s.git_ranges,
                                     "skipped_count": len(s.skipped),
                                     "skipped": [[k.source, k.reason] for k in s.skipped[:MAX_SKIPPED_KEPT]]})}

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> IndexInfo:
        raw = json.loads(meta["stats"])
        skipped = [Skipped(str(src), str(why)) for src, why in raw["skipped"]]
        # the sources beyond those kept are not remembered; their count is
        skipped += [Skipped("", "")] * (int(raw["skipped_count"]) - len(skipped))
        stats = LoadStats(int(raw["files"]), int(raw["records"]), int(raw["kept"]), int(raw["withdrawn"]),
                          int(raw["duplicates"]), int(raw["git_ranges"]), skipped)
        return cls(meta["source"], meta["identity"], meta["built_at"], float(meta["seconds"]), int(meta["packages"]),
                   stats)


# --- the row encoding -----------------------------------------------------------------------------------------

def _sev(items: Sequence[Severity]) -> list[list[str]]:
    return [[s.type, s.score] for s in items]


def _encode_entries(affs: Sequence[Affected]) -> str:
    return json.dumps([[a.name, [[r.type, [[e.kind, e.version] for e in r.events]] for r in a.ranges],
                        sorted(a.versions), _sev(a.severity)] for a in affs], separators=(",", ":"))


def _decode_entries(ecosystem: str, text: str) -> tuple[Affected, ...]:
    return tuple(Affected(ecosystem, name, tuple(Range(rtype, tuple(Event(k, v) for k, v in events))
                                                 for rtype, events in ranges),
                          frozenset(versions), tuple(Severity(t, s) for t, s in severity))
                 for name, ranges, versions, severity in json.loads(text))


def _encode_record(vuln: Vulnerability) -> str:
    return json.dumps([list(vuln.aliases), vuln.summary, _sev(vuln.severity), vuln.modified], separators=(",", ":"))


def _decode_record(vid: str, text: str) -> Vulnerability:
    aliases, summary, severity, modified = json.loads(text)
    return Vulnerability(vid, tuple(aliases), modified, None, summary, tuple(Severity(t, s) for t, s in severity), ())


# --- building ---------------------------------------------------------------------------------------------------

def build(cache_dir: Path | str, source: str | os.PathLike[str]) -> IndexInfo:
    """Build the index of ``source`` in ``cache_dir`` (replacing the old one only when done); ``OsvError``
    when the copy itself cannot be read, ``AdvisoryStoreError`` when the index cannot be written."""
    root = os.path.abspath(os.fspath(source))
    started = time.perf_counter()
    identity = source_identity(root)
    stats = LoadStats()
    seen: dict[str, str] = {}  # id -> modified of the copy kept
    with AdvisoryWriter(cache_dir) as writer:
        for vuln in iter_records(root, stats):
            before = seen.get(vuln.id)
            if before is not None:
                stats.duplicates += 1
            if not supersedes(vuln, before):
                continue
            seen[vuln.id] = vuln.modified
            by_key: dict[tuple[str, str], list[Affected]] = defaultdict(list)
            for aff in vuln.affected:
                by_key[(aff.ecosystem, normalize_name(aff.ecosystem, aff.name))].append(aff)
            git = sum(r.type == "GIT" for a in vuln.affected for r in a.ranges)
            writer.put(vuln.id, vuln.modified, vuln.withdrawn is not None, git, _encode_record(vuln),
                       [(eco, name, _encode_entries(affs)) for (eco, name), affs in by_key.items()])
        stats.withdrawn = writer.drop_withdrawn()
        stats.kept, packages, stats.git_ranges = writer.totals()
        info = IndexInfo(root, identity, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         time.perf_counter() - started, packages, stats)
        writer.commit(info.meta())
    return info


# --- matching ---------------------------------------------------------------------------------------------------

class AdvisoryIndex:
    """An open index: :meth:`match_many` answers packages like ``match.Index.match_many``.

    ``built`` says whether opening it (re)built it, ``note`` why an existing one was not used (unreadable)."""

    def __init__(self, reader: AdvisoryReader, info: IndexInfo, built: bool, note: str = "") -> None:
        self._reader = reader
        self.info = info
        self.built = built
        self.note = note

    @property
    def queries(self) -> int:
        """SQL queries matching has sent so far."""
        return self._reader.queries

    @property
    def rows_read(self) -> int:
        """Rows matching has read so far."""
        return self._reader.rows_read

    def close(self) -> None:
        self._reader.close()

    def match_many(self, packages: Sequence[tuple[str, str, str]]) -> list[PackageResult]:
        """The result of each (ecosystem, name, version), in order; reads only the rows of these packages."""
        names: dict[str, set[str]] = defaultdict(set)
        for ecosystem, name, _ in packages:
            names[ecosystem].add(normalize_name(ecosystem, name))
        rows: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for ecosystem, wanted in names.items():
            for name, vid, entries in self._reader.rows(ecosystem, wanted):
                rows[(ecosystem, name)].append((vid, entries))
        records = {vid: _decode_record(vid, text)
                   for vid, text in self._reader.records({vid for found in rows.values() for vid, _ in found}).items()}
        candidates: dict[tuple[str, str], list[tuple[Vulnerability, tuple[Affected, ...]]]] = {}
        for (ecosystem, name), found in rows.items():
            decoded = []
            for vid, entries in sorted(found):
                affs = _decode_entries(ecosystem, entries)
                base = records[vid]
                decoded.append((Vulnerability(vid, base.aliases, base.modified, None, base.summary, base.severity,
                                              affs), affs))
            candidates[(ecosystem, name)] = decoded
        return [evaluate(ecosystem, version, candidates.get((ecosystem, normalize_name(ecosystem, name)), ()))
                for ecosystem, name, version in packages]


def _open(cache_dir: Path | str) -> tuple[AdvisoryReader, IndexInfo]:
    reader = AdvisoryReader(cache_dir)
    try:
        if reader.meta.get("format") != INDEX_FORMAT:
            raise AdvisoryStoreError(f"advisory index ({reader.path}) has format {reader.meta.get('format')!r}")
        return reader, IndexInfo.from_meta(reader.meta)
    except (KeyError, ValueError, TypeError) as exc:
        reader.close()
        raise AdvisoryStoreError(f"advisory index ({reader.path}) has unreadable metadata ({exc})") from exc
    except AdvisoryStoreError:
        reader.close()
        raise


def open_index(cache_dir: Path | str, source: str | os.PathLike[str], rebuild: bool = False) -> AdvisoryIndex:
    """The index of ``source`` in ``cache_dir``: reused when built from this very copy, (re)built otherwise
    or when ``rebuild``. ``OsvError`` when the copy cannot be read, ``AdvisoryStoreError`` when the index
    cannot be written."""
    root = os.path.abspath(os.fspath(source))
    note = ""
    if not rebuild:
        try:
            reader, info = _open(cache_dir)
        except AdvisoryStoreError as exc:
            if Path(cache_dir, "advisories.db").exists():
                note = f"{exc}; rebuilt"
                remove(cache_dir)
        else:
            if info.source == root and info.identity == source_identity(root):
                return AdvisoryIndex(reader, info, built=False)
            reader.close()
    build(cache_dir, root)
    reader, info = _open(cache_dir)
    return AdvisoryIndex(reader, info, built=True, note=note)


def describe(info: IndexInfo) -> dict[str, Any]:
    """The index's summary for ``vulns update --format json`` and people."""
    s = info.stats
    return {"source": info.source, "built_at": info.built_at, "seconds": round(info.seconds, 3),
            "records": s.kept, "packages": info.packages, "withdrawn": s.withdrawn, "duplicates": s.duplicates,
            "skipped": len(s.skipped), "git_ranges": s.git_ranges}


def match_packages(cache_dir: Path | str, source: str | os.PathLike[str],
                   packages: Sequence[tuple[str, str, str]]) -> tuple[list[PackageResult], AdvisoryIndex]:
    """:func:`open_index` then :meth:`AdvisoryIndex.match_many`; an index found unreadable while matching
    (damaged past its header) is rebuilt once, with a note. The caller closes the index returned.

    Warm, the copy's identity (a stat of every file) is checked in a thread *while* the packages are matched
    through the index built from it; the answer is used only when the copy proved unchanged, else the index is
    rebuilt and the packages matched again."""
    root = os.path.abspath(os.fspath(source))
    try:
        reader, info = _open(cache_dir)
    except AdvisoryStoreError:
        pass   # open_index below says what it does about it
    else:
        if info.source == root:
            from concurrent.futures import ThreadPoolExecutor

            index = AdvisoryIndex(reader, info, built=False)
            with ThreadPoolExecutor(max_workers=1) as pool:
                identity = pool.submit(source_identity, root)
                try:
                    results: list[PackageResult] | None = index.match_many(packages)
                except AdvisoryStoreError:
                    results = None
                unchanged = identity.result() == info.identity
            if results is not None and unchanged:
                return results, index
        reader.close()
    index = open_index(cache_dir, source)
    try:
        return index.match_many(packages), index
    except AdvisoryStoreError as exc:
        index.close()
        remove(cache_dir)
        index = open_index(cache_dir, source, rebuild=True)
        index.note = f"{exc}; rebuilt"
        return index.match_many(packages), index
