"""PyPI order: packaging.version (PEP 440's reference) through hostguard's wrapper, and packaging's own
operators held to one consistent order (the issue's warning: some libraries get ``>=`` wrong)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from hostguard.vulns.versions import InvalidVersion, compare, sort_key
from tests.vulns.version_strategies import pep440_versions


@settings(max_examples=300, deadline=None)
@given(pep440_versions, pep440_versions)
def test_compare_is_packagings_and_its_operators_agree(a: str, b: str) -> None:
    va, vb = Version(a), Version(b)
    ops = [va < vb, va == vb, va > vb]
    assert sum(ops) == 1, (a, b)                               # exactly one of <, ==, >
    assert (va <= vb) == (ops[0] or ops[1]) and (va >= vb) == (ops[1] or ops[2]) and (va != vb) == (not ops[1])
    want = -1 if ops[0] else 0 if ops[1] else 1
    assert compare("PyPI", a, b) == want


# (a, b, want): PEP 440's "Summary of permitted suffixes and relative ordering" and its normalisation
TABLE = [
    ("1.0.dev1", "1.0a1", -1), ("1.0a1", "1.0a2.dev1", -1), ("1.0a2.dev1", "1.0a2", -1),
    ("1.0a2", "1.0b1", -1), ("1.0b1", "1.0rc1", -1), ("1.0rc1", "1.0", -1), ("1.0", "1.0.post1.dev1", -1),
    ("1.0.post1.dev1", "1.0.post1", -1), ("1.0.post1", "1.1.dev1", -1),
    ("1.0", "1.0.0", 0),                    # release segments padded with zeros
    ("1.0c1", "1.0rc1", 0),                 # c is rc
    ("1.0alpha1", "1.0a1", 0), ("1.0-1", "1.0.post1", 0), ("1.0.post", "1.0.post0", 0),
    ("1!0.1", "2.0", 1),                    # the epoch first
    ("1.0+local", "1.0", 1),                # a local version sorts after its public version
    ("1.0+abc.5", "1.0+abc.10", -1),        # local segments: numbers as numbers
    ("1.0+5", "1.0+abc", 1),                # ... numbers after strings
    ("1.0+ubuntu1", "1.0+Ubuntu1", 0),      # normalised to lower case
    ("v1.0", "1.0", 0),                     # a leading v is allowed
    ("1.0a1", "1.0", -1),
]


@pytest.mark.parametrize(("a", "b", "want"), TABLE)
def test_table(a: str, b: str, want: int) -> None:
    assert compare("PyPI", a, b) == want == -compare("PyPI", b, a)


@pytest.mark.parametrize("version", ["1.0-beta-1-x", "1..0", "latest", "1.0+", "1.0+a_", "0x10", "1.0a.b"])
def test_invalid(version: str) -> None:
    with pytest.raises(InvalidVersion):
        sort_key("PyPI", version)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789.!+abcrpostdevlv-_", min_size=1, max_size=16))
def test_reads_what_packaging_reads(text: str) -> None:
    try:
        Version(text)
    except ValueError:
        with pytest.raises(InvalidVersion):
            sort_key("PyPI", text)
    else:
        assert sort_key("PyPI", text) == Version(text)
