"""Debian and Ubuntu order against dpkg itself (``dpkg --compare-versions``)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.vulns.versions import InvalidVersion, compare, sort_key
from tests.vulns.oracles import dpkg_compare, dpkg_flags
from tests.vulns.version_strategies import dpkg_versions

_BATCH = settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))


@_BATCH
@given(st.lists(st.tuples(dpkg_versions, dpkg_versions), min_size=100, max_size=100))
def test_compare_is_dpkgs(pairs: list[tuple[str, str]]) -> None:
    want = dpkg_compare(pairs)
    got = [compare("Debian:12", a, b) for a, b in pairs]
    assert [(p, g, w) for p, g, w in zip(pairs, got, want, strict=True) if g != w] == []
    assert [compare("Ubuntu:22.04:LTS", a, b) for a, b in pairs] == want


@_BATCH
@given(st.lists(dpkg_versions, min_size=30, max_size=30))
def test_sorted_by_key_is_dpkgs_order(versions: list[str]) -> None:
    ordered = sorted(versions, key=lambda v: sort_key("Debian", v))
    assert all(w <= 0 for w in dpkg_compare(list(zip(ordered, ordered[1:], strict=False))))


# (a, b, dpkg's answer): each a rule of deb-version(7), and the Debian security cases the matcher lives on
TABLE = [
    ("1.2.3-1+deb12u1", "1.2.3-1", 1),        # a stable update's revision is newer than the release's
    ("1.2.3-1+deb12u1", "1.2.4-1", -1),        # ... and older than the next upstream
    ("2.36.1-8+deb12u1", "2.36.1-8", 1),
    ("1:1.0-1", "2.0-1", 1),                   # the epoch comes first
    ("0:1.0", "1.0", 0),                       # a missing epoch is 0
    ("1.0", "1.0-0", 0),                       # a missing revision equals "0"
    ("1.0~rc1", "1.0", -1),                    # ~ sorts before even the end of the string
    ("1.0~~", "1.0~", -1),
    ("1.0~rc1-1", "1.0-1", -1),
    ("1.0+dfsg-1", "1.0-1", 1),                # + is a non-letter: after the end
    ("1.0a", "1.0+", -1),                      # letters before non-letters
    ("1.0a", "1.0", 1),
    ("1.10", "1.9", 1),                        # digits compare as numbers
    ("1.01", "1.1", 0),                        # ... leading zeros and all
    ("1.2.3-1~bpo12+1", "1.2.3-1", -1),        # a backport is older than the release's revision
    ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", -1),
]


@pytest.mark.parametrize(("a", "b", "want"), TABLE)
def test_table(a: str, b: str, want: int) -> None:
    assert compare("Debian:12", a, b) == want == -compare("Debian:12", b, a)


def test_table_is_dpkgs() -> None:
    assert dpkg_compare([(a, b) for a, b, _ in TABLE]) == [w for _, _, w in TABLE]


_SYNTAX = st.one_of(
    st.text(alphabet="0123456789a:.-+~!_A", min_size=1, max_size=12),
    st.sampled_from([":1", "1:", "1.0-", "a1", "1:a", "x:1", "2147483648:1", "2147483647:1", "1.0-a!b", "0:1-1:2",
                     "1.0-1-2", "1:2:3", "1-", "-1", "1_0", "1.0-1_2", "+0:0", "+1:1",
                     "-0:1", "-1:1", "+:1", "00:1"]),
)


@settings(max_examples=150, deadline=None)
@given(_SYNTAX)
def test_accepts_what_dpkg_accepts_cleanly(version: str) -> None:
    flagged = dpkg_flags(version)
    try:
        sort_key("Debian", version)
    except InvalidVersion:
        assert flagged, version
    else:
        assert not flagged, version
