"""SemVer 2.0.0 precedence (npm, crates.io, Go modules).

semver.org §11: major, minor and patch compare as numbers; a version with a pre-release is lower than
the same version without; pre-release identifiers compare left to right, numeric ones as numbers,
alphanumeric ones in ASCII order, numeric below alphanumeric, and a shorter list below a longer one it
begins; build metadata (``+…``) takes no part (§10). Numbers and numeric identifiers have no leading
zeros (§2, §9).

Ecosystem spellings: npm (node-semver, strict) also reads a leading ``v``; Go module versions carry a
``v`` (OSV writes them without it, both are read) and Go's ``golang.org/x/mod/semver`` reads ``v1`` and
``v1.2`` as ``v1.0.0`` and ``v1.2.0``; Go pseudo-versions (``v0.0.0-20220314234659-1baeb1ce4c0b``) are
pre-releases and need nothing more; ``+incompatible`` is build metadata.
"""

from __future__ import annotations

import re

from hostguard.vulns.orders import InvalidVersion, checked

_NUM = r"0|[1-9][0-9]*"
_IDENT = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?(?:\+(?P<build>{_IDENT}(?:\.{_IDENT})*))?"
)
_GO_SHORT = re.compile(rf"(?P<major>{_NUM})(?:\.(?P<minor>{_NUM}))?")

Identifier = tuple[int, int] | tuple[int, str]
Key = tuple[int, int, int, tuple[int, tuple[Identifier, ...]]]

_RELEASE: tuple[int, tuple[Identifier, ...]] = (1, ())


def _pre_key(pre: str) -> tuple[int, tuple[Identifier, ...]]:
    idents: list[Identifier] = []
    for ident in pre.split("."):
        if ident.isdigit():
            if len(ident) > 1 and ident[0] == "0":
                raise InvalidVersion(f"numeric pre-release identifier with a leading zero: {ident!r}")
            idents.append((0, int(ident)))
        else:
            idents.append((1, ident))
    return 0, tuple(idents)


def key(version: str, *, v_prefix: bool = False, go: bool = False) -> Key:
    """A tuple with SemVer precedence; ``v_prefix`` reads an optional leading ``v``, ``go`` also Go's
    ``v1``/``v1.2`` shorthands."""
    text = checked(version)
    if (v_prefix or go) and text.startswith("v"):
        text = text[1:]
    m = _SEMVER.fullmatch(text)
    if m is None:
        short = _GO_SHORT.fullmatch(text) if go and version.startswith("v") else None
        if short is None:
            raise InvalidVersion(f"not a SemVer version: {version!r}")
        return int(short["major"]), int(short["minor"] or 0), 0, _RELEASE
    pre = m["pre"]
    return int(m["major"]), int(m["minor"]), int(m["patch"]), _RELEASE if pre is None else _pre_key(pre)
