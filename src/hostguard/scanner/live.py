"""`hostguard malware watch`: the tree watch (``fanotify.py`` or ``watch.py``) wired to the scanner, one file at a time.

The watch starts before the first scan of the trees, so a file written while that scan runs has its event
waiting; a file is scanned in this process with the rules compiled once (:class:`FileScanner`, the unit the
full scan's workers run too); lost events rescan a whole tree through the full scan and its cache, so only
what changed is read again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from hostguard.findings import Finding
from hostguard.findings import one_line as readable
from hostguard.iocs import IocSet
from hostguard.scanner.engine import FileResult, FileScanner, RuleSet, Scan, ScanOptions, scan_path
from hostguard.scanner.fanotify import FanotifyWatch, open_watch
from hostguard.scanner.files import TOO_LARGE
from hostguard.scanner.watch import TreeWatch
from hostguard.store.scan_cache import ScanCache


@dataclass(frozen=True)
class Hit:
    """A file that matched, and its findings."""

    result: FileResult
    findings: tuple[Finding, ...]


@dataclass
class LiveScan:
    """Watch ``roots`` and scan what changes in them."""

    roots: Sequence[str]
    rules: RuleSet
    iocs: IocSet
    cache: ScanCache
    options: ScanOptions
    web_roots: Sequence[str] = ()
    scanned: int = 0
    watch: TreeWatch | FanotifyWatch = field(init=False)
    _scanner: FileScanner | None = None

    def start(self) -> list[Hit]:
        """Watch the trees, then scan them once (the cache spares what an earlier scan read): what matched."""
        self.watch = open_watch(list(self.roots))  # fanotify where the kernel allows it, inotify otherwise
        self._scanner = FileScanner(self.rules.compiled().rules, max_file_size=self.options.max_file_size,
                                    timeout=self.options.timeout, web_roots=self.web_roots)
        return self._full(self.roots)

    def problems(self) -> list[str]:
        """What the watch could not cover (limits reached, directories not readable), in the order met."""
        return list(self.watch.problems)

    def poll(self, timeout: float) -> Iterator[Hit]:
        """The files that matched among those changed in the next ``timeout`` seconds."""
        assert self._scanner is not None, "start() first"
        for change in self.watch.changes(timeout):
            if change.kind == "rescan":
                yield from self._full([change.path.decode("utf-8", "surrogateescape")])
                continue
            path = change.path.decode("utf-8", "surrogateescape")
            result, findings = scan_path(path, self._scanner, self.iocs, root=self._root_of(path))
            if result.skipped is None:
                self.scanned += 1
            elif result.skipped == TOO_LARGE:
                self.watch.problems.append(f"{readable(path)}: larger than [malware] max_file_size "
                                           f"({self.options.max_file_size} bytes): not scanned")
            if findings:
                yield Hit(result, tuple(findings))

    def _root_of(self, path: str) -> str | None:
        """The watched tree ``path`` lies in (the deepest, when trees nest)."""
        inside = [r for r in self.roots if path.startswith(r.rstrip("/") + "/")]
        return max(inside, key=len) if inside else None

    def close(self) -> None:
        """Stop watching."""
        self.watch.close()

    def _full(self, trees: Sequence[str]) -> list[Hit]:
        scan = Scan(self.rules, self.iocs, self.cache, self.options, web_roots=self.web_roots)
        result = scan.run(list(trees))
        self.scanned += result.stats.files
        by_path: dict[str, list[Finding]] = {}
        for finding in result.detections:
            by_path.setdefault(finding.target["path"], []).append(finding)
        return [Hit(r, tuple(by_path.get(r.path, ()))) for r in result.results]
