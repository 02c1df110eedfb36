"""The SQLite advisory index: built once and reused while the copy is unchanged, rebuilt when it changed or
is unreadable (with a note), the same records and answers as the in-memory path, and a match that reads
only the rows of the packages asked."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path
from typing import Any

import pytest

from hostguard.store import advisories
from hostguard.vulns import index as index_mod
from hostguard.vulns.index import build, match_packages, open_index
from hostguard.vulns.match import Index, PackageResult
from hostguard.vulns.osv import OsvError, load
from tests.vulns.osv_helpers import Record, affected, record, rng, write_dir, write_zip

DEB = (record("DSA-T-1", affected("Debian:12", "curl", rng(("introduced", "0"), ("fixed", "7.88.1-10+deb12u5"))),
              aliases=("CVE-2099-1",)),
       record("DLA-T-2", affected("Debian:11", "curl", rng(("introduced", "0"), ("fixed", "7.74.0-1.3+deb11u11")))))
PY = (record("PYSEC-T-3", affected("PyPI", "Flask", rng(("introduced", "0"), ("fixed", "2.0"))),
             severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]),)
ASK = [("Debian:12", "curl", "7.88.1-10+deb12u4"), ("Debian:11", "curl", "7.74.0-1.3+deb11u11"),
       ("PyPI", "flask", "1.1"), ("npm", "left-pad", "1.0.0")]


def _copy(tmp_path: Path) -> Path:
    source = tmp_path / "osv"
    write_zip(source, "Debian", *DEB)
    write_dir(source, "PyPI", *PY)
    return source


def _ids(results: list[PackageResult]) -> list[list[str]]:
    return [r.ids() for r in results]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources the index was built from, in order (every build is counted)."""
    seen: list[str] = []
    real = index_mod.build

    def counting(cache_dir: Path | str, source: str | os.PathLike[str]) -> Any:
        seen.append(os.fspath(source))
        return real(cache_dir, source)

    monkeypatch.setattr(index_mod, "build", counting)
    return seen


def _match(cache: Path, source: Path, packages: list[tuple[str, str, str]] = ASK) -> tuple[list[PackageResult], str]:
    results, idx = match_packages(cache, source, packages)
    idx.close()
    return results, idx.note


def test_built_once_and_reused_while_the_copy_is_unchanged(tmp_path: Path, builds: list[str]) -> None:
    source, cache = _copy(tmp_path), tmp_path / "cache"
    cache.mkdir()
    for _ in range(3):
        results, note = _match(cache, source)
        assert _ids(results) == [["CVE-2099-1", "DSA-T-1"], [], ["PYSEC-T-3"], []]
        assert note == ""
    assert builds == [str(source)]
    assert stat.S_IMODE(os.stat(cache / "advisories.db").st_mode) == 0o600
    assert [p.name for p in cache.iterdir()] == ["advisories.db"]  # no temporary file left behind


@pytest.mark.parametrize("change", ["add", "remove", "rewrite", "replace_zip"])
def test_rebuilt_when_the_copy_changed(tmp_path: Path, builds: list[str], change: str) -> None:
    source, cache = _copy(tmp_path), tmp_path / "cache"
    cache.mkdir()
    assert _ids(_match(cache, source)[0])[2] == ["PYSEC-T-3"]
    new = record("PYSEC-T-4", affected("PyPI", "flask", rng(("introduced", "0"), ("fixed", "3.0"))))
    expected = {"add": ["PYSEC-T-3", "PYSEC-T-4"], "remove": [], "rewrite": ["PYSEC-T-4"], "replace_zip": ["PYSEC-T-3"]}
    if change == "add":
        write_dir(source, "PyPI", new)
    elif change == "remove":
        (source / "PyPI" / "PYSEC-T-3.json").unlink()
    elif change == "rewrite":  # same name, same size is not needed: a new mtime suffices
        (source / "PyPI" / "PYSEC-T-3.json").write_text(json.dumps({**new, "id": "PYSEC-T-4"}))
        (source / "PyPI" / "PYSEC-T-3.json").rename(source / "PyPI" / "PYSEC-T-4.json")
    else:  # the Debian export replaced by a newer one with fewer records
        write_zip(source, "Debian", DEB[1])
    assert _ids(_match(cache, source)[0])[2] == expected[change]
    assert len(builds) == 2
    if change == "replace_zip":
        assert _ids(_match(cache, source)[0])[0] == []
        assert len(builds) == 2


def test_a_same_size_rewrite_is_seen(tmp_path: Path, builds: list[str]) -> None:
    source, cache = _copy(tmp_path), tmp_path / "cache"
    cache.mkdir()
    path = source / "PyPI" / "PYSEC-T-3.json"
    _match(cache, source)
    text = path.read_text()
    path.write_text(text.replace('"fixed": "2.0"', '"fixed": "0.1"'))  # same length
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert _ids(_match(cache, source)[0])[2] == []
    assert len(builds) == 2


def test_another_copy_rebuilds(tmp_path: Path, builds: list[str]) -> None:
    first, cache = _copy(tmp_path), tmp_path / "cache"
    cache.mkdir()
    second = tmp_path / "other"
    write_dir(second, "PyPI", record("PYSEC-T-9", affected("PyPI", "flask", rng(("introduced", "0")))))
    assert _ids(_match(cache, first)[0])[2] == ["PYSEC-T-3"]
    assert _ids(_match(cache, second)[0])[2] == ["PYSEC-T-9"]
    assert _ids(_match(cache, first)[0])[2] == ["PYSEC-T-3"]
    assert builds == [str(first), str(second), str(first)]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other_schema", "no_meta", "pages"])
def test_an_unreadable_index_is_rebuilt_with_a_note(tmp_path: Path, builds: list[str], damage: str) -> None:
    source, cache = _copy(tmp_path), tmp_path / "cache"
    cache.mkdir()
    _match(cache, source)
    path = cache / "advisories.db"
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "pages":  # the header and schema intact, every data page after the first two overwritten
        page = int.from_bytes(data[16:18], "big")
        path.write_bytes(data[: 2 * page] + b"\xa5" * (len(data) - 2 * page))
    else:
        import sqlite3
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version=99" if damage == "other_schema" else "DELETE FROM meta")
        db.commit()
        db.close()
    results, note = _match(cache, source)
    assert _ids(results) == [["CVE-2099-1", "DSA-T-1"], [], ["PYSEC-T-3"], []]
    assert "advisory index" in note and note.endswith("rebuilt")
    assert len(builds) == 2
    assert _match(cache, source)[1] == ""  # and the rebuilt one is reused
    assert len(builds) == 2


def test_a_failed_build_keeps_the_old_index(tmp_path: Path) -> None:
    source, cache = _copy(tmp_path), tmp_path / "cache"
    cache.mkdir()
    _match(cache, source)
    before = (cache / "advisories.db").read_bytes()
    with pytest.raises(OsvError):
        build(cache, tmp_path / "missing")
    assert (cache / "advisories.db").read_bytes() == before
    assert [p.name for p in cache.iterdir()] == ["advisories.db"]


def test_the_index_holds_what_load_keeps(tmp_path: Path) -> None:
    """Duplicates (the later ``modified`` wins, whatever the order), withdrawals, GIT ranges, skipped records:
    the same records and the same statistics as ``osv.load``."""
    old = record("GHSA-test-dup1", affected("npm", "a", rng(("introduced", "0"), ("fixed", "1.0.0"))),
                 modified="2024-01-01T00:00:00Z")
    new = record("GHSA-test-dup1", affected("npm", "b", rng(("introduced", "0"), ("fixed", "1.0.1"))),
                 modified="2024-02-01T00:00:00Z")
    gone = {**record("GHSA-test-gone", affected("npm", "a", rng(("introduced", "0")))), "withdrawn": "2024-03-01"}
    back = record("GHSA-test-back", affected("npm", "a", rng(("introduced", "0"))), modified="2024-05-01T00:00:00Z")
    back_withdrawn = {**back, "modified": "2024-04-01T00:00:00Z", "withdrawn": "2024-04-01"}
    git = record("OSV-T-GIT", affected("npm", "a", rng(("introduced", "a" * 40), type="GIT"), versions=["0.5.0"]))
    write_dir(tmp_path / "osv", "a", new, gone, back_withdrawn, git)
    write_dir(tmp_path / "osv", "b", old, back)
    write_zip(tmp_path / "osv", "c", old, raw={"BROKEN.json": b"{"})
    cache = tmp_path / "cache"
    cache.mkdir()
    info = build(cache, tmp_path / "osv")
    expected = load(tmp_path / "osv").stats
    assert (info.stats.files, info.stats.records, info.stats.kept, info.stats.withdrawn, info.stats.duplicates,
            info.stats.git_ranges) == (expected.files, expected.records, expected.kept, expected.withdrawn,
                                       expected.duplicates, expected.git_ranges) == (8, 7, 3, 1, 3, 1)
    assert [(s.source, s.reason) for s in info.stats.skipped] == [(s.source, s.reason) for s in expected.skipped]
    idx = open_index(cache, tmp_path / "osv")
    results = idx.match_many([("npm", "a", "0.5.0"), ("npm", "b", "1.0.0"), ("npm", "a", "2.0.0")])
    idx.close()
    assert _ids(results) == [["GHSA-test-back", "OSV-T-GIT"], ["GHSA-test-dup1"], ["GHSA-test-back"]]


@pytest.mark.parametrize("layout", ["zip_per_ecosystem", "nested_dirs", "single_zip", "single_json"])
def test_export_layouts(tmp_path: Path, layout: str) -> None:
    if layout == "zip_per_ecosystem":
        write_zip(tmp_path / "osv", "Debian", *DEB)
        write_zip(tmp_path / "osv", "PyPI", *PY)
        source, expected = tmp_path / "osv", [["CVE-2099-1", "DSA-T-1"], [], ["PYSEC-T-3"], []]
    elif layout == "nested_dirs":
        write_dir(tmp_path / "osv", "Debian/12/deeper", DEB[0])
        write_dir(tmp_path / "osv", "PyPI", *PY)
        source, expected = tmp_path / "osv", [["CVE-2099-1", "DSA-T-1"], [], ["PYSEC-T-3"], []]
    elif layout == "single_zip":
        source, expected = write_zip(tmp_path / "osv", "Debian", *DEB), [["CVE-2099-1", "DSA-T-1"], [], [], []]
    else:
        source = write_dir(tmp_path / "osv", "PyPI", *PY) / "PYSEC-T-3.json"
        expected = [[], [], ["PYSEC-T-3"], []]
    cache = tmp_path / "cache"
    cache.mkdir()
    assert _ids(_match(cache, source)[0]) == expected


# --- the same answers as the in-memory path on many generated records ----------------------------------------------

def _generated(seed: int) -> tuple[list[Record], list[tuple[str, str, str]]]:
    rand = random.Random(seed)
    ecosystems = {"npm": lambda: f"{rand.randrange(4)}.{rand.randrange(12)}.{rand.randrange(4)}",
                  "PyPI": lambda: f"{rand.randrange(4)}.{rand.randrange(12)}" + rand.choice(["", "rc1", ".post1"]),
                  "Debian:12": lambda: f"{rand.randrange(3)}.{rand.randrange(9)}-{rand.randrange(1, 4)}"
                                       + rand.choice(["", "+deb12u1", "~bpo12+1"])}
    names = {"npm": ["a", "b", "C"], "PyPI": ["Flask", "zope.interface", "req_uests"], "Debian:12": ["curl", "xz"]}
    records = []
    for i in range(300):
        affs = []
        for _ in range(rand.randrange(1, 3)):
            eco = rand.choice(list(ecosystems))
            ranges = []
            for _ in range(rand.randrange(0, 3)):
                kinds = ["introduced"] + rand.sample(["fixed", "last_affected", "limit", "introduced", "fixed"],
                                                     rand.randrange(0, 4))
                ranges.append(rng(*[(k, "0" if k == "introduced" and rand.random() < 0.3 else ecosystems[eco]())
                                    for k in kinds], type=rand.choice(["ECOSYSTEM", "ECOSYSTEM", "SEMVER", "GIT"])))
            versions = [ecosystems[eco]() for _ in range(rand.randrange(0, 3))] or None
            affs.append(affected(eco, rand.choice(names[eco]), *ranges, versions=versions,
                                 severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:N"}]
                                 if rand.random() < 0.2 else []))
        rec = record(f"GEN-{i}", *affs, aliases=tuple(f"CVE-2099-{rand.randrange(50)}" for _ in range(rand.randrange(2))),
                     modified=f"2024-0{rand.randrange(1, 10)}-01T00:00:00Z")
        if rand.random() < 0.05:
            rec["withdrawn"] = "2024-01-01T00:00:00Z"
        records.append(rec)
    asks = [(eco, rand.choice(names[eco] + ["missing"]), ecosystems[eco]()) for eco in ecosystems for _ in range(150)]
    asks += [("npm", "a", "not a version"), ("PyPI", "flask", "!!")]
    return records, asks


def _canon(result: PackageResult) -> Any:
    return ([(m.vuln.id, m.vuln.aliases, m.vuln.summary, m.fixed, m.fix, m.severity) for m in result.matches],
            [(u.id, u.reason) for u in result.unevaluated])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_records_answer_as_in_memory(tmp_path: Path, seed: int) -> None:
    records, asks = _generated(seed)
    source = tmp_path / "osv"
    write_zip(source, "all", *records[:150])
    write_dir(source, "more", *records[150:])
    cache = tmp_path / "cache"
    cache.mkdir()
    memory = Index(load(source).vulns.values()).match_many(asks)
    results, _ = _match(cache, source, asks)
    assert [_canon(r) for r in results] == [_canon(r) for r in memory]
    assert sum(bool(r.matches) for r in memory) > 50 and any(r.unevaluated for r in memory)  # the cases bite


# --- a match reads the rows of the asked packages, not the records -----------------------------------------------

def test_queries_and_rows_follow_the_packages_asked_not_the_records(tmp_path: Path) -> None:
    records = [record(f"GHSA-test-{i}", affected("npm", f"pkg{i % 1500}", rng(("introduced", "0"), ("fixed", "2.0.0"))),
                      affected("PyPI", f"py{i % 700}", rng(("introduced", "0"))))
               for i in range(3000)]
    write_zip(tmp_path / "osv", "npm", *records)
    cache = tmp_path / "cache"
    cache.mkdir()
    idx = open_index(cache, tmp_path / "osv")
    results = idx.match_many([("npm", "pkg7", "1.0.0"), ("npm", "pkg8", "3.0.0"), ("PyPI", "nothing", "1")])
    assert (idx.queries, idx.rows_read) == (3, 4 + 4)  # npm rows, PyPI rows, records: 4 rows, their 4 records
    assert _ids(results) == [["GHSA-test-1507", "GHSA-test-7"], [], []]
    idx.close()

    idx = open_index(cache, tmp_path / "osv")
    asked = [("npm", f"pkg{i}", "1.0.0") for i in range(1200)]
    results = idx.match_many(asked)
    batches = -(-1200 // advisories.BATCH)
    assert idx.queries == batches + -(-2400 // advisories.BATCH)  # the rows, then the 2,400 records, in batches
    assert idx.rows_read == 2400 + 2400
    assert results[1199].ids() == ["GHSA-test-1199", "GHSA-test-2699"]
    idx.close()
