"""Databases, caches and FTP servers exposed by their own configuration.

Under ``--root`` there are no sockets, yet "databases and FTP only from chosen sources" must be answered:
each service's configuration is read the way the service reads it (``host/services``), giving where it
listens at boot and what a client from the network must present. A service on a network address that asks
for nothing (Redis without a password or protected mode, a PostgreSQL ``trust`` line for remote sources,
MongoDB without authorization, memcached, Elasticsearch without security, anonymous FTP) is critical;
one that takes passwords in clear text or stores them weakly (FTP without TLS, pg ``password``/``md5``) is
medium. Every finding quotes the lines that decide it.

Each finding also carries the firewall's answer for the ports the service binds (issue 2's evaluator over
the live ruleset on a host, over the boot-time ruleset under ``--root``): "Redis ... asks for nothing,
reachable from anyone". A firewall that lets nobody in lowers the severity but never silences the finding:
the service still trusts whoever gets to it (this host's containers and users, or anyone after a firewall
change). The live socket itself, named by its process, is the firewall family's finding
(``firewall.service_reachable``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hostguard.config import Config, setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.facts import HOST_ID, STATE, Fact
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, HostId, SkipReason
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.host.exposure import Exposure, exposure_of
from hostguard.host.firewall import FIREWALL, FirewallFacts
from hostguard.host.identity import HOSTNAME
from hostguard.host.services.common import DEFAULT, AuthKind, Scope
from hostguard.host.services.configured import SERVICE_TEXT, SERVICES, Service, Services
from hostguard.host.services.elasticsearch import ElasticConfig
from hostguard.host.services.ftp import FtpConfig
from hostguard.host.services.memcached import MemcachedConfig
from hostguard.host.services.mongodb import MongoConfig
from hostguard.host.services.mysql import BOOLEAN as MYSQL_BOOLEAN
from hostguard.host.services.mysql import MysqlConfig
from hostguard.host.services.mysql import Option as MysqlOption
from hostguard.host.services.mysql import canonical as mysql_canonical
from hostguard.host.services.postgres import HbaLine, PostgresConfig
from hostguard.host.services.redis import RedisConfig, split_args
from hostguard.host.web.model import Where
from hostguard.host.web.nginx import ConfigText
from hostguard.passwords.guesses import Guess
from hostguard.probes.base import Endpoint, Prober
from hostguard.probes.mysql import MysqlProber
from hostguard.probes.mysql import lockout_limit as mysql_lockout_limit
from hostguard.probes.postgres import PostgresProber
from hostguard.probes.redis import RedisProber
from hostguard.probes.session import (
    ERROR,
    LOCKED,
    NO_PASSWORD,
    NOT_PROBED,
    OUT_OF_TIME,
    WEAK,
    Limits,
    probe_account,
    service_guesses,
)
from hostguard.remediation import Command, DeleteLine, Edit, Param, Remediation, Step
from hostguard.store.state import StateStore


@dataclass(frozen=True)
class ServicesConfig:
    """[services]: trying passwords against the local database servers."""

    probe_passwords: bool = setting(True, "Try weak passwords against the local Redis, PostgreSQL and MariaDB/MySQL "
                                          "superusers over their unix socket or loopback (recorded in the state "
                                          "directory, kept below each server's lockout counter).")
    probe_attempts: int = setting(50, "Passwords tried per account and scan at most, the canary included.", min=1)
    probe_rate: float = setting(5.0, "Attempts per second per server at most.", min=0.1)
    probe_seconds: float = setting(60.0, "Seconds the password probes may take in all.", min=0)


FAMILY = Family("services", __doc__ or "", ServicesConfig)


# How to keep each service to this host, or make it ask for a password (the owner picks and edits the line).
ADVICE = {
    "Redis": "bind it to loopback (`bind 127.0.0.1 -::1`), keep `protected-mode yes`, and set a long "
             "`requirepass` (or an ACL user for the default user)",
    "MariaDB/MySQL": "bind it to loopback (`bind-address = 127.0.0.1`) or the one address clients use, and never "
                     "run with `skip-grant-tables`",
    "PostgreSQL": "keep `listen_addresses` to the addresses clients use and make every non-local pg_hba.conf "
                  "line `scram-sha-256` (never `trust`, `password` or `md5`)",
    "MongoDB": "set `security.authorization: enabled` and bind `net.bindIp` to loopback or the clients' network",
    "Memcached": "bind it to loopback (`-l 127.0.0.1`) and turn UDP off (`-U 0`); memcached has no password "
                 "unless built with SASL (`-S`)",
    "Elasticsearch": "set `xpack.security.enabled: true` and `network.host` to loopback or the cluster's "
                     "network",
    "vsftpd": "set `anonymous_enable=NO`, and `ssl_enable=YES` with `force_local_logins_ssl=YES` (or use SFTP "
              "over SSH instead)",
    "proftpd": "remove the `<Anonymous>` section, and require TLS (`TLSEngine on`, `TLSRequired on`) or use SFTP",
}


# -- the firewall's answer for the ports a service binds ------------------------------------------------

def collect_service_exposure(host: Host, found: Services, firewall: FirewallFacts | None) -> dict[tuple[str, str], Exposure]:
    """(service, config) -> the firewall's answer for its network listeners (loopback and unix ones aside).

    Derived only (the host is read by SERVICES and FIREWALL): the live ruleset on a host, the boot-time one
    under ``--root``; a firewall that cannot be read is "unknown" for every service, never a reason to
    skip the services' own findings."""
    return {(s.name, s.config): exposure_of(firewall, ((i.proto, i.address, i.port) for i in s.listening.network))
            for s in found.services if s.listening.network}


SERVICE_EXPOSURE: Fact[dict[tuple[str, str], Exposure]] = Fact(
    "service_exposure", collect_service_exposure, inputs=(SERVICES, FIREWALL.best_effort))


def services(ctx: Context) -> Iterator[Service]:
    """Every configured service; one whose configuration could not be read is said in ``skipped``."""
    found = ctx.fact(SERVICES)
    for name, why in found.problems:
        ctx.skip(SkipReason.ERROR, why, name)
    yield from found.services


def _evidence(service: Service) -> dict[str, Any]:
    return {"service": service.name, "config": service.config,
            "listens": [f"{item.label()} ({item.scope}, {item.where})" for item in service.listening.listens],
            "auth": str(service.auth.kind), "why": service.auth.detail,
            "decided_by": [str(w) for w in service.auth.where], "notes": list(service.notes)}


def _target(service: Service) -> dict[str, str]:
    return {"kind": "config", "path": service.config, "service": service.name}


def _fix(service: Service, text: ConfigText) -> Remediation:
    """The fix of one service's finding: the lines to write, each at file:line with the text there now.

    Steps (an :class:`Edit` or :class:`DeleteLine` of the line as read, then a restart of the running service
    only) where the change needs nobody's decision and cannot cut the owner off: protected mode back on,
    ``skip-grant-tables`` deleted, a non-local pg_hba ``trust`` made ``scram-sha-256``, ``anonymous_enable=NO``,
    memcached's UDP off. Which addresses must reach a database and what its password is are the owner's: those
    stay by hand, the line to write first in backticks with a Param (and a working example) for the value."""
    record = service.record
    if isinstance(record, RedisConfig):
        return _redis_fix(record, text)
    if isinstance(record, MysqlConfig):
        return _mysql_fix(record, text)
    if isinstance(record, PostgresConfig):
        return _postgres_fix(record, text)
    if isinstance(record, MemcachedConfig):
        return _memcached_fix(record, text)
    if isinstance(record, FtpConfig) and record.server == "vsftpd":
        return _vsftpd_fix(record, text)
    if isinstance(record, FtpConfig):
        return _proftpd_fix(record, text)
    if isinstance(record, MongoConfig):
        return _mongo_fix(record, text)
    if isinstance(record, ElasticConfig):
        return _elastic_fix(record, text)
    lines = ", ".join(str(w) for w in (*service.auth.where, *(i.where for i in service.listening.network))
                      if w.path) or service.config
    return Remediation.by_hand(
        f"Keep {service.name} to this host or make it ask for a password",
        f"{ADVICE.get(service.name, 'bind it to loopback and require authentication')}. The deciding lines: "
        f"{lines}. Which addresses must reach it is yours to say; then restart it and check that its clients "
        "still connect (and close the port in the firewall to anyone else).")


@cache
def _fix_data() -> dict[str, Any]:
    return load_toml("services/fixes.toml")


def _line_template(name: str) -> str:
    """A line the fixes write (``data/services/fixes.toml``); a list there is several lines."""
    value = _fix_data()["lines"][name]
    return "\n".join(value) if isinstance(value, list) else str(value)


def _restart(key: str, **values: str) -> Command:
    """The service's restart (or reload), live only: it acts on the running system, never inside --root."""
    return Command(tuple(str(a).format(**values) for a in _fix_data()["restart"][key]), live_only=True)


@dataclass
class _FixPlan:
    """A fix being put together: steps that need nobody's decision, and sentences for what is the owner's."""

    summary: str
    steps: list[Step] = field(default_factory=list)
    hand: list[str] = field(default_factory=list)

    def done(self, restart: Command | None = None) -> Remediation:
        """The remediation: the steps (then the restart, when there is a step), and the by-hand text with a
        Param for each owner's value its lines name."""
        steps = (*self.steps, restart) if self.steps and restart is not None else tuple(self.steps)
        manual = " ".join(self.hand) or None
        params = tuple(Param(name, str(meaning), str(example))
                       for name, (meaning, example) in _fix_data()["params"].items()
                       if manual is not None and re.search(rf"\b{name}\b", manual))
        return Remediation(self.summary, steps, manual, params)


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _in_place(text: ConfigText, where: Where, new: str) -> str:
    """By-hand words for replacing the line at ``where`` with ``new`` (the new text first, in backticks)."""
    old = text.line(where)
    return f"`{new}` in place of {where}" + (f" (`{old.strip()}`)" if old is not None else "")


def _appended(text: ConfigText, path: str, new: str) -> Edit | None:
    """An edit that adds ``new`` after the last line of ``path`` (None when the file was not read or is empty)."""
    lines = text.lines(path)
    if not lines:
        return None
    return Edit(text.edit_path(path), len(lines), lines[-1], f"{lines[-1]}\n{new}")


def _cluster_unit(config: str) -> Command:
    m = re.fullmatch(r"/etc/postgresql/([^/]+)/([^/]+)/postgresql\.conf", config)
    return _restart("postgres", cluster=f"{m.group(1)}-{m.group(2)}") if m else _restart("postgres_any")


# -- Redis -------------------------------------------------------------------------------------------------

def _redis_nopass_line(text: ConfigText, where: Where, secret: str) -> str | None:
    """The ``user`` line at ``where`` with its ``nopass`` rule replaced by ``>secret`` (None when the line is
    not a one-line ``user ... nopass`` rule set)."""
    line = text.line(where) if where.path else None
    args = split_args(line.strip()) if line else None
    if line is None or not args or args[0].lower() != "user" or "nopass" not in (a.lower() for a in args):
        return None
    words = line.split()
    if [w.lower() for w in words] != [a.lower() for a in args]:
        return None     # quoted words: rewriting them keeps no promise about the rest
    return _indent(line) + " ".join(f">{secret}" if w.lower() == "nopass" else w for w in words)


def _redis_fix(rec: RedisConfig, text: ConfigText) -> Remediation:
    plan = _FixPlan(f"Make Redis ({rec.config}) ask for a password, or keep it to this host")
    protected = rec.protected_mode
    secret = "REDIS_PASSWORD"
    default = rec.default_user
    if default.open and protected.value.lower() == "no":
        line = text.line(protected.where) if protected.where.path else None
        args = split_args(line.strip()) if line else None
        if line is not None and args is not None and [a.lower() for a in args] == ["protected-mode", "no"]:
            plan.steps.append(Edit(text.edit_path(protected.where.path), protected.where.line, line,
                                   _indent(line) + _line_template("redis_protected")))
            plan.summary = (f"Turn Redis's protected mode back on at {protected.where}: with no password on the "
                            "default user it then answers loopback and its unix socket only")
        else:
            plan.hand.append(f"Write {_in_place(text, protected.where, _line_template('redis_protected'))}.")
    if default.open:
        if rec.aclfile is not None:
            acl = _redis_nopass_line(text, default.where, secret) if default.where.path == rec.aclfile.value else None
            place = (_in_place(text, default.where, acl) if acl else
                     f"`{_line_template('redis_acl_default')}` as a new line of {rec.aclfile.value}")
            plan.hand.append(f"For clients on other machines, give the default user a password in the ACL file "
                             f"(requirepass is ignored while aclfile is set, {rec.aclfile.where}): write {place}.")
        else:
            own = _redis_nopass_line(text, default.where, secret)
            line = text.line(default.where) if default.where.path else None
            if own:
                place = _in_place(text, default.where, own)
            elif line is not None and line.strip().lower().startswith("requirepass"):
                place = _in_place(text, default.where, _line_template("redis_password"))
            else:
                place = f"`{_line_template('redis_password')}` as a new line of {rec.config}"
            plan.hand.append(f"For clients on other machines, give the default user a password: write {place}.")
    else:
        for user in (u for u in rec.users[1:] if u.open):
            theirs = _redis_nopass_line(text, user.where, secret)
            place = _in_place(text, user.where, theirs) if theirs else f"a password (`>{secret}`) for it at {user.where}"
            plan.hand.append(f"User {user.name} logs in with no password: write {place}.")
    if any(i.port for i in rec.listening.network):
        bind = rec.bind[0].where if rec.bind else DEFAULT
        bind_line = _line_template("redis_bind")
        place = _in_place(text, bind, bind_line) if bind.path else f"`{bind_line}` as a new line of {rec.config}"
        plan.hand.append(f"Unless application servers on other machines use it, keep Redis to this host: write "
                         f"{place}.")
    plan.hand.append("Give the password to every client (AUTH), then restart Redis (`systemctl restart "
                     "redis-server`) and check that they still connect.")
    return plan.done(_restart("redis"))


# -- MariaDB/MySQL ----------------------------------------------------------------------------------------

def _turns_on(option: MysqlOption) -> bool:
    """Whether an option line turns ``skip-grant-tables`` on (read the way the reader reads it)."""
    key, flag = mysql_canonical(option.name)
    if key != "skip-grant-tables":
        return False
    on = MYSQL_BOOLEAN.get(option.value.strip().lower(), False) if option.value is not None else True
    if flag is not None:
        on = flag if option.value is None else (on if flag else not on)
    return on


def _mysql_fix(rec: MysqlConfig, text: ConfigText) -> Remediation:
    plan = _FixPlan(f"Keep MariaDB/MySQL ({rec.config}) to this host or its clients' network, and check passwords")
    if rec.skip_grant_tables.value == "1":
        lines = [o.where for o in rec.options if _turns_on(o)]
        deletes: list[Step] = []
        for where in lines:
            old = text.line(where)
            if old is None or mysql_canonical(old.strip().partition("=")[0])[0] != "skip-grant-tables":
                deletes = []
                break
            deletes.append(DeleteLine(text.edit_path(where.path), where.line, old))
        if deletes:
            plan.steps += deletes
            plan.summary = ("Delete skip-grant-tables (" + ", ".join(str(w) for w in lines) + ") so every login "
                            "is checked against the grant tables again")
        else:
            plan.hand.append("Delete the line(s) " + ", ".join(f"{w} (`{text.line(w)}`)" for w in lines) +
                             ": skip-grant-tables lets every account in without a password.")
    if rec.listening.network:
        new = _line_template("mysql_bind")
        bind = rec.bind_address.where
        place = _in_place(text, bind, new) if bind.path else f"`{new}` in a [mysqld] section of {rec.config}"
        plan.hand.append(f"Unless clients on other machines use it, keep the server to this host: write {place} "
                         "(or `skip-networking` when every client uses the socket).")
    plan.hand.append("Restart it (`systemctl restart mysql`) and check that its clients still connect.")
    return plan.done(_restart("mysql"))


# -- PostgreSQL -----------------------------------------------------------------------------------------

def _hba_with(line: str, record: HbaLine, method: str) -> str | None:
    """``line`` with the record's authentication method replaced by ``method``, everything else as written;
    None when the line is not that record on one line (continued, or the method not where the reader saw it)."""
    if record.method_span is None:
        return None
    start, end = record.method_span
    if line[start:end] != record.method:
        return None
    return line[:start] + method + line[end:]


def _postgres_fix(rec: PostgresConfig, text: ConfigText) -> Remediation:
    plan = _FixPlan(f"Make PostgreSQL ({rec.config}) ask non-local clients for a password (scram-sha-256)")
    scram = _line_template("pg_method")
    rehash = False
    for record in rec.weak_lines:
        old = text.line(record.where)
        new = _hba_with(old, record, scram) if old is not None else None
        if new is not None and record.method == "trust":
            plan.steps.append(Edit(text.edit_path(record.where.path), record.where.line, old or "", new))
        elif new is not None:
            plan.hand.append(f"Write {_in_place(text, record.where, new)}.")
            rehash = rehash or record.method in ("md5", "password")
        else:
            plan.hand.append(f"Make the method of the pg_hba.conf record at {record.where} ({record.label()}) "
                             f"`{scram}`.")
            rehash = rehash or record.method in ("md5", "password")
    if rehash:
        plan.hand.append("A role whose password is stored as md5 cannot log in with scram-sha-256: set it again "
                         "first under `password_encryption = scram-sha-256` (the default since PostgreSQL 14), "
                         "e.g. `\\password ROLE` in psql.")
    if rec.listening.network:
        new = _line_template("pg_listen")
        where = rec.listen_addresses.where
        place = _in_place(text, where, new) if where.path else f"`{new}` as a new line of {rec.config}"
        plan.hand.append(f"Unless clients on other machines use it, keep it to this host: write {place} (a "
                         "restart is needed for this one).")
    if plan.steps:
        plan.summary = ("Make the non-local pg_hba.conf trust line(s) ask for a password: " +
                        ", ".join(str(s.path) + ":" + str(s.line) for s in plan.steps if isinstance(s, Edit)) +
                        " -> scram-sha-256 (a role with no password set can then no longer log in from there)")
    plan.hand.append("Reload the cluster (pg_hba.conf is re-read on reload; `pg_hba_file_rules` shows errors).")
    return plan.done(_cluster_unit(rec.config))


# -- Memcached -------------------------------------------------------------------------------------------

def _memcached_words(line: str) -> list[str]:
    """A memcached.conf line's words as Debian's wrapper reads them (an unescaped ``#`` starts a comment)."""
    return re.sub(r"(?<!\\)#[^#]*", "", line).split()


def _memcached_fix(rec: MemcachedConfig, text: ConfigText) -> Remediation:
    plan = _FixPlan(f"Keep memcached ({rec.config}) to this host: it has no password without SASL")
    udp = rec.udp_port
    if udp.value != "0" and rec.unix_socket is None and udp.where.path:
        old = text.line(udp.where)
        words = _memcached_words(old) if old is not None else []
        if old is not None and (re.fullmatch(r"-U\d+|--udp-port=\d+", " ".join(words))
                                or (len(words) == 2 and words[0] in ("-U", "--udp-port"))):
            plan.steps.append(Edit(text.edit_path(udp.where.path), udp.where.line, old,
                                   _line_template("memcached_udp")))
            plan.summary = (f"Turn memcached's UDP port off at {udp.where} (it answers spoofed requests with "
                            "large replies, an amplifier for attacks on others), and keep it to this host")
        else:
            plan.hand.append(f"Turn UDP off: `{_line_template('memcached_udp')}` instead of the -U at {udp.where}.")
    if rec.listening.network:
        new = _line_template("memcached_listen")
        wheres = list(dict.fromkeys(s.where for s in rec.listen))
        if not wheres:
            plan.hand.append(f"Write `{new}` as a new line of {rec.config} (with no -l it listens on every "
                             "interface).")
        else:
            old = text.line(wheres[0]) or ""
            words = _memcached_words(old)
            one = re.fullmatch(r"-l\s*\S+|--listen[= ]\S+", " ".join(words))
            value = new.split(None, 1)[1]
            line = new if one else re.sub(r"(-l\s*|--listen[= ])\S+", lambda m: m.group(1) + value, old, count=1)
            rest = "; delete the other -l lines (" + ", ".join(str(w) for w in wheres[1:]) + ")" if wheres[1:] else ""
            plan.hand.append(f"Write {_in_place(text, wheres[0], line)}{rest}.")
    plan.hand.append("Memcached asks for no password unless built with SASL (-S); restart it (`systemctl restart "
                     "memcached`) and check that its clients still connect.")
    return plan.done(_restart("memcached"))


# -- vsftpd and proftpd ---------------------------------------------------------------------------------

def _vsftpd_fix(rec: FtpConfig, text: ConfigText) -> Remediation:
    plan = _FixPlan(f"Require TLS for vsftpd's logins ({rec.config})")
    if rec.anonymous.value == "yes":
        where = rec.anonymous.where
        new = _line_template("vsftpd_anonymous")
        old = text.line(where) if where.path else None
        step: Edit | None
        if old is not None and old.partition("=")[0] == "anonymous_enable":
            step = Edit(text.edit_path(where.path), where.line, old, new)
        else:
            step = _appended(text, rec.config, new) if not where.path else None
        if step is not None:
            plan.steps.append(step)
            plan.summary = (f"Turn anonymous FTP off ({rec.config}" + (f", line {where.line}" if where.path else "") +
                            "): anyone could log in as anonymous")
        else:
            plan.hand.append(f"Write `{new}` at {where if where.path else rec.config}.")
        if rec.local_users.value != "yes":
            plan.hand.append("With local logins off as well (local_enable), vsftpd then refuses every session: "
                             "if nobody needs this FTP server, stop and disable it (`systemctl disable --now "
                             "vsftpd`).")
    if rec.local_users.value == "yes" and rec.tls_required.value != "yes":
        lines = _line_template("vsftpd_tls")
        plan.hand.append(f"Make local users log in over TLS only: add `{lines}` at the end of {rec.config} "
                         f"(vsftpd takes the last value of a setting, so {rec.tls_required.where} no longer counts). "
                         "rsa_cert_file is needed: Debian's ssl-cert package makes a self-signed pair "
                         "(`make-ssl-cert generate-default-snakeoil`; clients must then accept it), or name a "
                         "certificate of yours. Or turn FTP off and use SFTP over SSH. Then `systemctl reload "
                         "vsftpd`.")
    return plan.done(_restart("vsftpd"))


def _section_end(text: ConfigText, where: Where, closing: str) -> int:
    """The line of ``closing`` (``</Anonymous>``) after the section opened at ``where`` (0 when not found)."""
    for number, line in enumerate(text.lines(where.path)[where.line:], where.line + 1):
        if line.strip().lower() == closing.lower():
            return number
    return 0


def _proftpd_fix(rec: FtpConfig, text: ConfigText) -> Remediation:
    plan = _FixPlan(f"Turn proftpd's anonymous login off and require TLS ({rec.config})")
    if rec.anonymous.value == "yes":
        where = rec.anonymous.where
        opening = (text.line(where) or "<Anonymous>").strip()
        end = _section_end(text, where, "</Anonymous>")
        span = f"lines {where.line}-{end} of {where.path}" if end else f"the section that opens at {where}"
        plan.hand.append(f"Delete {span}: the section from `{opening}` to `</Anonymous>` lets anyone log in "
                         "(or put `<Limit LOGIN> DenyAll </Limit>` inside it); then restart proftpd.")
    if rec.local_users.value == "yes" and rec.tls_required.value != "yes":
        lines = _line_template("proftpd_tls")
        plan.hand.append(f"Make logins use TLS: add `{lines}` at the end of {rec.config}, outside any section "
                         "(mod_tls must be loaded: Debian's /etc/proftpd/modules.conf has its LoadModule line). "
                         "Or turn FTP off and use SFTP over SSH. Then restart proftpd.")
    return plan.done()


# -- MongoDB and Elasticsearch (YAML) ----------------------------------------------------------------------

_YAML_LINE = re.compile(r"(?P<head>[ \t]*(?P<key>[A-Za-z_][\w.]*)[ \t]*:[ \t]*)(?P<value>[^\s#][^#]*?)"
                        r"(?P<tail>[ \t]*(?:#.*)?)")


def _yaml_set(text: ConfigText, where: Where, key: str | None, value: str) -> str | None:
    """The one-line YAML setting at ``where`` with its value replaced (and its key, when ``key`` is given),
    indentation and a trailing comment kept; None when the line is not ``key: value`` on one line."""
    line = text.line(where) if where.path else None
    m = _YAML_LINE.fullmatch(line) if line is not None else None
    if m is None:
        return None
    written = m.group("key")
    head = m.group("head")
    if key:   # a dotted key keeps its prefix: net.bindIpAll -> net.bindIp
        head = head.replace(written, f"{written.rsplit('.', 1)[0]}.{key}" if "." in written else key, 1)
    return head + value + m.group("tail")


def _yaml_place(text: ConfigText, where: Where, new: str | None, fallback: str) -> str:
    return _in_place(text, where, new) if new is not None else fallback


def _mongo_fix(rec: MongoConfig, text: ConfigText) -> Remediation:
    plan = _FixPlan(f"Make mongod ({rec.config}) check users, and keep it to its clients' network")
    authz = _line_template("mongo_authorization")
    where = rec.authorization.where
    if where.path:
        new = _yaml_set(text, where, None, authz.split(": ", 1)[1])
        place = _yaml_place(text, where, new, f"`{authz}` for the security.authorization setting at {where}")
    else:
        nested = [s.where for name, s in rec.settings if name.startswith("security.") and s.where.path]
        line = text.line(nested[0]) if nested else None
        if line is not None and line[:1] in " \t":
            place = f"`{_indent(line)}{authz}` as a new line after {nested[0]} (in the security: section)"
        else:
            place = f"`security:\n  {authz}` at the end of {rec.config}"
    plan.hand.append(f"Create an administrator first (mongosh on this host: the localhost exception lets the "
                     f"first user be made), then write {place}.")
    if rec.listening.network:
        bind = _line_template("mongo_bind")
        target = rec.bind_ip_all.where if rec.bind_ip_all.value.lower() in ("true", "yes", "on") else rec.bind_ip.where
        new = _yaml_set(text, target, "bindIp" if target == rec.bind_ip_all.where else None, bind.split(": ", 1)[1])
        plan.hand.append(f"Keep it to this host or the clients' network: write "
                         f"{_yaml_place(text, target, new, f'`{bind}` under net: in {rec.config}')}.")
    plan.hand.append("Then restart mongod and give every client its user and password.")
    return plan.done()


def _elastic_fix(rec: ElasticConfig, text: ConfigText) -> Remediation:
    plan = _FixPlan(f"Turn Elasticsearch's security on ({rec.config}) and keep it to the cluster's network")
    security = _line_template("es_security")
    if rec.security is not None and rec.security.where.path:
        new = _yaml_set(text, rec.security.where, None, "true")
        place = _yaml_place(text, rec.security.where, new, f"`{security}` at {rec.security.where}")
    else:
        place = f"`{security}` as a new line of {rec.config}"
    plan.hand.append(f"Write {place}; then set the elastic user's password (`elasticsearch-reset-password -u "
                     "elastic`) and give clients their credentials (a cluster of several nodes also needs "
                     "transport TLS).")
    if rec.listening.network:
        host = _line_template("es_host")
        for setting in dict.fromkeys((rec.http_host, rec.transport_host)):
            if setting.where.path and any(i.where == setting.where for i in rec.listening.network):
                new = _yaml_set(text, setting.where, None, host.split(": ", 1)[1])
                plan.hand.append(f"Keep it to this host or the cluster's network: write "
                                 f"{_yaml_place(text, setting.where, new, f'`{host}` at {setting.where}')}.")
    plan.hand.append("Then restart Elasticsearch.")
    return plan.done()


# Severity by the firewall's answer: a firewall that lets nobody in lowers it, never silences it (the service
# still trusts whoever reaches it: this host's containers and users, or anyone after a firewall change).
OPEN_SEVERITY = {"anyone": "critical", "unknown": "critical", "sources": "high", "nobody": "medium"}
WEAK_SEVERITY = {"anyone": "medium", "unknown": "medium", "sources": "medium", "nobody": "low"}


def _exposed(ctx: Context, service: Service) -> Exposure:
    return ctx.fact(SERVICE_EXPOSURE).get((service.name, service.config)) or Exposure("unknown")


def _title(what: str, exposure: Exposure) -> str:
    sep = ", " if exposure.state in ("anyone", "sources") else "; "
    return f"{what}{sep}{exposure.phrase()}"


def _networked(ctx: Context, kind: AuthKind, severities: dict[str, str], title: str) -> Iterator[Finding]:
    """A finding per service on a network address whose authentication is ``kind``, severity by who the
    firewall lets reach it."""
    text = ctx.fact(SERVICE_TEXT)
    for service in services(ctx):
        if service.listening.network and service.auth.kind == kind:
            where = ", ".join(i.label() for i in service.listening.network)
            exposure = _exposed(ctx, service)
            yield ctx.finding(_title(title.format(name=service.name, where=where, detail=service.auth.detail),
                                     exposure),
                              _target(service), evidence={**_evidence(service), "firewall": exposure.evidence()},
                              severity=severities[exposure.state], remediation=_fix(service, text))


@check(id="services.open_without_auth", severity="critical",
       summary="Database, cache or FTP server on a network address that asks for nothing",
       needs=(SERVICES, SERVICE_EXPOSURE, SERVICE_TEXT), tags=("T1190", "T1078"))
def open_without_auth(ctx: Context) -> Iterator[Finding]:
    """A service whose configuration binds it to a network address (every interface, or a chosen non-loopback
    one) and lets a client in without a password: Redis with no password and protected mode off, MariaDB with
    skip-grant-tables, a pg_hba ``trust`` line for remote sources, MongoDB without authorization, memcached,
    Elasticsearch without security, anonymous FTP. Loopback and unix sockets only are quiet. Critical when
    the firewall (live, or the boot-time ruleset under ``--root``) lets anyone reach it or cannot say; high
    when only chosen networks; medium when it lets nobody in (the service still trusts whoever gets to it)."""
    yield from _networked(ctx, AuthKind.NONE, OPEN_SEVERITY, "{name} listens on {where} and {detail}")


@check(id="services.weak_auth", severity="medium",
       summary="Service on a network address taking passwords in clear text or storing them weakly",
       needs=(SERVICES, SERVICE_EXPOSURE, SERVICE_TEXT), tags=("T1040", "T1110"))
def weak_auth(ctx: Context) -> Iterator[Finding]:
    """A service on a network address whose logins can be sniffed or whose stored passwords are weak: FTP
    without TLS (every system account's password crosses the network in clear), PostgreSQL ``password`` or
    ``md5`` lines for remote sources. Low when the firewall lets nobody reach it."""
    yield from _networked(ctx, AuthKind.WEAK, WEAK_SEVERITY, "{name} on {where}: {detail}")


# -- weak passwords, tried against the local servers (active probes) ----------------------------------------

@dataclass(frozen=True)
class ProbeStore:
    """Where probe sessions are recorded (their failures count against each server's lockout counter)."""

    store: StateStore
    host_key: str


def collect_probe_store(host: Host, state: StateStore | None, host_id: HostId | None) -> ProbeStore:
    """The state store to record probes in; probes need the running services and that record."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "passwords are tried against running services only")
    if state is None or host_id is None:
        raise Unavailable(SkipReason.UNSUPPORTED, "no state directory: probes must be recorded (their failures "
                                                  "count against the servers' lockout counters)")
    return ProbeStore(state, host_id.id)


PROBE_STORE: Fact[ProbeStore] = Fact("probe_store", collect_probe_store,
                                     inputs=(STATE.best_effort, HOST_ID.best_effort))

# The account each server always has (its superuser): the one worth guessing.
SUPERUSERS = {"Redis": "default", "PostgreSQL": "postgres", "MariaDB/MySQL": "root"}


def endpoint_of(service: Service) -> Endpoint | None:
    """This host's own way in to ``service``: its unix socket, else loopback on its port (never another
    address: probes only talk to this host)."""
    listens = service.listening.listens
    for item in listens:
        if item.proto == "unix" or (item.port is None and item.address.startswith("/")):
            return Endpoint.unix(item.address)
    for item in listens:
        if item.port and item.scope in (Scope.LOOPBACK, Scope.WILDCARD):
            host = "::1" if item.address.strip("[]") == "::1" else "127.0.0.1"
            return Endpoint.tcp(host, item.port)
    return None


def _prober(service: Service, endpoint: Endpoint) -> Prober | None:
    if service.name == "Redis":
        return RedisProber(endpoint)
    if service.name == "PostgreSQL":
        return PostgresProber(endpoint)
    if service.name == "MariaDB/MySQL":
        return MysqlProber(endpoint, lockout_limit=mysql_lockout_limit(service.record))
    return None


def _probe_budget(config: Config) -> float:
    return config[ServicesConfig].probe_seconds


@check(id="services.weak_password", severity="high",
       summary="Local database or cache server with a guessable password, or none checked",
       needs=(SERVICES, PROBE_STORE, HOSTNAME), budget=_probe_budget, tags=("T1110.001",))
def weak_password(ctx: Context) -> Iterator[Finding]:
    """Tries passwords against the superuser of the local Redis (``default``), PostgreSQL (``postgres``) and
    MariaDB/MySQL (``root``), over their unix socket or loopback only, live. A long random password goes
    first: accepted means the server checks no password for that account (``trust``, ``unix_socket``, Redis
    without ``requirepass``), reported as that. Then the service's default credentials, empty, the names, and
    the common list, stopping at the first hit; at most ``[services] probe_attempts`` per account and scan,
    ``probe_rate`` per second, and below MariaDB's ``max_password_errors`` counting earlier scans' failures
    (every session is recorded in the state). The whole check stays within ``probe_seconds``: a session that
    would run past it ends between two attempts (said in ``skipped``), and a progress bar counts the attempts.
    A found password is never shown."""
    cfg = ctx.config[ServicesConfig]
    if not cfg.probe_passwords:
        return
    recorder = ctx.fact(PROBE_STORE)
    limits = Limits(per_account=cfg.probe_attempts, per_second=cfg.probe_rate)
    planned: list[tuple[Service, str, Prober, list[Guess]]] = []
    for service in services(ctx):
        account = SUPERUSERS.get(service.name)
        if account is None:
            continue
        try:
            endpoint = endpoint_of(service)
        except HostError as exc:
            ctx.skip(SkipReason.UNSUPPORTED, f"{service.name}: {exc}", service.config)
            continue
        prober = _prober(service, endpoint) if endpoint is not None else None
        if prober is not None:
            planned.append((service, account, prober, service_guesses(prober.service, account, ctx.fact(HOSTNAME))))
    total = sum(min(limits.per_account, len(guesses) + 1) for *_, guesses in planned)
    tried = 0

    def attempted() -> None:
        nonlocal tried
        tried += 1
        ctx.progress(tried, total)

    for service, account, prober, guesses in planned:
        if ctx.time_left() <= 0:
            ctx.skip(SkipReason.BUDGET, f"{service.name}: not tried (services.probe_seconds spent)", service.config)
            continue
        result = probe_account(prober, account, guesses, limits, store=recorder.store, host_key=recorder.host_key,
                               deadline=ctx.deadline, attempted=attempted)
        evidence = {"service": service.name, "endpoint": result.endpoint, "account": account,
                    "attempts": result.attempts, "config": service.config}
        if result.outcome == WEAK:
            yield ctx.finding(f"{service.name} account '{account}' has a guessable password ({result.source})",
                              {"kind": "user", "user": account, "service": service.name},
                              severity="critical", evidence={**evidence, "matched": result.source, "rank": result.rank},
                              remediation=_password_fix(service, account))
        elif result.outcome == NO_PASSWORD:
            yield ctx.finding(f"{service.name} lets '{account}' in over {result.endpoint} without checking a password",
                              {"kind": "user", "user": account, "service": service.name, "password": "none"},
                              severity="medium", evidence={**evidence, "detail": result.detail},
                              remediation=_password_fix(service, account))
        elif result.outcome == OUT_OF_TIME:
            ctx.skip(SkipReason.BUDGET, f"{service.name} '{account}' at {result.endpoint}: {result.attempts} "
                                        "passwords tried, none accepted, then services.probe_seconds ran out",
                     service.config)
        elif result.outcome == ERROR and result.detail.startswith("connection failed"):
            ctx.skip(SkipReason.UNSUPPORTED, f"{service.name} is not running (nothing answers at {result.endpoint}): "
                                             "its password is not tried", service.config)
        elif result.outcome in (ERROR, LOCKED, NOT_PROBED):
            ctx.skip(SkipReason.UNSUPPORTED if result.outcome != ERROR else SkipReason.ERROR,
                     f"{service.name} '{account}' at {result.endpoint}: {result.outcome}: {result.detail}",
                     service.config)


PASSWORD_FIXES = {
    "Redis": "set `requirepass` to a long random password in {config} (or give the default user one with an ACL), "
             "then restart Redis and update its clients",
    "PostgreSQL": "`ALTER ROLE {account} PASSWORD '…'` from psql (with password_encryption = scram-sha-256), and "
                  "make pg_hba.conf ask for it (`scram-sha-256`, or `peer` for local admin logins)",
    "MariaDB/MySQL": "`ALTER USER '{account}'@'localhost' IDENTIFIED BY '…'` (or `IDENTIFIED VIA unix_socket` for root, "
                     "Debian's default), then check the applications that log in with it",
}


def _password_fix(service: Service, account: str) -> Remediation:
    return Remediation.by_hand(
        f"Give {service.name}'s '{account}' a long password (or local-socket-only authentication)",
        PASSWORD_FIXES[service.name].format(config=service.config, account=account)
        + ". Only you can choose the password and know which clients use it.",
        Param("password", "the new password, stored where its clients read it", "32 random characters"))
