"""Gates in front of CRS's own attack files (``data/waf/crs-gates.toml``).

The same idea as the gates of hostguard's own rule families (``data/waf/rules/REQUEST-19900-REQUEST-TEXT.conf``
says why they are sound): a CRS file whose every paranoia-level-1 rule needs something the request text does
not hold is skipped as a whole. CRS is not edited: the gate goes around its ``Include`` line. The request
text has to exist by then, so hostguard's text file loads right after REQUEST-901 where a gate is used."""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from hostguard.waf.gating import IDS_PER_GATE, behind_gate

__all__ = ["CrsGate", "gated", "load", "needs"]

_FILE = re.compile(r"REQUEST-9\d\d-[A-Z0-9-]+\.conf\Z")
_DATA = re.compile(r"[a-z0-9-]+\.data\Z")


@dataclass(frozen=True)
class CrsGate:
    """A gate: the CRS ``file`` it stands in front of, the first of its rule ids (``gating.IDS_PER_GATE``),
    and the regex of what the file's rules need."""

    file: str
    id: int
    needs: str
    words: tuple[str, ...] = ()   # CRS data files (next to its rules) whose every entry is needed too


@functools.cache
def load() -> tuple[CrsGate, ...]:
    """The gates hostguard ships. ValueError names a malformed entry."""
    raw = tomllib.loads(resources.files("hostguard.data").joinpath("waf", "crs-gates.toml").read_text("utf-8"))
    return parse(raw)


def parse(raw: dict[str, object]) -> tuple[CrsGate, ...]:
    """The gates of a parsed ``crs-gates.toml``."""
    entries = raw.get("gate")
    if not isinstance(entries, list):
        raise ValueError("crs-gates.toml: [[gate]] entries expected")
    gates: list[CrsGate] = []
    for entry in entries:
        if not isinstance(entry, dict) or not {"file", "id", "needs"} <= set(entry) <= {"file", "id", "needs", "words"}:
            raise ValueError(f"crs-gates.toml: a gate has file, id, needs and maybe words: {entry!r}")
        file, rule_id, needs, words = entry["file"], entry["id"], entry["needs"], entry.get("words", [])
        if not isinstance(file, str) or not _FILE.fullmatch(file):
            raise ValueError(f"crs-gates.toml: file {file!r} is not a CRS request file name")
        if not isinstance(rule_id, int) or not 19900 <= rule_id <= 19999 - IDS_PER_GATE:
            raise ValueError(f"crs-gates.toml: {file}: id {rule_id!r} outside 19900-{19999 - IDS_PER_GATE}")
        if any(abs(rule_id - g.id) < IDS_PER_GATE for g in gates):
            raise ValueError(f"crs-gates.toml: {file}: id {rule_id} within {IDS_PER_GATE} of another gate's")
        if not isinstance(needs, str) or not (needs or words) or '"' in needs:
            raise ValueError(f"crs-gates.toml: {file}: needs must be a regex without double quotes (or words given)")
        try:
            re.compile(needs)
        except re.error as e:
            raise ValueError(f"crs-gates.toml: {file}: needs is not a regex: {e}") from None
        if not isinstance(words, list) or not all(isinstance(w, str) and _DATA.fullmatch(w) for w in words):
            raise ValueError(f"crs-gates.toml: {file}: words must list CRS data file names")
        gates.append(CrsGate(file, rule_id, needs, tuple(words)))
    return tuple(gates)


def needs(gate: CrsGate, read_text: Callable[[str], str | None], crs_dir: str) -> str | None:
    """The regex of ``gate``: its own, and every entry of its data files as read by ``read_text`` (a word
    a rule looks for with ``@pmFromFile``); None when a data file cannot be read (no gate then)."""
    words = []
    for name in gate.words:
        text = read_text(os.path.join(crs_dir, name))
        if text is None:
            return None
        words += [w.strip() for w in text.splitlines() if w.strip() and not w.lstrip().startswith("#")]
    return "|".join(x for x in [gate.needs, _trie(sorted({w.lower() for w in words})) if words else ""] if x)


def _trie(words: list[str]) -> str:
    """One regex for ``words`` (lowercase, sorted, unique) with common prefixes factored out: an alternation of
    hundreds of words is tried word after word at every position of the text, a trie once."""
    if words == [""]:
        return ""
    groups: dict[str, list[str]] = {}
    for w in words:
        groups.setdefault(w[:1], []).append(w[1:])
    branches = []
    for first, rests in groups.items():
        if not first:
            continue
        char = re.escape(first).replace('"', "\\x22")
        optional = "" in rests
        inner = _trie([r for r in rests if r]) if any(rests) else ""
        if not inner:
            branches.append(char)
        else:
            alternatives = f"(?:{inner})" if "|" in inner else inner
            plain = not optional or "|" in inner or len(inner) == 1
            branches.append(f"{char}{alternatives}{'?' if optional else ''}" if plain else f"{char}(?:{inner})?")
    return "|".join(branches)


def gated(include: str, gate: CrsGate, regex: str) -> str:
    """``include`` (the CRS file's ``Include`` line) behind ``gate``, whose rules need ``regex``."""
    return behind_gate(gate.id, f'TX:hostguard_request_text "@rx (?i)HOSTGUARD-EVERY-FAMILY|{regex}"',
                       gate.file.removesuffix(".conf"), include)
