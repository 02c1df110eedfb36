r"""The rules the WAF loads, in the one order in which every setting takes effect.

ModSecurity evaluates rules in load order within a phase, so a setting placed after the rule that reads it
silently does nothing. Debian's libmodsecurity3 3.0.9 also rejects ``IncludeOptional`` (which Debian's own
``owasp-crs.load`` uses), so hostguard writes explicit ``Include`` lines, in this order:

1. ``data/waf/base.conf``: body access and limits, the JSON and XML body processors, unparsable bodies;
2. the engine mode and CRS's settings (what ``crs-setup.conf`` would set): default actions, paranoia level,
   anomaly thresholds, the application exclusion packages asked for;
3. hostguard's own exclusion packages (``data/waf/exclusions/``, e.g. phpMyAdmin's SQL box) and per-site
   exclusions (phase-1 ``ctl:`` rules): before REQUEST-901; then, with hostguard's own rules, the rule that
   keeps a text body that is a document from the CRS rules narrowed for documents (``hostguard.waf.documents``:
   a phase-2 ``ctl:`` rule, before CRS's phase-2 rules it changes);
4. CRS's REQUEST-901 (initialization), then the enabled virtual patches (``[waf] virtual_patches``, the rules
   of ``data/waf/virtual-patches/<id>.toml``, ids 21000–21999, see ``hostguard.waf.vpatch``): they deny on
   their own, so they need nothing CRS computes, and coming before CRS's attack rules a request a patch
   refuses stops there, its event naming the CVE rather than a score; after the exclusions of step 3 and
   901's setup, so that an owner's ``ctl:ruleRemoveById`` (or step 8) can still switch one off;
5. the rest of CRS's request rules (REQUEST-903 exclusion packages, REQUEST-905 … REQUEST-944);
6. hostguard's own rules (``data/waf/rules/*.conf``, ids 10000–29999): they add to the anomaly score, so
   they come before REQUEST-949, which decides on it; among them the corrections to CRS rules
   (``REQUEST-20900-CRS-CORRECTIONS.conf``), then ``data/waf/crs-updates.conf``: the removals of CRS
   rules, which must follow the rules they remove;
7. REQUEST-949 (the blocking evaluation);
8. removals (``SecRuleRemoveById``): after every rule they remove.

Response rules (RESPONSE-95x) are not loaded: the WAF inspects requests.

hostguard's attack rules are phase-2 rules: they add to a score REQUEST-901 sets to 0 in phase 1 and
REQUEST-949 reads in phase 2, so they only need to load before REQUEST-949. That is what lets Apache's
layout work (:func:`server_rules`): Debian's ``security2.conf`` loads ``/etc/modsecurity/*.conf`` first and
CRS after it, so hostguard's part (base, settings, exclusions, own rules) comes before CRS there, with
``[waf] remove_ids`` done at run time (``ctl:ruleRemoveById``) instead of by ``SecRuleRemoveById`` after CRS,
and ``crs-updates.conf`` in a second file Apache reads after CRS (:func:`crs_updates`).

Two engines read these rules: libmodsecurity3 (the proxy, the middleware, nginx's module) and Apache's
mod_security2 2.9. Written once, they load in both: a literal backslash in a regex is ``\x5c`` (Apache's
config reader turns ``\\`` into ``\`` before ModSecurity sees it). Where the engines differ in what a
rule can see, :func:`server_rules` writes a variant: mod_security2 leaves ``REQUEST_BODY`` empty whenever a
body processor (XML, JSON, multipart) parsed the body, so there the rules read the raw body as
``STREAM_INPUT_BODY`` (``SecStreamInBodyInspection On``), which libmodsecurity3 does not have.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources

from hostguard.waf.crs_gates import gated
from hostguard.waf.crs_gates import load as load_crs_gates
from hostguard.waf.crs_gates import needs as crs_gate_needs
from hostguard.waf.documents import text_body_rule
from hostguard.waf.narrowing import (
    Narrowing,
    ReadText,
    crs_changes,
    document_rule_ids,
    narrowed,
    narrowed_rules,
    read_file,
)

__all__ = ["CRS_RULES", "ENGINES", "WafSettings", "assemble", "crs_updates", "own_rule_files", "server_rules",
           "virtual_patch_rules"]

CRS_RULES = "/usr/share/modsecurity-crs/rules"
BLOCKING = "REQUEST-949-BLOCKING-EVALUATION.conf"
INITIALIZATION = "REQUEST-901-INITIALIZATION.conf"
REQUEST_TEXT = "REQUEST-19900-REQUEST-TEXT.conf"   # data/waf/rules/: read by every gate, so loaded first
CRS_UPDATES = "crs-updates.conf"   # data/waf/: what must follow the CRS rules it changes
CRS_PACKAGES = ("wordpress", "drupal", "nextcloud", "dokuwiki", "cpanel", "xenforo")   # CRS's REQUEST-903.*
# CRS files that cannot decide anything with the settings hostguard writes, left out for what they cost (each
# about 2 % of the engine's time): IP reputation (REQUEST-910) needs a Project Honeypot key or a GeoIP database
# and high-risk countries, DoS protection (REQUEST-912) its burst and counter settings (hostguard blocks
# addresses itself, issue 9); REQUEST-905 only turns the engine off for Apache's "internal dummy connection"
# from loopback, which is not Apache here, and which anyone behind a local proxy could claim to be. Apache on
# Debian loads CRS itself (``crs_loaded_after``), all of it.
CRS_INERT = ("REQUEST-905-COMMON-EXCEPTIONS.conf", "REQUEST-910-IP-REPUTATION.conf", "REQUEST-912-DOS-PROTECTION.conf")
CRS_PACKAGE_FILE = re.compile(r"REQUEST-903\.9\d{3}-([A-Z0-9]+)-EXCLUSION-RULES\.conf\Z")
# hostguard's own packages: data/waf/exclusions/<name>.conf (phpMyAdmin, Grafana, Metabase, Sentry, ...)
OWN_PACKAGES = tuple(sorted(p.name.removesuffix(".conf")
                            for p in resources.files("hostguard.data").joinpath("waf", "exclusions").iterdir()
                            if p.name.endswith(".conf")))
EXCLUSION_PACKAGES = CRS_PACKAGES + OWN_PACKAGES
MODES = {"block": "On", "detect": "DetectionOnly"}
NO_FILES_LIMIT = 1_048_576   # a body without files (a form, JSON) is a megabyte at most, whatever the uploads
ENGINES = ("libmodsecurity3", "modsecurity2")   # nginx's module and the proxy; Apache's mod_security2 2.9
# a SecRule's variable list (first argument), to rewrite REQUEST_BODY for mod_security2
RULE_TARGETS = re.compile(r"(?m)^(\s*SecRule\s+)(\S+)")
CTL_BODY = re.compile(r"ctl:(ruleRemoveTargetBy(?:Id|Tag|Msg)=[^;,\"\s]+);REQUEST_BODY\b")   # an exclusion of the body
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
RESTRICTED_HEADERS = "/content-encoding/ /proxy/ /lock-token/ /content-range/ /if/"
# Any structured-syntax type (RFC 6839: type/name+json, type/name+xml) is allowed too: hostguard's base config
# hands those bodies to the JSON and XML processors, so their fields are read like any other arguments.
STRUCTURED_TYPES = ("SecRule REQUEST_HEADERS:Content-Type \"@rx ^\\s*([a-z0-9.-]+/[a-z0-9.-]+\\+(?:json|xml))\\s*(?:;|$)\" "
                    "\"id:10010,phase:1,pass,nolog,capture,t:none,t:lowercase,"
                    "setvar:'tx.allowed_request_content_type=%{tx.allowed_request_content_type} |%{TX.1}|'\"")


@dataclass(frozen=True)
class WafSettings:
    """How the engine is set up: ``mode`` block or detect, CRS's paranoia level and inbound anomaly
    threshold, the CRS exclusion packages for known applications, rule ids removed, whether hostguard's
    own rules are loaded, the largest request body it reads, and the virtual patches enabled (ids of
    ``hostguard waf patches``)."""

    mode: str = "block"
    paranoia: int = 1
    inbound_threshold: int = 5
    applications: tuple[str, ...] = ()
    remove_ids: tuple[int, ...] = ()
    own_rules: bool = True
    crs_dir: str = CRS_RULES
    body_limit: int = 13_107_200   # [waf] max_body_bytes: the engine refuses a larger body too
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
        if self.body_limit < 1024:
            raise ValueError(f"request body limit {self.body_limit}: at least 1024 bytes")
        unknown = [a for a in self.applications if a not in EXCLUSION_PACKAGES]
        if unknown:
            raise ValueError(f"no CRS exclusion package for {', '.join(unknown)} (known: {', '.join(EXCLUSION_PACKAGES)})")
        if self.virtual_patches:
            virtual_patch_rules(self.virtual_patches)   # an unknown id or a malformed patch is refused now


def _data_path(name: str) -> str:
    return str(resources.files("hostguard.data").joinpath("waf", name))


def _narrowed(settings: WafSettings, read_text: ReadText) -> list[tuple[Narrowing, str]]:
    """CRS's rules hostguard narrows (``hostguard.waf.narrowing``), as the installed CRS allows."""
    return narrowed(settings.crs_dir, settings.remove_ids, read_text) if settings.own_rules else []


def crs_updates(settings: WafSettings, engine: str = "libmodsecurity3", read_text: ReadText = read_file,
                made: Sequence[tuple[Narrowing, str]] | None = None) -> str:
    """hostguard's changes to CRS rules (``data/waf/crs-updates.conf``, and the CRS rules narrowed: ``made``, or
    as the installed CRS allows) as text for ``engine``, to load after CRS's request rules; empty without
    hostguard's own rules (they replace what it removes). ``read_text`` reads CRS's files (under ``--root``,
    inside the tree)."""
    if not settings.own_rules:
        return ""
    changes = crs_changes(_narrowed(settings, read_text) if made is None else made)
    return _inline(_data_path(CRS_UPDATES), engine) + (
        f"# narrowed by hostguard (data/waf/narrowings.toml): each has a twin of its own id\n{changes}" if changes else "")


def own_rule_files() -> list[str]:
    """hostguard's own rule files, in name order."""
    return sorted(glob.glob(os.path.join(_data_path("rules"), "*.conf")))


def _own_files(settings: WafSettings) -> tuple[list[str], list[str]]:
    """hostguard's request-text file and its other rule files (none without ``own_rules``): the text loads
    before CRS's gated files, which read it; the rest after CRS."""
    files = own_rule_files() if settings.own_rules else []
    text = [p for p in files if os.path.basename(p) == REQUEST_TEXT]
    return text, [p for p in files if p not in text]


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


def _setup(settings: WafSettings, crs_setup: bool = True) -> str:
    """The engine mode, the body limits and CRS's settings; without ``crs_setup`` the default actions and the
    setup version, which Debian's own ``crs-setup.conf`` already declares where it is loaded (Apache)."""
    lines = [
        f"SecRuleEngine {MODES[settings.mode]}",
        # after base.conf's defaults: the site's body limit (a body the front end read must not be one the engine
        # refuses), and the limit of a body without files never above it
        f"SecRequestBodyLimit {settings.body_limit}",
        f"SecRequestBodyNoFilesLimit {min(settings.body_limit, NO_FILES_LIMIT)}",
    ]
    if crs_setup:
        lines += [
            'SecDefaultAction "phase:1,log,auditlog,pass"',
            'SecDefaultAction "phase:2,log,auditlog,pass"',
            'SecAction "id:900990,phase:1,nolog,pass,t:none,setvar:tx.crs_setup_version=334"',
        ]
    lines += [
        f'SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={settings.paranoia}"',
        f'SecAction "id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold='
        f'{settings.inbound_threshold},setvar:tx.outbound_anomaly_score_threshold=4"',
    ]
    # CRS 3.3 also restricts Accept-Charset, which browsers and HTTP libraries still send: only the headers
    # that change how a request is routed or read (proxy, content-encoding, ranges, conditions) stay refused.
    lines.append(f"SecAction \"id:900250,phase:1,nolog,pass,t:none,setvar:'tx.restricted_headers={RESTRICTED_HEADERS}'\"")
    methods = " ".join(settings.methods)
    lines.append(f'SecAction "id:900200,phase:1,nolog,pass,t:none,setvar:\'tx.allowed_methods={methods}\'"')
    types = " ".join(f"|{t}|" for t in settings.content_types)
    lines.append(f'SecAction "id:900220,phase:1,nolog,pass,t:none,setvar:\'tx.allowed_request_content_type={types}\'"')
    lines.append(STRUCTURED_TYPES)
    for number, app in enumerate(a for a in settings.applications if a in CRS_PACKAGES):
        lines.append(f'SecAction "id:{900130 + number},phase:1,nolog,pass,t:none,'
                     f'setvar:tx.crs_exclusions_{app}=1"')
    return "\n".join(lines) + "\n"


def _crs_files(settings: WafSettings, glob_files: Callable[[str], list[str]]) -> tuple[list[str], list[str]]:
    """CRS's request rule files: those before REQUEST-949, and REQUEST-949 itself. Of CRS's application
    exclusion packages (REQUEST-903.9xxx) only those the settings ask for: one not asked for changes nothing
    but still costs every request a pass over its rules (its gate skips them one by one), about 3 % of the
    engine's time for the six CRS 3.3 ships. Nor the files in ``CRS_INERT``."""
    crs = sorted(glob_files(os.path.join(settings.crs_dir, "REQUEST-*.conf")))
    if not crs:
        raise FileNotFoundError(f"no CRS rules in {settings.crs_dir} (Debian: apt-get install modsecurity-crs)")
    crs = [p for p in crs if os.path.basename(p) not in CRS_INERT
           and (not (match := CRS_PACKAGE_FILE.match(os.path.basename(p)))
                or match.group(1).lower() in settings.applications)]
    return ([p for p in crs if os.path.basename(p) < BLOCKING], [p for p in crs if os.path.basename(p) >= BLOCKING])


def _crs_includes(paths: Sequence[str], settings: WafSettings, read_text: ReadText) -> list[str]:
    """``Include`` lines of CRS's files, those with a gate (``data/waf/crs-gates.toml``) behind it when
    hostguard's rules (which build the request text) load and the paranoia level is 1."""
    gates = {g.file: g for g in load_crs_gates()} if settings.own_rules and settings.paranoia == 1 else {}
    out = []
    for p in paths:
        gate = gates.get(os.path.basename(p))
        regex = crs_gate_needs(gate, read_text, settings.crs_dir) if gate else None
        out.append(gated(f'Include "{p}"', gate, regex) if gate and regex else f'Include "{p}"')
    return out


def assemble(settings: WafSettings, site_rules: Sequence[str] = ()) -> str:
    """The rules text the engine loads (``Include`` lines and the generated settings), in the order above.
    ``site_rules`` are phase-1 rules (per-site ``ctl:`` exclusions and thresholds)."""
    before, blocking = _crs_files(settings, glob.glob)
    own_packages = [f'Include "{_data_path(f"exclusions/{app}.conf")}"' for app in settings.applications
                    if app in OWN_PACKAGES]
    made = _narrowed(settings, read_file)
    parts = [f'Include "{_data_path("base.conf")}"', _setup(settings), *own_packages, *site_rules,
             text_body_rule(document_rule_ids(made))]
    initialization = [p for p in before if os.path.basename(p) <= INITIALIZATION]
    parts += [f'Include "{p}"' for p in initialization]
    if settings.virtual_patches:
        parts.append(virtual_patch_rules(settings.virtual_patches))
    text, own = _own_files(settings)
    parts += [f'Include "{p}"' for p in text]   # the request text CRS's gates and hostguard's read: before both
    parts += _crs_includes([p for p in before if p not in initialization], settings, read_file)
    if settings.own_rules:
        parts += [f'Include "{p}"' for p in own]
        parts += [narrowed_rules(made), crs_updates(settings, made=made)]
    parts += [f'Include "{p}"' for p in settings.extra_files]
    parts += [f'Include "{p}"' for p in blocking]
    if settings.remove_ids:
        parts.append("SecRuleRemoveById " + " ".join(str(i) for i in settings.remove_ids))
    return "\n".join(parts) + "\n"


def _for_engine(text: str, engine: str) -> str:
    """Rules text as ``engine`` must read it: mod_security2 reads the raw body as STREAM_INPUT_BODY, so there
    hostguard's rules read that, and an exclusion of REQUEST_BODY (which CRS's rules still read) also excludes
    STREAM_INPUT_BODY."""
    if engine == "modsecurity2":
        text = RULE_TARGETS.sub(lambda m: m.group(1) + "|".join(
            "STREAM_INPUT_BODY" if v == "REQUEST_BODY" else v for v in m.group(2).split("|")), text)
        text = CTL_BODY.sub(lambda m: f"{m.group(0)},ctl:{m.group(1)};STREAM_INPUT_BODY", text)
    return text


def _inline(path: str, engine: str) -> str:
    """One of hostguard's rule files as text for ``engine``, headed by where it came from."""
    with open(path, encoding="utf-8") as f:
        text = _for_engine(f.read(), engine)
    name = os.path.relpath(path, _data_path(""))
    return f"# ---- hostguard data/waf/{name} ----\n{text.rstrip()}\n"


def server_rules(settings: WafSettings, engine: str, *, crs_loaded_after: bool = False,
                 site_rules: Sequence[str] = (), glob_files: Callable[[str], list[str]] = glob.glob,
                 read_text: ReadText = read_file) -> str:
    """The rules file a web server loads: hostguard's own files written inline (the server's configuration
    then depends on no Python package path, and what the configuration test accepted is what runs), CRS by
    explicit ``Include`` lines (libmodsecurity3 3.0.9 has no ``IncludeOptional``), for ``engine``
    (``libmodsecurity3`` or ``modsecurity2``).

    With ``crs_loaded_after`` (Apache on Debian, whose ``security2.conf`` includes CRS's ``owasp-crs.load``
    after ``/etc/modsecurity/*.conf``) CRS is never included here, the settings Debian's ``crs-setup.conf``
    makes are left to it, removals happen at run time, and :func:`crs_updates` goes in a file of its own that
    the server reads after CRS. ``glob_files`` lists CRS's files and ``read_text`` reads them (under
    ``--root``, inside the tree)."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: one of {', '.join(ENGINES)}")
    own_packages = [_inline(_data_path(f"exclusions/{app}.conf"), engine) for app in settings.applications
                    if app in OWN_PACKAGES]
    parts = [_inline(_data_path("base.conf"), engine)]
    if engine == "modsecurity2":
        parts.append("# the raw body for hostguard's rules, whatever body processor parsed it\n"
                     "SecStreamInBodyInspection On")
    parts += ["# ---- engine mode and CRS settings ([waf] in hostguard's config) ----",
              _setup(settings, crs_setup=not crs_loaded_after).rstrip(), *own_packages, *site_rules]
    made = _narrowed(settings, read_text)
    if made:   # before CRS: a ctl: only changes the rules that run after it
        parts.append(_for_engine(text_body_rule(document_rule_ids(made)), engine).rstrip())
    text_files, own_files = _own_files(settings)
    text = [_inline(p, engine) for p in text_files]
    own = [_inline(p, engine) for p in own_files]
    if made:   # CRS's text as CRS wrote it, for either engine
        own.append("# ---- CRS rules narrowed by hostguard (data/waf/narrowings.toml) ----\n"
                   + narrowed_rules(made).rstrip())
    extra = [_inline(p, engine) for p in settings.extra_files]
    patches = ([f"# ---- hostguard virtual patches ([waf] virtual_patches) ----\n"
                f"{_for_engine(virtual_patch_rules(settings.virtual_patches), engine)}"]
               if settings.virtual_patches else [])
    if crs_loaded_after:   # the patches deny on their own: before CRS is as good as after REQUEST-901
        parts += [*patches, *text, *own, *extra]
        if settings.remove_ids:
            ctl = ",".join(f"ctl:ruleRemoveById={i}" for i in settings.remove_ids)
            parts.append(f'SecAction "id:10020,phase:1,pass,nolog,t:none,{ctl}"')
        return "\n".join(parts) + "\n"
    before, blocking = _crs_files(settings, glob_files)
    initialization = [p for p in before if os.path.basename(p) <= INITIALIZATION]
    parts += [f'Include "{p}"' for p in initialization]
    parts += patches
    parts += text   # the request text CRS's gates and hostguard's read: before both
    parts += _crs_includes([p for p in before if p not in initialization], settings, read_text)
    parts += [*own,
              *([crs_updates(settings, engine, made=made)] if settings.own_rules else []), *extra]
    parts += [f'Include "{p}"' for p in blocking]
    if settings.remove_ids:
        parts.append("SecRuleRemoveById " + " ".join(str(i) for i in settings.remove_ids))
    return "\n".join(parts) + "\n"
