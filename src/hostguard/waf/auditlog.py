"""ModSecurity's JSON audit logs, as the web servers write them, read into hostguard's WAF events.

``hostguard waf enable`` has nginx's module (libmodsecurity3) and Apache's mod_security2 2.9 write one JSON
object per line for every request a rule matched (``SecAuditEngine RelevantOnly`` with no "relevant" status:
rule matches alone decide). The two engines write different shapes:

* libmodsecurity3: ``{"transaction": {"client_ip", "time_stamp" (ctime, the server's local time, no zone),
  "unique_id", "request": {"method", "uri", "headers"}, "response": {"http_code"}, "producer":
  {"secrules_engine": "Enabled"|"DetectionOnly"}, "messages": [{"message", "details": {"ruleId", "data",
  "severity", "tags"}}]}}``. It says nothing of whether the request was refused, so an entry is "blocked"
  when one of the rules that refuse in the configuration hostguard writes matched (:data:`DENYING_RULES`);
* mod_security2: ``{"transaction": {"time" (with its offset), "transaction_id", "remote_address"},
  "request": {"request_line", "headers"}, "response": {"status"}, "audit_data": {"messages": ["Warning.
  ... [id \\"942100\\"] [msg \\"...\\"] ..."], "action": {"intercepted": true}, "engine_mode"}}``.

Each becomes the event :class:`hostguard.waf.gate.Gate` writes for its own requests (time in UTC, request id,
site, host, client, method, the path with query values masked, action, status, rules with masked data), so
``waf report``, learning and ``hostguard block`` treat both alike. The site is the request's host name
(``Host`` without its port) when it is a plain name, ``default`` otherwise: a server's sites are told apart
by the name they are asked for. Bodies are never in an event (the audit log holds none: parts ABFHZ).

The logs are written by the server and read as untrusted text: a line that is not an entry (cut by a crash,
not JSON, not an object of either shape, a request with no rule match) is None, counted as skipped by the
store, never an exception. Libmodsecurity writes request bytes as they came (not always UTF-8): lines are
decoded with replacement.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from hostguard.store.waf import WafEvent, network_of
from hostguard.waf.engine import parse_message
from hostguard.waf.gate import DATA_LIMIT, _path_only, mask

__all__ = ["DENYING_RULES", "parse_entry", "parse_line"]

# The rules that refuse a request in what hostguard writes: CRS's inbound and outbound anomaly evaluations,
# the base config's unparsable bodies, and the virtual patches (ids 21000-21999, which deny on their own).
# Every other rule only scores.
DENYING_RULES = frozenset({949110, 959100, 10003, 10004, *range(21000, 22000)})
SITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_RULES = 64


def parse_line(line: bytes | str) -> WafEvent | None:
    """The event of one audit log line, None when it is not an entry with a rule match."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    try:
        entry = json.loads(text, strict=False)   # control characters inside strings: as the engine wrote them
    except (ValueError, RecursionError):
        return None
    return parse_entry(entry)


def parse_entry(entry: Any) -> WafEvent | None:
    """The event of one decoded audit log entry of either engine (None when it is neither shape)."""
    if not isinstance(entry, dict):
        return None
    try:
        if isinstance(entry.get("audit_data"), dict):
            return _modsecurity2(entry)
        if isinstance(entry.get("transaction"), dict) and "messages" in entry["transaction"]:
            return _libmodsecurity3(entry["transaction"])
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None
    return None


def _text(value: Any, limit: int) -> str:
    """A string field as text (anything else: empty), cut to ``limit`` characters."""
    return value[:limit] if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    """An object field (anything else: empty)."""
    return value if isinstance(value, dict) else {}


def _header(headers: Any, name: str) -> str:
    if not isinstance(headers, dict):
        return ""
    return next((_text(v, 500) for k, v in headers.items() if isinstance(k, str) and k.lower() == name), "")


def _site(host: str) -> str:
    """The site of an event: the Host header's name (port and a trailing dot removed), or ``default``."""
    name = host.strip()
    if name.startswith("["):
        return "default"
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    name = name.rstrip(".").lower()
    return name if SITE.fullmatch(name) else "default"


def _event(request_id: str, when: datetime, host: str, client: str, method: str, target: str, action: str,
           status: int, rules: list[dict[str, Any]]) -> WafEvent | None:
    if not rules or not request_id:
        return None
    client = client[:64]
    return WafEvent(request_id[:80], when.astimezone(UTC).isoformat(timespec="milliseconds"), _site(host),
                    client, network_of(client), method[:16], _path_only(target)[:500], action, status,
                    tuple(rules[:MAX_RULES]))


def _rule(rule_id: int, msg: str, data: str, tags: list[str]) -> dict[str, Any]:
    return {"id": rule_id, "msg": msg[:200], "data": mask(data[:DATA_LIMIT * 4]), "tags": tags[:8]}


def _libmodsecurity3(tx: dict[str, Any]) -> WafEvent | None:
    when = datetime.strptime(_text(tx.get("time_stamp"), 40), "%a %b %d %H:%M:%S %Y").astimezone()
    request = _dict(tx.get("request"))
    response = _dict(tx.get("response"))
    rules = []
    for message in tx.get("messages") or ():
        details = message.get("details") if isinstance(message, dict) else None
        if not isinstance(details, dict):
            continue
        rule_id = _text(details.get("ruleId"), 12)
        if not rule_id.isdigit():
            continue
        tags = [_text(t, 100) for t in details.get("tags") or () if isinstance(t, str)]
        rules.append(_rule(int(rule_id), _text(message.get("message"), 200), _text(details.get("data"), 2000), tags))
    producer = _dict(tx.get("producer"))
    engine = _text(producer.get("secrules_engine"), 40)
    status = response.get("http_code")
    status = status if isinstance(status, int) and 0 <= status < 1000 else 0
    if engine == "DetectionOnly":
        action = "detected"
    else:
        action = "blocked" if any(r["id"] in DENYING_RULES for r in rules) else "scored"
    return _event("nginx-" + _text(tx.get("unique_id"), 64), when, _header(request.get("headers"), "host"),
                  _text(tx.get("client_ip"), 64), _text(request.get("method"), 16), _text(request.get("uri"), 8000),
                  action, status, rules)


def _modsecurity2(entry: dict[str, Any]) -> WafEvent | None:
    tx = entry.get("transaction")
    if not isinstance(tx, dict):
        return None
    when = datetime.strptime(_text(tx.get("time"), 40), "%d/%b/%Y:%H:%M:%S.%f %z")
    request = _dict(entry.get("request"))
    response = _dict(entry.get("response"))
    audit = entry["audit_data"]
    rules = []
    for message in audit.get("messages") or ():
        match = parse_message(message) if isinstance(message, str) else None
        if match is not None:
            rules.append(_rule(match.id, match.msg, match.data, list(match.tags)))
    line = _text(request.get("request_line"), 8000).split(" ")
    method, target = (line[0], line[1]) if len(line) >= 2 else ("", "")
    action_data = _dict(audit.get("action"))
    mode = _text(audit.get("engine_mode"), 40)
    intercepted = action_data.get("intercepted") is True
    action = "detected" if mode == "DETECTION_ONLY" else "blocked" if intercepted else "scored"
    status = response.get("status")
    status = status if isinstance(status, int) and 0 <= status < 1000 else 0
    return _event("apache-" + _text(tx.get("transaction_id"), 64), when, _header(request.get("headers"), "host"),
                  _text(tx.get("remote_address"), 64), method, target, action, status, rules)
