"""`hostguard waf proxy|report|exclusions|check|patches`: the web application firewall as a reverse proxy, what
it recorded, the exclusions learning proposes, the rule files checked by the engine itself, and the virtual
patches (enabled or not, and whether each applies to something installed).

Every request is read by aiohttp, inspected by libmodsecurity with the OWASP Core Rule Set and hostguard's
own rules (``[waf]`` in the config), and refused or forwarded to ``--upstream``; every request a rule matched
is an event in ``[waf] event_log`` (default ``<state>/waf-events.jsonl``). Runs until SIGINT or SIGTERM
(exit 0); an unusable argument, config or missing dependency is one line on stderr and exit 2. aiohttp and
the engine are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any

from hostguard.cli._waf_server import SERVER_COMMANDS, add_server_parsers, ingest_enabled
from hostguard.cli.common import EXIT_FINDINGS, EXIT_OK, Parser, UsageError, load_config, open_state
from hostguard.findings import one_line

STOP_GRACE = 75.0   # seconds workers get to finish requests in flight after SIGTERM, then SIGKILL


def add_parser(sub: Any) -> None:
    """`waf proxy`: the reverse proxy."""
    waf = sub.add_parser("waf", help="web application firewall (ModSecurity, the OWASP CRS and hostguard's rules)")
    waf_sub = waf.add_subparsers(dest="waf_command", parser_class=Parser)
    proxy = waf_sub.add_parser("proxy", help="run a reverse proxy that inspects every request before the "
                                             "application sees it, until SIGINT or SIGTERM")
    proxy.add_argument("--listen", required=True, metavar="HOST:PORT",
                       help="the address to listen on: an IP address or localhost, and a port (0: a free one)")
    proxy.add_argument("--upstream", required=True, metavar="URL",
                       help="the application: http://HOST:PORT or https://HOST:PORT, optionally with a path prefix")
    proxy.add_argument("--site", default="default", metavar="NAME",
                       help="the site: its [waf.sites.NAME] settings over [waf], its accepted exclusions, its name in "
                            "events (default: [waf] alone)")
    proxy.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="how long to wait for the application's answer, and for each read of a request body "
                            "(default 60)")
    proxy.add_argument("--processes", type=int, default=1, metavar="N",
                       help="worker processes sharing the listening socket, each with its own engine (default 1: "
                            "the engine already runs on every CPU through its threads; more processes help where "
                            "Python's own share of the work is the limit, on machines with many CPUs)")
    add_learning_parsers(waf_sub)
    add_server_parsers(waf_sub)
    add_patches_parser(waf_sub)


def add_patches_parser(waf_sub: Any) -> None:
    """`waf patches`: the virtual patches, whether each is enabled and whether it applies here."""
    patches = waf_sub.add_parser("patches", help="the virtual patches: what each stops, whether it is enabled ([waf] "
                                                 "virtual_patches) and whether it applies to something installed")
    patches.add_argument("--root", metavar="DIR", help="look at a mounted image or a copy of a host's files (its "
                                                       "/etc/hostguard/hostguard.toml and its packages)")
    patches.add_argument("--format", choices=("text", "json"), default="text")


def _event_log(configured: str, state: str | None) -> str:
    """``[waf] event_log``, or ``waf-events.jsonl`` in the state directory (made if missing); opened once here
    so that a path the proxy cannot write is an error now, not at the first attack."""
    if configured:
        path = configured
    else:
        from hostguard.store.state import default_state_dir

        directory = state or default_state_dir()
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise UsageError(f"state directory {directory}: not a directory")
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"state directory {directory}: {exc.strerror or exc}") from exc
        path = os.path.join(directory, "waf-events.jsonl")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise UsageError(f"event log {path}: {exc.strerror or exc}") from exc
    return path


def proxy(args: argparse.Namespace) -> int:
    """Check every argument and the engine before listening; then serve until SIGINT or SIGTERM."""
    try:
        from hostguard.waf import proxy as waf_proxy
    except ImportError as exc:
        raise UsageError(f"the WAF proxy needs aiohttp: pip install 'hostguard[waf]' ({exc})") from exc
    import asyncio

    from hostguard.waf.config import UnknownSite, WafConfig, site_config
    from hostguard.waf.engine import EngineError
    from hostguard.waf.gate import Gate

    try:
        host, port = waf_proxy.parse_listen(args.listen)
        upstream = waf_proxy.parse_upstream(args.upstream)
    except waf_proxy.ProxyError as exc:
        raise UsageError(str(exc)) from exc
    if not 0 < args.timeout <= 3600:
        raise UsageError(f"--timeout {args.timeout:g}: more than 0 and at most 3600 seconds")
    processes = args.processes
    if not 1 <= processes <= 64:
        raise UsageError(f"--processes {args.processes}: 1 to 64")
    settings = load_config(args.config)[WafConfig]
    try:
        effective = site_config(settings, args.site)
    except UnknownSite as exc:
        raise UsageError(f"--site {args.site!r}: {exc}") from exc
    event_log = _event_log(settings.event_log, args.state)
    exclusions = _accepted_exclusions(args)

    def make_gate() -> Gate:
        try:
            return Gate(settings, event_log, site=args.site, exclusions=exclusions)
        except EngineError as exc:
            raise UsageError(f"the WAF engine: {exc}") from exc
        except (OSError, ValueError) as exc:   # no CRS rules where [waf] crs_dir says; an impossible setting
            raise UsageError(f"the WAF rules: {exc}") from exc

    def ready(bound_host: str, bound_port: int) -> None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"hostguard: waf proxy listening on http://{shown}:{bound_port} -> {upstream.origin}{upstream.prefix} "
              f"(site {args.site}, mode {effective.mode}, events {event_log}); SIGINT or SIGTERM stops",
              file=sys.stderr, flush=True)

    waf_proxy.log_to(sys.stderr)
    if processes > 1:
        make_gate().close()   # the engine and the rules load: said now, before any worker starts

        def worker(sock: Any) -> None:
            gate = make_gate()   # each process its own engine, made after the fork
            try:
                asyncio.run(waf_proxy.serve(gate, upstream, host, port, timeout=args.timeout, sock=sock))
            finally:
                gate.close()

        _prefork(worker, host, port, processes, args.listen, ready)
        print("hostguard: waf proxy stopped", file=sys.stderr, flush=True)
        return EXIT_OK
    gate = make_gate()
    try:
        asyncio.run(waf_proxy.serve(gate, upstream, host, port, timeout=args.timeout, ready=ready))
    except OSError as exc:
        raise UsageError(f"--listen {args.listen}: {exc.strerror or exc}") from exc
    finally:
        gate.close()
    print("hostguard: waf proxy stopped", file=sys.stderr, flush=True)
    return EXIT_OK


def _prefork(worker: Any, host: str, port: int, processes: int, listen: str, ready: Any) -> None:
    """Bind ``host:port`` once, fork ``processes`` workers that accept on the shared socket (each running
    ``worker(sock)``), tell ``ready``, and on SIGINT or SIGTERM pass SIGTERM on and wait for every worker. A
    worker that ends on its own ends the others too (exit 2): a proxy missing workers is not left running."""
    import signal
    import socket
    import time

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        raise UsageError(f"--listen {listen}: {exc.strerror or exc}") from exc
    bound = sock.getsockname()
    children: list[int] = []
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in range(processes):
            # signals held across the fork: a SIGTERM in that instant must not run the parent's handler in the
            # new worker
            signal.pthread_sigmask(signal.SIG_BLOCK, list(previous))
            pid = os.fork()
            if pid == 0:   # the worker: default signals (serve() installs its own), then serve until told
                for sig in previous:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, list(previous))
                code = 0
                try:
                    worker(sock)
                except BaseException as exc:   # one line, then the parent ends the others
                    print(f"hostguard: waf proxy worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
                    code = 2
                os._exit(code)
            children.append(pid)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, list(previous))
        sock.close()
        ready(str(bound[0]), int(bound[1]))
        failed = False
        deadline: float | None = None
        while children:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if stopping and deadline is None:
                    deadline = time.monotonic() + STOP_GRACE
                if deadline is not None and time.monotonic() > deadline:   # stuck: ended for good
                    for child in children:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(child, signal.SIGKILL)
                time.sleep(0.1)
                continue
            if pid in children:
                children.remove(pid)
            if not stopping:   # nobody asked it to end
                failed = True
                stop(signal.SIGTERM, None)
        if failed:
            raise UsageError("waf proxy: a worker process ended on its own; the others were stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _accepted_exclusions(args: argparse.Namespace) -> list[Any]:
    """The exclusions the owner accepted (`waf exclusions --accept`), from state.db."""
    from hostguard.store.waf import ACCEPTED, WafStore

    state = open_state(args)
    try:
        return WafStore(state).exclusions(ACCEPTED)
    finally:
        state.close()


def run(args: argparse.Namespace) -> int:
    """Dispatch `waf` subcommands."""
    commands = {"proxy": proxy, "report": run_report, "exclusions": run_exclusions, "check": run_check,
                **SERVER_COMMANDS, "patches": run_patches}
    if args.waf_command not in commands:
        raise UsageError("waf: a command is required: " + ", ".join(commands))
    return commands[args.waf_command](args)


def add_learning_parsers(waf_sub: Any) -> None:
    """`waf report`, `waf exclusions` and `waf check`: what the front ends recorded, learning, the rules."""
    report = waf_sub.add_parser("report", help="what the WAF refused and scored: counts per rule, site, action and "
                                               "reason of a refusal before inspection")
    report.add_argument("--days", type=int, default=7, help="the last DAYS days (default 7)")
    report.add_argument("--block-after", type=int, metavar="N", default=0,
                        help="also list clients refused N or more times (for `hostguard block`)")
    report.add_argument("--format", choices=("table", "json"), default="table")
    excl = waf_sub.add_parser("exclusions", help="narrow exclusions learning proposed (rule x path x argument); "
                                                 "accept or reject them")
    excl.add_argument("--accept", metavar="ID", action="append", default=[], help="accept a proposal (repeat)")
    excl.add_argument("--reject", metavar="ID", action="append", default=[], help="reject a proposal (repeat)")
    excl.add_argument("--format", choices=("table", "json"), default="table")
    waf_sub.add_parser("check", help="load every rule file into the engine and report what it refuses "
                                     "(Debian ships no modsec-rules-check)")


def _learning_state(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from hostguard.cli.common import load_config
    from hostguard.store.waf import WafStore

    config = load_config(args.config)
    state = open_state(args)
    store = WafStore(state)
    try:
        from hostguard.waf.config import WafConfig

        ingested = store.ingest(_event_log(config[WafConfig].event_log, str(state.directory)))
    except OSError as exc:
        state.close()
        raise UsageError(f"event log: {exc.strerror or exc}") from exc
    if ingested.skipped:
        print(f"hostguard: warning: {ingested.skipped} lines of the event log are not events (skipped)",
              file=sys.stderr)
    ingest_enabled(state, store)   # the web servers' audit logs (`waf enable`)
    return config, state, store


def run_report(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from hostguard.waf.config import WafConfig
    from hostguard.waf.learn import repeat_offenders, rule_counts

    config, state, store = _learning_state(args)
    try:
        since = (datetime.now(UTC) - timedelta(days=args.days)).isoformat(timespec="seconds")
        events = list(store.events(since))
    finally:
        state.close()
    counts = rule_counts(events)
    actions: dict[str, int] = {}
    sites: dict[str, int] = {}
    refused: dict[str, int] = {}   # refused before the engine's verdict, by reason
    for e in events:
        actions[e.action] = actions.get(e.action, 0) + 1
        sites[e.site] = sites.get(e.site, 0) + 1
        if e.reason:
            refused[e.reason] = refused.get(e.reason, 0) + 1
    offenders = (repeat_offenders(events, args.block_after, config[WafConfig].trusted_proxies)
                 if args.block_after else [])
    if args.format == "json":
        print(json.dumps({"since": since, "events": len(events), "actions": actions, "sites": sites,
                          "refused": refused,
                          "rules": [{"id": c.rule_id, "msg": c.msg, "matched": c.matched, "blocked": c.blocked}
                                    for c in counts],
                          "offenders": [{"client": o.client, "blocked": o.blocked, "rules": list(o.rules),
                                         "first": o.first, "last": o.last} for o in offenders]}, indent=2))
        return EXIT_OK
    print(f"{len(events)} requests matched a rule or were refused since {since}: "
          + (", ".join(f"{n} {a}" for a, n in sorted(actions.items())) or "none"))
    if refused:
        print("  refused before inspection: " + ", ".join(f"{n} {r}" for r, n in sorted(refused.items(),
                                                                                          key=lambda i: (-i[1], i[0]))))
    for c in counts[:30]:
        print(f"  {c.rule_id:>6}  {c.matched:>6} matched  {c.blocked:>6} blocked  {one_line(c.msg)[:70]}")
    for o in offenders:
        print(f"refused {o.blocked} times: {o.client} (rules {', '.join(map(str, o.rules[:6]))}; "
              f"{o.first} .. {o.last}): hostguard block {o.client} --for 1d")
    return EXIT_OK


def run_exclusions(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from hostguard.store.waf import ACCEPTED, REJECTED
    from hostguard.waf.config import WafConfig
    from hostguard.waf.learn import propose

    config, state, store = _learning_state(args)
    cfg = config[WafConfig]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        new = [ex for ex in propose(store.events(actions=("detected",)), cfg.learn_min_networks, cfg.learn_min_days,
                                    now) if store.save_proposal(ex)]
        unknown = [i for i in (*args.accept, *args.reject)
                   if not store.decide(i, ACCEPTED if i in args.accept else REJECTED, now)]
        exclusions = store.exclusions()
    finally:
        state.close()
    if unknown:
        raise UsageError(f"no exclusion with id {', '.join(unknown)} (see `hostguard waf exclusions`)")
    if args.format == "json":
        print(json.dumps([{"id": e.id, "site": e.site, "rule": e.rule_id, "path": e.path, "variable": e.variable,
                           "networks": e.networks, "days": e.days, "hits": e.hits, "state": e.state,
                           "proposed_at": e.proposed_at, "decided_at": e.decided_at} for e in exclusions], indent=2))
        return EXIT_OK
    if new:
        print(f"{len(new)} new proposals from detection-only traffic")
    for e in exclusions:
        print(f"{e.id}  {e.state:<8}  site {one_line(e.site)}: rule {e.rule_id} stops reading {one_line(e.variable)} "
              f"on {one_line(e.path)} ({e.hits} hits from {e.networks} networks on {e.days} days)")
    if not exclusions:
        print("no exclusions proposed yet: run the WAF in detection-only mode ([waf] mode = \"detect\") for a few "
              "days of ordinary traffic")
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    import glob

    from hostguard.waf.config import WafConfig
    from hostguard.waf.documents import text_body_rule
    from hostguard.waf.engine import EngineError, check_rules
    from hostguard.waf.narrowing import document_rule_ids, narrowed, narrowed_rules
    from hostguard.waf.ruleset import _data_path, own_rule_files
    from hostguard.waf.vpatch import PatchError, catalogue, check_patch_rules

    files = [_data_path("base.conf"), *own_rule_files(), *sorted(glob.glob(_data_path("exclusions") + "/*.conf"))]
    try:
        patches = catalogue()
        waf = load_config(args.config)[WafConfig]
        made = narrowed(waf.crs_dir, waf.remove_ids)
        generated = {"narrowings.toml": narrowed_rules(made), "documents.toml": text_body_rule(document_rule_ids(made))}
    except (PatchError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    try:
        problems = check_rules(files, generated)
        refused = check_patch_rules(patches.values())
    except EngineError as exc:
        raise UsageError(str(exc)) from exc
    for path, error in problems:
        print(f"{path}: {error}")
    for patch_id, error in refused:
        print(f"virtual patch {patch_id}: {error}")
    total = len(files) + len(generated)
    print(f"{total - len(problems)} of {total} rule files load; {len(patches) - len(refused)} of "
          f"{len(patches)} virtual patches load")
    return EXIT_FINDINGS if problems or refused else EXIT_OK


def _ranges(patch: Any) -> list[str]:
    """Each ``affected`` entry in a line: the package and its versions (``>=1.0 <1.2``, listed versions)."""
    out = []
    for aff in patch.affected:
        spans = []
        for rng in aff.ranges:
            span = []
            for evt in rng.events:
                op = {"introduced": ">=", "fixed": "<", "last_affected": "<=", "limit": "limit "}[evt.kind]
                if (evt.kind, evt.version) != ("introduced", "0"):
                    span.append(f"{op}{evt.version}")
            spans.append(" ".join(span) or "every version")
        spans += sorted(aff.versions)
        out.append(f"{aff.ecosystem} {aff.name} {', '.join(spans)}")
    return out


def run_patches(args: argparse.Namespace) -> int:
    """Every virtual patch: what it stops, whether the config the WAF reads enables it, and what installed here
    it applies to, with the version and where (the inventory `vulns scan` reads, matched by the advisory
    matcher against the patch's affected block)."""
    from hostguard.checks.vulns import VULNS_INVENTORY, WEB_APPS
    from hostguard.engine.facts import Facts
    from hostguard.host.base import HostError, Unavailable, open_host
    from hostguard.vulns.virtual_patches import applicable, installed, read_waf_config, target_path
    from hostguard.waf.vpatch import PatchError, catalogue

    if args.root is not None and not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: not a directory")
    config = load_config(args.config)
    try:
        patches = catalogue()
        host = open_host(args.root)
    except (PatchError, HostError) as exc:
        raise UsageError(str(exc)) from exc
    path = target_path(host.live, config.path)
    problem = None
    try:
        enabled: tuple[str, ...] | None = read_waf_config(host, path).enabled
    except HostError as exc:
        enabled, problem = None, str(exc)
        print(f"hostguard: warning: {exc}", file=sys.stderr)
    facts = Facts(host, config)
    try:
        things = installed(facts.get(VULNS_INVENTORY), facts.get(WEB_APPS))
    except (HostError, Unavailable) as exc:
        raise UsageError(f"the installed packages could not be read: {getattr(exc, 'detail', '') or exc}") from exc
    found = applicable(patches.values(), things)
    if args.format == "json":
        print(json.dumps({"config": path, "config_problem": problem, "patches": [{
            "id": a.patch.id, "cves": list(a.patch.cves), "aliases": list(a.patch.aliases), "summary": a.patch.summary,
            "severity": a.patch.severity, "exploit": a.patch.exploit, "rules": list(a.patch.rule_ids),
            "references": list(a.patch.references), "enabled": None if enabled is None else a.patch.id in enabled,
            "applies": bool(a.covers),
            "applies_to": [{**t.to_dict(), "fixed": fix or "no fix yet"} for t, fix in a.covers],
            "unevaluated": [{**t.to_dict(), "reason": why} for t, why in a.unevaluated],
            "affected": _ranges(a.patch)} for a in found]}, indent=2))
        return EXIT_OK
    for a in found:
        state = "unknown" if enabled is None else ("enabled" if a.patch.id in enabled else "off")
        print(f"{a.patch.id}  {', '.join((*a.patch.cves, *a.patch.aliases))}  [{a.patch.severity}]  {state}")
        print(f"  {one_line(a.patch.summary)}")
        print(f"  stops: {one_line(a.patch.exploit)}")
        for thing, fix in a.covers:
            print(f"  applies: {one_line(thing.label())} ({thing.ecosystem}, {one_line(thing.origin)}; "
                  + (f"fixed in {one_line(fix)})" if fix else "no fix yet)"))
        for thing, why in a.unevaluated:
            print(f"  cannot tell: {one_line(thing.label())}: {one_line(why)}")
        if not a.covers and not a.unevaluated:
            print(f"  applies: nothing installed here ({'; '.join(_ranges(a.patch))})")
    covering = [a for a in found if a.covers]
    on = "" if enabled is None else f", {sum(a.patch.id in enabled for a in found)} enabled"
    print(f"{len(found)} virtual patches{on} in {path}; {len(covering)} apply to something installed here"
          + ("" if not [a for a in covering if enabled is not None and a.patch.id not in enabled] else
             ": `hostguard vulns scan` offers enabling them (`hostguard fix`)"))
    return EXIT_OK


ORDER = 28  # where its commands stand in `hostguard --help`
COMMANDS = {"waf": run}
