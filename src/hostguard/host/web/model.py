"""The web model every server reader fills and the web family reads.

A reader (nginx, Apache, Tomcat) turns a server's configuration, read through the :class:`Host` (so under
``--root`` every include stays inside the tree), into :class:`WebServer` records: the user its workers run
as, and its :class:`Site` s with their document roots. Every value carries the file and line it came from
(:class:`Where`), so ``hostguard webroots`` and every finding can say why hostguard believes it.

Whether a request path is reachable is the server's own logic (nginx's location precedence, Apache's
merged sections and ``.htaccess``): each site answers through its :class:`AccessPolicy`, with "unknown"
where the configuration cannot be evaluated (a ``map`` variable, a directive hostguard does not model)
rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True)
class Where:
    """A file and a 1-based line: where a value was read (``line`` 0: the whole file, or a built-in default
    when ``path`` is empty)."""

    path: str
    line: int = 0

    def __str__(self) -> str:
        if not self.path:
            return "built-in default"
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class Directive:
    """One directive of a server configuration, as written: its name, its arguments (quotes removed) and its
    block (None for a directive ending in ``;`` or an Apache one-line directive). Includes are already
    expanded in place, each directive keeping the file and line it was written on."""

    name: str
    args: tuple[str, ...]
    where: Where
    block: tuple[Directive, ...] | None = None


class Reach(StrEnum):
    """What a client without credentials gets for a path."""

    OPEN = "open"               # served to anyone who reaches the site
    RESTRICTED = "restricted"   # only from chosen addresses, or with a password (auth_basic, Require valid-user)
    DENIED = "denied"           # refused to everyone (deny all, Require all denied, return 403/404)
    UNKNOWN = "unknown"         # the configuration cannot be evaluated for this path: say so, never guess


@dataclass(frozen=True)
class Access:
    """The answer for one path: what a client gets, how (the deciding directives), and where they stand."""

    reach: Reach
    how: str
    where: tuple[Where, ...] = ()


class AccessPolicy(Protocol):
    """A server's own rules for one site, evaluated as the server would."""

    def access(self, uri: str) -> Access:
        """What a client without credentials gets for the absolute request path ``uri`` (``/admin/``)."""
        ...

    def runs_php(self, uri: str) -> bool | None:
        """Whether a ``.php`` file requested at ``uri`` would be executed (handed to PHP), not served as text;
        None when it cannot be told."""
        ...


def remove_dot_segments(path: str, skip_empty: bool = False) -> str | None:
    """``path`` (absolute, decoded) with ``.`` and ``..`` segments resolved as servers do before they map it: a
    final ``.`` or ``..`` leaves a trailing slash; ``skip_empty`` drops empty segments (repeated slashes) but a
    trailing one. None when ``..`` climbs above the root (servers answer 400)."""
    out: list[str] = []
    parts = path.split("/")[1:]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if skip_empty and part == "" and not last:
            continue
        if part in (".", ".."):
            if part == "..":
                if not out:
                    return None
                out.pop()
            if last:
                out.append("")
            continue
        out.append(part)
    return "/" + "/".join(out)


@dataclass(frozen=True)
class DocRoot:
    """A directory a site serves files from: at ``url`` (``/`` for the document root, ``/phpmyadmin/`` for an
    alias), the directory ``path`` on the host, and where that was configured."""

    url: str
    path: str
    where: Where


@dataclass(frozen=True)
class RunAs:
    """The account that reads (and may write) a site's files: from the live worker processes, or from the
    configuration (``source`` says which), with the groups it has on the host."""

    user: str
    group: str | None
    source: str          # "process" (pid named in ``detail``), "config", "default"
    where: Where
    detail: str = ""


@dataclass(frozen=True)
class Site:
    """One server block or virtual host."""

    server: str                          # "nginx", "apache", "tomcat"
    names: tuple[str, ...]               # server_name / ServerName + ServerAlias; () for a catch-all
    listens: tuple[str, ...]             # as written: "80", "[::]:443 ssl", "*:80"
    roots: tuple[DocRoot, ...]
    where: Where                         # the block's opening line
    run_as: tuple[RunAs, ...] = ()       # the server's workers, then the PHP-FPM pool(s) it hands PHP to
    php_backends: tuple[str, ...] = ()   # fastcgi_pass / SetHandler proxy:fcgi targets, as written
    policy: AccessPolicy | None = field(default=None, compare=False, repr=False)
    # Site-level settings the checks read, each with where it was set (Where("") for a built-in default):
    # ("server_tokens", "on"|"off"|..., where) as in force for the site, and one ("autoindex", LOCATION, where)
    # per place directory listing is on, LOCATION naming it ("/" for the whole site, "^~ /files/", "~ re").
    settings: tuple[tuple[str, str, Where], ...] = ()
    # Basic-auth password files the site's configuration names (nginx ``auth_basic_user_file``, Apache
    # ``AuthUserFile``), each as the server resolves it (a relative path made absolute; a value with a variable
    # kept as written) with the directive's place: where the password-file reader finds .htpasswd files.
    password_files: tuple[tuple[str, Where], ...] = ()

    def label(self) -> str:
        """How a finding or a skipped line names the site."""
        name = self.names[0] if self.names else "(default)"
        return f"{self.server} {name} ({self.where})"


@dataclass(frozen=True)
class PhpPool:
    """A PHP-FPM pool: the account its workers run as, where it listens, its working directory."""

    name: str
    user: str | None
    group: str | None
    listen: str | None
    chdir: str | None
    where: Where
    settings: tuple[tuple[str, str, Where], ...] = ()   # php_admin_value/php_value lines: name, value, where
    # The php-fpm.conf the pool was read through (it names the php.ini the pool's workers start from), and
    # every directive of the pool as php-fpm keeps it (key lower-cased, ``$pool`` substituted, the last
    # value of a repeated key), so a finding can quote the ``user =`` or ``listen =`` line itself.
    config: str = ""
    directives: tuple[tuple[str, str, Where], ...] = ()


@dataclass(frozen=True)
class WebServer:
    """One web server's configuration on the host, with the problems met reading it (``notes``: an include
    that matched nothing is normal; an unreadable file or a directive not understood is named here, and the
    sites it could affect answer "unknown" where it matters)."""

    kind: str                            # "nginx", "apache", "tomcat"
    config: str                          # the main file read
    run_as: tuple[RunAs, ...]
    sites: tuple[Site, ...]
    settings: tuple[tuple[str, str, Where], ...] = ()   # server-wide settings the checks read (server_tokens)
    notes: tuple[str, ...] = ()
