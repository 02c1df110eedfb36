"""Running ``nft`` for the blocks, and reading hostguard's table back from ``nft -j``.

How nft is run is a parameter (a prefix argv, ``("nft",)`` on the host, ``("ip", "netns", "exec", NS,
"nft")`` in tests), so tests point every change into a network namespace they made and never touch this
machine's ruleset. State is read back from nft's JSON only (Debian's python3-nftables cannot be imported
from a virtualenv). The table is written as nft's text syntax through ``nft -f -``: one file is one
transaction, so a replaced table never exists half-written.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NftError(Exception):
    """nft is missing, failed, or printed something that is not its JSON; one line."""


@dataclass(frozen=True)
class KernelElement:
    """One element of a kernel set: its network and, for timed elements, the timeout it was given and the
    seconds left (as nft reports them)."""

    network: Network
    timeout: int | None = None
    expires: int | None = None


@dataclass(frozen=True)
class KernelTable:
    """hostguard's table as the kernel has it: its sets' elements and its chains (hook, priority, rules)."""

    sets: dict[str, list[KernelElement]] = field(default_factory=dict)
    chains: dict[str, tuple[str | None, int | None]] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)  # chain -> the sets its rules match, in order


class Nft:
    """``nft`` run through ``prefix`` (argv before nft's own arguments)."""

    def __init__(self, prefix: Sequence[str] = ("nft",), timeout: float = 30) -> None:
        if not prefix:
            raise ValueError("the nft prefix needs at least the program")
        self.prefix = tuple(prefix)
        self.timeout = timeout

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [*self.prefix, *args]
        try:
            return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=self.timeout,
                                  check=False, env={**os.environ, "LC_ALL": "C"})  # its messages are matched
        except FileNotFoundError as exc:
            raise NftError(f"{argv[0]} is not installed (the nftables package provides nft)") from exc
        except subprocess.TimeoutExpired as exc:
            raise NftError(f"`{' '.join(argv)}` did not finish in {self.timeout:g}s") from exc
        except OSError as exc:
            raise NftError(f"`{argv[0]}`: {exc.strerror or exc}") from exc

    def apply(self, script: str) -> None:
        """Run ``script`` as one transaction (``nft -f -``); nft's first error line on failure."""
        done = self._run(["-f", "-"], stdin=script)
        if done.returncode != 0:
            raise NftError("nft refused the block table: " + _first_line(done.stderr))

    def table(self, family: str, name: str) -> KernelTable | None:
        """The table as the kernel has it, or None when there is no such table."""
        done = self._run(["-j", "list", "table", family, name])
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return None
            raise NftError(f"nft -j list table {family} {name}: " + _first_line(done.stderr))
        return parse_table(done.stdout)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def parse_element(value: Any) -> list[KernelElement]:
    """The networks one JSON set element stands for: an address, ``{"prefix"}``, ``{"range"}`` (split into
    networks), or ``{"elem": {"val": ..., "timeout", "expires"}}`` around one of them."""
    timeout = expires = None
    if isinstance(value, dict) and "elem" in value:
        inner = value["elem"]
        if not isinstance(inner, dict):
            raise NftError(f"unexpected set element in nft's JSON: {inner!r:.80}")
        timeout, expires = _seconds(inner.get("timeout")), _seconds(inner.get("expires"))
        value = inner.get("val")
    try:
        if isinstance(value, str):
            networks: list[Network] = [ipaddress.ip_network(value)]
        elif isinstance(value, dict) and isinstance(value.get("prefix"), dict):
            networks = [ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}")]
        elif isinstance(value, dict) and isinstance(value.get("range"), list) and len(value["range"]) == 2:
            low, high = (ipaddress.ip_address(v) for v in value["range"])
            networks = list(ipaddress.summarize_address_range(low, high))
        else:
            raise NftError(f"unexpected set element in nft's JSON: {value!r:.80}")
    except (ValueError, TypeError, KeyError) as exc:
        raise NftError(f"unexpected set element in nft's JSON: {value!r:.80}") from exc
    return [KernelElement(n, timeout, expires) for n in networks]


def _seconds(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NftError(f"unexpected timeout in nft's JSON: {value!r:.40}")
    return int(value)


def parse_table(text: str) -> KernelTable:
    """hostguard's table from ``nft -j list table`` output (sets, chains, and which sets each rule matches)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise NftError(f"nft printed something that is not JSON: {exc}") from exc
    items = data.get("nftables") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise NftError("nft's JSON has no 'nftables' list")
    table = KernelTable()
    for item in items:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("set"), dict):
            s = item["set"]
            elems = s.get("elem", [])
            if not isinstance(elems, list):
                raise NftError("nft's JSON: a set's 'elem' is not a list")
            table.sets[str(s.get("name"))] = [e for v in elems for e in parse_element(v)]
        elif isinstance(item.get("chain"), dict):
            c = item["chain"]
            prio = c.get("prio")
            table.chains[str(c.get("name"))] = (c.get("hook"), prio if isinstance(prio, int) else None)
        elif isinstance(item.get("rule"), dict):
            r = item["rule"]
            table.rules.setdefault(str(r.get("chain")), []).append(_rule_shape(r.get("expr")))
    return table


def _rule_shape(expr: Any) -> str:
    """A rule as ``@set verdict`` (what verify compares), or ``?`` for a rule hostguard does not write."""
    if not isinstance(expr, list):
        return "?"
    matched = verdict = None
    for part in expr:
        if not isinstance(part, dict):
            continue
        match = part.get("match")
        if isinstance(match, dict) and isinstance(match.get("right"), str) and match["right"].startswith("@"):
            matched = match["right"]
        for word in ("accept", "drop"):
            if word in part:
                verdict = word
    return f"{matched} {verdict}" if matched and verdict else "?"
