"""hostguard.vulns.versions: the interface, the order laws in every ecosystem, and refusal of bad input."""

from __future__ import annotations

import bisect

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.vulns.versions import (
    InvalidVersion,
    UnsupportedEcosystem,
    base_ecosystem,
    compare,
    sort_key,
    supported,
)
from tests.vulns.version_strategies import STRATEGIES, check_laws

ECOSYSTEMS = sorted(STRATEGIES)


@pytest.mark.parametrize(("name", "base"), [("Debian:12", "Debian"), ("Ubuntu:22.04:LTS", "Ubuntu"),
                                            ("Alpine:v3.19", "Alpine"), ("PyPI", "PyPI"), ("crates.io", "crates.io"),
                                            ("Red Hat:enterprise_linux:9::appstream", "Red Hat")])
def test_base_ecosystem(name: str, base: str) -> None:
    assert base_ecosystem(name) == base


def test_every_ecosystem_of_the_issue_has_an_order() -> None:
    assert {"Debian", "Ubuntu", "Red Hat", "Alpine", "PyPI", "npm", "crates.io", "Go", "Maven"} <= supported()


@pytest.mark.parametrize("ecosystem", ["NuGet", "RubyGems", "debian", "", "Pub:foo"])
def test_unknown_ecosystem(ecosystem: str) -> None:
    with pytest.raises(UnsupportedEcosystem):
        compare(ecosystem, "1", "2")
    with pytest.raises(UnsupportedEcosystem):
        sort_key(ecosystem, "1")


def test_errors_are_value_errors() -> None:
    assert issubclass(InvalidVersion, ValueError) and issubclass(UnsupportedEcosystem, ValueError)


@pytest.mark.parametrize("ecosystem", ECOSYSTEMS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_total_order_laws(ecosystem: str, data: st.DataObject) -> None:
    versions = STRATEGIES[ecosystem]
    check_laws(ecosystem, data.draw(versions), data.draw(versions), data.draw(versions))


@pytest.mark.parametrize("ecosystem", ECOSYSTEMS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_sorted_and_bisect_follow_compare(ecosystem: str, data: st.DataObject) -> None:
    versions = data.draw(st.lists(STRATEGIES[ecosystem], min_size=2, max_size=12))
    ordered = sorted(versions, key=lambda v: sort_key(ecosystem, v))
    for x, y in zip(ordered, ordered[1:], strict=False):
        assert compare(ecosystem, x, y) <= 0
    probe = data.draw(STRATEGIES[ecosystem])
    keys = [sort_key(ecosystem, v) for v in ordered]
    at = bisect.bisect_left(keys, sort_key(ecosystem, probe))  # type: ignore[type-var]
    assert all(compare(ecosystem, v, probe) < 0 for v in ordered[:at])
    assert all(compare(ecosystem, v, probe) >= 0 for v in ordered[at:])


_GARBAGE = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="ascii"), max_size=40),
    st.text(alphabet="0123456789.-+~^_:vaAbrcp!", max_size=30),
    st.binary(max_size=20),
    st.integers(),
    st.none(),
    st.builds(lambda s, n: s * n, st.sampled_from(["1.", "9", "a", "1-", "~"]), st.integers(300, 5000)),
)


@pytest.mark.parametrize("ecosystem", ECOSYSTEMS)
@settings(max_examples=200, deadline=None)
@given(text=_GARBAGE)
def test_bad_input_is_invalid_version_and_nothing_else(ecosystem: str, text: object) -> None:
    try:
        key = sort_key(ecosystem, text)  # type: ignore[arg-type]
    except InvalidVersion:
        with pytest.raises(InvalidVersion):
            compare(ecosystem, "1", text)  # type: ignore[arg-type]
        return
    assert isinstance(text, str)
    assert compare(ecosystem, text, text) == 0 and key == sort_key(ecosystem, text)


@pytest.mark.parametrize("ecosystem", ECOSYSTEMS)
@pytest.mark.parametrize("text", ["", " ", "1.0 ", "1.0\n", "1.\x000", "1.0\u0663", "\ud800", "9" * 600])
def test_refused_everywhere(ecosystem: str, text: str) -> None:
    with pytest.raises(InvalidVersion):
        sort_key(ecosystem, text)
