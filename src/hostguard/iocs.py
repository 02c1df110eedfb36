"""Indicators of compromise (IOCs): one format, one loader, one matcher for every family and the agent.

An IOC list is a TOML file of ``[[ioc]]`` tables::

    source = "who said so (a URL or a team), the default for every entry below"

    [[ioc]]
    type = "domain"            # ip | cidr | domain | url | sha256
    value = "pool.example.test"
    source = "..."             # optional when the file gives one
    expiry = 2027-06-30        # optional TOML date: after it the entry is ignored (with a note)
    comment = "why it is bad"  # optional

Lists go stale: an entry with an ``expiry`` in the past is ignored and named in :attr:`IocSet.notes`, so a
report can say which entries no longer count. A malformed entry is an :class:`IocError` naming the file and
the line of its ``[[ioc]]`` header: a list the owner wrote must never be half-read in silence.

Matching: an IP against ``ip`` and ``cidr`` entries (an IPv4-mapped IPv6 address counts as its IPv4
address); a domain by whole labels (``pool.example.test`` matches ``eu.pool.example.test``, never
``notpool.example.test``); a URL against ``url`` entries (equal, or below an entry ending in ``/``) and by
its host against the domain and IP entries; a SHA-256 digest exactly.

This module reads files only when asked to load one and imports nothing of hostguard's but the data
package, so the connections family, the process family, the scanner and the agent share it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal
from urllib.parse import urlsplit

IocType = Literal["ip", "cidr", "domain", "url", "sha256"]
TYPES: tuple[IocType, ...] = ("ip", "cidr", "domain", "url", "sha256")
KEYS = frozenset({"type", "value", "source", "expiry", "comment"})
SHIPPED_DIR = "iocs"  # src/hostguard/data/iocs/*.toml

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEADER = re.compile(r"^\s*\[\[\s*ioc\s*\]\]\s*(#.*)?$")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class IocError(ValueError):
    """A list that cannot be read, or an entry that is malformed: the message names the file and line."""


@dataclass(frozen=True)
class Ioc:
    """One indicator: what it is, its normalised value, who reported it, until when, and why."""

    type: IocType
    value: str
    source: str
    expiry: dt.date | None = None
    comment: str = ""
    origin: str = ""  # "file:line" of its [[ioc]] header, for people

    def expired(self, today: dt.date) -> bool:
        """True once the day of ``expiry`` has passed."""
        return self.expiry is not None and self.expiry < today

    def describe(self) -> dict[str, Any]:
        """Evidence about the indicator a finding matched."""
        out: dict[str, Any] = {"type": self.type, "value": self.value, "source": self.source}
        if self.comment:
            out["comment"] = self.comment
        if self.expiry is not None:
            out["expiry"] = self.expiry.isoformat()
        if self.origin:
            out["list"] = self.origin
        return out


def _ip(text: str) -> IpAddress:
    """An address, IPv4-mapped IPv6 addresses as their IPv4 address; ValueError otherwise."""
    addr = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def normalise_domain(name: str) -> str | None:
    """``Pool.Example.TEST.`` -> ``pool.example.test``; None when it is not a host name."""
    name = name.strip().rstrip(".").lower()
    if not name or len(name) > 253:
        return None
    labels = name.split(".")
    return name if all(_LABEL.match(label) for label in labels) else None


def _normalise_url(url: str) -> str | None:
    """Scheme and host lower case, no fragment, default path "/"; None when it has no scheme or host."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not host or not re.fullmatch(r"[a-z][a-z0-9+.-]*", parts.scheme.lower()):
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{netloc}{parts.path or '/'}{query}"


def normalise(kind: str, value: str) -> str:
    """The canonical form of ``value`` as an IOC of ``kind``; ValueError saying what is wrong."""
    if kind == "ip":
        try:
            return str(_ip(value))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
    if kind == "cidr":
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network ({exc})") from None
        return str(net)
    if kind == "domain":
        name = normalise_domain(value)
        if name is None or "." not in name:
            raise ValueError(f"{value!r} is not a domain name with at least two labels")
        return name
    if kind == "url":
        url = _normalise_url(value)
        if url is None:
            raise ValueError(f"{value!r} is not a URL with a scheme and a host")
        return url
    if kind == "sha256":
        digest = value.strip().lower()
        if not _SHA256.match(digest):
            raise ValueError(f"{value!r} is not a SHA-256 digest (64 hex digits)")
        return digest
    raise ValueError(f"type {kind!r} is not one of {', '.join(TYPES)}")


def _header_lines(text: str) -> list[int]:
    """The line numbers of the ``[[ioc]]`` headers, in order (entries in inline form have none)."""
    return [i for i, line in enumerate(text.splitlines(), 1) if _HEADER.match(line)]


def parse_iocs(text: str, name: str) -> tuple[Ioc, ...]:
    """Every entry of one list; :class:`IocError` naming ``name`` and the line of the first bad entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise IocError(f"IOC list {name}: {exc}") from None
    unknown = set(data) - {"ioc", "source"}
    if unknown:
        raise IocError(f"IOC list {name}: unknown key {sorted(unknown)[0]!r} (known: ioc, source)")
    default_source = data.get("source", "")
    if not isinstance(default_source, str):
        raise IocError(f"IOC list {name}: 'source' must be text")
    entries = data.get("ioc", [])
    if not isinstance(entries, list):
        raise IocError(f"IOC list {name}: 'ioc' must be [[ioc]] tables")
    lines = _header_lines(text)
    out = []
    for i, entry in enumerate(entries):
        where = f"{name}:{lines[i]}" if len(lines) == len(entries) else f"{name} entry {i + 1}"
        try:
            out.append(_entry(entry, default_source, where))
        except ValueError as exc:
            raise IocError(f"IOC list {where}: {exc}") from None
    return tuple(out)


def _entry(entry: Any, default_source: str, where: str) -> Ioc:
    if not isinstance(entry, dict):
        raise ValueError("an entry must be a table")
    unknown = set(entry) - KEYS
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(KEYS))})")
    kind, value = entry.get("type"), entry.get("value")
    if not isinstance(kind, str) or not isinstance(value, str):
        raise ValueError("'type' and 'value' are required text")
    if kind not in TYPES:
        raise ValueError(f"type {kind!r} is not one of {', '.join(TYPES)}")
    source = entry.get("source", default_source)
    if not isinstance(source, str) or not source.strip():
        raise ValueError("'source' is required (in the entry or at the top of the file)")
    comment = entry.get("comment", "")
    if not isinstance(comment, str):
        raise ValueError("'comment' must be text")
    expiry = entry.get("expiry")
    if isinstance(expiry, dt.datetime):
        expiry = expiry.date()
    if expiry is not None and not isinstance(expiry, dt.date):
        raise ValueError("'expiry' must be a TOML date (2027-06-30)")
    return Ioc(kind, normalise(kind, value), source, expiry, comment, where)


def load_file(path: str) -> tuple[Ioc, ...]:
    """An owner's list from the scanning machine (read again only when it changed)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise IocError(f"IOC list {path}: {exc.strerror}") from None
    return _load_file(path, st.st_mtime_ns, st.st_size)


@cache
def _load_file(path: str, mtime_ns: int, size: int) -> tuple[Ioc, ...]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise IocError(f"IOC list {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IocError(f"IOC list {path}: not UTF-8 text") from None
    return parse_iocs(text, path)


@cache
def shipped() -> tuple[Ioc, ...]:
    """The lists shipped in data/iocs/ (written here, each entry with its source)."""
    out: list[Ioc] = []
    folder = resources.files("hostguard.data").joinpath(SHIPPED_DIR)
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            out.extend(parse_iocs(item.read_text("utf-8"), f"data/{SHIPPED_DIR}/{item.name}"))
    return tuple(out)


@dataclass(frozen=True)
class IocSet:
    """The IOCs in force, indexed for matching; ``notes`` say which entries were ignored as expired."""

    ips: Mapping[IpAddress, Ioc] = field(default_factory=dict)
    networks: tuple[tuple[IpNetwork, Ioc], ...] = ()
    domains: Mapping[str, Ioc] = field(default_factory=dict)
    urls: Mapping[str, Ioc] = field(default_factory=dict)
    digests: Mapping[str, Ioc] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @classmethod
    def build(cls, iocs: Iterable[Ioc], today: dt.date) -> IocSet:
        """Index ``iocs``; an expired entry is left out with a note (the first entry of a value wins)."""
        ips: dict[IpAddress, Ioc] = {}
        networks: list[tuple[IpNetwork, Ioc]] = []
        domains: dict[str, Ioc] = {}
        urls: dict[str, Ioc] = {}
        digests: dict[str, Ioc] = {}
        notes: list[str] = []
        for ioc in iocs:
            if ioc.expired(today):
                assert ioc.expiry is not None
                notes.append(f"{ioc.origin or ioc.source}: {ioc.type} {ioc.value} expired on "
                             f"{ioc.expiry.isoformat()} and is ignored")
                continue
            if ioc.type == "ip":
                ips.setdefault(_ip(ioc.value), ioc)
            elif ioc.type == "cidr":
                networks.append((ipaddress.ip_network(ioc.value), ioc))
            elif ioc.type == "domain":
                domains.setdefault(ioc.value, ioc)
            elif ioc.type == "url":
                urls.setdefault(ioc.value, ioc)
            else:
                digests.setdefault(ioc.value, ioc)
        return cls(ips, tuple(networks), domains, urls, digests, tuple(notes))

    def __len__(self) -> int:
        return len(self.ips) + len(self.networks) + len(self.domains) + len(self.urls) + len(self.digests)

    def match_ip(self, address: str) -> Ioc | None:
        """The entry naming ``address`` (an ``ip`` entry first, then the first ``cidr`` holding it)."""
        try:
            addr = _ip(address)
        except ValueError:
            return None
        hit = self.ips.get(addr)
        if hit is not None:
            return hit
        for net, ioc in self.networks:
            if addr.version == net.version and addr in net:
                return ioc
        return None

    def match_domain(self, name: str) -> Ioc | None:
        """The entry naming ``name`` or a domain it lies under (whole labels only)."""
        norm = normalise_domain(name)
        if norm is None:
            return None
        labels = norm.split(".")
        for i in range(len(labels) - 1):
            hit = self.domains.get(".".join(labels[i:]))
            if hit is not None:
                return hit
        return None

    def match_url(self, url: str) -> Ioc | None:
        """A ``url`` entry equal to ``url`` or a directory above it (entry ending in "/"), else its host's
        ``domain``/``ip``/``cidr`` entry."""
        norm = _normalise_url(url)
        if norm is None:
            return None
        hit = self.urls.get(norm)
        if hit is not None:
            return hit
        cut = norm.split("?", 1)[0]
        while "/" in cut[cut.index("://") + 3:]:
            cut = cut[: cut.rindex("/")]
            hit = self.urls.get(cut + "/")
            if hit is not None:
                return hit
        host = urlsplit(norm).hostname or ""
        try:
            _ip(host)
        except ValueError:
            return self.match_domain(host)
        return self.match_ip(host)

    def match_sha256(self, digest: str) -> Ioc | None:
        """The entry naming this SHA-256 digest (hex, any case)."""
        return self.digests.get(digest.strip().lower())
