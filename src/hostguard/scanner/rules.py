"""The YARA rules the scanner runs: hostguard's own (``data/rules/*.yar``) and the owner's rule packs.

Rules are data. hostguard's own live in ``src/hostguard/data/rules/`` (one file per family: ``webshells``,
``loaders``, ``shells``, ``elf``, ``web_executables``) in the namespace ``hostguard``; each rule carries
``meta: severity`` (critical, high, medium, low), ``family`` and ``description``. The config names
directories of third-party rules (``[malware] rule_dirs``): every ``*.yar``/``*.yara`` file below each one is
compiled into its own namespace (``pack1``, ``pack2``, ... in the configured order), so their rule names
cannot clash with ours; their rules have the severity their ``severity`` meta says, else :data:`PACK_SEVERITY`.

Every rule may read the globals of :data:`GLOBALS`, set per file by the scanner: the file's name and
extension (lower case, without the dot) and whether it lies under a web root.

Compiling costs (hundreds of milliseconds for a few hundred rules), so the compiled rules are kept in
``cache/`` under their :func:`digest`: the digest of yara-x's version and every source's origin and text. A
changed rule, pack or yara-x version is a new digest, hence a fresh compile (and, for the scan cache, a
re-scan of every file). ``yara_x`` is imported here only, and only when rules are loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yara_x

OWN_NAMESPACE = "hostguard"
SEVERITIES = ("critical", "high", "medium", "low", "info")
PACK_SEVERITY = "high"  # a third-party rule that says nothing: the owner chose to load it
SUFFIXES = (".yar", ".yara")
MAX_RULE_FILE = 16 << 20
GLOBALS: dict[str, Any] = {"file_name": "", "extension": "", "in_web_root": False}


class RulesError(Exception):
    """A rule file cannot be read or does not compile; the message names the file."""


@dataclass(frozen=True)
class RuleSource:
    """One rule file: the namespace it is compiled into, where it came from, and its text."""

    namespace: str
    origin: str
    text: str


@dataclass(frozen=True)
class CompiledRules:
    """Compiled rules and what identifies them (the scan cache keys on :attr:`digest`)."""

    rules: yara_x.Rules
    digest: str
    sources: tuple[str, ...]  # origins, in compile order

    def serialized(self) -> bytes:
        """The compiled rules as bytes (what a worker process loads with :func:`load_serialized`)."""
        import io

        buffer = io.BytesIO()
        self.rules.serialize_into(buffer)
        return buffer.getvalue()


def own_sources() -> list[RuleSource]:
    """hostguard's own rule files, in name order."""
    folder = resources.files("hostguard.data").joinpath("rules")
    found = sorted((entry for entry in folder.iterdir() if entry.name.endswith(SUFFIXES)), key=lambda e: e.name)
    return [RuleSource(OWN_NAMESPACE, f"hostguard:rules/{entry.name}", entry.read_text("utf-8")) for entry in found]


def pack_sources(rule_dirs: Sequence[str]) -> list[RuleSource]:
    """The rule files below each configured directory (recursively, in path order), one namespace per
    directory. A directory or file that cannot be read is a :class:`RulesError`: a pack the owner named must
    never be half-loaded in silence."""
    found: list[RuleSource] = []
    for number, directory in enumerate(rule_dirs, start=1):
        base = Path(directory)
        if not base.is_dir():
            raise RulesError(f"{directory}: not a directory of YARA rules ([malware] rule_dirs)")
        try:
            files = sorted(p for p in base.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        except OSError as exc:
            raise RulesError(f"{directory}: {exc.strerror or exc}") from None
        for path in files:
            try:
                if path.stat().st_size > MAX_RULE_FILE:
                    raise RulesError(f"{path}: larger than {MAX_RULE_FILE >> 20} MiB, not a rule file")
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise RulesError(f"{path}: cannot be read: {reason}") from None
            found.append(RuleSource(f"pack{number}", str(path), text))
    return found


def digest(sources: Iterable[RuleSource]) -> str:
    """What identifies a set of compiled rules: yara-x's version and every source (length-prefixed)."""
    from importlib.metadata import version

    h = hashlib.sha256(f"yara-x {version('yara-x')}\n".encode())
    for source in sources:
        for part in (source.namespace, source.origin, source.text):
            raw = part.encode("utf-8", "surrogateescape")
            h.update(len(raw).to_bytes(8, "big"))
            h.update(raw)
    return h.hexdigest()


def compile_sources(sources: Sequence[RuleSource]) -> yara_x.Rules:
    """Compile ``sources`` (with :data:`GLOBALS` defined); a compile error names its file."""
    import yara_x

    compiler = yara_x.Compiler()
    for name, value in GLOBALS.items():
        compiler.define_global(name, value)
    for source in sources:
        compiler.new_namespace(source.namespace)
        try:
            compiler.add_source(source.text, origin=source.origin)
        except yara_x.CompileError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "does not compile"
            raise RulesError(f"{source.origin}: {first}") from None
    return compiler.build()


def load_serialized(data: bytes) -> yara_x.Rules:
    """Rules from :meth:`CompiledRules.serialized`."""
    import io

    import yara_x

    return yara_x.Rules.deserialize_from(io.BytesIO(data))


def load(rule_dirs: Sequence[str] = (), cache_dir: str | None = None) -> CompiledRules:
    """Our rules and the packs of ``rule_dirs``, compiled, or read from ``cache_dir`` when compiled before.
    A cache file that cannot be read or loaded is compiled afresh (the cache is rebuildable)."""
    sources = own_sources() + pack_sources(rule_dirs)
    key = digest(sources)
    origins = tuple(s.origin for s in sources)
    path = os.path.join(cache_dir, f"rules-{key[:32]}.yarc") if cache_dir else None
    if path is not None:
        # OSError: also yara-x's answer to a damaged file
        with contextlib.suppress(OSError, ValueError), open(path, "rb") as fh:
            return CompiledRules(load_serialized(fh.read()), key, origins)
    compiled = CompiledRules(compile_sources(sources), key, origins)
    if path is not None:
        _write_atomically(path, compiled.serialized())
    return compiled


def severity_of(metadata: Iterable[tuple[str, Any]], namespace: str) -> str:
    """A matching rule's severity: its ``severity`` meta when it names one, else ours say high and a pack's
    :data:`PACK_SEVERITY`."""
    for key, value in metadata:
        if key == "severity" and isinstance(value, str) and value.lower() in SEVERITIES:
            return value.lower()
    return "high" if namespace == OWN_NAMESPACE else PACK_SEVERITY


def _write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory (a reader never sees half a
    file); a cache that cannot be written is only slower, never an error."""
    directory = os.path.dirname(path)
    with contextlib.suppress(OSError):
        fd, temporary = tempfile.mkstemp(prefix=".rules-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
