"""Weak passwords of system accounts: /etc/shadow hashes tried against common and derived guesses.

How far down its list each hash got is remembered in the state directory's cache (``cache/passwords.db``,
digests and counts only): a re-scan of the same hash with the same list continues where the last one
stopped, so repeated scans reach ever further down the list; a new password, scheme or list starts over."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
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
from hostguard.host.services.ftp_users import FTP_USERS
from hostguard.host.services.mysql_accounts import MYSQL_ACCOUNTS
from hostguard.host.services.postgres_roles import POSTGRES_ROLES
from hostguard.host.services.stored import StoredCredential, StoredCredentials
from hostguard.host.services.wordpress import WORDPRESS_USERS
from hostguard.passwords.cracker import Target, crack
from hostguard.passwords.guesses import plan
from hostguard.passwords.services_verifiers import service_verifier
from hostguard.passwords.verifiers import Verifier, VerifierUnavailable, crypt_verifier
from hostguard.remediation import Param, Remediation
from hostguard.store.cache import GuessProgress, list_digest
from hostguard.store.state import StateStore

LOCKED = ("", "*", "!", "!!", "x")
MAX_WORDLIST = 64 * 1024 * 1024


@dataclass(frozen=True)
class WeakPasswordsConfig:
    """[weak_passwords]: how hard to try."""

    budget_seconds: float = setting(30.0, "Seconds each check of the family spends guessing (system accounts, web "
                                          "password files, database accounts, FTP users), its accounts together, "
                                          "shared between them by time (a cheap hash gets more guesses than a slow "
                                          "one); the guaranteed floor is tried even past it.", min=0)
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


def _crack_in_budget(ctx: Context, targets: list[Target], verifier: Verifier) -> None:
    """Every target tried on every core within the check's budget, its floor whatever the time. The budget
    starts here: it is for guessing, and planning (a long word list) does not count."""
    deadline = ctx.start_budget()
    assert deadline is not None  # every check of the family declares a budget
    crack(targets, verifier, deadline=deadline, workers=ctx.config[WeakPasswordsConfig].workers or os.cpu_count() or 1,
          progress=ctx.progress, cancel=ctx.cancel)


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
    _crack_in_budget(ctx, targets, verifier)
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
    _crack_in_budget(ctx, targets, verifier)
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


# -- passwords the services keep themselves (databases, WordPress, FTP virtual users) ----------------------

SERVICE_FIXES = {
    "MariaDB/MySQL": "`ALTER USER {account} IDENTIFIED BY '…'` as the database admin, then update the applications "
                     "that log in as it",
    "PostgreSQL": "`ALTER ROLE \"{account}\" PASSWORD '…'` from psql as postgres (with password_encryption = "
                  "scram-sha-256), then update the applications that log in as it",
    "WordPress": "log in to {source} as an administrator and set a new password for '{account}' (Users → Edit), or "
                 "have the user reset it; WordPress stores it hashed",
    "vsftpd": "write the virtual users' database again with the new password ({source}), hashed with crypt "
              "(pam_userdb `crypt=crypt`)",
    "proftpd": "`ftpasswd --passwd --file={source} --name={account} --change-password`",
    "pure-ftpd": "`pure-pw passwd {account} -m` (it rebuilds the PureDB)",
}


def _service_fix(cred: StoredCredential, what: str) -> Remediation:
    how = SERVICE_FIXES.get(cred.service, "set a new, long password where {source} keeps it")
    return Remediation.by_hand(
        f"Give {cred.service}'s '{cred.account}' {what}",
        how.format(account=cred.account, source=cred.source.split(" ", 1)[0] if cred.service != "WordPress"
                   else cred.source) + ". Only you can choose the password and know which clients use it.",
        Param("password", "the new password (at the tool's prompt where there is one)", "32 random characters"))


def _stored_target(cred: StoredCredential) -> dict[str, str]:
    return {"kind": "user", "user": cred.account, "service": cred.service, "source": cred.source}


def _crack_stored(ctx: Context, found: Iterable[StoredCredentials]) -> Iterator[Finding]:
    """The stored passwords of ``found``, tried offline with the same guesses as system accounts (the account's
    name part, the host name, then the common list) within the check's budget; an empty one is said at once."""
    cfg = ctx.config[WeakPasswordsConfig]
    verifier = service_verifier()
    working = verifier.working_schemes()
    targets: list[Target] = []
    creds: list[StoredCredential] = []
    for store in found:
        for problem in store.problems:
            ctx.skip(SkipReason.UNSUPPORTED, problem)
        for cred in store.credentials:
            if cred.hashed == "":
                yield ctx.finding(f"{cred.service} account '{cred.account}' has no password",
                                  _stored_target(cred), severity="critical",
                                  evidence={"service": cred.service, "account": cred.account, "source": cred.source,
                                            "password": "empty"},
                                  remediation=_service_fix(cred, "a password (it has none)"))
                continue
            scheme = verifier.scheme(cred.hashed)
            if scheme is None or working.get(scheme, "ok") != "ok":
                ctx.skip(SkipReason.UNSUPPORTED, f"{cred.service} '{cred.account}' ({cred.source}): scheme "
                                                 f"{scheme or 'not recognised'} cannot be checked here")
                continue
            name = cred.account.split("@", 1)[0]
            first, rest = plan(name, "", ctx.fact(HOSTNAME), cfg.extra_words, cfg.floor, ctx.fact(WORDLIST))
            targets.append(Target(f"{cred.service}:{cred.account}", cred.hashed, first, rest))
            creds.append(cred)
    if not targets:
        return
    _crack_in_budget(ctx, targets, verifier)
    for t, cred in zip(targets, creds, strict=True):
        if t.found is not None:
            yield ctx.finding(
                f"{cred.service} account '{cred.account}' has a guessable password ({t.found.source})",
                _stored_target(cred), severity="critical" if cred.plain_text else "high",
                evidence={"service": cred.service, "account": cred.account, "source": cred.source,
                          "scheme": verifier.scheme(cred.hashed), "matched": t.found.source,
                          "length": len(t.found.text), "tried": t.tried},
                remediation=_service_fix(cred, "a long password"))
        elif t.budget_ran_out:
            ctx.skip(SkipReason.BUDGET, f"{cred.service} '{cred.account}': tried {t.tried} of {t.planned} guesses, "
                                        "none matched (raise weak_passwords.budget_seconds to try more)")


@check(id="weak_passwords.database_account", severity="high",
       summary="Database account or WordPress user with a guessable password, or none",
       needs=(MYSQL_ACCOUNTS, POSTGRES_ROLES, WORDPRESS_USERS, HOSTNAME, WORDLIST), budget=_budget,
       tags=("T1110.002",))
def database_accounts(ctx: Context) -> Iterator[Finding]:
    """The password hashes the local databases keep for their accounts, read over a local admin connection
    (MariaDB/MySQL ``root`` over its unix socket, or a configured client option file such as Debian's
    ``debian.cnf``; PostgreSQL as the cluster's owner through ``peer``), and those of the WordPress sites
    (``wp_users``, with the credentials in ``wp-config.php``, when the database is on this host): each tried
    offline against the same guesses as system accounts, in the scheme the server uses (MySQL native,
    MariaDB ed25519, MySQL 8 ``$A$005$``, SCRAM-SHA-256, PostgreSQL md5, phpass and ``$wp$2y$``). An account
    with an empty password is critical at once. No password is ever tried against the running server here
    (that is ``services.weak_password``'s, for the superusers), and a found one is never shown. Live only."""
    yield from _crack_stored(ctx, (ctx.fact(MYSQL_ACCOUNTS), ctx.fact(POSTGRES_ROLES), ctx.fact(WORDPRESS_USERS)))


@check(id="weak_passwords.ftp_virtual_user", severity="high",
       summary="FTP virtual user with a guessable password",
       needs=(FTP_USERS, HOSTNAME, WORDLIST), budget=_budget, tags=("T1110.002",))
def ftp_virtual_users(ctx: Context) -> Iterator[Finding]:
    """The FTP servers' own user stores (vsftpd's pam_userdb database, proftpd's ``AuthUserFile``,
    pure-ftpd's ``pureftpd.passwd``) tried offline against the same guesses as system accounts. Local FTP
    users are system accounts (``weak_passwords.system``), never guessed online through PAM."""
    yield from _crack_stored(ctx, (ctx.fact(FTP_USERS),))


@check(id="weak_passwords.stored_in_clear", severity="medium",
       summary="Passwords kept in clear text by a service",
       needs=(PASSWORD_FILES, FTP_USERS), tags=("T1552.001",))
def stored_in_clear(ctx: Context) -> Iterator[Finding]:
    """A password store that holds the passwords themselves: Tomcat's ``tomcat-users.xml`` without a
    CredentialHandler, nginx ``{PLAIN}`` entries, vsftpd's pam_userdb database without ``crypt=crypt``.
    Whoever reads the file (a backup, a leaked web root, a path traversal) logs in, and the same password is
    often used elsewhere. One finding per file; the passwords are never shown."""
    files = ctx.fact(PASSWORD_FILES)
    for pwfile in files.files:
        users = [e.user for e in pwfile.entries if e.plain_text]
        if users:
            yield ctx.finding(f"{pwfile.path} keeps {len(users)} password(s) in clear text",
                              {"kind": "path", "path": pwfile.path},
                              evidence={"path": pwfile.path, "servers": list(pwfile.servers), "users": users},
                              remediation=_clear_fix(pwfile.kind, pwfile.path))
    by_source: dict[str, list[StoredCredential]] = {}
    for cred in ctx.fact(FTP_USERS).credentials:
        if cred.plain_text:
            by_source.setdefault(cred.source, []).append(cred)
    for source, creds in by_source.items():
        yield ctx.finding(f"{source} keeps {len(creds)} {creds[0].service} password(s) in clear text",
                          {"kind": "path", "path": source},
                          evidence={"path": source, "service": creds[0].service, "users": [c.account for c in creds]},
                          remediation=_clear_fix(creds[0].service, source))


CLEAR_FIXES = {
    "tomcat-users": "Add a CredentialHandler to the Realm that reads {path} (`<CredentialHandler className="
                    "\"org.apache.catalina.realm.SecretKeyCredentialHandler\" algorithm=\"PBKDF2WithHmacSHA512\" "
                    "iterations=\"100000\" keyLength=\"256\"/>`), store each password as `bin/digest.sh -a "
                    "PBKDF2WithHmacSHA512 -i 100000 -s 16 -k 256 -h org.apache.catalina.realm."
                    "SecretKeyCredentialHandler` prints it, then restart Tomcat",
    "htpasswd": "Store the passwords hashed: `htpasswd -B {path} NAME` for each user NAME listed in the evidence "
                "(bcrypt), then reload nginx",
    "vsftpd": "Write the database again with crypt(3) hashes as values (`openssl passwd -6`) and add `crypt=crypt` "
              "to the pam_userdb.so lines that read {path}",
}


def _clear_fix(kind: str, path: str) -> Remediation:
    return Remediation.by_hand(
        f"Store the passwords in {path} hashed, and change them (they may have been read)",
        CLEAR_FIXES.get(kind, "Store the passwords hashed where {path} keeps them").format(path=path)
        + ". Only you can choose the new passwords.",
        Param("password", "each user's new password", "four or more random words, 20+ characters"))
