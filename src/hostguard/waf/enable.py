"""``hostguard waf enable|disable --server nginx|apache``: a :class:`~hostguard.waf.servers.ServerPlan` written
through hostguard's fix machinery, and taken back byte for byte.

A web server's configuration is changed the way ``hostguard fix`` changes one (``respond/records.py``,
``respond/apply.py``): every file the plan touches is copied into ``<state>/fixes/<ID>/`` before anything is
written, the new files go through the safe write path (directory descriptors, ``O_NOFOLLOW``, atomic
rename, mode and owner kept), the server's own configuration test judges the result (``nginx -t``,
``apache2ctl configtest``; on a ``--root`` tree inside a private mount namespace,
``respond.validate.server_config_test``), and only then is the running server reloaded. A rejected
configuration or a failed reload puts every file back and reloads again: the server keeps serving with what
it had.

Each enable is a fix record (check ``waf.enable.<server>``): ``hostguard fix --list`` shows it and ``fix --undo
ID`` takes back that one. ``waf disable`` takes back all of a server's enables at once: each file returns to
what it was before the first of them (a file they created is removed), after checking that nobody changed
any of them since (a file that differs from what hostguard left is named, and nothing is touched). The
disable is itself a record (``waf.disable.<server>``), validated, reloaded and rolled back like an enable.

Nothing here prints: ``out`` is given.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hostguard.remediation import Write
from hostguard.respond import records, timer
from hostguard.respond.apply import ApplyError, apply
from hostguard.respond.records import FixRecord, RecordError
from hostguard.respond.validate import server_config_test
from hostguard.store.state import StateStore
from hostguard.waf.servers import FileChange, ServerPlan

__all__ = ["ChangeError", "Target", "disable", "enable", "preview"]

Out = Callable[[str], None]
UNITS = {"nginx": "nginx", "apache": "apache2"}
PID_FILES = {"nginx": "/run/nginx.pid", "apache": "/run/apache2/apache2.pid"}
RELOAD_WITHOUT_SYSTEMD = {"nginx": ("nginx", "-s", "reload"), "apache": ("apache2ctl", "graceful")}
SHOWN_LINES = 40   # a new file longer than this is summed up in the preview unless --dry-run asks for all
TIMEOUT = 120
PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"


@dataclass(frozen=True)
class Target:
    """Where the change goes: this host (``root`` None: validated, then the server reloaded) or a tree."""

    state_dir: str
    host_key: str
    root: str | None = None

    @property
    def where(self) -> str:
        """The root the files are written under."""
        return os.path.abspath(self.root) if self.root else "/"

    @property
    def live(self) -> bool:
        """Whether the running server is reloaded."""
        return self.root is None


class ChangeError(Exception):
    """The change cannot be made safely (a file to write is a link or unreadable, a disable would lose
    someone's change): nothing was touched."""


def preview(target: Target, changes: tuple[FileChange, ...], full: bool) -> list[str]:
    """A unified diff per file (a long new file summed up in one line unless ``full``); :class:`ChangeError`
    when a file cannot be read as a regular file (a link is never written through)."""
    lines: list[str] = []
    for change in changes:
        try:
            found = records.read_file(target.where, change.path)
        except RecordError as exc:
            raise ChangeError(str(exc)) from exc
        before = found[0] if found else b""
        after = change.content or b""
        new = after.decode("utf-8", "replace").splitlines(keepends=True)
        old = before.decode("utf-8", "replace").splitlines(keepends=True)
        if found is None and not full and len(new) > SHOWN_LINES:
            lines.append(f"  new file {change.path} ({len(new)} lines; --dry-run shows it)")
            continue
        if change.content is None and not full and len(old) > SHOWN_LINES:
            lines.append(f"  removed {change.path} ({len(old)} lines; --dry-run shows them)")
            continue
        diff = difflib.unified_diff(old, new, f"a{change.path}" if found else "/dev/null",
                                    f"b{change.path}" if change.content is not None else "/dev/null")
        lines += ["  " + d.rstrip("\n") for d in diff]
    return lines


def _run(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                              env={**os.environ, "PATH": PATH})
    except FileNotFoundError:
        return False, f"{argv[0]}: not installed"
    except subprocess.TimeoutExpired:
        return False, f"{argv[0]}: no answer within {TIMEOUT} s"
    return done.returncode == 0, " ".join((done.stderr + done.stdout).split())[:500]


def _running(kind: str) -> bool:
    """Whether the server runs here (its pid file names a live process)."""
    try:
        with open(PID_FILES[kind], encoding="ascii") as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return False
    return pid > 0 and os.path.exists(f"/proc/{pid}")


def reload_argv(kind: str) -> list[str] | None:
    """How the running server reads its new configuration: systemd's unit when systemd runs here, else the
    server's own signal when it runs; None when it does not run (it reads the files when it starts)."""
    if timer.systemd_runs():
        return ["systemctl", "try-reload-or-restart", UNITS[kind]]
    return list(RELOAD_WITHOUT_SYSTEMD[kind]) if _running(kind) else None


def _write_steps(target: Target, changes: tuple[FileChange, ...],
                 keep: dict[str, records.FileRecord] | None = None) -> list[Write]:
    """Write steps for the changes with content: an existing file keeps its mode and owner, a new one gets the
    change's mode (or the one ``keep`` recorded for it: a disable puts a file back as it was)."""
    steps = []
    for change in changes:
        if change.content is None:
            continue
        found = records.read_file(target.where, change.path)
        kept = (keep or {}).get(change.path)
        if kept is not None and kept.mode is not None:
            mode, owner = kept.mode, f"{kept.uid or 0}:{kept.gid or 0}"
        elif found is not None:
            mode, owner = found[1].st_mode & 0o7777, f"{found[1].st_uid}:{found[1].st_gid}"
        else:
            mode, owner = change.mode, "0:0"
        steps.append(Write(change.path, change.content.decode("utf-8", "surrogateescape"), f"{mode:04o}", owner))
    return steps


def _change(state: StateStore, target: Target, kind: str, check: str, title: str, fingerprint: str,
            changes: tuple[FileChange, ...], out: Out, keep: dict[str, records.FileRecord] | None = None
            ) -> FixRecord | None:
    """Back up, write, validate, reload; roll back on any failure. The record when it held, else None."""
    from hostguard.respond.fix import undo_changes

    fix_id, directory = records.new_record_dir(Path(target.state_dir), datetime.now(UTC))
    record = FixRecord(fix_id, target.where, target.host_key, fingerprint, check, title,
                       datetime.now(UTC).isoformat(timespec="seconds"), session=os.getsid(0))

    def end(status: str, reason: str, rollback: bool = False) -> FixRecord | None:
        notes = undo_changes(record, directory) if rollback else []
        record.status = status
        record.notes += [*notes, reason]
        record.save(directory)
        state.audit(target.host_key, check, kind, reason, datetime.now(UTC).isoformat(timespec="seconds"),
                    json.dumps({"fix": fix_id, "root": target.where, "files": [c.path for c in changes],
                                "notes": notes}, sort_keys=True))
        for note in notes:
            out(f"  warning: {note}")
        return record if status == records.APPLIED else None

    paths = [c.path for c in changes]
    try:
        records.back_up(record, directory, target.where, paths)
    except (RecordError, OSError) as exc:
        return end(records.FAILED, f"no backup possible: {exc}")
    try:
        apply(_write_steps(target, changes, keep), target.where)
        for change in changes:
            if change.content is None:
                records.remove(target.where, change.path)
    except (ApplyError, RecordError, OSError) as exc:
        return end(records.FAILED, f"refused: {exc}", rollback=True)
    records.record_after(record, directory, target.where)
    verdict = server_config_test(kind, target.where)
    out(f"  {verdict.detail}")
    record.notes.append(verdict.detail)
    if verdict.ok is False:
        return end(records.ROLLED_BACK, f"rolled back: {verdict.detail}", rollback=True)
    if target.live:
        argv = reload_argv(kind)
        if argv is None:
            out(f"  {kind} is not running: it reads the new configuration when it starts")
        else:
            ok, text = _run(argv)
            record.reload.append(argv)   # run again after a rollback or an undo: the server reads the old files
            if not ok:
                return end(records.ROLLED_BACK, f"rolled back: `{' '.join(argv)}` failed: {text}", rollback=True)
            out(f"  reloaded: {' '.join(argv)}")
    return end(records.APPLIED, "done")


def enable(state: StateStore, target: Target, plan: ServerPlan, out: Out, dry_run: bool = False) -> int:
    """Write the plan (``dry_run``: only show it). 0 when it holds (or there was nothing to change), 1 when the
    server refused it and everything was put back."""
    for note in plan.notes:
        out(f"note: {note}")
    where = "" if target.live else f" (tree {target.where})"
    what = f"ModSecurity ({plan.engine}) in {plan.kind}" + (f" for site {plan.site}" if plan.site else "")
    if not plan.changes:
        out(f"{what}{where}: already enabled as [waf] asks, nothing to change")
        return 0
    out(f"{what}{where}:")
    for line in preview(target, plan.changes, full=dry_run):
        out(line)
    if dry_run:
        out("dry run: nothing changed")
        return 0
    fingerprint = hashlib.sha256(f"waf.enable:{plan.kind}:{plan.site or ''}".encode()).hexdigest()
    record = _change(state, target, plan.kind, f"waf.enable.{plan.kind}", what, fingerprint, plan.changes, out)
    if record is None:
        out(f"not enabled: {what}: everything was put back as it was")
        return 1
    out(f"enabled: {what} (fix {record.id}); audit log {plan.audit_log} (`hostguard waf ingest --server {plan.kind}`)")
    out(f"  undo with: hostguard waf disable --server {plan.kind}" + ("" if target.live else f" --root {target.where}"))
    return 0


def disable(state: StateStore, target: Target, kind: str, out: Out, dry_run: bool = False) -> int:
    """Put back every file hostguard's enables of ``kind`` changed, as it was before the first of them."""
    enables = [r for r in records.all_records(Path(target.state_dir))
               if r.check == f"waf.enable.{kind}" and r.root == target.where
               and r.status in (records.APPLIED, records.CONFIRMED)]
    if not enables:
        out(f"hostguard has not enabled ModSecurity in {kind}" + ("" if target.live else f" on {target.where}") +
            ": nothing to disable")
        return 0
    first: dict[str, tuple[records.FileRecord, Path]] = {}
    last: dict[str, records.FileRecord] = {}
    for record in enables:   # oldest first
        directory = records.fixes_dir(Path(target.state_dir)) / record.id
        for item in record.files:
            first.setdefault(item.path, (item, directory))
            last[item.path] = item
    try:
        return _disable(state, target, kind, out, dry_run, enables, first, last)
    except (records.RecordError, OSError) as exc:   # a recorded file turned into a link, an unreadable backup
        raise ChangeError(f"ModSecurity in {kind} cannot be put back: {exc}: nothing was changed") from exc


def _disable(state: StateStore, target: Target, kind: str, out: Out, dry_run: bool, enables: list[FixRecord],
             first: dict[str, tuple[records.FileRecord, Path]], last: dict[str, records.FileRecord]) -> int:
    changed = [path for path, item in last.items() if records.current_sha(target.where, path) != item.sha_after]
    if changed:
        raise ChangeError(f"{', '.join(changed)} changed since hostguard enabled ModSecurity in {kind} (sha256 "
                           "differs): nothing was changed; undo that change, or edit the configuration by hand")
    changes = []
    for path, (item, directory) in first.items():
        if item.backup is None:
            content = None
        else:
            content = (directory / item.backup).read_bytes()
            if records.sha256(content) != item.sha_before:
                raise ChangeError(f"the backup of {path} in {directory} is damaged (sha256 differs): nothing was "
                                   "changed")
        if records.current_sha(target.where, path) != records.sha256(content):
            changes.append(FileChange(path, content))
    ids = ", ".join(r.id for r in enables)
    out(f"ModSecurity in {kind}: back to the configuration before hostguard's enable (fix {ids}):")
    for line in preview(target, tuple(changes), full=dry_run):
        out(line)
    if dry_run:
        out("dry run: nothing changed")
        return 0
    fingerprint = hashlib.sha256(f"waf.disable:{kind}".encode()).hexdigest()
    done = _change(state, target, kind, f"waf.disable.{kind}", f"ModSecurity out of {kind}", fingerprint,
                   tuple(changes), out, keep={p: item for p, (item, _) in first.items()})
    if done is None:
        out(f"not disabled: {kind} refused its old configuration; hostguard's stays in place")
        return 1
    for enabled in enables:
        enabled.status = records.UNDONE
        enabled.notes.append(f"disabled by fix {done.id}")
        enabled.save(records.fixes_dir(Path(target.state_dir)) / enabled.id)
    out(f"disabled: ModSecurity out of {kind} (fix {done.id}): every file is as it was before")
    return 0
