"""``--format html``: one self-contained page an owner opens in a browser and can mail around.

Why it is built this way:

* **No script, no fetch.** The page is CSS inline and nothing else; the filters by severity and family are
  checkboxes that hide findings through CSS sibling selectors, so they work with scripts off. The
  Content-Security-Policy allows no script at all and only the one style element, by its hash: if an
  escaping bug ever let host data through as markup, the browser would still refuse to run it or to fetch
  anything (an ``<img src=…>`` beacon included).
* **Every string from the host is attacker data** (a file name can be ``<img src=x onerror=…>``). All text
  goes through :func:`_text`: the readable form of :func:`hostguard.findings.readable` (so bytes decoded
  with ``surrogateescape`` become ``\\xNN``, never a lone surrogate), control and bidirectional-override
  characters shown as escapes (a name cannot hide or reorder what is displayed), then ``html.escape``.
* **Class names and ids are ours**: a family becomes ``fam-<n>`` by its position, so nothing from a finding
  ever lands in the style sheet or in an attribute unescaped.

Like the terminal table: what was not checked first, then findings grouped by severity, most urgent
first, each with its evidence and its fix.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from hostguard.findings import Finding, Report, Rule, Severity, Skipped, readable
from hostguard.remediation import Action, Command, DeleteLine, Edit, Remediation, Step, Write

EVIDENCE_LIMIT = 2000  # characters of one evidence value shown; the whole value is in --format json
# C0/C1 controls (tab and newline kept) and the bidi embeddings, overrides and isolates that can make a
# file name display as something else.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

CSS = """\
:root{--crit:#7f1d1d;--high:#b91c1c;--med:#a16207;--low:#0e7490;--info:#4b5563;color-scheme:light}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:72rem;
padding:1rem 1.5rem 3rem;color:#111827;background:#f9fafb}
h1{font-size:1.5rem;margin:.5rem 0}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}h3{font-size:1.05rem;margin:0}
code,pre{font:13px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,monospace}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f3f4f6;padding:.4rem .6rem;margin:.25rem 0;
border-radius:4px}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.4rem 0}
dl.kv dt{font-weight:600;color:#374151}dl.kv dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #e5e7eb;padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
.status{font-weight:700}.complete{color:#166534}.incomplete{color:#b91c1c}
#not-checked{border-left:4px solid #b91c1c;padding-left:.8rem}
.filter{position:absolute;opacity:0;width:1px;height:1px}
.filters{display:flex;flex-wrap:wrap;gap:.4rem 1.5rem;margin:1rem 0;align-items:center}
.filters span{font-weight:600;margin-right:.3rem}
.filters label{display:inline-block;border:1px solid #9ca3af;border-radius:1rem;padding:.1rem .7rem;
margin:.1rem;cursor:pointer;background:#fff;user-select:none}
.f{background:#fff;border:1px solid #e5e7eb;border-left:6px solid var(--info);border-radius:4px;
padding:.7rem 1rem;margin:.6rem 0}
.meta{color:#4b5563;margin:.2rem 0 .4rem}.meta code{color:#111827}
.badge{display:inline-block;color:#fff;border-radius:3px;padding:0 .4rem;font-size:.8rem;font-weight:700;
text-transform:uppercase;margin-right:.4rem;background:var(--info)}
.fix{border-top:1px dashed #d1d5db;margin-top:.5rem;padding-top:.4rem}
.fix ol{margin:.3rem 0;padding-left:1.6rem}.manual{color:#7c2d12}
.sev-critical{--c:var(--crit)}.sev-high{--c:var(--high)}.sev-medium{--c:var(--med)}.sev-low{--c:var(--low)}
.sev-info{--c:var(--info)}
.f,.badge,h2.sev{border-left-color:var(--c)}.badge{background:var(--c)}h2.sev{color:var(--c)}
.note{color:#4b5563}details summary{cursor:pointer;color:#374151}
"""


def _text(value: Any) -> str:
    """Host data as HTML text: readable, invisible characters made visible, escaped (quotes too)."""
    shown = _INVISIBLE.sub(lambda m: f"\\u{ord(m.group(0)):04x}" if ord(m.group(0)) > 0xFF
                           else f"\\x{ord(m.group(0)):02x}", readable(value))
    return escape(shown, quote=True)


def _target(f: Finding) -> str:
    """The target in words: its kind, its main value, then the other keys (as the terminal table shows it)."""
    t = dict(f.target)
    kind = t.pop("kind")
    main = t.pop(kind) if kind in t else None
    words = [str(kind), *([readable(main)] if main is not None else []),
             *(f"{k}={readable(v)}" for k, v in t.items())]
    return " ".join(words)


def _value(value: Any) -> str:
    """One evidence value (already JSON-portable): a string as itself, anything else as compact JSON."""
    if isinstance(value, dict) and set(value) == {"text", "base64"}:
        value = value["text"]  # non-UTF-8 bytes: the readable form (exact bytes in --format json)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > EVIDENCE_LIMIT:
        more = len(text) - EVIDENCE_LIMIT
        return f"<pre>{_text(text[:EVIDENCE_LIMIT])}</pre><p class=note>… {more} more characters " \
               "(the whole value is in --format json)</p>"
    return f"<pre>{_text(text)}</pre>" if "\n" in text or len(text) > 120 else f"<code>{_text(text)}</code>"


def _evidence(f: Finding) -> str:
    items = [(k, v) for k, v in f.to_dict()["evidence"].items() if v not in (None, "", [], {})]
    if not items:
        return ""
    rows = "".join(f"<dt>{_text(k)}</dt><dd>{_value(v)}</dd>" for k, v in items)
    return f"<dl class=kv>{rows}</dl>"


def _step(step: Step) -> str:
    """One remediation step, readable: what it does, then exactly what it writes or runs."""
    if isinstance(step, Edit):
        new = "".join(f"\n+ {line}" for line in step.new.splitlines() or [""])
        return (f"Edit <code>{_text(step.path)}</code> line {step.line}:"
                f"<pre>- {_text(step.old)}{_text(new)}</pre>")
    if isinstance(step, DeleteLine):
        return f"Delete line {step.line} of <code>{_text(step.path)}</code>:<pre>- {_text(step.old)}</pre>"
    if isinstance(step, Write):
        return (f"Write <code>{_text(step.path)}</code> (mode {_text(step.mode)}, owner {_text(step.owner)}):"
                f"<pre>{_text(step.content)}</pre>")
    if isinstance(step, Command):
        where = " (on the running system)" if step.live_only else ""
        undo = (f"<br>Undo with: <code>{_text(shlex.join(step.undo))}</code>" if step.undo else "")
        return f"Run{where}:<pre>{_text(shlex.join(step.argv))}</pre>{undo}"
    assert isinstance(step, Action)
    args = " ".join(f"{k}={v}" for k, v in step.args)
    return f"hostguard action <code>{_text(step.action)}</code>" + (f": <code>{_text(args)}</code>" if args else "")


def _fix(fix: Remediation, command: str) -> str:
    parts = [f"<p><strong>Fix:</strong> {_text(fix.summary)}</p>"] if fix.summary else []
    if fix.steps:
        parts.append("<ol>" + "".join(f"<li>{_step(s)}</li>" for s in fix.steps) + "</ol>")
        parts.append(f"<p class=note>Apply these steps with <code>{_text(command)}</code></p>")
    if fix.manual:
        parts.append(f"<p class=manual><strong>By hand:</strong> {_text(fix.manual)}</p>")
    if fix.params:
        rows = "".join(f"<tr><td><code>{_text(p.name)}</code></td><td>{_text(p.meaning)}</td>"
                       f"<td><code>{_text(p.example)}</code></td></tr>" for p in fix.params)
        parts.append(f"<table><tr><th>value you choose</th><th>meaning</th><th>example</th></tr>{rows}</table>")
    if not parts:
        return "<div class=fix><p class=note>No fix recorded for this finding.</p></div>"
    return "<div class=fix>" + "".join(parts) + "</div>"


def _about(rule: Rule | None) -> str:
    """The check's documentation, folded away: why it matters and where to read more."""
    if rule is None or not (rule.doc or rule.references):
        return ""
    refs = "".join(f"<li>{_text(r)}</li>" for r in rule.references)
    return (f"<details><summary>About this check</summary><p>{_text(rule.doc)}</p>"
            + (f"<ul>{refs}</ul>" if refs else "") + "</details>")


def _finding(f: Finding, families: Mapping[str, int], rules: Mapping[str, Rule], root: str | None) -> str:
    command = shlex.join(["hostguard", "fix", *(["--root", root] if root else []), f.fingerprint])
    return (f'<article class="f sev-{f.severity.value} fam-{families[f.category]}" id="f-{f.fingerprint}">'
            f"<h3><span class=badge>{f.severity.value}</span>{_text(f.title)}</h3>"
            f"<p class=meta><code>{_text(f.id)}</code> · {_text(_target(f))} · fingerprint "
            f"<code>{f.fingerprint}</code></p>"
            f"{_evidence(f)}{_fix(f.remediation, command)}{_about(rules.get(f.id))}</article>")


def _not_checked(skipped: Iterable[Skipped]) -> str:
    rows = "".join(f"<tr><td><code>{_text(s.check)}</code>"
                   + (f"<br>{_text(s.item)}" if s.item else "")
                   + f"</td><td>{_text(s.family)}</td><td>{_text(s.reason)}</td><td>{_text(s.detail)}</td></tr>"
                   for s in skipped)
    return ("<section id=not-checked><h2>Not checked (coverage is incomplete)</h2>"
            "<p>These checks, or these items of them, did not run: no finding from them does not mean "
            "nothing is wrong.</p>"
            f"<table><tr><th>check</th><th>family</th><th>reason</th><th>detail</th></tr>{rows}</table></section>")


def _hidden(suppressed: int, accepted: int) -> str:
    parts = ([f"{suppressed} suppressed by [[suppress.rules]]"] if suppressed else []) + (
        [f"{accepted} accepted (hostguard accepted lists them)"] if accepted else [])
    return f"Not shown: {', '.join(parts)}." if parts else ""


def _filters(families: Mapping[str, int], present: list[Severity]) -> tuple[str, str, str]:
    """The checkbox inputs, their labels, and the CSS that hides what an unticked box filters out.

    The inputs sit right before ``main`` so that ``#id:not(:checked) ~ main .cls`` reaches the findings;
    the labels (anywhere in the page) toggle them, and show their state through the same sibling rule.
    """
    boxes = [(f"sev-{s.value}", s.value.capitalize()) for s in present]
    boxes += [(f"fam-{n}", name) for name, n in families.items()]
    inputs = "".join(f'<input type=checkbox class=filter id=x-{b} checked aria-label="show {_text(label)}">'
                     for b, label in boxes)
    css = "".join(f"#x-{b}:not(:checked)~main .{b}{{display:none}}"
                  f"#x-{b}:not(:checked)~.filters label[for=x-{b}]{{opacity:.45;text-decoration:line-through}}"
                  f"#x-{b}:focus-visible~.filters label[for=x-{b}]{{outline:2px solid #2563eb}}\n"
                  for b, _ in boxes)
    sev = "".join(f'<label for=x-{b}>{_text(label)}</label>' for b, label in boxes if b.startswith("sev-"))
    fam = "".join(f'<label for=x-{b}>{_text(label)}</label>' for b, label in boxes if b.startswith("fam-"))
    labels = (f"<div class=filters><div><span>Severity</span>{sev}</div>"
              f"<div><span>Family</span>{fam}</div></div>")
    return inputs, labels, css


def _csp(css: str) -> str:
    """No script, no fetch, no form, no base: only our one style element, pinned by its hash."""
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; script-src 'none'; "
            "base-uri 'none'; form-action 'none'")


def render(report: Report, *, suppressed: int = 0, accepted: int = 0) -> str:
    """The report as one HTML document; ``suppressed`` and ``accepted`` count the findings left out."""
    host = report.host
    findings = report.sorted_findings()
    present = [s for s in Severity if any(f.severity == s for f in findings)]
    families = {name: n for n, name in enumerate(sorted({f.category for f in findings}))}
    rules = {r.id: r for r in report.rules}
    inputs, labels, filter_css = _filters(families, present)
    css = CSS + filter_css
    hostname = readable(host.hostname) or "?"

    counts = ", ".join(f"{sum(1 for f in findings if f.severity == s)} {s.value}" for s in present)
    total = f"{len(findings)} finding{'s' if len(findings) != 1 else ''}" + (f": {counts}" if counts else "")
    hidden = _hidden(suppressed, accepted)
    status = ("<span class='status complete'>complete</span> (every selected check ran)" if report.complete
              else "<span class='status incomplete'>INCOMPLETE</span> (see Not checked)")
    facts = [("host", _text(hostname)), ("host id", f"<code>{_text(host.id)}</code>"),
             ("scan started", _text(report.started)), *([("tree", _text(report.root))] if report.root else []),
             ("coverage", status), ("findings", _text(total) + (f" <span class=note>{_text(hidden)}</span>"
                                                                if hidden else ""))]
    header = ("<header><h1>hostguard report for " + _text(hostname) + "</h1><dl class=kv>"
              + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl></header>")

    sections = []
    for sev in present:
        group = [f for f in findings if f.severity == sev]
        body = "".join(_finding(f, families, rules, report.root) for f in group)
        sections.append(f'<section class="group sev-{sev.value}"><h2 class="sev sev-{sev.value}">'
                        f"{sev.value.capitalize()} ({len(group)})</h2>{body}</section>")
    if findings:
        main = inputs + labels + "<main>" + "".join(sections) + "</main>"
    else:
        main = "<main><p>No findings." + (f" {_text(hidden)}" if hidden else "") + "</p></main>"
    title = f"hostguard report: {hostname} at {readable(report.started)}"
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_csp(css)}">\n'
            '<meta name=referrer content=no-referrer>\n'
            '<meta name=viewport content="width=device-width, initial-scale=1">\n'
            f"<title>{_text(title)}</title>\n<style>{css}</style></head>\n<body>\n{header}\n"
            + (_not_checked(report.skipped) if report.skipped else "")
            + f"\n{main}\n<footer><p class=note>{_text(total)}. "
            + ("Complete." if report.complete else "INCOMPLETE: see Not checked.")
            + (f" {_text(hidden)}" if hidden else "") + "</p></footer>\n</body></html>\n")
