"""Remediation as data: the exact steps that fix a finding, or why only the owner can.

Owners paste what hostguard prints, and ``hostguard fix`` will apply it, so a fix is data, never prose
with blanks to fill in. A step is one of:

* :class:`Edit` — replace line ``line`` of ``path``, which must still read ``old``, with ``new`` (which may
  hold several lines: an insertion keeps the old line in it);
* :class:`DeleteLine` — remove line ``line`` of ``path``, which must still read ``old``;
* :class:`Write` — create or replace a whole file (a drop-in) with ``content``, ``mode`` and ``owner``;
* :class:`Command` — run ``argv`` (``live_only``: it needs the running system, e.g. ``systemctl reload``),
  with its ``undo`` when there is one;
* :class:`Action` — one of hostguard's own audited actions (quarantine, kill, block, upgrade), for the
  families that act rather than configure.

Paths are absolute on the host; under ``--root`` they apply inside the tree. A step never contains a
placeholder: where only the owner knows a value (a trusted network, a new SSH port) the remediation is
``manual`` — the reason in words — with ``params`` naming each value, its meaning and an example.

This module imports nothing of hostguard's: findings, checks, reports and ``respond/apply.py`` share it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal

# Words that stand for a value someone must fill in. Real config keywords (PASS_MAX_DAYS, UID_MIN) are
# upper case with underscores too, so the list is of placeholder shapes, plus each remediation's own
# param names (a param's name inside a step means the step was not filled in).
PLACEHOLDER = re.compile(r"\b(?:TRUSTED_\w+|SSH_PORTS?|NEW_?UID|NEW_?PORT|NEW_?\w*PASSWORD|YOUR_\w+|CHANGE_?ME|"
                         r"EXAMPLE_\w+|PLACEHOLDER\w*|X{3,})\b|<[a-z][a-z _-]*>")


@dataclass(frozen=True)
class Edit:
    """Replace one line that must still read ``old``."""

    path: str
    line: int
    old: str
    new: str
    kind: Literal["edit"] = "edit"

    def describe(self) -> str:
        """One line for people."""
        return f"edit {self.path} line {self.line}: `{self.old}` -> `{self.new}`"


@dataclass(frozen=True)
class DeleteLine:
    """Remove one line that must still read ``old``."""

    path: str
    line: int
    old: str
    kind: Literal["delete_line"] = "delete_line"

    def describe(self) -> str:
        """One line for people."""
        return f"delete {self.path} line {self.line}: `{self.old}`"


@dataclass(frozen=True)
class Write:
    """Create or replace a whole file (a drop-in), with its mode and owner."""

    path: str
    content: str
    mode: str = "0644"
    owner: str = "root:root"
    kind: Literal["write"] = "write"

    def describe(self) -> str:
        """One line for people (the first line of the content)."""
        first = self.content.splitlines()[0] if self.content else ""
        more = " ..." if self.content.count("\n") > 1 else ""
        return f"write {self.path} (mode {self.mode}, {self.owner}): `{first}`{more}"


@dataclass(frozen=True)
class Command:
    """A command to run; ``live_only`` when it needs the running system (reload, restart)."""

    argv: tuple[str, ...]
    live_only: bool = True
    undo: tuple[str, ...] | None = None
    reversible: bool = False
    kind: Literal["command"] = "command"

    def describe(self) -> str:
        """One line for people."""
        return f"run `{shlex.join(self.argv)}`" + ("" if self.live_only else " (also inside a --root tree)")


@dataclass(frozen=True)
class Action:
    """One of hostguard's own audited actions (quarantine, kill, block, upgrade) with its arguments."""

    action: str
    args: tuple[tuple[str, str], ...] = ()
    kind: Literal["action"] = "action"

    def describe(self) -> str:
        """One line for people."""
        return f"hostguard {self.action} " + " ".join(f"{k}={v}" for k, v in self.args)


Step = Edit | DeleteLine | Write | Command | Action


@dataclass(frozen=True)
class Param:
    """A value only the owner knows, which a manual fix needs."""

    name: str
    meaning: str
    example: str


@dataclass(frozen=True)
class Remediation:
    """How to fix a finding: steps to apply, or ``manual`` with the reason and the ``params`` it needs."""

    summary: str
    steps: tuple[Step, ...] = ()
    manual: str | None = None
    params: tuple[Param, ...] = ()

    @classmethod
    def by_hand(cls, summary: str, reason: str, *params: Param) -> Remediation:
        """A fix only the owner can make: what to do, and why hostguard cannot write it as steps."""
        return cls(summary, (), reason, tuple(params))

    def placeholders(self) -> list[str]:
        """Placeholder-looking words in the steps (there must be none: unknown values belong in params)."""
        found = []
        for step in self.steps:
            for value in _step_texts(step):
                found += [m.group(0) for m in PLACEHOLDER.finditer(value)]
                found += [p.name for p in self.params if re.search(rf"\b{re.escape(p.name)}\b", value)]
        return found

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of a finding's ``remediation``."""
        return {"summary": self.summary, "steps": [_step_dict(s) for s in self.steps], "manual": self.manual,
                "params": [{"name": p.name, "meaning": p.meaning, "example": p.example} for p in self.params]}

    def lines(self) -> list[str]:
        """The fix for people: the summary, then each step, then what only the owner can do."""
        out = [self.summary, *(f"{i}. {s.describe()}" for i, s in enumerate(self.steps, 1))]
        if self.manual:
            out.append(f"By hand: {self.manual}")
        out += [f"  {p.name}: {p.meaning} (e.g. {p.example})" for p in self.params]
        return out


def _step_texts(step: Step) -> list[str]:
    if isinstance(step, Edit):
        return [step.new]
    if isinstance(step, Write):
        return [step.content]
    if isinstance(step, Command):
        return list(step.argv)
    return []


def _step_dict(step: Step) -> dict[str, Any]:
    if isinstance(step, Edit):
        return {"kind": "edit", "path": step.path, "line": step.line, "old": step.old, "new": step.new}
    if isinstance(step, DeleteLine):
        return {"kind": "delete_line", "path": step.path, "line": step.line, "old": step.old}
    if isinstance(step, Write):
        return {"kind": "write", "path": step.path, "content": step.content, "mode": step.mode, "owner": step.owner}
    if isinstance(step, Command):
        return {"kind": "command", "argv": list(step.argv), "live_only": step.live_only,
                "undo": list(step.undo) if step.undo is not None else None, "reversible": step.reversible}
    return {"kind": "action", "action": step.action, **dict(step.args)}
