"""How far down the guess list a second weak-password scan reaches, now that progress is remembered.

Ten yescrypt accounts whose password is in no list, the default budget (30 s shared by all accounts,
plus each account's guaranteed guesses), two full scans (`--only weak_passwords`) of one host tree with
one state directory. The figure to read is how far down the list each scan leaves the accounts (the
guesses tried against the hash so far, earlier scans included, as the scan itself reports them).
Anchor (issue 8): the second scan reaches further down the list than the first; without the cache it
started at the top again and reached exactly as far.
Run: .venv/bin/python benchmarks/weak_password_resume.py [--budget SECONDS] [--accounts N] [--scans N] [--fresh]
(``--fresh``: a new state directory per scan, i.e. no remembered progress: the comparison.)
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from hostguard.config import build
from hostguard.engine.registry import default_registry
from hostguard.engine.runner import run_scan
from hostguard.host.base import RootHost
from hostguard.passwords.verifiers import crypt_verifier
from hostguard.store.state import StateStore

SECRET = b"not-in-any-list-42!"
TRIED = re.compile(r"^account '([^']+)' \(yescrypt\): tried (\d+) of (\d+) guesses")


def _tree(root: Path, accounts: int) -> None:
    verifier = crypt_verifier()
    (root / "etc").mkdir(parents=True)
    passwd = ["root:x:0:0:root:/root:/bin/bash"]
    shadow = ["root:!:20000:0:99999:7:::"]
    for i in range(accounts):
        hashed = verifier.crypt(SECRET, f"$y$j9T$hgbenchresume{i:02d}salt000$")
        assert hashed is not None, "this libcrypt cannot compute yescrypt"
        passwd.append(f"user{i:02d}:x:{1001 + i}:{1001 + i}:Bench User {i},,,:/home/user{i:02d}:/bin/bash")
        shadow.append(f"user{i:02d}:{hashed}:20000:0:99999:7:::")
    group = ["root:x:0:", *(f"user{i:02d}:x:{1001 + i}:" for i in range(accounts))]
    for name, lines in (("passwd", passwd), ("shadow", shadow), ("group", group), ("hostname", ["bench.test"])):
        (root / "etc" / name).write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, help="weak_passwords.budget_seconds (default: the default, 30)")
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--scans", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="a new state directory per scan (nothing remembered)")
    args = parser.parse_args()
    registry = default_registry()
    section = {} if args.budget is None else {"weak_passwords": {"budget_seconds": args.budget}}
    config = build(section, registry.schema())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "host"
        _tree(root, args.accounts)
        budget = "default budget" if args.budget is None else f"budget {args.budget:g} s"
        where = "a new state directory each" if args.fresh else "one state directory"
        print(f"{args.accounts} yescrypt accounts, {budget}, {args.scans} scans of one tree, {where}")
        print(f"{'scan':>4} {'wall s':>7} {'reached: min':>13} {'median':>7} {'max':>6} {'this scan':>10} {'list':>7}")
        before: dict[str, int] = {}
        for n in range(1, args.scans + 1):
            state = StateStore(str(Path(tmp) / (f"state{n}" if args.fresh else "state")))
            t0 = time.monotonic()
            report = run_scan(RootHost(str(root)), config, state, only=["weak_passwords"]).report
            wall = time.monotonic() - t0
            state.close()
            reached: dict[str, int] = {}
            size = 0
            for skip in report.skipped:
                m = TRIED.match(skip.detail)
                if m:
                    reached[m[1]] = int(m[2])
                    size = int(m[3])
            if len(reached) != args.accounts:
                raise SystemExit(f"scan {n}: expected a budget skip per account, got {report.skipped}")
            this_scan = sum(reached[a] - (0 if args.fresh else before.get(a, 0)) for a in reached)
            values = sorted(reached.values())
            print(f"{n:>4} {wall:7.1f} {values[0]:13d} {statistics.median(values):7.0f} {values[-1]:6d} "
                  f"{this_scan:10d} {size:7d}")
            before = reached
    print("reached: guesses tried against each hash so far, earlier scans included (the list's top first); "
          "anchor: each scan reaches further than the one before")


if __name__ == "__main__":
    main()
