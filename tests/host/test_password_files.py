"""Password files of the web servers: found from the nginx/Apache/Tomcat configuration, read through the
Host, each entry with the scheme the verifier checks it with; and the servers themselves agree on which
entries let a password in (htpasswd -v for Apache's rules, a real nginx on loopback for nginx's)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.host.base import HostError, LiveHost, RootHost
from hostguard.host.password_files import (
    PLAIN,
    CredentialHandler,
    PasswordEntry,
    collect_password_files,
    parse_htpasswd,
    parse_tomcat_users,
)
from hostguard.host.web.model import Where
from hostguard.host.web.servers import WebServers, collect_web_servers
from hostguard.host.web.tomcat import collect_tomcat
from hostguard.passwords import service_schemes as algo
from hostguard.passwords.services_verifiers import service_verifier, split_tag
from hostguard.passwords.verifiers import crypt_verifier
from tests.conftest import need_tool, run_one
from tests.host.services.helpers import free_port, running, wait_for

V = service_verifier()
WEAK = "letmein-hg"
STRONG = "q8#Vt2!zPw9-long-enough"


def _sha(pw: str) -> str:
    return "{SHA}" + base64.b64encode(hashlib.sha1(pw.encode()).digest()).decode()


def _ssha(pw: str, salt: bytes = b"NaClNaCl") -> str:
    return "{SSHA}" + base64.b64encode(hashlib.sha1(pw.encode() + salt).digest() + salt).decode()


def _bcrypt(pw: str) -> str:
    got = crypt_verifier().crypt(pw.encode(), "$2y$05$hostguardTestSalt0000.")
    assert got is not None
    return got


def _des(pw: str) -> str:
    got = crypt_verifier().crypt(pw.encode(), "hg")
    assert got is not None
    return got


# One htpasswd file, every form: (line, user, scheme, plain_text, accepted by apache, accepted by nginx, password)
HTPASSWD = [
    ("# written for hostguard's tests", None, None, False, False, False, None),
    (f"apr:{algo.md5_crypt(WEAK.encode(), b'saltsalt')}", "apr", "apr1", False, True, True, WEAK),
    (f"sha:{_sha(STRONG)}", "sha", "htpasswd-sha1", False, True, True, STRONG),
    (f"bcr:{_bcrypt(WEAK)}", "bcr", "bcrypt", False, True, True, WEAK),
    (f"des:{_des(WEAK)}", "des", "des", False, True, True, WEAK),
    ("", None, None, False, False, False, None),
    (f"plain:{WEAK}", "plain", "plain", True, False, False, WEAK),
    (f"nplain:{{PLAIN}}{WEAK}", "nplain", "plain", True, False, True, WEAK),
    (f"ssha:{_ssha(WEAK)}", "ssha", "htpasswd-ssha", False, False, True, WEAK),
    (f"commented:{_sha(WEAK)}:a comment field", "commented", "htpasswd-sha1", False, True, True, WEAK),
    ("no-colon-line", None, None, False, False, False, None),
    ("empty:", "empty", None, False, True, True, None),
]
HTPASSWD_TEXT = "\n".join(row[0] for row in HTPASSWD) + "\n"

NGINX = """\
user www-data;
events {}
http {
    server {
        listen 80;
        server_name shop.test;
        root /srv/shop;
        location /admin/ {
            auth_basic "admins";
            auth_basic_user_file htpasswd.d/admins;
        }
        location /shared/ {
            auth_basic "shared";
            auth_basic_user_file /srv/shared/.htpasswd;
        }
        location /moving/ {
            auth_basic_user_file /srv/$host/.htpasswd;
        }
    }
}
"""

APACHE = """\
ServerRoot /etc/apache2
User www-data
Listen 80
DocumentRoot /var/www/html
<Location /private>
    AuthType Basic
    AuthName "private"
    AuthUserFile conf-private/users
    Require valid-user
</Location>
<VirtualHost *:80>
    ServerName blog.test
    DocumentRoot /srv/blog
    <Directory /srv/blog/wp-admin>
        AuthType Basic
        AuthUserFile /srv/shared/.htpasswd
        Require valid-user
    </Directory>
    <Location /gone>
        AuthUserFile /srv/missing/.htpasswd
    </Location>
</VirtualHost>
"""

SERVER_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- written for hostguard's tests -->
<Server port="-1" shutdown="SHUTDOWN">
  <GlobalNamingResources>
    <Resource name="UserDatabase" auth="Container" type="org.apache.catalina.UserDatabase"
              factory="org.apache.catalina.users.MemoryUserDatabaseFactory" pathname="conf/tomcat-users.xml" />
  </GlobalNamingResources>
  <Service name="Catalina">
    <Connector port="8080" protocol="HTTP/1.1" />
    <Engine name="Catalina" defaultHost="apps.test">
      <Realm className="org.apache.catalina.realm.LockOutRealm">
        <Realm className="org.apache.catalina.realm.UserDatabaseRealm" resourceName="UserDatabase">
          <CredentialHandler className="org.apache.catalina.realm.NestedCredentialHandler">
            <CredentialHandler className="org.apache.catalina.realm.MessageDigestCredentialHandler"
                               algorithm="SHA-256" />
            <CredentialHandler className="org.apache.catalina.realm.SecretKeyCredentialHandler"
                               algorithm="PBKDF2WithHmacSHA512" />
          </CredentialHandler>
        </Realm>
      </Realm>
      <Host name="apps.test" appBase="webapps" />
    </Engine>
  </Service>
</Server>
"""

SALT = bytes.fromhex("00112233445566778899aabbccddeeff")
DIGEST = f"{SALT.hex()}$1000${algo.tomcat_digest(WEAK.encode(), 'sha256', SALT, 1000).hex()}"
PBKDF2 = f"{SALT.hex()}$2000${hashlib.pbkdf2_hmac('sha512', STRONG.encode(), SALT, 2000, 64).hex()}"
TOMCAT_USERS = f"""\
<?xml version="1.0" encoding="UTF-8"?>
<tomcat-users xmlns="http://tomcat.apache.org/xml" version="1.0">
  <role rolename="manager-gui"/>
  <user username="deployer" password="{DIGEST}" roles="manager-gui"/>
  <user username="monitor" password="{PBKDF2}" roles="manager-status"/>
  <user username="legacy" password="not-a-hash" roles="manager-gui"/>
  <user username="nopassword" roles="manager-gui"/>
</tomcat-users>
"""


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _host(tmp_path: Path, server_xml: str = SERVER_XML, users: str = TOMCAT_USERS) -> RootHost:
    root = tmp_path / "host"
    _write(root, {"/etc/nginx/nginx.conf": NGINX, "/etc/nginx/htpasswd.d/admins": HTPASSWD_TEXT,
                  "/srv/shared/.htpasswd": f"shared:{_sha(WEAK)}\n",
                  "/etc/apache2/apache2.conf": APACHE, "/etc/apache2/conf-private/users": f"priv:{_sha(STRONG)}\n",
                  "/etc/tomcat10/server.xml": server_xml, "/etc/tomcat10/tomcat-users.xml": users})
    (root / "var/lib/tomcat10").mkdir(parents=True)
    (root / "var/lib/tomcat10/conf").symlink_to("/etc/tomcat10")
    return RootHost(str(root))


def _line(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_files_named_by_nginx_apache_and_tomcat(tmp_path: Path) -> None:
    host = _host(tmp_path)
    found = collect_password_files(host, collect_web_servers(host, None, None))
    by_path = {f.path: f for f in found.files}
    assert sorted(by_path) == ["/etc/apache2/conf-private/users", "/etc/nginx/htpasswd.d/admins",
                               "/etc/tomcat10/tomcat-users.xml", "/srv/shared/.htpasswd"]
    # nginx resolves a relative name against its configuration directory, Apache against ServerRoot
    admins = by_path["/etc/nginx/htpasswd.d/admins"]
    assert (admins.kind, admins.servers) == ("htpasswd", ("nginx",))
    assert admins.named_at == (Where("/etc/nginx/nginx.conf", _line(NGINX, "htpasswd.d/admins")),)
    assert by_path["/etc/apache2/conf-private/users"].named_at == (
        Where("/etc/apache2/apache2.conf", _line(APACHE, "conf-private/users")),)
    # one file used by both servers is read once and names both places
    shared = by_path["/srv/shared/.htpasswd"]
    assert shared.servers == ("nginx", "apache")
    assert set(shared.named_at) == {Where("/etc/nginx/nginx.conf", _line(NGINX, "/srv/shared/.htpasswd")),
                                    Where("/etc/apache2/apache2.conf", _line(APACHE, "/srv/shared/.htpasswd"))}
    assert [(e.user, e.scheme) for e in shared.entries] == [("shared", "htpasswd-sha1")]
    # a variable in the name and a missing file are problems, one line each; they hide nothing else
    assert found.problems == (
        f"/etc/nginx/nginx.conf:{_line(NGINX, '$host')}: the password file /srv/$host/.htpasswd depends on a "
        "variable: not read",
        "/srv/missing/.htpasswd: no such file (the server refuses every login it guards) "
        f"(named at /etc/apache2/apache2.conf:{_line(APACHE, '/srv/missing')})")


def test_every_htpasswd_form_and_which_server_takes_it(tmp_path: Path) -> None:
    host = _host(tmp_path)
    found = collect_password_files(host, collect_web_servers(host, None, None))
    [admins] = [f for f in found.files if f.path == "/etc/nginx/htpasswd.d/admins"]
    expected = [(user, scheme, plain, nginx, n) for n, (_, user, scheme, plain, _apache, nginx, _)
                in enumerate(HTPASSWD, 1) if user is not None]
    assert [(e.user, e.scheme, e.plain_text, e.accepted, e.where.line) for e in admins.entries] == expected
    assert admins.notes == (f"/etc/nginx/htpasswd.d/admins:{_line(HTPASSWD_TEXT, 'no-colon-line')}: "
                            "not a `user:password` line: the server skips it",)
    # the same lines read for Apache: {PLAIN} and {SSHA} are nginx's only
    entries, _ = parse_htpasswd(HTPASSWD_TEXT, "/x", ("apache",))
    assert {e.user: e.accepted for e in entries} == {u: a for _, u, _, _, a, _, _ in HTPASSWD if u is not None}


@pytest.mark.parametrize(("password", "hits"), [(WEAK, ["apr", "bcr", "des", "plain", "nplain", "ssha", "commented"]),
                                                (STRONG, ["sha"])])
def test_weak_entries_are_found_and_the_rest_stay_quiet(password: str, hits: list[str]) -> None:
    entries, _ = parse_htpasswd(HTPASSWD_TEXT, "/x", ("nginx",))
    assert [e.user for e in entries if e.hashed and V.verify(password.encode(), e.hashed)] == hits


def test_tomcat_users_with_nested_credential_handlers(tmp_path: Path) -> None:
    host = _host(tmp_path)
    found = collect_password_files(host, collect_web_servers(host, None, None))
    [users] = [f for f in found.files if f.kind == "tomcat-users"]
    assert users.path == "/etc/tomcat10/tomcat-users.xml" and users.servers == ("tomcat",)
    assert users.named_at == (Where("/etc/tomcat10/server.xml", _line(SERVER_XML, "<Resource")),)
    got = {e.user: (e.scheme, e.plain_text, e.where.line) for e in users.entries}
    assert got == {"deployer": ("tomcat-digest", False, _line(TOMCAT_USERS, "deployer")),
                   "monitor": ("tomcat-pbkdf2", False, _line(TOMCAT_USERS, "monitor")),
                   "legacy": (None, False, _line(TOMCAT_USERS, "legacy")),
                   "nopassword": (None, False, _line(TOMCAT_USERS, "nopassword"))}
    entry = {e.user: e for e in users.entries}
    assert V.verify(WEAK.encode(), entry["deployer"].hashed) and not V.verify(STRONG.encode(), entry["deployer"].hashed)
    assert V.verify(STRONG.encode(), entry["monitor"].hashed) and not V.verify(WEAK.encode(), entry["monitor"].hashed)
    assert split_tag(entry["deployer"].hashed)[0]["algorithm"] == "SHA-256"
    assert entry["legacy"].note == "the stored value does not fit the configured CredentialHandler"
    # a 32-byte value fits PBKDF2 too (its key length is free): Tomcat's nested handler tries both, so do we
    assert [split_tag(a)[0]["scheme"] for a in entry["deployer"].alternatives] == ["tomcat-pbkdf2"]
    assert not V.verify(WEAK.encode(), entry["deployer"].alternatives[0])
    assert entry["monitor"].alternatives == ()  # 64 bytes: not a SHA-256 digest


def test_tomcat_without_a_credential_handler_keeps_passwords_in_clear(tmp_path: Path) -> None:
    plain_xml = SERVER_XML.replace(SERVER_XML[SERVER_XML.index("          <CredentialHandler className=\"org.apache."
                                                               "catalina.realm.Nested"):
                                              SERVER_XML.index("        </Realm>")], "")
    host = _host(tmp_path, plain_xml, '<tomcat-users>\n  <user username="admin" password="admin" roles="x"/>\n'
                                      '</tomcat-users>\n')
    [users] = [f for f in collect_password_files(host, collect_web_servers(host, None, None)).files
               if f.kind == "tomcat-users"]
    [admin] = users.entries
    assert (admin.user, admin.scheme, admin.plain_text, admin.accepted) == ("admin", "plain", True, True)
    assert admin.note == "no CredentialHandler: tomcat-users.xml holds the password itself"
    assert V.verify(b"admin", admin.hashed) and not V.verify(b"Admin", admin.hashed)
    # and weak_passwords.stored_in_clear says so, once for the file, naming the user, never the password (the
    # tree's nginx files, with {PLAIN} and Apache plain-text lines, are reported too)
    [finding] = [f for f in run_one("weak_passwords.stored_in_clear", host)[0] if f.target["path"] == users.path]
    assert finding.target == {"kind": "path", "path": users.path} and "'admin'" not in finding.title
    assert finding.evidence["users"] == ["admin"] and finding.evidence["servers"] == ["tomcat"]
    assert "SecretKeyCredentialHandler" in (finding.remediation.manual or "")


@pytest.mark.parametrize(("users", "message"), [
    ('<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n<tomcat-users/>\n', "tomcat-users.xml:2: a DOCTYPE"),
    ("<tomcat-users>\n  <user username='a'\n</tomcat-users>\n", "tomcat-users.xml:3: not well-formed XML"),
    ("<users/>\n", "tomcat-users.xml:1: the root element is <users>, not <tomcat-users>"),
])
def test_malformed_tomcat_users_is_one_problem_line(tmp_path: Path, users: str, message: str) -> None:
    host = _host(tmp_path, users=users)
    found = collect_password_files(host, collect_web_servers(host, None, None))
    assert [f.kind for f in found.files] == ["htpasswd"] * 3  # the others are still read
    [problem] = [p for p in found.problems if "tomcat-users" in p]
    assert message in problem and "\n" not in problem


def test_debian_stock_tomcat_through_live_host() -> None:
    """Debian's own server.xml and tomcat-users.xml: a realm without CredentialHandler, every user commented."""
    if not Path("/etc/tomcat10/server.xml").exists():
        pytest.skip(reason="tomcat10 is not installed (scripts/install-system-deps.sh test installs it)")
    host = LiveHost()
    tomcat = collect_tomcat(host)
    assert tomcat is not None
    found = collect_password_files(host, WebServers((tomcat,)))
    [users] = found.files
    assert users.kind == "tomcat-users" and users.entries == ()
    assert found.problems == ()


def test_credential_handler_tags() -> None:
    entries, notes = parse_tomcat_users(b"<tomcat-users><user name='old' password='pw'/><user password='x'/>"
                                        b"</tomcat-users>", "/t.xml", [PLAIN])
    assert [(e.user, e.scheme) for e in entries] == [("old", "plain")]
    assert notes == ("/t.xml:1: a <user> without a username: Tomcat skips it",)
    handler = CredentialHandler("tomcat-digest", "MD5", "ISO-8859-1")
    assert split_tag(handler.hashed("00"))[0] == {"scheme": "tomcat-digest", "algorithm": "MD5",
                                                  "encoding": "ISO-8859-1"}


# -- the servers agree ------------------------------------------------------------------------------------


def _takes(entry: PasswordEntry, password: str | None) -> bool:
    return password is not None and entry.accepted and bool(entry.hashed) and V.verify(password.encode(), entry.hashed)


def test_apache_rules_agree_with_htpasswd_verify(tmp_path: Path) -> None:
    """htpasswd -v runs Apache's own check (apr_password_validate): it lets in exactly what we say."""
    need_tool("htpasswd")
    path = tmp_path / "users"
    lines = HTPASSWD_TEXT.splitlines()
    entries, _ = parse_htpasswd(HTPASSWD_TEXT, str(path), ("apache",))
    for entry in entries:
        if entry.user == "commented":
            continue  # htpasswd -v takes the whole rest of the line; mod_authn_file stops at the next ':'
        path.write_text(lines[entry.where.line - 1] + "\n")  # one line a file: htpasswd refuses odd lines
        for password in (WEAK, STRONG):
            done = subprocess.run(["htpasswd", "-vb", str(path), entry.user, password], capture_output=True)
            assert (done.returncode == 0) == _takes(entry, password), (entry.user, password, done.stderr)


def test_nginx_agrees_on_every_entry() -> None:
    need_tool("nginx", "curl")
    base = Path(tempfile.mkdtemp(prefix="hostguard-htpasswd-"))  # readable by nginx's unprivileged workers
    try:
        port = free_port()
        (base / "html").mkdir()
        (base / "html/index.html").write_text("ok\n")
        (base / "tmp").mkdir()
        (base / "users").write_text(HTPASSWD_TEXT)
        temp = " ".join(f"{k}_temp_path {base}/tmp;" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (base / "nginx.conf").write_text(
            f"daemon off; pid {base}/nginx.pid; error_log {base}/error.log; worker_processes 1;\nevents {{}}\n"
            f"http {{ access_log off; {temp}\n server {{ listen 127.0.0.1:{port}; root {base}/html;\n"
            f"  location / {{ auth_basic \"hg\"; auth_basic_user_file {base}/users; }} }} }}\n")
        for p in (base, *base.rglob("*")):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)

        def status(user: str, password: str) -> str:
            return subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{user}:{password}",
                                   f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout

        entries, _ = parse_htpasswd(HTPASSWD_TEXT, str(base / "users"), ("nginx",))
        with running(["nginx", "-p", str(base), "-c", str(base / "nginx.conf")], base / "log"):
            wait_for(lambda: status("nobody", "x") == "401", what="nginx")
            for entry in entries:
                for password in (WEAK, STRONG):
                    assert (status(entry.user, password) == "200") == _takes(entry, password), (entry.user, password)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- fuzz -------------------------------------------------------------------------------------------------


@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60), max_size=12))
@settings(max_examples=300, deadline=None)
def test_any_htpasswd_text_gives_entries_and_notes(lines: list[str]) -> None:
    text = "\n".join(lines)
    entries, notes = parse_htpasswd(text, "/f", ("nginx", "apache"))
    count = len(text.splitlines())
    for entry in entries:
        assert ":" not in entry.user and entry.user and 1 <= entry.where.line <= count
        assert entry.scheme is None or V.scheme(entry.hashed) in (entry.scheme, None)
        assert V.verify(b"x", entry.hashed) in (True, False)
    assert all(n.startswith("/f:") and "\n" not in n for n in notes)


_XML_PARTS = st.sampled_from(["<tomcat-users>", "</tomcat-users>", "<user ", "username='a' ", 'password="p" ', "/>",
                              ">", "<!DOCTYPE x>", "<!ENTITY e 'x'>", "&e;", "<?xml version='1.0'?>", "\n", "<", "'"])


@given(st.lists(st.one_of(_XML_PARTS, st.text(max_size=10)), max_size=15))
@settings(max_examples=300, deadline=None)
def test_any_tomcat_users_gives_entries_or_one_host_error(parts: list[str]) -> None:
    data = "".join(parts).encode("utf-8", "surrogatepass")
    try:
        entries, _ = parse_tomcat_users(data, "/t.xml", [PLAIN])
    except HostError as exc:
        assert str(exc).startswith("/t.xml") and "\n" not in str(exc)
        return
    assert all(e.scheme in ("plain", None) for e in entries)
