"""Uploaded files read by hostguard's malware scanner before the application stores them.

The WAF's own upload rules read file names and a few code openers; the malware scanner (YARA-X rules for
webshells in PHP, JSP, ASP, Python and Perl, loaders, droppers) reads a file the way it reads a web root.
An upload is where a webshell enters a site, so every file part of a multipart request is given to it, as if
it were already in the web root. A detection at ``[waf] upload_min_severity`` or above refuses the request.

The multipart body is split by Python's email parser (bounded by ``[waf] max_body_bytes`` already); the YARA-X
scanner is not thread-safe, so one is kept per thread. yara-x is a dependency of hostguard itself; when the
rules cannot be compiled the scanner says so once (``problem``) and uploads are left to the WAF's rules.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from hostguard.findings import Severity

__all__ = ["UploadHit", "UploadScanner", "file_parts"]

MAX_PARTS = 100


@dataclass(frozen=True)
class UploadHit:
    """One uploaded file the scanner detected: its name as sent, the rule and its severity."""

    filename: str
    rule: str
    severity: str
    description: str


def file_parts(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every file part of a multipart body (none when it is not multipart or does not
    parse: the WAF's body rules refuse a broken multipart body on their own)."""
    if not content_type.lower().lstrip().startswith("multipart/") or not body:
        return []
    try:
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1", "replace")
                                                      + b"\r\n\r\n" + body)
    except (ValueError, TypeError, LookupError):
        return []
    if not message.is_multipart():
        return []
    out: list[tuple[str, bytes]] = []
    for part in list(message.iter_parts())[:MAX_PARTS]:
        try:
            name = part.get_filename()
        except (ValueError, TypeError, LookupError):
            name = None
        if name is None:
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            out.append((str(name), payload))
    return out


class UploadScanner:
    """hostguard's malware rules, compiled once, one YARA-X scanner per thread."""

    def __init__(self, min_severity: str = "high", timeout: int = 5) -> None:
        self.min_rank = Severity(min_severity).rank
        self.timeout = timeout
        self._local = threading.local()
        self.problem = ""
        self._rules: Any = None
        try:
            from hostguard.scanner.engine import RuleSet
            from hostguard.scanner.rules import RulesError

            try:
                self._rules = RuleSet().compiled().rules
            except RulesError as exc:
                self.problem = f"malware rules: {exc}"
        except ImportError as exc:   # yara-x missing from this environment
            self.problem = f"malware scanner: {exc}"

    def _scanner(self) -> Any:
        scanner = getattr(self._local, "scanner", None)
        if scanner is None:
            from hostguard.scanner.engine import FileScanner

            scanner = self._local.scanner = FileScanner(self._rules, timeout=self.timeout)
        return scanner

    def scan(self, content_type: str, body: bytes) -> list[UploadHit]:
        """The detections at or above the minimum severity in the request's uploaded files."""
        if self._rules is None:
            return []
        parts = file_parts(content_type, body)
        if not parts:
            return []
        scanner = self._scanner()
        hits = []
        for name, data in parts:
            try:
                matches = scanner.scan_bytes(data, "/upload/" + name.replace("/", "_"), True)
            except Exception as exc:   # yara_x.TimeoutError: a file built to be slow is refused as such
                hits.append(UploadHit(name, "scan_timeout", "high", f"the scanner gave up on it ({exc})"))
                continue
            hits += [UploadHit(name, m.rule, m.severity, m.description) for m in matches
                     if Severity(m.severity).rank >= self.min_rank]
        return hits
