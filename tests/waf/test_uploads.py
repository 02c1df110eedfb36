"""Uploaded files read by hostguard's malware scanner inside the WAF: a webshell the request rules cannot see
(JSP in a .jpg, no code opener they look for) is refused; an honest image passes; the multipart splitter
never fails on garbage."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hostguard.waf.config import WafConfig
from hostguard.waf.gate import UPLOAD_RULE, Gate
from hostguard.waf.uploads import UploadScanner, file_parts
from tests.waf.test_engine import _need_library

JSP_IN_JPEG = b'\xff\xd8\xff\xe0\x00\x10JFIF\x00<% Runtime.getRuntime().exec(request.getParameter("c")); %>'
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xdb\x00C\x00" + bytes(range(64))


def _multipart(filename: str, content: bytes) -> tuple[str, bytes]:
    body = (b'--b0undary\r\nContent-Disposition: form-data; name="title"\r\n\r\nholiday\r\n'
            b'--b0undary\r\nContent-Disposition: form-data; name="photo"; filename="' + filename.encode() +
            b'"\r\nContent-Type: image/jpeg\r\n\r\n' + content + b"\r\n--b0undary--\r\n")
    return "multipart/form-data; boundary=b0undary", body


def _post(gate: Gate, filename: str, content: bytes) -> tuple[bool, list[int]]:
    content_type, body = _multipart(filename, content)
    decision = gate.decide("POST", "/profile/photo", [("Host", "shop.example.test"), ("Content-Type", content_type),
                                                      ("Content-Length", str(len(body)))], body, "198.51.100.7")
    return decision.blocked, decision.verdict.rule_ids


def test_the_file_parts_of_a_multipart_body() -> None:
    content_type, body = _multipart("cat.jpg", JPEG)
    assert file_parts(content_type, body) == [("cat.jpg", JPEG)]
    assert file_parts("application/json", b'{"a": 1}') == []
    assert file_parts("multipart/form-data; boundary=x", b"not multipart at all") == []


@given(st.binary(max_size=2000), st.text(max_size=80))
def test_garbage_never_fails(body: bytes, content_type: str) -> None:
    file_parts("multipart/form-data; " + content_type, body)


def test_a_webshell_the_request_rules_miss_is_refused_by_the_scanner(tmp_path: Path) -> None:
    _need_library()
    log = tmp_path / "events.jsonl"
    without = Gate(WafConfig(scan_uploads=False), None)
    gate = Gate(WafConfig(), str(log))
    try:
        assert _post(without, "cat.jpg", JSP_IN_JPEG) == (False, [])   # what the WAF's rules alone let through
        blocked, ids = _post(gate, "cat.jpg", JSP_IN_JPEG)
        assert blocked and ids == [UPLOAD_RULE]
        assert _post(gate, "cat.jpg", JPEG) == (False, [])               # an honest photo
    finally:
        without.close()
        gate.close()
    [event] = [json.loads(line) for line in log.read_text().splitlines()]
    assert event["action"] == "blocked" and "jsp_webshell" in event["rules"][0]["msg"]
    assert event["rules"][0]["data"] == "found within FILES:cat.jpg"


def test_detection_only_records_the_upload_without_refusing(tmp_path: Path) -> None:
    _need_library()
    gate = Gate(WafConfig(mode="detect"), None)
    try:
        assert _post(gate, "cat.jpg", JSP_IN_JPEG) == (False, [UPLOAD_RULE])
    finally:
        gate.close()


def test_the_minimum_severity_is_honoured() -> None:
    content_type, body = _multipart("cat.jpg", JSP_IN_JPEG)
    [hit] = UploadScanner("high").scan(content_type, body)
    assert (hit.rule, hit.severity) == ("jsp_webshell_exec_request", "critical")
    assert [h.rule for h in UploadScanner("critical").scan(content_type, body)] == [hit.rule]   # at the minimum
    assert UploadScanner("high").scan(*_multipart("cat.jpg", JPEG)) == []
