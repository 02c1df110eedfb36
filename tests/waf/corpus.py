"""The labelled WAF corpora (tests/fixtures/waf/): loading, rendering as raw HTTP/1.1, sending on loopback.

Every case is a whole request, written here by hand: ``attacks/*.toml`` hold requests a WAF must block,
``benign/*.toml`` ordinary traffic that merely looks odd and must pass. A file is a list of ``[[case]]``
tables with these keys:

``id``         unique and stable (``sqli-json-003``, ``benign-code-form-002``); never renumber
``category``   an attack technique (``ATTACK_CATEGORIES``) or a kind of benign traffic (``BENIGN_CATEGORIES``)
``placement``  where the payload sits (``PLACEMENTS``); ``body`` is any other media type (text, YAML, bytes)
``encoding``   how it is written (``ENCODINGS``)
``expect``     ``"block"`` under ``attacks/``, ``"pass"`` under ``benign/``
``app``        optional: the application the request belongs to (``phpmyadmin``, ``wordpress``, …)
``note``       one line: the technique, or why the request is benign
``method``, ``target``  the request line's method and request-target, exactly as sent (already encoded)
``headers``    ``[[name, value], ...]`` in order; never ``Host``, ``Content-Length`` or ``Transfer-Encoding``
``body`` (text, sent as UTF-8) or ``body_b64`` (bytes; whitespace ignored) or ``[[case.parts]]`` (multipart:
``name``, optional ``filename``, ``content_type``, ``disposition`` (the whole Content-Disposition value,
for tricks), ``headers``, and ``body`` or ``body_b64``); ``boundary`` optionally fixes the multipart boundary
``chunked``    send the body with ``Transfer-Encoding: chunked`` (in small, uneven chunks)
``bare``       do not add the default ``User-Agent``/``Accept`` headers

:func:`render` turns a case into the bytes on the wire; :func:`send_raw` sends bytes to a loopback port.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import ipaddress
import re
import socket
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent / "fixtures" / "waf"

ATTACK_CATEGORIES = frozenset({
    "sqli", "xss", "cmdi", "lfi", "rfi", "ssrf", "nosqli", "ssti", "xxe", "jndi", "php", "java_deser",
    "webshell_upload", "path_injection", "crlf", "proto_pollution",
})
BENIGN_CATEGORIES = frozenset({
    "prose", "search", "code", "api", "token", "url", "upload", "xml", "admin", "i18n", "headers", "money_math",
})
PLACEMENTS = frozenset({"path", "query", "header", "cookie", "form", "multipart", "json", "xml", "body"})
ENCODINGS = frozenset({
    "plain",           # as typed (only what the request line needs is percent-encoded)
    "url",             # percent-encoded (or + for spaces in urlencoded forms)
    "double_url",      # percent-encoded twice (%2527)
    "unicode_escape",  # \u0027 in JSON strings, %u0027 (IIS), or UTF-8 sequences some servers fold
    "html_entity",     # &#39; &lt; &colon; ...
    "obfuscated",      # mixed case, inline comments, quotes or globs splitting keywords
    "whitespace",      # tabs, newlines, form feeds instead of spaces
    "base64",          # a value the application base64-decodes
    "chunked",         # the body sent with Transfer-Encoding: chunked
    "fullwidth",       # UTF-8 fullwidth forms (U+FF01..U+FF5E) that NFKC folds to ASCII
    "utf16",           # a UTF-16 body
})
KINDS: tuple[Literal["attack"], Literal["benign"]] = ("attack", "benign")
DEFAULT_HEADERS: tuple[tuple[str, str], ...] = (
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("Accept", "*/*"),
)
CHUNK_SIZES = (7, 3, 64, 1, 256)  # uneven on purpose: payloads straddle chunk boundaries
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
DERIVED_CONTENT_TYPES = {
    "form": "application/x-www-form-urlencoded",
    "json": "application/json",
    "xml": "application/xml",
}

_ID = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=?]{1,70}")
_CASE_KEYS = frozenset({
    "id", "category", "placement", "encoding", "expect", "app", "note", "method", "target", "headers", "body",
    "body_b64", "parts", "boundary", "chunked", "bare",
})
_PART_KEYS = frozenset({"name", "filename", "content_type", "disposition", "headers", "body", "body_b64"})


class CorpusError(ValueError):
    """A corpus file or case that breaks the format; the message names the file and the case."""


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    body: bytes
    filename: str | None = None
    content_type: str | None = None
    disposition: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def render(self) -> bytes:
        """The part's headers, blank line and content (without the delimiter line around it)."""
        disposition = self.disposition
        if disposition is None:
            disposition = f'form-data; name="{self.name}"'
            if self.filename is not None:
                disposition += f'; filename="{self.filename}"'
        lines = [f"Content-Disposition: {disposition}"]
        if self.content_type is not None:
            lines.append(f"Content-Type: {self.content_type}")
        lines.extend(f"{n}: {v}" for n, v in self.headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass(frozen=True)
class Case:
    """One labelled request of the corpus (see the module docstring for the meaning of each field)."""

    id: str
    category: str
    placement: str
    encoding: str
    expect: Literal["block", "pass"]
    note: str
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    source: str
    app: str | None = None
    body: bytes | None = None
    parts: tuple[Part, ...] | None = None
    boundary: str | None = None
    chunked: bool = False
    bare: bool = False

    @property
    def kind(self) -> Literal["attack", "benign"]:
        """``attack`` for cases that must be blocked, ``benign`` for those that must pass."""
        return "attack" if self.expect == "block" else "benign"

    def header(self, name: str) -> str | None:
        """The value of the case's first header called ``name`` (any case), or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def multipart_boundary(self) -> str | None:
        """The boundary of a multipart case: ``boundary``, else the Content-Type's, else one made from the id."""
        if self.parts is None:
            return None
        if self.boundary is not None:
            return self.boundary
        declared = _boundary_param(self.header("Content-Type"))
        if declared is not None:
            return declared
        digest = hashlib.sha256(self.id.encode()).digest()
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "----WebKitFormBoundary" + "".join(alphabet[b % len(alphabet)] for b in digest[:16])

    def body_bytes(self) -> bytes | None:
        """The request body before any transfer coding (multipart built from the parts), or None."""
        if self.parts is not None:
            boundary = self.multipart_boundary()
            assert boundary is not None
            delimiter = b"--" + boundary.encode()
            out = b"".join(delimiter + b"\r\n" + part.render() + b"\r\n" for part in self.parts)
            return out + delimiter + b"--\r\n"
        return self.body

    def content_type(self) -> str | None:
        """The Content-Type sent: the case's own header, else derived from the parts or the placement."""
        declared = self.header("Content-Type")
        if declared is not None:
            return declared
        if self.parts is not None:
            return f"multipart/form-data; boundary={self.multipart_boundary()}"
        if self.body is not None:
            return DERIVED_CONTENT_TYPES.get(self.placement)
        return None


def _boundary_param(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    m = re.search(r';\s*boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    return m.group(1) if m else None


def wire_headers(case: Case, host_header: str) -> list[tuple[str, str]]:
    """The header fields :func:`render` sends, in order: Host, the defaults the case does not set (unless
    ``bare``), the case's headers, a derived Content-Type, Content-Length or Transfer-Encoding, and
    ``Connection: close`` unless the case sets Connection."""
    out = [("Host", host_header)]
    names = {n.lower() for n, _ in case.headers}
    if not case.bare:
        out.extend((n, v) for n, v in DEFAULT_HEADERS if n.lower() not in names)
    out.extend(case.headers)
    body = case.body_bytes()
    content_type = case.content_type()
    if content_type is not None and "content-type" not in names:
        out.append(("Content-Type", content_type))
    if case.chunked:
        out.append(("Transfer-Encoding", "chunked"))
    elif body is not None or case.method in ("POST", "PUT", "PATCH"):
        out.append(("Content-Length", str(len(body or b""))))
    if "connection" not in names:
        out.append(("Connection", "close"))
    return out


def encode_chunked(body: bytes, sizes: tuple[int, ...] = CHUNK_SIZES) -> bytes:
    """``body`` in chunked transfer coding, cut into chunks of the given sizes in turn, then the last chunk."""
    out = bytearray()
    pos, i = 0, 0
    while pos < len(body):
        piece = body[pos:pos + sizes[i % len(sizes)]]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        pos += len(piece)
        i += 1
    return bytes(out + b"0\r\n\r\n")


def render(case: Case, host_header: str) -> bytes:
    """The complete HTTP/1.1 request for ``case`` as raw bytes (header values as UTF-8)."""
    head = f"{case.method} {case.target} HTTP/1.1\r\n"
    head += "".join(f"{n}: {v}\r\n" for n, v in wire_headers(case, host_header)) + "\r\n"
    body = case.body_bytes() or b""
    if case.chunked:
        body = encode_chunked(body)
    return head.encode("utf-8") + body


# ---------------------------------------------------------------------------------------------------------
# loading


def _fail(source: str, case_id: object, message: str) -> CorpusError:
    return CorpusError(f"{source}: case {case_id!r}: {message}")


def _text(raw: dict[str, Any], key: str, source: str, case_id: object, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise _fail(source, case_id, f"missing {key}")
        return None
    if not isinstance(value, str) or not value:
        raise _fail(source, case_id, f"{key} must be a non-empty string")
    return value


def _headers(value: object, source: str, case_id: object, reserved: frozenset[str]) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise _fail(source, case_id, "headers must be a list of [name, value]")
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise _fail(source, case_id, f"bad header {item!r}: want [name, value]")
        name, val = item
        if not _TOKEN.fullmatch(name):
            raise _fail(source, case_id, f"header name {name!r} is not a token")
        if name.lower() in reserved:
            raise _fail(source, case_id, f"header {name} is set by render(), not by the case")
        if _BAD_VALUE.search(val) or val != val.strip(" \t"):
            raise _fail(source, case_id, f"header {name} has control characters or surrounding whitespace")
        out.append((name, val))
    return tuple(out)


def _bytes_of(raw: dict[str, Any], source: str, case_id: object, what: str) -> bytes | None:
    if "body" in raw and "body_b64" in raw:
        raise _fail(source, case_id, f"{what}: both body and body_b64")
    if "body" in raw:
        if not isinstance(raw["body"], str):
            raise _fail(source, case_id, f"{what}: body must be a string")
        return raw["body"].encode("utf-8")
    if "body_b64" in raw:
        text = raw["body_b64"]
        if not isinstance(text, str):
            raise _fail(source, case_id, f"{what}: body_b64 must be a string")
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except ValueError as exc:
            raise _fail(source, case_id, f"{what}: body_b64 is not base64: {exc}") from None
    return None


def _part(raw: object, source: str, case_id: object) -> Part:
    if not isinstance(raw, dict):
        raise _fail(source, case_id, "parts must be tables")
    unknown = set(raw) - _PART_KEYS
    if unknown:
        raise _fail(source, case_id, f"unknown part keys {sorted(unknown)}")
    name = _text(raw, "name", source, case_id)
    assert name is not None
    body = _bytes_of(raw, source, case_id, f"part {name!r}")
    if body is None:
        raise _fail(source, case_id, f"part {name!r} has no body or body_b64")
    fields = {k: _text(raw, k, source, case_id, required=False) for k in ("filename", "content_type", "disposition")}
    for key, value in [("name", name), *fields.items()]:
        if value is not None and ("\r" in value or "\n" in value):
            raise _fail(source, case_id, f"part {name!r}: {key} contains CR or LF")
    headers = _headers(raw.get("headers", []), source, case_id, frozenset({"content-disposition", "content-type"}))
    return Part(name=name, body=body, filename=fields["filename"], content_type=fields["content_type"],
                disposition=fields["disposition"], headers=headers)


def parse_case(raw: dict[str, Any], source: str, kind: Literal["attack", "benign"]) -> Case:
    """Validate one ``[[case]]`` table of a file under ``attacks/`` or ``benign/`` and build its Case."""
    case_id = raw.get("id")
    unknown = set(raw) - _CASE_KEYS
    if unknown:
        raise _fail(source, case_id, f"unknown keys {sorted(unknown)}")
    text = {k: _text(raw, k, source, case_id) for k in
            ("id", "category", "placement", "encoding", "expect", "note", "method", "target")}
    cid, category, placement, encoding, expect, note, method, target = (str(text[k]) for k in text)
    if not _ID.fullmatch(cid):
        raise _fail(source, case_id, "id must be lower-case words joined by - or _")
    categories = ATTACK_CATEGORIES if kind == "attack" else BENIGN_CATEGORIES
    if category not in categories:
        raise _fail(source, cid, f"category {category!r} is not one of the {kind} categories")
    if placement not in PLACEMENTS:
        raise _fail(source, cid, f"placement {placement!r} unknown")
    if encoding not in ENCODINGS:
        raise _fail(source, cid, f"encoding {encoding!r} unknown")
    want = "block" if kind == "attack" else "pass"
    if expect != want:
        raise _fail(source, cid, f"expect must be {want!r} in a {kind} file")
    if "\n" in note or "\r" in note:
        raise _fail(source, cid, "note must be one line")
    if not _TOKEN.fullmatch(method) or method != method.upper():
        raise _fail(source, cid, f"method {method!r} is not an upper-case token")
    if not _TARGET.fullmatch(target):
        raise _fail(source, cid, "target must start with / and hold only visible ASCII (encode the rest)")
    app = _text(raw, "app", source, cid, required=False)
    headers = _headers(raw.get("headers"), source, cid, RESERVED_HEADERS)
    body = _bytes_of(raw, source, cid, "case")
    parts: tuple[Part, ...] | None = None
    if "parts" in raw:
        if body is not None:
            raise _fail(source, cid, "a case has a body or parts, not both")
        if not isinstance(raw["parts"], list) or not raw["parts"]:
            raise _fail(source, cid, "parts must be a non-empty list of tables")
        parts = tuple(_part(p, source, cid) for p in raw["parts"])
    boundary = _text(raw, "boundary", source, cid, required=False)
    flags = {}
    for key in ("chunked", "bare"):
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise _fail(source, cid, f"{key} must be true or false")
        flags[key] = value
    case = Case(id=cid, category=category, placement=placement, encoding=encoding,
                expect="block" if expect == "block" else "pass", note=note, method=method, target=target,
                headers=headers, source=source, app=app, body=body, parts=parts, boundary=boundary,
                chunked=flags["chunked"], bare=flags["bare"])
    _check_body(case)
    return case


def _check_body(case: Case) -> None:
    has_body = case.body is not None or case.parts is not None
    if case.method in ("GET", "HEAD") and has_body:
        raise _fail(case.source, case.id, f"{case.method} with a body")
    if case.chunked and not has_body:
        raise _fail(case.source, case.id, "chunked without a body")
    if case.boundary is not None and case.parts is None:
        raise _fail(case.source, case.id, "boundary without parts")
    if has_body and case.content_type() is None:
        raise _fail(case.source, case.id, f"a {case.placement} body needs a Content-Type header")
    if case.parts is not None:
        boundary = case.multipart_boundary()
        assert boundary is not None
        if not _BOUNDARY.fullmatch(boundary) or boundary.endswith(" "):
            raise _fail(case.source, case.id, f"bad multipart boundary {boundary!r}")
        declared = _boundary_param(case.header("Content-Type"))
        if case.header("Content-Type") is not None and declared != boundary:
            raise _fail(case.source, case.id, "the Content-Type's boundary differs from the parts' boundary")
        if any(b"--" + boundary.encode() in part.render() for part in case.parts):
            raise _fail(case.source, case.id, "the boundary occurs inside a part")


def _files(root: Path, kind: Literal["attack", "benign"]) -> Iterator[Path]:
    yield from sorted((root / ("attacks" if kind == "attack" else "benign")).glob("*.toml"))


@functools.cache
def _load_all(root: Path) -> tuple[Case, ...]:
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for kind in KINDS:
        for path in _files(root, kind):
            source = path.relative_to(root).as_posix()
            try:
                data = tomllib.loads(path.read_text("utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise CorpusError(f"{source}: {exc}") from None
            if set(data) != {"case"} or not isinstance(data["case"], list):
                raise CorpusError(f"{source}: a corpus file holds only [[case]] tables")
            for raw in data["case"]:
                case = parse_case(raw, source, kind)
                if case.id in seen:
                    raise _fail(source, case.id, f"duplicate id (also in {seen[case.id]})")
                seen[case.id] = source
                cases.append(case)
    return tuple(cases)


def load_cases(kind: Literal["attack", "benign"] | None = None, root: Path = ROOT) -> list[Case]:
    """The corpus cases of one kind (``attack``: expect block, ``benign``: expect pass) or of both, in file
    order. Raises :class:`CorpusError` on any malformed case; ids are unique across the corpus."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, not {kind!r}")
    return [c for c in _load_all(root.resolve()) if kind is None or c.kind == kind]


# ---------------------------------------------------------------------------------------------------------
# sending


def _response_complete(buf: bytes, head_only: bool) -> tuple[int, bool] | None:
    """``(status, complete)`` once a final status line and its header block are in ``buf``; 1xx are skipped."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = buf[:end].decode("latin-1")
        m = re.match(r"HTTP/\d\.\d (\d{3})", head)
        if m is None:
            return 0, True
        status = int(m.group(1))
        if 100 <= status < 200 and status != 101:
            buf = buf[end + 4:]
            continue
        body = buf[end + 4:]
        if head_only or status in (101, 204, 304):
            return status, True
        fields = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return status, body.endswith(b"0\r\n\r\n")
        if "content-length" in fields and fields["content-length"].isdigit():
            return status, len(body) >= int(fields["content-length"])
        return status, False  # delimited by close


def send_raw(data: bytes, host: str, port: int, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``data`` as is to ``host:port`` (a loopback address literal only) and read the response.

    Returns the final status code (interim 1xx responses are skipped) and every byte received. The response
    ends at its Content-Length, its last chunk, or when the server closes. A server that answers before the
    whole request is sent and closes (a WAF refusing a body) is fine: its answer is still read. If the
    connection ends without a status line the status is 0. ``timeout`` bounds the whole exchange; raises
    TimeoutError when it passes before a status line arrives.
    """
    address = ipaddress.ip_address(host)
    if not address.is_loopback:
        raise ValueError(f"send_raw talks to loopback addresses only, not {host}")
    head_only = data.startswith(b"HEAD ")
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    received = bytearray()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # a server that answers early and closes: read what it said below
        state: tuple[int, bool] | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if state is None:
                    raise TimeoutError(f"no response from {host}:{port} within {timeout}s")
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                if state is None:
                    raise
                break
            if not chunk:
                break
            received += chunk
            state = _response_complete(bytes(received), head_only)
            if state is not None and state[1]:
                break
    final = _response_complete(bytes(received), head_only)
    if final is not None:
        return final[0], bytes(received)
    # closed inside the header block: take the last status line that came (a bare "HTTP/1.1 403 ..." counts)
    statuses = re.findall(rb"(?:^|\r\n\r\n)HTTP/\d\.\d (\d{3})", bytes(received))
    finals = [int(x) for x in statuses if not 100 <= int(x) < 200 or int(x) == 101]
    return (finals[-1] if finals else 0), bytes(received)
