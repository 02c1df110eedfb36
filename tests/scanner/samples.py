"""Generated samples for hostguard's own YARA rules: for every rule, files it must match and near misses it must not.

Each sample is written here, in code, from a template that a :class:`Gen` fills in: the plain generator gives the
minimal form, the drawn one (hypothesis) varies what the attacker varies (variable names, white space, the case
of PHP function names, quotes, addresses and ports). Addresses are documentation addresses, host names ``.test``.
No sample is real malware: each one is the smallest text that shows the trait the rule looks for.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st


class Gen:
    """The minimal form of every variable part (what the plain, deterministic samples use)."""

    def ws(self) -> str:
        """Optional white space (where the language allows any, newlines included)."""
        return ""

    def sp(self) -> str:
        """One or more blanks (spaces or tabs) where the language needs a separator on one line."""
        return " "

    def var(self) -> str:
        """An identifier (a PHP/Perl variable name without its sigil, a Python name)."""
        return "x"

    def word(self, text: str) -> str:
        """``text`` in the case PHP accepts any of (function names)."""
        return text

    def q(self) -> str:
        """A string quote."""
        return "'"

    def ip(self) -> str:
        """A documentation address."""
        return "192.0.2.10"

    def port(self) -> str:
        """A port number."""
        return "4444"

    def pick(self, options: Sequence[str]) -> str:
        """One of ``options``."""
        return options[0]

    def number(self, low: int, high: int) -> int:
        """A number in [low, high]."""
        return low


class DrawnGen(Gen):
    """Every variable part drawn by hypothesis."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.quote = ""

    def ws(self) -> str:
        return self.data.draw(st.text(alphabet=" \t\n", max_size=3), label="ws")

    def sp(self) -> str:
        return self.data.draw(st.text(alphabet=" \t", min_size=1, max_size=3), label="sp")

    def var(self) -> str:
        return self.data.draw(st.from_regex(r"[a-z_][a-zA-Z0-9_]{0,10}", fullmatch=True), label="var")

    def word(self, text: str) -> str:
        flips = self.data.draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)), label="case")
        return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))

    def q(self) -> str:
        # one style per file, so every string opens and closes with the same quote
        self.quote = self.quote or self.data.draw(st.sampled_from(["'", '"']), label="quote")
        return self.quote

    def ip(self) -> str:
        net = self.data.draw(st.sampled_from(["192.0.2", "198.51.100", "203.0.113"]), label="net")
        return f"{net}.{self.data.draw(st.integers(1, 254), label='host')}"

    def port(self) -> str:
        return str(self.data.draw(st.integers(1, 65535), label="port"))

    def pick(self, options: Sequence[str]) -> str:
        return self.data.draw(st.sampled_from(list(options)), label="pick")

    def number(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high), label="number")


Make = Callable[[Gen], "str | bytes"]


@dataclass(frozen=True)
class Case:
    """One generated file: the rule it is about, how to make it, and the globals the scanner would set."""

    rule: str
    make: Make
    why: str = ""  # for a near miss: why it is fine, what differs from the hit
    extension: str = "php"
    in_web_root: bool = False
    file_name: str = ""  # default: sample.<extension>
    also: frozenset[str] = field(default_factory=frozenset)  # other rules a hit fires too (the same file is both)

    def data(self, gen: Gen) -> bytes:
        made = self.make(gen)
        return made.encode("utf-8") if isinstance(made, str) else made

    def name(self) -> str:
        return self.file_name or (f"sample.{self.extension}" if self.extension else "sample")


def elf(*strings: bytes, size: int = 256) -> bytes:
    """A minimal 64-bit little-endian ELF header followed by ``strings`` (NUL-separated, as a string table)."""
    header = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00"
    return header.ljust(size, b"\x00") + b"\x00".join(strings) + b"\x00"


def blob(gen: Gen, length: int) -> str:
    """A base64-looking literal of ``length`` characters (random, so it decodes to nothing meaningful)."""
    seed = gen.number(0, 1 << 30)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return "".join(random.Random(seed).choice(alphabet) for _ in range(length))


def split_name(gen: Gen, name: str) -> str:
    """``name`` as a PHP concatenation of two or more quoted pieces ("ev"."al")."""
    cuts = sorted({gen.number(1, len(name) - 1)} | {gen.number(1, len(name) - 1) for _ in range(gen.number(0, 2))})
    pieces = [name[a:b] for a, b in zip([0, *cuts], [*cuts, len(name)], strict=True)]
    quote = gen.q()
    return (gen.ws() + "." + gen.ws()).join(f"{quote}{piece}{quote}" for piece in pieces)


def chr_chain(gen: Gen, text: str) -> str:
    """``text`` spelled as chr(..).chr(..) calls, decimal or hex."""
    hexa = gen.pick(["dec", "hex"]) == "hex"
    return (gen.ws() + "." + gen.ws()).join(f"{gen.word('chr')}({hex(ord(c)) if hexa else ord(c)})" for c in text)


def hex_escaped(gen: Gen, text: str) -> str:
    """``text`` as PHP \\x escapes, in either case of the hex digits (PHP's x itself is lower case)."""
    return "".join("\\x" + gen.word(f"{ord(c):02x}") for c in text)


def upx_elf() -> bytes:
    """An ELF with a UPX header right after the program headers and the packer's trailer at the end."""
    head = elf(size=0xE8)[: 0xE8] + b"UPX!" + b"\x00" * 28
    info = b"$Info: This file is packed with the UPX executable packer http://upx.sf.net $\n"
    return head + b"\x11" * 600 + info + b"\x22" * 200 + b"UPX!" + b"\x00" * 12
