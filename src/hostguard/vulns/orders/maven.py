"""Maven's version order: ``org.apache.maven.artifact.versioning.ComparableVersion`` (Maven 3.8.7+).

The rules (maven.apache.org/pom.html "Version Order Specification", and ComparableVersion's parser):

* the version is lower-cased and cut into items at ``.`` and ``-`` and at every change between digits
  and non-digits; an empty item is ``0``; ``-`` (and a change between digits and letters, and since
  MNG-7644 a qualifier after a ``.``) opens a nested list, so ``1-1`` is ``[1, [1]]``;
* a number compares as a number; a qualifier as: ``alpha < beta < milestone < rc = cr < snapshot <
  "" = ga = final = release < sp``, then any other qualifier, alphabetically; ``a1``/``b1``/``m1`` (a
  letter right before a digit) are ``alpha-1``/``beta-1``/``milestone-1``;
* numbers are newer than lists, lists newer than qualifiers;
* trailing "null" items (``0``, ``""``, an empty list) are dropped from every list (``1.0.0 = 1``,
  ``1-ga = 1``), and a shorter list is compared as if padded with nulls: ``1 < 1.1``, ``1-alpha < 1``,
  ``1-sp > 1``.

Items are kept as a small tree; :class:`MavenKey` compares trees as ComparableVersion does. Maven's own
order is not transitive on every string (``1-0.alpha < 1 < 1-a < 1-0.alpha`` in Maven 3.8.7 itself): the
comparison of each pair is Maven's, but sorting a set holding such a cycle has no right answer. On
versions as projects write them (numbers, then qualifiers) it is a total order (the tests' laws).
"""

from __future__ import annotations

from functools import total_ordering

from hostguard.vulns.orders import checked

_QUALIFIERS = ("alpha", "beta", "milestone", "rc", "snapshot", "", "sp")
_ALIASES = {"ga": "", "final": "", "release": "", "cr": "rc"}
_SHORT = {"a": "alpha", "b": "beta", "m": "milestone"}
_RELEASE_INDEX = "5"


class _Str:
    """A qualifier, with the string ComparableVersion sorts it by (known ones by rank, others after)."""

    __slots__ = ("value", "rank")

    def __init__(self, text: str, followed_by_digit: bool) -> None:
        if followed_by_digit and len(text) == 1:
            text = _SHORT.get(text, text)
        self.value = _ALIASES.get(text, text)
        self.rank = str(_QUALIFIERS.index(self.value)) if self.value in _QUALIFIERS else f"7-{self.value}"

    def __repr__(self) -> str:
        return self.value


def _is_null(item: object) -> bool:
    if isinstance(item, int):
        return item == 0
    if isinstance(item, _Str):
        return item.rank == _RELEASE_INDEX
    assert isinstance(item, list)
    return not item


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _strcmp(a: str, b: str) -> int:
    return (a > b) - (a < b)


def _cmp(a: object, b: object) -> int:
    """ComparableVersion's ``Item.compareTo``: ``a`` against ``b``, where ``b`` may be None (padding)."""
    if isinstance(a, int):
        if b is None:
            return 0 if a == 0 else 1
        if isinstance(b, int):
            return _sign(a - b)
        return 1  # a number is newer than a qualifier or a list
    if isinstance(a, _Str):
        if b is None:
            return _strcmp(a.rank, _RELEASE_INDEX)
        if isinstance(b, _Str):
            return _strcmp(a.rank, b.rank)
        return -1  # a qualifier is older than a number or a list
    assert isinstance(a, list)
    if b is None:
        for item in a:  # MNG-6964: the whole list against nothing, not only its first item
            r = _cmp(item, None)
            if r:
                return r
        return 0
    if isinstance(b, int):
        return -1
    if isinstance(b, _Str):
        return 1
    assert isinstance(b, list)
    for i in range(max(len(a), len(b))):
        left = a[i] if i < len(a) else None
        right = b[i] if i < len(b) else None
        r = (0 if right is None else -_cmp(right, None)) if left is None else _cmp(left, right)
        if r:
            return r
    return 0


def _normalize(items: list[object]) -> None:
    """Drop trailing nulls, looking past non-null lists (ComparableVersion's ``ListItem.normalize``)."""
    for i in range(len(items) - 1, -1, -1):
        if _is_null(items[i]):
            del items[i]
        elif not isinstance(items[i], list):
            break


def parse(version: str) -> list[object]:
    """The item tree of a version, as ComparableVersion's ``parseVersion`` builds it."""
    text = checked(version).lower()
    root: list[object] = []
    current = root
    stack = [root]

    def sublist() -> None:
        nonlocal current
        new: list[object] = []
        current.append(new)
        current = new
        stack.append(new)

    def item(is_digit: bool, buf: str) -> object:
        return int(buf) if is_digit else _Str(buf, False)

    is_digit = False
    start = 0
    for i, c in enumerate(text):
        if c in ".-":
            current.append(0 if i == start else item(is_digit, text[start:i]))
            start = i + 1
            if c == "-":
                sublist()
        elif "0" <= c <= "9":
            if not is_digit and i > start:
                # a qualifier before a number: 1.0.0.X1 < 1.0.0-X2 (MNG-7644, .X is read as -X)
                if current:
                    sublist()
                current.append(_Str(text[start:i], True))
                start = i
                sublist()
            is_digit = True
        else:
            if is_digit and i > start:
                current.append(int(text[start:i]))
                start = i
                sublist()
            is_digit = False
    if len(text) > start:
        if not is_digit and current:
            sublist()
        current.append(item(is_digit, text[start:]))
    while stack:
        _normalize(stack.pop())
    return root


@total_ordering
class MavenKey:
    """A parsed Maven version; ``<`` and ``==`` are ComparableVersion's ``compareTo``."""

    __slots__ = ("items", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.items = parse(text)

    def cmp(self, other: MavenKey) -> int:
        return _cmp(self.items, other.items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MavenKey):
            return NotImplemented
        return self.cmp(other) == 0

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, MavenKey):
            return NotImplemented
        return self.cmp(other) < 0

    __hash__ = None  # type: ignore[assignment]  # equal keys may differ in form (1-rc1, 1-cr1)

    def __repr__(self) -> str:
        return f"MavenKey({self.text!r}: {self.items!r})"


def key(version: str) -> MavenKey:
    """A MavenKey (sorts as ComparableVersion)."""
    return MavenKey(version)
