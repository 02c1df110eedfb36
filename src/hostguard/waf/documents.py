"""Documents in content fields: what lets a forum post quote a shell session.

A person's writing (a post, a comment, a ticket, a chat message) is full of what command-injection and
file-access rules look for: ``sudo apt-get update && ...``, ``/var/log/nginx/error.log``, a Markdown table
whose cells start with a pipe. Such a field is stored and shown, not run. ``data/waf/documents.toml`` names
the fields (by argument name) and says what makes a value a document; the CRS rules narrowed for documents
(``documents = true`` in ``data/waf/narrowings.toml``, :mod:`hostguard.waf.narrowing`) stop reading a field of
such a name, and a twin of each reads it instead, scoring unless the value is a document.

libmodsecurity3 3.0.9 takes neither a regex nor a macro in a ``ctl:`` target, and no ``|`` in a regex inside a
target list (it splits the list there; mod_security2 splits at commas too): :func:`argument_pattern` writes
the names' alternation as nested negative lookaheads, ``(?!(?!body$)(?!content$))`` ("not none of them"),
and repeats optional groups instead of counting them, which both engines read.

A body sent as text (``text/plain``, ``text/markdown``: read as a form by rule 20911, so it sits in
``ARGS_NAMES``) is one document too: :func:`text_body_rule`.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

__all__ = ["Documents", "argument_pattern", "load", "parse", "text_body_rule"]

TEXT_BODY_ID = 10100
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# before a name: nothing (a form field), up to three JSON objects or arrays (json.data.attributes.body,
# json.commits.array_2.message), or a Rails-style parent (post[body])
# (possessive: every name is tested, so no backtracking; no "{0,3}": mod_security2 splits a target list at commas)
_PREFIX = r"(?:json\.(?:[a-z0-9_-]++\.)?+(?:[a-z0-9_-]++\.)?+(?:[a-z0-9_-]++\.)?+)?+(?:[a-z0-9_-]++\[)?+"


@dataclass(frozen=True)
class Documents:
    """``documents.toml``, checked: the argument names people write in, and what makes a value a document."""

    names: tuple[str, ...]
    shape: str


@functools.cache
def load() -> Documents:
    """The shipped ``data/waf/documents.toml``; ValueError when it is malformed (a packaging defect)."""
    text = resources.files("hostguard.data").joinpath("waf", "documents.toml").read_text(encoding="utf-8")
    return parse(tomllib.loads(text))


def parse(raw: dict[str, object]) -> Documents:
    """The settings of a ``documents.toml`` table; ValueError naming what is wrong."""
    unknown = set(raw) - {"names", "shape"}
    if unknown:
        raise ValueError(f"documents.toml: unknown key {sorted(unknown)[0]!r}")
    names, shape = raw.get("names"), raw.get("shape")
    if not (isinstance(names, list) and names and all(isinstance(v, str) for v in names)):
        raise ValueError("documents.toml: names must list strings")
    bad = [n for n in names if not _NAME.fullmatch(n)]
    if bad:
        raise ValueError(f"documents.toml: argument name {bad[0]!r}: a letter, then letters, digits, underscores")
    if not isinstance(shape, str) or not shape or '"' in shape:
        raise ValueError("documents.toml: shape must be a regex without double quotes")
    re.compile(shape.replace(r"\z", r"\Z"))   # PCRE, checked in Python's dialect
    return Documents(tuple(dict.fromkeys(names)), shape)


def argument_pattern(documents: Documents | None = None) -> str:
    """A PCRE regex (no ``|``, no comma, no double quote) matching the argument names of ``documents`` in every form:
    ``body``, ``json.body``, ``json.post.body``, ``post[body]``."""
    d = documents or load()
    either = "".join(f"(?!{re.escape(n)}\\]?$)" for n in d.names)
    return f"(?i)^{_PREFIX}(?!{either})"


def text_body_rule(rule_ids: Iterable[int], documents: Documents | None = None) -> str:
    """A rule that stops ``rule_ids`` reading a text body (its argument names) that is a document."""
    d = documents or load()
    ctl = ",".join(f"ctl:ruleRemoveTargetById={i};ARGS_NAMES" for i in rule_ids)
    if not ctl:
        return ""
    return (f'SecRule TX:hostguard_text_body "@eq 1" "id:{TEXT_BODY_ID},phase:2,pass,nolog,t:none,chain"\n'
            f'    SecRule REQUEST_BODY "@rx {d.shape}" "t:none,t:lowercase,{ctl}"\n')
