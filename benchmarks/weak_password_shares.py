"""How one weak-password budget is shared between accounts of different hash schemes.

Each account gets an equal share of the time beyond its floor, so the guesses it gets follow its hash's
cost: the figure to read is `spent` (about equal across accounts: the anchor is that they differ by no
more than a batch, SLICE seconds, plus one guess) beside `guesses` (proportional to 1 / cost). No password
here is in the list, so every account uses its whole share.
Run: .venv/bin/python benchmarks/weak_password_shares.py [--budget SECONDS] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import time

from hostguard.passwords.cracker import SLICE, Target, crack
from hostguard.passwords.guesses import plan
from hostguard.passwords.verifiers import crypt_verifier

SETTINGS = {"yescrypt": "$y$j9T$hostguardbenchsalt00$", "bcrypt": "$2b$10$hostguardbenchsaltsalt0",
            "sha512": "$6$hostguardbench$", "md5": "$1$hgbench$"}
SECRET = b"not-in-any-list-42!"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=12.0, help="seconds for all accounts together")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    verifier = crypt_verifier()
    targets = []
    for scheme, setting in SETTINGS.items():
        hashed = verifier.crypt(SECRET, setting)
        assert hashed is not None, scheme
        first, rest = plan(f"bench-{scheme}", "", "bench.test", (), 20)
        targets.append(Target(f"bench-{scheme}", hashed, first, rest))
    t0 = time.monotonic()
    crack(targets, verifier, deadline=t0 + args.budget, workers=args.workers)
    wall = time.monotonic() - t0
    print(f"budget {args.budget:g} s on {args.workers} workers, {wall:.1f} s wall")
    print(f"{'scheme':<9} {'ms/guess':>9} {'floor':>6} {'beyond':>7} {'spent s':>8}")
    for scheme, t in zip(SETTINGS, targets, strict=True):
        beyond = t.tried - len(t.first)
        print(f"{scheme:<9} {1000 * t.hashing / max(t.tried, 1):9.2f} {len(t.first):6d} {beyond:7d} {t.spent:8.2f}")
    spent = [t.spent for t in targets]
    print(f"spread of spent time: {max(spent) - min(spent):.2f} s (anchor: within a batch, {SLICE:g} s, plus one "
          "guess of the dearest scheme)")


if __name__ == "__main__":
    main()
