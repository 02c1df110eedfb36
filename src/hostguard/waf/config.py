"""[waf]: how the WAF runs, for the proxy, the middleware and the per-server setup alike.

Imports nothing heavy (no cffi, no HTTP library): the config schema of every command reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostguard.config import setting

__all__ = ["WafConfig"]


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
                                                "hostguard's (phpmyadmin).")
    remove_ids: tuple[int, ...] = setting((), "Rule ids never applied (SecRuleRemoveById, loaded after CRS).")
    own_rules: bool = setting(True, "Load hostguard's own rules (data/waf/rules) for what CRS 3.3 misses.")
    crs_dir: str = setting("/usr/share/modsecurity-crs/rules", "Where the OWASP CRS rules are (Debian's "
                                                               "modsecurity-crs).")
    trusted_proxies: tuple[str, ...] = setting((), "Addresses or networks (CIDR) of proxies and CDNs in front of "
                                                   "the WAF: X-Forwarded-For is believed only from them.")
    max_body_bytes: int = setting(13_107_200, "Request bodies larger than this are refused (413), never passed "
                                              "unread.", min=1024)
    block_status: int = setting(403, "The HTTP status of a refused request.", min=400, max=599)
    block_message: str = setting("Request refused by the web application firewall. Reference: {request_id}",
                                 "The body of a refused request's answer; {request_id} is replaced by the "
                                 "request's id (also in the event log).")
    scan_uploads: bool = setting(True, "Read every uploaded file with hostguard's malware scanner (YARA-X webshell "
                                       "rules) before the application gets it.")
    upload_min_severity: str = setting("high", "An upload the scanner detects at this severity or above (critical, "
                                               "high, medium, low) is refused.")
    learn_min_networks: int = setting(5, "Learning proposes an exclusion only after hits from this many distinct "
                                         "networks (/24, /48) in detection-only mode.", min=2)
    learn_min_days: int = setting(3, "... and on this many distinct days.", min=1)
    event_log: str = setting("", "A JSON Lines file every blocked or scored request is appended to (empty: "
                                 "<state>/waf-events.jsonl).")
    virtual_patches: tuple[str, ...] = setting((), "Virtual patches to load (ids from `hostguard waf patches`): each "
                                                   "refuses the exploit of one known vulnerability of an installed "
                                                   "application until it is upgraded. `hostguard fix` adds the ones "
                                                   "`vulns scan` finds applicable; an unknown id stops the WAF from "
                                                   "starting.")
