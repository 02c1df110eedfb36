"""Shared helpers of the malware-scan tests: rule packs written into temp dirs, scans run in process."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from hostguard.iocs import Ioc, IocSet
from hostguard.scanner.engine import RuleSet, Scan, ScanOptions, ScanResult
from hostguard.store.scan_cache import ScanCache

MARKER = b"HOSTGUARD-TEST-MARKER-7f3a"
PACK = """
rule test_marker
{
    meta:
        severity = "high"
        description = "the test marker"
    strings:
        $m = "HOSTGUARD-TEST-MARKER-7f3a"
    condition:
        $m
}
"""


def write_pack(directory: Path, text: str = PACK) -> str:
    """A rule pack directory holding ``text``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test.yar").write_text(text)
    return str(directory)


def run(targets: Sequence[str | Path], pack: str, state: Path, *, iocs: Sequence[Ioc] = (),
        options: ScanOptions | None = None, skip_devices: dict[int, str] | None = None,
        cache: bool = True) -> ScanResult:
    """One scan with the pack, the cache in ``state``."""
    state.mkdir(parents=True, exist_ok=True)
    store = ScanCache.open(state) if cache else ScanCache.disabled()
    try:
        return Scan(RuleSet([pack], str(state)), IocSet.build(iocs, dt.date.today()), store,
                    options or ScanOptions(workers=1, nice=0, ionice="none"),
                    skip_devices=skip_devices).run([str(t) for t in targets])
    finally:
        store.close()


def hits(result: ScanResult) -> set[tuple[str, str]]:
    """(path, rule) of every detection."""
    return {(str(f.target["path"]), str(f.target["rule"])) for f in result.detections}


@contextlib.contextmanager
def mounted(fstype: str, where: Path, options: str = "") -> Iterator[Path]:
    """A file system of ``fstype`` mounted at ``where`` for the test, unmounted after."""
    where.mkdir(parents=True, exist_ok=True)
    argv = ["mount", "-t", fstype, *(["-o", options] if options else []), fstype, str(where)]
    subprocess.run(argv, check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)
