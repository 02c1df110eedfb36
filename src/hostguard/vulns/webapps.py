"""Web applications found in the web servers' document roots whose version is readable (WordPress core),
listed by ``vulns scan`` with "no open advisory feed": no OSV ecosystem covers them, so a clean answer about
them would say nothing. Listing them keeps "not looked" from reading as "nothing found".

Read through the :class:`~hostguard.host.base.Host` (live or ``--root``): each document root and its direct
subdirectories (``/blog``) are asked for ``wp-includes/version.php``; only its ``$wp_version`` line is read.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from hostguard.host.base import Host, HostError
from hostguard.host.web.servers import WebServers

WP_VERSION = re.compile(r"^\s*\$wp_version\s*=\s*'(?P<version>[0-9][0-9A-Za-z.\-]{0,31})'\s*;", re.M)
NO_FEED = "no open advisory feed: follow the project's security releases (wordpress.org/news/category/security)"


@dataclass(frozen=True)
class WebApp:
    """An application found in a document root: its name, version and where (the tree's path)."""

    name: str
    version: str
    path: str
    advisories: str = NO_FEED


def wordpress_version(host: Host, directory: str) -> str | None:
    """The WordPress core version installed in ``directory``, None when there is none (or it cannot be read)."""
    try:
        text = host.read_optional(f"{directory.rstrip('/')}/wp-includes/version.php")
    except HostError:
        return None
    m = WP_VERSION.search(text or "")
    return m["version"] if m else None


def web_applications(host: Host, servers: WebServers) -> list[WebApp]:
    """The WordPress installations in the document roots and their direct subdirectories, each once."""
    found: dict[str, WebApp] = {}
    for server in servers.servers:
        for site in server.sites:
            for doc in site.roots:
                candidates = [doc.path]
                with contextlib.suppress(HostError):
                    candidates += [f"{doc.path.rstrip('/')}/{name}" for name in sorted(host.listdir(doc.path))]
                for directory in candidates:
                    if directory in found:
                        continue
                    version = wordpress_version(host, directory)
                    if version is not None:
                        found[directory] = WebApp("WordPress", version, directory)
    return sorted(found.values(), key=lambda app: app.path)
