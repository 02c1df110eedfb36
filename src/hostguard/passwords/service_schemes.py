"""The hash algorithms of service password stores, written from their public descriptions.

Each function recomputes what a service stores for a password, so a verifier can compare it with what it
found. libxcrypt (:class:`~hostguard.passwords.verifiers.CryptVerifier`) already covers crypt(3)'s schemes
(DES, ``$1$``, ``$2y$``, ``$5$``, ``$6$``); what it lacks is here:

* **MD5-crypt with another magic** (Apache's ``$apr1$``): Poul-Henning Kamp's MD5-crypt, the magic string
  being part of the hashed input, so ``$apr1$`` and ``$1$`` of the same password and salt differ.
* **SHA-256-crypt with a salt longer than 16** (MySQL 8's ``caching_sha2_password``, ``$A$005$``): Ulrich
  Drepper's SHA-crypt specification, whose salt libxcrypt truncates to 16 bytes while MySQL feeds all 20.
* **phpass portable hashes** (``$P$``/``$H$``, WordPress < 6.8 and phpBB): 2**n rounds of MD5 over the
  previous digest and the password, the first over salt and password.
* **MySQL's native password** (``*`` + upper-case hex of SHA-1(SHA-1(pw))), **PostgreSQL's md5**
  (``md5`` + hex MD5(pw + user name)), **SCRAM-SHA-256** (RFC 5802/7677 as PostgreSQL stores it).
* **Tomcat's credential handlers**: MessageDigestCredentialHandler (digest of salt + password, then
  iterations - 1 digests of the digest) and SecretKeyCredentialHandler (PBKDF2).
* **MariaDB's ed25519 plugin**: the Ed25519 public key whose secret scalar comes from SHA-512 of the
  password itself (the password is the "seed", of any length), base64 without padding.

Everything works on bytes and never raises on odd input: the caller has parsed the stored value already.
``hashlib`` releases the GIL for large inputs only, but PBKDF2 (SCRAM, Tomcat) runs wholly outside it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import stringprep
import unicodedata

ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# -- crypt-style base64 ---------------------------------------------------------------------------------


def _b64_24(b2: int, b1: int, b0: int, chars: int) -> str:
    """``chars`` characters of the 24-bit group b2:b1:b0, least significant six bits first (crypt's order)."""
    value = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(chars):
        out.append(ITOA64[value & 0x3F])
        value >>= 6
    return "".join(out)


def encode64_le(data: bytes) -> str:
    """phpass's encoding: each 3-byte group read little-endian, six bits at a time (a partial last group
    gives one character more than its bytes)."""
    out = []
    for i in range(0, len(data), 3):
        chunk = data[i:i + 3]
        value = int.from_bytes(chunk, "little")
        for _ in range(len(chunk) + 1):
            out.append(ITOA64[value & 0x3F])
            value >>= 6
    return "".join(out)


# -- MD5-crypt ($1$, $apr1$) ----------------------------------------------------------------------------


def md5_crypt(password: bytes, salt: bytes, magic: bytes = b"$apr1$") -> str:
    """MD5-crypt of ``password`` with ``salt`` (at most 8 bytes used) and ``magic``: ``magic salt $ hash``."""
    salt = salt[:8]
    alt = hashlib.md5(password + salt + password).digest()
    ctx = hashlib.md5(password + magic + salt)
    remaining = len(password)
    while remaining > 0:
        ctx.update(alt[:min(16, remaining)])
        remaining -= 16
    bits = len(password)
    while bits:
        ctx.update(b"\0" if bits & 1 else password[:1])
        bits >>= 1
    final = ctx.digest()
    for i in range(1000):
        step = hashlib.md5(password if i & 1 else final)
        if i % 3:
            step.update(salt)
        if i % 7:
            step.update(password)
        step.update(final if i & 1 else password)
        final = step.digest()
    f = final
    encoded = (_b64_24(f[0], f[6], f[12], 4) + _b64_24(f[1], f[7], f[13], 4) + _b64_24(f[2], f[8], f[14], 4)
               + _b64_24(f[3], f[9], f[15], 4) + _b64_24(f[4], f[10], f[5], 4) + _b64_24(0, 0, f[11], 2))
    return magic.decode("latin-1") + salt.decode("latin-1") + "$" + encoded


# -- SHA-256-crypt with any salt length (MySQL caching_sha2_password) -----------------------------------

_SHA256_ORDER = ((0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5), (6, 16, 26),
                 (27, 7, 17), (18, 28, 8), (9, 19, 29))


def _repeat(digest: bytes, length: int) -> bytes:
    return (digest * (length // len(digest) + 1))[:length]


def sha256_crypt_digest(password: bytes, salt: bytes, rounds: int) -> str:
    """The 43-character hash part of SHA-256-crypt, with the whole ``salt`` (no 16-byte cut) and exactly
    ``rounds`` rounds (no clamping): as MySQL computes ``caching_sha2_password``."""
    h = hashlib.sha256
    b = h(password + salt + password).digest()
    a = h(password + salt + _repeat(b, len(password)))
    n = len(password)
    while n:
        a.update(b if n & 1 else password)
        n >>= 1
    c = a.digest()
    p = _repeat(h(password * len(password)).digest(), len(password))
    s = _repeat(h(salt * (16 + c[0])).digest(), len(salt))
    for i in range(rounds):
        step = h(p if i & 1 else c)
        if i % 3:
            step.update(s)
        if i % 7:
            step.update(p)
        step.update(c if i & 1 else p)
        c = step.digest()
    return "".join(_b64_24(c[x], c[y], c[z], 4) for x, y, z in _SHA256_ORDER) + _b64_24(0, c[31], c[30], 3)


def sha256_crypt(password: bytes, salt: bytes, rounds: int = 5000) -> str:
    """glibc/libxcrypt's ``$5$`` form (salt cut to 16, ``rounds=`` only when not the default): used by the
    tests to prove :func:`sha256_crypt_digest` against the system's library."""
    salt = salt[:16]
    head = "$5$" + (f"rounds={rounds}$" if rounds != 5000 else "")
    return head + salt.decode("latin-1") + "$" + sha256_crypt_digest(password, salt, rounds)


# -- phpass ---------------------------------------------------------------------------------------------


def phpass(password: bytes, setting: str) -> str | None:
    """The phpass portable hash of ``password`` for ``setting`` (``$P$`` or ``$H$``, the cost character, the
    8-character salt); None when the setting is not a valid one (phpass then answers "*0")."""
    if len(setting) < 12 or setting[:3] not in ("$P$", "$H$"):
        return None
    log2 = ITOA64.find(setting[3])
    if log2 < 7 or log2 > 30:
        return None
    salt = setting[4:12].encode("latin-1", "replace")
    digest = hashlib.md5(salt + password).digest()
    for _ in range(1 << log2):
        digest = hashlib.md5(digest + password).digest()
    return setting[:12] + encode64_le(digest)


def wordpress_prehash(password: bytes) -> bytes:
    """What WordPress >= 6.8 hands bcrypt: base64 of HMAC-SHA384 keyed with ``wp-sha384`` (keeps the entropy
    of passwords past bcrypt's 72 bytes)."""
    return base64.b64encode(hmac.new(b"wp-sha384", password, hashlib.sha384).digest())


# -- databases ------------------------------------------------------------------------------------------


def mysql_native(password: bytes) -> str:
    """``mysql_native_password``: ``*`` and the upper-case hex of SHA-1(SHA-1(password))."""
    return "*" + hashlib.sha1(hashlib.sha1(password).digest()).hexdigest().upper()


def postgres_md5(password: bytes, user: bytes) -> str:
    """PostgreSQL's ``md5`` verifier: the user name is the salt."""
    return "md5" + hashlib.md5(password + user).hexdigest()


def saslprep(password: bytes) -> bytes:
    """The password as PostgreSQL hashes it for SCRAM: SASLprep (RFC 4013) of valid UTF-8, else the bytes
    themselves (PostgreSQL falls back to the raw password where SASLprep fails)."""
    try:
        text = password.decode("utf-8")
    except UnicodeDecodeError:
        return password
    if text.isascii() and all(0x20 <= ord(ch) < 0x7F for ch in text):
        return password
    mapped = "".join(" " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch))
    norm = unicodedata.normalize("NFKC", mapped)
    if not norm:
        return password
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7,
                  stringprep.in_table_c8, stringprep.in_table_c9, stringprep.in_table_a1)
    if any(test(ch) for ch in norm for test in prohibited):
        return password
    rtl = [stringprep.in_table_d1(ch) for ch in norm]
    if any(rtl) and (any(stringprep.in_table_d2(ch) for ch in norm) or not (rtl[0] and rtl[-1])):
        return password
    return norm.encode("utf-8")


def scram_keys(password: bytes, salt: bytes, iterations: int, digest: str = "sha256") -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of RFC 5802: SaltedPassword = PBKDF2-HMAC(password, salt, i)."""
    salted = hashlib.pbkdf2_hmac(digest, saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored = hashlib.new(digest, client_key).digest()
    server = hmac.new(salted, b"Server Key", digest).digest()
    return stored, server


# -- Tomcat ---------------------------------------------------------------------------------------------

# Java's MessageDigest names (as written in server.xml, any case) -> hashlib's
DIGESTS = {"md5": "md5", "sha": "sha1", "sha-1": "sha1", "sha1": "sha1", "sha-224": "sha224",
           "sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512", "sha-512/224": "sha512_224",
           "sha-512/256": "sha512_256", "sha3-256": "sha3_256", "sha3-384": "sha3_384", "sha3-512": "sha3_512"}
# PBKDF2WithHmacSHA<n> (SecretKeyCredentialHandler's algorithm) -> hashlib's digest
PBKDF2 = {"pbkdf2withhmacsha1": "sha1", "pbkdf2withhmacsha224": "sha224", "pbkdf2withhmacsha256": "sha256",
          "pbkdf2withhmacsha384": "sha384", "pbkdf2withhmacsha512": "sha512"}


def tomcat_digest(password: bytes, algorithm: str, salt: bytes, iterations: int) -> bytes:
    """MessageDigestCredentialHandler: digest(salt + password), then ``iterations - 1`` digests of the
    previous digest. ``algorithm`` is a hashlib name."""
    out = hashlib.new(algorithm, salt + password).digest()
    for _ in range(iterations - 1):
        out = hashlib.new(algorithm, out).digest()
    return out


# -- MariaDB ed25519 ------------------------------------------------------------------------------------

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_BY = 4 * pow(5, _P - 2, _P) % _P
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_Point = tuple[int, int, int, int]


def _add(p: _Point, q: _Point) -> _Point:
    """Extended-coordinate addition on edwards25519 (the a = -1 twisted Edwards formulas)."""
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _mul(scalar: int, point: _Point) -> _Point:
    result: _Point = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def mariadb_ed25519(password: bytes) -> str:
    """MariaDB's ``ed25519`` authentication string: base64 (no padding) of the public key A = a·B, where a is
    the clamped first half of SHA-512(password)."""
    h = hashlib.sha512(password).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    x, y, z, _ = _mul(a, (_BX, _BY, 1, _BX * _BY % _P))
    zinv = pow(z, _P - 2, _P)
    x, y = x * zinv % _P, y * zinv % _P
    encoded = (y | ((x & 1) << 255)).to_bytes(32, "little")
    return base64.b64encode(encoded).decode("ascii").rstrip("=")
