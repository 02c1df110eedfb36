"""The OSV evaluation algorithm: every event kind and their combinations, versions lists, several ranges and
affected entries, exact ecosystems, Debian backports, PyPI and npm orders. Each test names the ids that must
(and must not) match which package version. Every case runs twice: through the in-memory ``Index`` and through
the SQLite advisory index (``hostguard.vulns.index``), which must answer the same."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from hostguard.vulns.match import Index, PackageResult
from hostguard.vulns.osv import parse_record
from tests.vulns.index_helpers import SqliteIndex
from tests.vulns.osv_helpers import Record, affected, record, rng


def index(*records: Record) -> Any:
    return Index(parse_record(r) for r in records)


@pytest.fixture(autouse=True, params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each case through the in-memory index and through the SQLite index built from the same records."""
    if request.param == "sqlite":
        monkeypatch.setattr(sys.modules[__name__], "index", lambda *records: SqliteIndex(tmp_path, *records))
    return str(request.param)


def ids(result: PackageResult) -> list[str]:
    return [m.vuln.id for m in result.matches]


def fixes(result: PackageResult) -> dict[str, tuple[tuple[str, ...], str | None]]:
    return {m.vuln.id: (m.fixed, m.fix) for m in result.matches}


# --- event kinds (npm: SemVer order, no subprocess) -------------------------------------------------------------

INTRO_ZERO = record("T-ZERO", affected("npm", "left-pad", rng(("introduced", "0"), ("fixed", "1.3.0"))))


@pytest.mark.parametrize(("version", "hit"), [("0.0.1", True), ("1.2.9", True), ("1.3.0-rc.1", True),
                                              ("1.3.0", False), ("1.3.1", False), ("2.0.0", False)])
def test_introduced_zero_and_fixed(version: str, hit: bool) -> None:
    result = index(INTRO_ZERO).match("npm", "left-pad", version)
    assert ids(result) == (["T-ZERO"] if hit else [])
    if hit:
        assert fixes(result) == {"T-ZERO": (("1.3.0",), "1.3.0")}


@pytest.mark.parametrize(("version", "hit"), [("0.9.9", False), ("1.0.0", True), ("1.4.2", True), ("1.5.0", False)])
def test_introduced_is_inclusive_fixed_exclusive(version: str, hit: bool) -> None:
    idx = index(record("T-IF", affected("npm", "pkg", rng(("introduced", "1.0.0"), ("fixed", "1.5.0")))))
    assert ids(idx.match("npm", "pkg", version)) == (["T-IF"] if hit else [])


@pytest.mark.parametrize(("version", "hit"), [("1.9.0", False), ("2.0.0", True), ("2.1.4", True), ("2.1.5", False)])
def test_last_affected_is_inclusive_and_has_no_fix(version: str, hit: bool) -> None:
    idx = index(record("T-LA", affected("npm", "pkg", rng(("introduced", "2.0.0"), ("last_affected", "2.1.4")))))
    result = idx.match("npm", "pkg", version)
    assert ids(result) == (["T-LA"] if hit else [])
    if hit:
        assert fixes(result) == {"T-LA": ((), None)}  # no fix yet


@pytest.mark.parametrize(("version", "hit"), [("1.0.0", True), ("1.9.9", True), ("2.0.0", False), ("3.0.0", False)])
def test_limit_bounds_the_range(version: str, hit: bool) -> None:
    idx = index(record("T-LIM", affected("npm", "pkg", rng(("introduced", "0"), ("limit", "2.0.0")))))
    result = idx.match("npm", "pkg", version)
    assert ids(result) == (["T-LIM"] if hit else [])
    if hit:
        assert fixes(result) == {"T-LIM": ((), None)}  # a limit is no fix


@pytest.mark.parametrize(("version", "hit"), [("1.5.0", True), ("2.5.0", True), ("3.0.0", False), ("9.9.9", False)])
def test_several_limits_the_highest_counts(version: str, hit: bool) -> None:
    idx = index(record("T-LIM2", affected("npm", "pkg", rng(("limit", "2.0.0"), ("introduced", "1.0.0"),
                                                              ("limit", "3.0.0")))))
    assert ids(idx.match("npm", "pkg", version)) == (["T-LIM2"] if hit else [])


def test_limit_star_is_infinity() -> None:
    idx = index(record("T-STAR", affected("npm", "pkg", rng(("introduced", "1.0.0"), ("limit", "*")))))
    assert ids(idx.match("npm", "pkg", "99.0.0")) == ["T-STAR"]
    assert ids(idx.match("npm", "pkg", "0.1.0")) == []


def test_introduced_only_is_affected_forever_with_no_fix() -> None:
    idx = index(record("T-OPEN", affected("npm", "pkg", rng(("introduced", "3.1.0")))))
    assert fixes(idx.match("npm", "pkg", "100.0.0")) == {"T-OPEN": ((), None)}
    assert ids(idx.match("npm", "pkg", "3.0.9")) == []


UNSORTED = record("T-UNSORTED", affected("npm", "pkg", rng(
    ("fixed", "2.5.0"), ("introduced", "2.0.0"), ("fixed", "1.10.0"), ("introduced", "1.0.0"))))


@pytest.mark.parametrize(("version", "fix"), [
    ("0.9.0", None), ("1.0.0", "1.10.0"), ("1.9.0", "1.10.0"),  # 1.9 < 1.10 in SemVer, not as text
    ("1.10.0", None), ("1.99.0", None), ("2.0.0", "2.5.0"), ("2.4.9", "2.5.0"), ("2.5.0", None), ("10.0.0", None)])
def test_events_in_any_order_are_sorted_by_the_ecosystem_order(version: str, fix: str | None) -> None:
    result = index(UNSORTED).match("npm", "pkg", version)
    assert fixes(result) == ({} if fix is None else {"T-UNSORTED": ((fix,), fix)})


def test_the_smallest_fix_above_the_version_is_reported() -> None:
    # one range, several branches: the installed 1.4 is fixed by 1.5 (not 2.3, not 1.2)
    idx = index(record("T-BRANCHES", affected("npm", "pkg", rng(
        ("introduced", "1.0.0"), ("fixed", "1.2.0"), ("introduced", "1.3.0"), ("fixed", "1.5.0"),
        ("fixed", "2.3.0")))))
    assert fixes(idx.match("npm", "pkg", "1.4.0")) == {"T-BRANCHES": (("1.5.0",), "1.5.0")}
    assert fixes(idx.match("npm", "pkg", "1.2.5")) == {}


def test_same_version_introduced_and_fixed_is_not_affected() -> None:
    idx = index(record("T-TIE", affected("npm", "pkg", rng(("fixed", "1.0.0"), ("introduced", "1.0.0")))))
    assert ids(idx.match("npm", "pkg", "1.0.0")) == []
    assert ids(idx.match("npm", "pkg", "1.1.0")) == []


def test_introduced_equal_to_last_affected_is_that_version_only() -> None:
    idx = index(record("T-ONE", affected("npm", "pkg", rng(("last_affected", "1.0.0"), ("introduced", "1.0.0")))))
    assert [ids(idx.match("npm", "pkg", v)) for v in ("0.9.0", "1.0.0", "1.0.1")] == [[], ["T-ONE"], []]


def test_several_ranges_each_give_their_fix_and_fix_leaves_them_all() -> None:
    idx = index(record("T-RANGES", affected("npm", "pkg",
                                            rng(("introduced", "1.0.0"), ("fixed", "1.4.0")),
                                            rng(("introduced", "0"), ("fixed", "1.6.0")),
                                            rng(("introduced", "5.0.0"), ("fixed", "5.1.0")))))
    assert fixes(idx.match("npm", "pkg", "1.2.0")) == {"T-RANGES": (("1.4.0", "1.6.0"), "1.6.0")}
    assert fixes(idx.match("npm", "pkg", "1.5.0")) == {"T-RANGES": (("1.6.0",), "1.6.0")}
    assert fixes(idx.match("npm", "pkg", "5.0.1")) == {"T-RANGES": (("5.1.0",), "5.1.0")}
    assert fixes(idx.match("npm", "pkg", "3.0.0")) == {}


def test_a_matching_range_without_fix_means_no_fix_yet() -> None:
    idx = index(record("T-HALF", affected("npm", "pkg", rng(("introduced", "1.0.0"), ("fixed", "1.4.0")),
                                          rng(("introduced", "1.2.0")))))
    assert fixes(idx.match("npm", "pkg", "1.3.0")) == {"T-HALF": (("1.4.0",), None)}


def test_several_affected_entries_for_one_package_and_other_packages() -> None:
    rec = record("T-AFFS",
                 affected("npm", "pkg", rng(("introduced", "1.0.0"), ("fixed", "1.1.0"))),
                 affected("npm", "pkg", rng(("introduced", "2.0.0"), ("fixed", "2.2.0"))),
                 affected("npm", "other", rng(("introduced", "0"), ("fixed", "9.0.0"))))
    idx = index(rec)
    assert [ids(idx.match("npm", "pkg", v)) for v in ("1.0.5", "1.5.0", "2.1.0", "2.2.0")] == [
        ["T-AFFS"], [], ["T-AFFS"], []]
    assert fixes(idx.match("npm", "other", "3.0.0")) == {"T-AFFS": (("9.0.0",), "9.0.0")}
    assert ids(idx.match("npm", "unrelated", "1.0.5")) == []


def test_versions_list_is_an_exact_match() -> None:
    idx = index(record("T-VERS", affected("npm", "pkg", versions=["1.0.0", "1.0.2"])))
    assert [ids(idx.match("npm", "pkg", v)) for v in ("1.0.0", "1.0.1", "1.0.2", "1.0.2+build")] == [
        ["T-VERS"], [], ["T-VERS"], []]
    assert fixes(idx.match("npm", "pkg", "1.0.0")) == {"T-VERS": ((), None)}


def test_git_ranges_are_skipped_but_versions_still_match() -> None:
    git = rng(("introduced", "a" * 40), ("fixed", "b" * 40), type="GIT")
    idx = index(record("T-GIT", affected("npm", "pkg", git, versions=["4.0.0"])),
                record("T-GITONLY", affected("npm", "pkg", git)))
    assert ids(idx.match("npm", "pkg", "4.0.0")) == ["T-GIT"]
    result = idx.match("npm", "pkg", "4.0.1")
    assert (ids(result), result.unevaluated) == ([], ())


def test_aliases_are_reported_with_the_id() -> None:
    idx = index(record("GHSA-test-0001", affected("npm", "pkg", rng(("introduced", "0"), ("fixed", "2.0.0"))),
                       aliases=("CVE-2099-1000",)),
                record("T-OTHER", affected("npm", "pkg", rng(("introduced", "0"), ("fixed", "1.0.0"))),
                       aliases=("CVE-2099-2000",)))
    assert idx.match("npm", "pkg", "1.5.0").ids() == ["CVE-2099-1000", "GHSA-test-0001"]
    assert idx.match("npm", "pkg", "0.5.0").ids() == ["CVE-2099-1000", "CVE-2099-2000", "GHSA-test-0001", "T-OTHER"]


def test_semver_prerelease_order() -> None:
    idx = index(record("T-PRE", affected("npm", "pkg", rng(("introduced", "1.0.0-alpha.2"), ("fixed", "1.0.0-beta")),
                                         type="SEMVER")))
    assert [ids(idx.match("npm", "pkg", v)) for v in ("1.0.0-alpha.1", "1.0.0-alpha.2", "1.0.0-alpha.10",
                                                      "1.0.0-beta", "1.0.0")] == [[], ["T-PRE"], ["T-PRE"], [], []]


# --- ecosystems ------------------------------------------------------------------------------------------------

def test_ecosystem_is_matched_exactly() -> None:
    idx = index(record("DSA-T-11", affected("Debian:11", "openssl",
                                            rng(("introduced", "0"), ("fixed", "1.1.1w-0+deb11u1")))),
                record("DEB-T-BASE", affected("Debian", "openssl", rng(("introduced", "0"), ("fixed", "9.0-1")))),
                record("T-NPM", affected("npm", "openssl", rng(("introduced", "0")))))
    assert ids(idx.match("Debian:12", "openssl", "1.1.1n-0")) == []
    assert ids(idx.match("Debian:11", "openssl", "1.1.1n-0+deb11u5")) == ["DSA-T-11"]
    assert ids(idx.match("Debian", "openssl", "1.1.1n-0")) == ["DEB-T-BASE"]
    assert ids(idx.match("PyPI", "openssl", "1.0")) == []


# Debian backports: a stable release's fix is a +debNNuM build of the old upstream version, far below the
# version the next release (or upstream) fixed in. Each release has its own records.
BACKPORT = (
    record("DSA-T-12", affected("Debian:12", "libfoo", rng(("introduced", "0"), ("fixed", "1.2.3-1+deb12u1"))),
           aliases=("CVE-2099-3000",)),
    record("DEB-T-13", affected("Debian:13", "libfoo", rng(("introduced", "0"), ("fixed", "1.2.5-1"))),
           aliases=("CVE-2099-3000",)),
)


@pytest.mark.parametrize(("version", "fix"), [
    ("1.2.3-1", "1.2.3-1+deb12u1"), ("1.2.2-4", "1.2.3-1+deb12u1"), ("1.2.3-1~deb12u1", "1.2.3-1+deb12u1"),
    ("1.2.3-1+deb12u1", None), ("1.2.3-1+deb12u2", None), ("1.2.3-1+deb12u1+b1", None)])
def test_debian_backport_fix_in_the_release_own_records(version: str, fix: str | None) -> None:
    result = index(*BACKPORT).match("Debian:12", "libfoo", version)
    assert fixes(result) == ({} if fix is None else {"DSA-T-12": ((fix,), fix)})


def test_the_same_version_in_the_next_release_is_fixed_only_by_its_own_record() -> None:
    assert fixes(index(*BACKPORT).match("Debian:13", "libfoo", "1.2.3-1+deb12u1")) == {
        "DEB-T-13": (("1.2.5-1",), "1.2.5-1")}


@pytest.mark.parametrize(("version", "hit"), [
    ("2.0-1~bpo12+1", True),   # a backport of 2.0-1 sorts before 2.0-1
    ("1.9-3~bpo12+1", True), ("2.0-1", False), ("2.0-1+deb12u1", False), ("2.0-1~~", True)])
def test_debian_tilde_sorts_before(version: str, hit: bool) -> None:
    idx = index(record("DSA-T-BPO", affected("Debian:12", "bar", rng(("introduced", "0"), ("fixed", "2.0-1")))))
    assert ids(idx.match("Debian:12", "bar", version)) == (["DSA-T-BPO"] if hit else [])


@pytest.mark.parametrize(("version", "hit"), [("2.0-1", True), ("9.9-1", True), ("1:0.9-1", True), ("1:1.0-1", False)])
def test_debian_epoch(version: str, hit: bool) -> None:
    idx = index(record("DSA-T-EPOCH", affected("Debian:12", "baz", rng(("introduced", "0"), ("fixed", "1:1.0-1")))))
    assert ids(idx.match("Debian:12", "baz", version)) == (["DSA-T-EPOCH"] if hit else [])


@pytest.mark.parametrize(("version", "hit"), [
    ("1.0rc1", True), ("1.0a1", True), ("0.9.post3", True), ("1.0", False), ("1.0.post1", False), ("10.0", False)])
def test_pypi_pep440_order(version: str, hit: bool) -> None:
    idx = index(record("PYSEC-T-1", affected("PyPI", "requests", rng(("introduced", "0.5"), ("fixed", "1.0")))))
    assert ids(idx.match("PyPI", "requests", version)) == (["PYSEC-T-1"] if hit else [])


def test_pypi_names_are_normalized() -> None:
    idx = index(record("PYSEC-T-2", affected("PyPI", "Zope.Interface", rng(("introduced", "0"), ("fixed", "6.0")))))
    assert ids(idx.match("PyPI", "zope-interface", "5.1")) == ["PYSEC-T-2"]
    assert ids(idx.match("PyPI", "zope_interface", "5.1")) == ["PYSEC-T-2"]
    assert ids(idx.match("npm", "zope-interface", "5.1.0")) == []


def test_npm_names_are_exact() -> None:
    idx = index(record("T-NPMNAME", affected("npm", "Pkg", rng(("introduced", "0")))))
    assert ids(idx.match("npm", "pkg", "1.0.0")) == []
    assert ids(idx.match("npm", "Pkg", "1.0.0")) == ["T-NPMNAME"]


# --- what cannot be evaluated is said, never taken as "not affected" ---------------------------------------------

def test_an_ecosystem_without_order_is_unevaluated_but_versions_match() -> None:
    idx = index(record("T-NOORDER", affected("NoSuchEcosystem", "pkg", rng(("introduced", "0"), ("fixed", "2"))),
                       versions=None),
                record("T-LISTED", affected("NoSuchEcosystem", "pkg", rng(("introduced", "0"), ("fixed", "2")),
                                            versions=["1"])))
    result = idx.match("NoSuchEcosystem", "pkg", "1")
    assert ids(result) == ["T-LISTED"]
    assert [u.id for u in result.unevaluated] == ["T-NOORDER"]
    assert result.unevaluated[0].reason


def test_an_invalid_installed_version_is_unevaluated() -> None:
    idx = index(record("PYSEC-T-3", affected("PyPI", "pkg", rng(("introduced", "0"), ("fixed", "2.0")))))
    result = idx.match("PyPI", "pkg", "not a version!")
    assert (ids(result), [u.id for u in result.unevaluated]) == ([], ["PYSEC-T-3"])


def test_an_invalid_event_version_leaves_other_ranges_evaluated() -> None:
    idx = index(record("PYSEC-T-4", affected("PyPI", "pkg", rng(("introduced", "0"), ("fixed", "bogus version")),
                                             rng(("introduced", "1.0"), ("fixed", "1.5")))))
    assert fixes(idx.match("PyPI", "pkg", "1.2")) == {"PYSEC-T-4": (("1.5",), "1.5")}
    assert [u.id for u in idx.match("PyPI", "pkg", "3.0").unevaluated] == ["PYSEC-T-4"]


# --- severity ----------------------------------------------------------------------------------------------------

def test_severities_from_every_place_are_kept() -> None:
    rec = record("GHSA-test-sev",
                 affected("npm", "pkg", rng(("introduced", "0")),
                          severity=[{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}],
                          ecosystem_specific={"severity": "CRITICAL"}),
                 severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
                           {"type": "Ubuntu", "score": "medium"}],
                 database_specific={"severity": "HIGH", "cwe_ids": ["CWE-79"]})
    (match,) = index(rec).match("npm", "pkg", "1.0.0").matches
    assert [(s.type, s.score) for s in match.severity] == [
        ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), ("Ubuntu", "medium"),
        ("database_specific", "HIGH"), ("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P"), ("ecosystem_specific", "CRITICAL")]
