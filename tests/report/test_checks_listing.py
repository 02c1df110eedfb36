"""``hostguard checks`` renders the docstrings' reStructuredText for people instead of showing it."""

from __future__ import annotations

import io

from hostguard.engine.registry import default_registry
from hostguard.findings import Rule, Severity
from hostguard.report import checks_listing

DOC = """Only needed ports should be open (``ports.allowed``); ``netstat -anp`` by hand, or `getent`,
or :class:`Remediation`. Locked accounts (``!``/``*``) are skipped; a literal may span a line break:
``PasswordAuthentication
no``.

A second paragraph: https://man.openbsd.org/sshd_config#PasswordAuthentication is never broken."""

RULE = Rule(id="demo.markup", family="demo", severity=Severity.MEDIUM, summary="Uses ``markup`` in its summary",
            doc=DOC, references=("https://man.openbsd.org/sshd_config#PasswordAuthentication",), looks_at=("demo",))


def render(rules: list[Rule], *, terminal: bool, width: int = 60) -> str:
    out = io.StringIO()
    checks_listing.render_table(rules, out, width=width, terminal=terminal)
    return out.getvalue()


def test_plain_text_quotes_literals_and_keeps_links_whole() -> None:
    text = render([RULE], terminal=False)
    assert "`" not in text
    flat = " ".join(text.split())
    assert "open ('ports.allowed'); 'netstat -anp' by hand, or 'getent', or 'Remediation'." in flat
    assert "Locked accounts ('!'/'*') are skipped" in flat
    assert "'PasswordAuthentication no'." in flat
    assert text.splitlines()[0] == "demo.markup  [medium]  Uses 'markup' in its summary"
    lines = text.splitlines()
    url = "https://man.openbsd.org/sshd_config#PasswordAuthentication"
    assert [line.split()[-1] for line in lines if "https://" in line] == [url, url]  # longer than 60, yet whole
    assert all(len(line) <= 60 for line in lines if "https://" not in line)
    assert all(line.startswith("    ") for line in lines[1:] if line)


def test_terminal_styles_literals_instead_of_quoting_them() -> None:
    text = render([RULE], terminal=True, width=200)
    assert "\x1b[" in text and "`" not in text
    assert "'ports.allowed'" not in text and "ports.allowed" in text
    assert "\x1b[1;36mports.allowed\x1b[0m" in text  # bold cyan


def test_every_registered_check_reads_without_markup() -> None:
    rules = default_registry().rules()
    text = render(rules, terminal=False, width=100)
    assert "`" not in text and ":class:" not in text
    for r in rules:
        assert f"{r.id}  [{r.severity}]  " in text
