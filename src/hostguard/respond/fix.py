"""``hostguard fix``: apply findings' remediation steps, safely, with backups, validation, rollback and undo.

Owners want a finding fixed without pasting, but a fix is a change to a live server made by a tool running
as root, so it goes in small, checked moves, one finding at a time:

1. scan, pick the findings (by fingerprint, or ``--all`` at or above ``--severity``); findings without
   steps (or with steps that cannot run here) are listed as by-hand and skipped;
2. show every file change as a unified diff and every command, and ask (``--dry-run`` stops here);
3. per finding: scan its family again and re-plan (an earlier fix may have moved its line; ``apply``
   refuses a stale line anyway), back up every file it touches into ``<state>/fixes/<ID>/``, apply the
   file steps through ``respond/apply.py``, run the commands that change files (shadow tools; under
   ``--root`` with ``-R ROOT``), validate with the service's own tool, then reload (live only), re-scan
   the family and roll back by itself when validation, a command or the re-scan fails (the finding is
   still there, or a new finding at medium or above appeared);
4. a live SSH or firewall fix arms a timed rollback the owner cancels from a new session
   (``--confirm ID``): a re-scan cannot see that the remote owner was locked out;
5. ``Action("kill")`` steps (processes, connections) run only with ``--kill`` and only live, through
   ``respond/kill.py`` (pidfd, start time and exe re-checked); a kill is not reversible, so it is audited on
   its own and neither a rollback nor ``--undo`` claims to bring the process back. Before the signal, the
   process's program is copied into ``<state>/evidence/<sha256>`` (a deleted file or a memfd would
   otherwise be gone with it): the audit record and the output name the copy, or say why there is none.
6. ``Action("quarantine")`` steps (malware) move the file into ``<state>/quarantine/`` through
   ``respond/quarantine.py`` (path walked with ``O_NOFOLLOW``, device and inode re-checked, sha256
   verified); a process running it is killed first only with ``--kill``. ``hostguard quarantine restore ID``
   brings it back, not ``--undo`` (the ledger, not the fix record, holds it).
7. ``Action("upgrade")`` steps (vulnerable packages, waiting security updates) run the package manager's
   printed command through ``respond/upgrade.py`` (live only: a tree's packages are upgraded inside that
   system): accepted only in the shapes hostguard prints, a language environment's manager as that
   environment's owner. An upgrade is not reversible: it is noted on its own, and when the re-scan still
   finds the problem the fix ends "not fixed" (there is nothing to roll back).

Every fix, rollback, undo and confirm is recorded in the audit log. Nothing here prints: ``out`` is given.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hostguard.config import Config
from hostguard.engine.runner import now, now_iso, run_scan
from hostguard.engine.suppress import FingerprintError, resolve_fingerprints
from hostguard.findings import Finding, Severity, SkipReason
from hostguard.host.base import Host
from hostguard.remediation import Action, Command, DeleteLine, Edit, Step, Write
from hostguard.respond import records, timer
from hostguard.respond.apply import ApplyError, apply
from hostguard.respond.kill import DEFAULT_GRACE, GONE, KEEP_LIMIT, kill_process
from hostguard.respond.quarantine import QuarantineError, quarantine, request_of
from hostguard.respond.records import FixRecord, RecordError
from hostguard.respond.upgrade import ENVIRONMENT_MANAGERS, Upgrade, UpgradeError
from hostguard.respond.upgrade import prepare as prepare_upgrade
from hostguard.respond.upgrade import run as run_upgrade
from hostguard.respond.validate import services, validate
from hostguard.store.state import StateStore

# Tools that act on a tree with ``-R ROOT`` (they chroot into it) and the files they may rewrite.
ROOTED_TOOLS = frozenset({"usermod", "pwconv", "chage", "passwd"})
# (with the backup copies and the lock file they leave: an undo removes them when they were not there)
ACCOUNT_FILES = tuple(f"/etc/{name}{end}" for name in ("passwd", "shadow", "group", "gshadow", "subuid", "subgid")
                      for end in ("", "-")) + ("/etc/.pwd.lock",)
# Live fixes of these services arm a timed rollback: a mistake there cuts the remote owner off.
GUARDED_SERVICES = frozenset({"sshd", "nftables", "iptables"})
GUARDED_PREFIXES = ("/etc/ufw/", "/etc/firewalld/")
DEFAULT_ROLLBACK_SECONDS = 120
COMMAND_TIMEOUT = 300
KILL_NOTE = "kill (not reversible): "   # a record's note per kill; --undo cannot bring a process back
UPGRADE_NOTE = "package manager ran (not reversible by --undo): "   # a record's note per upgrade or refresh
# what an upgrade leaves to do: said after it (a reboot, a restart), never taken for a problem the fix made
AFTER_UPGRADE = frozenset({"vulns.kernel_not_running", "vulns.deleted_library"})
QUARANTINE_NOTE = "quarantine: "   # a record's note per quarantined file; `hostguard quarantine restore` undoes it
EVIDENCE_DIR = "evidence"   # <state>/evidence/<sha256>: programs of killed processes, never deleted

Out = Callable[[str], None]
Ask = Callable[[str], bool]


class FixError(Exception):
    """The fix cannot be done as asked (unknown fingerprint or id, a changed file, a refused confirm): exit 2."""


@dataclass(frozen=True)
class FixSettings:
    """How ``fix`` runs: on this host (``root`` None) or a tree, asking or not, and the rollback timer."""

    state_dir: str
    root: str | None = None
    dry_run: bool = False
    yes: bool = False
    rollback_after: int | None = None   # seconds; on a tree a timer is armed only when this is given
    config_path: str | None = None
    kill: bool = False                  # carry out Action("kill") steps (live only)
    kill_grace: float = DEFAULT_GRACE
    keep_limit: int = KEEP_LIMIT        # bytes: a killed process's program bigger than this is not kept
    upgrade_env: tuple[str, ...] = ()   # variables given to a language environment's upgrade run by its owner

    @property
    def evidence_dir(self) -> str:
        """Where the programs of killed processes are kept (content-addressed by SHA-256)."""
        return os.path.join(self.state_dir, EVIDENCE_DIR)

    @property
    def live(self) -> bool:
        """Whether the fix changes the running system (and may reload services)."""
        return self.root is None

    @property
    def where(self) -> str:
        """The root the steps apply under."""
        return os.path.abspath(self.root) if self.root else "/"


@dataclass
class Plan:
    """One finding's fix as it can be done here: file steps, commands to run (as they will run), what is
    skipped and why, or why it cannot be done here at all (``blocked``: the owner does it by hand)."""

    finding: Finding
    file_steps: list[Step] = field(default_factory=list)
    before: list[tuple[list[str], list[str] | None]] = field(default_factory=list)   # (argv, undo) first
    after: list[tuple[list[str], list[str] | None]] = field(default_factory=list)   # (argv, undo) live, validated
    skipped: list[str] = field(default_factory=list)
    kills: list[Action] = field(default_factory=list)   # Action("kill") steps, run with --kill only
    quarantines: list[Action] = field(default_factory=list)   # Action("quarantine") steps
    upgrades: list[Upgrade] = field(default_factory=list)   # Action("upgrade") steps, as they will run
    removed: list[str] = field(default_factory=list)    # files an ``rm`` step removes (host paths)
    blocked: str | None = None

    @property
    def paths(self) -> list[str]:
        """Every file the fix may change (the account files when a shadow tool runs, the files an ``rm``
        removes: backed up like the others, so an undo or a rollback puts them back)."""
        paths = [s.path for s in self.file_steps if isinstance(s, Edit | DeleteLine | Write)]
        if any(argv[0] in ROOTED_TOOLS for argv, _ in self.before):
            paths += ACCOUNT_FILES
        return list(dict.fromkeys([*paths, *self.removed]))


def make_plan(finding: Finding, settings: FixSettings) -> Plan:
    """What fixing ``finding`` means here; under ``--root`` a shadow tool gets ``-R ROOT`` and a command that
    needs the running system is skipped (and said so)."""
    plan = Plan(finding)
    steps = finding.remediation.steps
    if not steps:
        plan.blocked = finding.remediation.manual or "no steps: the fix needs the owner's judgement"
        return plan
    for step in steps:
        if isinstance(step, Action) and step.action == "kill":
            _plan_kill(plan, step, settings)
        elif isinstance(step, Action) and step.action == "quarantine":
            plan.quarantines.append(step)
        elif isinstance(step, Action) and step.action in ("upgrade", "refresh"):
            _plan_upgrade(plan, step, settings)
        elif isinstance(step, Action):
            plan.blocked = f"`{step.describe()}` is an action of its own, not run by fix"
        elif isinstance(step, Command):
            _plan_command(plan, step, settings)
        else:
            plan.file_steps.append(step)
    if (finding.remediation.manual and plan.blocked is None and not plan.file_steps and not plan.before
            and not plan.kills and not plan.quarantines and not plan.upgrades):
        plan.blocked = finding.remediation.manual
    return plan


def _plan_kill(plan: Plan, step: Action, settings: FixSettings) -> None:
    if not settings.live:
        plan.blocked = f"`{step.describe()}` stops a running process: live only, never under --root"
    elif not settings.kill:
        plan.blocked = f"`{step.describe()}`: `hostguard fix --kill` would do it (not reversible)"
    elif plan.blocked is None:
        plan.kills.append(step)


def _plan_upgrade(plan: Plan, step: Action, settings: FixSettings) -> None:
    args = dict(step.args)
    command = args.get("command", "")
    if not settings.live:
        if args.get("manager") in ENVIRONMENT_MANAGERS:
            where = f" in {args['cwd']}" if args.get("cwd") else ""
            plan.blocked = (f"`{command}` changes a language environment of that system: run it there{where}, as the "
                            "environment's owner")
        else:
            plan.blocked = (f"`{command}` changes a running system's packages: run it inside that system (a mounted "
                            f"image: `chroot {settings.where} {command}`)")
        return
    try:
        plan.upgrades.append(prepare_upgrade(step, settings.upgrade_env))
    except UpgradeError as exc:
        plan.blocked = f"`{command}` is not run: {exc}"


def kill_args(step: Action) -> tuple[int, str, str | None]:
    """pid, start time and exe of a kill step; ValueError when the step does not name them."""
    args = dict(step.args)
    if "pid" not in args or "start_time" not in args:
        raise ValueError(f"`{step.describe()}` names no pid or start time")
    return int(args["pid"]), args["start_time"], args.get("exe") or None


def removed_by(argv: Sequence[str]) -> list[str]:
    """The files an ``rm`` command removes (its operands), none for any other command."""
    if not argv or argv[0] != "rm":
        return []
    return list(argv[argv.index("--") + 1:]) if "--" in argv else [a for a in argv[1:] if not a.startswith("-")]


def in_tree(root: str, path: str) -> str | None:
    """Where ``path`` of the tree at ``root`` is on this machine: its directory resolved inside the tree (None
    when a link leads out of it), its last component as it is (``rm`` removes a link, never its target)."""
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.join(real_root, os.path.dirname(path).lstrip("/")))
    if parent != real_root and not parent.startswith(real_root.rstrip("/") + "/"):
        return None
    return os.path.join(parent, os.path.basename(path))


def on_tree(argv: Sequence[str], root: str) -> list[str] | None:
    """A command as it runs on the tree at ``root``, through the tool's own way of working on a tree; None when
    it has none. Shadow tools take ``-R ROOT``; ``systemctl`` (system and ``--global`` scope) ``--root=ROOT``
    (a user's manager has no offline mode); ``rm`` gets its operands inside the tree."""
    tool, *rest = argv
    if tool in ROOTED_TOOLS:
        return [tool, "-R", root, *rest]
    if tool == "systemctl" and not any(a == "--user" or a.startswith("--machine") for a in rest):
        return [tool, f"--root={root}", *rest]
    if tool == "rm":
        targets = [in_tree(root, path) for path in removed_by(argv)]
        if not targets or None in targets:
            return None
        return [*argv[:len(argv) - len(targets)], *(t for t in targets if t)]
    return None


def _plan_command(plan: Plan, step: Command, settings: FixSettings) -> None:
    plan.removed += removed_by(step.argv)
    if settings.live:
        if step.live_only:
            plan.after.append((list(step.argv), list(step.undo) if step.undo else None))
        else:
            plan.before.append((list(step.argv), list(step.undo) if step.undo else None))
        return
    if step.live_only:
        plan.skipped.append(f"`{' '.join(step.argv)}` needs the running system: not run under --root")
        return
    argv = on_tree(step.argv, settings.where)
    undo = on_tree(step.undo, settings.where) if step.undo else None
    if argv is None or (step.undo and undo is None):
        plan.blocked = f"`{' '.join(step.argv)}` cannot be run on a tree: run it inside the system"
    else:
        plan.before.append((argv, undo))


def preview(plan: Plan, root: str) -> list[str]:
    """The plan for people: a unified diff per file, then the commands and what is skipped."""
    lines: list[str] = []
    by_path: dict[str, list[Step]] = {}
    for step in plan.file_steps:
        assert isinstance(step, Edit | DeleteLine | Write)
        by_path.setdefault(step.path, []).append(step)
    for path, steps in by_path.items():
        found = records.read_file(root, path)
        before = found[0] if found else b""
        after, problem = _edited(before, steps)
        if problem:
            lines.append(f"  {path}: {problem}")
            continue
        old = before.decode("utf-8", "replace").splitlines(keepends=True)
        new = after.decode("utf-8", "replace").splitlines(keepends=True)
        diff = difflib.unified_diff(old, new, f"a{path}" if found else "/dev/null", f"b{path}")
        lines += ["  " + d.rstrip("\n") for d in diff]
    lines += [f"  run: {' '.join(argv)}" for argv, _ in plan.before]
    lines += [f"  after validation, run: {' '.join(argv)}" for argv, _ in plan.after]
    lines += [f"  skipped: {s}" for s in plan.skipped]
    lines += [f"  kill (SIGTERM, then SIGKILL; not reversible): {s.describe().removeprefix('hostguard kill ')}"
              for s in plan.kills]
    lines += [f"  quarantine (moved into the state directory, restorable): {s.describe().removeprefix('hostguard ')}"
              for s in plan.quarantines]
    lines += [f"  package manager (not reversible): {u.describe()}" for u in plan.upgrades]
    if plan.kills and plan.finding.remediation.manual:
        lines.append(f"  by hand: {plan.finding.remediation.manual}")
    return lines


def _edited(data: bytes, steps: list[Step]) -> tuple[bytes, str | None]:
    """The file after the steps, for the diff (``apply`` checks the same again when it writes)."""
    for step in steps:
        if isinstance(step, Write):
            data = step.content.encode("utf-8", "surrogateescape")
    lines = data.decode("utf-8", "surrogateescape").splitlines(keepends=True)
    line_steps = sorted((s for s in steps if isinstance(s, Edit | DeleteLine)), key=lambda s: s.line, reverse=True)
    for step in line_steps:
        if not 1 <= step.line <= len(lines) or lines[step.line - 1].rstrip("\r\n") != step.old:
            return data, f"line {step.line} no longer reads `{step.old}` (changed since the scan)"
        ending = lines[step.line - 1][len(lines[step.line - 1].rstrip("\r\n")):] or "\n"
        if isinstance(step, Edit):
            lines[step.line - 1] = "".join(part + ending for part in step.new.split("\n"))
        else:
            del lines[step.line - 1]
    return "".join(lines).encode("utf-8", "surrogateescape"), None


def _run(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except FileNotFoundError:
        return False, f"{argv[0]}: not installed"
    except subprocess.TimeoutExpired:
        return False, f"{argv[0]}: no answer within {COMMAND_TIMEOUT} s"
    return done.returncode == 0, " ".join((done.stderr + done.stdout).split())[:500]


def guarded(paths: Iterable[str]) -> bool:
    """Whether a change to ``paths`` could cut a remote owner off (SSH or the firewall)."""
    paths = list(paths)
    return bool(GUARDED_SERVICES & services(paths).keys()) or any(p.startswith(GUARDED_PREFIXES) for p in paths)


class Fixer:
    """One ``hostguard fix`` run: scan, choose, show, ask, then fix one finding at a time."""

    def __init__(self, host: Host, config: Config, state: StateStore, key: str, settings: FixSettings,
                 out: Out, ask: Ask) -> None:
        self.host, self.config, self.state, self.key = host, config, state, key
        self.settings, self.out, self.ask = settings, out, ask
        self.label = self.settings.where if self.settings.root else None
        self.fresh: dict[str, dict[str, Finding]] = {}   # per family, findings since the last change
        self.shown: dict[str, list[Upgrade]] = {}   # per fingerprint, the package manager runs the owner was shown
        self.not_looked: set[str] = set()   # checks the last scan could not run (skipped)

    def _scan(self, only: list[str] | None = None) -> list[Finding]:
        report = run_scan(self.host, self.config, self.state, only=only, root_label=self.label, record=False).report
        # "unsupported" lists what a check does not cover (third-party packages); the others mean it could not
        # look, or not everywhere
        self.not_looked = {s.check for s in report.skipped if s.reason != SkipReason.UNSUPPORTED}
        return list(report.findings)

    def _family_now(self, family: str) -> dict[str, Finding]:
        if family not in self.fresh:
            self.fresh[family] = {f.fingerprint: f for f in self._scan([family])}
        return self.fresh[family]

    def run(self, fingerprints: list[str], everything: bool, severity: Severity, only: list[str] | None = None) -> int:
        """Fix the chosen findings (of the families or checks ``only`` names, default all); 0 when every fix
        held, 1 when one was refused or rolled back."""
        found = self._scan(only)
        for f in found:
            self.fresh.setdefault(f.id.split(".", 1)[0], {})[f.fingerprint] = f
        if everything:
            chosen = [f for f in sorted(found, key=lambda f: (-f.severity.rank, f.id, f.fingerprint))
                      if f.severity.rank >= severity.rank]
        else:
            try:
                wanted = resolve_fingerprints(fingerprints, {f.fingerprint for f in found},
                                              "in a scan of this host now (fixed, accepted or suppressed?)")
            except FingerprintError as exc:
                raise FixError(str(exc)) from exc
            by_fp = {f.fingerprint: f for f in found}
            chosen = [by_fp[fp] for fp in wanted]
        plans = [make_plan(f, self.settings) for f in chosen]
        self.shown = {p.finding.fingerprint: p.upgrades for p in plans}
        todo = [p for p in plans if p.blocked is None]
        for p in plans:
            if p.blocked is not None:
                self.out(f"by hand: [{p.finding.severity}] {p.finding.id} {p.finding.fingerprint[:12]} "
                         f"{p.finding.title}\n  {p.finding.remediation.summary}\n  why: {p.blocked}")
        if not todo:
            self.out("nothing to fix with steps" + (" at or above " + severity if everything else ""))
            return 0
        for p in todo:
            self.out(f"fix: [{p.finding.severity}] {p.finding.id} {p.finding.fingerprint[:12]} {p.finding.title}")
            for line in preview(p, self.settings.where):
                self.out(line)
        if self.settings.dry_run:
            self.out(f"dry run: {len(todo)} fix(es) shown, nothing changed")
            return 0
        if not self.settings.yes and not self.ask(f"apply {len(todo)} fix(es) to {self.settings.where}? [y/N] "):
            self.out("nothing changed")
            return 0
        failed = 0
        for p in todo:
            if not self._fix_one(p.finding.fingerprint, p.finding.id.split(".", 1)[0]):
                failed += 1
        return 1 if failed else 0

    def _fix_one(self, fp: str, family: str) -> bool:
        before = dict(self._family_now(family))
        finding = before.get(fp)
        if finding is None:
            self.out(f"{fp[:12]}: no longer found (an earlier fix took care of it)")
            return True
        plan = make_plan(finding, self.settings)
        if plan.blocked is not None:
            self.out(f"{fp[:12]}: now needs doing by hand: {plan.blocked}")
            return False
        if plan.upgrades != self.shown.get(fp, plan.upgrades):
            self.out(f"{fp[:12]}: not fixed: its package manager would now run otherwise than shown "
                     f"({'; '.join(u.describe() for u in plan.upgrades)}): run fix again to see it")
            return False
        when = now()
        fix_id, directory = records.new_record_dir(Path(self.settings.state_dir), datetime.now(UTC))
        record = FixRecord(fix_id, self.settings.where, self.key, fp, finding.id, finding.title,
                           when.isoformat(timespec="seconds"), session=os.getsid(0))
        self.fresh.clear()
        try:
            records.back_up(record, directory, record.root, plan.paths)
        except RecordError as exc:
            return self._end(record, directory, records.FAILED, f"no backup possible: {exc}")
        try:
            apply(plan.file_steps, record.root)
        except ApplyError as exc:
            return self._rollback(record, directory, f"refused: {exc}", status=records.FAILED)
        for argv, undo in plan.before:
            ok, text = _run(argv)
            record.commands.append(argv)
            if undo:
                record.undo.append(undo)
            if not ok:
                return self._rollback(record, directory, f"`{' '.join(argv)}` failed: {text}")
        records.record_after(record, directory, record.root)
        for verdict in validate(plan.paths, record.root):
            self.out(f"  {verdict.service}: {verdict.detail}")
            record.notes.append(f"{verdict.service}: {verdict.detail}")
            if verdict.ok is False:
                return self._rollback(record, directory, f"validation failed: {verdict.detail}")
        for argv, undo in plan.after:
            ok, text = _run(argv)
            record.commands.append(argv)
            # A command with an undo changed the running system (``nft -f`` loaded a table, atomically: a
            # failed load left nothing): restoring the files does not unload it, its undo must run. One
            # without is a reload: run again after a restore, so the service reads the old config.
            if undo is None:
                record.reload.append(argv)
            elif ok:
                record.undo.append(undo)
            if not ok:
                return self._rollback(record, directory, f"`{' '.join(argv)}` failed: {text}")
        for step in plan.kills:
            problem = self._kill(record, step)
            if problem:
                return self._rollback(record, directory, problem)
        for step in plan.quarantines:
            problem = self._quarantine(record, step)
            if problem:
                return self._rollback(record, directory, problem)
        for upgrade in plan.upgrades:
            self.out(f"  running: {upgrade.describe()}")
            ok, text = run_upgrade(upgrade)
            if ok:
                record.notes.append(f"{UPGRADE_NOTE}{upgrade.describe()}")
            self.state.audit(self.key, "upgrade", upgrade.manager, f"{'done' if ok else 'failed'}: {text[-200:]}",
                             now_iso(), json.dumps({"argv": list(upgrade.argv), "cwd": upgrade.cwd, "uid": upgrade.uid,
                                                    "fix": record.id, "fingerprint": record.fingerprint}))
            if not ok:
                return self._rollback(record, directory, f"`{upgrade.describe()}` failed: {text}", status=records.FAILED)
        after = {f.fingerprint: f for f in self._scan([family])}
        self.fresh = {family: after}
        if plan.upgrades and not (plan.file_steps or plan.before or plan.after):
            for f in after.values():
                if f.fingerprint not in before and f.id in AFTER_UPGRADE:
                    self.out(f"  now: [{f.severity}] {f.id}: {f.title}")
            if fp in after:
                return self._end(record, directory, records.FAILED, "the package manager ran, but the re-scan still "
                                 "finds it")
            if finding.id in self.not_looked:
                return self._end(record, directory, records.FAILED, "the package manager ran, but the re-scan could "
                                 f"not look ({finding.id} was skipped): unverified")
        if fp in after:
            return self._rollback(record, directory, "the re-scan still finds it")
        new = [f for f_fp, f in after.items() if f_fp not in before and f.severity.rank >= Severity.MEDIUM.rank]
        # a kill changes no file: what appears meanwhile is not its doing, and restoring files would not undo it
        if new and (plan.file_steps or plan.before or plan.after):
            return self._rollback(record, directory, "the re-scan finds a new problem: " +
                                  "; ".join(f"[{f.severity}] {f.id}: {f.title}" for f in new))
        try:
            self._arm(record, plan)
        except OSError as exc:  # a live SSH or firewall fix without its safety net is not kept
            return self._rollback(record, directory, f"the timed rollback could not be armed: {exc}")
        return self._end(record, directory, records.APPLIED, "fixed")

    def _kill(self, record: FixRecord, step: Action) -> str | None:
        """Carry out one kill step, audit it and note it in the record; why it failed, or None."""
        try:
            pid, start, exe = kill_args(step)
        except ValueError as exc:
            return str(exc)
        result = kill_process(pid, start, exe, grace=self.settings.kill_grace,
                              evidence_dir=self.settings.evidence_dir, keep_limit=self.settings.keep_limit)
        kept = result.kept
        record.notes.append(f"{KILL_NOTE}pid {pid} start_time {start} exe {exe or '-'}: {result.outcome}, "
                            f"{result.detail}" + (f"; {kept.line()}" if kept else ""))
        detail = json.dumps({"pid": pid, "start_time": start, "exe": exe, "signals": list(result.signals),
                             "outcome": result.outcome, "fix": record.id, "fingerprint": record.fingerprint,
                             "check": record.check, "kept": kept.describe() if kept else None}, sort_keys=True)
        self.state.audit(self.key, "kill", str(pid), f"{result.outcome}: {result.detail}", now_iso(), detail)
        if kept is not None:   # before the kill's line: it was done before the signal
            self.out(f"  {kept.line()}" if kept.ok else f"  warning: {kept.line()}")
        self.out(f"  kill pid {pid}: {result.outcome} ({result.detail})")
        if result.stopped or result.outcome == GONE:   # gone is what was wanted; the re-scan has the last word
            return None
        return f"kill of pid {pid} {result.outcome}: {result.detail}"

    def _quarantine(self, record: FixRecord, step: Action) -> str | None:
        """Carry out one quarantine step (audited by respond/quarantine.py) and note it; why it failed, or None."""
        try:
            request = request_of(step)
            # the path as this machine sees it (under --root too): the ledger keeps it, and a restore, which
            # knows no root, puts the file back there and never into this host's own tree
            where = self.settings.where
            path = request.path if where in ("", "/") else os.path.join(where, request.path.lstrip("/"))
            done = quarantine(self.state, self.key, path, request.dev, request.ino, sha256=request.sha256,
                              rule=request.rule, reason=f"hostguard fix {record.id} ({record.check})",
                              kill=self.settings.kill and self.settings.live, kill_grace=self.settings.kill_grace)
        except (ValueError, QuarantineError) as exc:
            return f"quarantine refused: {exc}"
        record.notes.append(f"{QUARANTINE_NOTE}{path} is entry {done.entry.id} "
                            f"(hostguard quarantine restore {done.entry.id})")
        for line in done.lines():
            self.out(f"  {line}")
        return None

    def _arm(self, record: FixRecord, plan: Plan) -> None:
        wanted = self.settings.rollback_after
        if not ((self.settings.live and guarded(plan.paths)) or (wanted is not None and not self.settings.live)):
            return
        seconds = wanted if wanted is not None else DEFAULT_ROLLBACK_SECONDS
        use_systemd = self.settings.live and timer.systemd_runs()
        record.timer = timer.arm(os.path.abspath(self.settings.state_dir), record.id, seconds,
                                 self.settings.config_path, use_systemd)
        self.out(f"  rolled back in {seconds} s unless you confirm from a NEW session: hostguard fix --confirm "
                 f"{record.id}")

    def _rollback(self, record: FixRecord, directory: Path, reason: str, status: str = records.ROLLED_BACK) -> bool:
        self.fresh.clear()
        notes = undo_changes(record, directory)
        if status == records.ROLLED_BACK:
            self.state.audit(self.key, "rollback", record.id, reason, now_iso(), _detail(record, notes))
        return self._end(record, directory, status, reason, audit=status != records.ROLLED_BACK)

    def _end(self, record: FixRecord, directory: Path, status: str, reason: str, audit: bool = True) -> bool:
        record.status = status
        record.notes.append(reason)
        record.save(directory)
        if audit:
            self.state.audit(self.key, "fix", record.id, reason, now_iso(), _detail(record))
        word = {records.APPLIED: "fixed", records.ROLLED_BACK: "rolled back", records.FAILED: "not fixed"}[status]
        self.out(f"{word}: {record.check} {record.fingerprint[:12]} (fix {record.id}): {reason}")
        kills = [n for n in record.notes if n.startswith(KILL_NOTE)]
        if kills:
            self.out("  a kill is not reversible: the process is not brought back by a rollback or --undo")
        if any(n.startswith(UPGRADE_NOTE) for n in record.notes):
            self.out("  what the package manager did is not undone by --undo")
        if status == records.APPLIED and _reversible(record):
            self.out(f"  undo with: hostguard fix --undo {record.id}")
        return status == records.APPLIED


def _reversible(record: FixRecord) -> bool:
    """Whether ``--undo`` has anything to bring back (a fix that only killed a process has not)."""
    return bool(record.files or record.undo or record.commands) or not any(
        n.startswith((KILL_NOTE, QUARANTINE_NOTE, UPGRADE_NOTE)) for n in record.notes)


def _detail(record: FixRecord, notes: list[str] | None = None) -> str:
    return json.dumps({"fingerprint": record.fingerprint, "check": record.check, "root": record.root,
                       "files": [f.path for f in record.files if f.sha_before != f.sha_after or f.sha_after is None],
                       "commands": record.commands, **({"notes": notes} if notes else {})}, sort_keys=True)


def undo_changes(record: FixRecord, directory: Path) -> list[str]:
    """Undo what a fix did: its commands' undo (reverse order), then the files from their backups, then the
    reloads again (the service reads the old config). Returns what went wrong on the way."""
    notes = []
    for argv in reversed(record.undo):
        ok, text = _run(argv)
        if not ok:
            notes.append(f"`{' '.join(argv)}` failed: {text}")
    try:
        records.restore(record, directory)
    except RecordError as exc:
        notes.append(str(exc))
    for argv in record.reload:
        ok, text = _run(argv)
        if not ok:
            notes.append(f"`{' '.join(argv)}` failed: {text}")
    return notes


def undo(state: StateStore, state_dir: str, fix_id: str, out: Out, by_timer: bool = False) -> int:
    """``fix --undo ID``: restore a fix's backups, refusing (nothing changed) when a file changed since."""
    try:
        record, directory = records.load(Path(state_dir), fix_id)
    except RecordError as exc:
        raise FixError(str(exc)) from exc
    action = "rollback" if by_timer else "undo"
    if record.status not in (records.APPLIED, records.CONFIRMED):
        raise FixError(f"fix {fix_id} is {record.status}: nothing to undo")
    if not _reversible(record):
        moved = [n.removeprefix(QUARANTINE_NOTE) for n in record.notes if n.startswith(QUARANTINE_NOTE)]
        if moved:
            raise FixError(f"fix {fix_id} quarantined files: nothing for --undo; " + "; ".join(moved))
        raise FixError(f"fix {fix_id} killed a process: not reversible, nothing to undo")
    changed = records.changed_since(record)
    if changed:
        reason = f"refused: {', '.join(changed)} changed since the fix (sha256 differs); nothing was restored"
        state.audit(record.host_key, action, fix_id, reason, now_iso(), _detail(record))
        raise FixError(f"fix {fix_id}: {reason}")
    if not by_timer and timer.pending(record.timer, fix_id):
        out(timer.cancel(record.timer, fix_id))
    notes = undo_changes(record, directory)
    record.status = records.ROLLED_BACK if by_timer else records.UNDONE
    record.notes += notes or [f"{action} done"]
    # audited before the record says so: whoever sees the new status finds the audit row already there
    state.audit(record.host_key, action, fix_id, "timed rollback: not confirmed" if by_timer else "undone by the owner",
                now_iso(), _detail(record, notes))
    record.save(directory)
    for note in notes:
        out(f"warning: {note}")
    out(f"{'rolled back' if by_timer else 'undone'}: fix {fix_id} ({record.check} {record.fingerprint[:12]})")
    return 1 if notes else 0


def confirm(state: StateStore, state_dir: str, fix_id: str, out: Out) -> int:
    """``fix --confirm ID``: keep a live fix, cancelling its timed rollback; only from a new session."""
    try:
        record, directory = records.load(Path(state_dir), fix_id)
    except RecordError as exc:
        raise FixError(str(exc)) from exc
    if record.status != records.APPLIED or not record.timer:
        raise FixError(f"fix {fix_id} is {record.status}" + ("" if record.timer else " and has no rollback armed")
                       + ": nothing to confirm")
    if os.getsid(0) == record.session:
        raise FixError(f"confirm fix {fix_id} from a new session (log in again, e.g. a new SSH connection): "
                       "that you can still log in is what the confirmation proves")
    if not timer.pending(record.timer, fix_id):
        raise FixError(f"fix {fix_id}: its rollback is no longer waiting (it may be running now)")
    said = timer.cancel(record.timer, fix_id)
    record.status = records.CONFIRMED
    record.notes.append(f"confirmed: {said}")
    record.save(directory)
    state.audit(record.host_key, "confirm", fix_id, "confirmed from a new session", now_iso(), _detail(record))
    out(f"confirmed: fix {fix_id} stays ({said})")
    return 0


def listing(state_dir: str) -> list[str]:
    """``fix --list``: every fix with its status, oldest first."""
    lines = []
    for r in records.all_records(Path(state_dir)):
        status = r.status
        if status == records.APPLIED and r.timer:
            status += ", rollback armed" if timer.pending(r.timer, r.id) else ", rollback ended"
        where = "" if r.root == "/" else f" (tree {r.root})"
        lines.append(f"{r.id}  {status:<24} {r.check} {r.fingerprint[:12]} {r.title}{where}")
    return lines or ["no fixes recorded"]
