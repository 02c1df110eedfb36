"""Packagist's order against Composer's own (Debian's php-composer-semver: VersionParser::normalize, then its
Comparator, which ends in PHP's version_compare)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.vulns.orders import InvalidVersion
from hostguard.vulns.orders.composer import normalize
from hostguard.vulns.versions import compare, sort_key
from tests.vulns.oracles import composer_compare, composer_normalize
from tests.vulns.version_strategies import composer_versions

_BATCH = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))


def _ours(a: str, b: str) -> str:
    try:
        return str(compare("Packagist", a, b))
    except InvalidVersion:
        return "invalid"


@_BATCH
@given(st.lists(st.tuples(composer_versions, composer_versions), min_size=200, max_size=200))
def test_compare_is_composers(pairs: list[tuple[str, str]]) -> None:
    want = composer_compare(pairs)
    got = [_ours(a, b) for a, b in pairs]
    assert [(p, g, w) for p, g, w in zip(pairs, got, want, strict=True) if g != w] == []


def _normalized(version: str) -> str:
    try:
        return normalize(version)
    except InvalidVersion:
        return "invalid"


@_BATCH
@given(st.lists(composer_versions, min_size=100, max_size=100))
def test_normalize_is_composers(versions: list[str]) -> None:
    want = composer_normalize(versions)
    assert [(v, g, w) for v, g, w in zip(versions, map(_normalized, versions), want, strict=True) if g != w] == []


# versions as Packagist packages publish them, with Composer's answers (checked against it below)
TABLE = [
    ("4.8.19", "4.8.28", -1), ("5.6.2", "5.6.3", -1), ("v5.6.3", "5.6.3", 0),     # phpunit's; a leading v
    ("8.5.0", "8.5.1", -1), ("8.5.0-rc1", "8.5.0", -1), ("8.5.0-beta1", "8.5.0-rc1", -1),
    ("8.5.0-alpha1", "8.5.0-beta1", -1), ("8.5.0-dev", "8.5.0-alpha1", -1),      # dev < alpha < beta < RC < release
    ("1.0", "1.0.0.0", 0), ("1.0.0-p1", "1.0.0", 1), ("1.0.0-pl2", "1.0.0-patch2", 0),   # patch releases sort after
    ("2.5.1", "2.5.10", -1), ("1.16.14", "1.16.15", -1), ("2.0.0-RC1", "2.0.0-rc.1", 0),
    ("1.0.0-b2", "1.0.0-beta2", 0), ("1.0.0-a1", "1.0.0-alpha1", 0), ("1.0.0+build.5", "1.0.0", 0),
    ("1.x-dev", "1.99.0", 1), ("2010-01-02", "2010.01.02", -1), ("20100102", "2010-01-02", 1),
    ("1.0.0.1", "1.0.0", 1),
]


@pytest.mark.parametrize(("a", "b", "want"), TABLE)
def test_table(a: str, b: str, want: int) -> None:
    assert compare("Packagist", a, b) == want == -compare("Packagist", b, a)


def test_table_is_composers() -> None:
    assert composer_compare([(a, b) for a, b, _ in TABLE]) == [str(w) for _, _, w in TABLE]


@pytest.mark.parametrize("version", ["dev-master", "dev-feature/x", "master", "1.0.0.0.0", "1.0-foo", "x1.0",
                                    "1.0 as 2.0", "", "1.0.0-dev-dev"])
def test_branches_and_what_composer_refuses_are_refused(version: str) -> None:
    with pytest.raises(InvalidVersion):
        sort_key("Packagist", version)


def test_refusals_are_composers() -> None:
    versions = ["dev-master", "dev-feature/x", "master", "1.0.0.0.0", "1.0-foo", "x1.0"]
    assert composer_normalize(versions) == ["invalid"] * len(versions)
