"""The rpm database, read without rpm: its sqlite and Berkeley DB forms, and the package headers in them.

Fedora and RHEL 9 keep ``rpmdb.sqlite`` (a table ``Packages(hnum, blob)``); RHEL/CentOS 7 and 8 and Amazon
Linux 2 keep ``Packages``, a Berkeley DB hash file keyed by the 4-byte header number. Both hold the same
thing: each installed package's header, as rpm exported it (index entries, then a data store). openSUSE's
``Packages.db`` (rpm's own "ndb" form) is not read, and says so rather than passing for "no packages".

Scanning images of other machines is the point (``--root``), so nothing here runs rpm, links libdb, or
writes to the tree: sqlite is opened read-only with ``immutable=1`` (no lock file, no journal, no -shm),
and the Berkeley DB file is read page by page through a small reader of its documented hash page layout
(both byte orders, overflow pages for headers larger than a page, page checksums skipped). Files are
resolved inside the root, so ``/var/lib/rpm -> ../../usr/lib/sysimage/rpm`` points into the tree.

Every malformed byte is a :class:`HostError` naming the file and what is wrong: a database that lies about
its own sizes must not crash the scan with an IndexError, nor be silently half-read.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat as stat_mod
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import FileMissing, Host, HostError, Unavailable

# Where rpm keeps its database: /var/lib/rpm (a link to the second on current Fedora), then the new place.
RPMDB_DIRS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
SQLITE_NAME, BDB_NAME, NDB_NAME = "rpmdb.sqlite", "Packages", "Packages.db"

# Header tags (rpmtag.h numbers, a stable on-disk contract).
TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH = 1000, 1001, 1002, 1003, 1022
TAG_OLDFILENAMES, TAG_FILESIZES, TAG_FILESTATES, TAG_FILEMODES = 1027, 1028, 1029, 1030
TAG_FILEDIGESTS, TAG_FILELINKTOS, TAG_FILEFLAGS, TAG_SOURCERPM = 1035, 1036, 1037, 1044
TAG_DIRINDEXES, TAG_BASENAMES, TAG_DIRNAMES = 1116, 1117, 1118
TAG_LONGFILESIZES, TAG_FILEDIGESTALGO = 5008, 5011
META_TAGS = frozenset({TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH, TAG_SOURCERPM, TAG_FILEDIGESTALGO})
FILE_TAGS = META_TAGS | {TAG_OLDFILENAMES, TAG_FILESIZES, TAG_FILESTATES, TAG_FILEMODES, TAG_FILEDIGESTS,
                         TAG_FILELINKTOS, TAG_FILEFLAGS, TAG_DIRINDEXES, TAG_BASENAMES, TAG_DIRNAMES,
                         TAG_LONGFILESIZES}
PATH_TAGS = frozenset({TAG_NAME, TAG_ARCH, TAG_OLDFILENAMES, TAG_DIRINDEXES, TAG_BASENAMES, TAG_DIRNAMES})

# File flags (%config, %doc, %ghost ...) and states of the header's file list.
RPMFILE_CONFIG, RPMFILE_DOC, RPMFILE_MISSINGOK, RPMFILE_GHOST = 1, 2, 8, 64
FILE_STATE_NORMAL = 0  # others: replaced, not installed (--excludedocs, %_netsharedpath), wrong colour

# FILEDIGESTALGO values are OpenPGP hash ids; a header without the tag uses md5.
DIGEST_ALGORITHMS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}

# Header data types and their item sizes.
T_NULL, T_CHAR, T_INT8, T_INT16, T_INT32, T_INT64, T_STRING, T_BIN, T_STRING_ARRAY, T_I18NSTRING = range(10)
INT_FORMATS = {T_CHAR: "B", T_INT8: "B", T_INT16: "H", T_INT32: "I", T_INT64: "Q"}
MAX_INDEX = 0xFFFF            # rpm's own limits on a header's index and data store
MAX_DATA = 256 * 1024 * 1024

HeaderValue = tuple[int, ...] | str | tuple[str, ...] | bytes


def parse_header(blob: bytes, where: str, wanted: frozenset[int] | None = None) -> dict[int, HeaderValue]:
    """The tags of one exported header (``il``, ``dl``, ``il`` index entries, ``dl`` bytes of data).

    Only ``wanted`` tags are decoded (all when None): the verifier needs a dozen of a header's hundred.
    Integers become tuples, strings ``str`` (UTF-8, surrogateescape), string arrays tuples of ``str``.
    Any size, offset or count that points outside the blob is a :class:`HostError` naming ``where``.
    """
    if len(blob) < 8:
        raise HostError(f"{where}: a header of {len(blob)} bytes, shorter than its own size fields")
    il, dl = struct.unpack_from(">II", blob, 0)
    if il < 1 or il > MAX_INDEX or dl > MAX_DATA:
        raise HostError(f"{where}: a header claiming {il} index entries and {dl} data bytes")
    start = 8 + 16 * il
    if start + dl > len(blob):
        raise HostError(f"{where}: a header claiming {start + dl} bytes in a blob of {len(blob)}")
    data = blob[start:start + dl]
    out: dict[int, HeaderValue] = {}
    for i in range(il):
        tag, kind, offset, count = struct.unpack_from(">IIiI", blob, 8 + 16 * i)
        if wanted is not None and tag not in wanted:
            continue
        if offset < 0 or offset > dl:
            raise HostError(f"{where}: tag {tag} points at offset {offset} outside the {dl}-byte data store")
        out[tag] = _value(data, tag, kind, offset, count, where)
    return out


def _value(data: bytes, tag: int, kind: int, offset: int, count: int, where: str) -> HeaderValue:
    """One tag's value, every bound checked."""
    if kind in INT_FORMATS:
        fmt = INT_FORMATS[kind]
        size = struct.calcsize(fmt)
        if count > (len(data) - offset) // size:
            raise HostError(f"{where}: tag {tag} holds {count} integers past the end of the data store")
        return struct.unpack_from(f">{count}{fmt}", data, offset)
    if kind == T_BIN:
        if count > len(data) - offset:
            raise HostError(f"{where}: tag {tag} holds {count} bytes past the end of the data store")
        return data[offset:offset + count]
    if kind in (T_STRING, T_STRING_ARRAY, T_I18NSTRING):
        if count > len(data) - offset:
            raise HostError(f"{where}: tag {tag} claims {count} strings in {len(data) - offset} bytes")
        strings = []
        pos = offset
        for _ in range(count if kind != T_STRING else 1):
            end = data.find(b"\0", pos)
            if end < 0:
                raise HostError(f"{where}: tag {tag} holds a string without its terminating NUL")
            strings.append(data[pos:end].decode("utf-8", "surrogateescape"))
            pos = end + 1
        return strings[0] if kind == T_STRING else tuple(strings)
    if kind == T_NULL:
        return ()
    raise HostError(f"{where}: tag {tag} has unknown data type {kind}")


@dataclass(frozen=True)
class RpmPackage:
    """One installed rpm: what the vulnerability inventory keys on, and how integrity names it."""

    name: str
    epoch: int | None
    version: str
    release: str
    arch: str
    sourcerpm: str      # "" for gpg-pubkey pseudo-packages, which have no source
    digest_algorithm: str

    def label(self) -> str:
        """``name.arch``: what dnf and yum accept for one package of a multilib pair."""
        return f"{self.name}.{self.arch}" if self.arch and self.arch != "(none)" else self.name

    def evr(self) -> str:
        """``[epoch:]version-release``, rpm's own way of writing a version."""
        return (f"{self.epoch}:" if self.epoch is not None else "") + f"{self.version}-{self.release}"


@dataclass(frozen=True)
class RpmFile:
    """One entry of a package's file list."""

    path: str
    digest: str       # hex; "" for directories, symlinks, devices and ghost files without content
    mode: int
    flags: int
    size: int
    linkto: str
    state: int = FILE_STATE_NORMAL

    @property
    def config(self) -> bool:
        """``%config``: the administrator is expected to edit it."""
        return bool(self.flags & RPMFILE_CONFIG)

    @property
    def ghost(self) -> bool:
        """``%ghost``: owned but not shipped (logs, sockets the program creates)."""
        return bool(self.flags & RPMFILE_GHOST)

    @property
    def doc(self) -> bool:
        """``%doc``."""
        return bool(self.flags & RPMFILE_DOC)


def _text(tags: dict[int, HeaderValue], tag: int, where: str, default: str | None = None) -> str:
    value = tags.get(tag, default)
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        value = value[0]  # an i18n string: its first (default) locale
    if not isinstance(value, str):
        raise HostError(f"{where}: tag {tag} is missing or not a string")
    return value


def _ints(tags: dict[int, HeaderValue], tag: int, where: str) -> tuple[int, ...]:
    value = tags.get(tag, ())
    if not isinstance(value, tuple) or not all(isinstance(v, int) for v in value):
        raise HostError(f"{where}: tag {tag} is not a list of integers")
    return value  # type: ignore[return-value]


def _strings(tags: dict[int, HeaderValue], tag: int, where: str) -> tuple[str, ...]:
    value = tags.get(tag, ())
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise HostError(f"{where}: tag {tag} is not a list of strings")
    return value  # type: ignore[return-value]


def name_of(tags: dict[int, HeaderValue], where: str) -> str:
    """The NAME of a parsed header."""
    return _text(tags, TAG_NAME, where)


def package_of(tags: dict[int, HeaderValue], where: str) -> RpmPackage:
    """The package a parsed header describes (NAME, VERSION and RELEASE are required)."""
    epoch = _ints(tags, TAG_EPOCH, where)
    algo = _ints(tags, TAG_FILEDIGESTALGO, where)
    algorithm = DIGEST_ALGORITHMS.get(algo[0]) if algo else "md5"
    if algorithm is None:
        raise HostError(f"{where}: file digest algorithm {algo[0]} is not one rpm defines")
    return RpmPackage(_text(tags, TAG_NAME, where), epoch[0] if epoch else None, _text(tags, TAG_VERSION, where),
                      _text(tags, TAG_RELEASE, where), _text(tags, TAG_ARCH, where, ""),
                      _text(tags, TAG_SOURCERPM, where, ""), algorithm)


def file_paths(tags: dict[int, HeaderValue], where: str) -> tuple[str, ...]:
    """Every path of the package: ``DIRNAMES[DIRINDEXES[i]] + BASENAMES[i]`` (or the old flat list)."""
    basenames = _strings(tags, TAG_BASENAMES, where)
    if not basenames:
        return _strings(tags, TAG_OLDFILENAMES, where)
    dirnames = _strings(tags, TAG_DIRNAMES, where)
    indexes = _ints(tags, TAG_DIRINDEXES, where)
    if len(indexes) != len(basenames):
        raise HostError(f"{where}: {len(basenames)} file names but {len(indexes)} directory indexes")
    try:
        return tuple(dirnames[i] + b for i, b in zip(indexes, basenames, strict=True))
    except IndexError:
        raise HostError(f"{where}: a directory index past the {len(dirnames)} directory names") from None


def files_of(tags: dict[int, HeaderValue], where: str) -> tuple[RpmFile, ...]:
    """The file list of a parsed header; every per-file array must be as long as the list of paths."""
    paths = file_paths(tags, where)
    n = len(paths)
    digests = _strings(tags, TAG_FILEDIGESTS, where) or ("",) * n
    modes = _ints(tags, TAG_FILEMODES, where) or (0,) * n
    flags = _ints(tags, TAG_FILEFLAGS, where) or (0,) * n
    sizes = _ints(tags, TAG_LONGFILESIZES, where) or _ints(tags, TAG_FILESIZES, where) or (0,) * n
    links = _strings(tags, TAG_FILELINKTOS, where) or ("",) * n
    states = _ints(tags, TAG_FILESTATES, where) or (FILE_STATE_NORMAL,) * n
    for tag, values in ((TAG_FILEDIGESTS, digests), (TAG_FILEMODES, modes), (TAG_FILEFLAGS, flags),
                        (TAG_FILESIZES, sizes), (TAG_FILELINKTOS, links), (TAG_FILESTATES, states)):
        if len(values) != n:
            raise HostError(f"{where}: tag {tag} has {len(values)} entries for {n} files")
    return tuple(RpmFile(*entry) for entry in zip(paths, digests, modes, flags, sizes, links, states, strict=True))


# -- Berkeley DB hash files ------------------------------------------------------------------------------

HASH_MAGIC = 0x061561
P_HASH_UNSORTED, P_OVERFLOW, P_HASHMETA, P_HASH = 2, 7, 8, 13
H_KEYDATA, H_DUPLICATE, H_OFFPAGE, H_OFFDUP = 1, 2, 3, 4
PAGE_HEADER = 26
DBMETA_CHKSUM = 0x01
CHKSUM_BYTES = 6  # a plain (unencrypted) page checksum area sits between the page header and the item index


class BdbHash:
    """A Berkeley DB hash file read page by page (never whole: EL7 ``Packages`` files pass 100 MB).

    Records are found by reading every hash page in file order, not by following buckets: rpm's headers
    are all wanted, and one pass over the file is the fewest reads. Free pages are typed invalid by
    Berkeley DB, so they are passed over. Duplicate keys (which rpm never writes) are an error.
    """

    def __init__(self, fd: int, where: str) -> None:
        self.fd = fd
        self.where = where
        meta = os.pread(fd, 512, 0)
        if len(meta) < 100:
            raise HostError(f"{where}: too short for a Berkeley DB meta page")
        for order in ("<", ">"):
            if struct.unpack_from(f"{order}I", meta, 12)[0] == HASH_MAGIC:
                self.order = order
                break
        else:
            raise HostError(f"{where}: not a Berkeley DB hash file (bad magic)")
        version, self.pagesize = struct.unpack_from(f"{self.order}II", meta, 16)
        encrypt, kind, metaflags = meta[24], meta[25], meta[26]
        self.last_pgno = struct.unpack_from(f"{self.order}I", meta, 32)[0]
        if version not in (8, 9, 10):
            raise HostError(f"{where}: Berkeley DB hash version {version} is not one this reader knows")
        if self.pagesize < 512 or self.pagesize > 65536 or self.pagesize & (self.pagesize - 1):
            raise HostError(f"{where}: page size {self.pagesize} is not a power of two from 512 to 65536")
        if kind != P_HASHMETA:
            raise HostError(f"{where}: the first page is not a hash meta page (type {kind})")
        if encrypt:
            raise HostError(f"{where}: the database is encrypted")
        self.overhead = PAGE_HEADER + (CHKSUM_BYTES if metaflags & DBMETA_CHKSUM else 0)
        size = os.fstat(fd).st_size
        self.pages = min(self.last_pgno + 1, size // self.pagesize)

    def page(self, pgno: int) -> bytes:
        """One whole page (a short read is a truncated file)."""
        data = os.pread(self.fd, self.pagesize, pgno * self.pagesize)
        if len(data) != self.pagesize:
            raise HostError(f"{self.where}: page {pgno} is past the end of the file")
        return data

    def header(self, page: bytes) -> tuple[int, int, int, int, int]:
        """(pgno, next_pgno, entries, hf_offset, type) of a page."""
        pgno, _prev, nxt, entries, hf_offset = struct.unpack_from(f"{self.order}IIIHH", page, 8)
        return pgno, nxt, entries, hf_offset, page[25]

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, data) pair, overflow items reassembled."""
        for pgno in range(1, self.pages):
            page = self.page(pgno)
            number, _nxt, entries, _hf, kind = self.header(page)
            if kind not in (P_HASH, P_HASH_UNSORTED) or number != pgno:
                continue
            items = self.items(page, pgno, entries)
            if len(items) % 2:
                raise HostError(f"{self.where}: page {pgno} holds a key without its data")
            for i in range(0, len(items), 2):
                yield self.item(items[i], pgno), self.item(items[i + 1], pgno)

    def items(self, page: bytes, pgno: int, entries: int) -> list[bytes]:
        """The raw items of a hash page, from its index of item offsets (items fill the page from its end)."""
        index_end = self.overhead + 2 * entries
        if index_end > self.pagesize:
            raise HostError(f"{self.where}: page {pgno} claims {entries} items, more than fit")
        offsets = struct.unpack_from(f"{self.order}{entries}H", page, self.overhead)
        out = []
        end = self.pagesize
        for offset in offsets:
            if offset < index_end or offset >= end:
                raise HostError(f"{self.where}: page {pgno} has an item at offset {offset} outside its space")
            out.append(page[offset:end])
            end = offset
        return out

    def item(self, raw: bytes, pgno: int) -> bytes:
        """An item's bytes: inline after its type byte, or reassembled from its overflow chain."""
        kind = raw[0]
        if kind == H_KEYDATA:
            return raw[1:]
        if kind == H_OFFPAGE:
            if len(raw) < 12:
                raise HostError(f"{self.where}: page {pgno} has a truncated overflow reference")
            first, total = struct.unpack_from(f"{self.order}II", raw, 4)
            return self.overflow(first, total)
        if kind in (H_DUPLICATE, H_OFFDUP):
            raise HostError(f"{self.where}: page {pgno} holds duplicate keys, which an rpm database never has")
        raise HostError(f"{self.where}: page {pgno} holds an item of unknown type {kind}")

    def overflow(self, pgno: int, total: int) -> bytes:
        """The ``total`` bytes of an overflow chain starting at page ``pgno``."""
        if total > MAX_DATA:
            raise HostError(f"{self.where}: an overflow item of {total} bytes")
        chunks: list[bytes] = []
        got = 0
        seen: set[int] = set()
        while got < total:
            if pgno == 0 or pgno >= self.pages or pgno in seen:
                raise HostError(f"{self.where}: an overflow chain is broken at page {pgno}")
            seen.add(pgno)
            page = self.page(pgno)
            _number, nxt, _entries, length, kind = self.header(page)
            if kind != P_OVERFLOW or length > self.pagesize - self.overhead:
                raise HostError(f"{self.where}: page {pgno} of an overflow chain is not an overflow page")
            chunks.append(page[self.overhead:self.overhead + length])
            got += length
            pgno = nxt
        data = b"".join(chunks)
        if len(data) != total:
            raise HostError(f"{self.where}: an overflow chain holds {len(data)} bytes, not {total}")
        return data


# -- finding and reading the database ----------------------------------------------------------------------

@dataclass(frozen=True)
class RpmDbLocation:
    """Which rpm database the host has: ``form`` is "sqlite" or "bdb"; ``path`` is the host path."""

    form: str
    path: str


def locate(host: Host) -> RpmDbLocation | None:
    """The host's rpm database; None when it has none; :class:`Unavailable` for a form this reader lacks."""
    for directory in RPMDB_DIRS:
        for name, form in ((SQLITE_NAME, "sqlite"), (BDB_NAME, "bdb")):
            path = f"{directory}/{name}"
            if host.exists(path):
                return RpmDbLocation(form, path)
        if host.exists(f"{directory}/{NDB_NAME}"):
            raise Unavailable(SkipReason.UNSUPPORTED, f"{directory}/{NDB_NAME}: the rpm database is in rpm's "
                                                      "ndb form (openSUSE), which hostguard does not read yet")
    return None


def _open_regular(host: Host, path: str) -> int:
    """A read-only descriptor on a regular file of the host (resolved inside the root)."""
    real = host.resolve(path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise FileMissing(f"{path}: no such file") from exc
    except OSError as exc:
        raise HostError(f"{path}: {exc.strerror}") from exc
    if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise HostError(f"{path}: not a regular file")
    return fd


def blobs(host: Host, location: RpmDbLocation) -> Iterator[tuple[int, bytes]]:
    """Every ``(header number, header blob)`` of the database, one at a time."""
    if location.form == "sqlite":
        yield from _sqlite_blobs(host, location.path)
        return
    fd = _open_regular(host, location.path)
    try:
        db = BdbHash(fd, location.path)
        for key, data in db.records():
            if len(key) != 4:
                raise HostError(f"{location.path}: a key of {len(key)} bytes, not a 4-byte header number")
            hnum = struct.unpack(f"{db.order}I", key)[0]
            if hnum == 0:
                continue  # rpm's record of the next header number, not a package
            yield hnum, data
    finally:
        os.close(fd)


def _sqlite_blobs(host: Host, path: str) -> Iterator[tuple[int, bytes]]:
    """Header blobs of ``rpmdb.sqlite``, opened immutable (no lock, no journal, nothing written).

    An immutable open ignores the write-ahead log, so a WAL that still holds transactions (rpm running on
    a live host, or an image taken while it ran) would be missed: then the database and its WAL are copied
    to a private temporary directory and read there, which replays the log without touching the tree.
    """
    real = host.resolve(path)
    try:
        wal = host.stat(path + "-wal").size
    except HostError:
        wal = 0
    tmp = None
    try:
        if wal:
            tmp = tempfile.mkdtemp(prefix="hostguard-rpmdb-")
            for suffix in ("", "-wal"):
                fd = _open_regular(host, path + suffix)
                with os.fdopen(fd, "rb") as src, open(os.path.join(tmp, SQLITE_NAME + suffix), "wb") as dst:
                    shutil.copyfileobj(src, dst)
            uri = f"file:{quote(os.path.join(tmp, SQLITE_NAME))}?mode=ro"
        else:
            if not stat_mod.S_ISREG(os.stat(real).st_mode):
                raise HostError(f"{path}: not a regular file")
            uri = f"file:{quote(real)}?mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True)
        except sqlite3.Error as exc:
            raise HostError(f"{path}: {exc}") from exc
        try:
            cursor = conn.execute("SELECT hnum, blob FROM Packages ORDER BY hnum")
            for hnum, blob in cursor:
                if not isinstance(hnum, int) or not isinstance(blob, bytes):
                    raise HostError(f"{path}: a Packages row that is not (integer, blob)")
                yield hnum, blob
        except sqlite3.Error as exc:
            raise HostError(f"{path}: {exc}") from exc
        finally:
            conn.close()
    except OSError as exc:
        raise HostError(f"{path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class RpmDatabase:
    """The installed rpm packages of a host (file lists are not kept: :func:`blobs` streams them again)."""

    location: RpmDbLocation
    packages: tuple[RpmPackage, ...]


def read_rpmdb(host: Host, location: RpmDbLocation) -> RpmDatabase:
    """Every package's name, epoch, version, release, arch and source rpm."""
    packages = []
    for hnum, blob in blobs(host, location):
        where = f"{location.path} header {hnum}"
        packages.append(package_of(parse_header(blob, where, META_TAGS), where))
    return RpmDatabase(location, tuple(packages))


def collect_rpmdb(host: Host) -> RpmDatabase:
    """The host's rpm database (``Unavailable`` when it keeps none, or one in a form not read here)."""
    location = locate(host)
    if location is None:
        raise Unavailable(SkipReason.UNSUPPORTED, f"no rpm database ({' or '.join(RPMDB_DIRS)})")
    return read_rpmdb(host, location)


RPMDB: Fact[RpmDatabase] = Fact("rpmdb", collect_rpmdb)
