"""`hostguard vulns update`: exports fetched from a local HTTP server on 127.0.0.1 (the test's own, serving
archives the test builds; osv.dev is never asked), replaced only when whole; every failure one line, exit 2,
the old copy and its index kept. And `--db`: the index (re)built from a local copy."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hostguard.vulns.update import DownloadError, fetch, wanted_exports
from tests.vulns.osv_helpers import Record, affected, record, rng, write_dir

DEB = record("DSA-T-1", affected("Debian:12", "curl", rng(("introduced", "0"), ("fixed", "7.88.1-10+deb12u5"))),
             aliases=("CVE-2099-1",))
DEB11 = record("DLA-T-2", affected("Debian:11", "curl", rng(("introduced", "0"), ("fixed", "7.74.0-1.3+deb11u11"))))
PY = record("PYSEC-T-3", affected("PyPI", "flask", rng(("introduced", "0"), ("fixed", "2.0"))))
PY_NEW = record("PYSEC-T-4", affected("PyPI", "flask", rng(("introduced", "0"), ("fixed", "3.0"))))


def zip_of(*records: Record) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rec in records:
            archive.writestr(f"{rec['id']}.json", json.dumps(rec))
    return buffer.getvalue()


class Server:
    """A local HTTP server: ``routes`` maps a path to (status, body, extra headers); ``requests`` lists the paths
    asked; ``delay`` seconds before answering (a server that hangs)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.requests: list[str] = []
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests.append(self.path)
                time.sleep(outer.delay)
                status, body, headers = outer.routes.get(self.path, (404, b"not found", {}))
                self.send_response(status)
                headers = {"Content-Length": str(len(body)), **headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (time-out test)
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.routes["/Debian/all.zip"] = (200, zip_of(DEB, DEB11), {})
    srv.routes["/PyPI/all.zip"] = (200, zip_of(PY), {})
    yield srv
    srv.close()


def hostguard(state: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "hostguard.cli", "--state", str(state), "vulns", *args],
                          capture_output=True, text=True, check=False, input=stdin, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


ASK = ('{"ecosystem": "Debian:12", "name": "curl", "version": "7.88.1-10+deb12u4"}\n'
       '{"ecosystem": "PyPI", "name": "Flask", "version": "1.0"}\n')


def match_ids(state: Path) -> list[list[str]]:
    code, out, err = hostguard(state, "match", "--packages", "-", stdin=ASK)
    assert (code, err) == (0, "")
    return [json.loads(line)["vulns"] for line in out.splitlines()]


def test_wanted_exports_are_the_base_ecosystems() -> None:
    assert wanted_exports(["Debian:12", "PyPI", "Debian:11", "Alpine:v3.19"], ["npm", "PyPI"]) == [
        "Alpine", "Debian", "PyPI", "npm"]
    with pytest.raises(ValueError, match="not an OSV ecosystem"):
        wanted_exports(["../etc"])


def test_update_fetches_each_base_export_and_match_uses_it(tmp_path: Path, server: Server) -> None:
    state = tmp_path / "state"
    code, out, err = hostguard(state, "update", "--ecosystem", "Debian:12", "--ecosystem", "PyPI",
                               "--ecosystem", "Debian:11", "--mirror", server.url, "--format", "json")
    assert (code, err) == (0, "")
    assert sorted(server.requests) == ["/Debian/all.zip", "/PyPI/all.zip"]
    summary = json.loads(out)
    assert (summary["fetched"], summary["records"], summary["packages"]) == (["Debian", "PyPI"], 3, 3)
    assert (state / "osv" / "Debian" / "all.zip").read_bytes() == server.routes["/Debian/all.zip"][1]
    assert sorted(p.name for p in (state / "osv" / "Debian").iterdir()) == ["all.zip"]
    assert match_ids(state) == [["CVE-2099-1", "DSA-T-1"], ["PYSEC-T-3"]]

    server.routes["/PyPI/all.zip"] = (200, zip_of(PY, PY_NEW), {})  # a newer export
    code, out, _ = hostguard(state, "update", "--ecosystem", "PyPI", "--mirror", server.url)
    assert code == 0 and out.startswith("fetched PyPI; advisory index: 4 records for 3 packages")
    assert match_ids(state) == [["CVE-2099-1", "DSA-T-1"], ["PYSEC-T-3", "PYSEC-T-4"]]


def _route_answers(server: Server, case: str) -> None:
    good = zip_of(PY, PY_NEW)
    if case == "http_500":
        server.routes["/PyPI/all.zip"] = (500, b"oops", {})
    elif case == "not_found":
        del server.routes["/PyPI/all.zip"]
    elif case == "garbage":
        server.routes["/PyPI/all.zip"] = (200, b"<html>captive portal</html>", {})
    elif case == "truncated":  # a Content-Length the body never reaches: the connection closes early
        server.routes["/PyPI/all.zip"] = (200, good[: len(good) // 2], {"Content-Length": str(len(good))})
    elif case == "cut_archive":  # a whole answer, but half an archive
        server.routes["/PyPI/all.zip"] = (200, good[: len(good) // 2], {})
    elif case == "bad_crc":
        damaged = bytearray(good)
        at = good.index(b"PK\x03\x04") + 30 + len("PYSEC-T-3.json") + 5  # inside the first member's data
        damaged[at] ^= 0xFF
        server.routes["/PyPI/all.zip"] = (200, bytes(damaged), {})


REASONS = {"http_500": "HTTP 500", "not_found": "HTTP 404", "garbage": "not a zip archive", "truncated": "cut short: ",
           "cut_archive": "not a zip archive", "bad_crc": "damaged zip archive", "refused": "Connection refused"}


@pytest.mark.parametrize("case", ["http_500", "not_found", "garbage", "truncated", "cut_archive", "bad_crc", "refused"])
def test_a_failed_update_is_one_line_exit_2_and_keeps_the_old_copy(tmp_path: Path, server: Server, case: str) -> None:
    state = tmp_path / "state"
    assert hostguard(state, "update", "--ecosystem", "Debian:12", "--ecosystem", "PyPI", "--mirror", server.url)[0] == 0
    before = {p: p.read_bytes() for p in (state / "osv").rglob("*") if p.is_file()}
    index_before = (state / "cache" / "advisories.db").stat().st_mtime_ns
    # Debian answers well this time, PyPI does not: nothing may be replaced, not even Debian's
    server.routes["/Debian/all.zip"] = (200, zip_of(DEB), {})
    _route_answers(server, case)
    mirror = "http://127.0.0.1:9" if case == "refused" else server.url  # the discard port: nothing listens
    code, out, err = hostguard(state, "update", "--ecosystem", "Debian:12", "--ecosystem", "PyPI", "--mirror", mirror)
    assert (code, out, err.count("\n")) == (2, "", 1)
    assert err.startswith(f"hostguard: error: vulns update: {mirror}/{'Debian' if case == 'refused' else 'PyPI'}/all.zip: ")
    assert REASONS[case] in err, err
    assert "the advisories already here were kept" in err
    assert {p: p.read_bytes() for p in (state / "osv").rglob("*") if p.is_file()} == before  # no temporary left
    assert (state / "cache" / "advisories.db").stat().st_mtime_ns == index_before
    assert match_ids(state) == [["CVE-2099-1", "DSA-T-1"], ["PYSEC-T-3"]]


def test_a_server_that_does_not_answer_times_out(tmp_path: Path, server: Server) -> None:
    server.delay = 2.0
    with pytest.raises(DownloadError, match=r"PyPI/all.zip: no answer within"):
        fetch(["PyPI"], tmp_path, server.url, timeout=0.3)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_update_from_a_local_copy_rebuilds_the_index(tmp_path: Path) -> None:
    state, source = tmp_path / "state", tmp_path / "osv"
    write_dir(source, "PyPI", PY)
    code, out, err = hostguard(state, "update", "--db", str(source))
    assert (code, err) == (0, "") and "advisory index: 1 records for 1 packages" in out
    write_dir(source, "Debian", DEB)
    assert hostguard(state, "update", "--db", str(source), "--format", "json")[1].count('"records": 2') == 1
    code, out, err = hostguard(state, "match", "--db", str(source), "--packages", "-", stdin=ASK)
    assert code == 0 and [json.loads(line)["vulns"] for line in out.splitlines()] == [
        ["CVE-2099-1", "DSA-T-1"], ["PYSEC-T-3"]]


@pytest.mark.parametrize(("args", "message"), [
    # no --ecosystem: the host's inventory names them (this Debian machine: Debian), fetched from the mirror
    # given (nothing listens on port 1 of loopback: no test ever reaches osv.dev)
    (("--mirror", "http://127.0.0.1:1"), "http://127.0.0.1:1/Debian/all.zip"),
    (("--db", "x", "--ecosystem", "PyPI"), "give one of them"),
    (("--ecosystem", ".hidden"), "not an OSV ecosystem name"),
    (("--db", "/nonexistent/osv"), "/nonexistent/osv: no such file or directory"),
])
def test_update_usage_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    code, out, err = hostguard(tmp_path / "state", "update", *args)
    assert (code, out, err.count("\n")) == (2, "", 1)
    assert message in err


def test_match_without_db_before_any_update(tmp_path: Path) -> None:
    code, _, err = hostguard(tmp_path / "state", "match", "--packages", "-", stdin=ASK)
    assert code == 2 and err.count("\n") == 1 and "run `hostguard vulns update" in err
