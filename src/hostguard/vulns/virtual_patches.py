"""Virtual patches in the vulnerability scan: which WAF patch stands in for a missing upgrade, and enabling it.

A vulnerable package is fixed by upgrading it; until then, a WAF virtual patch (``hostguard.waf.vpatch``) can
refuse the exploit's requests. This module connects the two, over what the scan already knows:

* **where a patch applies**: the installed packages (the inventory's covered items) and web applications
  (WordPress core in document roots) that lie in a patch's ``affected`` block, evaluated by the advisory
  matcher in each ecosystem's order, exactly as an advisory would be;
* **the offer** (check ``vulns.virtual_patch``): one finding per patch that applies to something installed
  and is not enabled, at the vulnerability's severity (the exploit it names works against this host now),
  with the advisories that report it; its fix enables the patch in ``[waf] virtual_patches``;
* **the package finding says so** (``vulns.package``): a finding whose advisory ids meet a patch's CVEs or
  aliases, for a version the patch covers, carries ``evidence["virtual_patches"]`` and a remediation summary
  naming it: "enable it with hostguard fix …" while it is off, "virtually patched until you upgrade" once it
  is on. Its upgrade step stays: a virtual patch blocks one known request shape; the upgrade removes the bug.

**Enabling is an edit of the hostguard config file**, not an action of its own: the file is what the WAF
front ends read at start (``hostguard waf proxy``, the middleware given ``config[WafConfig]``), the change
is visible in ``hostguard fix``'s diff, backed up and undone byte for byte like any other fix, and the
scan sees it (the offer is gone, the package finding says "virtually patched"). The file is the one this
hostguard reads (``--config FILE``, else ``/etc/hostguard/hostguard.toml``) on a running system; under
``--root`` it is the tree's own ``/etc/hostguard/hostguard.toml``, the file that system's WAF would read. It
is read fresh from disk through the host on every scan (never the configuration loaded when the command
started), so a fix's re-scan sees what the fix wrote. The edit touches one line: the ``virtual_patches``
line of ``[waf]`` (its list extended, a trailing comment kept), or a new line under the ``[waf]`` header, or
a new ``[waf]`` table at the end; a file that does not exist is written with just that table. The result is
parsed before it is offered, and where the file is laid out otherwise (the list spread over several lines,
``waf`` as dotted keys) the remediation says the one line to write by hand.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hostguard.config import DEFAULT_PATH, ConfigError, build_section
from hostguard.findings import Finding, Severity
from hostguard.host.base import Host, HostError
from hostguard.remediation import Edit, Remediation, Step, Write
from hostguard.vulns.findings import CHECK_ID as PACKAGE_CHECK
from hostguard.vulns.inventory import Inventory
from hostguard.vulns.webapps import WebApp
from hostguard.waf.config import WafConfig
from hostguard.waf.vpatch import VirtualPatch, unknown_ids

__all__ = ["CHECK_ID", "Installed", "PatchView", "WafConfigFile", "annotate", "applicable", "enable_steps",
           "installed", "offer", "read_waf_config", "target_path", "view"]

CHECK_ID = "vulns.virtual_patch"
FAMILY = "vulns"
SETTING = "virtual_patches"
WAF_HEADER = re.compile(r"[ \t]*\[[ \t]*waf[ \t]*\][ \t]*(?:#.*)?")
ANY_HEADER = re.compile(r"[ \t]*\[")
SETTING_LINE = re.compile(r"([ \t]*)virtual_patches[ \t]*=")


@dataclass(frozen=True)
class WafConfigFile:
    """The hostguard config file the host's WAF reads: where, its text (None: absent), the patches it enables,
    and the file's mode and owner (kept when a blank file is written whole)."""

    path: str
    text: str | None
    enabled: tuple[str, ...]
    mode: int = 0o600
    uid: int = 0
    gid: int = 0


def target_path(live: bool, config_file: str | None) -> str:
    """The config file the host's WAF reads: on a running system the one this hostguard was given (``--config``)
    or the default; in a ``--root`` tree always the tree's default (the scanning machine's file is not
    that system's)."""
    return (config_file or DEFAULT_PATH) if live else DEFAULT_PATH


def read_waf_config(host: Host, path: str) -> WafConfigFile:
    """The file at ``path`` (through the host: inside a --root tree there), its ``[waf]`` checked as hostguard
    would check it. HostError naming the file when it cannot be read or is not a valid config."""
    text = host.read_optional(path)
    if text is None:
        return WafConfigFile(path, None, ())
    try:
        data = tomllib.loads(text)
        waf = data.get("waf", {})
        if not isinstance(waf, dict):
            raise ConfigError("'waf' must be a table ([waf])")
        section = build_section(WafConfig, waf, "waf")
    except tomllib.TOMLDecodeError as exc:
        raise HostError(f"config {path}: {exc}") from exc
    except ConfigError as exc:
        raise HostError(f"config {path}: {exc}") from exc
    st = host.stat(path)
    return WafConfigFile(path, text, section.virtual_patches, st.mode & 0o7777, st.uid, st.gid)


# -- where patches apply ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Installed:
    """Something installed a patch can be about: a package of the inventory, or a web application (ecosystem
    its name, e.g. ``WordPress``/``wordpress``)."""

    ecosystem: str
    name: str
    version: str
    location: str
    origin: str

    def label(self) -> str:
        """``name version (where)`` for titles."""
        return f"{self.name} {self.version}" + (f" in {self.location}" if self.location else "")

    def to_dict(self) -> dict[str, str]:
        """As the JSON outputs show it."""
        return {"ecosystem": self.ecosystem, "name": self.name, "version": self.version,
                "location": self.location, "origin": self.origin}


def installed(inventory: Inventory, apps: Iterable[WebApp]) -> list[Installed]:
    """The covered inventory items (what advisories are matched against; a distribution's own copy of a
    language package is its package's business) and the web applications found in document roots."""
    out = [Installed(i.ecosystem, i.name, i.version, i.location, i.origin) for i in inventory.covered()]
    out += [Installed(a.name, a.name.lower(), a.version, a.path, f"{a.path.rstrip('/')}/wp-includes/version.php")
            for a in apps]
    return out


@dataclass(frozen=True)
class Applicable:
    """A patch and what it covers here: each item with the version that fixes it (None: no fix yet), and the
    items of its packages whose version could not be placed, with why."""

    patch: VirtualPatch
    covers: tuple[tuple[Installed, str | None], ...]
    unevaluated: tuple[tuple[Installed, str], ...] = ()


def applicable(patches: Iterable[VirtualPatch], things: Sequence[Installed]) -> list[Applicable]:
    """For each patch (in the order given), the installed things its ``affected`` block holds."""
    out = []
    for patch in patches:
        covers: list[tuple[Installed, str | None]] = []
        unevaluated: list[tuple[Installed, str]] = []
        for thing in things:
            if not patch.names_package(thing.ecosystem, thing.name):
                continue
            result = patch.applies(thing.ecosystem, thing.name, thing.version)
            if result.matches:
                covers.append((thing, result.matches[0].fix))
            unevaluated += [(thing, u.reason) for u in result.unevaluated]
        out.append(Applicable(patch, tuple(covers), tuple(unevaluated)))
    return out


# -- enabling ----------------------------------------------------------------------------------------------------

def _toml_list(ids: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in ids) + "]"


def _after(text: str, step: Step) -> str:
    """The file as ``respond/apply.py`` would leave it after one Edit (same line splitting and endings)."""
    if isinstance(step, Write):
        return step.content
    assert isinstance(step, Edit)
    lines = text.splitlines(keepends=True)
    current = lines[step.line - 1]
    ending = current[len(current.rstrip("\r\n")):] or "\n"
    lines[step.line - 1] = "".join(part + ending for part in step.new.split("\n"))
    return "".join(lines)


def _without_setting(data: dict[str, Any]) -> dict[str, Any]:
    waf = dict(data.get("waf", {}))
    waf.pop(SETTING, None)
    return {**data, "waf": waf}


def _line_value_end(line: str) -> str | None:
    """What follows a one-line ``virtual_patches = [...]`` value (a comment, spaces), None when the value does not
    end on this line."""
    for end in range(len(line), 0, -1):
        if line[end - 1] != "]":
            continue
        try:
            tomllib.loads(line[:end].strip())
        except tomllib.TOMLDecodeError:
            continue
        rest = line[end:]
        return rest if not rest.strip() or rest.strip().startswith("#") else None
    return None


def _edit(cfg: WafConfigFile, text: str, entry: str) -> Step | None:
    lines = text.splitlines()
    header = next((n for n, line in enumerate(lines) if WAF_HEADER.fullmatch(line)), None)
    if header is None:
        if "waf" in tomllib.loads(text):
            return None   # [waf] made otherwise (dotted keys, an inline table): by hand
        return Edit(cfg.path, len(lines), lines[-1], f"{lines[-1]}\n\n[waf]\n{entry}")
    end = next((n for n in range(header + 1, len(lines)) if ANY_HEADER.match(lines[n])), len(lines))
    found = next((n for n in range(header + 1, end) if SETTING_LINE.match(lines[n])), None)
    if found is None:
        return Edit(cfg.path, header + 1, lines[header], f"{lines[header]}\n{entry}")
    rest = _line_value_end(lines[found])
    if rest is None:
        return None
    indent = SETTING_LINE.match(lines[found])[1]  # type: ignore[index]
    return Edit(cfg.path, found + 1, lines[found], f"{indent}{entry}{rest}")


def enable_steps(cfg: WafConfigFile, patch_id: str) -> tuple[Step, ...] | None:
    """The one step that adds ``patch_id`` to ``[waf] virtual_patches`` of the file, proven by parsing the result
    (the list extended, nothing else changed); None when the file's layout asks for a hand edit."""
    wanted = [*cfg.enabled, patch_id]
    entry = f"{SETTING} = {_toml_list(wanted)}"
    text = cfg.text
    if text is None:
        return (Write(cfg.path, f"[waf]\n{entry}\n", "0600", "0:0"),)
    if not text.strip():
        return (Write(cfg.path, f"[waf]\n{entry}\n", f"{cfg.mode:04o}", f"{cfg.uid}:{cfg.gid}"),)
    try:
        step = _edit(cfg, text, entry)
        if step is None:
            return None
        before, after = tomllib.loads(text), tomllib.loads(_after(text, step))
    except tomllib.TOMLDecodeError:
        return None
    if after.get("waf", {}).get(SETTING) != wanted or _without_setting(before) != _without_setting(after):
        return None
    return (step,)


# -- findings -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatchView:
    """What a scan says about virtual patches: the package findings annotated, the offers, and the problems
    met (the config file unreadable, a patch it names that does not exist)."""

    packages: tuple[Finding, ...]
    offers: tuple[Finding, ...]
    problems: tuple[str, ...] = ()
    unplaced: tuple[str, ...] = ()   # installed things of a patch's packages whose version could not be placed
    applicable: tuple[Applicable, ...] = ()   # the patches that cover something installed
    enabled: tuple[str, ...] | None = None    # the patches the config enables (None: unknown)

    def to_json(self) -> list[dict[str, Any]]:
        """Each patch covering something installed: enabled or not, what it covers, the offer's fingerprint."""
        offers = {str(f.evidence["patch"]): f.fingerprint for f in self.offers}
        return [{"id": a.patch.id, "cves": list(a.patch.cves),
                 "enabled": None if self.enabled is None else a.patch.id in self.enabled,
                 "applies_to": [{**t.to_dict(), "fixed": fix or "no fix yet"} for t, fix in a.covers],
                 "offer": offers.get(a.patch.id)} for a in self.applicable]


def _package_ids(findings: Iterable[Finding]) -> dict[tuple[str, str, str], set[str]]:
    """(ecosystem, name, location) -> the advisory ids and aliases of the package finding about it."""
    return {(str(f.target["ecosystem"]), str(f.target["name"]), str(f.target.get("location", ""))):
            set(f.evidence.get("ids", ())) for f in findings if f.id == PACKAGE_CHECK}


def offer(app: Applicable, cfg: WafConfigFile, advisories: Mapping[tuple[str, str, str], set[str]]) -> Finding:
    """The finding offering to enable ``app.patch``, which covers ``app.covers`` and is not enabled."""
    patch = app.patch
    first, fix = app.covers[0]
    more = f" and {len(app.covers) - 1} more" if len(app.covers) > 1 else ""
    title = (f"WAF virtual patch {patch.id} ({', '.join(patch.cves)}) is not enabled: {first.label()}{more} is "
             "vulnerable")
    reported = sorted({i for thing, _ in app.covers
                       for i in advisories.get((thing.ecosystem, thing.name, thing.location), set()) & patch.names})
    evidence: dict[str, Any] = {
        "patch": patch.id, "cves": list(patch.cves), "aliases": list(patch.aliases), "summary": patch.summary,
        "exploit": patch.exploit, "rules": list(patch.rule_ids),
        "applies_to": [{**thing.to_dict(), "fixed": fixed or "no fix yet"} for thing, fixed in app.covers],
        "reported_by": reported, "config": cfg.path, "enabled": list(cfg.enabled)}
    upgrade = f"upgrading {first.name} to {fix} or later" if fix else f"{first.name} is upgraded (no fix is published yet)"
    summary = (f"Enable WAF virtual patch {patch.id} in [waf] {SETTING} of {cfg.path}, then restart the WAF front "
               f"ends (hostguard waf proxy, applications with the middleware) and run `hostguard waf enable "
               f"--server nginx|apache` again where the WAF runs in the web server, so they load it: it refuses "
               f"{patch.exploit}. It stands in until {upgrade} removes the vulnerability; the upgrade stays to do.")
    steps = enable_steps(cfg, patch.id)
    if steps is None:
        remediation = Remediation.by_hand(
            summary, f"{cfg.path} sets [waf] in a way hostguard does not rewrite: add \"{patch.id}\" to "
                     f"`{SETTING} = [...]` in its [waf] table by hand")
    else:
        remediation = Remediation(summary, steps=steps)
    target = {"kind": "config", "path": cfg.path, "setting": f"waf.{SETTING}", "value": patch.id}
    return Finding(id=CHECK_ID, category=FAMILY, severity=Severity(patch.severity), title=title, target=target,
                   evidence=evidence, remediation=remediation)


def annotate(finding: Finding, apps: Sequence[Applicable], cfg: WafConfigFile | None,
             offers: Mapping[str, Finding]) -> Finding:
    """A ``vulns.package`` finding, saying which virtual patch covers it (its ids meet the patch's, and the patch
    covers this very package and place) and whether it is enabled; unchanged when none does."""
    ids = set(finding.evidence.get("ids", ()))
    key = (str(finding.target["ecosystem"]), str(finding.target["name"]), str(finding.target.get("location", "")))
    covering = [a.patch for a in apps if a.patch.names & ids and any(
        (t.ecosystem, t.name, t.location) == key for t, _ in a.covers)]
    if not covering:
        return finding
    enabled = set(cfg.enabled) if cfg is not None else set()
    notes = []
    for patch in covering:
        if patch.id in enabled:
            notes.append(f"Virtually patched until you upgrade: WAF patch {patch.id} is enabled in "
                         f"{cfg.path if cfg else 'the config'} and refuses {patch.exploit} (in a WAF front end "
                         f"restarted since, and in nginx or Apache after `hostguard waf enable` again).")
        elif patch.id in offers:
            notes.append(f"Until then, WAF virtual patch {patch.id} refuses its exploit: enable it with "
                         f"`hostguard fix {offers[patch.id].fingerprint[:12]}` ({CHECK_ID}).")
        else:
            notes.append(f"Until then, WAF virtual patch {patch.id} refuses its exploit: add it to [waf] {SETTING}.")
    evidence = {**finding.evidence, "virtual_patches": [
        {"id": p.id, "cves": list(p.cves), "rules": list(p.rule_ids),
         "enabled": (p.id in enabled) if cfg is not None else None,
         "config": cfg.path if cfg is not None else None} for p in covering]}
    patched = [p.id for p in covering if p.id in enabled]
    title = finding.title + (f" (virtually patched: {', '.join(patched)})" if patched else "")
    remediation = dataclasses.replace(finding.remediation, summary=f"{finding.remediation.summary} {' '.join(notes)}")
    return dataclasses.replace(finding, title=title, evidence=evidence, remediation=remediation)


def view(patches: Mapping[str, VirtualPatch] | None, cfg: WafConfigFile | None, inventory: Inventory,
         apps: Iterable[WebApp], package_findings: Sequence[Finding], problems: Sequence[str] = ()) -> PatchView:
    """The scan's word on virtual patches. Without the patches (a malformed data file) or without the config
    file (unreadable, invalid), the package findings pass unchanged and no offer is made: ``problems`` says
    why."""
    said = list(problems)
    if patches is None:
        return PatchView(tuple(package_findings), (), tuple(said))
    found = applicable(patches.values(), installed(inventory, apps))
    apps_here = [a for a in found if a.covers]
    unplaced = tuple(f"virtual patch {a.patch.id}: {thing.label()} ({thing.ecosystem}): {why}"
                     for a in found for thing, why in a.unevaluated)
    offers: dict[str, Finding] = {}
    if cfg is not None:
        for name in unknown_ids(cfg.enabled, patches):
            said.append(f"{cfg.path}: [waf] {SETTING} names {name!r}, which is no virtual patch: the WAF will refuse to "
                        "start (see hostguard waf patches)")
        advisories = _package_ids(package_findings)
        offers = {a.patch.id: offer(a, cfg, advisories) for a in apps_here if a.patch.id not in cfg.enabled}
    return PatchView(tuple(annotate(f, apps_here, cfg, offers) for f in package_findings),
                     tuple(offers.values()), tuple(said), unplaced, tuple(apps_here),
                     cfg.enabled if cfg is not None else None)
