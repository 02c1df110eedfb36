"""One :class:`Verifier` for the password stores of services: web back ends, databases, Tomcat.

It extends issue 2's interface instead of adding a second engine: the cracker hands it ``Target.hashed``
and a candidate exactly as it does for /etc/shadow. Schemes libxcrypt computes (bcrypt ``$2y$`` of
htpasswd -B, DES of htpasswd -d, ``$5$``/``$6$`` of htpasswd -2/-5) go to the shared
:class:`~hostguard.passwords.verifiers.CryptVerifier`; the rest are in
:mod:`hostguard.passwords.service_schemes`.

**Context travels in the hash string.** Some stores cannot be checked from the stored value alone: a
PostgreSQL ``md5`` verifier is salted with the user name, a Tomcat digest says nothing of the algorithm
(server.xml's CredentialHandler does), a MariaDB ed25519 string looks like any base64, and a plain-text
password looks like anything. Rather than change :class:`~hostguard.passwords.cracker.Target` (whose
``hashed`` is all the cracker passes on), a reader writes such a value *tagged*:
``{hg:scheme=pg-md5,user=alice}md57f47...`` — :func:`tagged` builds it, values percent-encoded so any user
name or algorithm fits. Self-describing values (``$apr1$``, ``{SHA}``, ``$P$``, ``$wp$2y$``, ``*HEX``,
``$A$005$``, ``SCRAM-SHA-256$``) need no tag.

**Malformed or hostile values never raise**: :meth:`ServiceVerifier.scheme` answers None (the account is
then "not checked", never "strong"), and :meth:`ServiceVerifier.verify` answers False. Work factors beyond
what any server writes (a SCRAM verifier claiming a billion iterations) are refused the same way, so a
planted file cannot stall the cracker inside one guess.

Each scheme proves itself at run time with a known answer made by the real tool
(``data/weak_passwords/service-known-answers.toml``): a scheme whose answer fails is not used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote, unquote

from hostguard.data import load_toml
from hostguard.passwords import service_schemes as algo
from hostguard.passwords.verifiers import CryptVerifier, Verifier, crypt_verifier

# The most work one guess may cost before a value is refused as not a real server's: far above what the
# servers write by default (SCRAM 4096, Tomcat 1-20000, phpass 2**8, MySQL 5000) and below minutes a guess.
MAX_PBKDF2_ITERATIONS = 10_000_000
MAX_DIGEST_ITERATIONS = 10_000_000
MAX_PHPASS_LOG2 = 24
MAX_SHA256_CRYPT_ROUNDS = 5_000_000

_B64 = r"[A-Za-z0-9+/]"
_APR1 = re.compile(r"^\$apr1\$[^$\n]{0,8}\$[./0-9A-Za-z]{22}$")
_SHA1 = re.compile(r"^\{SHA\}" + _B64 + r"{27}=$")
_SSHA = re.compile(r"^\{SSHA\}(" + _B64 + r"{28,}={0,2})$")
_WP = re.compile(r"^\$wp(\$2[aby]\$\d\d\$[./A-Za-z0-9]{53})$")
_PHPASS = re.compile(r"^\$[PH]\$[./0-9A-Za-z]{31}$")
_NATIVE = re.compile(r"^\*[0-9A-Fa-f]{40}$")
_SHA2 = re.compile(r"^\$A\$([0-9A-Fa-f]{3})\$(.{20})([./0-9A-Za-z]{43})$", re.DOTALL)
_SHA2_HASHCAT = re.compile(r"^\$mysql\$A\$([0-9A-Fa-f]{3,4})\*([0-9A-Fa-f]{40})\*([0-9A-Fa-f]{86})$")
_SCRAM = re.compile(r"^SCRAM-SHA-256\$(\d{1,10}):(" + _B64 + r"+={0,2})\$(" + _B64 + r"{43}=):(" + _B64 + r"{43}=)$")
_PG_MD5 = re.compile(r"^md5[0-9a-f]{32}$")
_ED25519 = re.compile(r"^" + _B64 + r"{43}$")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
_TOMCAT_SALTED = re.compile(r"^([0-9A-Fa-f]*)\$(\d{1,10})\$((?:[0-9A-Fa-f]{2})+)$")
_TOMCAT_BRACED = re.compile(r"^\{(MD5|SHA|SSHA)\}(" + _B64 + r"+={0,2})$", re.IGNORECASE)
_TAG = re.compile(r"^\{hg:([^{}]*)\}(.*)$", re.DOTALL)

# Schemes this module answers itself (crypt's own names come from the CryptVerifier).
SCHEMES = ("apr1", "htpasswd-sha1", "htpasswd-ssha", "phpass", "wordpress-bcrypt", "mysql-native", "mysql-caching-sha2",
           "mariadb-ed25519", "pg-md5", "pg-scram-sha-256", "tomcat-digest", "tomcat-pbkdf2", "plain")
# Tagged schemes and the context each needs.
_NEEDS = {"pg-md5": ("user",), "tomcat-digest": ("algorithm",), "tomcat-pbkdf2": ("algorithm",),
          "mariadb-ed25519": (), "plain": ()}


def tagged(value: str, scheme: str, **context: str) -> str:
    """``value`` with the context a verifier needs to check it (``scheme`` one of the tagged schemes:
    pg-md5 with ``user``, tomcat-digest/tomcat-pbkdf2 with ``algorithm`` and optional ``encoding``,
    mariadb-ed25519, plain)."""
    if scheme not in _NEEDS:
        raise ValueError(f"{scheme} is not a tagged scheme (known: {', '.join(sorted(_NEEDS))})")
    missing = [k for k in _NEEDS[scheme] if k not in context]
    if missing:
        raise ValueError(f"{scheme} needs {', '.join(missing)}")
    parts = [f"scheme={quote(scheme, safe='')}"] + [f"{k}={quote(v, safe='')}" for k, v in sorted(context.items())]
    return "{hg:" + ",".join(parts) + "}" + value


def split_tag(hashed: str) -> tuple[dict[str, str], str]:
    """The context and the stored value of a :func:`tagged` string ({} and the string itself otherwise)."""
    m = _TAG.match(hashed)
    if m is None:
        return {}, hashed
    context: dict[str, str] = {}
    for part in m.group(1).split(","):
        key, sep, value = part.partition("=")
        if not sep or not key:
            return {}, hashed
        context[key] = unquote(value, errors="replace")
    return context, m.group(2)


@dataclass(frozen=True)
class _Parsed:
    scheme: str
    value: str
    context: dict[str, str]


def _eq(a: str, b: str) -> bool:
    """Constant-time equality of two strings of any characters (compare_digest takes ASCII str only)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _tomcat_ok(value: str, context: dict[str, str], pbkdf2: bool) -> bool:
    algorithm = context.get("algorithm", "").lower()
    if pbkdf2:
        m = _TOMCAT_SALTED.match(value)
        return algorithm in algo.PBKDF2 and m is not None and 0 < int(m.group(2)) <= MAX_PBKDF2_ITERATIONS
    if algorithm not in algo.DIGESTS:
        return False
    if _TOMCAT_BRACED.match(value):
        return True
    size = hashlib.new(algo.DIGESTS[algorithm]).digest_size * 2  # a digest has its algorithm's length
    if _HEX.match(value):
        return len(value) == size
    m = _TOMCAT_SALTED.match(value)
    return (m is not None and 0 < int(m.group(2)) <= MAX_DIGEST_ITERATIONS and len(m.group(1)) % 2 == 0
            and len(m.group(3)) == size)


def _tag_ok(scheme: str, value: str, context: dict[str, str]) -> bool:
    """Whether a tagged value is one its scheme can check."""
    if scheme == "pg-md5":
        return _PG_MD5.match(value) is not None and "user" in context
    if scheme in ("tomcat-digest", "tomcat-pbkdf2"):
        return _tomcat_ok(value, context, pbkdf2=scheme == "tomcat-pbkdf2")
    if scheme == "mariadb-ed25519":
        return _ED25519.match(value) is not None
    return scheme == "plain"


class ServiceVerifier(Verifier):
    """Every service scheme, and crypt(3)'s through the shared :class:`CryptVerifier`."""

    def __init__(self, crypt: CryptVerifier | None = None) -> None:
        self._crypt = crypt
        self._status: dict[str, str] | None = None

    @property
    def crypt(self) -> CryptVerifier:
        """The crypt(3) verifier, loaded when first needed (libxcrypt may be missing on odd systems)."""
        if self._crypt is None:
            self._crypt = crypt_verifier()
        return self._crypt

    def _parse(self, hashed: str) -> _Parsed | None:
        context, value = split_tag(hashed)
        if context:
            scheme = context.get("scheme", "")
            return _Parsed(scheme, value, context) if _tag_ok(scheme, value, context) else None
        for scheme, pattern in (("apr1", _APR1), ("htpasswd-sha1", _SHA1), ("htpasswd-ssha", _SSHA),
                                ("wordpress-bcrypt", _WP),
                                ("mysql-native", _NATIVE)):
            if pattern.match(value):
                return _Parsed(scheme, value, {})
        if _PHPASS.match(value) and 7 <= algo.ITOA64.find(value[3]) <= MAX_PHPASS_LOG2:
            return _Parsed("phpass", value, {})
        for pattern in (_SHA2, _SHA2_HASHCAT):
            m = pattern.match(value)
            if m is not None and 0 < int(m.group(1), 16) * 1000 <= MAX_SHA256_CRYPT_ROUNDS:
                return _Parsed("mysql-caching-sha2", value, {})
        m = _SCRAM.match(value)
        if m is not None and 0 < int(m.group(1)) <= MAX_PBKDF2_ITERATIONS:
            try:
                _b64decode(m.group(2))
            except (binascii.Error, ValueError):
                return None
            return _Parsed("pg-scram-sha-256", value, {})
        return None

    def scheme(self, hashed: str) -> str | None:
        """The scheme of ``hashed``: one of :data:`SCHEMES`, a crypt scheme, or None (not checkable)."""
        parsed = self._parse(hashed)
        if parsed is not None:
            return parsed.scheme
        if hashed.startswith("{hg:") or not hashed.isascii():
            return None
        return self.crypt.scheme(hashed)

    def verify(self, candidate: bytes, hashed: str) -> bool:
        """Whether ``candidate`` is the password behind ``hashed``; False for anything not understood."""
        parsed = self._parse(hashed)
        if parsed is None:
            # crypt(3) hashes are ASCII; anything else is no crypt hash (and would trip compare_digest)
            return not hashed.startswith("{hg:") and hashed.isascii() and self.crypt.verify(candidate, hashed)
        try:
            return self._verify(candidate, parsed)
        except (ValueError, TypeError, binascii.Error, OverflowError, UnicodeError):
            return False

    def _verify(self, pw: bytes, p: _Parsed) -> bool:
        v = p.value
        if p.scheme == "apr1":
            salt = v[6:].split("$", 1)[0].encode("latin-1", "replace")
            return _eq(algo.md5_crypt(pw, salt), v)
        if p.scheme == "htpasswd-sha1":
            return hmac.compare_digest(hashlib.sha1(pw).digest(), _b64decode(v[5:]))
        if p.scheme == "htpasswd-ssha":  # nginx: base64 of SHA-1(password + salt) followed by the salt
            raw = _b64decode(v[6:])
            return len(raw) > 20 and hmac.compare_digest(hashlib.sha1(pw + raw[20:]).digest(), raw[:20])
        if p.scheme == "phpass":
            got = algo.phpass(pw, v)
            return got is not None and _eq(got, v)
        if p.scheme == "wordpress-bcrypt":
            return self.crypt.verify(algo.wordpress_prehash(pw), v[3:])
        if p.scheme == "mysql-native":
            return _eq(algo.mysql_native(pw), v.upper())
        if p.scheme == "mysql-caching-sha2":
            return self._mysql_sha2(pw, v)
        if p.scheme == "pg-scram-sha-256":
            m = _SCRAM.match(v)
            assert m is not None
            stored, server = algo.scram_keys(pw, _b64decode(m.group(2)), int(m.group(1)))
            return hmac.compare_digest(stored, _b64decode(m.group(3))) and hmac.compare_digest(
                server, _b64decode(m.group(4)))
        if p.scheme == "pg-md5":
            return _eq(algo.postgres_md5(pw, p.context["user"].encode("utf-8", "surrogateescape")), v)
        if p.scheme == "mariadb-ed25519":
            return _eq(algo.mariadb_ed25519(pw), v)
        if p.scheme == "tomcat-digest":
            return self._tomcat_digest(pw, v, p.context)
        if p.scheme == "tomcat-pbkdf2":
            return self._tomcat_pbkdf2(pw, v, p.context)
        if p.scheme == "plain":
            return hmac.compare_digest(pw, v.encode("utf-8", "surrogateescape"))
        return False

    @staticmethod
    def _mysql_sha2(pw: bytes, v: str) -> bool:
        m = _SHA2.match(v)
        if m is not None:
            salt = m.group(2).encode("latin-1", "surrogateescape")
            digest = m.group(3)
        else:
            m = _SHA2_HASHCAT.match(v)
            assert m is not None
            salt = bytes.fromhex(m.group(2))
            digest = bytes.fromhex(m.group(3)).decode("ascii")
        rounds = int(m.group(1), 16) * 1000
        return _eq(algo.sha256_crypt_digest(pw, salt, rounds), digest)

    @staticmethod
    def _encode(pw: bytes, context: dict[str, str]) -> bytes:
        """The candidate in the handler's ``encoding`` (Tomcat's default UTF-8; candidates come as UTF-8)."""
        encoding = context.get("encoding", "utf-8")
        return pw if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else pw.decode("utf-8").encode(encoding)

    def _tomcat_digest(self, pw: bytes, v: str, context: dict[str, str]) -> bool:
        algorithm = algo.DIGESTS[context["algorithm"].lower()]
        pw = self._encode(pw, context)
        braced = _TOMCAT_BRACED.match(v)
        if braced is not None:
            # as Tomcat 10 does: the prefix only says "base64"; the digest is the handler's algorithm, and
            # {SSHA} is that digest of password + salt with the first 20 bytes the digest (so SHA-1 only)
            kind, raw = braced.group(1).upper(), _b64decode(braced.group(2))
            if kind == "SSHA":
                return hmac.compare_digest(hashlib.new(algorithm, pw + raw[20:]).digest(), raw[:20])
            return hmac.compare_digest(hashlib.new(algorithm, pw).digest(), raw)
        m = _TOMCAT_SALTED.match(v)
        if m is None:  # a bare hex digest: no salt, one iteration
            return hmac.compare_digest(algo.tomcat_digest(pw, algorithm, b"", 1), bytes.fromhex(v))
        salt, iterations, want = bytes.fromhex(m.group(1)), int(m.group(2)), bytes.fromhex(m.group(3))
        return hmac.compare_digest(algo.tomcat_digest(pw, algorithm, salt, iterations), want)

    def _tomcat_pbkdf2(self, pw: bytes, v: str, context: dict[str, str]) -> bool:
        m = _TOMCAT_SALTED.match(v)
        assert m is not None
        digest = algo.PBKDF2[context["algorithm"].lower()]
        salt, iterations, want = bytes.fromhex(m.group(1)), int(m.group(2)), bytes.fromhex(m.group(3))
        got = hashlib.pbkdf2_hmac(digest, self._encode(pw, context), salt, iterations, len(want))
        return hmac.compare_digest(got, want)

    def working_schemes(self) -> dict[str, str]:
        """Every scheme's known answer (crypt's included): "ok", or why it cannot be trusted here."""
        if self._status is None:
            status: dict[str, str] = {}
            for name, case in known_answers().items():
                hashed, password = case["hash"], case["password"].encode("utf-8")
                if self.scheme(hashed) != name:
                    status[name] = f"its known answer is not recognised as {name}"
                elif not self.verify(password, hashed):
                    status[name] = "its known answer does not verify here"
                elif self.verify(password + b"-", hashed):
                    status[name] = "a wrong password verifies against its known answer"
                else:
                    status[name] = "ok"
            try:
                crypt = self.crypt.working_schemes()
            except Exception as exc:  # noqa: BLE001 - libxcrypt missing: its schemes say why, ours still work
                crypt = dict.fromkeys(("bcrypt", "des", "md5", "sha256", "sha512"), f"crypt(3) unavailable: {exc}")
            for name, state in crypt.items():
                status.setdefault(name, state)
            if status.get("bcrypt", "ok") != "ok" and status.get("wordpress-bcrypt") == "ok":
                status["wordpress-bcrypt"] = "bcrypt is not available here"
            self._status = status
        return self._status


def known_answers() -> dict[str, dict[str, Any]]:
    """Scheme -> {password, hash, made_with}: the service schemes' known answers, made by the real tools."""
    schemes: dict[str, dict[str, Any]] = load_toml("weak_passwords/service-known-answers.toml")["schemes"]
    return schemes


@cache
def service_verifier() -> ServiceVerifier:
    """One shared verifier per process."""
    return ServiceVerifier()
