"""apk's version order (Alpine, Wolfi, Chainguard): ``digit{.digit}...{letter}{_suf{#}}...{~hash}{-r#}``.

The rules are apk-tools' (src/version.c of apk-tools 2.14 and 3, the releases Alpine 3.19+ ship):

* a version is read as tokens: the first number, then ``.number`` parts, at most one lower-case letter,
  any number of ``_suffix[number]`` parts, an optional ``~hexhash`` and an optional ``-rN`` revision,
  in that order; anything else makes the version invalid;
* suffixes sort ``_alpha < _beta < _pre < _rc < (none) < _cvs < _svn < _git < _hg < _p``;
* two tokens of the same kind compare by value: numbers as numbers, except that a ``.number`` part is
  compared as a string when either side has a leading zero (Gentoo's rule: ``1.01 < 1.1``, ``1.05 <
  1.1``); letters and hashes as strings;
* at the first position where the kinds differ, a pre-release suffix (``_alpha`` … ``_rc``) is lower;
  otherwise the token that comes later in the grammar is lower (the end of the string being the latest):
  ``1.0_rc1 < 1.0 < 1.0-r1 < 1.0_p1 < 1.0a < 1.0.1``.

A key element is ``(rank, value)``: rank is minus the token kind, pre-release suffixes ranking below all,
so the first differing element decides as apk does.
"""

from __future__ import annotations

import re

from hostguard.vulns.orders import InvalidVersion, checked

_INITIAL, _DIGIT, _LETTER, _SUFFIX, _SUFFIX_NO, _HASH, _REVISION, _END = range(8)
_PRE_RELEASE_RANK = -100
_SUFFIXES = {"alpha": 0, "beta": 1, "pre": 2, "rc": 3, "cvs": 5, "svn": 6, "git": 7, "hg": 8, "p": 9}
_NONE = 4
_TOKEN = re.compile(r"\.([0-9]+)|([a-z])|_([a-z]*)|([0-9]+)|~([0-9a-fA-F]+)|-r([0-9]+)")
_FIRST = re.compile(r"[0-9]+")

Element = tuple[int, object]


def key(version: str) -> tuple[Element, ...]:
    """A tuple that sorts as ``apk version -t``."""
    text = checked(version)
    first = _FIRST.match(text)
    if first is None:
        raise InvalidVersion("an apk version starts with a number")
    out: list[tuple[int, object]] = [(-_INITIAL, int(first.group()))]
    kind = _INITIAL
    pos = first.end()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise InvalidVersion(f"not an apk version: {text!r}")
        pos = m.end()
        dot, letter, suffix, digits, commit, revision = m.groups()
        if dot is not None:
            if kind > _DIGIT:
                raise InvalidVersion(f"a .number after a letter or suffix: {text!r}")
            kind = _DIGIT
            out.append((-_DIGIT, (0, dot) if dot[0] == "0" else (1, int(dot))))
        elif letter is not None:
            if kind > _DIGIT:
                raise InvalidVersion(f"a letter after a letter or suffix: {text!r}")
            kind = _LETTER
            out.append((-_LETTER, letter))
        elif suffix is not None:
            if kind > _SUFFIX_NO or suffix not in _SUFFIXES:
                raise InvalidVersion(f"not an apk suffix: {text!r}")
            kind = _SUFFIX
            value = _SUFFIXES[suffix]
            out.append((_PRE_RELEASE_RANK if value < _NONE else -_SUFFIX, value))
        elif digits is not None:
            if kind != _SUFFIX:  # digits right after a letter (1.2a3) are no apk token
                raise InvalidVersion(f"a number after a letter: {text!r}")
            kind = _SUFFIX_NO
            out.append((-_SUFFIX_NO, int(digits)))
        elif commit is not None:
            if kind >= _HASH:
                raise InvalidVersion(f"a ~hash after the revision: {text!r}")
            kind = _HASH
            out.append((-_HASH, commit))
        else:
            if kind >= _REVISION:
                raise InvalidVersion(f"two revisions: {text!r}")
            kind = _REVISION
            out.append((-_REVISION, int(revision)))
    out.append((-_END, 0))
    return tuple(out)
