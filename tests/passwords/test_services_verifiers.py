"""Service password schemes against the real tools that write and check them.

Every scheme is proven twice: hashes made now by the real tool (htpasswd, openssl, digest.sh, PHP, a temp
PostgreSQL cluster, a temp mariadbd) verify with the right password and not with a near miss, and the known
answers kept in ``data/weak_passwords/service-known-answers.toml`` are checked by the same tools (salted ones
by asking the tool to verify the stored value, unsalted ones by making them again). MySQL 8 is not packaged
in Debian 12: ``$A$005$`` is proven on hashcat's published example hashes and by the SHA-256-crypt core
agreeing with libxcrypt's ``$5$`` wherever libxcrypt can compute it (salt of 16 bytes or less).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.passwords import service_schemes as algo
from hostguard.passwords.cracker import Target, crack
from hostguard.passwords.guesses import Guess
from hostguard.passwords.services_verifiers import (
    SCHEMES,
    ServiceVerifier,
    known_answers,
    service_verifier,
    split_tag,
    tagged,
)
from hostguard.passwords.verifiers import crypt_verifier
from tests.conftest import need_tool
from tests.host.services.helpers import free_port, running, wait_for
from tests.realservers import new_mariadb_datadir, postgres_cluster

KAT = known_answers()
V = service_verifier()
PASSWORD = "Tr0ub4dor&3-hg"
WRONG = "Tr0ub4dor&3-hG"  # a near miss: one letter's case
TOMCAT = Path("/usr/share/tomcat10")
# digest.sh hands its arguments to `eval` (tool-wrapper.sh): its password must not hold shell syntax
TOMCAT_PW, TOMCAT_WRONG = "Tr0ub4dor3-hg", "Tr0ub4dor3-hG"
WORDPRESS_PHPASS = Path("/usr/share/wordpress/wp-includes/class-phpass.php")


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        argv, capture_output=True, text=True, timeout=60, **kwargs)
    return done


# -- known answers ----------------------------------------------------------------------------------------


def test_every_scheme_has_a_known_answer_that_passes_here() -> None:
    assert sorted(KAT) == sorted(SCHEMES)
    status = V.working_schemes()
    assert {name: status[name] for name in SCHEMES} == dict.fromkeys(SCHEMES, "ok")
    assert status["bcrypt"] == "ok" and status["des"] == "ok"  # crypt(3)'s, for htpasswd -B and -d


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_known_answer_hit_and_near_miss(name: str) -> None:
    case = KAT[name]
    assert V.scheme(case["hash"]) == name
    assert V.verify(case["password"].encode(), case["hash"])
    assert not V.verify(case["password"][:-1].encode() + b"X", case["hash"])
    assert not V.verify(b"", case["hash"])


def test_a_broken_known_answer_takes_only_its_scheme_out(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = {**KAT, "apr1": {**KAT["apr1"], "password": "not-the-known-answer"}}
    monkeypatch.setattr("hostguard.passwords.services_verifiers.known_answers", lambda: broken)
    status = ServiceVerifier().working_schemes()
    assert status["apr1"] == "its known answer does not verify here"
    assert status["phpass"] == "ok"


# -- htpasswd: Apache's own tool makes and checks ----------------------------------------------------------


@pytest.mark.parametrize(("flag", "scheme"), [("-m", "apr1"), ("-s", "htpasswd-sha1"), ("-B", "bcrypt"),
                                              ("-d", "des"), ("-2", "sha256"), ("-5", "sha512")])
def test_htpasswd_made_hashes(flag: str, scheme: str) -> None:
    need_tool("htpasswd")
    done = _run(["htpasswd", "-nb" + flag[1], "alice", PASSWORD])
    assert done.returncode == 0, done.stderr
    user, _, hashed = done.stdout.strip().partition(":")
    assert user == "alice"
    assert V.scheme(hashed) == scheme
    assert V.verify(PASSWORD.encode(), hashed)
    # DES reads 8 characters only: the near miss differs within them there
    near = WRONG if scheme != "des" else "tr0ub4dor&3-hg"
    assert not V.verify(near.encode(), hashed)


@pytest.mark.parametrize("name", ["apr1", "htpasswd-sha1"])
def test_htpasswd_checks_the_known_answers(tmp_path: Path, name: str) -> None:
    need_tool("htpasswd")
    case = KAT[name]
    (tmp_path / "users").write_text(f"kat:{case['hash']}\n")
    right = _run(["htpasswd", "-vb", str(tmp_path / "users"), "kat", case["password"]])
    wrong = _run(["htpasswd", "-vb", str(tmp_path / "users"), "kat", case["password"] + "-"])
    assert (right.returncode, wrong.returncode) == (0, 3), (right.stderr, wrong.stderr)


def test_htpasswd_plain_text_is_not_a_password_on_linux(tmp_path: Path) -> None:
    """htpasswd -p writes the password itself; Apache's check (the one htpasswd -v runs) hashes it with
    crypt(3) on Linux, so even the right password is refused: we call such a value plain, not accepted."""
    need_tool("htpasswd")
    line = _run(["htpasswd", "-nbp", "alice", PASSWORD]).stdout.strip()
    assert line == f"alice:{PASSWORD}"
    (tmp_path / "users").write_text(line + "\n")
    assert _run(["htpasswd", "-vb", str(tmp_path / "users"), "alice", PASSWORD]).returncode == 3
    hashed = tagged(PASSWORD, "plain")
    assert V.scheme(hashed) == "plain" and V.scheme(PASSWORD) is None
    assert V.verify(PASSWORD.encode(), hashed) and not V.verify(WRONG.encode(), hashed)


def test_apr1_equals_openssl_for_any_salt() -> None:
    need_tool("openssl")
    for salt in ("abcdefgh", "./AZaz09", "x", "salt-too-long-is-cut"):
        done = _run(["openssl", "passwd", "-apr1", "-salt", salt, PASSWORD])
        assert done.returncode == 0, done.stderr
        assert algo.md5_crypt(PASSWORD.encode(), salt.encode()) == done.stdout.strip()
        assert V.verify(PASSWORD.encode(), done.stdout.strip())


def test_md5_crypt_with_crypts_magic_equals_libxcrypt() -> None:
    for salt in ("abcdefgh", "s", ""):
        assert algo.md5_crypt(PASSWORD.encode(), salt.encode(), b"$1$") == crypt_verifier().crypt(
            PASSWORD.encode(), f"$1${salt}$")


def test_ssha_and_plain_of_nginx_are_what_nginx_accepts() -> None:
    """nginx's {SSHA} (no tool here makes one) and {PLAIN}: logging in through a real nginx on loopback.
    The files live in a directory of their own that nginx's unprivileged workers can read."""
    need_tool("nginx", "curl")
    tmp_path = Path(tempfile.mkdtemp(prefix="hostguard-nginx-pw-"))
    try:
        _nginx_logins(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _nginx_logins(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "html").mkdir()
    (tmp_path / "html/index.html").write_text("ok\n")
    (tmp_path / "tmp").mkdir()
    ssha = KAT["htpasswd-ssha"]
    (tmp_path / "users").write_text(f"kat:{ssha['hash']}\nplainkat:{{PLAIN}}{PASSWORD}\n")
    temp = " ".join(f"{k}_temp_path {tmp_path}/tmp;" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; worker_processes 1;\n"
        f"events {{}}\nhttp {{ access_log off; {temp}\n server {{ listen 127.0.0.1:{port}; root {tmp_path}/html;\n"
        f"  location / {{ auth_basic \"hg\"; auth_basic_user_file {tmp_path}/users; }} }} }}\n")
    os.chmod(tmp_path, 0o755)
    for p in tmp_path.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)

    def status(user: str, password: str) -> str:
        return _run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{user}:{password}",
                     f"http://127.0.0.1:{port}/"]).stdout

    with running(["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], tmp_path / "log"):
        wait_for(lambda: status("kat", "x") == "401", what="nginx")
        got = {(u, p): status(u, p) for u, p in [("kat", ssha["password"]), ("kat", ssha["password"] + "-"),
                                                  ("plainkat", PASSWORD), ("plainkat", WRONG)]}
    assert got == {("kat", ssha["password"]): "200", ("kat", ssha["password"] + "-"): "401",
                   ("plainkat", PASSWORD): "200", ("plainkat", WRONG): "401"}
    assert V.verify(ssha["password"].encode(), ssha["hash"])
    assert not V.verify(ssha["password"].encode() + b"-", ssha["hash"])


# -- WordPress: phpass and the $wp$ bcrypt form ----------------------------------------------------------

# phpass's portable hash, written here in PHP from the algorithm's description (not WordPress's code): the
# second opinion when Debian's wordpress package is not installed.
PHPASS_PHP = r"""
$itoa = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
function enc($in, $itoa) { $out = ''; $n = strlen($in);
  for ($i = 0; $i < $n; $i += 3) { $chunk = substr($in, $i, 3); $v = 0;
    for ($k = strlen($chunk) - 1; $k >= 0; $k--) { $v = ($v << 8) | ord($chunk[$k]); }
    for ($k = 0; $k <= strlen($chunk); $k++) { $out .= $itoa[$v & 63]; $v >>= 6; } }
  return $out; }
$pw = $argv[1]; $setting = $argv[2];
$count = 1 << strpos($itoa, $setting[3]); $salt = substr($setting, 4, 8);
$h = md5($salt . $pw, true);
for ($i = 0; $i < $count; $i++) { $h = md5($h . $pw, true); }
echo substr($setting, 0, 12) . enc($h, $itoa);
"""


@pytest.mark.parametrize("setting", ["$P$Babcdefgh", "$H$9saltsalt", "$P$Cx.y/z012"])
def test_phpass_equals_a_php_implementation(setting: str) -> None:
    need_tool("php")
    done = _run(["php", "-r", PHPASS_PHP, PASSWORD, setting])
    assert done.returncode == 0, done.stderr
    assert algo.phpass(PASSWORD.encode(), setting) == done.stdout
    assert V.scheme(done.stdout) == "phpass"
    assert V.verify(PASSWORD.encode(), done.stdout) and not V.verify(WRONG.encode(), done.stdout)


def test_phpass_against_wordpress_itself() -> None:
    """Debian's wordpress package (6.1: phpass only) hashes, we check; we keep a known answer, it checks."""
    need_tool("php")
    if not WORDPRESS_PHPASS.exists():
        pytest.skip(reason="the wordpress package is not installed (scripts/install-system-deps.sh test installs it)")
    script = (f"require '{WORDPRESS_PHPASS}'; $h = new PasswordHash(8, true);"
              "echo $h->HashPassword($argv[1]), ' ', var_export($h->CheckPassword($argv[1], $argv[2]), true), ' ',"
              "var_export($h->CheckPassword($argv[1] . '-', $argv[2]), true);")
    done = _run(["php", "-r", script, KAT["phpass"]["password"], KAT["phpass"]["hash"]])
    assert done.returncode == 0, done.stderr
    made, right, wrong = done.stdout.split()
    assert (right, wrong) == ("true", "false")
    assert V.scheme(made) == "phpass" and made.startswith("$P$B")
    assert V.verify(KAT["phpass"]["password"].encode(), made)
    assert not V.verify(KAT["phpass"]["password"].encode() + b"-", made)


# WordPress 6.8's wp_hash_password()/wp_check_password() for bcrypt, as its announcement and source describe
# them, run by PHP itself: password_hash()/password_verify() over base64(HMAC-SHA384(pw, 'wp-sha384')).
WP68_PHP = r"""
$pre = function ($pw) { return base64_encode(hash_hmac('sha384', $pw, 'wp-sha384', true)); };
$made = '$wp' . password_hash($pre($argv[1]), PASSWORD_BCRYPT, ['cost' => 5]);
$ok = password_verify($pre($argv[1]), substr($argv[2], 3)) ? 'true' : 'false';
$bad = password_verify($pre($argv[1] . '-'), substr($argv[2], 3)) ? 'true' : 'false';
echo "$made $ok $bad";
"""


def test_wordpress_68_bcrypt_form_with_php() -> None:
    need_tool("php")
    case = KAT["wordpress-bcrypt"]
    done = _run(["php", "-r", WP68_PHP, case["password"], case["hash"]])
    assert done.returncode == 0, done.stderr
    made, right, wrong = done.stdout.split()
    assert (right, wrong) == ("true", "false")
    assert made.startswith("$wp$2y$05$") and V.scheme(made) == "wordpress-bcrypt"
    assert V.verify(case["password"].encode(), made) and not V.verify(case["password"].encode() + b"-", made)
    # the bare bcrypt inside is not the password's own bcrypt: without the pre-hash it does not verify
    assert not crypt_verifier().verify(case["password"].encode(), made[3:])


def test_long_wordpress_passwords_keep_their_entropy() -> None:
    """bcrypt reads 72 bytes; the pre-hash makes two passwords differing at byte 80 differ."""
    need_tool("php")
    long_pw = "x" * 79 + "a"
    made = _run(["php", "-r", WP68_PHP, long_pw, "$wp$2y$05$" + "." * 53]).stdout.split()[0]
    assert V.verify(long_pw.encode(), made) and not V.verify(("x" * 79 + "b").encode(), made)


# -- MySQL 8 caching_sha2_password ------------------------------------------------------------------------

# hashcat's published example hashes for mode 7401 (made by MySQL 8 servers): password, hash.
HASHCAT_7401 = [("hashcat", KAT["mysql-caching-sha2"]["hash"]),
                ("password", "$mysql$A$005*06437A150142644D74187A6A2F0D7971094F2575*"
                             "48667A67485366745A304F6A487A73704250663465337A7530325157687A51364A384D737554424939702E")]


@pytest.mark.parametrize(("password", "hashed"), HASHCAT_7401)
def test_mysql_sha2_on_published_hashes_in_both_forms(password: str, hashed: str) -> None:
    rest = hashed.removeprefix("$mysql$A$005*")
    salt_hex, digest_hex = rest.split("*")
    raw = "$A$005$" + bytes.fromhex(salt_hex).decode("latin-1") + bytes.fromhex(digest_hex).decode("ascii")
    for form in (hashed, raw):  # hashcat's hex form, and the authentication_string as MySQL keeps it
        assert V.scheme(form) == "mysql-caching-sha2"
        assert V.verify(password.encode(), form)
        assert not V.verify(password.encode() + b"1", form)


@pytest.mark.parametrize("salt", [b"", b"a", b"0123456789abcdef", b"salt/with.dots"])
@pytest.mark.parametrize("rounds", [1000, 5000, 12345])
def test_sha256_crypt_core_equals_libxcrypt(salt: bytes, rounds: int) -> None:
    setting = "$5$" + (f"rounds={rounds}$" if rounds != 5000 else "") + salt.decode() + "$"
    assert algo.sha256_crypt(PASSWORD.encode(), salt, rounds) == crypt_verifier().crypt(PASSWORD.encode(), setting)


# -- PostgreSQL --------------------------------------------------------------------------------------------


def _as_postgres(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return _run(["runuser", "-u", "postgres", "--", *argv])


@pytest.fixture(scope="module")
def postgres() -> Iterator[Path]:
    """A temp cluster on a unix socket only, password logins (md5 method: md5 and SCRAM verifiers)."""
    with postgres_cluster("hostguard-pgpw-") as base:
        (base / "data/pg_hba.conf").write_text("local all postgres trust\nlocal all all md5\n")
        with running(["runuser", "-u", "postgres", "--", "postgres", "-D", str(base / "data"), "-k", str(base),
                      "-c", "listen_addresses="], base / "log"):
            wait_for(lambda: _as_postgres(["psql", "-h", str(base), "-d", "postgres", "-c", "select 1"]).returncode
                     == 0, what="postgres")
            yield base


def _sql(base: Path, sql: str) -> str:
    done = _as_postgres(["psql", "-h", str(base), "-d", "postgres", "-Atq", "-c", sql])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _login(base: Path, user: str, password: str) -> bool:
    env = {**os.environ, "PGPASSWORD": password}
    done = _run(["psql", "-h", str(base), "-d", "postgres", "-U", user, "-w", "-Atc", "select 1"], env=env)
    return done.returncode == 0


@pytest.mark.parametrize("encryption", ["md5", "scram-sha-256"])
def test_postgres_made_verifiers(postgres: Path, encryption: str) -> None:
    role = f"hg_{encryption.replace('-', '_')}"
    _sql(postgres, f"SET password_encryption = '{encryption}'; DROP ROLE IF EXISTS {role}; "
                   f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    stored = _sql(postgres, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")
    hashed = tagged(stored, "pg-md5", user=role) if encryption == "md5" else stored
    assert V.scheme(hashed) == ("pg-md5" if encryption == "md5" else "pg-scram-sha-256")
    assert V.verify(PASSWORD.encode(), hashed) and not V.verify(WRONG.encode(), hashed)
    if encryption == "md5":  # the user name is the salt: another user's name gives another hash
        assert not V.verify(PASSWORD.encode(), tagged(stored, "pg-md5", user=role + "x"))


def test_postgres_logs_in_with_the_known_answers(postgres: Path) -> None:
    """The stored known answers, given to PostgreSQL as already-hashed passwords, let their password in."""
    for name, role in (("pg-scram-sha-256", "kat_scram"), ("pg-md5", "kat_md5")):
        _, stored = split_tag(KAT[name]["hash"])
        _sql(postgres, f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD '{stored}'")
        assert _sql(postgres, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'") == stored
        assert _login(postgres, role, KAT[name]["password"])
        assert not _login(postgres, role, KAT[name]["password"] + "-")


def test_scram_of_a_non_ascii_password(postgres: Path) -> None:
    """SASLprep: PostgreSQL normalises (NFKC) a UTF-8 password before PBKDF2; so do we."""
    pw = "ﬁ-Passwort-ä"  # the ligature ﬁ becomes "fi" under NFKC
    _sql(postgres, "SET password_encryption = 'scram-sha-256'; DROP ROLE IF EXISTS hg_utf; "
                   f"CREATE ROLE hg_utf LOGIN PASSWORD '{pw}'")
    stored = _sql(postgres, "SELECT rolpassword FROM pg_authid WHERE rolname = 'hg_utf'")
    assert V.verify(pw.encode(), stored)
    assert V.verify("fi-Passwort-ä".encode(), stored)  # the same password after SASLprep, as PostgreSQL says
    assert _login(postgres, "hg_utf", "fi-Passwort-ä")
    assert not V.verify(b"fi-Passwort-a", stored)


# -- MariaDB ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temp mariadbd on a unix socket (no TCP), with the ed25519 plugin loaded."""
    base = tmp_path_factory.mktemp("mariadb-pw")
    new_mariadb_datadir(base)
    sock = base / "m.sock"
    with running(["mariadbd", "--no-defaults", f"--datadir={base}/data", f"--socket={sock}", "--skip-networking",
                  "--user=root", f"--pid-file={base}/m.pid", f"--log-error={base}/err.log"], base / "log"):
        wait_for(sock.exists, what="mariadbd")
        _maria(base, "INSTALL SONAME 'auth_ed25519'")
        yield base


def _maria(base: Path, sql: str) -> str:
    done = _run(["mariadb", "--no-defaults", "-S", str(base / "m.sock"), "-N", "-B", "-e", sql])
    assert done.returncode == 0, done.stderr
    return done.stdout.rstrip("\n")


def _stored(base: Path, user: str) -> str:
    return _maria(base, f"SELECT json_value(priv, '$.authentication_string') FROM mysql.global_priv "
                        f"WHERE user = '{user}'")


def test_mariadb_native_and_ed25519(mariadb: Path) -> None:
    _maria(mariadb, f"CREATE OR REPLACE USER hg_native@localhost IDENTIFIED BY '{PASSWORD}';"
                    f"CREATE OR REPLACE USER hg_ed@localhost IDENTIFIED VIA ed25519 USING PASSWORD('{PASSWORD}')")
    native, ed = _stored(mariadb, "hg_native"), _stored(mariadb, "hg_ed")
    assert V.scheme(native) == "mysql-native"
    assert V.verify(PASSWORD.encode(), native) and not V.verify(WRONG.encode(), native)
    hashed = tagged(ed, "mariadb-ed25519")
    assert V.scheme(hashed) == "mariadb-ed25519" and V.scheme(ed) is None  # bare base64 says nothing
    assert V.verify(PASSWORD.encode(), hashed) and not V.verify(WRONG.encode(), hashed)


def test_mariadb_makes_the_known_answers_again(mariadb: Path) -> None:
    pw = KAT["mysql-native"]["password"]
    assert _maria(mariadb, f"SELECT PASSWORD('{pw}')") == KAT["mysql-native"]["hash"]
    _maria(mariadb, f"CREATE OR REPLACE USER hg_kat@localhost IDENTIFIED VIA ed25519 USING PASSWORD('{pw}')")
    assert tagged(_stored(mariadb, "hg_kat"), "mariadb-ed25519") == KAT["mariadb-ed25519"]["hash"]


# -- Tomcat -----------------------------------------------------------------------------------------------

CHECK_JAVA = """
import org.apache.catalina.realm.*;
public class Check { public static void main(String[] a) throws Exception {
  DigestCredentialHandlerBase h;
  if (a[0].equals("digest")) { MessageDigestCredentialHandler m = new MessageDigestCredentialHandler();
    if (!a[1].isEmpty()) m.setAlgorithm(a[1]); h = m; }
  else { SecretKeyCredentialHandler s = new SecretKeyCredentialHandler(); s.setAlgorithm(a[1]); h = s; }
  for (int i = 2; i + 1 < a.length; i += 2) System.out.println(h.matches(a[i], a[i + 1]));
}}
"""


def _tomcat_matches(tmp_path: Path, kind: str, algorithm: str, pairs: list[tuple[str, str]]) -> list[bool]:
    """Tomcat's own CredentialHandler.matches(password, stored) for each pair, run by java."""
    need_tool("java")
    jars = [TOMCAT / "lib/catalina.jar", TOMCAT / "lib/tomcat-util.jar", TOMCAT / "bin/tomcat-juli.jar",
            TOMCAT / "lib/servlet-api.jar"]
    if not all(j.exists() for j in jars):
        pytest.skip(reason="tomcat10 is not installed (scripts/install-system-deps.sh test installs it)")
    (tmp_path / "Check.java").write_text(CHECK_JAVA)
    done = _run(["java", "-cp", ":".join(map(str, jars)), str(tmp_path / "Check.java"), kind, algorithm,
                 *[x for pair in pairs for x in pair]])
    assert done.returncode == 0, done.stderr
    return [line == "true" for line in done.stdout.split()]


def _digest_sh(*args: str) -> str:
    script = TOMCAT / "bin/digest.sh"
    if not script.exists():
        pytest.skip(reason="tomcat10 is not installed (scripts/install-system-deps.sh test installs it)")
    done = _run([str(script), *args, TOMCAT_PW])
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith(TOMCAT_PW + ":")
    return line[len(TOMCAT_PW) + 1:]


@pytest.mark.parametrize(("algorithm", "iterations", "salt"), [("SHA-256", "1000", "16"), ("SHA-512", "1", "8"),
                                                               ("MD5", "1", "0"), ("SHA-1", "3", "4")])
def test_tomcat_message_digest_made_by_digest_sh(algorithm: str, iterations: str, salt: str) -> None:
    stored = _digest_sh("-a", algorithm, "-i", iterations, "-s", salt)
    hashed = tagged(stored, "tomcat-digest", algorithm=algorithm)
    assert V.scheme(hashed) == "tomcat-digest"
    assert V.verify(TOMCAT_PW.encode(), hashed) and not V.verify(TOMCAT_WRONG.encode(), hashed)
    # the algorithm is the handler's: the same value under another one is not the password
    other = "SHA-384" if algorithm != "SHA-384" else "SHA-256"
    assert not V.verify(TOMCAT_PW.encode(), tagged(stored, "tomcat-digest", algorithm=other))


@pytest.mark.parametrize(("algorithm", "key"), [("PBKDF2WithHmacSHA512", "512"), ("PBKDF2WithHmacSHA1", "160"),
                                                ("PBKDF2WithHmacSHA256", "256")])
def test_tomcat_secret_key_made_by_digest_sh(algorithm: str, key: str) -> None:
    stored = _digest_sh("-a", algorithm, "-i", "2000", "-s", "16", "-k", key,
                        "-h", "org.apache.catalina.realm.SecretKeyCredentialHandler")
    hashed = tagged(stored, "tomcat-pbkdf2", algorithm=algorithm)
    assert V.scheme(hashed) == "tomcat-pbkdf2"
    assert V.verify(TOMCAT_PW.encode(), hashed) and not V.verify(TOMCAT_WRONG.encode(), hashed)


def test_tomcat_checks_the_known_answers_and_braced_forms(tmp_path: Path) -> None:
    digest_pw = KAT["tomcat-digest"]["password"]
    _, digest_stored = split_tag(KAT["tomcat-digest"]["hash"])
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    ssha = "{SSHA}" + base64.b64encode(hashlib.sha1(PASSWORD.encode() + b"NaCl").digest() + b"NaCl").decode()
    pairs = [(digest_pw, digest_stored), (digest_pw + "-", digest_stored), (PASSWORD, sha), (WRONG, sha),
             (PASSWORD, ssha), (WRONG, ssha)]
    # {SHA}/{SSHA} are base64 of the *handler's* digest: SHA-1 values match under SHA-1 only
    for algorithm, expected in (("SHA-256", [True, False, False, False, False, False]),
                                ("SHA-1", [False, False, True, False, True, False])):
        assert _tomcat_matches(tmp_path, "digest", algorithm, pairs) == expected
        assert [V.verify(p.encode(), tagged(s, "tomcat-digest", algorithm=algorithm)) for p, s in pairs] == expected
    pbkdf2_pw = KAT["tomcat-pbkdf2"]["password"]
    _, pbkdf2_stored = split_tag(KAT["tomcat-pbkdf2"]["hash"])
    assert _tomcat_matches(tmp_path, "secret", "PBKDF2WithHmacSHA512",
                           [(pbkdf2_pw, pbkdf2_stored), (pbkdf2_pw + "-", pbkdf2_stored)]) == [True, False]
    # no algorithm: Tomcat compares the stored value as the password itself
    assert _tomcat_matches(tmp_path, "digest", "", [(PASSWORD, PASSWORD), (WRONG, PASSWORD)]) == [True, False]


# -- with the cracker -------------------------------------------------------------------------------------


def test_the_cracker_finds_service_passwords_and_stops_at_the_first_hit() -> None:
    guesses = [Guess(t, "list") for t in ("123456", "password", PASSWORD, "qwerty")]
    weak = Target("alice@htpasswd", algo.md5_crypt(PASSWORD.encode(), b"saltsalt"), guesses, [])
    pg = Target("kat_md5@postgres", KAT["pg-md5"]["hash"], [Guess("hostguard-known-answer", "list")], [])
    strong = Target("bob@htpasswd", algo.md5_crypt(b"a long and random one 94x", b"pepper"), guesses, [])
    crack([weak, pg, strong], V, deadline=0.0, workers=2)
    assert weak.found is not None and weak.found.text == PASSWORD and weak.tried == 3
    assert pg.found is not None and pg.found.text == "hostguard-known-answer"
    assert strong.found is None and strong.tried == 4


# -- malformed and hostile values -------------------------------------------------------------------------


@pytest.mark.parametrize("hashed", [
    "$apr1$toolongsalt$abc", "{SHA}notbase64!!!!!!!!!!!!!!!!!!!=", "$P$Z" + "a" * 30, "$P$!" + "a" * 30,
    "$wp$2y$05$short", "*" + "G" * 40, "$A$005$short", "$A$000$" + "s" * 20 + "h" * 43,
    "SCRAM-SHA-256$4096:@@@$" + "A" * 43 + "=:" + "A" * 43 + "=",
    "SCRAM-SHA-256$999999999:c2FsdA==$" + "A" * 43 + "=:" + "A" * 43 + "=",
    "{hg:scheme=pg-md5}md5" + "0" * 32, "{hg:scheme=tomcat-digest,algorithm=ROT13}00$1$00",
    "{hg:scheme=tomcat-digest,algorithm=SHA-256}00$99999999999$00", "{hg:scheme=tomcat-pbkdf2,algorithm=SHA-1}0$1$00",
    "{hg:scheme=nope}x", "{hg:broken}x", "{hg:scheme=mariadb-ed25519}short", "", "*", "!",
])
def test_malformed_values_are_not_checkable_and_never_match(hashed: str) -> None:
    assert V.scheme(hashed) is None
    assert not V.verify(b"", hashed) and not V.verify(b"password", hashed)


def test_tagged_refuses_missing_context() -> None:
    with pytest.raises(ValueError, match="pg-md5 needs user"):
        tagged("md5" + "0" * 32, "pg-md5")
    with pytest.raises(ValueError, match="not a tagged scheme"):
        tagged("x", "apr1")


@given(st.text(max_size=200))
@settings(max_examples=400, deadline=None)
def test_any_text_gives_a_scheme_or_none_and_never_raises(text: str) -> None:
    scheme = V.scheme(text)
    assert scheme is None or isinstance(scheme, str)
    assert V.verify(b"hostguard", text) in (True, False)


_FIELDS = st.sampled_from(["$apr1$", "{SHA}", "{SSHA}", "$P$", "$H$", "$wp$2y$05$", "*", "$A$005$", "$mysql$A$005*",
                           "SCRAM-SHA-256$", "{hg:scheme=pg-md5,user=a}md5", "{hg:scheme=tomcat-digest,algorithm=MD5}",
                           "{hg:scheme=tomcat-pbkdf2,algorithm=PBKDF2WithHmacSHA1}", "$", "*", ":", "=", "1"])


@given(st.lists(st.one_of(_FIELDS, st.text(alphabet="0123456789abcdefABCDEF./$*:=+", max_size=50)), max_size=8))
@settings(max_examples=400, deadline=None)
def test_near_valid_hashes_never_raise(parts: list[str]) -> None:
    text = "".join(parts)
    assert V.verify(b"hostguard", text) in (True, False)


@given(st.text(max_size=30), st.text(max_size=30))
def test_tag_round_trips_any_user_name(user: str, value: str) -> None:
    context, stored = split_tag(tagged(value, "pg-md5", user=user))
    assert context == {"scheme": "pg-md5", "user": user} and stored == value
