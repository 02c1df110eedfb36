"""The explicit check registry.

A check module declares its checks with :func:`check`; declaring does nothing but attach a
:class:`CheckSpec` to the function (no import-time registration, no I/O). :func:`all_checks` imports the
modules listed in ``CHECK_MODULES``, collects the specs, and refuses duplicate ids. Ids never change once
published; a rename adds an alias.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from hostguard.findings import Severity

CHECK_MODULES = (
    "hostguard.checks.password_policy",
    "hostguard.checks.weak_passwords",
    "hostguard.checks.accounts",
    "hostguard.checks.ssh",
    "hostguard.checks.ports",
    "hostguard.checks.firewall",
)

FAMILIES = ("password_policy", "weak_passwords", "accounts", "ssh", "ports", "firewall")


class RegistryError(Exception):
    """Two checks share an id, or a check is declared wrongly."""


@dataclass(frozen=True)
class CheckSpec:
    """What the registry knows of a check. The docstring is its documentation."""

    id: str
    family: str
    severity: Severity
    title: str
    needs: tuple[str, ...]
    func: Callable[..., Iterable[Any]]
    each: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def doc(self) -> str:
        """The check's docstring, dedented."""
        import inspect

        return inspect.getdoc(self.func) or ""


def check(*, id: str, family: str, severity: str, title: str, needs: tuple[str, ...] = (),
          each: str | None = None, aliases: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a check. With ``each``, the engine calls ``func(item, ctx)`` for every item of that fact;
    otherwise ``func(ctx)``. Either yields findings (built with ``ctx.finding``)."""
    if family not in FAMILIES:
        raise RegistryError(f"{id}: unknown family {family!r}")
    if not id.startswith(family + "."):
        raise RegistryError(f"{id}: id must start with its family '{family}.'")

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        func.__check__ = CheckSpec(id, family, Severity(severity), title, needs, func, each, aliases)  # type: ignore[attr-defined]
        return func

    return wrap


@cache
def all_checks() -> tuple[CheckSpec, ...]:
    """Every built-in check, in module order; duplicate ids are an error."""
    specs: list[CheckSpec] = []
    seen: dict[str, str] = {}
    for name in CHECK_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            spec = getattr(value, "__check__", None)
            if not isinstance(spec, CheckSpec) or spec.func.__module__ != name:
                continue
            for key in (spec.id, *spec.aliases):
                if key in seen:
                    raise RegistryError(f"check id {key} is declared twice ({seen[key]} and {name})")
                seen[key] = name
            specs.append(spec)
    return tuple(specs)


def select(only: Iterable[str] | None) -> tuple[CheckSpec, ...]:
    """Checks of the given families (all when ``only`` is None)."""
    if only is None:
        return all_checks()
    wanted = set(only)
    unknown = wanted - set(FAMILIES)
    if unknown:
        raise RegistryError(f"unknown family {', '.join(sorted(unknown))} (families: {', '.join(FAMILIES)})")
    return tuple(s for s in all_checks() if s.family in wanted)
