"""What to try against a hash: common passwords by rank, and guesses made from the account and host names.

The common list is zxcvbn's ranked list of 30,000 passwords (a maintained PyPI package ships it; nothing
is pasted here). Each guess carries the class it came from, which is what a finding reports — the
password itself is never shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Guess:
    """A candidate password and where it came from."""

    text: str
    source: str  # "common password (rank N)", "derived from the account name", ...


@cache
def common_passwords() -> tuple[str, ...]:
    """The ranked common-password list (most common first)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return tuple(FREQUENCY_LISTS["passwords"])


SUFFIXES = ("", "1", "123", "1234", "12345", "123456", "!", "@123", "123!", "2024", "2025", "2026")


def variants(word: str) -> Iterator[str]:
    """Common mutations of a word: case, reversal, leetspeak, typical suffixes."""
    if not word:
        return
    for base in dict.fromkeys([word.lower(), word.capitalize()]):
        for suffix in SUFFIXES:
            yield base + suffix
    yield word
    yield word.upper()
    yield word[::-1]
    yield word.lower().replace("a", "@").replace("o", "0").replace("e", "3").replace("i", "1")
    yield word + word


def derived(account: str, gecos: str, hostname: str, extra_words: Iterable[str]) -> list[Guess]:
    """Guesses from the account name, its full name, the host name and configured site words."""
    out: dict[str, Guess] = {}

    def add(words: Iterable[str], source: str) -> None:
        for w in words:
            for v in variants(w):
                out.setdefault(v, Guess(v, source))

    add([account], "derived from the account name")
    name_parts = [p for p in gecos.split(",")[0].replace(".", " ").split() if len(p) > 2][:2]
    add(name_parts, "derived from the account's full name")
    host_parts = [hostname, hostname.split(".")[0]]
    add(dict.fromkeys(p for p in host_parts if p), "derived from the host name")
    add([w for w in extra_words if w], "a configured site word")
    return list(out.values())


def plan(account: str, gecos: str, hostname: str, extra_words: Iterable[str], floor: int,
         wordlist: Iterable[str] = ()) -> tuple[list[Guess], list[Guess]]:
    """(guaranteed guesses, further guesses by rank). The first are tried whatever the budget."""
    common = common_passwords()
    first = derived(account, gecos, hostname, extra_words)
    seen = {g.text for g in first}
    for rank, word in enumerate(common[:floor], 1):
        if word not in seen:
            seen.add(word)
            first.append(Guess(word, f"common password (rank {rank})"))
    rest: list[Guess] = []
    for rank, word in enumerate(common[floor:], floor + 1):
        if word not in seen:
            seen.add(word)
            rest.append(Guess(word, f"common password (rank {rank})"))
    for word in wordlist:
        if word not in seen:
            seen.add(word)
            rest.append(Guess(word, "from the configured word list"))
    return first, rest
