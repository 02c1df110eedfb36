"""The WAF's decision for one request, shared by the reverse proxy and the WSGI/ASGI middleware.

:class:`Gate` serves one site: it owns the engine (rules assembled from the site's effective ``[waf]``: see
:func:`~hostguard.waf.config.site_settings`), finds the client's address (X-Forwarded-For is believed only from
``[waf] trusted_proxies``, read right to left past them), gives every request an id, asks the engine, and
writes an event for every request a rule matched — blocked or only scored — to a JSON Lines log. Events never
hold a request body; matched data is cut to :data:`DATA_LIMIT` characters and the value of an argument whose
name looks secret (password, token, key, session, card …) is masked.

A front end refuses some requests before the engine could judge them (a body too large or too slow, framing
that cannot be passed on safely): :meth:`Gate.refused` records those too, as action ``refused`` with one of
the :data:`REFUSALS` reason codes and no rules, so an owner sees them in `waf report` beside what the rules
refused.

:meth:`Gate.decide` is synchronous and thread-safe: the front ends on an event loop call it in a thread.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hostguard.store.waf import Exclusion
from hostguard.waf.config import DEFAULT_SITE, WafConfig, site_config, site_settings
from hostguard.waf.engine import Engine, Request, RuleMatch, Verdict
from hostguard.waf.learn import exclusion_rules
from hostguard.waf.ruleset import assemble

if TYPE_CHECKING:
    from hostguard.waf.uploads import UploadScanner

__all__ = ["DATA_LIMIT", "REFUSALS", "Decision", "Gate", "TrustedProxies", "client_address", "mask"]

DATA_LIMIT = 200
UPLOAD_RULE = 20590   # the malware scanner's detections in uploads, as the events name them
SECRET_NAME = re.compile(r"(?i)pass|pwd|secret|token|api[_-]?key|auth|session|cookie|card|cvv|ssn|otp|csrf")
# "… found within ARGS:password: hunter2" -> the value after the variable name
WITHIN = re.compile(r"((?:ARGS|ARGS_NAMES|REQUEST_COOKIES|REQUEST_HEADERS|FILES)(?::|\.)([^:\s]*): ?)(.*)", re.S)

REFUSALS: dict[str, str] = {
    # the body
    "body_too_large": "the body is (or declares itself) larger than max_body_bytes (413)",
    "body_timeout": "the body did not arrive within body_timeout, or stalled (408)",
    "body_unreadable": "the body's chunked framing or content coding is broken (400)",
    "body_incomplete": "the body ended before its Content-Length (400)",
    "bad_content_length": "Content-Length is not a number, or several disagree (400)",
    "length_required": "a body without a length the server does not end for us (411)",
    "buffer_full": "the proxy holds max_buffered_bytes of bodies already (503, Retry-After)",
    # the framing and the request line
    "length_and_chunked": "Content-Length together with Transfer-Encoding (400)",
    "chunked_http10": "Transfer-Encoding in an HTTP/1.0 request (400)",
    "malformed_request": "the HTTP parser refused the request line or headers (400)",
    "target_not_origin_form": "the target is not a path: absolute-form or * (400)",
    "method_connect": "CONNECT to a reverse proxy (405)",
    "header_not_utf8": "a header value is not UTF-8 and could not be passed on unchanged (400)",
    "unsupported_coding": "a Content-Encoding the proxy cannot decode for the engine (415)",
    "bad_expect": "an Expect other than 100-continue (417)",
    # WebSockets (the proxy)
    "websocket_handshake": "a WebSocket upgrade the proxy cannot relay: no or a bad Sec-WebSocket-Key or version, "
                           "Connection without upgrade, or a body (400)",
    "websocket_limit": "the proxy has max_websockets WebSockets open already (503, Retry-After)",
    # the WAF itself
    "inspection_failed": "the engine failed on the request; refused in blocking mode (500)",
}
"""Why a front end refused a request before (or without) the engine's verdict: the ``reason`` of a ``refused``
event."""


@dataclass(frozen=True)
class Decision:
    """The answer for one request: whether it is refused (``status``), its id, the client, the engine's word."""

    blocked: bool
    status: int
    request_id: str
    client: str
    verdict: Verdict


class TrustedProxies:
    """``[waf] trusted_proxies``, parsed once: which peers are proxies or CDNs, and who the client behind them is."""

    def __init__(self, trusted: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def trusts(self, addr: str) -> bool:
        """Whether ``addr`` is one of the trusted proxies (an unreadable address is not)."""
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in self.networks)

    def client(self, peer: str, headers: Sequence[tuple[str, str]]) -> str:
        """The client: the peer, unless the peer is a trusted proxy; then the X-Forwarded-For entries read from
        the right, skipping trusted proxies, the first untrusted one (an entry that is not an address ends the
        walk: what a client wrote to the left of it is not believed)."""
        if not self.networks or not self.trusts(peer):
            return peer
        chain = [part.strip() for name, value in headers if name.lower() == "x-forwarded-for"
                 for part in value.split(",")]
        client = peer
        for entry in reversed(chain):
            try:
                ipaddress.ip_address(entry)
            except ValueError:
                break
            client = entry
            if not self.trusts(entry):
                break
        return client


def client_address(peer: str, headers: Sequence[tuple[str, str]], trusted: Sequence[str]) -> str:
    """:meth:`TrustedProxies.client` for a list of trusted proxies given once."""
    return TrustedProxies(trusted).client(peer, headers)


def mask(data: str) -> str:
    """Matched data as an event keeps it: a secret-looking argument's value masked, cut to DATA_LIMIT."""
    m = WITHIN.search(data)
    if m and SECRET_NAME.search(m.group(2)):
        data = data[:m.start(3)] + "***"
    return data if len(data) <= DATA_LIMIT else data[:DATA_LIMIT] + "…"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _path_only(target: str) -> str:
    path, _, query = target.partition("?")
    if not query:
        return path
    names = [part.partition("=")[0] for part in query.split("&")]
    return path + "?" + "&".join(f"{n}=…" for n in names[:20])


class Gate:
    """The engine with ``[waf]``'s settings, and the event log; ``limits`` are the site's
    :class:`~hostguard.waf.config.SiteLimits`, for the front end to enforce."""

    def __init__(self, config: WafConfig, event_log: str | None, site: str = DEFAULT_SITE,
                 engine: Engine | None = None, exclusions: Sequence[Exclusion] = ()) -> None:
        """``config`` is the whole ``[waf]`` with its sites; the gate runs with site ``site``'s effective settings
        (``self.config``) and the accepted ``exclusions`` of that site. An unknown site raises
        :class:`~hostguard.waf.config.UnknownSite` before anything loads."""
        self.config = site_config(config, site)
        self.site = site
        settings, self.limits = site_settings(config, site)
        self.engine = engine or Engine(text=assemble(settings, site_rules=exclusion_rules(exclusions, site)))
        self.event_log = event_log
        self.trusted = TrustedProxies(config.trusted_proxies)
        self._lock = threading.Lock()
        self.uploads: UploadScanner | None = None
        if self.config.scan_uploads:   # the site's own setting, over [waf]'s
            from hostguard.waf.uploads import UploadScanner

            self.uploads = UploadScanner(self.config.upload_min_severity)

    def decide(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes, peer: str,
               peer_port: int = 0, server: str = "127.0.0.1", server_port: int = 80) -> Decision:
        """Ask the engine about one request and record the event; the caller refuses it when ``blocked``."""
        headers = list(headers)
        request_id = secrets.token_hex(8)
        client = self.trusted.client(peer, headers)
        verdict = self.engine.inspect(Request(method, target, headers, body, client, peer_port, server, server_port),
                                      request_id)
        if not verdict.disruptive and self.uploads is not None:
            verdict = self._scan_uploads(verdict, headers, body)
        blocked = verdict.disruptive
        status = self.config.block_status if blocked and verdict.status in (403, 200) else verdict.status
        decision = Decision(blocked, status if blocked else 200, request_id, client, verdict)
        if verdict.matches or blocked:   # the engine's own body limit refuses without a rule match
            self._record(decision, method, target, headers)
        return decision

    def refused(self, reason: str, status: int, method: str, target: str, headers: Iterable[tuple[str, str]],
                peer: str) -> str:
        """Record a request a front end refused before the engine's verdict (``reason`` from :data:`REFUSALS`);
        its request id, for the answer's X-Request-Id. ``target`` and ``headers`` are what is known of the
        request (nothing when the HTTP parser refused it)."""
        if reason not in REFUSALS:
            raise ValueError(f"refusal reason {reason!r}")
        headers = list(headers)
        request_id = secrets.token_hex(8)
        host = next((v for n, v in headers if n.lower() == "host"), "")
        self._write({"time": _now(), "request_id": request_id, "site": self.site, "host": host[:200],
                     "client": self.trusted.client(peer, headers), "method": method[:16],
                     "path": _path_only(target)[:500], "action": "refused", "reason": reason, "status": status,
                     "rules": []})
        return request_id

    def _scan_uploads(self, verdict: Verdict, headers: list[tuple[str, str]], body: bytes) -> Verdict:
        """The engine's verdict, with the malware scanner's detections in uploaded files added (refusing the
        request unless the mode only detects)."""
        assert self.uploads is not None
        content_type = next((v for n, v in headers if n.lower() == "content-type"), "")
        hits = self.uploads.scan(content_type, body)
        if not hits:
            return verdict
        found = tuple(RuleMatch(UPLOAD_RULE, f"Malware in an uploaded file: {h.rule} ({h.description})"[:200],
                                f"found within FILES:{h.filename[:100]}", h.severity, ("hostguard/upload-scan",))
                      for h in hits)
        block = self.config.mode == "block"
        return Verdict(block, self.config.block_status if block else 200, verdict.matches + found, verdict.messages)

    def block_body(self, decision: Decision) -> bytes:
        """The refused request's answer body."""
        return (self.config.block_message.replace("{request_id}", decision.request_id) + "\n").encode()

    def _record(self, decision: Decision, method: str, target: str, headers: list[tuple[str, str]]) -> None:
        host = next((v for n, v in headers if n.lower() == "host"), "")
        self._write({
            "time": _now(), "request_id": decision.request_id,
            "site": self.site, "host": host[:200], "client": decision.client, "method": method[:16],
            "path": _path_only(target)[:500], "action": "blocked" if decision.blocked else
            ("detected" if self.config.mode == "detect" else "scored"), "status": decision.status,
            "rules": [{"id": m.id, "msg": m.msg[:200], "data": mask(m.data), "tags": list(m.tags[:8])}
                      for m in decision.verdict.matches],
        })

    def _write(self, event: dict[str, object]) -> None:
        """One event as one line, appended whole (O_APPEND, one write), under the lock."""
        if not self.event_log:
            return
        line = json.dumps(event, ensure_ascii=True) + "\n"
        with self._lock:
            fd = os.open(self.event_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def close(self) -> None:
        """Free the engine."""
        self.engine.close()
