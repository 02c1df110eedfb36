"""dpkg's version order (Debian, Ubuntu): ``[epoch:]upstream[-revision]``.

The rules are deb-version(7)'s and dpkg's ``verrevcmp``: the epoch is compared as a number; upstream
and revision are each split into alternating runs of non-digits and digits; non-digit runs are compared
character by character where ``~`` sorts before everything (even the end of the run), letters before
non-letters and the end of a run before any letter; digit runs are compared as numbers (empty = 0).
A missing revision equals ``0`` (dpkg: ``1.0`` = ``1.0-0``).

Validity follows ``dpkg --compare-versions``: what dpkg refuses (empty parts, a bad epoch) and what it
only warns about (a version not starting with a digit, a character outside the allowed set) are both
refused here; no version in the Debian or Ubuntu archives has either.
"""

from __future__ import annotations

from hostguard.vulns.orders import InvalidVersion, checked, padded_key

_EPOCH_MAX = 2**31 - 1  # dpkg: "epoch in version is too big" above INT_MAX
_UPSTREAM_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.+~-:")
_REVISION_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.+~")

Key = tuple[int, tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]


def _order(c: str) -> int:
    """dpkg's weight of one non-digit character: ``~`` lowest, then letters, then everything else."""
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _part_key(part: str) -> tuple[tuple[int, ...], ...]:
    """verrevcmp's order of one upstream version or revision, as a tuple key.

    The part is flattened into ints: the weights of a non-digit run, a 0 ending it (the weight of "the
    end", which a digit also has), then the digit run's value; dpkg compares two parts as such sequences
    padded with zeros, which :func:`padded_key` turns into a plain tuple comparison.
    """
    items: list[int] = []
    i, n = 0, len(part)
    while i < n:
        while i < n and not part[i].isdigit():
            items.append(_order(part[i]))
            i += 1
        items.append(0)
        j = i
        while j < n and part[j].isdigit():
            j += 1
        items.append(int(part[i:j]) if j > i else 0)
        i = j
    return padded_key(items)


def parse(version: str) -> tuple[int, str, str]:
    """``(epoch, upstream, revision)`` as dpkg splits them, or InvalidVersion for what dpkg flags."""
    version = checked(version)
    epoch = 0
    if ":" in version:
        text, version = version.split(":", 1)
        digits = text[1:] if text[:1] in ("+", "-") else text  # read as strtol reads it, sign and all
        if not digits:
            raise InvalidVersion("epoch in version is empty")
        if not digits.isdigit():
            raise InvalidVersion("epoch in version is not a number")
        epoch = int(text)
        if epoch < 0:
            raise InvalidVersion("epoch in version is negative")
        if epoch > _EPOCH_MAX:
            raise InvalidVersion("epoch in version is too big")
        if not version:
            raise InvalidVersion("nothing after colon in version number")
    upstream, sep, revision = version.rpartition("-")
    if not sep:
        upstream, revision = version, ""
    elif not revision:
        raise InvalidVersion("revision number is empty")
    if not upstream:
        raise InvalidVersion("version number is empty")
    if not upstream[0].isdigit():
        raise InvalidVersion("version number does not start with digit")
    if not set(upstream) <= _UPSTREAM_CHARS:
        raise InvalidVersion("invalid character in version number")
    if not set(revision) <= _REVISION_CHARS:
        raise InvalidVersion("invalid character in revision number")
    return epoch, upstream, revision


def key(version: str) -> Key:
    """A tuple that sorts as dpkg sorts versions."""
    epoch, upstream, revision = parse(version)
    return epoch, _part_key(upstream), _part_key(revision)
