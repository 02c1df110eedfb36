"""Weak passwords of system accounts: /etc/shadow hashes tried against common and derived guesses.

How far down its list each hash got is remembered in the state directory's cache (``cache/passwords.db``,
digests and counts only): a re-scan of the same hash with the same list continues where the last one
stopped, so repeated scans reach ever further down the list; a new password, scheme or list starts over."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from hostguard.checks.accounts import AccountsConfig
from hostguard.config import Config, setting
from hostguard.engine.context import Context
from hostguard.engine.facts import HOST_ID, STATE, Fact, config_input
from hostguard.engine.registry import Family, ScanEnd, check
from hostguard.findings import Finding, HostId, SkipReason
from hostguard.host.accounts import ACCOUNTS, SHADOW, Accounts, Shadow
from hostguard.host.base import Host, Unavailable
from hostguard.host.identity import HOSTNAME
from hostguard.host.password_files import PASSWORD_FILES, PasswordEntry
from hostguard.passwords.cracker import Target, crack
from hostguard.passwords.guesses import plan
from hostguard.passwords.services_verifiers import service_verifier
from hostguard.passwords.verifiers import VerifierUnavailable, crypt_verifier
from hostguard.remediation import Param, Remediation
from hostguard.store.cache import GuessProgress, list_digest
from hostguard.store.state import StateStore

LOCKED = ("", "*", "!", "!!", "x")
MAX_WORDLIST = 64 * 1024 * 1024


@dataclass(frozen=True)
class WeakPasswordsConfig:
    """[weak_passwords]: how hard to try."""

    budget_seconds: float = setting(30.0, "Seconds to spend guessing, all accounts together, shared between them by "
                                          "time (a cheap hash gets more guesses than a slow one); the guaranteed floor "
                                          "is tried even past it.", min=0)
    floor: int = setting(100, "Most-common passwords always tried for every account, whatever the budget (with the "
                              "guesses made from its names); a re-scan of an unchanged hash tries that many further "
                              "guesses instead, continuing where the last scan stopped.", min=0)
    extra_words: tuple[str, ...] = setting((), "Extra words to try first (site names, company names).")
    wordlist: str = setting("", "A file of extra guesses, one per line, tried after the common ones (a path on the "
                                "scanning machine).")
    workers: int = setting(0, "Worker threads for hashing; 0 = one per core.", min=0)


def collect_wordlist(host: Host, cfg: WeakPasswordsConfig) -> tuple[str, ...]:
    """Extra guesses from the configured word list (a file on the scanning machine), one per line."""
    if not cfg.wordlist:
        return ()
    try:
        with open(cfg.wordlist, "rb") as fh:
            data = fh.read(MAX_WORDLIST)
    except OSError as exc:
        raise Unavailable(SkipReason.ERROR, f"weak_passwords.wordlist {cfg.wordlist}: {exc.strerror}") from exc
    words = (w.strip() for w in data.decode("utf-8", "replace").splitlines())
    return tuple(dict.fromkeys(w for w in words if w and len(w) <= 256))


WORDLIST: Fact[tuple[str, ...]] = Fact("wordlist", collect_wordlist, inputs=(config_input("weak_passwords"),))


def _guess_progress(host: object, state: StateStore | None, host_id: HostId | None) -> GuessProgress | None:
    """How far earlier scans of this host got down each account's guess list (None: no state store given)."""
    if state is None or host_id is None:
        return None
    return GuessProgress.open(state.cache_dir, host_id.id)


GUESS_PROGRESS: Fact[GuessProgress | None] = Fact("guess_progress", _guess_progress,
                                                  inputs=(STATE.best_effort, HOST_ID.best_effort))


def remember_progress(end: ScanEnd) -> None:
    """After a scan that guessed, record how far each account got (the check collected it in the fact)."""
    if end.facts.loaded(GUESS_PROGRESS):
        progress = end.facts.get(GUESS_PROGRESS)
        if progress is not None:
            progress.save()


FAMILY = Family("weak_passwords", __doc__ or "", WeakPasswordsConfig, after_scan=remember_progress)


def _budget(config: Config) -> float:
    return config[WeakPasswordsConfig].budget_seconds


@check(id="weak_passwords.system", severity="high", summary="System account with a guessable password",
       needs=(ACCOUNTS, SHADOW, HOSTNAME, WORDLIST, GUESS_PROGRESS), budget=_budget, tags=("T1110.001", "T1110.002"))
def system_accounts(ctx: Context) -> Iterator[Finding]:
    """Tries each password hash in /etc/shadow against the most common passwords and guesses made from the
    account and host names (always), then more common passwords by rank within the time budget, on every
    core. The budget is shared between accounts by time, not by count: a fast hash (SHA-512, MD5) gets
    many more guesses than a slow one (yescrypt, bcrypt) in its share, and an account whose password is
    found leaves its time to the others. Every crypt(3) scheme Linux uses is supported through
    libxcrypt; a scheme this machine cannot compute (its known-answer self-test fails) leaves the account
    unchecked, never "strong". Locked accounts (``!``/``*``) cannot log in with a password and are not
    tried. A found password is never shown: the finding names the account and the kind of guess that
    matched. A re-scan of an unchanged hash with an unchanged list resumes where the last scan stopped
    (the guaranteed guesses are then the next untried ones), and the evidence counts every guess tried
    against that hash, earlier scans' included."""
    accounts: Accounts = ctx.fact(ACCOUNTS)
    shadow: Shadow = ctx.fact(SHADOW)
    cfg = ctx.config[WeakPasswordsConfig]
    try:
        verifier = crypt_verifier()
    except VerifierUnavailable as exc:
        ctx.skip(SkipReason.TOOL_MISSING, str(exc))
        return
    working = verifier.working_schemes()
    users = accounts.by_name()
    admin = set(ctx.config[AccountsConfig].admin_groups)
    progress = ctx.fact(GUESS_PROGRESS)
    targets: list[Target] = []
    lines: list[int] = []  # each target's /etc/shadow line
    lists: list[str] = []  # each target's list digest, for the progress cache
    for entry in shadow.entries:
        if entry.hash in LOCKED or entry.hash.startswith("!") or entry.hash.startswith("*"):
            continue
        scheme = verifier.scheme(entry.hash)
        if scheme is None:
            ctx.skip(SkipReason.UNSUPPORTED, f"account '{entry.name}': unknown hash scheme "
                                             f"'{entry.hash[:4]}...' (unchecked)")
            continue
        if working.get(scheme) != "ok":
            ctx.skip(SkipReason.UNSUPPORTED, f"account '{entry.name}': {scheme}: {working.get(scheme)} (unchecked)")
            continue
        user = users.get(entry.name)
        first, rest = plan(entry.name, user.gecos if user else "", ctx.fact(HOSTNAME), cfg.extra_words,
                           cfg.floor, ctx.fact(WORDLIST))
        digest = list_digest(g.text for g in (*first, *rest))
        earlier = progress.tried(entry.name, entry.hash, digest) if progress is not None else 0
        targets.append(Target.resuming(entry.name, entry.hash, first, rest, earlier))
        lines.append(entry.line)
        lists.append(digest)
    if not targets:
        return
    workers = cfg.workers or os.cpu_count() or 1
    deadline = ctx.start_budget()  # the budget is for guessing: planning (a long word list) does not count
    assert deadline is not None  # the check declares a budget
    crack(targets, verifier, deadline=deadline, workers=workers, progress=ctx.progress, cancel=ctx.cancel)
    note = f"; {progress.note}" if progress is not None and progress.note else ""
    carry_on = "the next scan continues from there; " if progress is not None and progress.writable else ""
    for t, digest in zip(targets, lists, strict=True):
        if progress is not None and t.found is None:
            progress.remember(t.account, t.hashed, digest, t.reached)
    for t, line in zip(targets, lines, strict=True):
        user = users.get(t.account)
        privileged = t.account == "root" or (user is not None and (user.uid == 0 or admin & accounts.groups_of(user)))
        if t.found is not None:
            yield ctx.finding(
                f"account '{t.account}' has a guessable password ({t.found.source})",
                {"kind": "user", "user": t.account},
                severity="critical" if privileged else "high",
                evidence={"path": "/etc/shadow", "line": line, "scheme": verifier.scheme(t.hashed),
                          "matched": t.found.source, "length": len(t.found.text),
                          "tried": t.tried_in_all, "tried_in_earlier_scans": t.earlier, "list_size": t.list_size,
                          **({"note": progress.note} if progress is not None and progress.note else {})},
                remediation=Remediation.by_hand(
                    f"Give '{t.account}' a new password now: `passwd {t.account}` (12+ characters, not a dictionary "
                    f"word or a name); if nobody logs in to it with a password, lock it instead: `passwd -l "
                    f"{t.account}`.",
                    "Only you can choose the new password, and only you know whether the account needs password "
                    "logins: locking it unasked could take away a user's sudo (which asks for that password) or "
                    "the only way in to the console.",
                    Param("password", f"the new password of '{t.account}', typed at passwd's prompt (never on "
                                      "the command line)", "four or more random words, 20+ characters")))
        elif t.budget_ran_out:
            resumed = f", {t.earlier} of them in earlier scans" if t.earlier else ""
            ctx.skip(SkipReason.BUDGET, f"account '{t.account}' ({verifier.scheme(t.hashed)}): tried {t.tried_in_all} "
                                        f"of {t.list_size} guesses{resumed}, none matched ({carry_on}raise "
                                        f"weak_passwords.budget_seconds to try more per scan){note}")


@check(id="weak_passwords.web_password_file", severity="high",
       summary="Guessable password in a web server's or Tomcat's password file",
       needs=(PASSWORD_FILES, HOSTNAME, WORDLIST), budget=_budget, tags=("T1110.002",))
def web_password_files(ctx: Context) -> Iterator[Finding]:
    """The password files the web servers read (``.htpasswd`` named by nginx ``auth_basic_user_file`` or
    Apache ``AuthUserFile``; Tomcat's ``tomcat-users.xml``) guard admin back ends: each entry is tried offline
    against the same guesses as system accounts (its user name and the host name, then the common list), in
    every scheme those servers accept (apr1, {SHA}, {SSHA}, bcrypt, Tomcat's digests and PBKDF2, plain text).
    An entry the server would not accept as a password (Apache reading a plain-text line) is not tried. A
    found password is never shown."""
    cfg = ctx.config[WeakPasswordsConfig]
    files = ctx.fact(PASSWORD_FILES)
    for problem in files.problems:
        ctx.skip(SkipReason.ERROR, problem)
    verifier = service_verifier()
    working = verifier.working_schemes()
    targets: list[Target] = []
    where: list[tuple[str, PasswordEntry]] = []
    for pwfile in files.files:
        for entry in pwfile.entries:
            if not entry.hashed or not entry.accepted:
                continue
            scheme = entry.scheme or verifier.scheme(entry.hashed)
            if scheme is None or working.get(scheme, "ok") != "ok":
                ctx.skip(SkipReason.UNSUPPORTED, f"{pwfile.path}: {entry.label()}: scheme "
                                                 f"{scheme or 'not recognised'} cannot be checked here")
                continue
            first, rest = plan(entry.user, "", ctx.fact(HOSTNAME), cfg.extra_words, cfg.floor, ctx.fact(WORDLIST))
            for hashed in (entry.hashed, *entry.alternatives):
                targets.append(Target(f"{pwfile.path}:{entry.user}", hashed, first, rest))
                where.append((pwfile.path, entry))
    if not targets:
        return
    deadline = ctx.start_budget()
    assert deadline is not None
    crack(targets, verifier, deadline=deadline, workers=cfg.workers or os.cpu_count() or 1,
          progress=ctx.progress, cancel=ctx.cancel)
    reported: set[tuple[str, str]] = set()
    for t, (path, entry) in zip(targets, where, strict=True):
        if t.found is not None and (path, entry.user) not in reported:
            reported.add((path, entry.user))
            yield ctx.finding(
                f"'{entry.user}' in {path} has a guessable password ({t.found.source})",
                {"kind": "user", "user": entry.user, "path": path},
                evidence={"path": path, "line": entry.where.line, "scheme": entry.scheme,
                          "plain_text": entry.plain_text, "matched": t.found.source, "tried": t.tried},
                remediation=Remediation.by_hand(
                    f"Give '{entry.user}' in {path} a new password",
                    ("`htpasswd " + path + f" {entry.user}` asks for it twice and stores it hashed"
                     if not path.endswith(".xml") else
                     "Tomcat: set a long password for the user in tomcat-users.xml, stored hashed (a "
                     "CredentialHandler with PBKDF2 in the Realm, the hash from Tomcat's digest.sh)")
                    + "; then reload the server. Only you can choose the password.",
                    Param("password", "the new password (at the tool's prompt, never on the command line)",
                          "four or more random words, 20+ characters")))
        elif t.budget_ran_out and (path, entry.user) not in reported:
            ctx.skip(SkipReason.BUDGET, f"{path}: '{entry.user}': tried {t.tried} of {t.planned} guesses, none "
                                        "matched (raise weak_passwords.budget_seconds to try more)")
