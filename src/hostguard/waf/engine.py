"""libmodsecurity3 through cffi (ABI mode): the rules loaded once, one transaction per request.

Debian's ``libmodsecurity3`` is opened with ``dlopen("libmodsecurity.so.3")``; nothing is compiled. The C
API is small and its traps are known:

* ``msc_intervention`` hands back ``url`` and ``log`` strings the library ``strdup``'d: they are freed here
  with libc's ``free`` after being read, every time (a proxy answering millions of requests would
  otherwise leak a string per blocked one);
* the rule-match messages arrive through one process-wide log callback, with the pointer given to the
  transaction: the callback object is kept referenced for the engine's life (a collected one is a crash),
  and each transaction gets a handle on its own list of matches;
* an error string from ``msc_rules_add*`` is the library's too, freed after reading;
* a transaction is used by one thread from start to end and always cleaned up.

:class:`Engine` is thread-safe for concurrent :meth:`Engine.inspect` calls (the rules set is read-only once
loaded, and libmodsecurity's transactions are independent); callers on an event loop run it in a thread.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Engine", "EngineError", "Request", "RuleMatch", "Verdict", "check_rules", "library_version"]

LIBRARY = "libmodsecurity.so.3"
CDEF = """
typedef struct ModSecurity_t ModSecurity;
typedef struct RulesSet_t RulesSet;
typedef struct Transaction_t Transaction;
typedef struct ModSecurityIntervention_t {
    int status;
    int pause;
    char *url;
    char *log;
    int disruptive;
} ModSecurityIntervention;
typedef void (*ModSecLogCb)(void *, const void *);
ModSecurity *msc_init(void);
const char *msc_who_am_i(ModSecurity *msc);
void msc_set_connector_info(ModSecurity *msc, const char *connector);
void msc_set_log_cb(ModSecurity *msc, ModSecLogCb cb);
void msc_cleanup(ModSecurity *msc);
RulesSet *msc_create_rules_set(void);
int msc_rules_add_file(RulesSet *rules, const char *file, const char **error);
int msc_rules_add(RulesSet *rules, const char *plain_rules, const char **error);
int msc_rules_cleanup(RulesSet *rules);
Transaction *msc_new_transaction_with_id(ModSecurity *ms, RulesSet *rules, char *id, void *logCbData);
int msc_process_connection(Transaction *transaction, const char *client, int cPort, const char *server, int sPort);
int msc_process_uri(Transaction *transaction, const char *uri, const char *protocol, const char *http_version);
int msc_add_n_request_header(Transaction *transaction, const unsigned char *key, size_t len_key,
                             const unsigned char *value, size_t len_value);
int msc_process_request_headers(Transaction *transaction);
int msc_append_request_body(Transaction *transaction, const unsigned char *body, size_t size);
int msc_process_request_body(Transaction *transaction);
int msc_intervention(Transaction *transaction, ModSecurityIntervention *it);
int msc_process_logging(Transaction *transaction);
void msc_transaction_cleanup(Transaction *transaction);
void free(void *ptr);
"""
FIELD = re.compile(r'\[(id|msg|data|severity|tag|file|line) "((?:[^"\\]|\\.)*)"\]')
CONNECTOR = b"hostguard"


class EngineError(Exception):
    """libmodsecurity cannot be loaded, or a rule file is refused (the library's own message)."""


@dataclass(frozen=True)
class Request:
    """One HTTP request as the WAF sees it: the raw target (path and query as sent), headers in order, body."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    client: str = "127.0.0.1"
    client_port: int = 0
    server: str = "127.0.0.1"
    server_port: int = 80
    http_version: str = "1.1"


@dataclass(frozen=True)
class RuleMatch:
    """One rule that matched, as the engine's log message says it."""

    id: int
    msg: str = ""
    data: str = ""
    severity: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """What the engine decided: ``disruptive`` (it would block) with ``status``; every rule that matched."""

    disruptive: bool
    status: int
    matches: tuple[RuleMatch, ...] = ()
    messages: tuple[str, ...] = field(default=(), repr=False)

    @property
    def rule_ids(self) -> list[int]:
        """The matched rule ids, in order."""
        return [m.id for m in self.matches]


def parse_message(text: str) -> RuleMatch | None:
    """A rule match from one engine log message (None when it names no rule id, or is not a match).

    libmodsecurity3 3.0.9 logs the first rule of a chain with ``multiMatch`` whenever that rule matches, even
    when the rest of the chain does not (a narrowed CRS rule, ``hostguard.waf.narrowing``, on the honest value
    it lets through): such a message has none of the rule's msg, tags and severity, and is not reported."""
    found: dict[str, str] = {}
    tags: list[str] = []
    for key, value in FIELD.findall(text):
        if key == "tag":
            tags.append(value)
        else:
            found.setdefault(key, value)
    try:
        rule_id = int(found.get("id", ""))
    except ValueError:
        return None
    if not found.get("msg") and not tags and found.get("severity") == "0":
        return None
    return RuleMatch(rule_id, found.get("msg", ""), found.get("data", ""), found.get("severity", ""), tuple(tags))


class _Lib:
    """The loaded library, once per process."""

    _lock = threading.Lock()
    _instance: _Lib | None = None

    def __init__(self) -> None:
        try:
            from cffi import FFI
        except ImportError as exc:
            raise EngineError("the WAF needs cffi: pip install 'hostguard[waf]'") from exc
        self.ffi = FFI()
        self.ffi.cdef(CDEF)
        try:
            self.lib: Any = self.ffi.dlopen(LIBRARY)
        except OSError as exc:
            raise EngineError(f"{LIBRARY} cannot be loaded (Debian: apt-get install libmodsecurity3): {exc}") from exc
        self.libc: Any = self.ffi.dlopen(None)

    @classmethod
    def get(cls) -> _Lib:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Lib()
            return cls._instance

    def take_string(self, ptr: Any) -> str:
        """A library-allocated C string as text, freed."""
        if ptr == self.ffi.NULL:
            return ""
        try:
            return bytes(self.ffi.string(ptr)).decode("utf-8", "replace")
        finally:
            self.libc.free(ptr)


def library_version() -> str:
    """libmodsecurity's own name and version (``ModSecurity v3.0.9 (Linux)``)."""
    lib = _Lib.get()
    msc = lib.lib.msc_init()
    try:
        return bytes(lib.ffi.string(lib.lib.msc_who_am_i(msc))).decode()
    finally:
        lib.lib.msc_cleanup(msc)


def _add(lib: _Lib, rules: Any, *, path: str | None = None, text: str | None = None) -> None:
    error = lib.ffi.new("const char **")
    if path is not None:
        loaded = lib.lib.msc_rules_add_file(rules, path.encode(), error)
    else:
        loaded = lib.lib.msc_rules_add(rules, (text or "").encode(), error)
    if loaded < 0:
        message = lib.take_string(lib.ffi.cast("char *", error[0])) if error[0] != lib.ffi.NULL else "refused"
        raise EngineError(f"{path or 'rules'}: {' '.join(message.split())}")


class Engine:
    """A loaded rules set: ``files`` in order, then ``text``; :meth:`inspect` evaluates one request."""

    def __init__(self, files: Iterable[str] = (), text: str = "") -> None:
        self._lib = _Lib.get()
        lib, ffi = self._lib.lib, self._lib.ffi
        self._msc = lib.msc_init()
        lib.msc_set_connector_info(self._msc, CONNECTOR)
        self._callback = ffi.callback("void(void *, const void *)", self._on_log)  # kept: C holds it
        lib.msc_set_log_cb(self._msc, self._callback)
        self._rules = lib.msc_create_rules_set()
        self._closed = False
        try:
            for path in files:
                _add(self._lib, self._rules, path=path)
            if text:
                _add(self._lib, self._rules, text=text)
        except EngineError:
            self.close()
            raise

    def _on_log(self, data: Any, message: Any) -> None:
        if data == self._lib.ffi.NULL or message == self._lib.ffi.NULL:
            return
        sink: list[str] = self._lib.ffi.from_handle(data)
        sink.append(bytes(self._lib.ffi.string(self._lib.ffi.cast("char *", message))).decode("utf-8", "replace"))

    def _intervened(self, transaction: Any, box: Any, messages: list[str]) -> tuple[bool, int]:
        """Whether the engine intervenes now; the disruptive rule's message (it comes in ``log``, not through
        the callback) is added to ``messages``."""
        box.status, box.pause, box.url, box.log, box.disruptive = 200, 0, self._lib.ffi.NULL, self._lib.ffi.NULL, 0
        self._lib.lib.msc_intervention(transaction, box)
        self._lib.take_string(box.url)
        log = self._lib.take_string(box.log)
        box.url = box.log = self._lib.ffi.NULL
        if log:
            messages.append(log)
        return bool(box.disruptive), int(box.status)

    def inspect(self, request: Request, request_id: str = "") -> Verdict:
        """Run the request through phases 1 and 2; stops at the first disruptive intervention."""
        if self._closed:
            raise EngineError("the engine is closed")
        lib, ffi = self._lib.lib, self._lib.ffi
        messages: list[str] = []
        handle = ffi.new_handle(messages)
        tid = ffi.new("char[]", (request_id or "-").encode())
        transaction = lib.msc_new_transaction_with_id(self._msc, self._rules, tid, handle)
        box = ffi.new("ModSecurityIntervention *")
        disruptive, status = False, 200
        try:
            lib.msc_process_connection(transaction, request.client.encode(), request.client_port,
                                       request.server.encode(), request.server_port)
            lib.msc_process_uri(transaction, request.target.encode("utf-8", "surrogateescape"),
                                request.method.encode(), request.http_version.encode())
            disruptive, status = self._intervened(transaction, box, messages)
            if not disruptive:
                for name, value in request.headers:
                    key = name.encode("latin-1", "replace")
                    val = value.encode("latin-1", "replace") if value.isascii() else value.encode("utf-8")
                    lib.msc_add_n_request_header(transaction, key, len(key), val, len(val))
                lib.msc_process_request_headers(transaction)
                disruptive, status = self._intervened(transaction, box, messages)
            if not disruptive:
                if request.body:
                    lib.msc_append_request_body(transaction, request.body, len(request.body))
                lib.msc_process_request_body(transaction)
                disruptive, status = self._intervened(transaction, box, messages)
            lib.msc_process_logging(transaction)
        finally:
            lib.msc_transaction_cleanup(transaction)
        matches = tuple(m for m in (parse_message(t) for t in messages) if m is not None)
        return Verdict(disruptive, status if disruptive else 200, matches, tuple(messages))

    def close(self) -> None:
        """Free the rules set and the engine (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._lib.lib.msc_rules_cleanup(self._rules)
        self._lib.lib.msc_cleanup(self._msc)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_rules(paths: Iterable[str], texts: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """Each file, and each generated rules text (by name), loaded into a rules set of its own by the engine
    itself (what modsec-rules-check does, which Debian does not ship): (path or name, the library's error) for
    each refused one."""
    lib = _Lib.get()
    problems = []
    sources = [(path, {"path": path}) for path in paths] + [(n, {"text": t}) for n, t in (texts or {}).items()]
    for name, source in sources:
        rules = lib.lib.msc_create_rules_set()
        try:
            _add(lib, rules, **source)
        except EngineError as exc:
            problems.append((name, str(exc)))
        finally:
            lib.lib.msc_rules_cleanup(rules)
    return problems
