"""Password hash verifiers behind one small interface.

A :class:`Verifier` recognises the hashes it can check, verifies a candidate, and proves with a
known-answer self-test that this machine computes its scheme correctly. The weak-password check uses
:class:`CryptVerifier` (every crypt(3) scheme Linux uses, through libxcrypt's ``crypt_rn``, which works on
Python 3.13 where the ``crypt`` module is gone). Later verifiers (phpass, WordPress bcrypt, SCRAM, MySQL,
apr1, Tomcat) implement the same interface.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hmac
import re
import threading
from abc import ABC, abstractmethod
from functools import cache

from hostguard.data import load_toml

CRYPT_DATA_SIZE = 32768  # sizeof(struct crypt_data) in libxcrypt

_SCHEME_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("yescrypt", re.compile(r"^\$y\$[./A-Za-z0-9]+\$[./A-Za-z0-9]*\$[./A-Za-z0-9]{43}$")),
    ("gost-yescrypt", re.compile(r"^\$gy\$[./A-Za-z0-9]+\$[./A-Za-z0-9]*\$[./A-Za-z0-9]{43}$")),
    ("bcrypt", re.compile(r"^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$")),
    ("sha512", re.compile(r"^\$6\$(rounds=\d+\$)?[^$:\n]{0,16}\$[./A-Za-z0-9]{86}$")),
    ("sha256", re.compile(r"^\$5\$(rounds=\d+\$)?[^$:\n]{0,16}\$[./A-Za-z0-9]{43}$")),
    ("md5", re.compile(r"^\$1\$[^$:\n]{0,8}\$[./A-Za-z0-9]{22}$")),
    ("bsdi-des", re.compile(r"^_[./A-Za-z0-9]{19}$")),
    ("des", re.compile(r"^[./A-Za-z0-9]{13}$")),
)


class VerifierUnavailable(Exception):
    """The library a verifier needs is missing."""


def scheme_of(hashed: str) -> str | None:
    """The crypt scheme of a hash, or None when it is not one we know."""
    for name, pattern in _SCHEME_PATTERNS:
        if pattern.match(hashed):
            return name
    return None


class Verifier(ABC):
    """Checks candidate passwords against hashes of the schemes it supports."""

    @abstractmethod
    def scheme(self, hashed: str) -> str | None:
        """The scheme name when this verifier handles ``hashed``."""

    @abstractmethod
    def verify(self, candidate: bytes, hashed: str) -> bool:
        """True when ``candidate`` is the password behind ``hashed``. Thread-safe."""

    @abstractmethod
    def working_schemes(self) -> dict[str, str]:
        """Scheme -> "ok" or why it cannot be computed here (the known-answer self-test)."""


class CryptVerifier(Verifier):
    """crypt(3) through libxcrypt's reentrant ``crypt_rn`` (the GIL is released while it hashes)."""

    def __init__(self, library: str | None = None) -> None:
        name = library or ctypes.util.find_library("crypt") or "libcrypt.so.1"
        try:
            lib = ctypes.CDLL(name)
            self._crypt_rn = lib.crypt_rn
        except (OSError, AttributeError) as exc:
            raise VerifierUnavailable(f"libxcrypt ({name}) with crypt_rn is not available: {exc}") from exc
        self._crypt_rn.restype = ctypes.c_char_p
        self._crypt_rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        self._local = threading.local()
        self._status: dict[str, str] | None = None

    def _buffer(self) -> ctypes.Array[ctypes.c_char]:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = ctypes.create_string_buffer(CRYPT_DATA_SIZE)
        return buf

    def crypt(self, candidate: bytes, setting: str) -> str | None:
        """The hash of ``candidate`` with ``setting``'s scheme and salt, None on failure."""
        if b"\0" in candidate:
            return None
        out = self._crypt_rn(candidate, setting.encode("ascii", "replace"), self._buffer(), CRYPT_DATA_SIZE)
        if not out or out.startswith(b"*"):
            return None
        return bytes(out).decode("ascii", "replace")

    def scheme(self, hashed: str) -> str | None:
        """See :func:`scheme_of`."""
        return scheme_of(hashed)

    def verify(self, candidate: bytes, hashed: str) -> bool:
        """Constant-time compare of the recomputed hash."""
        if not hashed.isascii():   # no crypt scheme writes anything else (and compare_digest refuses it)
            return False
        got = self.crypt(candidate, hashed)
        return got is not None and hmac.compare_digest(got, hashed)

    def working_schemes(self) -> dict[str, str]:
        """Run every known answer once and remember the result."""
        if self._status is None:
            kat = load_toml("weak_passwords/crypt-known-answers.toml")
            password = kat["password"].encode()
            status = {}
            for name, expected in kat["schemes"].items():
                got = self.crypt(password, expected)
                if got is None:
                    status[name] = "the system's crypt library cannot compute it"
                elif got != expected:
                    status[name] = "the system's crypt library gives a wrong known answer"
                else:
                    status[name] = "ok"
            self._status = status
        return self._status


@cache
def crypt_verifier() -> CryptVerifier:
    """One shared verifier per process."""
    return CryptVerifier()
