"""How long ``services.weak_password`` takes against a real Redis with a strong password, beside its budget.

Issue 10's anchor: the service-password family stays within its configured time budget
(``[services] probe_seconds``), with a progress bar. A real ``redis-server`` is started on a unix socket in a
temp directory with a 32-character password; the check runs live against it (through the same facts as a
scan) once with the defaults (the cap of 50 attempts at 5 a second ends it) and once with a budget shorter
than the cap needs (the budget ends it). Printed: attempts, seconds, the budget, and the progress calls.
Run: ``.venv/bin/python benchmarks/service_probes.py`` (needs ``redis-server``).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hostguard.checks.services import ServicesConfig
from hostguard.config import build
from hostguard.engine.facts import HOST_ID, STATE, Facts
from hostguard.engine.registry import default_registry
from hostguard.engine.runner import run_check
from hostguard.findings import HostId
from hostguard.host.base import LiveHost, RootHost
from hostguard.host.services.configured import SERVICES, collect_services
from hostguard.store.state import StateStore

BENCH = HostId("bench-machine", "bench-state", "bench")


def run(scratch: Path, sock: Path, services_config: dict[str, Any]) -> None:
    registry = default_registry()
    config = build({"services": services_config}, registry.schema())
    [spec] = [c for c in registry.checks if c.id == "services.weak_password"]
    store = StateStore(str(scratch / f"state-{len(services_config)}"))
    facts = Facts(LiveHost(), config, given={SERVICES: collect_services(RootHost(str(scratch / "host"))),
                                             STATE: store, HOST_ID: BENCH})
    calls: list[int] = []
    t0 = time.perf_counter()
    found, skipped = run_check(spec, facts, progress=lambda _c, done, _t: calls.append(done))
    seconds = time.perf_counter() - t0
    [probe] = store.probes(BENCH.id)
    budget = config[ServicesConfig].probe_seconds
    print(f"probe_seconds={budget:>5.1f}: {probe.attempts:3d} attempts ({probe.outcome}) in {seconds:5.2f} s, "
          f"{len(calls)} progress updates, {len(found)} findings, skipped: "
          f"{[s.reason.value for s in skipped] or 'nothing'}   (anchor: within probe_seconds)")


def main() -> None:
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (scripts/install-system-deps.sh test installs it)")
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        sock = scratch / "redis.sock"
        conf = (f"port 0\nunixsocket {sock}\nunixsocketperm 700\ndir {scratch}\nsave \"\"\n"
                f"requirepass {secrets.token_urlsafe(24)}\n")
        (scratch / "host/etc/redis").mkdir(parents=True)
        (scratch / "host/etc/redis/redis.conf").write_text(conf)
        (scratch / "redis.conf").write_text(conf)
        server = subprocess.Popen(["redis-server", str(scratch / "redis.conf")], stdout=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if sock.exists():
                    break
                time.sleep(0.05)
            run(scratch, sock, {})
            run(scratch, sock, {"probe_seconds": 3.0})
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
