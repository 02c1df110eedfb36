"""Fix records: the backups and manifest ``hostguard fix`` keeps for every fix, and restoring them.

Each fix gets a directory ``<state dir>/fixes/<ID>/`` (ID sorts by time) holding ``manifest.json`` and a copy
of every file the fix touches, taken *before* anything is written: if hostguard dies half-way, the backups
are already there. The manifest records each file's sha256 before and after the fix, its mode and owner,
so an undo can refuse when someone changed the file since (restoring would throw their change away), and
restores byte for byte, with the old mode and owner, through ``respond/apply.py``'s safe write path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from hostguard.host.base import FileMissing, HostError, read_regular
from hostguard.remediation import Write
from hostguard.respond.apply import DIR_FLAGS, ApplyError, apply

FIX_ID = re.compile(r"\d{8}-\d{6}-\d{6}")
MANIFEST = "manifest.json"
# Statuses a fix goes through: written before the first change, then one of the others.
APPLYING, APPLIED, ROLLED_BACK, UNDONE, CONFIRMED, FAILED = (
    "applying", "applied", "rolled back", "undone", "confirmed", "failed")


class RecordError(Exception):
    """A fix record is missing or unreadable, or a restore would lose someone's change."""


@dataclass
class FileRecord:
    """One file a fix touches: where its backup is (None when the fix created it) and its sha256 around the fix."""

    path: str
    backup: str | None
    sha_before: str | None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    sha_after: str | None = None


@dataclass
class FixRecord:
    """What one fix did, enough to undo it from another process (the timed rollback) or another day."""

    id: str
    root: str
    host_key: str
    fingerprint: str
    check: str
    title: str
    created: str
    status: str = APPLYING
    files: list[FileRecord] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)   # run, in order (as run: rooted under a tree)
    undo: list[list[str]] = field(default_factory=list)       # their undo commands, to run in reverse
    reload: list[list[str]] = field(default_factory=list)     # live reloads, run again after a restore
    timer: dict[str, Any] | None = None
    session: int = 0
    notes: list[str] = field(default_factory=list)

    def save(self, directory: Path) -> None:
        """Write the manifest atomically (a reader never sees half of it)."""
        tmp = directory / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, directory / MANIFEST)


def fixes_dir(state_dir: Path) -> Path:
    """Where fix records live inside the state directory."""
    return state_dir / "fixes"


def new_record_dir(state_dir: Path, when: datetime) -> tuple[str, Path]:
    """A fresh, exclusive record directory whose name sorts by time (UTC, microseconds)."""
    base = fixes_dir(state_dir)
    base.mkdir(mode=0o700, exist_ok=True)
    stamp = when.astimezone(UTC)
    while True:
        fix_id = stamp.strftime("%Y%m%d-%H%M%S-%f")
        try:
            (base / fix_id).mkdir(mode=0o700)
            return fix_id, base / fix_id
        except FileExistsError:
            stamp = stamp.replace(microsecond=(stamp.microsecond + 1) % 1_000_000)


def load(state_dir: Path, fix_id: str) -> tuple[FixRecord, Path]:
    """The record of fix ``fix_id`` and its directory."""
    if not FIX_ID.fullmatch(fix_id):
        raise RecordError(f"{fix_id!r} is not a fix id (as `hostguard fix --list` shows them)")
    directory = fixes_dir(state_dir) / fix_id
    try:
        data = json.loads((directory / MANIFEST).read_text())
        files = [FileRecord(**f) for f in data.pop("files")]
        return FixRecord(files=files, **data), directory
    except FileNotFoundError:
        raise RecordError(f"no fix {fix_id} in {fixes_dir(state_dir)} (see hostguard fix --list)") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise RecordError(f"fix {fix_id}: unreadable record ({exc})") from exc


def all_records(state_dir: Path) -> list[FixRecord]:
    """Every readable fix record, oldest first."""
    base = fixes_dir(state_dir)
    if not base.is_dir():
        return []
    out = []
    for entry in sorted(base.iterdir()):
        if FIX_ID.fullmatch(entry.name):
            with contextlib.suppress(RecordError):
                out.append(load(state_dir, entry.name)[0])
    return out


@contextlib.contextmanager
def _parent(root: str, path: str) -> Iterator[tuple[int | None, str]]:
    """A descriptor of ``path``'s directory below ``root`` (every component opened without following links)
    and its base name; None when a directory on the way is missing."""
    parts = PurePosixPath(path).parts
    if not path.startswith("/") or ".." in parts or len(parts) < 2:
        raise RecordError(f"{path}: a path must be absolute, without '..'")
    fd = os.open(root, DIR_FLAGS)
    try:
        for part in parts[1:-1]:
            try:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                yield None, parts[-1]
                return
            except OSError as exc:
                raise RecordError(f"{path}: {part} is not a plain directory ({exc.strerror})") from exc
            os.close(fd)
            fd = nxt
        yield fd, parts[-1]
    finally:
        os.close(fd)


def read_file(root: str, path: str) -> tuple[bytes, os.stat_result] | None:
    """A file's bytes and stat inside ``root`` (None when absent); a symlink or non-regular file is refused."""
    with _parent(root, path) as (fd, name):
        if fd is None:
            return None
        try:
            return read_regular(name, path, dir_fd=fd)
        except FileMissing:
            return None
        except HostError as exc:
            raise RecordError(f"{exc} (a symlink is never followed)") from exc


def sha256(data: bytes | None) -> str | None:
    """The hex sha256 of ``data`` (None for an absent file)."""
    return None if data is None else hashlib.sha256(data).hexdigest()


def current_sha(root: str, path: str) -> str | None:
    """The sha256 of the file now (None when absent)."""
    found = read_file(root, path)
    return sha256(found[0] if found else None)


def back_up(record: FixRecord, directory: Path, root: str, paths: list[str]) -> None:
    """Copy every file in ``paths`` into ``directory/files/`` and record it (absent files are recorded too:
    undoing the fix removes them again)."""
    (directory / "files").mkdir(mode=0o700, exist_ok=True)
    for path in dict.fromkeys(paths):
        if any(f.path == path for f in record.files):
            continue
        found = read_file(root, path)
        if found is None:
            record.files.append(FileRecord(path, None, None))
            continue
        data, st = found
        name = f"files/{len(record.files):03d}"
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        record.files.append(FileRecord(path, name, sha256(data), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
    record.save(directory)


def record_after(record: FixRecord, directory: Path, root: str) -> None:
    """Record each file's sha256 as the fix left it (what an undo expects to find)."""
    for item in record.files:
        item.sha_after = current_sha(root, item.path)
    record.save(directory)


def changed_since(record: FixRecord) -> list[str]:
    """Files whose content is no longer what the fix left (an undo would lose that change)."""
    return [f.path for f in record.files if current_sha(record.root, f.path) != f.sha_after]


def restore(record: FixRecord, directory: Path) -> list[str]:
    """Put every file back as it was before the fix (content, mode, owner; a file the fix created is
    removed). Returns the paths restored. Files already as they were are left alone."""
    restored = []
    for item in record.files:
        now = current_sha(record.root, item.path)
        if now == item.sha_before:
            continue
        if item.backup is None:
            _remove(record.root, item.path)
        else:
            data = (directory / item.backup).read_bytes()
            if sha256(data) != item.sha_before:
                raise RecordError(f"fix {record.id}: the backup of {item.path} is damaged (sha256 differs)")
            try:
                apply([Write(item.path, data.decode("utf-8", "surrogateescape"), f"{item.mode or 0o600:04o}",
                             f"{item.uid or 0}:{item.gid or 0}")], record.root)
            except ApplyError as exc:
                raise RecordError(f"restoring {item.path}: {exc}") from exc
        restored.append(item.path)
    return restored


def remove(root: str, path: str) -> None:
    """Remove a file a change created (only a regular file, never through a symlink; absent: nothing)."""
    _remove(root, path)


def _remove(root: str, path: str) -> None:
    """Remove a file the fix created (only a regular file, never through a symlink)."""
    with _parent(root, path) as (fd, name):
        if fd is None:
            return
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode):
            raise RecordError(f"{path}: not a regular file, left alone")
        os.unlink(name, dir_fd=fd)
