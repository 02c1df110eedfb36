"""Virtual patches: ModSecurity rules written against the exploit of one known vulnerability, kept as data.

A virtual patch stands in for an upgrade that has not happened yet: the vulnerable application stays as it
is, and the WAF in front of it refuses the one request shape that exploits it. Each patch is one file of
``data/waf/virtual-patches/<id>.toml`` holding what the owner and the matcher need to decide, and the rules:

* ``id`` (the file's name), ``summary``, ``cves`` and other ``aliases`` (advisory ids: SA-CORE-…),
  ``severity`` of the vulnerability, ``exploit`` (the request shape the rules stop, in words) and
  ``references``;
* ``affected``: OSV's ``affected[]`` as written in advisories (``package = {ecosystem, name}``, ``ranges`` of
  ``ECOSYSTEM``/``SEMVER`` events, ``versions``), evaluated by the advisory matcher itself
  (:func:`hostguard.vulns.match.evaluate`, in each ecosystem's own order): whether a patch applies to what
  is installed is answered exactly as whether an advisory does. Web applications the inventory finds in
  document roots (WordPress core) have no OSV ecosystem and no known version order: their entries list
  ``versions`` only, under the application's name as ecosystem (``WordPress``/``wordpress``);
* ``rules``: the ModSecurity rules, ids 21000–21999.

**The rules deny outright** (``deny``, with the engine's mode: ``[waf] mode = "detect"`` only records them)
instead of adding to CRS's anomaly score. A patch is enabled because this host runs an application known to
be vulnerable, and its rules match only that exploit's shape, which honest traffic to the application never
has (each patch has ordinary requests to the same application that must pass, tests/waf/test_virtual_patches
.py): there is no judgement left for a score to make. And a score would make the patch depend on settings
made for other reasons: a site that raised ``inbound_threshold`` above one critical match, or an exclusion
written for a false positive of CRS, would silently switch the patch off while the owner believes the
application is covered. So the loader refuses a patch rule that does not ``deny``.

The loader refuses, naming the file and the key: unknown keys, missing or mistyped fields, an id other than
the file's name, ranges whose events are not ``introduced`` first and alternating, whose versions the
ecosystem's order cannot read or that do not increase, ``ranges`` in an ecosystem without a version order,
rule ids outside 21000–21999 or used twice (in one patch or two), rules without an id, a ``msg`` or the tag
``hostguard/virtual-patch/<id>``, and directives other than ``SecRule`` (a patch must not change the engine's
settings for every other rule). Whether libmodsecurity accepts the rules is :func:`check_patch_rules`'s
question (the engine itself, as ``hostguard waf check`` asks it).

This module reads data and answers questions; it never touches the engine unless asked to check rules, so
the scan's families can import it.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from hostguard.vulns import versions
from hostguard.vulns.match import EVALUATED_RANGES, PackageResult, evaluate, normalize_name
from hostguard.vulns.osv import EVENT_KINDS, Affected, Event, Range, Vulnerability
from hostguard.waf.directives import directives

__all__ = ["RULE_IDS", "PatchError", "VirtualPatch", "catalogue", "check_patch_rules", "load_directory",
           "parse_patch", "patch_directory", "unknown_ids"]

RULE_IDS = range(21000, 22000)
PATCH_ID = re.compile(r"[a-z0-9][a-z0-9-]{2,63}")
ADVISORY_ID = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+")
CVE_ID = re.compile(r"CVE-\d{4}-\d{4,}")
SEVERITIES = ("critical", "high", "medium", "low")
REQUIRED = ("id", "summary", "cves", "severity", "exploit", "rules", "affected")
OPTIONAL = ("aliases", "references")
AFFECTED_KEYS = ("package", "ranges", "versions")
PACKAGE_KEYS = ("ecosystem", "name")
RANGE_KEYS = ("type", "events")
TAG = "hostguard/virtual-patch"
SUFFIX = ".toml"


class PatchError(ValueError):
    """A virtual patch file is malformed: one line naming the file and what is wrong."""


@dataclass(frozen=True)
class VirtualPatch:
    """One virtual patch as loaded and validated (see the module's docstring for the fields)."""

    id: str
    summary: str
    cves: tuple[str, ...]
    aliases: tuple[str, ...]
    severity: str
    exploit: str
    references: tuple[str, ...]
    affected: tuple[Affected, ...]
    rules: str
    rule_ids: tuple[int, ...]
    source: str

    @property
    def names(self) -> frozenset[str]:
        """Every id the vulnerability is known by (CVEs and aliases): what an advisory's ids are compared with."""
        return frozenset((*self.cves, *self.aliases))

    def advisory(self) -> Vulnerability:
        """The patch as an OSV record, for the matcher."""
        return Vulnerability(id=self.id, aliases=self.cves + self.aliases, modified="", withdrawn=None,
                             summary=self.summary, severity=(), affected=self.affected)

    def names_package(self, ecosystem: str, name: str) -> bool:
        """Whether one of the ``affected`` entries is about this package (names compared as advisories' are)."""
        return bool(self._entries(ecosystem, name))

    def _entries(self, ecosystem: str, name: str) -> tuple[Affected, ...]:
        wanted = normalize_name(ecosystem, name)
        return tuple(a for a in self.affected
                     if a.ecosystem == ecosystem and normalize_name(a.ecosystem, a.name) == wanted)

    def applies(self, ecosystem: str, name: str, version: str) -> PackageResult:
        """Whether ``name`` at ``version`` lies in the patch's ``affected`` block, evaluated by the advisory matcher
        (``matches``: it does, with the fixed version; ``unevaluated``: the version cannot be placed, with why)."""
        return evaluate(ecosystem, version, [(self.advisory(), self._entries(ecosystem, name))])


# -- loading -------------------------------------------------------------------------------------------------

def _fail(source: str, where: str, problem: str) -> PatchError:
    return PatchError(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")


def _keys(obj: object, where: str, source: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(source, where, "must be a table")
    unknown = [k for k in obj if k not in (*required, *optional)]
    if unknown:
        raise _fail(source, where, f"unknown key {unknown[0]!r} (known: {', '.join((*required, *optional))})")
    missing = [k for k in required if k not in obj]
    if missing:
        raise _fail(source, where, f"missing {', '.join(missing)}")
    return obj


def _text(obj: Mapping[str, Any], key: str, source: str, where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, f"{where}{key}", "must be a non-empty string")
    return value


def _texts(obj: Mapping[str, Any], key: str, source: str, pattern: re.Pattern[str] | None = None,
           required: bool = False) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(source, key, "must be a list of non-empty strings")
    if required and not value:
        raise _fail(source, key, "must not be empty")
    if len(set(value)) != len(value):
        raise _fail(source, key, "lists an entry twice")
    bad = [v for v in value if pattern is not None and not pattern.fullmatch(v)]
    if bad:
        raise _fail(source, key, f"{bad[0]!r} is not an id of that kind")
    return tuple(value)


def _range(obj: object, ecosystem: str, where: str, source: str) -> Range:
    rng = _keys(obj, where, source, RANGE_KEYS)
    kind = rng["type"]
    if not isinstance(kind, str) or kind not in EVALUATED_RANGES:
        raise _fail(source, f"{where}.type", f"{kind!r}: ECOSYSTEM or SEMVER (the ranges the matcher evaluates)")
    if versions.base_ecosystem(ecosystem) not in versions.supported():
        raise _fail(source, where, f"no version order is known for {ecosystem!r}: list its affected versions "
                                   "instead (versions = [...])")
    raw = rng["events"]
    if not isinstance(raw, list) or not raw:
        raise _fail(source, f"{where}.events", "must be a non-empty list")
    events: list[Event] = []
    for i, item in enumerate(raw):
        spot = f"{where}.events[{i}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise _fail(source, spot, "must be a table with one key: " + ", ".join(EVENT_KINDS))
        [(kind_, version)] = item.items()
        if kind_ not in EVENT_KINDS:
            raise _fail(source, spot, f"unknown key {kind_!r} (known: {', '.join(EVENT_KINDS)})")
        if not isinstance(version, str) or not version:
            raise _fail(source, f"{spot}.{kind_}", "must be a non-empty version string")
        if not (kind_ == "introduced" and version == "0"):
            try:
                versions.sort_key(ecosystem, version)
            except versions.InvalidVersion as exc:
                raise _fail(source, f"{spot}.{kind_}", f"{ecosystem} cannot read this version: {exc}") from exc
        events.append(Event(kind_, version))
    ordered = [e for e in events if e.kind != "limit"]
    if events[len(ordered):] != [e for e in events if e.kind == "limit"]:
        raise _fail(source, f"{where}.events", "limit events come last")
    for i, evt in enumerate(ordered):
        opening = i % 2 == 0
        if (evt.kind == "introduced") != opening:
            raise _fail(source, f"{where}.events", "events must alternate: introduced, then fixed or last_affected, "
                                                   "then introduced ...")
        if i and not (ordered[i - 1].version == "0" or versions.compare(ecosystem, ordered[i - 1].version,
                                                                        evt.version) < 0):
            raise _fail(source, f"{where}.events[{i}]", f"{evt.version} is not above {ordered[i - 1].version}")
    return Range(kind, tuple(events))


def _affected(obj: object, where: str, source: str) -> Affected:
    aff = _keys(obj, where, source, ("package",), ("ranges", "versions"))
    pkg = _keys(aff["package"], f"{where}.package", source, PACKAGE_KEYS)
    ecosystem = _text(pkg, "ecosystem", source, f"{where}.package.")
    name = _text(pkg, "name", source, f"{where}.package.")
    raw_ranges = aff.get("ranges", [])
    if not isinstance(raw_ranges, list):
        raise _fail(source, f"{where}.ranges", "must be a list")
    ranges = tuple(_range(r, ecosystem, f"{where}.ranges[{j}]", source) for j, r in enumerate(raw_ranges))
    listed = aff.get("versions", [])
    if not isinstance(listed, list) or not all(isinstance(v, str) and v for v in listed):
        raise _fail(source, f"{where}.versions", "must be a list of non-empty version strings")
    if not ranges and not listed:
        raise _fail(source, where, "needs ranges or versions: which versions the patch is for")
    if versions.base_ecosystem(ecosystem) in versions.supported():
        for v in listed:
            try:
                versions.sort_key(ecosystem, v)
            except versions.InvalidVersion as exc:
                raise _fail(source, f"{where}.versions", f"{ecosystem} cannot read {v!r}: {exc}") from exc
    return Affected(ecosystem, name, ranges, frozenset(listed))


def _rule_ids(patch_id: str, text: str, source: str) -> tuple[int, ...]:
    ids: list[int] = []
    chained = False
    written = directives(text)
    if not written:
        raise _fail(source, "rules", "holds no rule")
    for n, directive in enumerate(written, 1):
        where = f"rules (directive {n})"
        if not directive.startswith("SecRule "):
            raise _fail(source, where, f"only SecRule directives belong in a patch, not {directive.split()[0]!r}")
        found = [int(i) for i in re.findall(r"(?<![\w.])id:'?(\d+)", directive)]
        starts_chain = re.search(r"[\"',\s]chain['\",]", directive) is not None
        if chained:
            if found or re.search(r"[\"',\s]deny['\",]", directive):
                raise _fail(source, where, "a chained rule carries no id and no disruptive action")
        else:
            if len(found) != 1:
                raise _fail(source, where, "a rule needs exactly one id")
            if found[0] not in RULE_IDS:
                raise _fail(source, where, f"id {found[0]} is outside the virtual patches' range "
                                           f"{RULE_IDS.start}-{RULE_IDS.stop - 1}")
            if found[0] in ids:
                raise _fail(source, where, f"id {found[0]} is used twice")
            if not re.search(r"[\"',\s]deny['\",]", directive):
                raise _fail(source, where, "a virtual patch rule denies (see hostguard.waf.vpatch: never only scores)")
            if "msg:'" not in directive:
                raise _fail(source, where, "a rule needs a msg:'...' naming the vulnerability")
            if f"tag:'{TAG}/{patch_id}'" not in directive:
                raise _fail(source, where, f"a rule needs tag:'{TAG}/{patch_id}' (events name the patch)")
            ids.append(found[0])
        chained = starts_chain
    if chained:
        raise _fail(source, "rules", "the last rule starts a chain that never comes")
    return tuple(ids)


def parse_patch(text: str, source: str, stem: str | None = None) -> VirtualPatch:
    """One patch file's text, validated (PatchError naming ``source`` and the key otherwise); ``stem`` is the
    file's name without ``.toml``, which the id must equal."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(source, "", f"not TOML ({exc})") from exc
    _keys(data, "", source, REQUIRED, OPTIONAL)
    patch_id = _text(data, "id", source)
    if not PATCH_ID.fullmatch(patch_id):
        raise _fail(source, "id", f"{patch_id!r}: lower-case letters, digits and '-', 3 to 64")
    if stem is not None and patch_id != stem:
        raise _fail(source, "id", f"{patch_id!r} must be the file's name ({stem!r})")
    severity = _text(data, "severity", source)
    if severity not in SEVERITIES:
        raise _fail(source, "severity", f"{severity!r}: one of {', '.join(SEVERITIES)}")
    cves = _texts(data, "cves", source, CVE_ID, required=True)
    aliases = _texts(data, "aliases", source, ADVISORY_ID)
    if set(cves) & set(aliases):
        raise _fail(source, "aliases", "repeats a CVE of cves")
    references = _texts(data, "references", source, re.compile(r"https://\S+"))
    raw = data["affected"]
    if not isinstance(raw, list) or not raw:
        raise _fail(source, "affected", "must be a non-empty list of tables ([[affected]])")
    affected = tuple(_affected(a, f"affected[{i}]", source) for i, a in enumerate(raw))
    rules = _text(data, "rules", source)
    return VirtualPatch(patch_id, _text(data, "summary", source).strip(), cves, aliases, severity,
                        " ".join(_text(data, "exploit", source).split()), references, affected, rules,
                        _rule_ids(patch_id, rules, source), source)


def load_directory(directory: str | os.PathLike[str]) -> dict[str, VirtualPatch]:
    """Every ``*.toml`` patch of ``directory`` by id (name order), validated alone and together (a rule id
    used by two patches is refused). Any other file there is an error too: a patch misnamed ``.tml`` would
    otherwise be silently left out."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise PatchError(f"{directory}: {exc.strerror or exc}") from exc
    patches: dict[str, VirtualPatch] = {}
    owner: dict[int, str] = {}
    for name in names:
        path = os.path.join(directory, name)
        source = f"virtual patch {name}"
        if not name.endswith(SUFFIX) or not os.path.isfile(path):
            raise PatchError(f"{path}: not a virtual patch (a directory holds <id>{SUFFIX} files only)")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise PatchError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from exc
        patch = parse_patch(text, source, name[:-len(SUFFIX)])
        for rule_id in patch.rule_ids:
            if rule_id in owner:
                raise _fail(source, "rules", f"id {rule_id} is already used by virtual patch {owner[rule_id]}")
            owner[rule_id] = patch.id
        patches[patch.id] = patch
    return patches


def patch_directory() -> str:
    """Where the shipped patches are (``data/waf/virtual-patches``)."""
    return str(resources.files("hostguard.data").joinpath("waf", "virtual-patches"))


@cache
def catalogue() -> dict[str, VirtualPatch]:
    """The shipped patches by id, loaded once (PatchError when one is malformed)."""
    return load_directory(patch_directory())


def unknown_ids(ids: Iterable[str], known: Mapping[str, VirtualPatch]) -> list[str]:
    """The ids that name no patch, in the order given."""
    return [i for i in ids if i not in known]


def check_patch_rules(patches: Iterable[VirtualPatch]) -> list[tuple[str, str]]:
    """Each patch's rules loaded by the engine itself, alone (:func:`hostguard.waf.engine.check_rules`):
    (patch id, the library's error) for each one refused. Needs libmodsecurity."""
    from hostguard.waf.engine import check_rules

    problems = []
    with tempfile.TemporaryDirectory(prefix="hostguard-vpatch-") as tmp:
        for patch in patches:
            path = os.path.join(tmp, f"{patch.id}.conf")
            with open(path, "w", encoding="utf-8") as f:
                f.write(patch.rules)
            problems += [(patch.id, error.replace(path, patch.source)) for _, error in check_rules([path])]
    return problems
