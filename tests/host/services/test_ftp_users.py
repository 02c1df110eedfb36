"""FTP virtual users' stored passwords (``FTP_USERS``).

vsftpd for real: a private vsftpd on loopback with ``guest_enable=YES`` and a PAM service using pam_userdb on
a database written by the real ``db5.3_load``, once with crypt(3) hashes (``openssl passwd -6``) and once in
clear text (written big-endian, so the other byte order is read too). PAM reads its services only from
/etc/pam.d, so vsftpd runs in a private mount namespace with the test's tree bound over /etc/pam.d and /mnt:
the machine's own /etc is never written. The real vsftpd logging each user in with its password (and refusing
another) is what shows the reader reads the store vsftpd uses; the same tree is then read under ``--root``
and, in the same kind of namespace, through ``LiveHost``.

proftpd (which conflicts with vsftpd in Debian) and pure-ftpd are not installed: their files are written here
in the formats their documentation gives, with hashes made by the real ``openssl passwd``.
"""

from __future__ import annotations

import ftplib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.engine.facts import Facts
from hostguard.host.base import HostError, RootHost
from hostguard.host.services.ftp_users import FTP_USERS, parse_user_file, userdb_records
from hostguard.host.services.stored import StoredCredential, StoredCredentials
from hostguard.passwords.services_verifiers import service_verifier, tagged
from tests.conftest import make_config, need_root, need_tool
from tests.host.services.helpers import free_port, running, tree, wait_for

WEAK = ("ftpalice", "password1")
STRONG = ("ftpbob", "Vq7#Lm2!xR9pZ4wK-hostguard")
PAM_SERVICE = "hg-vusers"
DB = "/mnt/hg-vusers/virtual"          # the db= value; pam_userdb opens DB + ".db"
REPO = Path(__file__).resolve().parents[3]


def _openssl(password: str, scheme: str = "-6") -> str:
    need_tool("openssl")
    return subprocess.run(["openssl", "passwd", scheme, "-stdin"], input=password, capture_output=True, text=True,
                          check=True).stdout.strip()


def _db_load(path: Path, pairs: list[tuple[str, str]], big_endian: bool = False) -> None:
    """A Berkeley DB hash file written by the real db5.3_load (``-T``: one key line, one value line)."""
    need_tool("db5.3_load")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{k}\n{v}\n" for k, v in pairs)
    order = ["-c", "db_lorder=4321"] if big_endian else []
    subprocess.run(["db5.3_load", "-T", "-t", "hash", *order, str(path)], input=text, text=True, check=True)


def _verifies(cred: StoredCredential, right: str) -> bool:
    """True for the right password and False for a wrong one, both through the shared verifier."""
    v = service_verifier()
    return v.verify(right.encode(), cred.hashed) and not v.verify(right.encode() + b"x", cred.hashed)


def _ftp_users(root: Path) -> StoredCredentials:
    return Facts(RootHost(str(root)), make_config()).get(FTP_USERS)


# -- vsftpd with a real pam_userdb ----------------------------------------------------------------------

@pytest.fixture
def vdirs() -> Iterator[Path]:
    """A root-owned base (0755, as vsftpd wants) with the guests' local_root and an empty secure_chroot_dir."""
    base = Path(tempfile.mkdtemp(prefix="hostguard-ftpusers-"))
    try:
        base.chmod(0o755)
        (base / "files").mkdir(mode=0o755)
        (base / "files" / "hello.txt").write_text("hello\n")
        (base / "empty").mkdir(mode=0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _vsftpd_tree(root: Path, base: Path, port: int, crypt: str | None, vsftpd_extra: str = "") -> None:
    """vsftpd's guests act as ``guest_username`` (default ``ftp``, the account Debian's vsftpd package makes;
    vsftpd enters its home before ``local_root``, so it must exist)."""
    option = f" crypt={crypt}" if crypt else ""
    tree(root, {
        "/etc/vsftpd.conf": f"listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n"
                            f"background=NO\nanonymous_enable=NO\nlocal_enable=YES\nwrite_enable=NO\n"
                            f"guest_enable=YES\nlocal_root={base / 'files'}\n"
                            f"secure_chroot_dir={base / 'empty'}\nseccomp_sandbox=NO\nxferlog_enable=NO\n"
                            f"delay_failed_login=0\npam_service_name={PAM_SERVICE}\n{vsftpd_extra}",
        f"/etc/pam.d/{PAM_SERVICE}": "# virtual users only\n@include hg-common-auth\n"
                                     "account required pam_permit.so\nsession required pam_permit.so\n",
        # followed through @include, as Debian's services include common-auth
        "/etc/pam.d/hg-common-auth": f"auth required pam_userdb.so db={DB}{option}\n",
    })


def _in_namespace(root: Path, command: str, *args: str) -> list[str]:
    """argv running ``command`` in a private mount namespace with the tree's /etc/pam.d and /mnt bound over
    the machine's (the machine's own are never touched; the namespace ends with the process)."""
    need_tool("unshare", "mount")
    script = f'mount --bind "$1" /etc/pam.d && mount --bind "$2" /mnt && {command}'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
            str(root / "etc/pam.d"), str(root / "mnt"), *args]


def _login(port: int, user: str, password: str) -> bool:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=10)
    try:
        ftp.login(user, password)
        return "hello.txt" in ftp.nlst()          # a guest session in local_root, as vsftpd sets it up
    except ftplib.error_perm:
        return False
    finally:
        ftp.close()


def _accepts(port: int) -> bool:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=2)
    ftp.close()
    return True


def _live_ftp_users(root: Path) -> list[dict[str, object]]:
    """FTP_USERS through LiveHost, in a namespace where the tree's vsftpd.conf, PAM files and db are the
    machine's own paths."""
    if not os.path.exists("/etc/vsftpd.conf"):
        pytest.skip(reason="no /etc/vsftpd.conf to bind the test's over (vsftpd is not installed)")
    code = ("import json, sys\nfrom dataclasses import asdict\nfrom hostguard.engine.facts import Facts\n"
            "from hostguard.host.base import LiveHost\nfrom hostguard.host.services.ftp_users import FTP_USERS\n"
            "from tests.conftest import make_config\n"
            "found = Facts(LiveHost(), make_config()).get(FTP_USERS)\n"
            "print(json.dumps([asdict(c) for c in found.credentials if c.service == 'vsftpd']))\n")
    argv = _in_namespace(root, 'mount --bind "$3" /etc/vsftpd.conf && exec "$4" -c "$5"',
                         str(root / "etc/vsftpd.conf"), sys.executable, code)
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    found: list[dict[str, object]] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("crypt", ["crypt", "none"])
def test_vsftpd_virtual_users_are_read_from_the_store_vsftpd_uses(tmp_path: Path, vdirs: Path, crypt: str) -> None:
    need_root("vsftpd in a private mount namespace")
    need_tool("vsftpd")
    root, port = tmp_path / "host", free_port()
    _vsftpd_tree(root, vdirs, port, crypt)
    users = [WEAK, STRONG]
    stored = [(u, _openssl(p)) for u, p in users] if crypt == "crypt" else users
    # the clear-text store is written big-endian: pam_userdb and our reader both read either byte order
    _db_load(root / ("." + DB + ".db"), stored, big_endian=crypt == "none")

    argv = _in_namespace(root, 'exec vsftpd "$3"', str(root / "etc/vsftpd.conf"))
    with running(argv, tmp_path / "vsftpd.log"):
        wait_for(lambda: _accepts(port), what="vsftpd")
        logins = {(u, ok): _login(port, u, p if ok else p + "x") for u, p in users for ok in (True, False)}
    assert logins == {(WEAK[0], True): True, (WEAK[0], False): False,
                      (STRONG[0], True): True, (STRONG[0], False): False}, (tmp_path / "vsftpd.log").read_text()

    found = _ftp_users(root)
    assert found.problems == ()
    assert [(c.service, c.account, c.source, c.plain_text) for c in found.credentials] == [
        ("vsftpd", u, DB + ".db", crypt == "none") for u, _ in users]
    for cred, (_user, password) in zip(found.credentials, users, strict=True):
        assert _verifies(cred, password)
    if crypt == "none":
        assert found.credentials[0].hashed == tagged(WEAK[1], "plain")
    else:
        assert found.credentials[0].hashed.startswith("$6$")
        assert service_verifier().scheme(found.credentials[0].hashed) == "sha512"

    live = _live_ftp_users(root)
    assert live == [asdict(c) for c in found.credentials]


def test_vsftpd_without_guest_enable_logs_in_local_users_only(tmp_path: Path, vdirs: Path) -> None:
    """Near miss, proven on the real vsftpd: the same db and PAM service, guest_enable=NO. The virtual user is
    then looked up as a system account (there is none), so the login fails — and nothing is returned."""
    need_root("vsftpd in a private mount namespace")
    need_tool("vsftpd")
    root, port = tmp_path / "host", free_port()
    _vsftpd_tree(root, vdirs, port, "crypt", vsftpd_extra="guest_enable=NO\n")
    _db_load(root / ("." + DB + ".db"), [(WEAK[0], _openssl(WEAK[1]))])
    with running(_in_namespace(root, 'exec vsftpd "$3"', str(root / "etc/vsftpd.conf")), tmp_path / "log"):
        wait_for(lambda: _accepts(port), what="vsftpd")
        assert not _login(port, *WEAK)
    assert _ftp_users(root) == StoredCredentials()


# -- vsftpd near misses and problems on written trees -----------------------------------------------------

VSFTPD_GUEST = "listen=YES\nlocal_enable=YES\nguest_enable=YES\npam_service_name=vftp\n"


def _userdb_tree(tmp_path: Path, pam: str, conf: str = VSFTPD_GUEST) -> Path:
    root = tmp_path / "host"
    tree(root, {"/etc/vsftpd.conf": conf, "/etc/pam.d/vftp": pam})
    return root


def test_a_pam_unix_stack_is_system_accounts_nothing_and_no_problem(tmp_path: Path) -> None:
    root = _userdb_tree(tmp_path, "auth required pam_listfile.so item=user sense=deny file=/etc/ftpusers\n"
                                  "@include common-auth\nauth required pam_shells.so\n")
    tree(root, {"/etc/pam.d/common-auth": "auth [success=1 default=ignore] pam_unix.so nullok\n"
                                          "auth requisite pam_deny.so\nauth required pam_permit.so\n"})
    assert _ftp_users(root) == StoredCredentials()


def test_local_enable_no_refuses_virtual_users_too(tmp_path: Path) -> None:
    root = _userdb_tree(tmp_path, f"auth required pam_userdb.so db={DB}\n",
                        conf="listen=YES\nlocal_enable=NO\nguest_enable=YES\npam_service_name=vftp\n")
    _db_load(root / ("." + DB + ".db"), [WEAK])
    assert _ftp_users(root) == StoredCredentials()


def test_the_compiled_default_service_and_pam_other(tmp_path: Path) -> None:
    """No pam_service_name: vsftpd's compiled default "ftp"; no /etc/pam.d/ftp: PAM's "other"."""
    root = tmp_path / "host"
    tree(root, {"/etc/vsftpd.conf": "listen=YES\nlocal_enable=YES\nguest_enable=YES\n",
                "/etc/pam.d/other": f"auth sufficient /lib/x86_64-linux-gnu/security/pam_userdb.so db={DB} "
                                    "crypt=crypt\n"})
    hashed = _openssl(WEAK[1], "-5")
    _db_load(root / ("." + DB + ".db"), [(WEAK[0], hashed), ("locked", "!" + hashed), ("nopass", "")])
    found = _ftp_users(root)
    assert [(c.account, c.hashed, c.plain_text) for c in found.credentials] == [
        (WEAK[0], hashed, False), ("nopass", "", False)]     # a "!" value is no crypt output: locked, left out
    assert _verifies(found.credentials[0], WEAK[1]) and found.problems == ()


def test_nul_terminated_keys_and_values(tmp_path: Path) -> None:
    """Some tools store C strings: the NUL is no part of the name or the password."""
    root = _userdb_tree(tmp_path, f"auth required pam_userdb.so db={DB} crypt=none\n")
    _db_load(root / ("." + DB + ".db"), [("ftpalice\\00", "password1\\00")])   # -T: backslash escapes
    [cred] = _ftp_users(root).credentials
    assert (cred.account, cred.plain_text) == ("ftpalice", True) and _verifies(cred, "password1")


def test_a_missing_db_is_a_problem_line(tmp_path: Path) -> None:
    root = _userdb_tree(tmp_path, f"auth required pam_userdb.so db={DB} crypt=crypt\n")
    found = _ftp_users(root)
    assert found.credentials == ()
    assert found.problems == (f"{DB}.db: the pam_userdb database /etc/pam.d/vftp:1 names does not exist",)


def test_garbage_bytes_as_the_db_is_a_problem_line(tmp_path: Path) -> None:
    root = _userdb_tree(tmp_path, f"auth required pam_userdb.so db={DB} crypt=crypt\n")
    (root / ("." + DB + ".db")).parent.mkdir(parents=True)
    (root / ("." + DB + ".db")).write_bytes(b"\x00\x01garbage" * 100)
    found = _ftp_users(root)
    assert found.credentials == ()
    assert found.problems == (f"{DB}.db: not a Berkeley DB hash file (bad magic) "
                              "(the pam_userdb database /etc/pam.d/vftp:1 names; not read)",)


def test_an_unreadable_db_is_a_problem_line_and_the_other_stores_are_read(tmp_path: Path) -> None:
    """Unreadable also as root: a symlink loop where the db was. The pwdfile on the next line is still read."""
    root = _userdb_tree(tmp_path, f"auth sufficient pam_userdb.so db={DB}\n"
                                  "auth required pam_pwdfile.so pwdfile=/etc/vsftpd/passwd\n")
    hashed = _openssl(STRONG[1])
    tree(root, {"/etc/vsftpd/passwd": f"{STRONG[0]}:{hashed}\n"})
    (root / "mnt/hg-vusers").mkdir(parents=True)
    (root / ("." + DB + ".db")).symlink_to("virtual.db")
    found = _ftp_users(root)
    assert found.problems == (f"{DB}.db: too many levels of symbolic links "
                              "(the pam_userdb database /etc/pam.d/vftp:1 names; not read)",)
    [cred] = found.credentials
    assert (cred.account, cred.source) == (STRONG[0], "/etc/vsftpd/passwd:1") and _verifies(cred, STRONG[1])


def test_modules_whose_store_is_not_read_are_named(tmp_path: Path) -> None:
    root = _userdb_tree(tmp_path, "auth required pam_mysql.so user=ftp db=ftp table=users\n"
                                  "auth required pam_userdb.so\nauth required pam_userdb.so db=/x key_only\n")
    found = _ftp_users(root)
    assert found.credentials == ()
    assert found.problems == (
        "/etc/pam.d/vftp:1: vsftpd's virtual users log in through pam_mysql.so, whose password store hostguard "
        "does not read",
        "/etc/pam.d/vftp:2: pam_userdb.so without db=: no database to read (it ignores every login)",
        "/etc/pam.d/vftp:3: pam_userdb.so key_only keeps user-password pairs in the keys of /x.db, which cannot "
        "be split back into user and password: not read")


def test_a_broken_vsftpd_conf_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    root = _userdb_tree(tmp_path, f"auth required pam_userdb.so db={DB}\n", conf="guest_enable = YES\n")
    found = _ftp_users(root)
    assert found.credentials == ()
    assert len(found.problems) == 1 and "unrecognised variable" in found.problems[0]
    assert "virtual users not read" in found.problems[0]


# -- proftpd AuthUserFile -------------------------------------------------------------------------------

def test_proftpd_auth_user_file(tmp_path: Path) -> None:
    weak, strong = _openssl(WEAK[1], "-1"), _openssl(STRONG[1])
    root = tmp_path / "host"
    tree(root, {
        "/etc/proftpd/proftpd.conf": "Port 21\nAuthOrder mod_auth_file.c mod_auth_unix.c\n"
                                     "AuthUserFile /etc/proftpd/ftpd.passwd\n"
                                     "<VirtualHost 192.0.2.21>\n  AuthUserFile /srv/ftp/vhost.passwd\n"
                                     "</VirtualHost>\n",
        # the format ftpasswd writes: user:hash:uid:gid:gecos:home:shell
        "/etc/proftpd/ftpd.passwd": f"# virtual users\n{WEAK[0]}:{weak}:2001:2001:Alice:/srv/ftp/alice:"
                                    "/bin/false\nlocked:!" + weak + ":2002:2001::/srv/ftp:/bin/false\n",
        "/srv/ftp/vhost.passwd": f"{STRONG[0]}:{strong}:2003:2001::/srv/ftp/bob:/bin/false\nbroken line\n"})
    found = _ftp_users(root)
    assert [(c.service, c.account, c.source, c.plain_text) for c in found.credentials] == [
        ("proftpd", WEAK[0], "/etc/proftpd/ftpd.passwd:2", False),
        ("proftpd", STRONG[0], "/srv/ftp/vhost.passwd:1", False)]
    assert _verifies(found.credentials[0], WEAK[1]) and _verifies(found.credentials[1], STRONG[1])
    assert found.problems == ("/srv/ftp/vhost.passwd:2: not a user:password line",)


def test_proftpd_near_miss_auth_order_without_mod_auth_file(tmp_path: Path) -> None:
    root = tmp_path / "host"
    tree(root, {"/etc/proftpd/proftpd.conf": "AuthOrder mod_auth_pam.c* mod_auth_unix.c\n"
                                             "AuthUserFile /etc/proftpd/ftpd.passwd\n",
                "/etc/proftpd/ftpd.passwd": f"{WEAK[0]}:{_openssl(WEAK[1])}:2001:2001::/srv:/bin/false\n"})
    assert _ftp_users(root) == StoredCredentials()


def test_proftpd_missing_and_relative_user_files_are_problems(tmp_path: Path) -> None:
    root = tmp_path / "host"
    tree(root, {"/etc/proftpd/proftpd.conf": "AuthUserFile /etc/proftpd/nope.passwd\nAuthUserFile ftpd.passwd\n"})
    assert _ftp_users(root).problems == (
        "/etc/proftpd/nope.passwd: the proftpd password file /etc/proftpd/proftpd.conf:1 names does not exist",
        "/etc/proftpd/proftpd.conf:2: AuthUserFile 'ftpd.passwd' is not an absolute path (proftpd refuses it): "
        "not read")


# -- pure-ftpd PureDB -------------------------------------------------------------------------------------

PURE_FIELDS = ":2001:2001::/srv/ftp/./::::::::::::"    # uid:gid:gecos:home then the optional limits, empty


def test_pure_ftpd_virtual_users(tmp_path: Path) -> None:
    weak, strong = _openssl(WEAK[1], "-5"), _openssl(STRONG[1])
    root = tmp_path / "host"
    tree(root, {"/etc/pure-ftpd/conf/PureDB": "/etc/pure-ftpd/pureftpd.pdb\n",
                "/etc/pure-ftpd/pureftpd.passwd": f"{WEAK[0]}:{weak}{PURE_FIELDS}\n{STRONG[0]}:{strong}{PURE_FIELDS}\n"
                                                  f"empty:{PURE_FIELDS}\n"})
    found = _ftp_users(root)
    assert [(c.service, c.account, c.source) for c in found.credentials] == [
        ("pure-ftpd", WEAK[0], "/etc/pure-ftpd/pureftpd.passwd:1"),
        ("pure-ftpd", STRONG[0], "/etc/pure-ftpd/pureftpd.passwd:2"),
        ("pure-ftpd", "empty", "/etc/pure-ftpd/pureftpd.passwd:3")]
    assert _verifies(found.credentials[0], WEAK[1]) and _verifies(found.credentials[1], STRONG[1])
    assert found.credentials[2].hashed == "" and found.problems == ()


def test_pure_ftpd_near_miss_puredb_not_enabled(tmp_path: Path) -> None:
    """A pureftpd.passwd left behind while PureDB is not configured: pure-ftpd has no virtual users."""
    root = tmp_path / "host"
    tree(root, {"/etc/pure-ftpd/conf/UnixAuthentication": "yes\n",
                "/etc/pure-ftpd/pureftpd.passwd": f"{WEAK[0]}:{_openssl(WEAK[1])}{PURE_FIELDS}\n"})
    assert _ftp_users(root) == StoredCredentials()


def test_pure_ftpd_compiled_db_without_its_text_source_is_a_problem(tmp_path: Path) -> None:
    root = tmp_path / "host"
    tree(root, {"/etc/pure-ftpd/conf/PureDB": "/etc/pure-ftpd/pureftpd.pdb\n",
                "/etc/pure-ftpd/pureftpd.pdb": "PDB2"})
    found = _ftp_users(root)
    assert found.credentials == ()
    assert found.problems == ("/etc/pure-ftpd/pureftpd.pdb: pure-ftpd's virtual users are in this compiled "
                              "PureDB, whose text source /etc/pure-ftpd/pureftpd.passwd is missing: not read",)


def test_no_ftp_server_at_all(tmp_path: Path) -> None:
    tree(tmp_path / "host", {"/etc/hostname": "h\n"})
    assert _ftp_users(tmp_path / "host") == StoredCredentials()


# -- fuzz: the page reader and the text parser never raise anything but HostError ---------------------------

def _bdb_like() -> st.SearchStrategy[bytes]:
    """Random bytes, and random bytes behind a valid-looking hash meta page so the page walk is reached."""
    head = st.builds(lambda order, version, pagesize, last, rest: (
        b"\0" * 12 + (0x061561).to_bytes(4, order) + version.to_bytes(4, order) + pagesize.to_bytes(4, order)
        + b"\0\x08\0\0\0\0\0\0" + last.to_bytes(4, order) + rest),
        st.sampled_from(["little", "big"]), st.sampled_from([8, 9, 10]), st.sampled_from([512, 1024]),
        st.integers(0, 8), st.binary(min_size=0, max_size=4096))
    return st.binary(max_size=2048) | head


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bdb_like())
def test_userdb_reader_over_random_bytes(data: bytes) -> None:
    try:
        records = userdb_records(data, "/x.db")
    except HostError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("/x.db")
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in records)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_user_file_parser_over_random_text(text: str) -> None:
    credentials, problems = parse_user_file(text, "/p", "proftpd")
    assert all(c.account and ":" not in c.account for c in credentials)
    assert all(p.startswith("/p:") and "\n" not in p for p in problems)
