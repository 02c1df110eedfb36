"""The version order of each package ecosystem, one module per order.

Every module has ``key(version) -> object``: a value whose ``<`` and ``==`` follow that ecosystem's own
tool (dpkg, rpm, apk, packaging, node-semver, Maven), or raises :class:`InvalidVersion`. The keys of one
order compare only with each other. ``hostguard.vulns.versions`` maps OSV ecosystem names onto them.
"""

from __future__ import annotations

MAX_LENGTH = 512
"""No real version string is near this long; longer input is refused before any parsing."""


class InvalidVersion(ValueError):
    """A version string that the ecosystem's own tool would refuse (or that no real package carries)."""


def checked(version: object) -> str:
    """The version if it is a non-empty, bounded string of printable ASCII without white space.

    Every ecosystem here writes its versions in that alphabet; anything else (bytes, control characters,
    non-ASCII digits that some parsers would quietly read as numbers) is refused up front, so no order
    module ever sees it.
    """
    if not isinstance(version, str):
        raise InvalidVersion(f"a version is a string, not {type(version).__name__}")
    if not version:
        raise InvalidVersion("empty version")
    if len(version) > MAX_LENGTH:
        raise InvalidVersion(f"version longer than {MAX_LENGTH} characters")
    if not (version.isascii() and version.isprintable()) or any(c.isspace() for c in version):
        raise InvalidVersion(f"version with characters outside printable ASCII: {version!r}")
    return version


def padded_key(items: list[int]) -> tuple[tuple[int, ...], ...]:
    """A tuple key for a sequence of ints that is compared as if padded with zeros for ever.

    dpkg compares two versions as sequences padded with "nothing" (order 0), and "nothing" sorts above
    ``~`` (negative) and below everything else, so a plain tuple (where a prefix is always smaller) would
    put ``1.0`` above ``1.0~rc1`` wrongly. Here each non-zero item becomes one element carrying the run of
    zeros before it, so that the first differing element decides exactly as the padded comparison does:
    for a positive item a shorter zero run is greater (the other side still has a 0 there), for a
    negative one it is smaller; the end (all zeros after) is ``(0,)``, between the two.
    """
    out: list[tuple[int, ...]] = []
    run = 0
    for item in items:
        if item == 0:
            run += 1
        elif item > 0:
            out.append((1, -run, item))
            run = 0
        else:
            out.append((-1, run, item))
            run = 0
    out.append((0,))
    return tuple(out)
