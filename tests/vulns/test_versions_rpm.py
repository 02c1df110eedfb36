"""RPM order against rpm itself (``rpm.labelCompare`` from Debian's python3-rpm, run by the system python)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.vulns.versions import InvalidVersion, compare, sort_key
from tests.vulns.oracles import rpm_compare
from tests.vulns.version_strategies import rpm_versions

_BATCH = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))


@_BATCH
@given(st.lists(st.tuples(rpm_versions, rpm_versions), min_size=100, max_size=100))
def test_compare_is_labelcompares(pairs: list[tuple[str, str]]) -> None:
    want = rpm_compare(pairs)
    got = [compare("Red Hat", a, b) for a, b in pairs]
    assert [(p, g, w) for p, g, w in zip(pairs, got, want, strict=True) if g != w] == []


@_BATCH
@given(st.lists(rpm_versions, min_size=30, max_size=30))
def test_sorted_by_key_is_rpms_order(versions: list[str]) -> None:
    ordered = sorted(versions, key=lambda v: sort_key("AlmaLinux", v))
    assert all(w <= 0 for w in rpm_compare(list(zip(ordered, ordered[1:], strict=False))))


# (a, b, rpm's answer), each a rule of rpmvercmp / labelCompare
TABLE = [
    ("1.0~rc1-1", "1.0-1", -1),              # ~ sorts before everything, even the end
    ("1.0^git1-1", "1.0-1", 1),              # ^ sorts after the end ...
    ("1.0^git1-1", "1.0.1-1", -1),           # ... but before any further segment
    ("1.0a-1", "1.0-1", 1),
    ("1.0a-1", "1.0.1-1", -1),               # a number is newer than letters
    ("1.01-1", "1.1-1", 0),                  # numbers without their leading zeros
    ("1.0-1", "1_0-1", 0),                   # separators only separate
    ("2:1.0-1", "1:9.9-9", 1),               # the epoch first
    ("0:1.0-1", "1.0-1", 0),                 # a missing epoch is 0
    ("1.0", "1.0-1", -1),                    # a missing release sorts below any release
    ("3.10.0-1160.el7", "3.10.0-1062.el7", 1),
    ("1.2.3-4.el9_2", "1.2.3-4.el9", 1),
    ("abc-1", "ABC-1", 1),                   # letters byte by byte: lower case after upper
]


@pytest.mark.parametrize(("a", "b", "want"), TABLE)
def test_table(a: str, b: str, want: int) -> None:
    assert compare("Rocky Linux:9", a, b) == want == -compare("Rocky Linux:9", b, a)


def test_table_is_rpms() -> None:
    assert rpm_compare([(a, b) for a, b, _ in TABLE]) == [w for _, _, w in TABLE]


@pytest.mark.parametrize("version", ["a:1.0-1", ":1.0", "1:", "-1", "1:-1"])
def test_invalid(version: str) -> None:
    with pytest.raises(InvalidVersion):
        sort_key("Red Hat", version)
