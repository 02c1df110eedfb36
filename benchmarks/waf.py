"""How much the WAF costs and what it buys: `hostguard waf proxy` against the application direct, and against
plain libmodsecurity + CRS at paranoia level 1 driven the same way.

Three runs of ``wrk`` (Debian's) on mixed benign traffic — GETs with queries, form posts, JSON API posts, in
turn (a Lua script) — each for ``--seconds``:

* direct: wrk -> the application (a small aiohttp app answering 200, in its own process);
* hostguard: wrk -> ``hostguard waf proxy`` (hostguard's base config, tuning and own rules) -> the application;
* plain CRS: wrk -> the same proxy with ``[waf] own_rules = false`` and every CRS request rule file loaded,
  the application exclusion packages too, as Debian's ``owasp-crs.load`` does (what an untuned
  libmodsecurity + CRS PL1 does) -> the application.

Printed: requests/s, p50 and p99 latency (both proxies run at once and wrk drives them in turn, ``--rounds``
times: the medians), and the latency the WAF adds at p50/p99 over direct; the engine's own time per request of
the same mix, both rule sets inspected in turn in one process; then the blocked/passed rates of both rule sets
on the labelled corpora (tests/fixtures/waf/), read by the engine.
Targets (issue 14): >= 0.90 of attacks blocked with >= 0.97 of benign passing; throughput not below the plain
engine's.

Then ModSecurity in nginx (``hostguard waf enable --server nginx``, issue 15), the same traffic through a
private nginx on loopback (Debian's nginx and libnginx-mod-http-modsecurity, libmodsecurity3), in front of an
answer nginx itself gives (a second server block, ``return 200``: the application costs nothing, so what
differs is the module):

* nginx alone: the front server block proxies to the answering one;
* nginx + hostguard: the same with ``modsecurity on`` and the rules file ``waf enable`` writes (CRS,
  hostguard's base config, tuning and own rules, the JSON audit log);
* nginx + plain CRS PL1: the module with CRS 3.3's own lists and no hostguard rules.

Each of the three runs ``--rounds`` times, in turn (the order reversed every other round): the medians.

Run: .venv/bin/python benchmarks/waf.py [--seconds N] [--connections N] [--rounds N] [--only proxy|nginx]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = textwrap.dedent("""
    import sys
    from aiohttp import web

    async def answer(request):
        await request.read()
        return web.Response(text="ok")

    app = web.Application(client_max_size=1 << 24)
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
""")
# The mixed benign traffic: (method, target, content type, body), sent in turn by wrk (a Lua script made from
# this list) and inspected by the engine directly (the engine figures).
MIX = (
    ("GET", "/products?category=tea&sort=price&page=2", None, None),
    ("POST", "/contact", "application/x-www-form-urlencoded",
     "name=Ann+O%27Brien&email=ann%40example.test&message=Hello%2C+could+you+send+the+catalogue%3F"),
    ("POST", "/api/orders", "application/json",
     '{"customer": 42, "items": [{"sku": "TEA-7", "qty": 2}], "note": "leave at the door"}'),
    ("GET", "/search?q=green+tea+%26+honey&lang=en", None, None),
)


def crs_packages() -> tuple[str, ...]:
    """CRS 3.3's application exclusion packages (REQUEST-903.9xxx). Plain CRS loads them all, as Debian's
    ``owasp-crs.load`` does (``rules/*.conf``); hostguard loads only those a site asks for. Plain CRS gets them
    as extra rule files, after its other request rules: where they load changes nothing, none being asked for."""
    sys.path.insert(0, str(ROOT / "src"))
    from hostguard.waf.ruleset import CRS_RULES

    return tuple(sorted(glob.glob(os.path.join(CRS_RULES, "REQUEST-903.9*-EXCLUSION-RULES.conf"))))


def lua_script() -> str:
    """The wrk script sending MIX in turn."""
    lines = ["local requests = {}", "local n = 0", "init = function(args)"]
    for i, (method, target, content_type, body) in enumerate(MIX, 1):
        if content_type is None:
            lines.append(f'  requests[{i}] = wrk.format("{method}", "{target}")')
        else:
            lines.append(f'  requests[{i}] = wrk.format("{method}", "{target}", '
                         f'{{["Content-Type"] = "{content_type}"}}, [[{body}]])')
    lines += ["end", "request = function()", f"  n = n % {len(MIX)} + 1", "  return requests[n]", "end", ""]
    return "\n".join(lines)


PLAIN_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "multipart/related", "text/xml",
               "application/xml", "application/soap+xml", "application/json", "application/cloudevents+json",
               "application/cloudevents-batch+json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def wrk(port: int, script: str, seconds: int, connections: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of one wrk run."""
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", script,
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise SystemExit(f"wrk printed no {label} latency:\n{out}")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        print(f"  warning: {non2xx.group(1)} answers were not 2xx/3xx (a benign request refused?)")
    return float(rate.group(1)) if rate else 0.0, ms("50%"), ms("99%")


def proxy(upstream: int, config: Path, state: Path, processes: int) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "hostguard.cli", "--config", str(config), "--state", str(state),
                             "waf", "proxy", "--listen", f"127.0.0.1:{port}",
                             "--upstream", f"http://127.0.0.1:{upstream}", "--processes", str(processes)],
                            env=env, stderr=subprocess.DEVNULL, text=True)
    wait_port(port)
    return proc, port


def corpus_rates(plain: bool) -> tuple[float, float]:
    """(attacks blocked, benign passed) of a rule set on the corpora, read by the engine."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "src"))
    from hostguard.waf.engine import Engine, Request
    from hostguard.waf.ruleset import EXCLUSION_PACKAGES, WafSettings, assemble
    from tests.waf.corpus import load_cases, wire_headers

    engines: dict[str | None, Engine] = {}
    blocked = attacks = passed = benign = 0
    for case in load_cases():
        app = case.app if case.app in EXCLUSION_PACKAGES and not plain else None
        if app not in engines:
            settings = WafSettings(applications=(app,) if app else (), own_rules=not plain,
                                   **({"methods": ("GET", "HEAD", "POST", "OPTIONS"), "content_types": PLAIN_TYPES}
                                      if plain else {}))
            engines[app] = Engine(text=assemble(settings))
        body = case.body_bytes() or b""
        headers = [(n, v) for n, v in wire_headers(case, "shop.example.test")
                   if n.lower() not in ("transfer-encoding", "connection")]
        if body and not any(n.lower() == "content-length" for n, _ in headers):
            headers.append(("Content-Length", str(len(body))))
        refused = engines[app].inspect(Request(case.method, case.target, headers, body)).disruptive
        if case.kind == "attack":
            attacks += 1
            blocked += refused
        else:
            benign += 1
            passed += not refused
    for engine in engines.values():
        engine.close()
    return blocked / attacks, passed / benign


def engine_figures(rounds: int) -> tuple[float, float]:
    """Milliseconds per request of MIX in the engine itself, (hostguard, plain CRS): the two engines in one
    process, inspected in turn, round after round, so that the machine's noise falls on both alike."""
    sys.path.insert(0, str(ROOT / "src"))
    from hostguard.waf.engine import Engine, Request
    from hostguard.waf.ruleset import WafSettings, assemble

    headers = [("Host", "shop.example.test"), ("User-Agent", "wrk"), ("Accept", "*/*")]
    requests = []
    for method, target, content_type, body in MIX:
        data = (body or "").encode()
        extra = [("Content-Type", content_type), ("Content-Length", str(len(data)))] if content_type else []
        requests.append(Request(method, target, [*headers, *extra], data))
    engines = {"hostguard": Engine(text=assemble(WafSettings())),
               "plain": Engine(text=assemble(WafSettings(own_rules=False, extra_files=crs_packages())))}
    spent = dict.fromkeys(engines, 0.0)
    for n in range(rounds):
        for name in (("hostguard", "plain") if n % 2 else ("plain", "hostguard")):
            start = time.perf_counter()
            for _ in range(25):
                for request in requests:
                    engines[name].inspect(request)
            spent[name] += time.perf_counter() - start
    for engine in engines.values():
        engine.close()
    count = rounds * 25 * len(requests)
    return spent["hostguard"] / count * 1000, spent["plain"] / count * 1000


NGINX_MODULE = "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so"
NGINX_CONF = """\
load_module {module};
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    upstream answer {{ server 127.0.0.1:{back}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{back};
        location / {{ return 200 "ok\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{front};
        {modsecurity}
        location / {{
            proxy_pass http://answer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def nginx_figures(work: Path, script: str, seconds: int, connections: int,
                  rounds: int) -> dict[str, tuple[float, float, float]]:
    """wrk through a private nginx: alone, with hostguard's rules file, with plain CRS; ``rounds`` rounds, the
    three in turn (the order reversed every other round), the median of each reported."""
    sys.path.insert(0, str(ROOT / "src"))
    from hostguard.waf.ruleset import WafSettings, server_rules
    from hostguard.waf.servers import _audit

    nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if nginx is None or not os.path.exists(NGINX_MODULE):
        print(f"nginx or its ModSecurity module ({NGINX_MODULE}) is not installed: no nginx figures "
              "(apt-get install nginx libnginx-mod-http-modsecurity)")
        return {}
    logs = work / "logs"
    logs.mkdir()
    rules = {
        "nginx + hostguard": server_rules(WafSettings(), "libmodsecurity3"),
        "nginx + plain CRS": server_rules(WafSettings(own_rules=False, methods=("GET", "HEAD", "POST", "OPTIONS"),
                                                      content_types=PLAIN_TYPES, extra_files=crs_packages()),
                                          "libmodsecurity3"),
    }
    modsecurity = {"nginx alone": ""}
    for name, text in rules.items():
        path = work / f"{name.split()[-1]}.conf"
        path.write_text(text + _audit("nginx").replace("/var/log/nginx", str(logs)))
        modsecurity[name] = f"modsecurity on; modsecurity_rules_file {path};"
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in modsecurity}
    for n in range(rounds):
        for name in (list(modsecurity) if n % 2 == 0 else list(reversed(modsecurity))):
            front, back = free_port(), free_port()
            conf = work / "nginx.conf"
            conf.write_text(NGINX_CONF.format(module=NGINX_MODULE, work=work, back=back, front=front,
                                              modsecurity=modsecurity[name]))
            proc = subprocess.Popen([nginx, "-p", f"{work}/", "-c", str(conf), "-e", str(work / "error.log"), "-g",
                                     "daemon off;"], stderr=subprocess.DEVNULL)
            try:
                wait_port(front)
                runs[name].append(wrk(front, script, seconds, connections))
            finally:
                proc.send_signal(signal.SIGQUIT)   # graceful: the next run's ports and pid file are free
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    audit = logs / "hostguard-waf-audit.log"
    logged = audit.read_bytes().count(b"\n") if audit.exists() else 0
    if logged:
        print(f"  warning: {logged} benign requests matched a rule (audit log entries)")
    return {name: median_of(results) for name, results in runs.items()}


def median_of(results: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The median rate, p50 and p99 of several wrk runs (each taken apart)."""
    rate, p50, p99 = (statistics.median(r[i] for r in results) for i in range(3))
    return rate, p50, p99


def print_figures(title: str, figures: dict[str, tuple[float, float, float]], base_name: str) -> None:
    base = figures[base_name]
    print(title)
    for name, (rate, p50, p99) in figures.items():
        added = "" if name == base_name else f"  (adds {p50 - base[1]:.2f} ms p50, {p99 - base[2]:.2f} ms p99)"
        print(f"  {name:<18} {rate:>9.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms{added}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--processes", type=int, default=1, help="the proxy's worker processes (both rule sets)")
    parser.add_argument("--only", choices=("proxy", "nginx"), help="only the proxy's figures, or only nginx's")
    parser.add_argument("--rounds", type=int, default=3, help="alternating wrk runs per rule set (proxy and nginx)")
    parser.add_argument("--engine-rounds", type=int, default=40, help="alternating rounds of the engine figures")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if args.only != "proxy":
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            # a site's name in Host (wrk sends the address, which CRS scores: every request would be audit-logged)
            (work / "mixed.lua").write_text(lua_script().replace("init = function(args)\n",
                                                                  'init = function(args)\n  wrk.headers["Host"] = '
                                                                  '"shop.example.test"\n'))
            found = nginx_figures(work, str(work / "mixed.lua"), args.seconds, args.connections, args.rounds)
        if found:
            print_figures(f"mixed benign traffic through nginx, wrk -t2 -c{args.connections} -d{args.seconds}s, "
                          f"median of {args.rounds} alternating runs, {os.cpu_count()} CPUs:", found, "nginx alone")
            ratio = found["nginx + hostguard"][0] / found["nginx + plain CRS"][0]
            print(f"  hostguard / plain CRS throughput in nginx: {ratio:.2f} (target: not below 1.0)")
    if args.only == "nginx":
        return
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "app.py").write_text(APP)
        (work / "mixed.lua").write_text(lua_script())
        tuned = work / "hostguard.toml"
        tuned.write_text('[waf]\nevent_log = "/dev/null"\n')
        plain = work / "plain.toml"
        shipped = ", ".join(f'"{p}"' for p in crs_packages())
        plain.write_text(f'[waf]\nevent_log = "/dev/null"\nown_rules = false\nrules_files = [{shipped}]\n')
        app_port = free_port()
        app = subprocess.Popen([sys.executable, str(work / "app.py"), str(app_port)])
        procs: list[subprocess.Popen[str]] = []
        try:
            wait_port(app_port)
            script = str(work / "mixed.lua")
            figures = {"direct": wrk(app_port, script, args.seconds, args.connections)}
            ports = {}
            for name, config in (("hostguard", tuned), ("plain CRS PL1", plain)):
                proc, ports[name] = proxy(app_port, config, work / f"state-{len(procs)}", args.processes)
                procs.append(proc)
            # both proxies run; wrk drives them in turn, round after round (the median is reported)
            runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in ports}
            for n in range(args.rounds):
                for name in (list(ports) if n % 2 == 0 else list(reversed(ports))):
                    runs[name].append(wrk(ports[name], script, args.seconds, args.connections))
            for name, results in runs.items():
                figures[name] = median_of(results)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            app.kill()
            app.wait()
    print_figures(f"mixed benign traffic, wrk -t2 -c{args.connections} -d{args.seconds}s, proxy with {args.processes} "
                  f"process(es), median of {args.rounds} alternating runs, {os.cpu_count()} CPUs:", figures, "direct")
    ratio = figures["hostguard"][0] / figures["plain CRS PL1"][0]
    print(f"  hostguard / plain CRS throughput: {ratio:.2f} (target: not below 1.0)")
    tuned_ms, plain_ms = engine_figures(args.engine_rounds)
    print(f"  engine alone, the same mix in turn: hostguard {tuned_ms:.3f} ms, plain CRS {plain_ms:.3f} ms per request "
          f"(throughput {plain_ms / tuned_ms:.2f} of plain)")
    for name, is_plain in (("hostguard", False), ("plain CRS PL1", True)):
        blocked, passed = corpus_rates(is_plain)
        print(f"  corpora, {name:<14} attacks blocked {blocked:.3f}, benign passed {passed:.3f} "
              "(targets 0.90, 0.97)")


if __name__ == "__main__":
    main()
