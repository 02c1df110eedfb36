"""[malware]: what `hostguard malware scan` reads, what it leaves alone, and how gently it works.

Kept apart from the engine so the config schema (and so `hostguard scan`) never imports yara_x.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostguard.config import setting

IONICE_CLASSES = ("idle", "best-effort", "none")


@dataclass(frozen=True)
class MalwareConfig:
    """[malware]: the file-content scan (YARA-X rules, SHA-256 IOCs, the scan cache, worker processes)."""

    rule_dirs: tuple[str, ...] = setting((), "Directories of your own YARA rules (*.yar, *.yara below each), "
                                             "compiled beside hostguard's, each in its own namespace (pack1, ...).")
    exclude: tuple[str, ...] = setting((), "Paths or glob patterns (fnmatch on the whole path, `*` also crosses "
                                           "`/`) never scanned; a directory excluded is not entered.")
    max_file_size: int = setting(32 << 20, "Files larger than this many bytes are not read (counted as skipped "
                                           "too_large).", min=1)
    workers: int = setting(0, "Worker processes reading and scanning files (0: one per usable CPU).", min=0, max=256)
    nice: int = setting(10, "CPU niceness of the worker processes (0 to 19; higher is gentler).", min=0, max=19)
    ionice: str = setting("idle", "I/O scheduling class of the workers: idle (only when the disk is otherwise "
                                  "unused), best-effort, or none (leave it as inherited).")
    rate_limit_mb: float = setting(0.0, "Read at most this many MB/s over all workers (0: no limit).", min=0)
    timeout: int = setting(10, "Seconds the rules may spend on one file before it is skipped (timeout).", min=1)
    watch_dirs: tuple[str, ...] = setting((), "Directories `hostguard malware watch` watches besides the web "
                                              "servers' document roots (uploads kept outside them, for instance).")
    watch_quarantine: bool = setting(False, "`hostguard malware watch` moves every file it detects into the "
                                            "quarantine (as --quarantine does).")
    web_scan_seconds: float = setting(120.0, "Seconds `hostguard scan` (family malware) may spend reading the web "
                                             "roots; what it could not read is reported as skipped (budget).", min=1)
    ioc_files: tuple[str, ...] = setting((), "IOC lists (TOML [[ioc]] tables, see docs) whose sha256 entries are "
                                             "matched against every file, besides the lists hostguard ships.")

    def __post_init__(self) -> None:
        if self.ionice not in IONICE_CLASSES:
            raise ValueError(f"ionice: {self.ionice!r} is not one of {', '.join(IONICE_CLASSES)}")
