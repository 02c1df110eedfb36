"""The explicit check registry: families, their checks, their config sections and their facts.

A family is one module (or package) in ``hostguard.checks``. It declares ``FAMILY = Family(...)`` (its
name, config section and optional post-scan hook) and its checks with :func:`check`; declaring does
nothing but attach a :class:`CheckSpec` to the function (no import-time registration, no I/O).
:func:`default_registry` finds the family modules by listing the package, so adding a family touches
nothing else. Loading validates everything a typo could break: duplicate ids or aliases, ids outside
their family, facts that are not :class:`Fact` handles, fact cycles, config inputs naming no section.
Ids never change once published; a rename adds an alias, which ``--only`` and suppression accept.
"""

from __future__ import annotations

import importlib
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

from hostguard.config import setting
from hostguard.detect.config import DetectConfig
from hostguard.engine.facts import ConfigInput, Fact, FactError, Facts, OptionalInput, closure
from hostguard.engine.suppress import SuppressConfig
from hostguard.findings import HostId, Rule, Severity
from hostguard.respond.block_config import BlockConfig
from hostguard.waf.config import WafConfig

if TYPE_CHECKING:
    from hostguard.config import Config
    from hostguard.store.state import StateStore

CHECKS_PACKAGE = "hostguard.checks"
ATTACK_ID = re.compile(r"T\d{4}(\.\d{3})?")
VARARGS = 0x04  # CO_VARARGS: the function takes *args
CHECK_ID = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")


class RegistryError(Exception):
    """Two checks share an id, or a check, a family or a fact is declared wrongly."""


@dataclass(frozen=True)
class ScanConfig:
    """[scan]: settings of every scan."""

    fail_on: Severity = setting(Severity.HIGH, "Exit 1 when a finding at or above this severity exists (critical, "
                                               "high, medium, low, info).")
    history_keep: int = setting(100, "Scans kept per host in state.db for `scan --diff` and `hostguard history` (with "
                                     "their findings and coverage); older ones are pruned after each scan. Accepted "
                                     "findings and the audit log are never pruned.", min=2)


ENGINE_SECTIONS: dict[str, type] = {"scan": ScanConfig, "suppress": SuppressConfig, "block": BlockConfig,
                                    "detect": DetectConfig, "waf": WafConfig}


@dataclass(frozen=True)
class ScanEnd:
    """What a family's post-scan hook sees: the scan's facts, the state store, and which checks ran."""

    facts: Facts
    state: StateStore
    host: HostId
    started: str
    ran: frozenset[str]


@dataclass(frozen=True)
class Family:
    """A family of checks: its name (the module's), its config section and an optional post-scan hook.

    ``after_scan`` runs once after the scan when the family was selected, or when the scan read a host fact
    the family's checks read (``--only ssh`` reads /etc/passwd, and the accounts family records the accounts
    it saw); the hook decides what to record from ``end.facts.loaded(...)`` and ``end.ran``.
    """

    name: str
    doc: str
    config: type | None = None
    after_scan: Callable[[ScanEnd], None] | None = None
    retired: Mapping[str, str] = field(default_factory=dict)  # check id -> why it is gone and what replaces it


Budget = float | Callable[["Config"], float]


@dataclass(frozen=True)
class CheckSpec:
    """A check's record: what the registry, the runner and the reports know of it."""

    id: str
    severity: Severity
    summary: str
    needs: tuple[Fact[Any], ...]
    func: Callable[..., Iterable[Any]]
    each: Fact[Any] | None = None
    budget: Budget | None = None
    references: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        """The family, which is the id's first part."""
        return self.id.split(".", 1)[0]

    @property
    def doc(self) -> str:
        """The check's docstring, dedented (as ``inspect.getdoc`` would, without importing inspect)."""
        first, _, rest = (self.func.__doc__ or "").strip().partition("\n")
        return (first.strip() + "\n" + textwrap.dedent(rest)).strip()

    def deadline_seconds(self, config: Config) -> float | None:
        """The check's time budget in seconds (None: unbounded)."""
        if self.budget is None:
            return None
        return float(self.budget(config) if callable(self.budget) else self.budget)

    def rule(self) -> Rule:
        """The metadata reports carry."""
        looks_at = tuple(f.name for f in self.needs)
        return Rule(self.id, self.family, self.severity, self.summary, self.doc, self.references, self.tags,
                    self.aliases, looks_at)


def check(*, id: str, severity: str, summary: str, needs: Sequence[Fact[Any]] = (),  # noqa: A002
          each: Fact[Any] | None = None, budget: Budget | None = None, references: Sequence[str] = (),
          tags: Sequence[str] = (), aliases: Sequence[str] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a check ``family.name``.

    With ``each``, the engine calls ``func(item, ctx)`` for every item of that fact, records an item that
    raises in ``skipped`` and keeps the others' findings; otherwise ``func(ctx)``. Either yields findings
    built with ``ctx.finding``. ``budget`` (seconds, or a function of the config) sets ``ctx.deadline``;
    the engine stops a per-item loop there and reports the items left. ``tags`` are MITRE ATT&CK ids.
    """
    if "." not in id:
        raise RegistryError(f"{id}: a check id is 'family.name'")
    needed = tuple(needs) + ((each,) if each is not None and each not in needs else ())
    spec_sev = Severity(severity)

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        func.__check__ = CheckSpec(id, spec_sev, summary, needed, func, each, budget, tuple(references),  # type: ignore[attr-defined]
                                   tuple(tags), tuple(aliases))
        return func

    return wrap


@dataclass(frozen=True)
class Registry:
    """Every family and check, validated; built once per process from the family modules."""

    families: Mapping[str, Family]
    checks: tuple[CheckSpec, ...]
    _by_key: Mapping[str, CheckSpec] = field(repr=False, default_factory=dict)
    retired: Mapping[str, str] = field(default_factory=dict)  # a released id no check has any more, and why

    @classmethod
    def from_modules(cls, modules: Iterable[ModuleType]) -> Registry:
        """Collect and validate the families and checks these modules (and their submodules) declare."""
        families: dict[str, Family] = {}
        specs: list[CheckSpec] = []
        by_key: dict[str, CheckSpec] = {}
        for module in modules:
            family = getattr(module, "FAMILY", None)
            if not isinstance(family, Family):
                raise RegistryError(f"{module.__name__} declares no FAMILY = Family(...)")
            if family.name in families:
                raise RegistryError(f"family {family.name} is declared twice")
            package, _, basename = module.__name__.rpartition(".")
            if package == CHECKS_PACKAGE and basename != family.name:
                raise RegistryError(f"{module.__name__} declares family {family.name!r}: a family is named after its "
                                    f"module ({basename!r})")
            families[family.name] = family
            for spec in _specs_of(module):
                if spec.family != family.name:
                    raise RegistryError(f"{spec.id}: id must start with its family '{family.name}.'")
                for key in (spec.id, *spec.aliases):
                    if key in by_key:
                        raise RegistryError(f"check id {key} is declared twice")
                    by_key[key] = spec
                specs.append(spec)
        retired: dict[str, str] = {}
        for family in families.values():
            for key, why in family.retired.items():
                if key in by_key or not key.startswith(family.name + ".") or not CHECK_ID.fullmatch(key):
                    raise RegistryError(f"retired id {key}: not a free id of family {family.name}")
                retired[key] = why
        registry = cls(families, tuple(specs), by_key, retired)
        registry._validate()
        return registry

    def _validate(self) -> None:
        clash = set(self.families) & set(ENGINE_SECTIONS)
        if clash:
            raise RegistryError(f"family {', '.join(sorted(clash))}: the name is the engine's own config section")
        sections = self.schema()
        facts_by_name: dict[str, Fact[Any]] = {}
        for spec in self.checks:
            for key in (spec.id, *spec.aliases):
                if not CHECK_ID.fullmatch(key):
                    raise RegistryError(f"{spec.id}: '{key}' is not a check id (family.name, lower case, digits, _)")
            bad = [n for n in spec.needs if not isinstance(n, Fact)]
            if bad:
                raise RegistryError(f"{spec.id}: needs must be Fact handles, not {bad!r}")
            try:
                facts = closure(spec.needs)
            except FactError as exc:
                raise RegistryError(f"{spec.id}: {exc}") from exc
            for fact in facts:
                if facts_by_name.setdefault(fact.name, fact) is not fact:
                    raise RegistryError(f"two facts are named {fact.name!r}: declare a fact once and import its handle")
                _validate_inputs(fact, sections)
            if not spec.doc:
                raise RegistryError(f"{spec.id} has no docstring (it is the check's documentation)")
            bad_tags = [t for t in spec.tags if not ATTACK_ID.fullmatch(t)]
            if bad_tags:
                raise RegistryError(f"{spec.id}: tags are MITRE ATT&CK technique ids (T1110.001), not {bad_tags}")

    def schema(self) -> dict[str, type]:
        """Config section name -> class: the engine's sections, then each family's."""
        out = dict(ENGINE_SECTIONS)
        for name, family in self.families.items():
            if family.config is not None:
                out[name] = family.config
        return out

    def canonical(self, key: str) -> str | None:
        """The check id ``key`` names (itself or through an alias); None when it names no check. A retired id
        names itself: a suppress rule written for it stays valid and matches nothing."""
        spec = self._by_key.get(key)
        if spec is None and key in self.retired:
            return key
        return spec.id if spec else None

    def select(self, only: Iterable[str] | None) -> tuple[CheckSpec, ...]:
        """Checks of the given families, check ids or aliases (all when ``only`` is None)."""
        if only is None:
            return self.checks
        families: set[str] = set()
        ids: set[str] = set()
        for name in only:
            if name in self.retired:
                raise RegistryError(f"check {name} was retired: {self.retired[name]}")
            family = name[:-2] if name.endswith(".*") else name
            if family in self.families:
                families.add(family)
            elif (canonical := self.canonical(name)) is not None:
                ids.add(canonical)
            elif "." in name:
                raise RegistryError(f"unknown check {name} (see `hostguard checks`)")
            else:
                raise RegistryError(f"unknown family {name} (families: {', '.join(self.families)}; "
                                    "or a check id from `hostguard checks`)")
        return tuple(s for s in self.checks if s.family in families or s.id in ids)

    def rules(self, specs: Iterable[CheckSpec] | None = None) -> tuple[Rule, ...]:
        """The report metadata of ``specs`` (every check by default)."""
        return tuple(s.rule() for s in (self.checks if specs is None else specs))


def _validate_inputs(fact: Fact[Any], sections: Mapping[str, type]) -> None:
    """A fact's inputs are handles or config sections that exist, one collector parameter each."""
    for item in fact.inputs:
        if not isinstance(item, Fact | OptionalInput | ConfigInput):
            raise RegistryError(f"fact {fact.name}: input {item!r} is not a Fact, an optional fact or config_input()")
        if isinstance(item, ConfigInput) and item.section not in sections:
            raise RegistryError(f"fact {fact.name} reads config section [{item.section}], which no family declares")
    code = getattr(fact.collect, "__code__", None)  # a plain function or lambda (inspect costs 12 ms to import)
    if code is None or code.co_flags & VARARGS:
        return
    if code.co_argcount != 1 + len(fact.inputs):
        raise RegistryError(f"fact {fact.name}: its collector takes {code.co_argcount} arguments, but the host and "
                            f"{len(fact.inputs)} inputs make {1 + len(fact.inputs)}")


def _module_names(package: ModuleType, private: bool = False) -> list[str]:
    """Modules and subpackages of ``package`` by name, without importing them; private ``_x`` ones only when
    asked (inside a family package they hold checks too; beside the families they are helpers)."""
    names: set[str] = set()
    for directory in package.__path__:
        for entry in os.scandir(directory):
            stem, ext = os.path.splitext(entry.name)
            if stem == "__init__" or (stem.startswith("_") and not private) or not stem.isidentifier():
                continue
            is_package = entry.is_dir() and os.path.isfile(os.path.join(entry.path, "__init__.py"))
            if (entry.is_file() and ext == ".py") or is_package:
                names.add(stem)
    return sorted(names)


def _specs_of(module: ModuleType) -> list[CheckSpec]:
    """The checks declared in a family module, or anywhere in a family package."""
    out: list[CheckSpec] = []
    for mod in _specs_modules(module):
        for value in vars(mod).values():
            spec = getattr(value, "__check__", None)
            if isinstance(spec, CheckSpec) and spec.func.__module__ == mod.__name__:
                out.append(spec)
    return out


def _specs_modules(module: ModuleType) -> list[ModuleType]:
    """A module and, for a package, every module below it."""
    out = [module]
    if hasattr(module, "__path__"):
        for name in _module_names(module, private=True):
            out += _specs_modules(importlib.import_module(f"{module.__name__}.{name}"))
    return out


def family_modules(package: str = CHECKS_PACKAGE) -> list[ModuleType]:
    """Every family module of ``package``, in name order; one that cannot be imported is a registry error."""
    pkg = importlib.import_module(package)
    modules = []
    for name in _module_names(pkg):
        try:
            modules.append(importlib.import_module(f"{package}.{name}"))
        except Exception as exc:  # a broken family must be one clear line, not a traceback
            raise RegistryError(f"cannot load family module {package}.{name}: {type(exc).__name__}: {exc}") from exc
    return modules


@cache
def default_registry() -> Registry:
    """The built-in families and checks."""
    return Registry.from_modules(family_modules())
