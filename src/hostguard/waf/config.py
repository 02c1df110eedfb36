"""[waf]: how the WAF runs, for the proxy, the middleware and the per-server setup alike; [waf.sites.NAME]: what
one site changes of it.

A host often serves several sites behind one WAF set-up: a shop that must block, a blog still learning in
detection-only mode, an upload service that takes large bodies. ``[waf]`` holds the settings of every site;
a ``[waf.sites.NAME]`` table overrides some of them for the site called NAME (``waf proxy --site NAME``,
``WSGIMiddleware(app, site="NAME")``). A site's effective settings are ``[waf]`` overlaid by its table: a key
the table sets replaces ``[waf]``'s value (lists too: ``remove_ids`` of a site is that site's whole list), a
key it leaves out is ``[waf]``'s. The site called ``default`` is ``[waf]`` itself.

What stays host-wide: where CRS is, the trusted proxies (one network in front of the host), the event log
(one log, so `waf report` sees every site), learning's thresholds, and the proxy's resource limits (one
process's memory and connections, whatever sites it serves: ``max_buffered_bytes``, ``header_timeout``,
``max_websockets``).

:func:`site_settings` gives a site's engine settings and the limits a front end enforces itself, for every
front end (the proxy, the middleware, the nginx/Apache set-up). Imports nothing heavy (no cffi, no HTTP
library): the config schema of every command reads it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from hostguard.config import setting
from hostguard.findings import Severity
from hostguard.waf.ruleset import EXCLUSION_PACKAGES, MODES, WafSettings

__all__ = ["DEFAULT_SITE", "SITE_NAME", "SiteLimits", "UnknownSite", "WafConfig", "WafSite", "site_config",
           "site_names", "site_settings"]

DEFAULT_SITE = "default"
SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check(values: Any, where: str) -> None:
    """The checks a [waf] or [waf.sites.NAME] value needs beyond its type and range, so a typo in a mode or a
    package name stops the config from loading instead of the engine from starting (``None``: not set here)."""
    mode = getattr(values, "mode", None)
    if mode is not None and mode not in MODES:
        raise ValueError(f"'{where}.mode' must be {' or '.join(MODES)}, not {mode!r}")
    unknown = [a for a in getattr(values, "applications", None) or () if a not in EXCLUSION_PACKAGES]
    if unknown:
        raise ValueError(f"'{where}.applications': no exclusion package for {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(EXCLUSION_PACKAGES)})")
    severity = getattr(values, "upload_min_severity", None)
    if severity is not None and severity not in [s.value for s in Severity]:
        raise ValueError(f"'{where}.upload_min_severity' must be one of {', '.join(s.value for s in Severity)}, "
                         f"not {severity!r}")


@dataclass(frozen=True)
class WafSite:
    """[waf.sites.NAME]: one site's own settings; a setting left out is [waf]'s."""

    mode: str | None = setting(None, "block or detect, for this site (a site can learn in detect mode while the "
                                     "others block).")
    paranoia: int | None = setting(None, "CRS paranoia level (1-4) for this site.", min=1, max=4)
    inbound_threshold: int | None = setting(None, "CRS inbound anomaly threshold for this site.", min=1, max=1000)
    applications: tuple[str, ...] | None = setting(None, "The exclusion packages of this site's applications "
                                                         "(replaces [waf]'s list).")
    remove_ids: tuple[int, ...] | None = setting(None, "Rule ids never applied on this site (replaces [waf]'s "
                                                       "list: repeat the host-wide ids to keep them).")
    own_rules: bool | None = setting(None, "Load hostguard's own rules for this site.")
    block_status: int | None = setting(None, "The HTTP status of a request this site refuses.", min=400, max=599)
    block_message: str | None = setting(None, "The body of a refused request's answer on this site "
                                              "({request_id} is replaced).")
    max_body_bytes: int | None = setting(None, "The largest request body this site takes (an upload service "
                                               "more, an API less).", min=1024)
    body_timeout: float | None = setting(None, "Seconds a client has to send a whole request body to this site.",
                                         min=1, max=3600)
    scan_uploads: bool | None = setting(None, "Read this site's uploaded files with the malware scanner.")
    upload_min_severity: str | None = setting(None, "The scanner severity at which this site refuses an upload.")
    websocket_max_message_bytes: int | None = setting(None, "The proxy: the largest WebSocket message this site "
                                                            "relays, either way (messages are not inspected).",
                                                      min=1024, max=1 << 30)
    websocket_idle_timeout: float | None = setting(None, "The proxy: seconds a WebSocket of this site may pass "
                                                         "without a frame either way.", min=1, max=86400)


@dataclass(frozen=True)
class WafConfig:
    """[waf]: engine mode, CRS tuning, client addresses behind proxies, limits, the block answer and events."""

    mode: str = setting("block", "block: refuse what the rules decide against; detect: only record it (learning).")
    paranoia: int = setting(1, "CRS paranoia level (1-4): higher finds more and mistakes more honest requests.",
                            min=1, max=4)
    inbound_threshold: int = setting(5, "CRS inbound anomaly score at which a request is refused (5: one critical "
                                        "match).", min=1, max=1000)
    applications: tuple[str, ...] = setting((), "Exclusion packages for the applications behind the WAF: CRS's "
                                                "(wordpress, drupal, nextcloud, dokuwiki, cpanel, xenforo) and "
                                                "hostguard's (grafana, jasperserver, jenkins, metabase, "
                                                "phpmyadmin, sentry, splunk).")
    remove_ids: tuple[int, ...] = setting((), "Rule ids never applied (SecRuleRemoveById, loaded after CRS).")
    own_rules: bool = setting(True, "Load hostguard's own rules (data/waf/rules) for what CRS 3.3 misses.")
    rules_files: tuple[str, ...] = setting((), "Rule files of your own (ModSecurity's language, ids 30000-99999 "
                                               "are free), loaded after CRS's and hostguard's request rules and "
                                               "before the blocking evaluation, on every site.")
    crs_dir: str = setting("/usr/share/modsecurity-crs/rules", "Where the OWASP CRS rules are (Debian's "
                                                               "modsecurity-crs).")
    trusted_proxies: tuple[str, ...] = setting((), "Addresses or networks (CIDR) of proxies and CDNs in front of "
                                                   "the WAF: X-Forwarded-For is believed only from them.")
    max_body_bytes: int = setting(13_107_200, "Request bodies larger than this are refused (413), never passed "
                                              "unread (the engine's SecRequestBodyLimit too).", min=1024)
    body_timeout: float = setting(120.0, "Seconds a client has, from the end of its headers, to send the whole "
                                         "request body; a slower one is refused (408): a slow sender cannot hold "
                                         "a connection and its buffer for ever.", min=1, max=3600)
    block_status: int = setting(403, "The HTTP status of a refused request.", min=400, max=599)
    block_message: str = setting("Request refused by the web application firewall. Reference: {request_id}",
                                 "The body of a refused request's answer; {request_id} is replaced by the "
                                 "request's id (also in the event log).")
    scan_uploads: bool = setting(True, "Read every uploaded file with hostguard's malware scanner (YARA-X webshell "
                                       "rules) before the application gets it.")
    upload_min_severity: str = setting("high", "An upload the scanner detects at this severity or above (critical, "
                                               "high, medium, low) is refused.")
    max_buffered_bytes: int = setting(268_435_456, "The proxy: request-body bytes one process holds at once, all "
                                                   "requests together; a request that would pass it is refused "
                                                   "(503 with Retry-After) instead of growing memory without bound. "
                                                   "At least every site's max_body_bytes.", min=1024)
    header_timeout: float = setting(60.0, "The proxy: seconds a connection has to send a request's headers whole, "
                                          "from its opening or the end of the previous answer (so also how long an "
                                          "idle keep-alive connection stays open); then it is closed unanswered.",
                                    min=1, max=3600)
    websocket_max_message_bytes: int = setting(1_048_576, "The proxy: the largest WebSocket message relayed, "
                                                          "either way; a larger one closes the WebSocket (1009 to "
                                                          "the side that sent it). Messages are relayed without "
                                                          "inspection: ModSecurity has no frame inspection, only "
                                                          "the upgrade handshake is judged by the rules.",
                                               min=1024, max=1 << 30)
    websocket_idle_timeout: float = setting(300.0, "The proxy: seconds a WebSocket may pass without a frame (data, "
                                                   "ping or pong) either way before both sides are closed (1001).",
                                            min=1, max=86400)
    max_websockets: int = setting(512, "The proxy: WebSockets one process keeps open at once; a handshake past it "
                                       "is refused (503 with Retry-After). Each holds two connections (two file "
                                       "descriptors) and up to about twice websocket_max_message_bytes.",
                                  min=1, max=1_000_000)
    learn_min_networks: int = setting(5, "Learning proposes an exclusion only after hits from this many distinct "
                                         "networks (/24, /48) in detection-only mode.", min=2)
    learn_min_days: int = setting(3, "... and on this many distinct days.", min=1)
    event_log: str = setting("", "A JSON Lines file every blocked, scored or refused request is appended to "
                                 "(empty: <state>/waf-events.jsonl).")
    virtual_patches: tuple[str, ...] = setting((), "Virtual patches to load (ids from `hostguard waf patches`): each "
                                                   "refuses the exploit of one known vulnerability of an installed "
                                                   "application until it is upgraded. `hostguard fix` adds the ones "
                                                   "`vulns scan` finds applicable; an unknown id stops the WAF from "
                                                   "starting.")
    sites: Mapping[str, WafSite] = setting({}, "Per-site overrides, one [waf.sites.NAME] table per site (NAME: "
                                               "letters, digits, '.', '_', '-'); `waf proxy --site NAME` and the "
                                               "middleware's site= use them.")

    def __post_init__(self) -> None:
        _check(self, "waf")
        for name, site in self.sites.items():
            if not SITE_NAME.fullmatch(name) or name == DEFAULT_SITE:
                raise ValueError(f"'waf.sites.{name}': a site name is letters, digits, '.', '_' and '-' (at most "
                                 f"64), and not {DEFAULT_SITE!r} (the default site is [waf] itself)")
            _check(site, f"waf.sites.{name}")
        if not isinstance(self.sites, MappingProxyType):   # a dict given in code is frozen like one from a file
            object.__setattr__(self, "sites", MappingProxyType(dict(self.sites)))
        largest = max([self.max_body_bytes, *(s.max_body_bytes or 0 for s in self.sites.values())])
        if self.max_buffered_bytes < largest:
            raise ValueError(f"'waf.max_buffered_bytes' ({self.max_buffered_bytes}) is smaller than a "
                             f"max_body_bytes ({largest}): such a body could never be read")


class UnknownSite(ValueError):
    """A site name with no [waf.sites.NAME] table (and not ``default``); the message names the known sites."""


@dataclass(frozen=True)
class SiteLimits:
    """What a front end enforces itself for one site, around the rules: the largest body it reads, how long it
    waits for one, the answer to a refused request, and what a WebSocket the rules let through may do (the
    largest message, the longest silence).

    Every field is the [waf] setting of the same name, taken from the site's effective settings by
    :func:`site_settings`: a new per-site limit is a field here, in :class:`WafConfig` and in :class:`WafSite`,
    and nothing else."""

    max_body_bytes: int
    body_timeout: float
    block_status: int
    block_message: str
    websocket_max_message_bytes: int
    websocket_idle_timeout: float


def site_names(config: WafConfig) -> tuple[str, ...]:
    """The sites the config knows: ``default`` and every [waf.sites.NAME], in name order."""
    return (DEFAULT_SITE, *sorted(config.sites))


def site_config(config: WafConfig, name: str) -> WafConfig:
    """Site ``name``'s effective [waf]: ``config`` overlaid by [waf.sites.NAME] (``default``: ``config``
    itself), with no sites of its own. An unknown name raises :class:`UnknownSite`: a typo in a site name
    must not silently run a site with another site's settings."""
    if name == DEFAULT_SITE:
        return dataclasses.replace(config, sites={})
    site = config.sites.get(name)
    if site is None:
        raise UnknownSite(f"no site {name!r} in [waf.sites] (known: {', '.join(site_names(config))})")
    given = {f.name: getattr(site, f.name) for f in dataclasses.fields(site) if getattr(site, f.name) is not None}
    return dataclasses.replace(config, sites={}, **given)


def site_settings(config: WafConfig, name: str) -> tuple[WafSettings, SiteLimits]:
    """Site ``name``'s engine settings (the rules :func:`~hostguard.waf.ruleset.assemble` writes) and the limits a
    front end enforces itself: what the proxy, the middleware and a web server's ModSecurity set-up share.
    Raises :class:`UnknownSite` for a name the config does not know."""
    effective = site_config(config, name)
    settings = WafSettings(mode=effective.mode, paranoia=effective.paranoia,
                           inbound_threshold=effective.inbound_threshold, applications=effective.applications,
                           remove_ids=effective.remove_ids, own_rules=effective.own_rules, crs_dir=effective.crs_dir,
                           body_limit=effective.max_body_bytes, extra_files=effective.rules_files,
                           virtual_patches=effective.virtual_patches)
    limits = SiteLimits(**{f.name: getattr(effective, f.name) for f in dataclasses.fields(SiteLimits)})
    return settings, limits
