"""rpm's version order (Red Hat, AlmaLinux, Rocky Linux, SUSE, openSUSE, Mageia, openEuler, …).

A version is ``[epoch:]version[-release]``, compared as rpm's ``labelCompare`` does: the epoch (missing
= 0), then version, then release with ``rpmvercmp``; a missing release sorts below any release (the
python binding's ``compare_values``; ``rpmverCmp`` in librpm treats it as a wildcard, which is no order).

``rpmvercmp`` (rpmio/rpmvercmp.c) walks both strings: characters other than ASCII letters, digits, ``~``
and ``^`` only separate segments; ``~`` sorts before everything, even the end of the string; ``^`` sorts
after the end but before any further segment; a numeric segment is newer than an alphabetic one; numeric
segments compare as numbers (leading zeros ignored), alphabetic ones byte by byte. So at each position the
order is: ``~`` < end < ``^`` < letters < digits, which a tuple per segment expresses directly.
"""

from __future__ import annotations

from hostguard.vulns.orders import InvalidVersion, checked

_TILDE = (0,)
_END = (1,)
_CARET = (2,)

Segment = tuple[int] | tuple[int, str] | tuple[int, int]
Key = tuple[tuple[Segment, ...], tuple[Segment, ...], tuple[tuple[Segment, ...], ...]]


def _alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _digit(c: str) -> bool:
    return "0" <= c <= "9"


def vercmp_key(text: str) -> tuple[Segment, ...]:
    """rpmvercmp's order of one string as a tuple of segments ending with the end marker."""
    out: list[Segment] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "~":
            out.append(_TILDE)
            i += 1
        elif c == "^":
            out.append(_CARET)
            i += 1
        elif _digit(c):
            j = i
            while j < n and _digit(text[j]):
                j += 1
            out.append((4, int(text[i:j])))
            i = j
        elif _alpha(c):
            j = i
            while j < n and _alpha(text[j]):
                j += 1
            out.append((3, text[i:j]))
            i = j
        else:
            i += 1
    out.append(_END)
    return tuple(out)


def parse(version: str) -> tuple[str, str, str | None]:
    """``(epoch, version, release)``: the epoch before the first ``:``, the release after the last ``-``."""
    version = checked(version)
    epoch = "0"
    if ":" in version:
        epoch, version = version.split(":", 1)
        if not epoch.isdigit():
            raise InvalidVersion("an rpm epoch is a number")
    release: str | None = None
    if "-" in version:
        version, release = version.rsplit("-", 1)
    if not version:
        raise InvalidVersion("an rpm version is not empty")
    return epoch, version, release


def key(version: str) -> Key:
    """A tuple that sorts as rpm's labelCompare."""
    epoch, ver, release = parse(version)
    # an absent release sorts below every release (even one that rpmvercmp puts below "": "~1")
    rel: tuple[tuple[Segment, ...], ...] = () if release is None else (vercmp_key(release),)
    return vercmp_key(epoch), vercmp_key(ver), rel
