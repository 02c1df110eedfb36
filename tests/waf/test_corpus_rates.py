"""The labelled corpora (tests/fixtures/waf/) sent as real requests on loopback through the WAF in front of a
real application (ASGIMiddleware under uvicorn) and through the reverse proxy, and the rates asserted per category.

The same cases also go through ``hostguard waf proxy``'s Proxy in front of a real upstream (Python's
HTTP server). Each case is rendered byte for byte (chunked bodies as chunks) and sent on a socket; a refusal (403 from the
rules, 400 for a body the parser refused) is "blocked"; any answer of the application is "passed". Cases labelled
with an application run behind a gate configured for it (``[waf] applications``), as the owner of that site
would set it. What falls short of the issue's targets (0.90 of attacks blocked, 0.97 of benign passed) is
printed, case by case, in the failure message.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import pytest

from hostguard.waf.config import WafConfig, WafSite
from hostguard.waf.gate import Gate
from hostguard.waf.ruleset import EXCLUSION_PACKAGES
from tests.waf.corpus import Case, load_cases, render, send_raw
from tests.waf.test_engine import _need_library
from tests.waf.test_middleware import serve_asgi

# The floors these tests hold (below them is a regression); the targets are 0.90 and 0.97.
ATTACKS_BLOCKED = 0.94
BENIGN_PASSED = 0.97
CATEGORY_BLOCKED = 0.80
REFUSED = {400, 403}


@contextlib.contextmanager
def serve_proxy(gate: Gate) -> Iterator[int]:
    """The reverse proxy on 127.0.0.1 (its own event loop thread) in front of an echoing upstream."""
    import threading

    from hostguard.waf.proxy import Proxy, parse_upstream
    from tests.waf.test_proxy import Loop, _Echo, _Server

    upstream = _Server(("127.0.0.1", 0), _Echo)
    upstream.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    loop = Loop()
    proxy = Proxy(gate, parse_upstream(f"http://127.0.0.1:{upstream.server_address[1]}"), timeout=10.0,
                  connect_timeout=2.0)
    try:
        _, port = loop.run(proxy.start("127.0.0.1", 0))
        yield int(port)
    finally:
        loop.run(proxy.stop())
        loop.close()
        upstream.shutdown()
        upstream.server_close()


@contextlib.contextmanager
def serve_middleware(gate: Gate) -> Iterator[int]:
    with serve_asgi(gate) as backend:
        yield backend.port


@pytest.fixture(scope="module", params=["middleware", "proxy"])
def outcomes(request: pytest.FixtureRequest) -> Iterator[dict[str, tuple[Case, int]]]:
    _need_library()
    serve = serve_middleware if request.param == "middleware" else serve_proxy
    cases = load_cases()
    apps = sorted({c.app for c in cases if c.app in EXCLUSION_PACKAGES})
    # one site per application, with its exclusion package; the default site has none
    config = WafConfig(sites={app: WafSite(applications=(app,)) for app in apps})
    gates = {app: Gate(config, None, site=app or "default") for app in [None, *apps]}
    results: dict[str, tuple[Case, int]] = {}
    try:
        with contextlib.ExitStack() as stack:
            ports = {app: stack.enter_context(serve(gate)) for app, gate in gates.items()}
            for case in cases:
                port = ports[case.app if case.app in EXCLUSION_PACKAGES else None]
                status, _ = send_raw(render(case, "shop.example.test"), "127.0.0.1", port, timeout=10)
                assert status >= 200, (case.id, status)   # an answer; the echo app's own errors mean "passed"
                results[case.id] = (case, status)
    finally:
        for gate in gates.values():
            gate.close()
    yield results


def _misses(outcomes: dict[str, tuple[Case, int]], kind: str) -> list[str]:
    return [f"{c.id} ({c.note})" for c, status in outcomes.values()
            if c.kind == kind and (status in REFUSED) != (kind == "attack")]


def test_attacks_are_blocked(outcomes: dict[str, tuple[Case, int]]) -> None:
    attacks = [(c, s) for c, s in outcomes.values() if c.kind == "attack"]
    blocked = sum(s in REFUSED for _, s in attacks) / len(attacks)
    print(f"attacks blocked: {blocked:.3f} of {len(attacks)}")
    assert blocked >= ATTACKS_BLOCKED, "\n".join(_misses(outcomes, "attack"))


@pytest.mark.parametrize("category", sorted({c.category for c in load_cases("attack")}))
def test_each_attack_category_is_blocked(outcomes: dict[str, tuple[Case, int]], category: str) -> None:
    seen = Counter(s in REFUSED for c, s in outcomes.values() if c.kind == "attack" and c.category == category)
    rate = seen[True] / (seen[True] + seen[False])
    assert rate >= CATEGORY_BLOCKED, (rate, [m for m in _misses(outcomes, "attack") if m.startswith(category)])


def test_benign_requests_pass(outcomes: dict[str, tuple[Case, int]]) -> None:
    benign = [(c, s) for c, s in outcomes.values() if c.kind == "benign"]
    passed = sum(s not in REFUSED for _, s in benign) / len(benign)
    print(f"benign passed: {passed:.3f} of {len(benign)}")
    assert passed >= BENIGN_PASSED, "\n".join(_misses(outcomes, "benign"))
