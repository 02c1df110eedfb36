"""The WAF corpora themselves: well-formed, labelled consistently, covering every category, placement and
encoding, using only test-safe addresses, and arriving on the wire exactly as written (loopback echo server)."""

from __future__ import annotations

import base64
import collections
import ipaddress
import json
import re
import socket
import threading
import xml.parsers.expat
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

import pytest

from tests.waf.corpus import (
    ATTACK_CATEGORIES,
    BENIGN_CATEGORIES,
    ENCODINGS,
    PLACEMENTS,
    Case,
    CorpusError,
    encode_chunked,
    load_cases,
    parse_case,
    render,
    send_raw,
    wire_headers,
)

ALL = load_cases()
ATTACKS = load_cases("attack")
BENIGN = load_cases("benign")

# Categories whose definition fixes the placement: an injection "in the URL path" is always in the path.
SINGLE_PLACEMENT = {"path_injection": "path"}
MIN_PLACEMENTS_PER_CATEGORY = 3
MIN_PER_CATEGORY = 20
# Per placement: (attack cases, benign cases). `body` (other media types) is the small one.
MIN_PER_PLACEMENT = {p: (20, 15) for p in PLACEMENTS} | {"body": (8, 10)}
# Evasion encodings each need a handful of attacks; utf16 is one deliberate byte-level case.
MIN_ATTACKS_PER_ENCODING = {e: 5 for e in ENCODINGS} | {"utf16": 1}
# Applications whose admin traffic is a known false-positive area (per-application exclusions, issue 14).
APPS_WITH_BENIGN = {"wordpress": 8, "phpmyadmin": 6, "nextcloud": 8, "drupal": 4, "mediawiki": 3}

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PROPFIND", "PROPPATCH", "REPORT"}
_JSON_TYPE = re.compile(r"application/(?:[\w.+-]*\+)?json", re.IGNORECASE)
_XML_TYPE = re.compile(r"(?:application|text)/(?:[\w.+-]*\+)?xml", re.IGNORECASE)


def table(cases: list[Case], row: str, col: str) -> dict[str, collections.Counter[str]]:
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for c in cases:
        out[getattr(c, row)][getattr(c, col)] += 1
    return out


def show(t: dict[str, collections.Counter[str]], cols: list[str]) -> str:
    lines = ["".ljust(16) + "".join(c[:9].rjust(10) for c in cols)]
    for r in sorted(t):
        lines.append(r[:15].ljust(16) + "".join(str(t[r][c]).rjust(10) for c in cols))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the data


def test_sizes_and_unique_ids() -> None:
    assert len(ATTACKS) >= 450 and len(BENIGN) >= 330
    assert len(ALL) == len(ATTACKS) + len(BENIGN)
    dup = [i for i, n in collections.Counter(c.id for c in ALL).items() if n > 1]
    assert dup == []


def test_ids_say_category_and_placement_and_files_say_kind() -> None:
    for c in ALL:
        prefix = f"{c.category}-{c.placement}-" if c.kind == "attack" else f"benign-{c.category}-{c.placement}-"
        assert re.fullmatch(re.escape(prefix) + r"\d{3}", c.id), c.id
        assert c.source.startswith("attacks/" if c.kind == "attack" else "benign/"), c.id
        if c.kind == "attack":
            assert c.source == f"attacks/{c.category}.toml", c.id


def test_every_field_is_valid() -> None:
    for c in ALL:
        assert c.category in (ATTACK_CATEGORIES if c.kind == "attack" else BENIGN_CATEGORIES), c.id
        assert c.placement in PLACEMENTS and c.encoding in ENCODINGS, c.id
        assert c.expect == ("block" if c.kind == "attack" else "pass"), c.id
        assert 8 <= len(c.note) <= 120 and c.note == c.note.strip(), c.id
        assert c.target.startswith("/") and c.target.isascii() and " " not in c.target, c.id
        assert c.method in METHODS, c.id
        body = c.body_bytes()
        if body is not None:
            assert c.content_type(), c.id
        if c.chunked:
            assert body, c.id
        if c.encoding == "chunked":
            assert c.chunked, c.id
        if c.placement == "multipart":
            assert c.parts is not None, c.id
        if c.placement in ("form", "json", "xml"):
            assert body is not None, c.id


def test_json_bodies_are_json() -> None:
    """Attacks too: a payload hidden in a JSON field must reach a JSON parser, not die as a syntax error."""
    checked = 0
    for c in ALL:
        body, ctype = c.body_bytes(), c.content_type() or ""
        if body is not None and _JSON_TYPE.fullmatch(ctype.split(";")[0].strip()):
            json.loads(body)
            checked += 1
    assert checked >= 130


def test_benign_xml_is_well_formed_and_forms_parse() -> None:
    for c in BENIGN:
        body, ctype = c.body_bytes(), (c.content_type() or "").split(";")[0].strip()
        if body is None:
            continue
        if c.placement == "xml" or _XML_TYPE.fullmatch(ctype):
            parser = xml.parsers.expat.ParserCreate()
            parser.Parse(body, True)
        if ctype == "application/x-www-form-urlencoded":
            assert parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True), c.id


def test_multipart_bodies_parse_into_their_parts() -> None:
    for c in ALL:
        if c.parts is None:
            continue
        body = c.body_bytes()
        assert body is not None
        msg = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {c.content_type()}\r\n\r\n".encode() + body)
        assert msg.is_multipart(), c.id
        parsed = list(msg.iter_parts())
        assert len(parsed) == len(c.parts), c.id
        for got, want in zip(parsed, c.parts, strict=True):
            if got.get("Content-Transfer-Encoding") is None:
                assert got.get_payload(decode=True) == want.body, c.id
            assert got.get_param("name", header="content-disposition") == want.name or want.disposition, c.id


def test_coverage_table() -> None:
    """Every attack category in several placements, every placement with many attacks and benign cases."""
    placements = sorted(PLACEMENTS)
    by_cat = table(ATTACKS, "category", "placement")
    report = "\n" + show(by_cat, placements)
    assert set(by_cat) == ATTACK_CATEGORIES, report
    for cat, counts in by_cat.items():
        assert sum(counts.values()) >= MIN_PER_CATEGORY, f"{cat}{report}"
        if cat in SINGLE_PLACEMENT:
            assert set(counts) == {SINGLE_PLACEMENT[cat]}, f"{cat}{report}"
        else:
            assert len(counts) >= MIN_PLACEMENTS_PER_CATEGORY, f"{cat}{report}"
    attacks = collections.Counter(c.placement for c in ATTACKS)
    benign = collections.Counter(c.placement for c in BENIGN)
    for p, (n_attack, n_benign) in MIN_PER_PLACEMENT.items():
        assert attacks[p] >= n_attack and benign[p] >= n_benign, (p, attacks[p], benign[p])
    # the path carries more than path_injection: Log4Shell, OGNL and CRLF payloads in paths are common
    assert {c.category for c in ATTACKS if c.placement == "path"} - {"path_injection"}


def test_encodings_coverage() -> None:
    counts = collections.Counter(c.encoding for c in ATTACKS)
    for enc, n in MIN_ATTACKS_PER_ENCODING.items():
        assert counts[enc] >= n, (enc, counts)
    for cat, encs in table(ATTACKS, "category", "encoding").items():
        assert len(encs) >= 3, (cat, encs)
    # benign traffic uses the odd encodings too, or a WAF could learn "encoded means hostile"
    benign = collections.Counter(c.encoding for c in BENIGN)
    assert {"url", "double_url", "unicode_escape", "html_entity", "base64", "chunked", "fullwidth", "utf16",
            "whitespace"} <= set(benign), benign


# What each encoding label promises to find in the request (after one round of percent-decoding).
_ENCODING_MARKS = {
    "url": rb"%[0-9A-Fa-f]{2}|\+",
    "double_url": rb"%25[0-9A-Fa-f]{2}",
    "unicode_escape": rb"\\u[0-9a-fA-F]{4}|%u[0-9a-fA-F]{4}|\xe5\x98[\x8a\x8d]",
    "html_entity": rb"&#x?[0-9a-fA-F]+;|&[a-z]+;",
    "fullwidth": rb"\xef\xbc|\xef\xbd|\xe3\x80\x80",
    "whitespace": rb"[\t\n\x0b\x0c\r]",
}


def test_encoding_labels_match_the_bytes() -> None:
    for c in ALL:
        wire = b"\0".join([c.target.encode(), *(v.encode() for _, v in c.headers), c.body_bytes() or b""])
        if c.encoding in ("url", "double_url"):
            assert re.search(_ENCODING_MARKS[c.encoding], wire), c.id
        elif c.encoding in _ENCODING_MARKS:
            assert re.search(_ENCODING_MARKS[c.encoding], wire + b"\0" + unquote_to_bytes(wire)), c.id
        elif c.encoding == "utf16":
            assert (c.body_bytes() or b"").startswith((b"\xff\xfe", b"\xfe\xff")), c.id
        elif c.encoding == "chunked":
            assert c.chunked, c.id


def test_benign_covers_known_false_positive_areas() -> None:
    apps = collections.Counter(c.app for c in BENIGN if c.app)
    for app, n in APPS_WITH_BENIGN.items():
        assert apps[app] >= n, (app, apps)
    cats = collections.Counter(c.category for c in BENIGN)
    assert set(cats) == BENIGN_CATEGORIES and min(cats.values()) >= 5, cats
    text = b"\n".join((c.target.encode() + (c.body_bytes() or b"")).lower() for c in BENIGN)
    for needle in (b"o'brien", b"union", b"select", b"<p>", b"```", b"$", b"$ref", b"__typename", b"%0d%0a", b"\\u00"):
        assert needle in text, needle


_OK_HOSTS = {
    # services an attacker aims at from inside (metadata, orchestration, loopback names)
    "localhost", "metadata.google.internal", "kubernetes.default.svc",
    # XML namespaces, DTD identifiers and crawler contact URLs: names, never contacted
    "www.w3.org", "schemas.xmlsoap.org", "docs.oasis-open.org", "java.sun.com", "bea.com", "json-schema.org",
    "maven.apache.org", "owncloud.org", "nextcloud.org", "www.apple.com", "www.sitemaps.org", "www.topografix.com",
    "www.opengis.net", "xmlns.com", "api.slack.com", "www.google.com",
}
_OK_NETS = [ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32",  # documentation
    "127.0.0.0/8", "::1/128", "0.0.0.0/32", "::ffff:169.254.169.254/128",   # loopback, unspecified
    "169.254.0.0/16", "fd00:ec2::254/128", "100.100.100.200/32",            # cloud metadata endpoints
)]


_URL_HOST = re.compile(r"(?i)\b(?:https?|ftp|ldaps?|rmi|gopher|dict)://(?:[^/@\s\"'<>]*@)?(\[[^\]]+\]|[\w.-]+)")


def _address_ok(text: str) -> bool:
    try:
        addr = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return any(addr in net for net in _OK_NETS if net.version == addr.version)


def test_only_test_safe_hosts_and_addresses() -> None:
    bad = []
    for c in ALL:
        blob = " ".join([c.target, *(v for _, v in c.headers), (c.body_bytes() or b"").decode("latin-1")])
        for host in _URL_HOST.findall(blob):
            host = host.lower()
            numeric = re.fullmatch(r"[\d.]+|0x[0-9a-f]+|\[.*\]", host)
            if not (host.endswith(".test") or host in _OK_HOSTS or _address_ok(host) or numeric):
                bad.append((c.id, host))
        for ip in re.findall(r"(?<![A-Za-z]/)(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])", blob):
            if not _address_ok(ip):
                bad.append((c.id, ip))
    assert bad == []


# ------------------------------------------------------------------------------------------------ loader


def _raw(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "sqli-query-999", "category": "sqli", "placement": "query", "encoding": "plain",
                            "expect": "block", "note": "a test case here", "method": "GET", "target": "/?a=1", "headers": []}
    return base | over


@pytest.mark.parametrize(("over", "message"), [
    ({"category": "nope"}, "category"),
    ({"placement": "url"}, "placement"),
    ({"encoding": "rot13"}, "encoding"),
    ({"expect": "pass"}, "expect"),
    ({"target": "/a b"}, "target"),
    ({"target": "http://example.test/"}, "target"),
    ({"headers": [["Host", "x"]]}, "set by render"),
    ({"headers": [["X-A", " padded"]]}, "whitespace"),
    ({"headers": [["Bad Name", "x"]]}, "token"),
    ({"method": "POST", "placement": "path", "body": "x"}, "Content-Type"),
    ({"method": "GET", "placement": "form", "body": "a=1"}, "GET with a body"),
    ({"chunked": True}, "chunked without a body"),
    ({"note": "two\nlines"}, "one line"),
    ({"surprise": 1}, "unknown keys"),
    ({"method": "POST", "placement": "multipart", "parts": [{"name": "f", "body": "--X--"}], "boundary": "X"},
     "inside a part"),
    ({"method": "POST", "placement": "form", "body": "a", "body_b64": "YQ=="}, "both body and body_b64"),
])
def test_parse_case_rejects(over: dict[str, Any], message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        parse_case(_raw(**over), "attacks/sqli.toml", "attack")


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "attacks").mkdir()
    (tmp_path / "benign").mkdir()
    one = "[[case]]\nid = 'sqli-query-001'\ncategory = 'sqli'\nplacement = 'query'\nencoding = 'plain'\n" \
          "expect = 'block'\nnote = 'the same id twice'\nmethod = 'GET'\ntarget = '/?a=1'\nheaders = []\n"
    (tmp_path / "attacks" / "a.toml").write_text(one + "\n" + one)
    with pytest.raises(CorpusError, match="duplicate id"):
        load_cases(root=tmp_path)


# ------------------------------------------------------------------------------------------------ rendering


def _case(**over: Any) -> Case:
    return parse_case(_raw(**over), "attacks/sqli.toml", "attack")


def test_render_form_body_gets_derived_type_and_length() -> None:
    c = _case(method="POST", placement="form", body="q=1%27", headers=[["User-Agent", "t/1"]])
    data = render(c, "example.test")
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"q=1%27"
    assert head.split(b"\r\n") == [b"POST /?a=1 HTTP/1.1", b"Host: example.test", b"Accept: */*", b"User-Agent: t/1",
                                   b"Content-Type: application/x-www-form-urlencoded", b"Content-Length: 6",
                                   b"Connection: close"]


def test_render_chunked_and_bare() -> None:
    c = _case(method="POST", placement="json", body='{"a": "' + "x" * 40 + '"}', chunked=True, bare=True)
    head, _, body = render(c, "h.test").partition(b"\r\n\r\n")
    assert b"Content-Length" not in head and b"Transfer-Encoding: chunked" in head and b"User-Agent" not in head
    assert body.startswith(b"7\r\n{\"a\": \"\r\n3\r\nxxx\r\n") and body.endswith(b"\r\n0\r\n\r\n")
    assert _dechunk(body) == c.body_bytes()
    assert encode_chunked(b"") == b"0\r\n\r\n"


def test_render_multipart() -> None:
    c = _case(method="POST", placement="multipart", boundary="b0und",
              parts=[{"name": "f", "filename": "a.txt", "content_type": "text/plain", "body": "hi"},
                     {"name": "g", "body_b64": "AAE="}])
    assert c.content_type() == "multipart/form-data; boundary=b0und"
    assert c.body_bytes() == (b'--b0und\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n'
                              b"Content-Type: text/plain\r\n\r\nhi\r\n"
                              b'--b0und\r\nContent-Disposition: form-data; name="g"\r\n\r\n\x00\x01\r\n--b0und--\r\n')
    assert ("Content-Length", str(len(c.body_bytes() or b""))) in wire_headers(c, "h.test")


def _dechunk(data: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return out
        out += data[eol + 2:eol + 2 + size]
        assert data[eol + 2 + size:eol + 4 + size] == b"\r\n"
        pos = eol + 4 + size


# ------------------------------------------------------------------------------------------------ the wire


class Echo(BaseHTTPRequestHandler):
    """Answers every request with what arrived: request line target, header fields in order, body bytes after
    de-chunking (JSON in the body; in an X-Echo header for HEAD)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return out
            out += self.rfile.read(size)
            assert self.rfile.read(2) == b"\r\n"

    def _echo(self) -> None:
        target = self.requestline.split(" ")[1]  # the raw request line (self.path folds a leading //)
        headers = [[k, v.encode("latin-1").decode("utf-8")] for k, v in self.headers.items()]
        body: bytes | None = None
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            body = self._read_chunked()
        elif self.headers.get("Content-Length") is not None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        echo = json.dumps({"method": self.command, "target": target, "headers": headers,
                           "body": None if body is None else base64.b64encode(body).decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.command == "HEAD":
            self.send_header("X-Echo", base64.b64encode(echo).decode())
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(echo)))
        self.end_headers()
        self.wfile.write(echo)


for _method in {c.method for c in ALL}:
    setattr(Echo, f"do_{_method}", Echo._echo)


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _echoed(raw: bytes) -> dict[str, Any]:
    while raw.startswith(b"HTTP/1.1 100"):  # interim answer to Expect: 100-continue
        raw = raw.partition(b"\r\n\r\n")[2]
    head, _, body = raw.partition(b"\r\n\r\n")
    if not body:
        m = re.search(rb"\r\nX-Echo: ([A-Za-z0-9+/=]+)", head)
        assert m is not None
        body = base64.b64decode(m.group(1))
    result: dict[str, Any] = json.loads(body)
    return result


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_round_trip(case: Case, echo_port: int) -> None:
    """What the server receives is the case: method, target, header fields in order, body bytes."""
    status, raw = send_raw(render(case, "waf-corpus.test"), "127.0.0.1", echo_port, timeout=10)
    assert status == 200
    got = _echoed(raw)
    assert got["method"] == case.method
    assert got["target"] == case.target
    assert [tuple(h) for h in got["headers"]] == wire_headers(case, "waf-corpus.test")
    body = case.body_bytes()
    assert got["body"] == (None if body is None and case.method not in ("POST", "PUT", "PATCH")
                           else base64.b64encode(body or b"").decode())


# ------------------------------------------------------------------------------------------------ send_raw


@pytest.mark.parametrize("host", ["192.0.2.1", "198.51.100.7", "2001:db8::1", "localhost"])
def test_send_raw_refuses_anything_but_loopback_literals(host: str) -> None:
    with pytest.raises(ValueError):
        send_raw(b"GET / HTTP/1.1\r\n\r\n", host, 80, timeout=1)


def _one_shot_server(answer: bytes, read_head_only: bool) -> tuple[int, threading.Thread]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(4096)
            if not read_head_only:
                conn.settimeout(0.5)
                try:
                    while conn.recv(65536):
                        pass
                except TimeoutError:
                    pass
            conn.sendall(answer)
            conn.shutdown(socket.SHUT_RDWR)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_send_raw_reads_an_early_answer_from_a_server_that_closes() -> None:
    """A WAF that refuses a request on its headers answers and closes while the body is still coming."""
    port, thread = _one_shot_server(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\nblocked", read_head_only=True)
    request = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 8000000\r\n\r\n" + b"a" * 8_000_000
    status, raw = send_raw(request, "127.0.0.1", port, timeout=10)
    thread.join(5)
    assert status == 403 and raw.endswith(b"blocked")


def test_send_raw_without_a_status_line_and_with_one_cut_short() -> None:
    port, thread = _one_shot_server(b"", read_head_only=False)
    assert send_raw(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", "127.0.0.1", port, timeout=5) == (0, b"")
    thread.join(5)
    port, thread = _one_shot_server(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\n", read_head_only=False)
    status, _ = send_raw(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", "127.0.0.1", port, timeout=5)
    thread.join(5)
    assert status == 400
