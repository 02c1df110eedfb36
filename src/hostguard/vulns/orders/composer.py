"""Composer's order (Packagist): ``composer/semver``'s ``VersionParser::normalize`` then PHP's ``version_compare``.

Composer compares two versions by normalizing each (``v1.2`` -> ``1.2.0.0``, ``2.0-b2`` -> ``2.0.0.0-beta2``,
``1.0.0-rc.1`` -> ``1.0.0.0-RC1``, date versions ``2010-01-02`` -> ``2010.01.02``, numeric branches ``1.x-dev``
-> ``1.9999999.9999999.9999999-dev``) and handing the results to PHP's ``version_compare``
(``Constraint::versionCompare``). ``version_compare`` splits a version into parts at ``.``, ``-``, ``_``, ``+``
and at every change between digits and letters, and compares part by part: numbers as numbers; names by
their "special form" (``dev`` < ``alpha``/``a`` < ``beta``/``b`` < ``RC``/``rc`` < a number < ``pl``/``p``,
matched as prefixes, case-sensitively; any other name below ``dev``); when one version runs out, the next
part of the longer one decides (a number makes it newer, a pre-release name older, ``p``/``pl`` newer).

Branches (``dev-master``, ``dev-feature``) are not ordered by Composer at all (they never satisfy a range),
so they are refused here, as is anything ``normalize`` throws on. Proven against Debian's php-composer-semver
(the library Composer itself uses) on PHP: tests/vulns/test_versions_composer.py.
"""

from __future__ import annotations

import re

from hostguard.vulns.orders import InvalidVersion, checked

_MODIFIER = r"[._-]?(?:(stable|beta|b|RC|alpha|a|patch|pl|p)((?:[.-]?\d+)*+)?)?([.-]?dev)?"
_CLASSICAL = re.compile(r"v?(\d{1,5})(\.\d++)?(\.\d++)?(\.\d++)?" + _MODIFIER, re.I)
_DATE = re.compile(r"v?(\d{4}(?:[.:-]?\d{2}){1,6}(?:[.:-]?\d{1,3})?)" + _MODIFIER, re.I)
_BRANCH = re.compile(r"v?(\d++)(\.(?:\d++|[xX*]))?(\.(?:\d++|[xX*]))?(\.(?:\d++|[xX*]))?", re.I)
_DEV_SUFFIX = re.compile(r"(.*?)[.-]?dev", re.I)
_FLAG = re.compile(r"@(?:stable|RC|beta|alpha|dev)\Z", re.I)
_BUILD = re.compile(r"([^,\s+]++)\+\S++")
_STABILITY = {"a": "alpha", "b": "beta", "p": "patch", "pl": "patch", "rc": "RC"}
# version_compare's special forms, tried in this order as prefixes of a part (php_version_compare)
_FORMS = (("dev", 0), ("alpha", 1), ("a", 1), ("beta", 2), ("b", 2), ("RC", 3), ("rc", 3), ("#", 4), ("pl", 5),
          ("p", 5))
_NUMBER = 4          # a number's rank among the special forms ("#")
_LONG_MAX = 2**63 - 1  # strtol saturates

Part = tuple[int, int]
Key = tuple[Part, ...]


def _expand(stability: str) -> str:
    lowered = stability.lower()
    return _STABILITY.get(lowered, lowered)


def normalize(version: str) -> str:
    """``VersionParser::normalize`` of a version (InvalidVersion where Composer throws, and for branches)."""
    text = checked(version)
    flag = _FLAG.search(text)
    if flag:
        text = text[:flag.start()]
    if text in ("master", "trunk", "default") or text.lower().startswith("dev-"):
        raise InvalidVersion(f"a branch, which Composer does not order: {version!r}")
    build = _BUILD.fullmatch(text)
    if build:
        text = build[1]
    m = _CLASSICAL.fullmatch(text)
    index = 5
    if m:
        out = m[1] + "".join(m[i] or ".0" for i in (2, 3, 4))
    else:
        m = _DATE.fullmatch(text)
        index = 2
        if m:
            out = re.sub(r"\D", ".", m[1])
    if m:
        if m[index]:
            if m[index] == "stable":
                return out
            out += "-" + _expand(m[index]) + (m[index + 1].lstrip(".-") if m[index + 1] else "")
        if m[index + 2]:
            out += "-dev"
        return out
    dev = _DEV_SUFFIX.fullmatch(text)
    if dev:
        branch = _BRANCH.fullmatch(dev[1].strip())
        if branch:
            parts = [branch[i] for i in range(1, 5)]
            last = max((i for i, p in enumerate(parts) if p is not None), default=0)
            # PHP leaves groups after the last matched one unset (".x"), and a skipped one in between empty
            joined = "".join((p if p is not None else "") if i <= last else ".x" for i, p in enumerate(parts))
            return re.sub("[*X]", "x", joined).replace("x", "9999999") + "-dev"
    raise InvalidVersion(f"not a version Composer reads: {version!r}")


def _form(name: str) -> int:
    for prefix, rank in _FORMS:
        if name.startswith(prefix):
            return rank
    return -1


def _canonical_parts(version: str) -> list[str]:
    """``php_canonicalize_version`` then the split at dots: runs of digits and runs of other characters."""
    out = [version[0]]
    prev = version[0]
    for c in version[1:]:
        if c in "-_+":
            if out[-1] != ".":
                out.append(".")
        elif (prev != "." and not prev.isdigit() and c.isdigit()) or (prev.isdigit() and c != "." and not c.isdigit()):
            if out[-1] != ".":
                out.append(".")
            out.append(c)
        elif not c.isalnum():
            if out[-1] != ".":
                out.append(".")
        else:
            out.append(c)
        prev = c
    return "".join(out).split(".")


def php_key(version: str) -> Key:
    """A key with ``version_compare``'s order, for the versions ``normalize`` gives (ASCII, non-empty)."""
    parts: list[Part] = []
    for part in _canonical_parts(version):
        if part[:1].isdigit():
            parts.append((_NUMBER, min(int(part), _LONG_MAX)))   # a run of digits (canonicalization split it off)
        else:
            parts.append((_form(part), 0))
    # the end: below any number (a longer version with a number next is newer) and above every pre-release
    # name, below p/pl, as version_compare compares the longer one's next part with "#"
    parts.append((_NUMBER, -1))
    return tuple(parts)


def key(version: str) -> Key:
    """Composer's order of ``version``: the normalized form compared as ``version_compare`` does."""
    return php_key(normalize(version))
