"""Persistence: what starts again by itself (cron, at, systemd units, rc.local, init.d, shell start-up files,
motd scripts, APT hooks, pam_exec, sshd's AuthorizedKeysCommand, Python .pth files, ld.so.preload, udev
RUN rules), and whether what it runs is packaged, recently changed, or swappable by someone else."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from hostguard.config import Config, setting
from hostguard.engine.context import Context
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, Severity, SkipReason
from hostguard.host.persistence import PERSISTENCE, SETID_WALK, Entry, PamJump, SetidFile, SetidWalk, rules
from hostguard.remediation import Action, Command, DeleteLine, Edit, Remediation, Step


@dataclass(frozen=True)
class PersistenceConfig:
    """[persistence]: how the persistence family judges entries."""

    recent_days: int = setting(7, "An entry file changed within this many days of the scan is marked "
                                  "`recent` in the evidence.", min=0)
    setid_walk_seconds: float = setting(60.0, "Seconds the walk of program directories for setuid/setgid files and "
                                              "file capabilities may take; what is left is reported as not checked.",
                                        min=1)


FAMILY = Family("persistence", __doc__ or "", PersistenceConfig)

SEVERITIES = {"high": Severity.HIGH, "medium": Severity.MEDIUM, "low": Severity.LOW, "info": Severity.INFO}
_CONTINUED = re.compile(r"(?:\\|&&|\|\||\|)\s*$")
_QUOTED = re.compile(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"|\\.")  # quoted strings and escaped characters
_COMMENT = re.compile(r"(?:^|\s)#.*$")
_LOOPS = frozenset({"while", "until", "for", "select"})
_OPENERS = frozenset({"if", "then", "else", "elif", "case", "do", "{", "function", *_LOOPS})
_CLOSERS = frozenset({"fi", "esac", "done", "}"})
_NAMING = frozenset({"for", "select", "case", "function"})
_OPERATOR_CHARS = frozenset(";&|()")


def _self_contained(line: str) -> bool:
    """Whether one shell line can be deleted alone and leave a file ``sh -n`` still accepts.

    A line that opens or closes a compound command (``if``/``fi``, ``case``/``esac``, a loop and its
    ``do``/``done``, ``{``/``}``, ``(``/``)``, a ``then``/``else`` branch, a ``;;`` case arm) or that continues
    on the next one (a trailing backslash, ``&&``, ``||`` or ``|``, an open quote, a here-document whose body
    follows) is part of something larger: deleting it breaks the syntax, glues the next command onto the
    previous one or turns a here-document's body into commands. Words are counted outside quotes.
    """
    bare = _COMMENT.sub("", _QUOTED.sub("_", line))
    if _CONTINUED.search(bare) or "'" in bare or '"' in bare or "<<" in bare:  # an open quote, a here-document
        return False
    lexer = shlex.shlex(bare, posix=True, punctuation_chars="".join(sorted(_OPERATOR_CHARS)))
    lexer.whitespace_split = True
    lexer.commenters = ""
    words = list(lexer)
    # Reserved words and braces count only where a command starts: `echo }` closes nothing, `echo {` opens
    # nothing, and neither may balance a real one. (A word the shell would take as reserved in another place,
    # `for x do`, then leaves a count unbalanced: the answer is "no", the safe side.)
    count: Counter[str] = Counter()
    at_start = True
    for word in words:
        if set(word) <= _OPERATOR_CHARS:
            count["("] += word.count("(")
            count[")"] += word.count(")")
            count[";;"] += ";;" in word
            at_start = True
            continue
        if at_start and (word in _OPENERS or word in _CLOSERS):
            count[word] += 1
        at_start = (word in _OPENERS and word not in _NAMING) or word == "!"  # `for NAME`, `case WORD`: no command
    if count[";;"] or count["function"] and not count["{"]:
        return False
    if (count["then"] or count["else"] or count["elif"]) and not count["if"]:
        return False
    loops = sum(count[w] for w in _LOOPS)
    return (count["if"] == count["fi"] and count["case"] == count["esac"] and count["do"] == count["done"]
            == loops and count["{"] == count["}"] and count["("] == count[")"])


def judge(entry: Entry) -> tuple[Severity | None, list[str]]:
    """How bad an entry is and why; ``None`` when it is what a stock system has.

    High: it runs something from a temporary or hidden directory or one another user can write, matches a
    download-and-run, decoding, /dev/tcp or LD_PRELOAD pattern, or preloads a library system-wide. Else, when
    the package database is known and the entry's own file is not packaged: the kind's severity from
    ``data/persistence/rules.toml`` when a program it runs (an existing file) no package owns.
    """
    r = rules()
    reasons = [why for pattern, why in (r.suspicious_python if entry.python else r.suspicious)
               if pattern.search(entry.command)]
    if entry.kind == "ld_preload":
        reasons.append("preloads a library into every program started on the host")
    reasons += [f"runs {program}, {why}" for program, why in entry.writable]
    if reasons:
        return Severity.HIGH, list(dict.fromkeys(reasons))
    level = r.unpackaged.get(entry.kind, "quiet")
    if entry.database is None or entry.entry_owner is not None or level == "quiet":
        return None, []
    if entry.line == 0 or entry.python:
        unowned = [entry.path]  # the file itself runs, and no package installed it
    else:
        unowned = [p for p in entry.programs if p not in entry.missing and entry.owner_of(p) is None]
    if not unowned:
        return None, []
    return SEVERITIES[level], [f"{p} belongs to no installed package" for p in unowned]


def _fix(entry: Entry) -> Remediation:
    """Remove the entry: delete its line (or lines), or disable and remove a unit, or quarantine a whole script.

    A deleted line must leave a file its reader still accepts (tests/checks/test_persistence_fixes.py runs
    the readers): a shell command written over several lines (a trailing backslash, ``&&``, ``||``, ``|``)
    is deleted whole, all its lines, when the joined command is self-contained; a shell line that opens or
    closes a block (``if``/``fi``, ``{``/``}``, ``case``/``esac``, an open quote) is left to the owner, since
    deleting it alone breaks the file's syntax. A pam_exec line skipped by an earlier jump takes the jump's
    edit with it (:func:`_pam_fix`). An init script's
    links are removed by ``update-rc.d -f NAME remove``, which is not live only: with its own root variable
    (``DPKG_ROOT=TREE``) it removes a tree's ``rc?.d`` links and leaves the running system alone."""
    if entry.kind == "ssh_keys_command":
        return Remediation.by_hand(
            f"Remove the AuthorizedKeysCommand line {entry.line} of {entry.path} if you did not set it up",
            "sshd may depend on it for key logons (LDAP, a cloud agent): only you know whether it is yours. "
            "Check that a key in authorized_keys still logs you in, then delete the line, run `sshd -t` and "
            "reload ssh.")
    if entry.kind == "systemd":
        return _unit_fix(entry)
    if entry.line == 0:
        steps: list[Step] = []
        name = entry.path.rsplit("/", 1)[-1]
        if entry.kind == "init_script":
            steps.append(Command(("update-rc.d", "-f", name, "remove"), live_only=False))
        steps.append(Action("quarantine", (("path", entry.path),)))
        return Remediation(f"Quarantine {entry.path} (it can be restored) after reading what it does", tuple(steps))
    if entry.kind == "apt_hook" and (entry.raw.count('"') > 2 or entry.raw.count("{") != entry.raw.count("}")):
        return Remediation.by_hand(
            f"Remove the hook string on line {entry.line} of {entry.path}",
            "the line holds more than this one hook or opens a block closed elsewhere: deleting the whole line "
            "would break APT's configuration. Remove the string and its `;`, then run `apt-config dump`.")
    if entry.kind in ("shell_startup", "rc_local"):
        # A command over several lines is judged joined (as the shell reads it): deleting all its lines must
        # leave the file as whole as deleting a one-line command does.
        if not _self_contained(entry.command if entry.end_line else entry.raw):
            return Remediation.by_hand(
                f"Remove the command on {_where(entry)} of {entry.path}",
                "the command is part of a larger one (it opens or closes an if, a loop, a case or a { } group, "
                "or continues on the next line): delete the whole command, then check the file with `sh -n`.")
        return Remediation(f"Delete {_where(entry)} of {entry.path}", _delete(entry))
    if entry.kind == "pam_exec":
        return _pam_fix(entry)
    return Remediation(f"Delete line {entry.line} of {entry.path}", (DeleteLine(entry.path, entry.line, entry.raw),))


def _where(entry: Entry) -> str:
    """``line 4`` or ``lines 4-6``: where the entry is written."""
    return f"lines {entry.line}-{entry.end_line}" if entry.end_line else f"line {entry.line}"


def _delete(entry: Entry) -> tuple[DeleteLine, ...]:
    """One DeleteLine per physical line of the entry, bottom-up, each with its exact text: applied one by one
    in this order, every line number is still true when its step comes (respond/apply.py also sorts them)."""
    return tuple(DeleteLine(entry.path, number, text) for number, text in reversed(entry.physical_lines()))


_PAM_CALLS = {"auth": "pam_setcred", "session": "pam_close_session"}


def _shortened(jump: PamJump) -> str | None:
    """The jump's line with each of its jumps over the deleted line one shorter (a jump of 1 becomes
    ``ignore``: PAM has no jump of 0, and takes a 0 for ignore), None when the control cannot be edited
    exactly (a value written twice)."""
    bracket = re.search(r"\[[^\]]*\]", jump.raw)
    if bracket is None:
        return None
    control = bracket.group(0)
    for value, count in jump.spans:
        control, n = re.subn(rf"(?<=[\s\[]){re.escape(value)}={count}(?=[\s\]])",
                             f"{value}={count - 1 if count > 1 else 'ignore'}", control)
        if n != 1:
            return None
    return jump.raw[:bracket.start()] + control + jump.raw[bracket.end():]


def _pam_fix(entry: Entry) -> Remediation:
    """Delete a pam_exec line, and shorten by one every earlier jump of its stack that skips it.

    PAM jumps count modules (``[success=2 default=ignore]`` skips the next two): deleting a line a jump
    skips makes that jump skip one module more, past a 2FA module after it or past the end of the stack.
    The jumps come with the entry (the collector reads every service's stack with the PAM parser). When
    they are all in the line's own file the fix is exact steps: an Edit of each jump's line (its old text
    checked) and the DeleteLine, bottom-up. A jump in another file (shared by other services, whose stacks
    the edit would change too), a jump of 1 on an auth or session line (it would become ``ignore``, which
    for pam_setcred and pam_close_session is not what a jump's side effect is), or a stack hostguard cannot
    count (a substack) is left to the owner, with each jump to adjust named."""
    delete = DeleteLine(entry.path, entry.line, entry.raw)
    if entry.pam_unknown is not None:
        return Remediation.by_hand(
            f"Delete line {entry.line} of {entry.path}, and shorten by one each jump (`success=N`) of an earlier "
            "line of its stack that skips it",
            f"hostguard cannot count the jumps around this line: {entry.pam_unknown}. Deleting the line alone "
            "would move where such a jump lands; check each service's stack with `pamtester` after the edit.")
    if not entry.pam_jumps:
        return Remediation(f"Delete line {entry.line} of {entry.path}", (delete,))
    kind = entry.raw.split(None, 1)[0].lstrip("-")
    reasons = []
    if any(j.path != entry.path for j in entry.pam_jumps):
        reasons.append("a jump is in another file, which other services' stacks may read too")
    if kind in _PAM_CALLS and any(n == 1 for j in entry.pam_jumps for _, n in j.spans):
        reasons.append(f"a jump of 1 would become `ignore`, which for {_PAM_CALLS[kind]} differs from a jump's "
                       "side effect: choose `ignore` or `ok` knowing the module")
    edits = [Edit(j.path, j.line, j.raw, new) for j in entry.pam_jumps if (new := _shortened(j)) is not None]
    if len(edits) != len(entry.pam_jumps):
        reasons.append("a jump's control names the same value twice, so it cannot be edited exactly")
    if reasons:
        return Remediation.by_hand(
            f"Delete line {entry.line} of {entry.path} and shorten the jumps that skip it",
            "; ".join(reasons) + ". Adjust: " + "; ".join(
                f"line {j.line} of {j.path} (`{j.raw.strip()}`): change " + ", ".join(
                    f"`{v}={n}` to `{v}={n - 1 if n > 1 else 'ignore'}`" for v, n in j.spans)
                for j in entry.pam_jumps) + f"; then delete line {entry.line}, and test the logon with `pamtester`.")
    steps: list[Edit | DeleteLine] = sorted([*edits, delete], key=lambda s: s.line, reverse=True)
    lines = ", ".join(str(e.line) for e in sorted(edits, key=lambda e: e.line))
    return Remediation(f"Delete line {entry.line} of {entry.path} and shorten by one the jumps over it on "
                       f"line{'s' if len(edits) > 1 else ''} {lines}", tuple(steps))


def _unit_fix(entry: Entry) -> Remediation:
    """Disable, stop and remove a unit, or remove a drop-in, as steps that hold live and on a tree.

    Why each step has the shape it has (tests/checks/test_persistence_fixes.py runs them):

    * ``systemctl disable UNIT`` is its own step, without ``--now``, and not live only: it reads nothing but
      the unit files and the ``*.wants/`` links, so ``systemctl --root=TREE disable UNIT`` does the same on a
      mounted tree (a ``--now`` refuses to run there). It comes before the ``rm``: disable needs the unit's
      ``[Install]`` section to find every link (a unit named by ``Alias=`` or ``Also=``), and a removed unit
      would leave its enablement links dangling. A per-user unit (``~/.config/systemd/user``) is the
      exception: ``systemctl --user`` has no offline mode (``--root`` refuses it), so it is disabled and
      stopped through that user's own manager, live only.
    * ``systemctl stop UNIT`` (live only) stops what runs now; ``hostguard fix`` runs live-only steps after
      the others, and a unit whose file was removed stays loaded until the reload, so it still stops.
    * ``rm -f -- PATH``: ``-f`` because disabling a linked unit (``systemctl link``: PATH is a symlink to
      a file elsewhere) already removed PATH, and the fix must not fail on what is already done.
    * ``systemctl daemon-reload`` (live only) last, so the manager forgets the unit.
    """
    unit = entry.unit or entry.path.rsplit("/", 1)[-1]
    scope: tuple[str, ...] = ()
    if entry.user_unit:
        scope = (f"--machine={entry.user}@", "--user") if entry.user else ("--global",)
    live_scope = scope if scope != ("--global",) else ()
    reload = Command(("systemctl", *live_scope, "daemon-reload"), live_only=True)
    if entry.dropin and "LD_PRELOAD" in entry.command and not entry.command.lstrip().lower().startswith("exec"):
        return Remediation(f"Delete the LD_PRELOAD line of {entry.path}, then reload systemd and restart {unit}",
                           (*_delete(entry), reload,
                            Command(("systemctl", *live_scope, "try-restart", unit), live_only=True)))
    remove = Command(("rm", "-f", "--", entry.path), live_only=False)
    if entry.dropin:
        return Remediation(f"Remove the drop-in {entry.path} and reload systemd", (remove, reload))
    if entry.user_unit and entry.user:
        return Remediation(f"Stop and disable {unit} in {entry.user}'s systemd, remove {entry.path} and reload it",
                           (Command(("systemctl", *scope, "disable", "--now", unit), live_only=True), remove, reload))
    steps: list[Step] = []
    if not scope:
        steps.append(Command(("systemctl", "stop", unit), live_only=True))
    steps += [Command(("systemctl", *scope, "disable", unit), live_only=False), remove, reload]
    return Remediation(f"Stop and disable {unit}, remove {entry.path} and reload systemd", tuple(steps))


def _report(entry: Entry, ctx: Context, kinds: tuple[str, ...], what: str) -> Iterator[Finding]:
    """The finding for one entry of ``kinds`` that :func:`judge` does not find stock."""
    if entry.kind not in kinds:
        return
    severity, reasons = judge(entry)
    if severity is None:
        return
    whole = entry.line == 0
    runs = entry.path if whole else entry.command
    target = {"kind": "path", "path": entry.path} if whole else {"kind": "path", "path": entry.path, "runs": runs[:500]}
    evidence: dict[str, object] = {
        "file": entry.path, "line": entry.line or None, "text": None if whole else entry.raw, "runs": runs[:500],
        "why": reasons, "user": entry.user,
        "programs": [{"path": p, "package": entry.owner_of(p), "exists": p not in entry.missing,
                      "writable": dict(entry.writable).get(p)} for p in entry.programs],
        "file_package": entry.entry_owner, "package_database": entry.database, "recent": entry.recent,
        "modified": None if entry.mtime is None else datetime.fromtimestamp(entry.mtime, UTC).isoformat(),
    }
    if whole:
        patterns = [p for p, _ in (rules().suspicious)]
        evidence["lines"] = [line for line in entry.command.splitlines() if any(p.search(line) for p in patterns)][:20]
    if entry.unit:
        evidence["unit"] = entry.unit
    if entry.end_line:
        evidence["end_line"] = entry.end_line
    if entry.pam_jumps:
        evidence["jumps_over"] = [{"file": j.path, "line": j.line, "text": j.raw, "services": list(j.services),
                                   "jumps": [f"{v}={n}" for v, n in j.spans]} for j in entry.pam_jumps]
    title = f"{what} {entry.path}: {reasons[0]}" if whole else f"{what} {entry.path}:{entry.line} runs {runs[:120]}"
    yield ctx.finding(title, target, evidence=evidence, remediation=_fix(entry),
                      severity=severity)


ATTACK_REFS = ("https://attack.mitre.org/tactics/TA0003/",)


@check(id="persistence.cron", severity="high", summary="Cron line running something unusual", each=PERSISTENCE,
       tags=("T1053.003",), references=("https://manpages.debian.org/bookworm/cron/crontab.5.en.html", *ATTACK_REFS))
def cron(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """Lines of /etc/crontab, /etc/cron.d and users' crontabs (/var/spool/cron/crontabs). High when the
    command downloads and runs, decodes base64, opens /dev/tcp, or runs a program from /tmp, /dev/shm, a
    hidden directory or another user's home; low when it runs a program no package owns. Lines of a file a
    package installed (/etc/cron.d/e2scrub_all) and files cron ignores (names with a dot) are not reported."""
    yield from _report(entry, ctx, ("cron",), "Cron job")


@check(id="persistence.scheduled_script", severity="high", summary="Periodic script or at job running something "
       "unusual", each=PERSISTENCE, tags=("T1053.003", "T1053.002"), references=ATTACK_REFS)
def scheduled_script(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """Scripts in /etc/cron.{hourly,daily,weekly,monthly} and pending at jobs (/var/spool/cron/atjobs): high
    when a line matches a download-and-run, decoding or /dev/tcp pattern or runs something from a temporary
    or hidden directory; low when no package installed the script. The fix quarantines it (restorable)."""
    yield from _report(entry, ctx, ("scheduled_script",), "Scheduled script")


@check(id="persistence.systemd_unit", severity="high", summary="systemd unit running something unusual",
       each=PERSISTENCE, tags=("T1543.002", "T1574.006"),
       references=("https://www.freedesktop.org/software/systemd/man/latest/systemd.service.html", *ATTACK_REFS))
def systemd_unit(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """``Exec*=`` lines and ``Environment=LD_PRELOAD`` of units and drop-ins an admin (or an intruder) wrote:
    /etc/systemd/system, /etc/systemd/user and users' ~/.config/systemd/user. Packaged units under
    /usr/lib/systemd are the integrity family's. High for LD_PRELOAD and programs in temporary, hidden or
    other users' directories; low for an unpackaged program."""
    yield from _report(entry, ctx, ("systemd",), "systemd unit")


@check(id="persistence.boot_script", severity="high", summary="rc.local line or init.d script not from a package",
       each=PERSISTENCE, tags=("T1037.004",), references=ATTACK_REFS)
def boot_script(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """Commands in /etc/rc.local (absent on a stock Debian) and /etc/init.d scripts no package installed
    (medium: an init script is a root service started at boot). High for the suspicious patterns."""
    yield from _report(entry, ctx, ("rc_local", "init_script"), "Boot script")


@check(id="persistence.login_script", severity="high", summary="Shell start-up or motd script running something "
       "suspicious", each=PERSISTENCE, tags=("T1546.004",), references=ATTACK_REFS)
def login_script(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """Lines of /etc/profile, /etc/bash.bashrc, /etc/profile.d and root's and users' .bashrc/.profile, and
    /etc/update-motd.d scripts (run as root at every SSH logon). Shell files are full of the owner's own
    commands, so only the suspicious patterns are reported there; an unpackaged motd script is low. A command
    continued over lines (a trailing backslash, ``&&``, ``||``, ``|``) is judged joined, as the shell runs it,
    and its fix deletes all its lines."""
    yield from _report(entry, ctx, ("shell_startup", "motd"), "Login script")


@check(id="persistence.apt_hook", severity="high", summary="APT hook running a program no package owns",
       each=PERSISTENCE, tags=("T1546",),
       references=("https://manpages.debian.org/bookworm/apt/apt.conf.5.en.html", *ATTACK_REFS))
def apt_hook(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """Commands under ``APT::Update::Pre-Invoke``, ``DPkg::Post-Invoke`` and the other hooks in
    /etc/apt/apt.conf(.d): run as root at every `apt update` or install. Medium when a program no package
    owns runs; high for the suspicious patterns. Debian's own hooks (dpkg-preconfigure) stay quiet."""
    yield from _report(entry, ctx, ("apt_hook",), "APT hook")


@check(id="persistence.pam_exec", severity="high", summary="pam_exec.so running a program no package owns",
       each=PERSISTENCE, tags=("T1556.003",),
       references=("https://manpages.debian.org/bookworm/libpam-modules/pam_exec.8.en.html", *ATTACK_REFS))
def pam_exec(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """``pam_exec.so`` lines in /etc/pam.d: the program runs at every logon, and with ``expose_authtok``
    it receives the password. Medium for an unpackaged program, high for the suspicious patterns. When an
    earlier line's jump (``success=2``) skips the line, the fix shortens that jump as it deletes the line, so
    the jump still lands on the module it did (a second factor is not skipped)."""
    yield from _report(entry, ctx, ("pam_exec",), "pam_exec line")


@check(id="persistence.ssh_keys_command", severity="high", summary="sshd AuthorizedKeysCommand not from a package",
       each=PERSISTENCE, tags=("T1098.004",),
       references=("https://man.openbsd.org/sshd_config#AuthorizedKeysCommand", *ATTACK_REFS))
def ssh_keys_command(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """sshd's ``AuthorizedKeysCommand`` decides which keys log in, as a program sshd runs: one no package
    owns is medium (it may hand out keys to anyone), in a writable place high. The fix is by hand: logons
    may depend on it."""
    yield from _report(entry, ctx, ("ssh_keys_command",), "sshd AuthorizedKeysCommand")


@check(id="persistence.python_pth", severity="high", summary="Python .pth start-up file running code",
       each=PERSISTENCE, tags=("T1546.018",),
       references=("https://docs.python.org/3/library/site.html", *ATTACK_REFS))
def python_pth(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """``import`` lines of .pth files in the system's site/dist-packages run in every Python start-up.
    High when the line execs, decodes or opens sockets/processes; low when no package installed the file."""
    yield from _report(entry, ctx, ("python_pth",), "Python start-up file")


@check(id="persistence.ld_preload", severity="high", summary="Library preloaded into every program",
       each=PERSISTENCE, tags=("T1574.006",),
       references=("https://manpages.debian.org/bookworm/manpages/ld.so.8.en.html", *ATTACK_REFS))
def ld_preload(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """Every library named in /etc/ld.so.preload is loaded into every program (the classic user-space
    rootkit hook); a stock system has no such file. Always high."""
    yield from _report(entry, ctx, ("ld_preload",), "ld.so.preload entry")


@check(id="persistence.udev_run", severity="high", summary="udev rule running a program no package owns",
       each=PERSISTENCE, tags=("T1546",), references=("https://manpages.debian.org/bookworm/udev/udev.7.en.html",
                                                       *ATTACK_REFS))
def udev_run(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """``RUN+=`` programs of rules in /etc/udev/rules.d run as root whenever a device event matches (at boot,
    on every network interface). Medium for an unpackaged program, high for the suspicious patterns."""
    yield from _report(entry, ctx, ("udev",), "udev rule")


def _setid_budget(config: Config) -> float:
    return config[PersistenceConfig].setid_walk_seconds


def _setid_fix(item: SetidFile) -> Remediation:
    """Drop the bits and capabilities (reversible), after the owner has seen what the program is."""
    steps: list[Step] = []
    for bit, flag in ((item.setuid, "u"), (item.setgid, "g")):
        if bit:
            steps.append(Command(("chmod", f"{flag}-s", item.path), live_only=True,
                                 undo=("chmod", f"{flag}+s", item.path), reversible=True))
    if item.caps is not None:
        undo = None
        if item.caps.decoded and item.caps.permitted and not item.caps.inheritable:
            undo = ("setcap", item.caps.text(), item.path)
        steps.append(Command(("setcap", "-r", item.path), live_only=True, undo=undo, reversible=undo is not None))
    return Remediation(f"Find out who put {item.path} there; if nobody you trust did, take its privilege away "
                       "(and read it, or quarantine it, before anyone runs it again)", tuple(steps),
                       manual="Under --root these commands would act on this machine's own path: run them on the "
                              "file inside the mounted tree instead.")


@check(id="persistence.suid_unpackaged", severity="high", summary="Setuid, setgid or capability-bearing program no "
       "package installed", needs=(SETID_WALK,), budget=_setid_budget, tags=("T1548.001",),
       references=("https://manpages.debian.org/bookworm/manpages/capabilities.7.en.html",
                   "https://attack.mitre.org/techniques/T1548/001/"))
def suid_unpackaged(ctx: Context) -> Iterator[Finding]:
    """Executables under /usr, /bin, /sbin, /lib*, /opt, /home, /root, /tmp, /var/tmp, /dev/shm, /srv and
    /var/www that are setuid, setgid or carry file capabilities (``security.capability``: cap_setuid,
    cap_net_raw...) and that no installed package owns: a copied shell made setuid-root is a way back to root.
    High for setuid-root, medium for setgid, setuid to another user or capabilities. Files dpkg installed
    are quiet; a packaged file someone made setuid later is not told apart (dpkg does not record modes).
    The walk never follows symlinks nor enters another mount, and stops at its time budget
    ([persistence] setid_walk_seconds)."""
    walk: SetidWalk = ctx.fact(SETID_WALK)
    found = list(walk.files(ctx.deadline, ctx.cancel))
    if walk.stopped_in is not None:
        ctx.skip(SkipReason.BUDGET, f"the walk stopped in {walk.stopped_in} after "
                                    f"{_setid_budget(ctx.config):g}s (raise persistence.setid_walk_seconds)")
    for directory in walk.unreadable[:20]:
        ctx.skip(SkipReason.ERROR, f"{directory}: cannot be listed", directory)
    if not found:
        return
    owners = walk.owners(sorted({f.path for f in found}))
    if owners.database is None:
        ctx.skip(SkipReason.UNSUPPORTED, f"{len(found)} setuid/setgid/capability files not judged: no package "
                                         "database hostguard reads (dpkg) says which are stock")
        return
    for item in found:
        if owners.owner(item.path) is not None:
            continue
        kinds = [k for k, on in (("setuid", item.setuid), ("setgid", item.setgid)) if on]
        if item.caps is not None:
            kinds.append(f"capabilities {item.caps.text()}")
        severity = Severity.HIGH if item.setuid and item.uid == 0 else Severity.MEDIUM
        yield ctx.finding(
            f"{item.path} is {' and '.join(kinds)} ({'root' if item.uid == 0 else f'uid {item.uid}'}) and no package "
            "installed it", {"kind": "path", "path": item.path}, severity=severity,
            evidence={"path": item.path, "mode": f"{item.mode & 0o7777:04o}", "uid": item.uid, "gid": item.gid,
                      "setuid": item.setuid, "setgid": item.setgid, "size": item.size,
                      "capabilities": None if item.caps is None else {
                          "permitted": list(item.caps.permitted), "inheritable": list(item.caps.inheritable),
                          "effective": item.caps.effective, "decoded": item.caps.decoded},
                      "modified": datetime.fromtimestamp(item.mtime, UTC).isoformat(),
                      "package_database": owners.database},
            remediation=_setid_fix(item))
