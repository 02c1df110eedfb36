"""The version order of each OSV ecosystem: ``compare`` and ``sort_key`` for the advisory matcher.

OSV names ecosystems with an optional release after a colon (``Debian:12``, ``Ubuntu:22.04:LTS``,
``Alpine:v3.19``, ``Red Hat:enterprise_linux:9::appstream``); the order is the base ecosystem's. Each
order is the one the ecosystem's own tool applies, proven against that tool where it runs here (dpkg,
rpm's labelCompare, node-semver, Maven's ComparableVersion, Composer's own composer/semver on PHP;
packaging is PEP 440's reference):
tests/vulns/test_versions*.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial

from hostguard.vulns.orders import InvalidVersion, apk, composer, dpkg, maven, pep440, rpm, semver

__all__ = ["InvalidVersion", "UnsupportedEcosystem", "base_ecosystem", "compare", "sort_key", "supported"]


class UnsupportedEcosystem(ValueError):
    """An ecosystem whose version order hostguard does not know (its advisories cannot be matched)."""


_ORDERS: dict[str, Callable[[str], object]] = {
    "Debian": dpkg.key,
    "Ubuntu": dpkg.key,
    "Alpine": apk.key,
    "Wolfi": apk.key,
    "Chainguard": apk.key,
    "PyPI": pep440.key,
    "npm": partial(semver.key, v_prefix=True),
    "crates.io": semver.key,
    "Go": partial(semver.key, go=True),
    "Maven": maven.key,
    "Packagist": composer.key,
}
for _name in ("Red Hat", "AlmaLinux", "Rocky Linux", "SUSE", "openSUSE", "Mageia", "openEuler", "Photon OS",
              "Azure Linux"):
    _ORDERS[_name] = rpm.key


def base_ecosystem(name: str) -> str:
    """The ecosystem without its release: ``Debian:12`` -> ``Debian``, ``PyPI`` -> ``PyPI``."""
    return name.split(":", 1)[0]


def supported() -> frozenset[str]:
    """The base ecosystems whose order is known."""
    return frozenset(_ORDERS)


def _order(ecosystem: str) -> Callable[[str], object]:
    try:
        return _ORDERS[base_ecosystem(ecosystem)]
    except KeyError:
        raise UnsupportedEcosystem(f"no version order for ecosystem {ecosystem!r}") from None


@lru_cache(maxsize=1 << 16)
def _cached_key(base: str, version: str) -> object:
    return _ORDERS[base](version)


def sort_key(ecosystem: str, version: str) -> object:
    """A key whose order is :func:`compare`'s (for ``sorted``/``bisect``); keys of one ecosystem only.

    Raises InvalidVersion for a version the ecosystem's tool would refuse, UnsupportedEcosystem for an
    unknown ecosystem.
    """
    _order(ecosystem)
    if not isinstance(version, str):
        raise InvalidVersion(f"a version is a string, not {type(version).__name__}")
    return _cached_key(base_ecosystem(ecosystem), version)


def compare(ecosystem: str, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as or newer than ``b`` in the ecosystem's order.

    Only ``<`` of the keys is used (never ``>=``), in both directions, so equality is "neither is older".
    """
    ka: object = sort_key(ecosystem, a)
    kb: object = sort_key(ecosystem, b)
    if ka < kb:  # type: ignore[operator]
        return -1
    if kb < ka:  # type: ignore[operator]
        return 1
    return 0
