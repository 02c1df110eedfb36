"""The malware scan: files read once each, hashed (SHA-256) and matched against the YARA-X rules and the
SHA-256 IOC lists, in worker processes, with a cache that spares unchanged files.

yara-x holds the GIL while it scans (measured: a Python thread beside a scan gets ~2% of the time), so
threads would not scale: the files are read, hashed and scanned in worker *processes*, one per usable CPU,
each loading the serialized rules once. The main process walks the tree, asks the scan cache about each
file (one query per directory), and hands batches of the files the cache does not know to the workers; a
re-scan of an unchanged tree therefore starts no worker and compiles nothing.

One file is one unit (:func:`scan_path` with a :class:`FileScanner`): the full scan, ``malware scan PATH``,
the web-root watch and quarantine's re-check run the same code.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hostguard.findings import Finding, Severity
from hostguard.iocs import IocSet
from hostguard.remediation import Remediation
from hostguard.respond.quarantine import quarantine_action
from hostguard.scanner import rules as rules_mod
from hostguard.scanner.files import (
    TIMEOUT,
    UNREADABLE,
    VANISHED,
    Identity,
    Replaced,
    open_beneath,
    open_directory,
    read_file,
)
from hostguard.scanner.walk import Directory, Excludes, WalkStats, walk

if TYPE_CHECKING:
    import yara_x

    from hostguard.store.scan_cache import ScanCache

CHECK_ID = "malware.file"
Work = tuple[str, bool, tuple[int, int], "tuple[int, int] | None"]  # path, in a web root, (dev, ino), its directory's
IOC_RULE = "ioc:sha256"
BATCH_FILES = 64
BATCH_BYTES = 32 << 20


@dataclass(frozen=True)
class Match:
    """One rule (or IOC) that matched a file."""

    rule: str  # our rule's identifier; "packN:identifier" for an owner's pack; "ioc:sha256" for an IOC hit
    severity: str
    description: str = ""
    family: str = ""
    source: str = ""  # the IOC's source, for IOC hits

    def to_json(self) -> dict[str, str]:
        """As stored in the scan cache."""
        return {"rule": self.rule, "severity": self.severity, "description": self.description, "family": self.family}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Match:
        """From the scan cache."""
        return cls(data["rule"], data["severity"], data.get("description", ""), data.get("family", ""))


@dataclass(frozen=True)
class FileResult:
    """What became of one file: read and scanned (``from_cache`` when the cache answered), or skipped."""

    path: str
    identity: Identity | None
    sha256: str = ""
    matches: tuple[Match, ...] = ()
    skipped: str | None = None
    stable: bool = False
    from_cache: bool = False
    detail: str = ""


@dataclass(frozen=True)
class ScanOptions:
    """How a scan reads (from ``[malware]``)."""

    max_file_size: int = 32 << 20
    workers: int = 0
    nice: int = 10
    ionice: str = "idle"
    rate_limit_mb: float = 0.0
    timeout: int = 10
    exclude: tuple[str, ...] = ()


class RuleSet:
    """The rules a scan runs, identified by their digest at once and compiled (or read from cache/) only when a
    file must really be scanned."""

    def __init__(self, rule_dirs: Sequence[str] = (), cache_dir: str | None = None) -> None:
        self.rule_dirs = tuple(rule_dirs)
        self.cache_dir = cache_dir
        self.digest = rules_mod.digest(rules_mod.own_sources() + rules_mod.pack_sources(self.rule_dirs))
        self._compiled: rules_mod.CompiledRules | None = None

    def compiled(self) -> rules_mod.CompiledRules:
        """The compiled rules (:class:`~hostguard.scanner.rules.RulesError` when a rule does not compile)."""
        if self._compiled is None:
            self._compiled = rules_mod.load(self.rule_dirs, self.cache_dir)
        return self._compiled


class FileScanner:
    """Scans one file at a time in this process: the unit every scan (and the watcher) runs."""

    def __init__(self, rules: yara_x.Rules, *, max_file_size: int = 32 << 20, timeout: int = 10,
                 web_roots: Sequence[str] = ()) -> None:
        import yara_x

        self._timeout_error = yara_x.TimeoutError
        self.scanner = yara_x.Scanner(rules)
        self.scanner.set_timeout(timeout)
        self.max_file_size = max_file_size
        self.web_roots = tuple(r.rstrip("/") or "/" for r in web_roots)

    def in_web_root(self, path: str) -> bool:
        """True when ``path`` lies under one of the web roots."""
        return in_roots(path, self.web_roots)

    def scan_bytes(self, data: bytes, path: str, in_web_root: bool) -> tuple[Match, ...]:
        """The rules matching ``data`` (the content of ``path``); raises yara_x.TimeoutError."""
        name = os.path.basename(path)
        ext = name.rsplit(".", 1)[1].lower() if "." in name.lstrip(".") else ""
        scanner = self.scanner
        scanner.set_global("file_name", name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        scanner.set_global("extension", ext.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        scanner.set_global("in_web_root", in_web_root)
        found = []
        for rule in scanner.scan(data).matching_rules:
            meta = dict(rule.metadata)
            ident = rule.identifier if rule.namespace == rules_mod.OWN_NAMESPACE else f"{rule.namespace}:{rule.identifier}"
            found.append(Match(ident, rules_mod.severity_of(rule.metadata, rule.namespace),
                               str(meta.get("description", "")), str(meta.get("family", ""))))
        return tuple(found)

    def scan_file(self, path: str, *, in_web_root: bool | None = None, expected: tuple[int, int] | None = None,
                  directory: tuple[int, int] | None = None, root: str | None = None) -> FileResult:
        """Read ``path`` (see :func:`~hostguard.scanner.files.read_file`), hash it and match the rules.
        ``expected``: the (device, inode) the walk listed; another file at that path now counts as vanished.
        The file is opened in its directory, never through a path an attacker could have re-pointed since it
        was listed: ``directory`` is the (device, inode) the walk saw it in, or ``root`` the tree it lies in
        (every component below it opened without following a symlink)."""
        import hashlib

        folder, name = os.path.split(path)
        dfd = None
        try:
            if directory is not None:
                dfd = open_directory(folder or ".", directory)
            elif root is not None:
                dfd = open_beneath(root, folder or ".")
        except (Replaced, NotADirectoryError, FileNotFoundError):
            return FileResult(path, None, skipped=VANISHED, detail="its directory was replaced or removed")
        except OSError as exc:
            return FileResult(path, None, skipped=UNREADABLE, detail=exc.strerror or str(exc))
        try:
            read = read_file(name if dfd is not None else path, self.max_file_size, dir_fd=dfd)
        finally:
            if dfd is not None:
                os.close(dfd)
        if read.skipped is not None or read.data is None:
            return FileResult(path, read.identity, skipped=read.skipped, detail=read.detail)
        if expected is not None and read.identity is not None and \
                (read.identity.device, read.identity.inode) != expected:
            return FileResult(path, read.identity, skipped=VANISHED, detail="replaced while scanning")
        digest = hashlib.sha256(read.data).hexdigest()
        web = self.in_web_root(path) if in_web_root is None else in_web_root
        try:
            matches = self.scan_bytes(read.data, path, web)
        except self._timeout_error:
            return FileResult(path, read.identity, digest, skipped=TIMEOUT)
        return FileResult(path, read.identity, digest, matches, stable=read.stable)


def in_roots(path: str, roots: Sequence[str]) -> bool:
    """True when ``path`` is one of ``roots`` or below one."""
    return any(path == r or path.startswith(r + "/") or r == "/" for r in roots)


@functools.cache
def own_digests() -> frozenset[str]:
    """The SHA-256 of every file of the installed hostguard package: its rule files and the patterns its
    process checks look for would otherwise be detections on every host that has hostguard installed."""
    import hashlib

    import hostguard

    found = set()
    for directory, dirs, files in os.walk(os.path.dirname(os.path.abspath(hostguard.__file__))):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            with contextlib.suppress(OSError), open(os.path.join(directory, name), "rb") as fh:
                found.add(hashlib.sha256(fh.read()).hexdigest())
    return frozenset(found)


def is_own_file(sha256: str) -> bool:
    """Whether a file has exactly the content of one of hostguard's own files (a copy anywhere counts; any
    change of a byte does not)."""
    return bool(sha256) and sha256 in own_digests()


def load_iocs(files: Sequence[str]) -> IocSet:
    """The shipped IOC lists and ``files`` (``[malware] ioc_files``), their sha256 entries, expired ones left
    out; :class:`~hostguard.iocs.IocError` when a list cannot be read."""
    import datetime as dt

    from hostguard.iocs import load_file, shipped

    entries = list(shipped())
    for path in files:
        entries.extend(load_file(path))
    return IocSet.build([e for e in entries if e.type == "sha256"], dt.date.today())


def ioc_match(sha256: str, iocs: IocSet) -> Match | None:
    """The IOC hit of a file's digest (rule ``ioc:sha256``), or None."""
    hit = iocs.match_sha256(sha256) if sha256 else None
    if hit is None:
        return None
    return Match(IOC_RULE, "critical", hit.comment or "file's SHA-256 is on an IOC list", "ioc", hit.source)


# -- worker processes -----------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(serialized: bytes, max_file_size: int, timeout: int, nice: int, ionice: str,
                 rate: float) -> None:
    """Each worker: gentler priorities, then the rules loaded once."""
    if nice:
        with contextlib.suppress(OSError):
            os.nice(max(0, nice - os.getpriority(os.PRIO_PROCESS, 0)))
    set_ionice(ionice)
    _WORKER["scanner"] = FileScanner(rules_mod.load_serialized(serialized), max_file_size=max_file_size,
                                     timeout=timeout)
    _WORKER["rate"] = rate  # bytes per second for this worker (0: none)
    _WORKER["budget_start"] = time.monotonic()
    _WORKER["budget_bytes"] = 0


def _worker_batch(batch: list[Work]) -> list[FileResult]:
    scanner: FileScanner = _WORKER["scanner"]
    rate: float = _WORKER["rate"]
    out = []
    for path, web, expected, directory in batch:
        result = scanner.scan_file(path, in_web_root=web, expected=expected, directory=directory)
        out.append(result)
        if rate and result.identity is not None and result.skipped is None:
            _WORKER["budget_bytes"] += result.identity.size
            ahead = pace(_WORKER["budget_bytes"], rate, time.monotonic() - _WORKER["budget_start"])
            if ahead > 0:
                time.sleep(ahead)
    return out


def pace(read: int, rate: float, elapsed: float) -> float:
    """Seconds to wait so that ``read`` bytes over ``elapsed`` seconds stay within ``rate`` bytes a second
    (0 when behind the allowance: unused time is not saved up beyond the start)."""
    return max(0.0, read / rate - elapsed) if rate > 0 else 0.0


IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i686": 289, "armv7l": 314, "ppc64le": 273, "s390x": 282,
              "riscv64": 30}
IOPRIO_CLASS = {"best-effort": 2, "idle": 3}


def set_ionice(klass: str) -> bool:
    """Put this process in I/O scheduling class ``klass`` (idle, best-effort; none: leave it); False when the
    kernel or the architecture does not let us (a gentleness setting, never an error)."""
    number = IOPRIO_SET.get(platform.machine())
    if klass not in IOPRIO_CLASS or number is None:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        value = (IOPRIO_CLASS[klass] << 13) | (4 if klass == "best-effort" else 0)
        return int(libc.syscall(number, 1, 0, value)) == 0  # IOPRIO_WHO_PROCESS, this process
    except (OSError, AttributeError):
        return False


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# -- the scan -------------------------------------------------------------------------------------------

@dataclass
class ScanStats:
    """What a scan read and left out."""

    files: int = 0  # files whose content is known (read now, or answered by the cache)
    bytes: int = 0
    scanned: int = 0  # read this time
    scanned_bytes: int = 0
    cached: int = 0  # answered by the cache
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    workers: int = 0
    mounts_skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    own_files: int = 0  # files that matched but are hostguard's own (its rules, its process patterns)

    def to_dict(self) -> dict[str, Any]:
        """The ``stats`` of the JSON contract."""
        return {"files": self.files, "bytes": self.bytes, "scanned": self.scanned, "scanned_bytes": self.scanned_bytes,
                "cached": self.cached, "skipped": dict(sorted(self.skipped.items())),
                "seconds": round(self.seconds, 3), "workers": self.workers,
                "mounts_skipped": list(self.mounts_skipped), "notes": list(self.notes), "own_files": self.own_files}


@dataclass(frozen=True)
class ScanResult:
    """The detections (findings) and the stats of one scan."""

    detections: tuple[Finding, ...]
    stats: ScanStats
    results: tuple[FileResult, ...] = ()  # only the files with matches


Progress = Callable[[int, int, int], None]  # files done, files found, bytes done


class _Pool:
    """Worker processes fed batches, with a bounded number in flight (the walk never runs far ahead)."""

    def __init__(self, rules: RuleSet, options: ScanOptions, workers: int) -> None:
        import multiprocessing

        rate = options.rate_limit_mb * 1e6 / workers if options.rate_limit_mb else 0.0
        self.executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init,
            initargs=(rules.compiled().serialized(), options.max_file_size, options.timeout, options.nice,
                      options.ionice, rate))
        self.limit = workers * 3
        self.inflight: set[Future[list[FileResult]]] = set()

    def submit(self, batch: list[Work]) -> list[FileResult]:
        """Queue ``batch``; return the results of batches done meanwhile (waiting when too many are in flight)."""
        self.inflight.add(self.executor.submit(_worker_batch, batch))
        done: list[FileResult] = []
        while len(self.inflight) >= self.limit:
            finished, self.inflight = _wait(self.inflight)
            for future in finished:
                done.extend(future.result())
        return done

    def drain(self) -> list[FileResult]:
        """The results of every batch still in flight."""
        done: list[FileResult] = []
        while self.inflight:
            finished, self.inflight = _wait(self.inflight)
            for future in finished:
                done.extend(future.result())
        return done

    def close(self) -> None:
        """Stop the workers."""
        self.executor.shutdown(wait=True, cancel_futures=True)


def _wait(futures: set[Future[list[FileResult]]]) -> tuple[set[Future[list[FileResult]]], set[Future[list[FileResult]]]]:
    finished, pending = wait(futures, return_when=FIRST_COMPLETED)
    return set(finished), set(pending)


class Scan:
    """One scan over ``targets``: walk, cache, workers, detections. Use :meth:`run`."""

    def __init__(self, rules: RuleSet, iocs: IocSet, cache: ScanCache, options: ScanOptions, *,
                 skip_devices: dict[int, str] | None = None, web_roots: Sequence[str] = (),
                 root: str | None = None, progress: Progress | None = None, inline: bool = False,
                 deadline_seconds: float | None = None) -> None:
        """``inline``: read and scan in this process, no worker (a caller that may run threads must not
        fork); ``deadline_seconds``: stop walking after that long (:attr:`complete` then says so)."""
        self.rules = rules
        self.iocs = iocs
        self.cache = cache
        self.options = options
        self.skip_devices = skip_devices or {}
        self.web_roots = tuple(r.rstrip("/") or "/" for r in web_roots)
        self.excludes = Excludes(options.exclude, root)
        self.progress = progress
        self.stats = ScanStats()
        self.hits: list[FileResult] = []
        self._pool: _Pool | None = None
        self._found = 0
        self._done = 0
        self._last_progress = 0.0
        self.inline = inline
        self.deadline_seconds = deadline_seconds
        self.complete = True
        self._deadline: float | None = None
        self._scanner: FileScanner | None = None

    def _context(self, web: bool) -> str:
        return f"{self.rules.digest}:{int(web)}"

    def run(self, targets: Sequence[str]) -> ScanResult:
        """Scan ``targets`` (directories are walked, files read) and return what was found."""
        started = time.monotonic()
        walk_stats = WalkStats()
        workers = self.options.workers or usable_cpus()
        batch: list[Work] = []
        batch_bytes = 0
        deadline = self._deadline = None if self.deadline_seconds is None else started + self.deadline_seconds
        try:
            for directory in walk(targets, walk_stats, skip_devices=self.skip_devices, excludes=self.excludes):
                if deadline is not None and time.monotonic() > deadline:
                    self._stop()
                if not self.complete:
                    break
                for path, web, expected, size in self._directory(directory):
                    batch.append((path, web, expected, directory.identity))
                    batch_bytes += size
                    if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                        self._dispatch(batch, workers)
                        batch, batch_bytes = [], 0
            if batch and self.complete:
                self._dispatch(batch, workers)
            if self._pool is not None:
                self._collect(self._pool.drain())
        finally:
            if self._pool is not None:
                self._pool.close()
            self.cache.flush()
        self.stats.skipped.update(walk_stats.skipped)
        self.stats.mounts_skipped = walk_stats.mounts_skipped
        self.stats.notes += walk_stats.errors
        if self.cache.note:
            self.stats.notes.append(self.cache.note)
        self.stats.seconds = time.monotonic() - started
        self.hits.sort(key=lambda r: r.path)
        detections = tuple(f for r in self.hits for f in detections_of(r))
        return ScanResult(detections, self.stats, tuple(self.hits))

    def _directory(self, directory: Directory) -> Iterable[tuple[str, bool, tuple[int, int], int]]:
        """The files of one directory the cache cannot answer (the others are counted here)."""
        cached = self.cache.directory(directory.path) if self.cache.enabled else {}
        web = in_roots(directory.path, self.web_roots) if self.web_roots else False
        context = self._context(web)
        max_size = self.options.max_file_size
        digests = self.iocs.digests
        stats = self.stats
        self._found += len(directory.files)
        for name, st in directory.files:
            size = st.st_size
            if size > max_size:
                stats.skipped["too_large"] += 1
                self._done += 1
                continue
            row = cached.pop(name, None)
            if row is not None and row[1] == context and row[0] == (
                    st.st_dev, st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns):
                if row[3] == "[]" and (not digests or row[2] not in digests):
                    stats.files += 1  # the common case, kept cheap: a clean file the cache knows
                    stats.bytes += size
                    stats.cached += 1
                    self._done += 1
                    continue
                matches = tuple(Match.from_json(m) for m in json.loads(row[3]))
                self._record(FileResult(os.path.join(directory.path, name), Identity.of(st), row[2], matches,
                                        stable=True, from_cache=True))
                continue
            yield os.path.join(directory.path, name), web, (st.st_dev, st.st_ino), size
        if directory.complete and cached:
            self.cache.forget(directory.path, list(cached))
        self._tick()

    def _stop(self) -> None:
        if self.complete:
            self.complete = False
            self.stats.notes.append(f"stopped after {self.deadline_seconds:g} s: not every file was read")

    def _dispatch(self, batch: list[Work], workers: int) -> None:
        if self.inline:
            if self._scanner is None:
                self._scanner = FileScanner(self.rules.compiled().rules, max_file_size=self.options.max_file_size,
                                            timeout=self.options.timeout)
                self.stats.workers = 0
            for path, web, expected, directory in batch:  # the time limit holds per file, not per directory
                if self._deadline is not None and time.monotonic() > self._deadline:
                    self._stop()
                    return
                self._collect([self._scanner.scan_file(path, in_web_root=web, expected=expected,
                                                       directory=directory)])
            return
        if self._pool is None:
            self._pool = _Pool(self.rules, self.options, max(1, workers))
            self.stats.workers = max(1, workers)
        self._collect(self._pool.submit(batch))

    def _collect(self, results: Iterable[FileResult]) -> None:
        for result in results:
            if result.skipped is not None:
                self.stats.skipped[result.skipped] += 1
                self._done += 1
                continue
            if result.stable and result.identity is not None:
                ident = result.identity
                self.cache.put(result.path, (ident.device, ident.inode, ident.size, ident.mtime_ns, ident.ctime_ns),
                               self._context(in_roots(os.path.dirname(result.path), self.web_roots)
                                             if self.web_roots else False),
                               result.sha256, json.dumps([m.to_json() for m in result.matches]))
            self._record(result)

    def _record(self, result: FileResult) -> None:
        size = result.identity.size if result.identity is not None else 0
        self.stats.files += 1
        self.stats.bytes += size
        self._done += 1
        if result.from_cache:
            self.stats.cached += 1
        else:
            self.stats.scanned += 1
            self.stats.scanned_bytes += size
        ioc = ioc_match(result.sha256, self.iocs)
        if ioc is not None:
            result = FileResult(result.path, result.identity, result.sha256, (*result.matches, ioc),
                                stable=result.stable, from_cache=result.from_cache)
        if result.matches and is_own_file(result.sha256):
            self.stats.own_files += 1
        elif result.matches:
            self.hits.append(result)
        self._tick()

    def _tick(self) -> None:
        if self.progress is not None:
            now = time.monotonic()
            if now - self._last_progress > 0.1:
                self._last_progress = now
                self.progress(self._done, self._found, self.stats.bytes)


# -- detections as findings -----------------------------------------------------------------------------

def detections_of(result: FileResult, path: str | None = None) -> list[Finding]:
    """One finding per rule that matched the file: target the path and the rule (so the fingerprint is the
    check id, path and rule), the fix a ``quarantine`` action naming the exact file (device, inode, digest).
    ``path``: the file as the scanned tree names it (under ``--root``), when not the path read."""
    out = []
    ident = result.identity
    where = result.path if path is None else path
    for match in result.matches:
        evidence: dict[str, Any] = {"sha256": result.sha256, "size": ident.size if ident else None,
                                    "device": ident.device if ident else None,
                                    "inode": ident.inode if ident else None,
                                    "description": match.description, "family": match.family,
                                    "cached": result.from_cache}
        if match.source:
            evidence["ioc_source"] = match.source
        out.append(Finding(
            id=CHECK_ID, category="malware", severity=Severity(match.severity),
            title=f"{match.rule} matched {_readable(where)}",
            target={"kind": "path", "path": where, "rule": match.rule},
            evidence=evidence,
            remediation=Remediation("Move the file to quarantine (restorable with `hostguard quarantine restore`), "
                                    "then find how it got there.",
                                    steps=(quarantine_action(where, ident.device if ident else 0,
                                                             ident.inode if ident else 0, result.sha256, match.rule),))))
    return out


def _readable(path: str) -> str:
    from hostguard.findings import one_line

    return one_line(path)


def detection_dict(finding: Finding) -> dict[str, Any]:
    """A detection in the malware contract: ``path``, ``rule``, ``severity``, ``sha256`` first, then the finding's
    id, fingerprint, title, evidence and remediation (paths by findings.py's bytes policy)."""
    data = finding.to_dict()
    evidence = data["evidence"]
    return {"path": data["target"]["path"], "rule": data["target"]["rule"], "severity": data["severity"],
            "sha256": evidence.get("sha256"), "size": evidence.get("size"), "description": evidence.get("description"),
            "id": data["id"], "fingerprint": data["fingerprint"], "title": data["title"], "evidence": evidence,
            "remediation": data["remediation"]}


def scan_path(path: str, scanner: FileScanner, iocs: IocSet | None = None,
              root: str | None = None) -> tuple[FileResult, list[Finding]]:
    """Scan one file in this process (the watcher's and quarantine's entry point): its result and findings.
    ``root``: the tree it lies in (the watched one), below which no symlink is followed to reach it."""
    result = scanner.scan_file(path, root=root)
    if result.matches and is_own_file(result.sha256):
        result = FileResult(result.path, result.identity, result.sha256, (), stable=result.stable)
    if result.skipped is None and iocs is not None:
        ioc = ioc_match(result.sha256, iocs)
        if ioc is not None:
            result = FileResult(result.path, result.identity, result.sha256, (*result.matches, ioc),
                                stable=result.stable)
    return result, (detections_of(result) if result.skipped is None else [])
