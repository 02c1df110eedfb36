"""The HTML report: structure, grouping, counts, escaping of attacker data, and a real browser rendering it.

The page is parsed with the standard library's ``html.parser`` into a small tree, so assertions are about
elements and their text, the way a browser would see them, not about substrings of our own output. The
browser tests drive Debian's chromium headless on files in the pytest tmp dir.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from hostguard.findings import Finding, HostId, Report, Severity
from hostguard.remediation import Action, Command, DeleteLine, Edit, Param, Remediation, Write
from hostguard.report import html
from tests.conftest import need_tool
from tests.report.conftest import EXPECTED_ORDER, HOST, ITEM_BYTES, NO_RULE_ID, WEBSHELL_BYTES

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

# Planted attacker data: a file name and a title that would set document.title if they became markup.
PLANTED_PATH = "/var/www/upload/<img src=x onerror=\"document.title='pwned by img'\">.php"
PLANTED_TITLE = "Webshell </style><script>document.title='pwned by script'</script> in upload dir"
PLANTED = Finding(
    id="web.webshell", category="web", severity=Severity.CRITICAL, title=PLANTED_TITLE,
    target={"kind": "path", "path": PLANTED_PATH},
    evidence={"path": PLANTED_PATH, "owner": "www-data\" onmouseover=\"x", "match": "<?php system($_GET['c']); ?>"},
    remediation=Remediation("Quarantine the file.", (Action("quarantine", (("path", PLANTED_PATH),)),)))


@dataclass
class Node:
    """One element of the parsed page."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter() if n.tag == tag and (cls is None or cls in n.attrs.get("class", "").split())]

    def by_id(self, ident: str) -> Node:
        [found] = [n for n in self.iter() if n.attrs.get("id") == ident]
        return found


class TreeBuilder(HTMLParser):
    """Builds :class:`Node` trees; records the doctype."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> tuple[Node, str]:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root, builder.doctype


def with_planted(report: Report) -> Report:
    return Report(host=HostId(HOST.machine_id, HOST.state_uuid, "web01<b>bold</b>.example.test"),
                  started=report.started, findings=(*report.findings, PLANTED), skipped=report.skipped,
                  root=report.root, rules=report.rules)


def articles(doc: Node) -> list[Node]:
    return doc.find_all("article", "f")


def check_id(article: Node) -> str:
    [meta] = [p for p in article.find_all("p", "meta")]
    return meta.find_all("code")[0].text()


# -- structure -------------------------------------------------------------------------------------------

def test_document_head_and_csp(report: Report) -> None:
    page = html.render(report)
    doc, doctype = parse(page)
    assert doctype.lower() == "doctype html"
    [meta_csp] = [m for m in doc.find_all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"]
    policy = dict(d.strip().split(" ", 1) for d in meta_csp.attrs["content"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'none'"
    assert policy["img-src"] == "'none'"
    assert policy["base-uri"] == "'none'"
    # The only style allowed is the page's one style element, by the hash of its exact text.
    [style] = doc.find_all("style")
    digest = base64.b64encode(hashlib.sha256(style.text().encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"
    # The CSP must come before anything it governs.
    head = doc.find_all("head")[0]
    tags = [n.tag for n in head.children if isinstance(n, Node)]
    assert tags.index("meta") < tags.index("style")
    # Self-contained: nothing to fetch, nothing to run.
    for node in doc.iter():
        assert node.tag not in {"script", "img", "link", "iframe", "object", "embed"}, node.tag
        assert not any(k.startswith("on") or k in {"src", "href", "style"} for k in node.attrs), node.attrs
    [title] = doc.find_all("title")
    assert title.text() == "hostguard report: web01.example.test at 2024-05-01T12:00:00Z"


def test_header_host_time_coverage_counts(report: Report) -> None:
    doc, _ = parse(html.render(report, suppressed=2, accepted=1))
    [header] = doc.find_all("header")
    [facts] = header.find_all("dl")
    pairs = dict(zip((n.text() for n in facts.find_all("dt")), (n.text() for n in facts.find_all("dd")), strict=True))
    assert pairs["host"] == "web01.example.test"
    assert pairs["host id"] == HOST.id
    assert pairs["scan started"] == "2024-05-01T12:00:00Z"
    assert pairs["tree"] == "/mnt/image"
    assert pairs["coverage"].startswith("INCOMPLETE")
    assert pairs["findings"] == ("6 findings: 1 critical, 2 high, 1 medium, 1 low, 1 info "
                                 "Not shown: 2 suppressed by [[suppress.rules]], 1 accepted "
                                 "(hostguard accepted lists them).")


def test_not_checked_comes_first_with_reasons(report: Report) -> None:
    doc, _ = parse(html.render(report))
    body = doc.find_all("body")[0]
    order = [n.attrs.get("id") or n.tag for n in body.children if isinstance(n, Node) and n.tag in
             {"header", "section", "main"}]
    assert order == ["header", "not-checked", "main"]
    rows = doc.by_id("not-checked").find_all("tr")[1:]
    cells = [[td.text() for td in row.find_all("td")] for row in rows]
    assert cells == [
        ["firewall.service_reachable", "firewall", "tool_missing", "nft is not installed"],
        [r"accounts.ssh_key_unusual/home/caf\xe9/.ssh/authorized_keys", "accounts", "error",
         r"open /home/caf\xe9/.ssh/authorized_keys: Permission denied"]]
    assert ITEM_BYTES.decode("latin-1") not in doc.text()  # the non-UTF-8 byte is escaped, not guessed


def test_findings_grouped_by_severity_most_urgent_first(report: Report) -> None:
    doc, _ = parse(html.render(report))
    main = doc.find_all("main")[0]
    groups = main.find_all("section", "group")
    assert [g.find_all("h2")[0].text() for g in groups] == ["Critical (1)", "High (2)", "Medium (1)", "Low (1)",
                                                           "Info (1)"]
    assert [check_id(a) for a in articles(main)] == EXPECTED_ORDER
    for group in groups:
        sev = group.find_all("h2")[0].text().split()[0].lower()
        for article in articles(group):
            assert f"sev-{sev}" in article.attrs["class"].split()
            assert article.find_all("span", "badge")[0].text() == sev


def test_finding_title_target_evidence(report: Report) -> None:
    doc, _ = parse(html.render(report))
    [shell] = [a for a in articles(doc) if check_id(a) == "files.suspicious_script"]
    assert shell.find_all("h3")[0].text() == "mediumPHP file that evaluates request data"
    meta = shell.find_all("p", "meta")[0].text()
    assert r"path /srv/www/\xff.php" in meta
    evidence = shell.find_all("dl", "kv")[0]
    keys = [dt.text() for dt in evidence.find_all("dt")]
    assert keys == ["path", "excerpt", "size"]
    values = [dd.text() for dd in evidence.find_all("dd")]
    assert values[0] == r"/srv/www/\xff.php"
    assert values[1].startswith("<?php eval(base64_decode($_POST['c'])); ?>AAAA")  # shown as text
    assert f"{10_282 - html.EVIDENCE_LIMIT} more characters" in values[1]  # 10 kB cut, with a note
    assert values[2] == "10282"
    [redis] = [a for a in articles(doc) if check_id(a) == "ports.exposed_service"]
    assert "port 6379 proto=tcp address=0.0.0.0" in redis.find_all("p", "meta")[0].text()
    nested = dict(zip((n.text() for n in redis.find_all("dt")), (n.text() for n in redis.find_all("dd")), strict=True))
    assert nested["process"] == '{"name": "redis-server", "pid": 812}'


def test_fix_steps_of_every_kind_and_manual_params() -> None:
    finding = Finding(
        id="ssh.demo", category="ssh", severity=Severity.HIGH, title="every step kind",
        target={"kind": "path", "path": "/etc/ssh/sshd_config"},
        remediation=Remediation("Do all of it.", (
            Edit("/etc/ssh/sshd_config", 7, "PasswordAuthentication yes", "PasswordAuthentication no"),
            DeleteLine("/etc/ld.so.preload", 1, "/tmp/.x/libhide.so"),
            Write("/etc/ssh/sshd_config.d/50-hostguard.conf", "PermitRootLogin no\nMaxAuthTries 4\n", "0600"),
            Command(("systemctl", "reload", "ssh"), undo=("systemctl", "reload", "ssh")),
            Command(("chmod", "o-w", "/srv/my site"), live_only=False),
            Action("kill", (("pid", "4242"),)),
        ), manual="Choose the allowed users.", params=(Param("ALLOW_USERS", "who may log in", "alice bob"),)))
    doc, _ = parse(html.render(Report(HOST, "2024-05-01T12:00:00Z", (finding,), ())))
    [article] = articles(doc)
    fix = article.find_all("div", "fix")[0]
    assert fix.find_all("p")[0].text() == "Fix: Do all of it."
    steps = [li.text() for li in fix.find_all("ol")[0].find_all("li")]
    assert steps == [
        "Edit /etc/ssh/sshd_config line 7:- PasswordAuthentication yes\n+ PasswordAuthentication no",
        "Delete line 1 of /etc/ld.so.preload:- /tmp/.x/libhide.so",
        "Write /etc/ssh/sshd_config.d/50-hostguard.conf (mode 0600, owner root:root):"
        "PermitRootLogin no\nMaxAuthTries 4\n",
        "Run (on the running system):systemctl reload sshUndo with: systemctl reload ssh",
        "Run:chmod o-w '/srv/my site'",
        "hostguard action kill: pid=4242",
    ]
    assert f"hostguard fix {finding.fingerprint}" in fix.text()
    assert fix.find_all("p", "manual")[0].text() == "By hand: Choose the allowed users."
    rows = [[td.text() for td in tr.find_all("td")] for tr in fix.find_all("tr")[1:]]
    assert rows == [["ALLOW_USERS", "who may log in", "alice bob"]]


def test_fix_command_names_the_tree_and_manual_only_has_no_command(report: Report) -> None:
    doc, _ = parse(html.render(report))
    by_check = {check_id(a): a for a in articles(doc)}
    root_login = by_check["ssh.root_password_login"].find_all("div", "fix")[0].text()
    fp = next(f.fingerprint for f in report.findings if f.id == "ssh.root_password_login")
    assert f"hostguard fix --root /mnt/image {fp}" in root_login
    uid0 = by_check["accounts.extra_uid0"].find_all("div", "fix")[0].text()
    assert "hostguard fix" not in uid0 and "By hand: Only you know whether toor is yours." in uid0
    assert by_check[NO_RULE_ID].find_all("div", "fix")[0].text() == "No fix recorded for this finding."


def test_filters_cover_every_family_and_severity(report: Report) -> None:
    page = html.render(report)
    doc, _ = parse(page)
    labels = {lab.attrs["for"]: lab.text() for lab in doc.find_all("label")}
    inputs = {i.attrs["id"] for i in doc.find_all("input") if i.attrs.get("type") == "checkbox"}
    assert set(labels) == inputs
    assert all("checked" in i.attrs for i in doc.find_all("input"))  # everything shown to begin with
    style = doc.find_all("style")[0].text()
    for article in articles(doc):
        [sev] = [c for c in article.attrs["class"].split() if c.startswith("sev-")]
        [fam] = [c for c in article.attrs["class"].split() if c.startswith("fam-")]
        assert labels[f"x-{sev}"] == sev[4:].capitalize()
        family = next(f.category for f in report.findings if f.fingerprint == article.attrs["id"][2:])
        assert labels[f"x-{fam}"] == family
        for cls in (sev, fam):  # an unticked box hides what carries its class
            assert f"#x-{cls}:not(:checked)~main .{cls}{{display:none}}" in style
    # Inputs are siblings before main, or the ~ selectors could not reach the findings.
    body = [n.tag for n in doc.find_all("body")[0].children if isinstance(n, Node)]
    assert body.index("input") < body.index("main")


def test_empty_report(empty_report: Report) -> None:
    doc, _ = parse(html.render(empty_report, accepted=3))
    assert doc.find_all("main")[0].text() == "No findings. Not shown: 3 accepted (hostguard accepted lists them)."
    assert not doc.find_all("input") and not doc.find_all("section")
    assert "complete" in doc.find_all("header")[0].text()


# -- attacker data ---------------------------------------------------------------------------------------

def test_planted_markup_is_text_not_elements(report: Report) -> None:
    page = html.render(with_planted(report))
    doc, _ = parse(page)
    tags = {n.tag for n in doc.iter()}
    assert not tags & {"img", "script", "b"}
    assert [n.tag for n in doc.find_all("head")[0].children if isinstance(n, Node)].count("style") == 1
    for node in doc.iter():
        assert not any(k.startswith("on") for k in node.attrs), node.attrs
    [planted] = [a for a in articles(doc) if check_id(a) == "web.webshell"]
    assert planted.find_all("h3")[0].text() == "critical" + PLANTED_TITLE
    assert PLANTED_PATH in planted.find_all("p", "meta")[0].text()
    evidence = [dd.text() for dd in planted.find_all("dd")]
    assert evidence == [PLANTED_PATH, "www-data\" onmouseover=\"x", "<?php system($_GET['c']); ?>"]
    assert doc.find_all("header")[0].find_all("dd")[0].text() == "web01<b>bold</b>.example.test"
    assert doc.find_all("title")[0].text() == "hostguard report: web01<b>bold</b>.example.test at 2024-05-01T12:00:00Z"


def test_no_lone_surrogates(report: Report) -> None:
    page = html.render(report)
    page.encode("utf-8")  # raises on a lone surrogate
    assert "\\xff.php" in page and WEBSHELL_BYTES.decode("utf-8", "surrogateescape") not in page
    assert not re.search(r"&#x?[dD][89a-fA-F][0-9a-fA-F]{2};", page)  # nor as a character reference


def test_invisible_and_bidi_characters_are_shown_as_escapes() -> None:
    sneaky = "/var/www/invoice\u202egnp.php\x1b[2J\x00"
    finding = Finding(id="web.webshell", category="web", severity=Severity.HIGH, title=f"webshell {sneaky}",
                      target={"kind": "path", "path": sneaky})
    page = html.render(Report(HOST, "2024-05-01T12:00:00Z", (finding,), ()))
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]", page)
    doc, _ = parse(page)
    assert articles(doc)[0].find_all("h3")[0].text() == r"highwebshell /var/www/invoice\u202egnp.php\x1b[2J\x00"


def test_html_does_not_import_the_engine() -> None:
    code = "import sys, hostguard.report.html; print([m for m in sys.modules if m.startswith('hostguard.engine')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- a real browser --------------------------------------------------------------------------------------

# Runs in the control page only (no CSP there): proves this browser does run scripts, so "the planted
# payload did not run" means something; then clicks two filter labels and lists the findings still shown.
PROBE = ("<script>"
         "for (const t of ['High', 'files']) {"
         "  [...document.querySelectorAll('.filters label')].find(l => l.textContent === t).click(); }"
         "document.body.dataset.shown = [...document.querySelectorAll('article.f')]"
         "  .filter(a => getComputedStyle(a).display !== 'none').map(a => a.id).join(' ');"
         "</script>")
INJECTED = "<img src=x onerror=\"document.title='pwned by img'\"><script>document.title='pwned by script'</script>"


def chromium(page: Path, tmp: Path, screenshot: Path | None = None) -> subprocess.Popen[str]:
    """Start headless chromium dumping the DOM of ``page`` after load (own profile under ``tmp``)."""
    argv = ["chromium", "--headless", "--no-sandbox", f"--user-data-dir={tmp / (page.stem + '-profile')}",
            "--disable-gpu", "--no-first-run", "--window-size=1200,1600", "--dump-dom",
            *([f"--screenshot={screenshot}"] if screenshot else []), page.as_uri()]
    env = {**os.environ, "HOME": str(tmp)}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp, env=env)


def dom(proc: subprocess.Popen[str]) -> Node:
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip(), f"chromium exited {proc.returncode}"
    return parse(out)[0]


def test_browser_renders_report_and_runs_nothing_planted(report: Report, tmp_path: Path) -> None:
    need_tool("chromium")
    planted = with_planted(report)
    page = html.render(planted)
    expected_title = "hostguard report: web01<b>bold</b>.example.test at 2024-05-01T12:00:00Z"
    real = tmp_path / "report.html"
    real.write_text(page, encoding="utf-8")
    # As if escaping had failed: raw markup in the body. The CSP alone must stop it.
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace("<body>", "<body>" + INJECTED, 1), encoding="utf-8")
    # The same page without its CSP, plus the probe: the payload runs there, so the browser runs scripts.
    control = tmp_path / "control.html"
    no_csp = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    control.write_text(no_csp.replace("<body>", "<body>" + INJECTED, 1).replace("</body>", PROBE + "</body>"),
                       encoding="utf-8")
    shot = tmp_path / "report.png"
    procs = [chromium(real, tmp_path, shot), chromium(broken, tmp_path), chromium(control, tmp_path)]
    real_dom, broken_dom, control_dom = (dom(p) for p in procs)

    assert real_dom.find_all("title")[0].text() == expected_title
    assert not real_dom.find_all("img") and not real_dom.find_all("script")
    [shown] = [a for a in articles(real_dom) if check_id(a) == "web.webshell"]
    assert shown.find_all("h3")[0].text() == "critical" + PLANTED_TITLE
    assert PLANTED_PATH in shown.text()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    assert broken_dom.find_all("title")[0].text() == expected_title  # blocked by the CSP
    # The control: the injected script ran (then, once the image failed, its onerror handler).
    assert control_dom.find_all("title")[0].text() in {"pwned by script", "pwned by img"}

    # Filters in the browser: unticking "High" and "files" hides exactly the high and the files findings.
    hidden = {f.fingerprint for f in planted.findings if f.severity == Severity.HIGH or f.category == "files"}
    visible = {f"f-{f.fingerprint}" for f in planted.findings if f.fingerprint not in hidden}
    body = control_dom.find_all("body")[0]
    assert set(body.attrs["data-shown"].split()) == visible and len(visible) == 4

