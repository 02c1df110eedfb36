"""`hostguard vulns update`: the OSV exports of this host's ecosystems fetched into the state directory.

osv.dev publishes one archive per base ecosystem (``<mirror>/<ECOSYSTEM>/all.zip``; ``Debian``'s holds every
Debian release, told apart by ``affected[].package.ecosystem``). Each is downloaded into
``<state>/osv/<ECOSYSTEM>/all.zip`` through a temporary file beside it, checked (a zip archive whose every
member's CRC holds), and only when *every* asked export arrived whole are they renamed over the old ones: a
failed update (no network, an HTTP error, a truncated or garbage answer) leaves the previous copy and its
index exactly as they were, and says why in one line.

Which ecosystems "this host has" comes from :func:`wanted_exports`: today the ``--ecosystem`` arguments; the
host's package inventory (``hostguard.vulns.inventory``) will hand it the ecosystems it found.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from hostguard import __version__
from hostguard.vulns.versions import base_ecosystem

__all__ = ["DEFAULT_MIRROR", "DownloadError", "fetch", "osv_dir", "wanted_exports"]

DEFAULT_MIRROR = "https://osv-vulnerabilities.storage.googleapis.com"
TIMEOUT = 60.0  # seconds without a byte before giving up (a connect or a read), not for the whole download
MAX_EXPORT_BYTES = 4 << 30  # far above the largest export (a few hundred MB); a runaway answer stops here
CHUNK = 1 << 20


class DownloadError(Exception):
    """An export could not be fetched whole: one line for the user (nothing was replaced)."""


def osv_dir(state_dir: Path | str) -> Path:
    """Where the fetched exports live: ``<state>/osv`` (not in ``cache/``: without the network they cannot be
    fetched again, so a version change must not drop them)."""
    return Path(state_dir) / "osv"


def wanted_exports(requested: Iterable[str], inventory: Iterable[str] = ()) -> list[str]:
    """The export names to fetch, sorted, each once: the base ecosystem of every ecosystem asked for
    (``--ecosystem``) and of every one the host's package inventory found (``Debian:12`` -> ``Debian``,
    ``Alpine:v3.19`` -> ``Alpine``). ``ValueError`` for a name that cannot be a directory."""
    names = set()
    for ecosystem in (*requested, *inventory):
        base = base_ecosystem(ecosystem.strip())
        if not base or base.startswith(".") or "/" in base or "\0" in base:
            raise ValueError(f"{ecosystem!r} is not an OSV ecosystem name")
        names.add(base)
    return sorted(names)


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return _why(reason) if isinstance(reason, BaseException) else str(reason)
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT:.0f} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _download(url: str, tmp: Path, opener: Callable[..., Any], timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": f"hostguard/{__version__}"})
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out, opener(request, timeout=timeout) as answer:
        status = getattr(answer, "status", 200)
        if status != 200:
            raise DownloadError(f"HTTP {status}")
        total = 0
        body: IO[bytes] = answer
        while chunk := body.read(CHUNK):
            total += len(chunk)
            if total > MAX_EXPORT_BYTES:
                raise DownloadError(f"larger than {MAX_EXPORT_BYTES} bytes")
            out.write(chunk)
        declared = answer.headers.get("Content-Length") if hasattr(answer, "headers") else None
        if declared is not None and declared.isdigit() and int(declared) != total:
            raise DownloadError(f"cut short: {total} of {declared} bytes")
        out.flush()
        os.fsync(out.fileno())
    try:
        with zipfile.ZipFile(tmp) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise DownloadError(f"not a zip archive ({_why(exc)})") from exc
    except Exception as exc:  # noqa: BLE001 - each decompressor (zlib, bz2, lzma) has its own errors
        raise DownloadError(f"a damaged zip archive ({type(exc).__name__}: {exc})") from exc
    if bad is not None:
        raise DownloadError(f"a damaged zip archive (member {bad})")


def fetch(names: Iterable[str], state_dir: Path | str, mirror: str = DEFAULT_MIRROR, timeout: float = TIMEOUT,
          opener: Callable[..., Any] = urllib.request.urlopen) -> list[Path]:
    """Download ``<mirror>/<name>/all.zip`` for each name into the state directory; replace the old copies
    only when all arrived whole. The paths written; ``DownloadError`` (one line) otherwise."""
    base = osv_dir(state_dir)
    done: list[tuple[Path, Path]] = []
    try:
        for name in names:
            url = f"{mirror.rstrip('/')}/{urllib.parse.quote(name)}/all.zip"
            directory = base / name
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise DownloadError(f"{directory}: {_why(exc)}") from exc
            tmp = directory / f".all.zip.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            done.append((tmp, directory / "all.zip"))
            try:
                _download(url, tmp, opener, timeout)
            except DownloadError as exc:
                raise DownloadError(f"{url}: {exc}") from exc
            except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
                raise DownloadError(f"{url}: {_why(exc)}") from exc
        for tmp, final in done:
            os.replace(tmp, final)
        with contextlib.suppress(OSError):
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException:
        for tmp, _ in done:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
    return [final for _, final in done]
