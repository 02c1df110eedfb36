"""Documents in content fields: the rules that let a forum post quote a shell session.

A person's writing (a post, a comment, a ticket, a chat message) is full of what command-injection and
file-access rules look for: ``sudo apt-get update && ...``, ``/var/log/nginx/error.log``, a Markdown table
whose cells start with a pipe. Such a field is stored and shown, not run. ``data/waf/documents.toml`` names
the fields (by argument name), the rules that read shell and path shapes, and what makes a value a document;
:func:`document_rules` writes the phase-2 rules that, per request and per argument, stop those rules reading
a document in a field of such a name. They load before CRS (a ``ctl:`` only affects the rules that run after
it). A body sent as text (``text/plain``, ``text/markdown``: read as a form by rule 20911, so it sits in
``ARGS_NAMES``) is one document too.

libmodsecurity3 3.0.9 takes neither a regex nor a macro in a ``ctl:`` target, so each argument name is a
rule of its own (:func:`document_rules` says how a request avoids paying for all of them).
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources

__all__ = ["FIRST_ID", "Documents", "document_rules", "load"]

FIRST_ID = 10100   # ids 10100-10999
LAST_ID = 10999
MARKER = "END_HOSTGUARD_DOCUMENTS"
PREFILTER = r"[;|&`$/\x5c\r\n]"   # what nearly every match of the removed rules needs in the value
_NAME = re.compile(r"[A-Za-z0-9_.\[\]-]+")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Documents:
    """``documents.toml``, checked: the rule ids removed, the names, their forms and parents, the shape."""

    remove: tuple[int, ...]
    names: tuple[str, ...]
    forms: tuple[str, ...]
    parents: tuple[str, ...]
    shape: str

    @property
    def arguments(self) -> tuple[str, ...]:
        """Every argument name the rules read, each once."""
        return tuple(dict.fromkeys(a for _, _, arguments in _families(self) for a in arguments))


@functools.cache
def load() -> Documents:
    """The shipped ``data/waf/documents.toml``; ValueError when it is malformed (a packaging defect)."""
    text = resources.files("hostguard.data").joinpath("waf", "documents.toml").read_text(encoding="utf-8")
    return parse(tomllib.loads(text))


def parse(raw: dict[str, object]) -> Documents:
    """The settings of a ``documents.toml`` table; ValueError naming what is wrong."""
    unknown = set(raw) - {"remove", "names", "forms", "parents", "shape"}
    if unknown:
        raise ValueError(f"documents.toml: unknown key {sorted(unknown)[0]!r}")
    remove, names, forms, parents, shape = (raw.get(k) for k in ("remove", "names", "forms", "parents", "shape"))
    if not (isinstance(remove, list) and remove and all(isinstance(i, int) and i > 0 for i in remove)):
        raise ValueError("documents.toml: remove must list rule ids")
    lists: dict[str, tuple[str, ...]] = {}
    for key, value in {"names": names, "forms": forms, "parents": parents}.items():
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            raise ValueError(f"documents.toml: {key} must list strings")
        lists[key] = tuple(value)
    if not all(_IDENTIFIER.fullmatch(p) for p in lists["parents"]):
        raise ValueError("documents.toml: a parent is letters, digits and underscores")
    for form in lists["forms"]:
        if form.count("{name}") != 1 or form.count("{parent}") > 1 or form.index("{name}") < form.find("{parent}"):
            raise ValueError(f"documents.toml: form {form!r} must name {{name}} once, after an optional {{parent}}")
    if not isinstance(shape, str) or '"' in shape:
        raise ValueError("documents.toml: shape must be a regex without double quotes")
    re.compile(shape.replace(r"\z", r"\Z"))   # PCRE, checked in Python's dialect
    documents = Documents(tuple(remove), lists["names"], lists["forms"], lists["parents"], shape)
    for argument in documents.arguments:
        if not _NAME.fullmatch(argument):
            raise ValueError(f"documents.toml: argument name {argument!r}")
    families = _families(documents)
    needed = 3 + len(documents.forms) + len(families) + sum(len(a) for _, _, a in families)
    if needed > LAST_ID - FIRST_ID + 1:
        raise ValueError(f"documents.toml: {needed} rules, more than ids {FIRST_ID}-{LAST_ID}")
    return documents


def _ctl(documents: Documents, target: str) -> str:
    return ",".join(f"ctl:ruleRemoveTargetById={rule};{target}" for rule in documents.remove)


def _families(d: Documents) -> list[tuple[str, str | None, list[str]]]:
    """The argument names by form: (form, parent or None, names), in the order of ``forms`` and ``parents``."""
    out = []
    for form in d.forms:
        for parent in (d.parents if "{parent}" in form else [None]):
            names = [form.format(name=n, parent=parent or "") for n in d.names]
            out.append((form, parent, names))
    return out


def document_rules(documents: Documents | None = None) -> str:
    """The rules text (both engines read it as it is), headed by a comment naming its source.

    What a request pays for is kept small: one rule skips everything for a request without such a field
    (or whose such fields hold none of the characters the removed rules need); one rule per form of name
    (``json.{name}``, ``{parent}[{name}]``) notes which forms and parents the request has (a parent as a
    ``TX`` name, from a capture); and only the rules of the names of a form the request has are evaluated
    (``skip`` over the others: libmodsecurity3 evaluates every rule it does not skip, ~1 µs each)."""
    d = documents or load()
    names = "|".join(re.escape(n) for n in d.names)
    parents = "|".join(re.escape(p) for p in d.parents)
    ids = iter(range(FIRST_ID, LAST_ID + 1))
    lines = [
        "# ---- hostguard data/waf/documents.toml: documents in content fields ----",
        # a text body (rule 20911 reads it as a form: the text is an argument name)
        f'SecRule TX:hostguard_text_body "@eq 1" "id:{next(ids)},phase:2,pass,nolog,t:none,chain"',
        f'    SecRule REQUEST_BODY "@rx {d.shape}" "t:none,t:lowercase,{_ctl(d, "ARGS_NAMES")}"',
        # whether the request has a field of such a name whose value has a separator, a slash, a backslash or a
        # line break (what nearly all those rules' matches need): most honest text has none, and then nothing
        # more is evaluated (a one-line text that starts with a bare command word is left to 932150)
        f'SecRule ARGS "@rx {PREFILTER}" "id:{next(ids)},phase:2,pass,nolog,t:none,chain"',
        f'    SecRule MATCHED_VARS_NAMES "@rx (?i)(?:\\A|[.\\[:])(?:{names})\\]?\\z" '
        f'"t:none,setvar:tx.hostguard_documents=1"',
        f'SecRule TX:hostguard_documents "!@eq 1" "id:{next(ids)},phase:2,pass,nolog,t:none,skipAfter:{MARKER}"',
    ]
    # which forms (and parents) it has
    for number, form in enumerate(d.forms):
        head, _, tail = form.partition("{name}")
        if "{parent}" in head:
            before, _, between = head.partition("{parent}")
            pattern = f"{re.escape(before)}({parents}){re.escape(between)}(?:{names}){re.escape(tail)}"
            action = f"capture,setvar:'tx.hostguard_documents_{number}_%{{TX.1}}=1'"
        else:
            pattern = f"{re.escape(head)}(?:{names}){re.escape(tail)}"
            action = f"setvar:tx.hostguard_documents_{number}=1"
        lines.append(f'SecRule ARGS_NAMES "@rx (?i)\\A{pattern}\\z" "id:{next(ids)},phase:2,pass,nolog,t:none,{action}"')
    for form, parent, arguments in _families(d):
        flag = f"hostguard_documents_{d.forms.index(form)}" + (f"_{parent}" if parent else "")
        lines.append(f'SecRule &TX:{flag} "@eq 0" "id:{next(ids)},phase:2,pass,nolog,t:none,'
                     f'skip:{len(arguments)}"')
        for argument in arguments:
            lines.append(f'SecRule ARGS:{argument} "@rx {d.shape}" '
                         f'"id:{next(ids)},phase:2,pass,nolog,t:none,t:lowercase,{_ctl(d, "ARGS:" + argument)}"')
    lines.append(f"SecMarker {MARKER}")
    return "\n".join(lines) + "\n"
