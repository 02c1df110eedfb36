"""SemVer orders (npm, crates.io, Go) against node-semver, npm's own, installed from the npm registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.vulns.versions import InvalidVersion, compare, sort_key
from tests.vulns.oracles import install_node_semver, node_semver
from tests.vulns.version_strategies import semvers

_BATCH = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def semver_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield install_node_semver(tmp_path_factory.mktemp("node-semver"))


@_BATCH
@given(pairs=st.lists(st.tuples(semvers, semvers), min_size=150, max_size=150))
def test_compare_is_node_semvers(semver_module: Path, pairs: list[tuple[str, str]]) -> None:
    want = [int(x) for x in node_semver(semver_module, pairs)]
    for ecosystem in ("npm", "crates.io"):
        got = [compare(ecosystem, a, b) for a, b in pairs]
        assert [(p, g, w) for p, g, w in zip(pairs, got, want, strict=True) if g != w] == []
    assert [compare("Go", "v" + a, b) for a, b in pairs] == want


_SEMVERISH = st.one_of(
    st.text(alphabet="0123456789.-+vaA", min_size=1, max_size=14),
    st.sampled_from(["1.2", "01.2.3", "1.2.3-01", "1.2.3-0a", "1.2.3-", "1.2.3+", "1.2.3-a..b", "v1.2.3", "1.2.3-a+b+c",
                     "1.2.3+a.", "1.2.3-+", "1.2.3--", "1.2.3-0", "1.2.3+00"]),
)


@_BATCH
@given(versions=st.lists(_SEMVERISH, min_size=100, max_size=100))
def test_npm_reads_what_node_semver_reads(semver_module: Path, versions: list[str]) -> None:
    answers = node_semver(semver_module, [(v, v) for v in versions])
    for version, answer in zip(versions, answers, strict=True):
        try:
            sort_key("npm", version)
        except InvalidVersion:
            assert answer == "invalid", version
        else:
            assert answer == "0", version


# semver.org §11's own example chain, and each of its rules
CHAIN = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
         "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0"]


@pytest.mark.parametrize("ecosystem", ["npm", "crates.io", "Go"])
def test_semver_org_precedence_chain(ecosystem: str) -> None:
    for i, a in enumerate(CHAIN):
        for b in CHAIN[i + 1:]:
            assert compare(ecosystem, a, b) == -1 and compare(ecosystem, b, a) == 1, (a, b)


@pytest.mark.parametrize(("ecosystem", "a", "b", "want"), [
    ("npm", "1.0.0+build.1", "1.0.0+build.2", 0),            # §10: build metadata takes no part
    ("crates.io", "1.0.0+a", "1.0.0", 0),
    ("npm", "v1.2.3", "1.2.3", 0),                            # node-semver reads a leading v
    ("Go", "v1.2.3", "1.2.3", 0),                             # OSV writes Go versions without the v
    ("Go", "v1.2", "v1.2.0", 0),                              # golang.org/x/mod/semver's shorthands
    ("Go", "v1", "v1.0.0", 0),
    ("Go", "v2.0.0+incompatible", "v2.0.0", 0),               # +incompatible is build metadata
    ("Go", "v0.0.0-20220314234659-1baeb1ce4c0b", "v0.0.0", -1),   # a pseudo-version is a pre-release
    ("Go", "v0.0.0-20210101000000-abcdefabcdef", "v0.0.0-20220314234659-1baeb1ce4c0b", -1),
    ("Go", "v1.2.4-0.20200101000000-abcdefabcdef", "v1.2.3", 1),  # a pseudo-version after v1.2.3
    ("Go", "v1.2.4-0.20200101000000-abcdefabcdef", "v1.2.4", -1),
    ("npm", "1.0.0-2", "1.0.0-10", -1),                       # numeric identifiers as numbers
    ("npm", "1.0.0-10", "1.0.0-a", -1),                       # numeric below alphanumeric
    ("npm", "1.0.0-B", "1.0.0-a", -1),                        # ASCII order
])
def test_table(ecosystem: str, a: str, b: str, want: int) -> None:
    assert compare(ecosystem, a, b) == want == -compare(ecosystem, b, a)


@pytest.mark.parametrize(("ecosystem", "version"), [
    ("npm", "1.2"), ("npm", "01.2.3"), ("npm", "1.2.3-01"), ("npm", "=1.2.3"), ("crates.io", "v1.2.3"),
    ("Go", "1.2"), ("Go", "v1.2-pre"), ("Go", "v01.2.3"), ("Go", "0"), ("crates.io", "1.2.3-a..b"),
])
def test_invalid(ecosystem: str, version: str) -> None:
    with pytest.raises(InvalidVersion):
        sort_key(ecosystem, version)
