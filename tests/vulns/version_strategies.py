"""Hypothesis strategies of version strings per ecosystem, and the laws every version order obeys.

The alphabets are small on purpose: few distinct pieces make equal, prefix and near-equal versions
(``1.0`` / ``1.0.0`` / ``1.0~rc1``) common, which is where orders go wrong.
"""

from __future__ import annotations

from hypothesis import strategies as st

from hostguard.vulns.versions import compare, sort_key


def _composer_reads(version: str) -> bool:
    """Whether Composer orders the version (the laws hold among versions it reads, not branches)."""
    from hostguard.vulns.orders import InvalidVersion
    from hostguard.vulns.orders.composer import normalize

    try:
        normalize(version)
    except InvalidVersion:
        return False
    return True


def joined(pieces: st.SearchStrategy[str], min_size: int = 1, max_size: int = 6) -> st.SearchStrategy[str]:
    return st.lists(pieces, min_size=min_size, max_size=max_size).map("".join)


# dpkg: [epoch:]upstream[-revision]; upstream starts with a digit (deb-version(7))
_DPKG_PIECES = st.sampled_from(["0", "1", "2", "10", "01", "a", "b", "Z", "~", "~~", "+", ".", "+dfsg", "~rc",
                                "deb12u", "+b", "ubuntu"])
dpkg_versions = st.builds(
    lambda epoch, first, rest, rev: f"{epoch}{first}{rest}{rev}",
    st.sampled_from(["", "", "", "0:", "1:", "2:", "10:"]),
    st.sampled_from(["0", "1", "2", "10", "01"]),
    joined(_DPKG_PIECES, 0, 6),
    st.one_of(st.just(""), joined(_DPKG_PIECES).map(lambda r: "-" + r), joined(_DPKG_PIECES).map(lambda r: "-1" + r)),
)

# rpm: [epoch:]version[-release]; any characters of rpm's alphabet, separators included
_RPM_PIECES = st.sampled_from(["0", "1", "2", "10", "01", "a", "b", "A", "rc", "~", "^", ".", "_", "+", "~rc",
                               "^git", "el9", "fc39"])
rpm_versions = st.builds(
    lambda epoch, ver, rel: f"{epoch}{ver}{rel}",
    st.sampled_from(["", "", "0:", "1:", "2:", "10:"]),
    joined(_RPM_PIECES).filter(lambda v: "-" not in v),
    st.one_of(st.just(""), joined(_RPM_PIECES).map(lambda r: "-" + r)),
)

# SemVer 2.0.0
_NUMS = st.sampled_from(["0", "1", "2", "10", "11"])
_PRE_IDS = st.sampled_from(["alpha", "beta", "rc", "0", "1", "2", "10", "a-1", "-", "x", "Alpha", "1a"])
semvers = st.builds(
    lambda ma, mi, pa, pre, build: f"{ma}.{mi}.{pa}{pre}{build}",
    _NUMS, _NUMS, _NUMS,
    st.one_of(st.just(""), st.lists(_PRE_IDS, min_size=1, max_size=4).map(lambda p: "-" + ".".join(p))),
    st.sampled_from(["", "", "", "+build.1", "+001", "+sha.5114f85"]),
)
go_versions = st.one_of(
    semvers.map(lambda v: "v" + v),
    semvers,
    st.sampled_from(["v1", "v1.2", "v0", "v2.0", "v0.0.0-20220314234659-1baeb1ce4c0b", "v1.2.4-0.20200101000000-abcdef",
                     "v2.0.0+incompatible"]),
)

# Maven: items joined by the separators ComparableVersion reads
_MAVEN_ITEMS = st.sampled_from(["", "1", "0", "2", "10", "01", "alpha", "a", "b", "m", "beta", "milestone", "rc", "cr",
                                "snapshot", "SNAPSHOT", "ga", "final", "release", "sp", "x", "abc", "RC"])
maven_versions = st.lists(st.tuples(_MAVEN_ITEMS, st.sampled_from([".", "-", ""])), min_size=1, max_size=5).map(
    lambda items: "".join(i + s for i, s in items).strip(".-") or "1"
)

# Maven versions as projects write them (numbers, then qualifiers with numbers): ComparableVersion is a total
# order on these, whereas on arbitrary strings Maven's own order has cycles (test_versions_maven.py)
maven_release_versions = st.builds(
    lambda nums, quals: ".".join(nums) + "".join(quals),
    st.lists(st.sampled_from(["0", "1", "2", "10", "01"]), min_size=1, max_size=4),
    # qualifiers after "-" only, and never the ones equal to "" (ga, final) followed by more items: "1.1.ga.2"
    # and "1.1-alpha" already make a cycle with "1.1" in Maven's own order (hypothesis found it)
    st.lists(st.builds(lambda q, n: f"-{q}{n}",
                       st.sampled_from(["alpha", "beta", "milestone", "rc", "cr", "SNAPSHOT", "sp", "jre", "redhat"]),
                       st.sampled_from(["", "1", "2", "-1", ".2"])), max_size=2),
)

# apk: digit{.digit}...{letter}{_suf{#}}...{~hash}{-r#}
_APK_NUM = st.sampled_from(["0", "1", "2", "10", "01", "001"])
apk_versions = st.builds(
    lambda first, dots, letter, suffixes, hsh, rev: first + "".join("." + d for d in dots) + letter
    + "".join(suffixes) + hsh + rev,
    st.sampled_from(["0", "1", "2", "10"]),
    st.lists(_APK_NUM, max_size=3),
    st.sampled_from(["", "", "a", "b", "z"]),
    st.lists(st.builds(lambda s, n: f"_{s}{n}", st.sampled_from(["alpha", "beta", "pre", "rc", "cvs", "svn", "git",
                                                                  "hg", "p"]),
                       st.sampled_from(["", "0", "1", "2", "10"])), max_size=2),
    st.sampled_from(["", "", "~abc123", "~0f"]),
    st.sampled_from(["", "-r0", "-r1", "-r2", "-r10"]),
)

# PEP 440: [N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]
pep440_versions = st.builds(
    lambda epoch, rel, pre, post, dev, local: f"{epoch}{rel}{pre}{post}{dev}{local}",
    st.sampled_from(["", "", "1!"]),
    st.lists(_NUMS, min_size=1, max_size=4).map(".".join),
    st.sampled_from(["", "", "a1", "b0", "rc1", "alpha2", "c1", "pre1"]),
    st.sampled_from(["", "", ".post1", "-1", ".post0", "post2"]),
    st.sampled_from(["", "", ".dev0", ".dev1"]),
    st.sampled_from(["", "", "+local", "+1", "+a.1", "+ubuntu1"]),
)

# Composer (Packagist): classical versions with stabilities and their spellings, date versions, numeric branches,
# build metadata, stability flags; and pieces Composer refuses
_COMPOSER_STABILITY = st.sampled_from(["", "", "", "-dev", "-alpha", "-a1", "alpha2", "-beta", "-b2", ".beta.1", "-RC1",
                                       "-rc.2", "RC", "-patch1", "-pl2", "p3", "-stable", "-Stable", "-beta1-dev", "_rc1",
                                       "-foo"])
composer_versions = st.one_of(
    st.builds(lambda v, nums, stab, build: f"{v}{'.'.join(nums)}{stab}{build}",
              st.sampled_from(["", "", "v", "V"]), st.lists(_NUMS, min_size=1, max_size=5), _COMPOSER_STABILITY,
              st.sampled_from(["", "", "", "+build.1", "@dev", "@stable"])),
    st.sampled_from(["2010-01-02", "20100102", "2010.01.02.5", "1.x-dev", "2.1.x-dev", "1.*-dev", "dev-master",
                     "master", "dev-1.x", "123456", "1.0.0.0.0", "00.1", "1.01"]),
)

STRATEGIES: dict[str, st.SearchStrategy[str]] = {
    "Debian:12": dpkg_versions,
    "Ubuntu:22.04:LTS": dpkg_versions,
    "Red Hat": rpm_versions,
    "Alpine:v3.19": apk_versions,
    "PyPI": pep440_versions,
    "npm": semvers,
    "crates.io": semvers,
    "Go": go_versions,
    "Maven": maven_release_versions,
    "Packagist": composer_versions.filter(_composer_reads),
}


def check_laws(ecosystem: str, a: str, b: str, c: str) -> None:
    """compare is a total order on (a, b, c) and sort_key's ``<`` and ``==`` agree with it."""
    ab, ba = compare(ecosystem, a, b), compare(ecosystem, b, a)
    assert ab in (-1, 0, 1)
    assert ab == -ba, (a, b)
    assert compare(ecosystem, a, a) == 0
    bc, ac = compare(ecosystem, b, c), compare(ecosystem, a, c)
    if ab <= 0 and bc <= 0:
        assert ac <= 0, (a, b, c)
    if ab == 0 and bc == 0:
        assert ac == 0, (a, b, c)
    if ab < 0 and bc <= 0 or ab <= 0 and bc < 0:
        assert ac < 0, (a, b, c)
    ka, kb, kc = (sort_key(ecosystem, v) for v in (a, b, c))
    for (x, kx), (y, ky) in [((a, ka), (b, kb)), ((b, kb), (c, kc)), ((a, ka), (c, kc))]:
        want = compare(ecosystem, x, y)
        assert (kx < ky) == (want < 0), (x, y)  # type: ignore[operator]
        assert (kx == ky) == (want == 0), (x, y)
        assert (kx > ky) == (want > 0), (x, y)  # type: ignore[operator]
    ordered = sorted([a, b, c], key=lambda v: sort_key(ecosystem, v))
    assert all(compare(ecosystem, x, y) <= 0 for x, y in zip(ordered, ordered[1:], strict=False)), ordered
