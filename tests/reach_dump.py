"""Print hostguard's reachability answer for every port of this (network namespace's) host as JSON.

Run inside a test's server namespace: the reality tests compare each answer with real connections. It is
what the firewall checks put in their findings' evidence, for every port (findings exist only for ports
open too widely).
"""

from __future__ import annotations

import json
import sys

from hostguard.config import load
from hostguard.engine.facts import Facts
from hostguard.engine.registry import default_registry
from hostguard.host.base import LiveHost
from hostguard.host.firewall import FIREWALL, REACH


def main() -> None:
    config = load(sys.argv[1], default_registry().schema())
    facts = Facts(LiveHost(), config)
    firewall = facts.get(FIREWALL)
    out = [{**pr.key(), **pr.evidence(firewall.sources, firewall.notes)} for pr in facts.get(REACH)]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
