"""``hostguard waf enable|disable|ingest --server nginx|apache`` with the real servers (``-m waf_server``,
``make test-waf``).

* On a copy of this machine's stock Debian configuration: enable writes what ``nginx -t`` /
  ``apache2ctl configtest`` accept (run on the tree in a private mount namespace), a second enable changes
  nothing, disable leaves every file, link and mode exactly as before; a configuration the server refuses
  is rolled back by itself; what cannot be done is one line and exit 2.
* Real nginx (libmodsecurity3) and real Apache (mod_security2 2.9) in front of a real PHP-FPM application on
  loopback: before enable an attack reaches the application; after it the attack is refused (403) and an
  ordinary request is served by PHP; the issue-14 corpora run through both, with floors per category
  (what reaches the application is "passed"; anything else, the WAF's 403/400 or the server's own refusal, is
  "blocked"); the audit log the server wrote becomes WAF events (``waf ingest``, ``waf report``) naming the
  rules that matched; disable restores the tree byte for byte and the attack reaches the application again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.waf.ruleset import EXCLUSION_PACKAGES
from tests.conftest import need_tool
from tests.waf.corpus import Case, load_cases, render, send_raw
from tests.waf.servers import (
    APP_MARK,
    SBIN,
    Server,
    apache_site_tree,
    free_port,
    need_server,
    nginx_site_tree,
    php_fpm,
    scratch,
    snapshot,
    stock_tree,
)

pytestmark = pytest.mark.waf_server
ROOT = Path(__file__).resolve().parents[2]
ATTACK = "/search?q=1%27%20union%20select%20password%20from%20users--"
BENIGN = "/search?q=green+tea&page=2"
# Floors for the corpora through the real servers (measured: see the module's printed figures); below them is
# a regression. Apache refuses URLs with encoded slashes itself (404 before ModSecurity's phase 2) and
# mod_security2 fails a body its XML parser rejects with 500: both keep the attack from the application.
FLOORS = {
    "nginx": {"attacks": 0.94, "benign": 0.96, "category": 0.80},
    "apache": {"attacks": 0.94, "benign": 0.95, "category": 0.80},
}


DOCUMENT_CASES = {"benign-code-form-001", "benign-code-form-002", "benign-code-form-007", "benign-code-form-010",
                  "benign-prose-form-006", "benign-prose-form-015", "benign-prose-body-001"}


def hostguard(state: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess (as an owner runs it), on this worktree's sources."""
    cmd = [sys.executable, "-m", "hostguard.cli", *(["--config", str(config)] if config else []),
           "--state", str(state), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def get(port: int, target: str) -> tuple[int, bool]:
    """Status of a GET and whether the application served it."""
    status, raw = send_raw(f"GET {target} HTTP/1.1\r\nHost: shop.example.test\r\nUser-Agent: Mozilla/5.0\r\n"
                           "Accept: */*\r\nConnection: close\r\n\r\n".encode(), "127.0.0.1", port)
    return status, APP_MARK in raw


# -- stock configurations (configuration tests only) --------------------------------------------------------

@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    with scratch("hg-wafsrv-") as d:
        yield d


@pytest.mark.parametrize("kind", ["nginx", "apache"])
def test_enable_then_disable_leaves_the_stock_configuration_byte_identical(scratch_dir: Path, kind: str) -> None:
    need_server(kind)
    tree = stock_tree(scratch_dir / "host", kind)
    state = scratch_dir / "state"
    before = snapshot(tree)
    done = hostguard(state, "waf", "enable", "--server", kind, "--root", str(tree))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepts it" in done.stdout and "enabled:" in done.stdout
    after = snapshot(tree)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if kind == "nginx":   # Debian's nginx.conf includes conf.d/*.conf in http: a drop-in, nginx.conf untouched
        assert changed == ["etc/logrotate.d/hostguard-waf", "etc/nginx/conf.d/hostguard-waf.conf",
                           "etc/nginx/hostguard-modsecurity.conf"]
        # libmodsecurity3 never reopens its audit log: hostguard rotates it by copy and truncation, in a file
        # logrotate itself accepts (its debug mode reads and checks, changes nothing)
        rotate = tree / "etc/logrotate.d/hostguard-waf"
        assert "copytruncate" in rotate.read_text()
        need_tool("logrotate")
        checked = subprocess.run([shutil.which("logrotate", path=SBIN) or "logrotate", "-d", str(rotate)],
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0 and "error" not in checked.stderr.lower(), checked.stderr
        drop_in = (tree / "etc/nginx/conf.d/hostguard-waf.conf").read_text()
        assert "modsecurity on;\nmodsecurity_rules_file /etc/nginx/hostguard-modsecurity.conf;\n" in drop_in
        rules = (tree / "etc/nginx/hostguard-modsecurity.conf").read_text()
        assert 'Include "/usr/share/modsecurity-crs/rules/REQUEST-949-BLOCKING-EVALUATION.conf"' in rules
        assert "IncludeOptional" not in rules and "STREAM_INPUT_BODY" not in rules
    else:   # Debian's security2.conf loads /etc/modsecurity/*.conf, then CRS: CRS is never included again, and
        # hostguard's changes to CRS rules go in conf-enabled/, which apache2.conf reads after the modules
        assert changed == ["etc/apache2/conf-enabled/hostguard-waf-crs.conf", "etc/modsecurity/modsecurity.conf"]
        after_crs = (tree / "etc/apache2/conf-enabled/hostguard-waf-crs.conf").read_text()
        assert "932100" in after_crs and "SecRuleRemoveById 920120" in after_crs
        rules = (tree / "etc/modsecurity/modsecurity.conf").read_text()
        assert not re.search(r"(?m)^SecRuleRemoveById", rules)
        assert not re.search(r"(?m)^\s*Include .*modsecurity-crs/rules", rules) and "900990" not in rules
        assert "SecStreamInBodyInspection On" in rules and "STREAM_INPUT_BODY" in rules
    assert "id:20601" in rules and "SecAuditLogFormat JSON" in rules
    again = hostguard(state, "waf", "enable", "--server", kind, "--root", str(tree))
    assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout + again.stderr
    listed = hostguard(state, "fix", "--list")
    assert f"waf.enable.{kind}" in listed.stdout and "applied" in listed.stdout
    edited = tree / ("etc/nginx/hostguard-modsecurity.conf" if kind == "nginx" else "etc/modsecurity/modsecurity.conf")
    ours = edited.read_bytes()
    edited.write_bytes(ours + b"# the owner's line\n")
    refused = hostguard(state, "waf", "disable", "--server", kind, "--root", str(tree))
    assert refused.returncode == 2 and "changed since hostguard enabled" in refused.stderr, refused.stderr
    assert edited.read_bytes() == ours + b"# the owner's line\n"   # nothing touched
    edited.write_bytes(ours)
    done = hostguard(state, "waf", "disable", "--server", kind, "--root", str(tree))
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(tree) == before
    assert "undone" in hostguard(state, "fix", "--list").stdout
    nothing = hostguard(state, "waf", "disable", "--server", kind, "--root", str(tree))
    assert nothing.returncode == 0 and "nothing to disable" in nothing.stdout


def test_a_configuration_the_server_refuses_is_rolled_back(scratch_dir: Path) -> None:
    """Near miss of a working enable: [waf] crs_dir names a directory whose rule file nginx refuses (the same
    absolute path in the tree, where hostguard lists it, and here, where nginx -t reads it): exit 1, the
    server's reason said, every file as before, the record rolled back."""
    need_server("nginx")
    tree = stock_tree(scratch_dir / "host", "nginx")
    crs = scratch_dir / "crs"
    crs.mkdir()
    (crs / "REQUEST-901-INITIALIZATION.conf").write_text('SecRule ARGS "@rx x" "id:1,phase:2,nosuchaction"\n')
    shutil.copytree(crs, tree / str(crs).lstrip("/"))
    config = scratch_dir / "hostguard.toml"
    config.write_text(f'[waf]\ncrs_dir = "{crs}"\n')
    before = snapshot(tree)
    done = hostguard(scratch_dir / "state", "waf", "enable", "--server", "nginx", "--root", str(tree), config=config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "rejects it" in done.stdout and "nosuchaction" in done.stdout and "not enabled" in done.stdout
    assert snapshot(tree) == before
    assert "rolled back" in hostguard(scratch_dir / "state", "fix", "--list").stdout


def test_what_cannot_be_done_is_one_line_and_exit_2(scratch_dir: Path) -> None:
    need_server("nginx")
    tree = stock_tree(scratch_dir / "host", "nginx")
    state = scratch_dir / "state"
    before = snapshot(tree)
    (tree / "usr/lib/nginx/modules/ngx_http_modsecurity_module.so").unlink()
    cases = [
        (("waf", "enable", "--server", "nginx", "--root", str(tree)), "apt-get install libnginx-mod-http-modsecurity"),
        (("waf", "enable", "--server", "apache", "--root", str(tree)), "Apache is not installed"),
        (("waf", "enable", "--server", "iis", "--root", str(tree)), "invalid choice"),
        (("waf", "ingest", "--server", "nginx", "--log", str(scratch_dir / "none.log")), "no such file"),
        (("waf", "enable", "--server", "nginx", "--root", str(scratch_dir / "nowhere")), "no such directory"),
    ]
    for args, words in cases:
        done = hostguard(state, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    shutil.copy2("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so",
                 tree / "usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
    unknown = hostguard(state, "waf", "enable", "--server", "nginx", "--site", "shop.example.test", "--root", str(tree))
    assert unknown.returncode == 2 and "no nginx server block has server_name shop.example.test" in unknown.stderr
    own = tree / "etc/nginx/conf.d/own-modsecurity.conf"
    own.write_text("modsecurity on;\n")
    refused = hostguard(state, "waf", "enable", "--server", "nginx", "--root", str(tree))
    assert refused.returncode == 2 and "already runs ModSecurity set up by hand" in refused.stderr
    own.unlink()
    assert snapshot(tree) == before


def test_apache_site_only_turns_the_engine_on_in_that_virtual_host(scratch_dir: Path) -> None:
    need_server("apache")
    tree = stock_tree(scratch_dir / "host", "apache")
    site = tree / "etc/apache2/sites-available/shop.conf"
    site.write_text("<VirtualHost *:80>\n\tServerName shop.example.test\n\tServerAlias *.shop.example.test\n"
                    "\tDocumentRoot /var/www/html\n</VirtualHost>\n")
    (tree / "etc/apache2/sites-enabled/shop.conf").symlink_to("../sites-available/shop.conf")
    before = snapshot(tree)
    state = scratch_dir / "state"
    links = [tree / f"etc/apache2/mods-enabled/security2.{ext}" for ext in ("load", "conf")]
    targets = [os.readlink(link) for link in links]
    for link in links:
        link.unlink()
    off = hostguard(state, "waf", "enable", "--server", "apache", "--root", str(tree))
    assert off.returncode == 2 and "a2enmod security2" in off.stderr, off.stderr
    for link, target in zip(links, targets, strict=True):
        link.symlink_to(target)
    done = hostguard(state, "waf", "enable", "--server", "apache", "--site", "www.shop.example.test", "--root", str(tree))
    assert done.returncode == 0, done.stdout + done.stderr
    assert site.read_text() == ("<VirtualHost *:80>\n\t# hostguard waf --site www.shop.example.test: ModSecurity on for "
                                "this site\n\t<IfModule security2_module>\n\t    SecRuleEngine On\n\t</IfModule>\n"
                                "\tServerName shop.example.test\n\tServerAlias *.shop.example.test\n"
                                "\tDocumentRoot /var/www/html\n</VirtualHost>\n")
    assert (tree / "etc/apache2/sites-enabled/shop.conf").is_symlink()   # written where the link points
    assert "\nSecRuleEngine Off\n" in (tree / "etc/modsecurity/modsecurity.conf").read_text()
    assert hostguard(state, "waf", "disable", "--server", "apache", "--root", str(tree)).returncode == 0
    assert snapshot(tree) == before


# -- real servers in front of PHP-FPM ------------------------------------------------------------------------

def _corpus(port: int) -> dict[str, tuple[Case, bool, int]]:
    """Every corpus case not labelled with an application package (those need [waf] applications): whether the
    application served it, and the status."""
    out = {}
    for case in load_cases():
        if case.app in EXCLUSION_PACKAGES:
            continue
        status, raw = send_raw(render(case, "shop.example.test"), "127.0.0.1", port, timeout=15)
        out[case.id] = (case, APP_MARK in raw, status)
    return out


def _rates(results: dict[str, tuple[Case, bool, int]]) -> tuple[float, float, dict[str, float]]:
    attacks = [not served for c, served, _ in results.values() if c.kind == "attack"]
    benign = [served for c, served, _ in results.values() if c.kind == "benign"]
    per: dict[str, list[bool]] = {}
    for c, served, _ in results.values():
        if c.kind == "attack":
            per.setdefault(c.category, []).append(not served)
    return (sum(attacks) / len(attacks), sum(benign) / len(benign),
            {k: sum(v) / len(v) for k, v in sorted(per.items())})


@pytest.mark.parametrize("kind", ["nginx", "apache"])
def test_real_server_refuses_attacks_serves_php_runs_the_corpus_and_logs_events(kind: str) -> None:
    need_server(kind)
    with _site_server(kind, f"hg-wafsrv-{kind}-") as (base, tree, server):
        _round_trip(kind, tree, base / "state", server)


@contextlib.contextmanager
def _site_server(kind: str, prefix: str) -> Iterator[tuple[Path, Path, Server]]:
    """A running nginx or Apache from a host tree of its own in front of a PHP-FPM site (scratch directory,
    tree, server), stopped afterwards."""
    with scratch(prefix) as base, php_fpm(base / "fpm") as fpm:
        tree, run, port = base / "host", base / "run", free_port()
        run.mkdir()
        if kind == "nginx":
            nginx_site_tree(tree, run, fpm, port)
        else:
            apache_site_tree(tree, fpm, port)
        server = Server(kind, tree, base / "logs", port, run)
        server.start()
        try:
            yield base, tree, server
        finally:
            server.stop()


def _round_trip(kind: str, tree: Path, state: Path, server: Server) -> None:
    port = server.port
    assert get(port, BENIGN) == (200, True), server.output()
    assert get(port, ATTACK)[1], "without the WAF the attack reaches the application"
    before = snapshot(tree)
    site = ["--site", "shop.example.test"] if kind == "nginx" else []
    done = hostguard(state, "waf", "enable", "--server", kind, *site, "--root", str(tree))
    assert done.returncode == 0, done.stdout + done.stderr
    if kind == "nginx":   # inserted into the server block, in the file the sites-enabled link points to
        text = (tree / "etc/nginx/sites-available/shop").read_text()
        assert text.startswith("server {\n    modsecurity on;  # hostguard waf\n    modsecurity_rules_file "
                               "/etc/nginx/hostguard-modsecurity.conf;  # hostguard waf\n    listen 127.0.0.1:")
        assert (tree / "etc/nginx/sites-enabled/shop").is_symlink()
        mixed = hostguard(state, "waf", "enable", "--server", kind, "--root", str(tree))
        assert mixed.returncode == 2 and "ModSecurity is on for single sites" in mixed.stderr, mixed.stderr
    server.restart()
    assert get(port, ATTACK) == (403, False), server.output()
    assert get(port, BENIGN) == (200, True), server.output()

    results = _corpus(port)
    attacks, benign, per = _rates(results)
    statuses = Counter(s for _, served, s in results.values() if not served)
    print(f"\n{kind}: attacks blocked {attacks:.3f}, benign served {benign:.3f}; not served by status: "
          f"{dict(sorted(statuses.items()))}")
    for category, rate in per.items():
        print(f"  {category:<16} {rate:.3f}")
    misses = [f"{c.id} ({s})" for c, served, s in results.values() if served == (c.kind == "attack")]
    print("  benign not served: " + ", ".join(m for m in misses if m.startswith("benign")))
    # documents in content fields pass in both engines (mod_security2 errs on a regex past its PCRE match
    # limit, which a narrowed rule's negated check counts as a match)
    assert not [m for m in misses if m.split()[0] in DOCUMENT_CASES], misses
    floors = FLOORS[kind]
    assert attacks >= floors["attacks"], misses
    assert benign >= floors["benign"], misses
    low = {k: r for k, r in per.items() if r < floors["category"]}
    assert not low, (low, misses)

    ingested = hostguard(state, "waf", "ingest", "--server", kind, "--log", str(server.audit_log))
    assert ingested.returncode == 0, ingested.stderr
    added = int(ingested.stdout.split()[0])
    assert added >= sum(not served for c, served, _ in results.values() if c.kind == "attack") * 0.9, ingested.stdout
    report = hostguard(state, "waf", "report", "--format", "json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["events"] == added and data["actions"]["blocked"] > 0
    assert data["sites"].get("shop.example.test", 0) > 0.9 * added
    rule_ids = {r["id"] for r in data["rules"]}
    assert {949110, 942100}.issubset(rule_ids), rule_ids      # CRS decided, libinjection found the SQL
    assert any(20000 <= i < 30000 for i in rule_ids), rule_ids   # hostguard's own rules ran in this engine
    again = hostguard(state, "waf", "ingest", "--server", kind, "--log", str(server.audit_log))
    assert again.stdout.startswith("0 events"), again.stdout   # read once: the offset is kept

    done = hostguard(state, "waf", "disable", "--server", kind, "--root", str(tree))
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(tree) == before
    server.restart()
    assert get(port, ATTACK)[1], "after disable the attack reaches the application again"


def _until(check: object, seconds: float = 15.0) -> bool:
    """Whether ``check()`` becomes true within ``seconds`` (a graceful reload takes its workers a moment)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():   # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("kind", ["nginx", "apache"])
def test_live_enable_validates_and_reloads_the_running_server(kind: str) -> None:
    """Without --root, from inside the server's mount namespace (where the tree is /etc and the server runs
    with its pid file where Debian has it, no systemd): the server's own test, then its own reload (`nginx -s
    reload`, `apache2ctl graceful`): the running server refuses the attack without a restart; disable reloads
    it back, and the files are as before."""
    need_server(kind)
    need_tool("nsenter")
    with _site_server(kind, f"hg-wafsrv-live-{kind}-") as (base, tree, server):
        port = server.port
        before = snapshot(tree)
        assert get(port, ATTACK)[1]
        cli = [sys.executable, "-m", "hostguard.cli", "--state", str(base / "state"), "waf"]
        done = server.inside([*cli, "enable", "--server", kind])
        assert done.returncode == 0, done.stdout + done.stderr
        reload = "nginx -s reload" if kind == "nginx" else "apache2ctl graceful"
        assert f"reloaded: {reload}" in done.stdout and "accepts the configuration" in done.stdout, done.stdout
        assert _until(lambda: get(port, ATTACK) == (403, False)), server.output()
        assert get(port, BENIGN) == (200, True)
        report = server.inside([*cli, "report", "--format", "json"])   # reads the enabled server's audit log
        assert report.returncode == 0, report.stderr
        data = json.loads(report.stdout)
        assert data["actions"].get("blocked", 0) >= 1 and 949110 in {r["id"] for r in data["rules"]}, data
        done = server.inside([*cli, "disable", "--server", kind])
        assert done.returncode == 0 and f"reloaded: {reload}" in done.stdout, done.stdout + done.stderr
        assert _until(lambda: get(port, ATTACK)[1]), server.output()
        assert snapshot(tree) == before
