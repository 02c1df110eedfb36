"""The web application firewall: libmodsecurity3 with the OWASP Core Rule Set and hostguard's own rules.

``WSGIMiddleware`` and ``ASGIMiddleware`` are resolved on first use (PEP 562): importing ``hostguard.waf``
(which the config schema of every command does, for ``[waf]``) must stay light and never load cffi or the
engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hostguard.waf.middleware import ASGIMiddleware, WSGIMiddleware

__all__ = ["ASGIMiddleware", "WSGIMiddleware"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hostguard.waf import middleware

        return getattr(middleware, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
