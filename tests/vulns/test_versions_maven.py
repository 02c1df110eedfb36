"""Maven order against Maven's own ComparableVersion (Debian's maven-artifact 3.8.7 on the JRE)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.vulns.versions import compare, sort_key
from tests.vulns.oracles import maven_compare
from tests.vulns.version_strategies import maven_release_versions, maven_versions

_BATCH = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))


@_BATCH
@given(st.lists(st.tuples(maven_versions, maven_versions), min_size=150, max_size=150))
def test_compare_is_comparableversions(pairs: list[tuple[str, str]]) -> None:
    want = maven_compare(pairs)
    got = [compare("Maven", a, b) for a, b in pairs]
    assert [(p, g, w) for p, g, w in zip(pairs, got, want, strict=True) if g != w] == []


@_BATCH
@given(st.lists(maven_release_versions, min_size=30, max_size=30))
def test_sorted_by_key_is_mavens_order(versions: list[str]) -> None:
    ordered = sorted(versions, key=lambda v: sort_key("Maven", v))
    assert all(w <= 0 for w in maven_compare(list(zip(ordered, ordered[1:], strict=False))))


# (a, b, Maven's answer), each a rule of the POM reference's "Version Order Specification"
TABLE = [
    ("1-alpha", "1-beta", -1), ("1-beta", "1-milestone", -1), ("1-milestone", "1-rc", -1),   # the qualifier order
    ("1-rc", "1-cr", 0), ("1-rc", "1-snapshot", -1), ("1-snapshot", "1", -1),
    ("1", "1-ga", 0), ("1", "1-final", 0), ("1", "1-release", 0), ("1", "1-sp", -1),
    ("1-sp", "1-abc", -1),                 # unknown qualifiers after the known ones ...
    ("1-abc", "1-abd", -1),                # ... alphabetically
    ("1.0.0", "1", 0),                     # trailing nulls are dropped
    ("1", "1.1", -1), ("1.9", "1.10", -1),  # padding; numbers as numbers
    ("1-1", "1.1", -1),                    # "-number" < ".number"
    ("1-alpha1", "1-a1", 0),               # a1 is alpha-1 (a letter right before a digit)
    ("1-a", "1-alpha", 1),                 # ... but a alone is an unknown qualifier
    ("1.0-RC1", "1.0-rc1", 0),             # case-insensitive
    ("1-alpha-1", "1-alpha-2", -1),
    ("1.0.0.x1", "1.0.0-x2", -1),          # MNG-7644: .X reads as -X
    ("2.0.rc", "2-rc", 0),
    ("1.0-SNAPSHOT", "1.0", -1),
    ("2.17.1", "2.17.0", 1), ("2.15.0-rc1", "2.15.0", -1),   # log4j's
]


@pytest.mark.parametrize(("a", "b", "want"), TABLE)
def test_table(a: str, b: str, want: int) -> None:
    assert compare("Maven", a, b) == want == -compare("Maven", b, a)


def test_table_is_mavens() -> None:
    assert maven_compare([(a, b) for a, b, _ in TABLE]) == [w for _, _, w in TABLE]


@pytest.mark.parametrize("cycle", [("0.alpha", "0", "a"), ("1-0.alpha", "1", "1-a")])
def test_mavens_own_order_has_cycles_and_compare_keeps_them(cycle: tuple[str, str, str]) -> None:
    """ComparableVersion is not transitive on every string: x < y < z < x. compare answers as Maven does
    (it is what decides Maven's ranges); no sort key can order such a set, so the matcher must compare
    against range bounds, never rely on sorting versions of this shape."""
    x, y, z = cycle
    pairs = [(x, y), (y, z), (z, x)]
    assert maven_compare(pairs) == [-1, -1, -1] == [compare("Maven", a, b) for a, b in pairs]
