"""Alpine order (apk): no apk runs on Debian, so the cases are written from apk-tools' rules
(src/version.c, the grammar ``digit{.digit}...{letter}{_suf{#}}...{~hash}{-r#}``), each rule cited."""

from __future__ import annotations

import pytest

from hostguard.vulns.versions import InvalidVersion, compare, sort_key

TABLE = [
    ("1.2.3-r0", "1.2.3-r1", -1),        # -rN: the revision, as a number
    ("1.2.3-r9", "1.2.3-r10", -1),
    ("1.2.3", "1.2.3-r0", -1),           # a token after the end: the longer one is newer ...
    ("1.2.3-r5", "1.2.4-r0", -1),
    ("1.2", "1.2.0", -1),                # ... even a .0 (apk has no padding)
    ("1.10", "1.9", 1),                  # numbers as numbers
    ("1.01", "1.1", -1),                 # a leading zero: the parts compare as strings (Gentoo's rule)
    ("1.05", "1.1", -1),
    ("1.10", "1.010", 1),
    ("010.1", "9.1", 1),                 # ... but the first number is always a number
    ("1.0_alpha", "1.0_beta", -1),       # suffix order: alpha < beta < pre < rc < (none) < cvs < svn < git < hg < p
    ("1.0_beta", "1.0_pre", -1), ("1.0_pre", "1.0_rc", -1), ("1.0_rc", "1.0", -1),
    ("1.0", "1.0_cvs", -1), ("1.0_cvs", "1.0_svn", -1), ("1.0_svn", "1.0_git", -1), ("1.0_git", "1.0_hg", -1),
    ("1.0_hg", "1.0_p", -1),
    ("1.0_rc1", "1.0_rc2", -1),          # a suffix's number as a number
    ("1.0_rc9", "1.0_rc10", -1),
    ("1.0_rc1", "1.0", -1),              # a pre-release suffix is older than the end ...
    ("1.0_rc1-r5", "1.0-r0", -1),
    ("1.0_p1", "1.0-r5", 1),             # ... a post-release one newer than a revision
    ("1.0_p1", "1.0.1", -1),             # ... and older than a further .number
    ("1.0a", "1.0", 1),                  # a letter after the end
    ("1.0a", "1.0b", -1),
    ("1.0a", "1.0.1", -1),               # a letter before a further .number
    ("1.0a", "1.0_p1", 1),               # a letter after a suffix (the grammar puts it earlier)
    ("1.0_alpha_p1", "1.0_alpha", 1),    # several suffixes
    ("1.0_alpha_p1", "1.0_beta", -1),
    ("1.0~abc", "1.0", 1),               # a commit hash after the end ...
    ("1.0~abc", "1.0-r1", 1),            # ... and, as the later token, a revision is older than a hash
    ("1.0~abc", "1.0~abd", -1),
    ("3.0.13-r0", "3.0.12-r1", 1),       # openssl on Alpine 3.19
    ("1.36.1-r15", "1.36.1-r2", 1),      # busybox
]


@pytest.mark.parametrize(("a", "b", "want"), TABLE)
def test_table(a: str, b: str, want: int) -> None:
    assert compare("Alpine:v3.19", a, b) == want == -compare("Alpine:v3.19", b, a)


@pytest.mark.parametrize("version", ["1.0-r", "1.0-1", "1.0_foo", "1.0A", "1.0ab", "1.0a1", "1.", ".1", "a1", "1.0-r1-r2",
                                     "1.0~", "1.0~xyz", "1.0-r1_p1", "1.0_p1.2", "1.0~ab.1", "1..0", "v1.0"])
def test_invalid(version: str) -> None:
    """apk's grammar: each of these makes apk_version_validate fail."""
    with pytest.raises(InvalidVersion):
        sort_key("Alpine", version)


def test_wolfi_and_chainguard_use_apks_order() -> None:
    assert compare("Wolfi", "1.0_rc1", "1.0") == compare("Chainguard", "1.0_rc1", "1.0") == -1
