"""FTP virtual users' stored passwords, read offline from the FTP servers' own stores (live and ``--root``).

Issue 10 forbids guessing online through PAM (a wrong guess there counts against a real account's lockout),
and FTP *local* users are system accounts, which ``weak_passwords.system`` already cracks offline from
/etc/shadow. What is left are *virtual* users: accounts that exist only for the FTP server, whose passwords
live in a store of the server's own. This module reads those stores into
:class:`~hostguard.host.services.stored.StoredCredential` values, so the shared offline cracker checks them
like any other hash, and a store that keeps passwords in clear is a finding of its own.

* **vsftpd** treats every non-anonymous login as a guest (virtual) login when ``guest_enable=YES`` (and
  ``local_enable=YES``, without which it refuses every non-anonymous login). The password is then checked by
  the PAM service ``pam_service_name`` (``ftp`` when the file does not say; PAM uses the service name's
  last path component, in lower case, and falls back to ``/etc/pam.d/other`` when the service has no file).
  Its ``auth`` lines are followed through ``@include``/``include``/``substack`` (:func:`parse_pam_stack`):

  - ``pam_userdb.so db=PATH [crypt=crypt|none]``: ``PATH.db`` is a Berkeley DB hash file (key = user,
    value = password), read with the page reader of :mod:`hostguard.host.rpmdb` (both byte orders).
    ``crypt=crypt``: the value is a crypt(3) hash; anything else: the password itself, in clear.
    ``key_only`` keeps ``user-password`` in the keys, which cannot be split back into user and password
    when names hold ``-``: said as a problem rather than guessed.
  - ``pam_pwdfile.so pwdfile=PATH``: a ``user:crypt-hash`` text file.
  - ``pam_unix.so``: system accounts, covered by issue 2; modules that hold no password (pam_listfile,
    pam_shells, pam_permit, ...) say nothing. Any other module keeps its passwords somewhere this reader does
    not look (SQL, LDAP, ...): a problem line names it, so "nothing found" never hides "not looked".

* **proftpd** ``AuthUserFile`` (any context; ignored when ``AuthOrder`` leaves out ``mod_auth_file.c``): a
  passwd-format file ``user:hash:uid:gid:gecos:home:shell`` with crypt(3) hashes.
* **pure-ftpd** (Debian's layout): ``/etc/pure-ftpd/conf/PureDB`` names the compiled PureDB that enables
  virtual users; ``pure-pw`` keeps its text source ``/etc/pure-ftpd/pureftpd.passwd``
  (``user:hash:uid:gid:gecos:home:...``, crypt(3) hashes), which is what is read here.

In crypt stores a value starting with ``!`` or ``*`` is no crypt(3) output (``ftpasswd --lock`` writes ``!``):
no password logs that account in, so it is left out. An empty value is ``hashed=""`` (the account logs in
with no password). A store that cannot be read (missing, a symlink loop, not a Berkeley DB) is one line in
``problems``; the other stores are still read.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

from hostguard.engine.facts import Fact
from hostguard.host.base import FileMissing, Host, HostError, Unavailable
from hostguard.host.pam import PamLine, parse_pam_stack
from hostguard.host.rpmdb import BdbHash
from hostguard.host.services.common import one_line
from hostguard.host.services.configured import SERVICES, Services
from hostguard.host.services.ftp import FtpConfig
from hostguard.host.services.stored import StoredCredential, StoredCredentials
from hostguard.passwords.services_verifiers import tagged

PAM_DIR = "/etc/pam.d"
# vsftpd's compiled default for pam_service_name (Debian's shipped vsftpd.conf sets "vsftpd")
VSFTPD_PAM_SERVICE = "ftp"
PUREDB_CONF = "/etc/pure-ftpd/conf/PureDB"
PUREFTPD_PASSWD = "/etc/pure-ftpd/pureftpd.passwd"
MAX_STORE = 64 * 1024 * 1024   # no FTP user store is larger; a bigger file is refused as not one

# PAM auth modules that check no password against a store of their own: they only allow, deny or set up.
# pam_unix checks system accounts, which weak_passwords.system cracks offline from /etc/shadow.
PASSWORDLESS_MODULES = frozenset({
    "pam_unix.so", "pam_listfile.so", "pam_shells.so", "pam_permit.so", "pam_deny.so", "pam_nologin.so",
    "pam_env.so", "pam_faildelay.so", "pam_faillock.so", "pam_tally2.so", "pam_succeed_if.so", "pam_warn.so",
    "pam_securetty.so", "pam_access.so", "pam_time.so", "pam_limits.so", "pam_loginuid.so", "pam_group.so",
    "pam_localuser.so", "pam_rootok.so", "pam_wheel.so", "pam_echo.so", "pam_motd.so", "pam_keyinit.so",
    "pam_systemd.so", "pam_selinux.so", "pam_ftp.so", "pam_debug.so", "pam_exec.so", "pam_mail.so",
    "pam_lastlog.so", "pam_umask.so", "pam_gnome_keyring.so", "pam_cap.so", "pam_namespace.so",
})
LOCKED_PREFIXES = ("!", "*")


@dataclass
class _Found:
    """What the readers gather; a store is read once however many PAM lines or contexts name it."""

    credentials: list[StoredCredential] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)

    def first(self, service: str, path: str) -> bool:
        """True the first time ``service`` reads ``path``."""
        key = (service, path)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


# -- Berkeley DB (pam_userdb) ------------------------------------------------------------------------------

def userdb_records(data: bytes, where: str) -> list[tuple[str, str]]:
    """Every (user, password value) of a pam_userdb database given as bytes; :class:`HostError` when it is
    not a Berkeley DB hash file this reader can read.

    Keys and values may carry a trailing NUL (some tools write C strings): it is no part of the name or value.
    The bytes go through a memory file so the page reader of :mod:`hostguard.host.rpmdb` reads them as it
    reads rpm's ``Packages``, without the tree's file being opened twice.
    """
    fd = os.memfd_create("hostguard-userdb", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        db = BdbHash(fd, where)
        return [(_c_string(key), _c_string(value)) for key, value in db.records()]
    finally:
        os.close(fd)


def _c_string(raw: bytes) -> str:
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return raw.decode("utf-8", "surrogateescape")


def _credential(service: str, account: str, value: str, source: str, crypt: bool) -> StoredCredential | None:
    """One account as the verifier reads it; None for a locked crypt value (no password matches it)."""
    if not value:
        return StoredCredential(service, account, "", source, plain_text=not crypt)
    if crypt:
        if value.startswith(LOCKED_PREFIXES):
            return None
        return StoredCredential(service, account, value, source)
    return StoredCredential(service, account, tagged(value, "plain"), source, plain_text=True)


def _read_userdb(host: Host, line: PamLine, out: _Found) -> None:
    """The database a pam_userdb line names, hashed or in clear as its ``crypt=`` option says."""
    here = f"{line.path}:{line.line}"
    db = line.arg("db")
    if not db:
        out.problems.append(f"{here}: pam_userdb.so without db=: no database to read (it ignores every login)")
        return
    if line.arg("key_only") is not None:
        out.problems.append(f"{here}: pam_userdb.so key_only keeps user-password pairs in the keys of {db}.db, "
                            "which cannot be split back into user and password: not read")
        return
    crypt = (line.arg("crypt") or "").lower() == "crypt"
    path = db + ".db"
    if not out.first("vsftpd", path):
        return
    data = _read_store(host, path, f"the pam_userdb database {here} names", out)
    if data is None:
        return
    try:
        records = userdb_records(data, path)
    except HostError as exc:
        out.problems.append(f"{one_line(str(exc), 400)} (the pam_userdb database {here} names; not read)")
        return
    for user, value in records:
        found = _credential("vsftpd", user, value, path, crypt)
        if found is not None:
            out.credentials.append(found)


def _read_store(host: Host, path: str, what: str, out: _Found) -> bytes | None:
    """The bytes of a password store (``what`` names it and who points at it), or None with the problem said."""
    try:
        return host.read_bytes(path, MAX_STORE)
    except FileMissing:
        out.problems.append(f"{path}: {what} does not exist")
    except HostError as exc:
        out.problems.append(f"{one_line(str(exc), 400)} ({what}; not read)")
    return None


# -- text stores: pam_pwdfile, proftpd AuthUserFile, pure-ftpd's pureftpd.passwd -------------------------

def parse_user_file(text: str, path: str, service: str) -> tuple[list[StoredCredential], list[str]]:
    """``user:crypt-hash[:...]`` lines (blank and ``#`` lines skipped): the credentials and, one per line
    that is not such a line, a problem naming it (the other lines are still read)."""
    credentials: list[StoredCredential] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        user, sep, rest = raw.partition(":")
        if not sep or not user:
            problems.append(f"{path}:{number}: not a user:password line")
            continue
        found = _credential(service, user, rest.split(":", 1)[0], f"{path}:{number}", crypt=True)
        if found is not None:
            credentials.append(found)
    return credentials, problems


def _read_user_file(host: Host, path: str, service: str, named_by: str, out: _Found) -> None:
    if not out.first(service, path):
        return
    data = _read_store(host, path, f"the {service} password file {named_by} names", out)
    if data is None:
        return
    credentials, problems = parse_user_file(data.decode("utf-8", "surrogateescape"), path, service)
    out.credentials += credentials
    out.problems += problems


# -- the servers ---------------------------------------------------------------------------------------------

def _settings(config: FtpConfig) -> dict[str, str]:
    return {name: setting.value for name, setting in config.settings}


def pam_service_file(host: Host, name: str) -> str:
    """The file PAM reads for service ``name``: its last path component in lower case under /etc/pam.d, or
    ``other`` when the service has no file (what libpam itself does)."""
    base = name.rsplit("/", 1)[-1].lower()
    path = f"{PAM_DIR}/{base}"
    return path if base and host.exists(path) else f"{PAM_DIR}/other"


def _vsftpd(host: Host, config: FtpConfig, out: _Found) -> None:
    values = _settings(config)
    if values.get("guest_enable") != "yes" or config.local_users.value != "yes":
        return   # local (system) users, or no non-anonymous login at all: nothing of vsftpd's own to read
    path = pam_service_file(host, values.get("pam_service_name", VSFTPD_PAM_SERVICE))
    try:
        lines = parse_pam_stack(host, path, kind="auth")
    except (HostError, Unavailable) as exc:
        out.problems.append(f"{one_line(str(exc), 400)} (vsftpd's PAM service; its virtual users not read)")
        return
    for line in lines:
        module = line.module.rsplit("/", 1)[-1]
        if module == "pam_userdb.so":
            _read_userdb(host, line, out)
        elif module == "pam_pwdfile.so":
            pwdfile = line.arg("pwdfile")
            if pwdfile:
                _read_user_file(host, pwdfile, "vsftpd", f"{line.path}:{line.line}", out)
            else:
                out.problems.append(f"{line.path}:{line.line}: pam_pwdfile.so without pwdfile=: not read")
        elif module not in PASSWORDLESS_MODULES:
            out.problems.append(f"{line.path}:{line.line}: vsftpd's virtual users log in through {line.module}, "
                                "whose password store hostguard does not read")


def _proftpd(host: Host, config: FtpConfig, out: _Found) -> None:
    order = _settings(config).get("authorder")
    if order is not None and not any(m.rstrip("*").lower() == "mod_auth_file.c" for m in order.split()):
        return   # AuthOrder leaves mod_auth_file out: proftpd never consults an AuthUserFile
    for setting in config.auth_user_files:
        path = setting.value
        if not posixpath.isabs(path):
            out.problems.append(f"{setting.where}: AuthUserFile {path!r} is not an absolute path (proftpd "
                                "refuses it): not read")
            continue
        _read_user_file(host, path, "proftpd", str(setting.where), out)


def _pure_ftpd(host: Host, out: _Found) -> None:
    try:
        conf = host.read_optional(PUREDB_CONF)
    except HostError as exc:
        out.problems.append(f"{one_line(str(exc), 400)} (pure-ftpd's PureDB setting; its virtual users not read)")
        return
    if conf is None:
        return   # PureDB is not enabled: pure-ftpd has no virtual users
    pdb = conf.strip().split("\n", 1)[0].strip()
    if host.exists(PUREFTPD_PASSWD):
        _read_user_file(host, PUREFTPD_PASSWD, "pure-ftpd", PUREDB_CONF, out)
    elif pdb and host.exists(pdb):
        out.problems.append(f"{pdb}: pure-ftpd's virtual users are in this compiled PureDB, whose text source "
                            f"{PUREFTPD_PASSWD} is missing: not read")


def collect_ftp_users(host: Host, services: Services) -> StoredCredentials:
    """Every FTP virtual user's stored password (vsftpd through PAM, proftpd, pure-ftpd), and the stores
    that could not be read."""
    out = _Found()
    for name, why in services.problems:
        if name == "FTP":
            out.problems.append(f"{one_line(why, 400)} (the FTP configuration; its virtual users not read)")
    for service in services.services:
        record = service.record
        if isinstance(record, FtpConfig):
            if record.server == "vsftpd":
                _vsftpd(host, record, out)
            elif record.server == "proftpd":
                _proftpd(host, record, out)
    _pure_ftpd(host, out)
    return StoredCredentials(tuple(out.credentials), tuple(out.problems))


FTP_USERS: Fact[StoredCredentials] = Fact("ftp_users", collect_ftp_users, inputs=(SERVICES,))
