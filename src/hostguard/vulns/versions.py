"""Version order per ecosystem — stand-in: replaced by the real module on merge.

A small stand-in with the real module's interface so `hostguard.vulns.osv` can be built and tested first:
Debian/Ubuntu through python-debian when importable, else ``dpkg --compare-versions``; PyPI through
``packaging``; npm by SemVer 2.0 precedence. Every other ecosystem raises ``UnsupportedEcosystem``.
"""

from __future__ import annotations

import functools
import re
import subprocess

__all__ = ["InvalidVersion", "UnsupportedEcosystem", "base_ecosystem", "compare", "sort_key"]


class UnsupportedEcosystem(ValueError):
    """No version order is known for this ecosystem."""


class InvalidVersion(ValueError):
    """The string is not a version of this ecosystem."""


def base_ecosystem(name: str) -> str:
    """``Debian:12`` -> ``Debian``: the ecosystem without its release suffix."""
    return name.split(":", 1)[0]


_DPKG_VERSION = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$")


@functools.lru_cache(maxsize=65536)
def _dpkg_compare(a: str, b: str) -> int:
    for v in (a, b):
        if not _DPKG_VERSION.match(v):
            raise InvalidVersion(f"not a Debian version: {v!r}")
    try:
        from debian.debian_support import Version  # type: ignore[import-not-found,unused-ignore]

        va, vb = Version(a), Version(b)
        return (va > vb) - (va < vb)  # type: ignore[no-any-return,unused-ignore]
    except ImportError:
        pass
    for op, result in (("lt", -1), ("gt", 1)):
        if subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False).returncode == 0:
            return result
    return 0


_SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                     r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$")


def _semver_key(v: str) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
    m = _SEMVER.match(v)
    if not m:
        raise InvalidVersion(f"not a SemVer version: {v!r}")
    pre = m.group(4)
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if pre else 1, ids


def sort_key(ecosystem: str, version: str) -> object:
    """A key that orders versions of ``ecosystem`` as the ecosystem does."""
    base = base_ecosystem(ecosystem)
    if base in ("Debian", "Ubuntu"):
        return functools.cmp_to_key(_dpkg_compare)(version)
    if base == "PyPI":
        from packaging.version import InvalidVersion as PackagingInvalid
        from packaging.version import Version

        try:
            return Version(version)
        except PackagingInvalid as exc:
            raise InvalidVersion(str(exc)) from exc
    if base == "npm":
        return _semver_key(version)
    raise UnsupportedEcosystem(f"no version order for {ecosystem!r}")


def compare(ecosystem: str, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as or newer than ``b`` in ``ecosystem``."""
    base = base_ecosystem(ecosystem)
    if base in ("Debian", "Ubuntu"):
        return _dpkg_compare(a, b)
    ka, kb = sort_key(ecosystem, a), sort_key(ecosystem, b)
    return int((ka > kb) - (ka < kb))  # type: ignore[operator]
