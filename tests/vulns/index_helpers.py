"""The SQLite advisory index behind the in-memory ``Index``'s interface, so the same cases run through both."""

from __future__ import annotations

import itertools
from pathlib import Path

from hostguard.vulns.index import open_index
from hostguard.vulns.match import PackageResult
from tests.vulns.osv_helpers import Record, write_dir

_COUNTER = itertools.count()


class SqliteIndex:
    """Writes the records as an OSV copy under ``base``, indexes it, and answers ``match`` from the index."""

    def __init__(self, base: Path, *records: Record) -> None:
        n = next(_COUNTER)
        source = base / f"osv-{n}"
        source.mkdir(parents=True)
        write_dir(source, "all", *records)
        cache = base / f"cache-{n}"
        cache.mkdir()
        self.index = open_index(cache, source)

    def match(self, ecosystem: str, name: str, version: str) -> PackageResult:
        before = self.index.queries
        (result,) = self.index.match_many([(ecosystem, name, version)])
        assert self.index.queries - before <= 2  # the package's rows, then its records
        return result
