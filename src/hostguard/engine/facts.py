"""Lazy, memoized host facts. Collectors do the I/O; checks only read the frozen results.

A collector is ``func(host, config) -> value``. It may raise :class:`~hostguard.host.base.Unavailable`
(the fact cannot be known here) or :class:`~hostguard.host.base.HostError` (reading failed); either is
remembered, and every check needing the fact is reported in ``skipped`` with the reason.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from hostguard.findings import SkipReason
from hostguard.host.base import Host, HostError, Unavailable

# fact name -> "module:function"; imported only when a selected check needs the fact.
COLLECTORS: dict[str, str] = {
    "accounts": "hostguard.host.accounts:collect_accounts",
    "shadow": "hostguard.host.accounts:collect_shadow",
    "login_defs": "hostguard.host.pam:collect_login_defs",
    "pam": "hostguard.host.pam:collect_pam",
    "sudoers": "hostguard.host.sudoers:collect_sudoers",
    "authorized_keys": "hostguard.host.accounts:collect_authorized_keys",
    "sshd": "hostguard.host.sshd:collect_sshd",
    "sshd_freshness": "hostguard.host.sshd:collect_sshd_freshness",
    "listeners": "hostguard.host.sockets:collect_listeners",
    "firewall": "hostguard.host.firewall:collect_firewall",
    "reach": "hostguard.checks.firewall:collect_reach",
    "known_accounts": "hostguard.engine.facts:_known_accounts",
    "hostname": "hostguard.engine.facts:_hostname",
    "wordlist": "hostguard.engine.facts:_wordlist",
}


class Facts:
    """One scan's facts, collected at most once each (thread-safe)."""

    def __init__(self, host: Host, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        self.host = host
        self.config = config
        self._values: dict[str, Any] = dict(extra or {})
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        """The fact's value; raises the collector's :class:`Unavailable` for every caller."""
        with self._lock:
            known = name in self._values
        if not known:
            value = self._collect(name)  # outside the lock: a derived fact reads other facts
            with self._lock:
                self._values.setdefault(name, value)
        with self._lock:
            value = self._values[name]
        if isinstance(value, Unavailable):
            raise value
        return value

    def loaded(self, name: str) -> bool:
        """True when the fact was collected successfully."""
        return name in self._values and not isinstance(self._values[name], Unavailable)

    def _collect(self, name: str) -> Any:
        target = COLLECTORS.get(name)
        if target is None:
            return Unavailable(SkipReason.ERROR, f"no collector for fact {name!r}")
        module, func = target.split(":")
        try:
            collector = getattr(importlib.import_module(module), func)
            if collector.__code__.co_argcount == 3:  # a derived fact, computed from other facts
                return collector(self.host, self.config, self)
            return collector(self.host, self.config)
        except Unavailable as exc:
            return exc
        except HostError as exc:
            return Unavailable(SkipReason.ERROR, str(exc))
        except PermissionError as exc:
            return Unavailable(SkipReason.NOT_ROOT, f"{name}: {exc}")


def _known_accounts(host: Host, config: dict[str, Any]) -> Any:
    """Placeholder: the runner injects the previous scan's accounts from the state store."""
    raise Unavailable(SkipReason.ERROR, "no state store given")


def _hostname(host: Host, config: dict[str, Any]) -> str:
    """The scanned host's name (from the tree under --root)."""
    return host.hostname()


def _wordlist(host: Host, config: dict[str, Any]) -> tuple[str, ...]:
    """Extra guesses from the configured word list (a file on the scanning machine), one per line."""
    path = config["weak_passwords"]["wordlist"]
    if not path:
        return ()
    try:
        with open(path, "rb") as fh:
            data = fh.read(64 * 1024 * 1024)
    except OSError as exc:
        raise Unavailable(SkipReason.ERROR, f"weak_passwords.wordlist {path}: {exc.strerror}") from exc
    words = (w.strip() for w in data.decode("utf-8", "replace").splitlines())
    return tuple(dict.fromkeys(w for w in words if w and len(w) <= 256))
