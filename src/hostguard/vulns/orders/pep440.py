"""PEP 440's version order (PyPI), by ``packaging.version``, the reference implementation."""

from __future__ import annotations

from packaging.version import InvalidVersion as _PackagingInvalid
from packaging.version import Version

from hostguard.vulns.orders import InvalidVersion, checked


def key(version: str) -> Version:
    """packaging's Version: it orders (and equates: ``1.0 == 1.0.0``, ``1.0+a`` vs ``1.0``) as PEP 440."""
    try:
        return Version(checked(version))
    except _PackagingInvalid as exc:
        raise InvalidVersion(str(exc)) from None
