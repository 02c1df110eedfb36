"""CRS rules narrowed: the installed rule, minus the honest values it is known to refuse.

Some CRS rules are right about attacks and wrong about a shape of honest value that is easy to say exactly:
941130 and 941170 refuse every ``data:image/png;base64,...`` URL a signature pad or an avatar cropper sends,
933160 and 934100 every ``eval()`` in a blog post's slug. Removing such a rule loses what it is right about;
copying it into hostguard to change it would fork CRS. So ``data/waf/narrowings.toml`` names the rule and the
honest shape (``unless``), and :func:`narrowed_rules` writes, from the rule as the installed CRS has it
(its variables, operator, transformations, message, tags and severity, read from its file), a rule of
hostguard's own id that scores only when a matched value is *not* of that shape::

    SecRule <CRS's variables> "<CRS's operator>" "id:<ours>,phase:2,block,capture,<CRS's t:...>,chain,..."
        SecRule MATCHED_VARS "!@rx <unless>" "t:none,setvar:'tx.anomaly_score_pl1=+...'"

and ``crs-updates`` removes the CRS rule after CRS has loaded it. The chained rule reads every value the first
matched: one value that is not of the honest shape is enough to score. A CRS rule that is not where the data
says, or not of the simple form (one ``SecRule``, no chain, phase 2, critical, no action a twin cannot stand
for), is left as it is, unnarrowed: a different CRS version never loses a rule. An owner's ``remove_ids``
naming the CRS rule removes the narrowed rule too.

A narrowing for *documents* (``documents = true``, :mod:`hostguard.waf.documents`) keeps the CRS rule, under
its id (CRS's exclusion packages name it), but no longer reading the fields people write in
(``SecRuleUpdateTargetById <id> "!ARGS:/<fields>/"``); its twin reads only those fields, and scores unless each
of the request's such fields is a document. The fields' own values are asked, not what the rule matched: a
rule's transformations (``t:normalizePath``) can turn a sentence into something no longer a document. A rule
of hostguard's own (``data/waf/rules/``) can be narrowed the same way.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

from hostguard.waf.directives import directives
from hostguard.waf.documents import Documents, argument_pattern
from hostguard.waf.documents import load as load_documents
from hostguard.waf.gating import behind_gate

__all__ = ["Narrowing", "ReadText", "crs_changes", "document_rule_ids", "load", "narrowed", "narrowed_rules", "parse",
           "read_file"]

IDS = range(20950, 21000)
_DIRECTIVE = re.compile(r'SecRule\s+(\S+)\s+"((?:[^"\\]|\\.)*)"\s+"((?:[^"\\]|\\.)*)"\s*\Z', re.S)
_ACTION = re.compile(r"\s*([a-zA-Z]+)(?::('(?:[^'\\]|\\.)*'|[^,]*))?\s*(?:,|\Z)")
_CRS_FILE = re.compile(r"REQUEST-\d{3}-[A-Z0-9-]+\.conf")
_OWN_FILE = re.compile(r"REQUEST-2\d{4}-[A-Z0-9-]+\.conf")   # hostguard's own (data/waf/rules/), read from the package
_KEYS = frozenset({"rule", "id", "file", "why"})
# the actions of a CRS rule a twin can stand for: metadata, scoring, how it matches (and auditLogParts)
_UNDERSTOOD = frozenset({"id", "phase", "block", "capture", "t", "msg", "logdata", "tag", "ver", "severity", "setvar",
                         "multiMatch"})
_FROM_FILE = re.compile(r"(!?@(?:pmFromFile|pmf|ipMatchFromFile)\s+)(\S+)\Z")


@dataclass(frozen=True)
class Narrowing:
    """One entry of ``narrowings.toml``: CRS rule ``rule`` in ``file``, narrowed as rule ``id`` to values not
    matching ``unless`` (a PCRE regex), or with ``documents`` to what is not a document in a field people
    write in (``data/waf/documents.toml``); ``why`` is the honest shape, in words."""

    rule: int
    id: int
    file: str
    why: str
    unless: str | None = None
    documents: bool = False


@functools.cache
def load() -> tuple[Narrowing, ...]:
    """The shipped ``data/waf/narrowings.toml``; ValueError when it is malformed (a packaging defect)."""
    text = resources.files("hostguard.data").joinpath("waf", "narrowings.toml").read_text(encoding="utf-8")
    return parse(tomllib.loads(text))


def parse(raw: dict[str, object]) -> tuple[Narrowing, ...]:
    """The narrowings of a ``narrowings.toml`` table; ValueError naming what is wrong."""
    entries = raw.get("narrowing")
    if not isinstance(entries, list) or set(raw) != {"narrowing"}:
        raise ValueError("narrowings.toml: a list of [[narrowing]] tables and nothing else")
    out: list[Narrowing] = []
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or set(entry) not in (_KEYS | {"unless"}, _KEYS | {"documents"}):
            raise ValueError(f"narrowings.toml: narrowing {n} must have exactly rule, id, file, why, and unless or "
                             "documents")
        rule, rule_id, file, why = (entry[k] for k in ("rule", "id", "file", "why"))
        unless, documents = entry.get("unless"), entry.get("documents", False)
        if not (isinstance(rule, int) and isinstance(rule_id, int) and rule_id in IDS):
            raise ValueError(f"narrowings.toml: narrowing {n}: rule and id are integers, id in {IDS.start}-{IDS.stop - 1}")
        if not (isinstance(file, str) and (_CRS_FILE.fullmatch(file) or _OWN_FILE.fullmatch(file))):
            raise ValueError(f"narrowings.toml: narrowing {n}: file is a CRS or hostguard REQUEST-*.conf name")
        if not (isinstance(why, str) and why) or documents not in (True, False) or "documents" in entry and not documents:
            raise ValueError(f"narrowings.toml: narrowing {n}: why is a text, documents is true")
        if unless is not None:
            if not (isinstance(unless, str) and unless and '"' not in unless):
                raise ValueError(f"narrowings.toml: narrowing {n}: unless is a regex without double quotes")
            re.compile(unless.replace(r"\z", r"\Z"))   # PCRE, checked in Python's dialect
        out.append(Narrowing(rule, rule_id, file, why, unless, bool(documents)))
    for key in ("rule", "id"):
        values = [getattr(x, key) for x in out]
        if len(values) != len(set(values)):
            raise ValueError(f"narrowings.toml: a {key} is used twice")
    return tuple(out)


def _actions(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _ACTION.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot read the actions at {text[pos:pos + 40]!r}")
        out.append((m.group(1), m.group(2) or ""))
        pos = m.end()
    return out


def _narrow(n: Narrowing, text: str, crs_dir: str, documents: Documents) -> str | None:
    """The narrowed rule for ``n`` from the CRS file's ``text``, or None when the rule is not there as expected."""
    for directive in directives(text):
        if f"id:{n.rule}," not in directive and not directive.endswith(f"id:{n.rule}\""):
            continue
        m = _DIRECTIVE.match(directive)
        if m is None:
            return None
        variables, operator, actions = m.groups()
        try:
            parsed = _actions(actions)
        except ValueError:
            return None
        values = dict(parsed)
        if (any(k not in _UNDERSTOOD and (k, v) != ("ctl", "auditLogParts=+E") for k, v in parsed)
                or values.get("id") != str(n.rule) or values.get("phase") != "2"
                or values.get("severity") != "'CRITICAL'"):
            return None
        if n.documents:
            # the twin reads only the fields people write in, which the CRS rule stops reading; what it matched
            # is transformed (t:normalizePath turns "cd ../../tools" in a sentence into "tools"), so the
            # fields' own values are asked whether they are documents: one that is not is enough to score
            if "ARGS" not in variables.split("|"):
                return None
            variables = f"ARGS:/{argument_pattern(documents)}/"
            check = f'{variables} "!@rx {documents.shape}" \\\n        "t:none,t:lowercase'
        else:
            check = f'MATCHED_VARS "!@rx {n.unless}" \\\n        "t:none'
        # a data file CRS names by a relative path is next to CRS's rules, not next to hostguard's text
        found = _FROM_FILE.match(operator)
        if found and not found.group(2).startswith("/"):
            operator = f"{found.group(1)}{os.path.join(crs_dir, found.group(2))}"
        keep = [f"{k}:{v}" if v else k for k, v in parsed if k in ("t", "tag", "capture", "multiMatch")]
        keep += [f"msg:{values['msg'][:-1]} (narrowed by hostguard)'" if "msg" in values else ""]
        head = ",".join(x for x in [f"id:{n.id}", "phase:2", "block", *keep] if x)
        return (f'SecRule {variables} "{operator}" \\\n'
                f'    "{head},chain,\\\n'
                f"    logdata:'Matched Data: %{{TX.0}} found within %{{MATCHED_VAR_NAME}}',\\\n"
                f"    tag:'hostguard/narrowed/{n.rule}',ver:'hostguard/1',severity:'CRITICAL'\"\n"
                f"    SecRule {check},setvar:'tx.anomaly_score_pl1=+%{{tx.critical_anomaly_score}}'\"")
    return None


ReadText = Callable[[str], "str | None"]


def read_file(path: str) -> str | None:
    """A file of this machine as text, None when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def narrowed(crs_dir: str, removed: Iterable[int] = (), read_text: ReadText = read_file,
             narrowings: Iterable[Narrowing] | None = None,
             documents: Documents | None = None) -> list[tuple[Narrowing, str]]:
    """Each narrowing the installed CRS allows, with its twin's rule text; none for a rule in ``removed``."""
    skip = set(removed)
    fields = documents or load_documents()
    out = []
    for n in load() if narrowings is None else narrowings:
        if n.rule in skip:
            continue
        own = _OWN_FILE.fullmatch(n.file) is not None
        text = read_file(_own_rules(n.file)) if own else read_text(os.path.join(crs_dir, n.file))
        rule = _narrow(n, text, crs_dir, fields) if text is not None else None
        if rule is not None:
            out.append((n, rule))
    return out


def _own_rules(name: str) -> str:
    return str(resources.files("hostguard.data").joinpath("waf", "rules", name))


DOCUMENTS_GATE = 20947   # and the two ids after it (gating.behind_gate): the twins for documents' gate
DOCUMENTS_NAME = "DOCUMENT-TWINS"


def narrowed_rules(made: Sequence[tuple[Narrowing, str]], documents: Documents | None = None) -> str:
    """The twins as one text, each headed by why (after CRS's rules, before REQUEST-949).

    A twin for documents scores only when one of the request's fields people write in is not a document (its
    chained rule): the twins are behind a gate that asks that once and skips them all when none is (most
    requests: no such field, or prose in it). A rule costs its pass over the variables even when nothing
    matches, and the twins run CRS's costliest transformations."""
    def text(twins: Iterable[tuple[Narrowing, str]]) -> str:
        return "".join(f"# CRS {n.rule}, except {n.why}\n{rule}\n" for n, rule in twins)

    by_value = [(n, rule) for n, rule in made if not n.documents]
    for_documents = [(n, rule) for n, rule in made if n.documents]
    if not for_documents:
        return text(by_value)
    d = documents or load_documents()
    return text(by_value) + behind_gate(DOCUMENTS_GATE, f'ARGS:/{argument_pattern(d)}/ "!@rx {d.shape}"',
                                        DOCUMENTS_NAME, text(for_documents), "t:none,t:lowercase")


def crs_changes(made: Sequence[tuple[Narrowing, str]], documents: Documents | None = None) -> str:
    """What must follow CRS's rules: each CRS rule narrowed by value removed (its twin reads everything it
    read); each narrowed for documents kept, but no longer reading the fields people write in (its twin
    reads those), so that CRS's exclusion packages, which name it, still apply to it."""
    removed = " ".join(str(n.rule) for n, _ in made if not n.documents)
    lines = [f"SecRuleRemoveById {removed}"] if removed else []
    if any(n.documents for n, _ in made):
        pattern = argument_pattern(documents)
        lines += [f'SecRuleUpdateTargetById {n.rule} "!ARGS:/{pattern}/"' for n, _ in made if n.documents]
    return "".join(f"{line}\n" for line in lines)


def document_rule_ids(made: Sequence[tuple[Narrowing, str]]) -> list[int]:
    """The CRS rules narrowed for documents (a text body that is a document is kept from them)."""
    return [n.rule for n, _ in made if n.documents]
