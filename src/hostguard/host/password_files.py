"""Password files web servers read, as host facts: ``.htpasswd`` files and Tomcat's ``tomcat-users.xml``.

Where they are comes from the web model (:data:`~hostguard.host.web.servers.WEB_SERVERS`): each nginx and
Apache site lists the ``auth_basic_user_file``/``AuthUserFile`` values it uses (``Site.password_files``),
and the Tomcat server names its UserDatabase file (the ``tomcat_users`` setting). Files are read through the
:class:`Host` only, so under ``--root`` they stay inside the tree.

Each entry keeps the value as the verifier needs it (:func:`~hostguard.passwords.services_verifiers.tagged`
where the stored string alone does not say how to check it) and whether the file holds the password itself:

* **htpasswd** (nginx and Apache read the same format: ``user:hash``, ``#`` comments, the hash ending at the
  next ``:``). Apache on Linux accepts ``$apr1$``, ``$2y$``, ``{SHA}`` and whatever crypt(3) computes (DES,
  ``$1$``, ``$5$``, ``$6$``); a value none of these recognise (``htpasswd -p``) is compared through crypt(3)
  and so is no one's password here — Apache takes it as plain text only on Windows and NetWare. nginx also
  takes ``{PLAIN}text`` and ``{SSHA}`` (salted SHA-1). Either way a plain-text value is a password written in
  clear, and is reported as such.
* **tomcat-users.xml**: ``<user username=... password=...>``. How Tomcat compares depends on the
  UserDatabaseRealm's ``CredentialHandler`` in server.xml: none (or MessageDigest without ``algorithm``)
  means the file holds the passwords themselves; MessageDigestCredentialHandler and
  SecretKeyCredentialHandler (also inside a NestedCredentialHandler) say the algorithm.

A file the configuration names but that is missing, unreadable or malformed is a *problem* of this fact
(one line each, ``path:line: what``), never a traceback, and never hides the other files.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from hostguard.engine.facts import Fact
from hostguard.host.base import FileMissing, Host, HostError
from hostguard.host.web.model import WebServer, Where
from hostguard.host.web.servers import WEB_SERVERS, WebServers
from hostguard.host.web.tomcat import XmlElement, parse_xml
from hostguard.passwords.services_verifiers import ServiceVerifier, tagged

MAX_PASSWORD_FILE = 16 * 1024 * 1024  # a password file beyond this is not one a server reads per request
_SSHA = re.compile(r"^\{SSHA\}[A-Za-z0-9+/]{28,}={0,2}$")
_CREDENTIAL_HANDLERS = {"org.apache.catalina.realm.MessageDigestCredentialHandler": "tomcat-digest",
                        "org.apache.catalina.realm.SecretKeyCredentialHandler": "tomcat-pbkdf2"}
_NESTED = "org.apache.catalina.realm.NestedCredentialHandler"

_schemes = ServiceVerifier()  # only its parsing is used here: no known-answer test runs at import


@dataclass(frozen=True)
class PasswordEntry:
    """One account of a password file."""

    user: str
    hashed: str          # for the verifier (tagged when it needs context), "" when there is no password
    scheme: str | None   # the verifier's name for it; None: a format hostguard cannot check
    where: Where
    plain_text: bool = False   # the file holds the password itself, not a hash of it
    accepted: bool = True      # whether the server takes this value as a password at all
    note: str = ""
    # Tomcat's NestedCredentialHandler accepts a password any of its handlers matches: the value tagged for
    # each further handler it fits (check them too; ``hashed`` is the first)
    alternatives: tuple[str, ...] = ()

    def label(self) -> str:
        """How a finding or a skipped line names the entry."""
        return f"{self.user} ({self.where})"


@dataclass(frozen=True)
class PasswordFile:
    """A password file and the directives that make a server read it."""

    kind: str                      # "htpasswd", "tomcat-users"
    path: str
    servers: tuple[str, ...]       # "nginx", "apache", "tomcat"
    named_at: tuple[Where, ...]    # the AuthUserFile / auth_basic_user_file / Resource lines
    entries: tuple[PasswordEntry, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PasswordFiles:
    """Every password file the host's web servers read, and the ones that could not be read (one line each)."""

    files: tuple[PasswordFile, ...]
    problems: tuple[str, ...] = ()


# -- htpasswd -------------------------------------------------------------------------------------------


def _htpasswd_value(value: str, servers: tuple[str, ...]) -> tuple[str, str | None, bool, bool, str]:
    """(hashed, scheme, plain_text, accepted, note) of one htpasswd password field."""
    if value.startswith("{PLAIN}"):
        accepted = "nginx" in servers
        note = "" if accepted else "{PLAIN} is nginx's: Apache hashes it with crypt(3), so no password matches"
        return tagged(value[7:], "plain"), "plain", True, accepted, note
    if _SSHA.match(value):
        accepted = "nginx" in servers
        return value, "htpasswd-ssha", False, accepted, "" if accepted else "{SSHA} is nginx's, Apache does not take it"
    scheme = _schemes.scheme(value)
    if scheme is not None and not value.startswith("{hg:"):
        return value, scheme, False, True, ""
    return (tagged(value, "plain"), "plain", True, False,
            "plain text (htpasswd -p): on Linux nginx and Apache compare it through crypt(3), so no password "
            "matches it here (Apache takes plain text on Windows and NetWare only); it is still written in clear")


def parse_htpasswd(text: str, path: str, servers: tuple[str, ...] = ("apache",)) -> tuple[
        tuple[PasswordEntry, ...], tuple[str, ...]]:
    """The entries of an htpasswd file and notes on lines the servers skip (no ``:``, no user)."""
    entries: list[PasswordEntry] = []
    notes: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, rest = line.partition(":")
        if not sep or not user:
            notes.append(f"{path}:{number}: not a `user:password` line: the server skips it")
            continue
        value = rest.split(":", 1)[0].rstrip()
        where = Where(path, number)
        if not value:
            entries.append(PasswordEntry(user, "", None, where, note="an empty password field: no password "
                                                                       "matches it (crypt(3) of nothing fails)"))
            continue
        hashed, scheme, plain, accepted, note = _htpasswd_value(value, servers)
        entries.append(PasswordEntry(user, hashed, scheme, where, plain, accepted, note))
    return tuple(entries), tuple(notes)


# -- tomcat-users.xml -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialHandler:
    """How Tomcat compares a stored password: ``scheme`` plain, tomcat-digest or tomcat-pbkdf2, with the
    handler's ``algorithm`` and ``encoding`` as configured, and where."""

    scheme: str
    algorithm: str = ""
    encoding: str = ""
    where: Where = Where("")

    def hashed(self, value: str) -> str:
        """The stored ``value`` tagged for this handler."""
        if self.scheme == "plain":
            return tagged(value, "plain")
        extra = {"encoding": self.encoding} if self.encoding else {}
        return tagged(value, self.scheme, algorithm=self.algorithm, **extra)


PLAIN = CredentialHandler("plain")


def _handlers(element: XmlElement, where: Where) -> list[CredentialHandler]:
    """The handlers a ``<CredentialHandler>`` element stands for (a nested one: each of its children)."""
    cls = element.attrs.get("className", "")
    if cls == _NESTED:
        return [h for child in element.find_all("CredentialHandler")
                for h in _handlers(child, Where(where.path, child.line))]
    scheme = _CREDENTIAL_HANDLERS.get(cls)
    if scheme is None:
        return []
    algorithm = element.attrs.get("algorithm", "")
    if scheme == "tomcat-digest" and not algorithm:
        return [CredentialHandler("plain", where=where)]  # MessageDigest without an algorithm compares as is
    if scheme == "tomcat-pbkdf2" and not algorithm:
        algorithm = "PBKDF2WithHmacSHA1"  # SecretKeyCredentialHandler's default
    return [CredentialHandler(scheme, algorithm, element.attrs.get("encoding", ""), where)]


def _walk(element: XmlElement) -> list[XmlElement]:
    out = [element]
    for child in element.children:
        out += _walk(child)
    return out


def realm_handlers(server_xml: XmlElement, path: str, resource_line: int) -> tuple[list[CredentialHandler],
                                                                                   list[str]]:
    """The credential handlers of the UserDatabaseRealms using the Resource on ``resource_line`` (plain when a
    realm has none), and notes for handlers hostguard does not know."""
    name = "UserDatabase"
    for element in _walk(server_xml):
        if element.tag == "Resource" and element.line == resource_line:
            name = element.attrs.get("name", name)
    handlers: list[CredentialHandler] = []
    notes: list[str] = []
    for realm in _walk(server_xml):
        if realm.tag != "Realm" or "UserDatabaseRealm" not in realm.attrs.get("className", ""):
            continue
        if realm.attrs.get("resourceName", "UserDatabase") != name:
            continue
        elements = realm.find_all("CredentialHandler")
        if not elements:
            handlers.append(CredentialHandler("plain", where=Where(path, realm.line)))
        for element in elements:
            found = _handlers(element, Where(path, element.line))
            if not found:
                notes.append(f"{path}:{element.line}: CredentialHandler {element.attrs.get('className', '?')} "
                             "is not one hostguard can check")
            handlers += found
    return handlers, notes


def parse_tomcat_users(data: bytes, path: str, handlers: list[CredentialHandler]) -> tuple[
        tuple[PasswordEntry, ...], tuple[str, ...]]:
    """The ``<user>`` entries of a tomcat-users.xml, each checked with the first handler that can read its
    value. :class:`HostError` (one line) when the XML is malformed or declares a DOCTYPE."""
    root = parse_xml(data, path)
    if root.tag != "tomcat-users":
        raise HostError(f"{path}:{root.line}: the root element is <{root.tag}>, not <tomcat-users>")
    handlers = handlers or [PLAIN]
    entries: list[PasswordEntry] = []
    notes: list[str] = []
    for user in root.find_all("user"):
        where = Where(path, user.line)
        name = user.attrs.get("username", user.attrs.get("name"))
        if name is None:
            notes.append(f"{where}: a <user> without a username: Tomcat skips it")
            continue
        value = user.attrs.get("password")
        if value is None:
            entries.append(PasswordEntry(name, "", None, where, note="no password attribute: no one logs in as it"))
            continue
        tagged_values = [handler.hashed(value) for handler in handlers]
        fits = [(hashed, scheme) for hashed in tagged_values if (scheme := _schemes.scheme(hashed)) is not None]
        if fits:
            (hashed, scheme), rest = fits[0], tuple(h for h, _ in fits[1:])
            plain = scheme == "plain"
            entries.append(PasswordEntry(name, hashed, scheme, where, plain, True,
                                         "no CredentialHandler: tomcat-users.xml holds the password itself"
                                         if plain else "", rest))
        else:
            entries.append(PasswordEntry(name, handlers[0].hashed(value), None, where,
                                         note="the stored value does not fit the configured CredentialHandler"))
    return tuple(entries), tuple(notes)


# -- the fact -------------------------------------------------------------------------------------------


def _read(host: Host, path: str) -> bytes:
    try:
        return host.read_bytes(path, MAX_PASSWORD_FILE)
    except FileMissing:
        raise HostError(f"{path}: no such file (the server refuses every login it guards)") from None


def _tomcat_files(host: Host, server: WebServer, problems: list[str]) -> list[PasswordFile]:
    out: list[PasswordFile] = []
    server_xml: XmlElement | None = None
    try:
        server_xml = parse_xml(host.read_bytes(server.config), server.config)
    except HostError as exc:
        problems.append(str(exc))
    for name, path, where in server.settings:
        if name != "tomcat_users":
            continue
        handlers, notes = (realm_handlers(server_xml, server.config, where.line) if server_xml is not None
                           else ([], [f"{server.config}: not read, the CredentialHandler is not known"]))
        try:
            entries, more = parse_tomcat_users(_read(host, path), path, handlers)
        except HostError as exc:
            problems.append(str(exc))
            continue
        out.append(PasswordFile("tomcat-users", path, ("tomcat",), (where,), entries, (*notes, *more)))
    return out


def collect_password_files(host: Host, web: WebServers) -> PasswordFiles:
    """Every htpasswd file a site names and every tomcat-users.xml, with its entries."""
    named: dict[str, tuple[list[str], list[Where]]] = {}
    problems: list[str] = []
    files: list[PasswordFile] = []
    for server, site in web.sites():
        for path, where in site.password_files:
            if "$" in path:
                problems.append(f"{where}: the password file {path} depends on a variable: not read")
                continue
            kinds, wheres = named.setdefault(posixpath.normpath(path), ([], []))
            if server.kind not in kinds:
                kinds.append(server.kind)
            if where not in wheres:
                wheres.append(where)
    for path, (kinds, wheres) in sorted(named.items()):
        try:
            text = _read(host, path).decode("utf-8", "surrogateescape")
        except HostError as exc:
            problems.append(f"{exc} (named at {wheres[0]})")
            continue
        entries, notes = parse_htpasswd(text, path, tuple(kinds))
        files.append(PasswordFile("htpasswd", path, tuple(kinds), tuple(wheres), entries, notes))
    for server in web.servers:
        if server.kind == "tomcat":
            files += _tomcat_files(host, server, problems)
    return PasswordFiles(tuple(files), tuple(problems))


PASSWORD_FILES: Fact[PasswordFiles] = Fact("password_files", collect_password_files, inputs=(WEB_SERVERS,))
