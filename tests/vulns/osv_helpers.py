"""OSV records for the tests, written here: a builder and a writer of the layouts osv.dev exports."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def rng(*events: tuple[str, str], type: str = "ECOSYSTEM") -> dict[str, Any]:  # noqa: A002 - the schema's word
    """A range from (kind, version) pairs, in the order given."""
    return {"type": type, "events": [{kind: version} for kind, version in events]}


def affected(ecosystem: str, name: str, *ranges: dict[str, Any], versions: list[str] | None = None,
             **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": name}, "ranges": list(ranges)}
    if versions is not None:
        entry["versions"] = versions
    entry.update(extra)
    return entry


def record(vid: str, *affects: dict[str, Any], aliases: tuple[str, ...] = (), modified: str = "2024-01-01T00:00:00Z",
           **extra: Any) -> Record:
    rec: Record = {"schema_version": "1.6.0", "id": vid, "modified": modified, "aliases": list(aliases),
                   "summary": f"test advisory {vid}", "affected": list(affects)}
    rec.update(extra)
    return rec


def write_dir(root: Path, ecosystem_dir: str, *records: Record) -> Path:
    """``root/<ecosystem_dir>/<ID>.json`` per record (``ecosystem_dir`` may hold subdirectories)."""
    directory = root / ecosystem_dir
    directory.mkdir(parents=True, exist_ok=True)
    for rec in records:
        (directory / f"{rec['id']}.json").write_text(json.dumps(rec))
    return directory


def write_zip(root: Path, ecosystem_dir: str, *records: Record, raw: dict[str, bytes] | None = None) -> Path:
    """``root/<ecosystem_dir>/all.zip`` of ``<ID>.json`` members, plus ``raw`` members as given."""
    directory = root / ecosystem_dir
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "all.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rec in records:
            archive.writestr(f"{rec['id']}.json", json.dumps(rec))
        for name, data in (raw or {}).items():
            archive.writestr(name, data)
    return path
