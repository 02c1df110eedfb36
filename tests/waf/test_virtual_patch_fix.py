"""A virtual patch from the vulnerability scan to a refused request, as an owner goes through it.

The fixture host (tests/fixtures/waf/vpatch-host) runs a Drupal 8.5.0 shop installed with Composer, PHPUnit
5.6.2 among its dev packages, and a hostguard config of its own. Against a small OSV copy written here:
``vulns scan --root`` offers the two patches that cover it, ``fix`` enables one (the config file edited, a
backup kept), the WAF that system starts from that file (``hostguard waf proxy``, and the WSGI middleware)
then refuses the exploit on loopback before the application sees it while the shop's ordinary requests pass,
and ``fix --undo`` puts the config back byte for byte. A shop at the fixed versions gets no offer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hostguard.cli import main
from hostguard.config import load
from hostguard.engine.registry import default_registry
from hostguard.waf import vpatch
from hostguard.waf.config import WafConfig
from hostguard.waf.gate import Gate
from tests.checks.test_vulns import _vpatch_tree
from tests.vulns.osv_helpers import affected, record, rng, write_dir
from tests.waf.test_engine import _need_library
from tests.waf.test_middleware import send, serve_wsgi

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "etc/hostguard/hostguard.toml"
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"

# the exploit (Drupalgeddon 2 against Drupal 8's registration form) and the shop's ordinary requests
EXPLOIT = ("POST", "/user/register?element_parents=account/mail/%23value&ajax_form=1&_wrapper_format=drupal_ajax",
           b"form_id=user_register_form&_drupal_ajax=1&mail%5B%23post_render%5D%5B%5D=exec"
           b"&mail%5B%23type%5D=markup&mail%5B%23markup%5D=id")
ORDINARY = [
    ("GET", "/", None),
    ("GET", "/search/node?keys=%23sale", None),
    ("POST", "/user/login", b"name=alice&pass=correct+horse&form_id=user_login_form&op=Log+in"),
    ("POST", "/node/add/product", b"title=Summer+sale+%2342&body%5B0%5D%5Bvalue%5D=Colours+%23ff8800&form_id="
                                  b"node_product_form&op=Save"),
]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _hg(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "hostguard.cli", "--config", str(tmp_path / "scan.toml"), "--state",
                           str(tmp_path / "state"), *args], capture_output=True, text=True, env=env, timeout=300)


def _shop(tmp_path: Path, drupal: str = "8.5.0", phpunit: str = "5.6.2") -> Path:
    """The fixture host at the versions given, an OSV copy (both CVEs, as GitHub's records name them) and the
    scanning side's config."""
    tree = _vpatch_tree(tmp_path, drupal, phpunit)
    db = tmp_path / "osv"
    write_dir(db, "Packagist",
              record("GHSA-test-dr01", affected("Packagist", "drupal/core", rng(("introduced", "8.0.0"), ("fixed", "8.3.9")),
                                                rng(("introduced", "8.5.0"), ("fixed", "8.5.1"))),
                     aliases=("CVE-2018-7600",), severity=[{"type": "CVSS_V3", "score": CRITICAL}]),
              record("GHSA-test-pu01", affected("Packagist", "phpunit/phpunit",
                                                rng(("introduced", "5.0.10"), ("fixed", "5.6.3"))),
                     aliases=("CVE-2017-9841",), severity=[{"type": "CVSS_V3", "score": CRITICAL}]))
    (tmp_path / "scan.toml").write_text(f'[vulns]\ndb = "{db}"\npaths = ["/srv"]\n')
    return tree


def _scan(tmp_path: Path, tree: Path) -> tuple[int, dict[str, Any]]:
    done = _hg(tmp_path, "vulns", "scan", "--root", str(tree), "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _findings(data: dict[str, Any], check: str) -> dict[str, dict[str, Any]]:
    key = "patch" if check == "vulns.virtual_patch" else "name"
    return {(f["evidence"][key] if key == "patch" else f["target"]["name"]): f for f in data["findings"]
            if f["id"] == check}


def _tree_waf(tree: Path) -> WafConfig:
    """The [waf] the tree's hostguard reads from its own config file."""
    return load(str(tree / CONFIG), default_registry().schema())[WafConfig]


# -- the application and the WAF in front of it -----------------------------------------------------------

class _Shop(BaseHTTPRequestHandler):
    seen: list[str] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append(f"{self.command} {self.path}")
        body = b"shop\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _application() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []
    handler = type("Shop", (_Shop,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _proxy(tmp_path: Path, tree: Path, upstream: int) -> Iterator[int]:
    """``hostguard waf proxy`` as that system would start it: from the tree's own config file."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "hostguard.cli", "--config", str(tree / CONFIG), "--state",
                             str(tmp_path / "proxy-state"), "waf", "proxy", "--listen", "127.0.0.1:0", "--upstream",
                             f"http://127.0.0.1:{upstream}"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        assert found, line + (proc.stderr.read() if proc.poll() is not None else "")
        yield int(found[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _request(port: int, method: str, target: str, body: bytes | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        headers = {"Host": "shop.example.test", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                   "Accept": "text/html", **(FORM if body is not None else {})}
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# -- the tests ------------------------------------------------------------------------------------------------

def test_scan_offers_fix_enables_the_waf_refuses_undo_restores(tmp_path: Path) -> None:
    _need_library()
    tree = _shop(tmp_path)
    original = (tree / CONFIG).read_bytes()

    # 1. the scan: the vulnerable package, and the offers of the patches that cover what is installed
    code, data = _scan(tmp_path, tree)
    assert code == 1
    offers = _findings(data, "vulns.virtual_patch")
    assert set(offers) == {"drupal-form-api-rce", "phpunit-eval-stdin"}
    drupal_offer = offers["drupal-form-api-rce"]
    assert drupal_offer["evidence"]["reported_by"] == ["CVE-2018-7600"]
    [step] = drupal_offer["remediation"]["steps"]
    assert (step["kind"], step["path"], step["line"], step["old"]) == ("edit", "/" + CONFIG, 2, "[waf]")
    fingerprint = drupal_offer["fingerprint"]
    package = _findings(data, "vulns.package")["drupal/core"]
    assert package["evidence"]["virtual_patches"][0]["enabled"] is False
    assert f"hostguard fix {fingerprint[:12]}" in package["remediation"]["summary"]
    assert [s["action"] for s in package["remediation"]["steps"]] == ["upgrade"]
    text = _hg(tmp_path, "vulns", "scan", "--root", str(tree)).stdout
    assert f"virtual patch drupal-form-api-rce: not enabled; enable it with hostguard fix {fingerprint[:12]}" in text
    # the WAF this config makes today lets the exploit through: CRS alone does not know it
    gate = Gate(_tree_waf(tree), None)
    try:
        method, target, body = EXPLOIT
        headers = [("Host", "shop.example.test"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
                   ("Accept", "text/html"), ("Content-Type", FORM["Content-Type"]), ("Content-Length", str(len(body)))]
        assert not gate.decide(method, target, headers, body, "127.0.0.1").blocked
    finally:
        gate.close()

    # 2. the fix: one line added to the tree's config, backed up, validated by hostguard's own loader
    fixed = _hg(tmp_path, "fix", "--root", str(tree), "--only", "vulns", "--yes", fingerprint[:12])
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert '+virtual_patches = ["drupal-form-api-rce"]' in fixed.stdout and "hostguard reads it" in fixed.stdout
    fix_id = re.search(r"undo with: hostguard fix --undo (\S+)", fixed.stdout)[1]  # type: ignore[index]
    lines = original.decode().splitlines(keepends=True)
    assert (tree / CONFIG).read_text() == "".join(lines[:2] + ['virtual_patches = ["drupal-form-api-rce"]\n'] + lines[2:])
    manifest = json.loads((tmp_path / "state/fixes" / fix_id / "manifest.json").read_text())
    [saved] = manifest["files"]
    assert saved["path"] == "/" + CONFIG
    assert (tmp_path / "state/fixes" / fix_id / saved["backup"]).read_bytes() == original

    # 3. the scan again: virtually patched until the upgrade; the other offer now extends the list
    _, data = _scan(tmp_path, tree)
    offers = _findings(data, "vulns.virtual_patch")
    assert set(offers) == {"phpunit-eval-stdin"}
    [step] = offers["phpunit-eval-stdin"]["remediation"]["steps"]
    assert step["new"] == 'virtual_patches = ["drupal-form-api-rce", "phpunit-eval-stdin"]'
    package = _findings(data, "vulns.package")["drupal/core"]
    assert package["title"].endswith("(virtually patched: drupal-form-api-rce)")
    assert "Virtually patched until you upgrade" in package["remediation"]["summary"]
    assert [s["action"] for s in package["remediation"]["steps"]] == ["upgrade"]
    assert [(p["id"], p["enabled"]) for p in data["virtual_patches"]] == [("drupal-form-api-rce", True),
                                                                          ("phpunit-eval-stdin", False)]

    # 4. the WAF that system starts from its config: the proxy on loopback in front of the shop
    with _application() as (app_port, seen), _proxy(tmp_path, tree, app_port) as port:
        assert _request(port, *EXPLOIT) == 403
        assert not [s for s in seen if "register" in s]   # never reached the shop
        for method, target, body in ORDINARY:
            assert _request(port, method, target, body) == 200, target
        assert len(seen) == len(ORDINARY)
    events = [json.loads(line) for line in (tmp_path / "proxy-state/waf-events.jsonl").read_text().splitlines()]
    assert [(e["action"], [r["id"] for r in e["rules"]]) for e in events] == [("blocked", [21020])]
    # ... and the WSGI middleware given the same [waf]
    gate = Gate(_tree_waf(tree), None)
    try:
        with serve_wsgi(gate) as backend:
            assert send(backend.port, EXPLOIT[0], EXPLOIT[1], EXPLOIT[2], FORM).status == 403
            assert send(backend.port, "POST", "/user/login", ORDINARY[2][2], FORM).status == 200
            assert backend.calls == ["/user/login"]   # the exploit never reached the application
    finally:
        gate.close()

    # 5. undo: the config byte for byte as it was, and the offer back
    undone = _hg(tmp_path, "fix", "--undo", fix_id)
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert (tree / CONFIG).read_bytes() == original
    _, data = _scan(tmp_path, tree)
    assert set(_findings(data, "vulns.virtual_patch")) == {"drupal-form-api-rce", "phpunit-eval-stdin"}


def test_a_fixed_version_gets_no_offer(tmp_path: Path) -> None:
    tree = _shop(tmp_path, drupal="8.5.1", phpunit="5.6.3")
    code, data = _scan(tmp_path, tree)
    assert code == 0 and data["findings"] == [] and data["virtual_patches"] == []
    listed = _hg(tmp_path, "waf", "patches", "--root", str(tree), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    patches = {p["id"]: p for p in json.loads(listed.stdout)["patches"]}
    assert not patches["drupal-form-api-rce"]["applies"] and not patches["phpunit-eval-stdin"]["applies"]


def test_waf_patches_lists_every_patch_enabled_and_where_it_applies(tmp_path: Path) -> None:
    tree = _shop(tmp_path)
    (tree / CONFIG).write_text('[waf]\nvirtual_patches = ["phpunit-eval-stdin"]\n')
    listed = _hg(tmp_path, "waf", "patches", "--root", str(tree), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["config"] == "/" + CONFIG and data["config_problem"] is None
    patches = {p["id"]: p for p in data["patches"]}
    assert set(patches) == set(vpatch.catalogue())
    assert [(i, p["enabled"], p["applies"]) for i, p in patches.items() if p["enabled"] or p["applies"]] == [
        ("drupal-form-api-rce", False, True), ("phpunit-eval-stdin", True, True)]
    [where] = patches["drupal-form-api-rce"]["applies_to"]
    assert where == {"ecosystem": "Packagist", "name": "drupal/core", "version": "8.5.0", "location": "/srv/shop",
                     "origin": "/srv/shop/composer.lock", "fixed": "8.5.1"}
    assert patches["nextjs-middleware-bypass"]["affected"][0].startswith("npm next >=11.1.4 <12.3.5")
    text = _hg(tmp_path, "waf", "patches", "--root", str(tree)).stdout
    assert "phpunit-eval-stdin  CVE-2017-9841  [critical]  enabled" in text
    assert "applies: drupal/core 8.5.0 in /srv/shop (Packagist, /srv/shop/composer.lock; fixed in 8.5.1)" in text
    assert "7 virtual patches, 1 enabled in /etc/hostguard/hostguard.toml; 2 apply to something installed here" in text


def test_a_malformed_patch_file_or_an_unknown_patch_is_one_line_and_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "patches"
    broken.mkdir()
    (broken / "demo-patch.toml").write_text('id = "demo-patch"\nsummary = "x"\n')
    monkeypatch.setattr(vpatch, "patch_directory", lambda: str(broken))
    vpatch.catalogue.cache_clear()
    try:
        for argv in (["waf", "patches", "--root", str(tmp_path)], ["waf", "check"]):
            assert main(["--state", str(tmp_path / "state"), *argv]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "demo-patch.toml: missing cves" in err and "Traceback" not in err, err
    finally:
        vpatch.catalogue.cache_clear()
    (tmp_path / "bad.toml").write_text('[waf]\nvirtual_patches = ["drupal-rce"]\n')
    proxy = subprocess.run([sys.executable, "-m", "hostguard.cli", "--config", str(tmp_path / "bad.toml"), "--state",
                            str(tmp_path / "state"), "waf", "proxy", "--listen", "127.0.0.1:0", "--upstream",
                            "http://127.0.0.1:9"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proxy.returncode == 2 and proxy.stderr.count("\n") == 1, proxy.stderr
    assert "no virtual patch 'drupal-rce'" in proxy.stderr
