"""Loading OSV records: the directory and all.zip layouts, read recursively; malformed records skipped and
counted with their source; withdrawn and duplicate records; the ecosystem filter; fuzzed bytes and JSON."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.vulns import osv
from hostguard.vulns.osv import MalformedRecord, OsvError, load, parse_record
from tests.vulns.osv_helpers import affected, record, rng, write_dir, write_zip

PY = record("PYSEC-T-10", affected("PyPI", "flask", rng(("introduced", "0"), ("fixed", "2.0"))), aliases=("CVE-2099-10",))
DEB12 = record("DSA-T-20", affected("Debian:12", "curl", rng(("introduced", "0"), ("fixed", "7.88.1-10+deb12u5"))))
DEB11 = record("DLA-T-21", affected("Debian:11", "curl", rng(("introduced", "0"), ("fixed", "7.74.0-1.3+deb11u11"))))
NPM = record("GHSA-test-npm1", affected("npm", "lodash", rng(("introduced", "0"), ("fixed", "4.17.21"))))


def test_directories_of_json_files_are_read_recursively(tmp_path: Path) -> None:
    write_dir(tmp_path, "PyPI", PY)
    write_dir(tmp_path, "Debian/nested/deeper", DEB12, DEB11)
    (tmp_path / "PyPI" / "README.md").write_text("not a record")
    db = load(tmp_path)
    assert sorted(db.vulns) == ["DLA-T-21", "DSA-T-20", "PYSEC-T-10"]
    assert db.vulns["PYSEC-T-10"].aliases == ("CVE-2099-10",)
    assert (db.stats.files, db.stats.records, db.stats.kept, db.stats.skipped) == (3, 3, 3, [])


def test_all_zip_per_ecosystem(tmp_path: Path) -> None:
    write_zip(tmp_path, "npm", NPM)
    write_zip(tmp_path, "Debian", DEB12, DEB11)
    write_dir(tmp_path, "PyPI", PY)
    db = load(tmp_path)
    assert sorted(db.vulns) == ["DLA-T-21", "DSA-T-20", "GHSA-test-npm1", "PYSEC-T-10"]
    affected_entry = db.vulns["DSA-T-20"].affected[0]
    assert (affected_entry.ecosystem, affected_entry.name) == ("Debian:12", "curl")
    assert [(e.kind, e.version) for e in affected_entry.ranges[0].events] == [
        ("introduced", "0"), ("fixed", "7.88.1-10+deb12u5")]


def test_a_single_zip_or_json_file_is_a_database(tmp_path: Path) -> None:
    zpath = write_zip(tmp_path, "npm", NPM)
    jpath = write_dir(tmp_path, "PyPI", PY) / "PYSEC-T-10.json"
    assert list(load(zpath).vulns) == ["GHSA-test-npm1"]
    assert list(load(jpath).vulns) == ["PYSEC-T-10"]


def test_ecosystem_filter_is_exact(tmp_path: Path) -> None:
    write_zip(tmp_path, "Debian", DEB12, DEB11)
    write_dir(tmp_path, "PyPI", PY)
    db = load(tmp_path, {"Debian:12"})
    assert list(db.vulns) == ["DSA-T-20"]
    assert db.stats.records == 3


def test_malformed_records_are_skipped_and_counted_with_their_source(tmp_path: Path) -> None:
    directory = write_dir(tmp_path, "PyPI", PY)
    (directory / "GARBAGE.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (directory / "TRUNCATED.json").write_text(json.dumps(PY)[:40])
    (directory / "LIST.json").write_text("[1, 2]")
    (directory / "NOID.json").write_text(json.dumps({**PY, "id": None}))
    (directory / "BADAFFECTED.json").write_text(json.dumps({**PY, "id": "X-1", "affected": {"package": "flask"}}))
    (directory / "BADEVENT.json").write_text(json.dumps(record("X-2", affected("PyPI", "a", rng(("fixed", "1.0")))))
                                             .replace('"1.0"', "1.0"))
    (directory / "DEEP.json").write_text("[" * 100000 + "]" * 100000)
    write_zip(tmp_path, "npm", NPM, raw={"BROKEN.json": b"{not json", "notes.txt": b"ignored"})
    (tmp_path / "Alpine").mkdir()
    (tmp_path / "Alpine" / "all.zip").write_bytes(b"PK\x03\x04 this is no archive")
    db = load(tmp_path)
    assert sorted(db.vulns) == ["GHSA-test-npm1", "PYSEC-T-10"]
    skipped = {os.path.relpath(s.source, tmp_path): s.reason for s in db.stats.skipped}
    assert sorted(skipped) == ["Alpine/all.zip", "PyPI/BADAFFECTED.json", "PyPI/BADEVENT.json", "PyPI/DEEP.json",
                               "PyPI/GARBAGE.json", "PyPI/LIST.json", "PyPI/NOID.json", "PyPI/TRUNCATED.json",
                               "npm/all.zip:BROKEN.json"]
    assert skipped["PyPI/GARBAGE.json"] == "not UTF-8 text"
    assert skipped["PyPI/NOID.json"] == "id is not a string"
    assert skipped["PyPI/BADAFFECTED.json"] == "affected is not a list"
    assert skipped["PyPI/BADEVENT.json"] == "affected[0].ranges[0].events[0].fixed is not a string"
    assert skipped["Alpine/all.zip"].startswith("unreadable archive")


def test_records_too_large_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(osv, "MAX_RECORD_BYTES", 2000)
    big = record("PYSEC-T-BIG", affected("PyPI", "flask", versions=[f"1.{i}" for i in range(500)]))
    write_dir(tmp_path, "PyPI", PY, big)
    write_zip(tmp_path, "PyPI2", big)
    db = load(tmp_path)
    assert list(db.vulns) == ["PYSEC-T-10"]
    assert sorted((os.path.relpath(s.source, tmp_path), s.reason) for s in db.stats.skipped) == [
        ("PyPI/PYSEC-T-BIG.json", "larger than 2000 bytes"), ("PyPI2/all.zip:PYSEC-T-BIG.json", "larger than 2000 bytes")]


def test_withdrawn_records_are_left_out(tmp_path: Path) -> None:
    write_dir(tmp_path, "PyPI", PY, {**record("PYSEC-T-11", affected("PyPI", "flask", rng(("introduced", "0")))),
                                     "withdrawn": "2024-02-01T00:00:00Z"})
    db = load(tmp_path)
    assert (list(db.vulns), db.stats.withdrawn) == (["PYSEC-T-10"], 1)


def test_duplicates_keep_the_latest_modified_and_a_later_withdrawal_wins(tmp_path: Path) -> None:
    old = record("GHSA-test-dup1", affected("npm", "a", rng(("introduced", "0"), ("fixed", "1.0.0"))),
                 modified="2023-01-01T00:00:00Z")
    new = record("GHSA-test-dup1", affected("npm", "a", rng(("introduced", "0"), ("fixed", "1.0.1"))),
                 modified="2024-01-01T00:00:00Z")
    gone = {**record("GHSA-test-dup2", affected("npm", "b", rng(("introduced", "0"))), modified="2024-05-01T00:00:00Z"),
            "withdrawn": "2024-05-01T00:00:00Z"}
    kept = record("GHSA-test-dup2", affected("npm", "b", rng(("introduced", "0"))), modified="2024-01-01T00:00:00Z")
    write_zip(tmp_path, "a", new, kept)
    write_zip(tmp_path, "b", old, gone)
    db = load(tmp_path)
    assert list(db.vulns) == ["GHSA-test-dup1"]
    assert db.vulns["GHSA-test-dup1"].affected[0].ranges[0].events[1].version == "1.0.1"
    assert (db.stats.duplicates, db.stats.withdrawn) == (2, 1)


def test_git_ranges_are_counted(tmp_path: Path) -> None:
    write_dir(tmp_path, "OSS-Fuzz", record("OSV-T-1", affected("OSS-Fuzz", "x", rng(
        ("introduced", "a" * 40), ("fixed", "b" * 40), type="GIT"), versions=["1.0"])))
    assert load(tmp_path).stats.git_ranges == 1


def test_entries_without_package_are_dropped_not_the_record() -> None:
    vuln = parse_record(record("CVE-T-1", {"ranges": [rng(("introduced", "a" * 40), type="GIT")]},
                               affected("npm", "x", rng(("introduced", "0")))))
    assert [(a.ecosystem, a.name) for a in vuln.affected] == [("npm", "x")]


def test_an_event_written_with_two_kinds_keeps_both() -> None:
    rec = record("T-TWO", affected("npm", "x"))
    rec["affected"][0]["ranges"] = [{"type": "SEMVER", "events": [{"introduced": "1.0.0", "fixed": "1.0.2"}]}]
    assert [(e.kind, e.version) for e in parse_record(rec).affected[0].ranges[0].events] == [
        ("introduced", "1.0.0"), ("fixed", "1.0.2")]


@pytest.mark.parametrize("path", ["missing", "file.txt"])
def test_an_unusable_path_is_an_osv_error(tmp_path: Path, path: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OsvError, match=path):
        load(tmp_path / path)


# --- fuzz ------------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "aliases", "affected", "package", "ecosystem", "name", "ranges", "type", "events",
                         "introduced", "fixed", "last_affected", "limit", "versions", "severity", "score",
                         "withdrawn", "modified", "summary", "database_specific", "ecosystem_specific", "x"]),
        children, max_size=6),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_is_a_record_or_malformed(value: object) -> None:
    try:
        vuln = parse_record(value)
    except MalformedRecord:
        return
    assert isinstance(vuln.id, str) and vuln.id


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_record_or_malformed(raw: bytes) -> None:
    try:
        vuln = osv._decode(raw)
    except MalformedRecord as exc:
        assert str(exc)  # a reason to show
        return
    assert vuln.id


def _mutate_zip(data: bytes, at: int, byte: int) -> bytes:
    return data[:at] + bytes([byte]) + data[at + 1:] if data else data


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("PYSEC-T-10.json", json.dumps(PY))
        archive.writestr("GHSA-test-npm1.json", json.dumps(NPM))
    return buffer.getvalue()


ZIP = _zip_bytes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(ZIP) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.binary(max_size=64))
def test_a_damaged_archive_never_stops_the_load(tmp_path: Path, flips: list[tuple[int, int]], tail: bytes) -> None:
    data = ZIP
    for at, byte in flips:
        data = _mutate_zip(data, at, byte)
    directory = tmp_path / "fuzz"
    directory.mkdir(exist_ok=True)
    (directory / "all.zip").write_bytes(data + tail)
    db = load(directory)
    assert set(db.vulns) <= {"PYSEC-T-10", "GHSA-test-npm1"}
    assert db.stats.kept + len(db.stats.skipped) >= 1 or db.stats.files == 0
