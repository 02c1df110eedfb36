"""The rules the WAF loads, in the one order in which every setting takes effect.

ModSecurity evaluates rules in load order within a phase, so a setting placed after the rule that reads it
silently does nothing. Debian's libmodsecurity3 3.0.9 also rejects ``IncludeOptional`` (which Debian's own
``owasp-crs.load`` uses), so hostguard writes explicit ``Include`` lines, in this order:

1. ``data/waf/base.conf``: body access and limits, the JSON and XML body processors, unparsable bodies;
2. the engine mode and CRS's settings (what ``crs-setup.conf`` would set): default actions, paranoia level,
   anomaly thresholds, the application exclusion packages asked for;
3. hostguard's own exclusion packages (``data/waf/exclusions/``, e.g. phpMyAdmin's SQL box) and per-site
   exclusions (phase-1 ``ctl:`` rules): before REQUEST-901;
4. CRS's REQUEST-901 (initialization), then the enabled virtual patches (``[waf] virtual_patches``, the rules
   of ``data/waf/virtual-patches/<id>.toml``, ids 21000–21999, see ``hostguard.waf.vpatch``): they deny on
   their own, so they need nothing CRS computes, and coming before CRS's attack rules a request a patch
   refuses stops there, its event naming the CVE rather than a score; after the exclusions of step 3 and
   901's setup, so that an owner's ``ctl:ruleRemoveById`` (or step 8) can still switch one off;
5. the rest of CRS's request rules (REQUEST-903 exclusion packages, REQUEST-905 … REQUEST-944);
6. hostguard's own rules (``data/waf/rules/*.conf``, ids 10000–29999): they add to the anomaly score, so
   they come before REQUEST-949, which decides on it;
7. REQUEST-949 (the blocking evaluation);
8. removals (``SecRuleRemoveById``): after every rule they remove.

Response rules (RESPONSE-95x) are not loaded: the WAF inspects requests.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

__all__ = ["CRS_RULES", "WafSettings", "assemble", "own_rule_files", "virtual_patch_rules"]

CRS_RULES = "/usr/share/modsecurity-crs/rules"
BLOCKING = "REQUEST-949-BLOCKING-EVALUATION.conf"
INITIALIZATION = "REQUEST-901-INITIALIZATION.conf"
CRS_PACKAGES = ("wordpress", "drupal", "nextcloud", "dokuwiki", "cpanel", "xenforo")   # CRS's REQUEST-903.*
OWN_PACKAGES = ("phpmyadmin",)   # data/waf/exclusions/<name>.conf
EXCLUSION_PACKAGES = CRS_PACKAGES + OWN_PACKAGES
MODES = {"block": "On", "detect": "DetectionOnly"}
# What a site of today is sent, beyond CRS 3.3's defaults (GET HEAD POST OPTIONS; forms, multipart, XML, JSON):
# the methods of REST APIs, and the request bodies APIs and feeds are made of. A method or type outside these
# lists scores (911100, 920420); WebDAV's methods come with the nextcloud package.
DEFAULT_METHODS = ("GET", "HEAD", "POST", "OPTIONS", "PUT", "PATCH", "DELETE")
DEFAULT_CONTENT_TYPES = (
    "application/x-www-form-urlencoded", "multipart/form-data", "multipart/related", "text/xml", "application/xml",
    "application/soap+xml", "application/json", "application/cloudevents+json", "application/cloudevents-batch+json",
    "application/merge-patch+json", "application/json-patch+json", "application/ld+json", "application/vnd.api+json",
    "application/problem+json", "application/x-ndjson", "application/graphql", "application/x-yaml",
    "application/yaml", "text/yaml", "text/csv", "text/plain", "text/calendar", "application/rss+xml",
    "application/atom+xml", "application/octet-stream", "application/csp-report", "application/reports+json",
    "text/markdown", "application/sparql-query", "application/x-protobuf", "application/protobuf",
    "application/pgp-encrypted", "text/x-opml", "application/pdf", "application/zip", "image/jpeg", "image/png",
    "image/gif", "image/webp", "image/avif", "image/svg+xml",
)
# Any structured-syntax type (RFC 6839: type/name+json, type/name+xml) is allowed too: hostguard's base config
# hands those bodies to the JSON and XML processors, so their fields are read like any other arguments.
STRUCTURED_TYPES = ("SecRule REQUEST_HEADERS:Content-Type \"@rx ^\\s*([a-z0-9.-]+/[a-z0-9.-]+\\+(?:json|xml))\\s*(?:;|$)\" "
                    "\"id:10010,phase:1,pass,nolog,capture,t:none,t:lowercase,"
                    "setvar:'tx.allowed_request_content_type=%{tx.allowed_request_content_type} |%{TX.1}|'\"")


@dataclass(frozen=True)
class WafSettings:
    """How the engine is set up: ``mode`` block or detect, CRS's paranoia level and inbound anomaly
    threshold, the CRS exclusion packages for known applications, rule ids removed, whether hostguard's
    own rules are loaded, and the virtual patches enabled (ids of ``hostguard waf patches``)."""

    mode: str = "block"
    paranoia: int = 1
    inbound_threshold: int = 5
    applications: tuple[str, ...] = ()
    remove_ids: tuple[int, ...] = ()
    own_rules: bool = True
    crs_dir: str = CRS_RULES
    extra_files: tuple[str, ...] = field(default=())   # after hostguard's rules, before REQUEST-949
    methods: tuple[str, ...] = DEFAULT_METHODS
    content_types: tuple[str, ...] = DEFAULT_CONTENT_TYPES
    virtual_patches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: block or detect")
        if not 1 <= self.paranoia <= 4:
            raise ValueError(f"paranoia level {self.paranoia}: 1 to 4")
        if self.inbound_threshold < 1:
            raise ValueError(f"inbound anomaly threshold {self.inbound_threshold}: at least 1")
        unknown = [a for a in self.applications if a not in EXCLUSION_PACKAGES]
        if unknown:
            raise ValueError(f"no CRS exclusion package for {', '.join(unknown)} (known: {', '.join(EXCLUSION_PACKAGES)})")
        if self.virtual_patches:
            virtual_patch_rules(self.virtual_patches)   # an unknown id or a malformed patch is refused now


def _data_path(name: str) -> str:
    return str(resources.files("hostguard.data").joinpath("waf", name))


def own_rule_files() -> list[str]:
    """hostguard's own rule files, in name order."""
    return sorted(glob.glob(os.path.join(_data_path("rules"), "*.conf")))


def virtual_patch_rules(ids: Sequence[str]) -> str:
    """The rules of the virtual patches ``ids`` (each once, in the order given), each headed by a comment
    naming it. ValueError for an id no patch has (``hostguard.waf.vpatch.PatchError``, a ValueError, for a
    malformed patch file)."""
    from hostguard.waf.vpatch import catalogue, unknown_ids

    patches = catalogue()
    unknown = unknown_ids(ids, patches)
    if unknown:
        raise ValueError(f"no virtual patch {', '.join(repr(u) for u in unknown)} (known: {', '.join(patches)}; "
                         "see hostguard waf patches)")
    return "\n".join(f"# virtual patch {i} ({', '.join(patches[i].cves)})\n{patches[i].rules.strip()}\n"
                     for i in dict.fromkeys(ids))


def _setup(settings: WafSettings) -> str:
    lines = [
        f"SecRuleEngine {MODES[settings.mode]}",
        'SecDefaultAction "phase:1,log,auditlog,pass"',
        'SecDefaultAction "phase:2,log,auditlog,pass"',
        'SecAction "id:900990,phase:1,nolog,pass,t:none,setvar:tx.crs_setup_version=334"',
        f'SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={settings.paranoia}"',
        f'SecAction "id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold='
        f'{settings.inbound_threshold},setvar:tx.outbound_anomaly_score_threshold=4"',
    ]
    methods = " ".join(settings.methods)
    lines.append(f'SecAction "id:900200,phase:1,nolog,pass,t:none,setvar:\'tx.allowed_methods={methods}\'"')
    types = " ".join(f"|{t}|" for t in settings.content_types)
    lines.append(f'SecAction "id:900220,phase:1,nolog,pass,t:none,setvar:\'tx.allowed_request_content_type={types}\'"')
    lines.append(STRUCTURED_TYPES)
    for number, app in enumerate(a for a in settings.applications if a in CRS_PACKAGES):
        lines.append(f'SecAction "id:{900130 + number},phase:1,nolog,pass,t:none,'
                     f'setvar:tx.crs_exclusions_{app}=1"')
    return "\n".join(lines) + "\n"


def assemble(settings: WafSettings, site_rules: Sequence[str] = ()) -> str:
    """The rules text the engine loads (``Include`` lines and the generated settings), in the order above.
    ``site_rules`` are phase-1 rules (per-site ``ctl:`` exclusions and thresholds)."""
    crs = sorted(glob.glob(os.path.join(settings.crs_dir, "REQUEST-*.conf")))
    if not crs:
        raise FileNotFoundError(f"no CRS rules in {settings.crs_dir} (Debian: apt-get install modsecurity-crs)")
    before = [p for p in crs if os.path.basename(p) < BLOCKING]
    blocking = [p for p in crs if os.path.basename(p) >= BLOCKING]
    own_packages = [f'Include "{_data_path(f"exclusions/{app}.conf")}"' for app in settings.applications
                    if app in OWN_PACKAGES]
    parts = [f'Include "{_data_path("base.conf")}"', _setup(settings), *own_packages, *site_rules]
    initialization = [p for p in before if os.path.basename(p) <= INITIALIZATION]
    parts += [f'Include "{p}"' for p in initialization]
    if settings.virtual_patches:
        parts.append(virtual_patch_rules(settings.virtual_patches))
    parts += [f'Include "{p}"' for p in before if p not in initialization]
    if settings.own_rules:
        parts += [f'Include "{p}"' for p in own_rule_files()]
    parts += [f'Include "{p}"' for p in settings.extra_files]
    parts += [f'Include "{p}"' for p in blocking]
    if settings.remove_ids:
        parts.append("SecRuleRemoveById " + " ".join(str(i) for i in settings.remove_ids))
    return "\n".join(parts) + "\n"
