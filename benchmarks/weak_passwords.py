"""Hashing throughput of the weak-password check: guesses per second, one core and all cores.

Anchor (issue #2): yescrypt costs about 18 ms per guess per core on this machine, so the guaranteed
floor (about 200 guesses per account) costs about 2 s per account on two cores.
"""

from __future__ import annotations

import os
import time

from hostguard.passwords.cracker import Target, crack
from hostguard.passwords.guesses import Guess, common_passwords
from hostguard.passwords.verifiers import crypt_verifier

ANCHOR_MS = 18.0
SETTINGS = {"yescrypt": "$y$j9T$hostguardbenchsalt0000", "sha512": "$6$hostguardbench$", "bcrypt":
            "$2b$10$hostguardbenchsalt0000u"}


def main() -> None:
    verifier = crypt_verifier()
    words = common_passwords()[5000:5000 + 120]
    for scheme, setting in SETTINGS.items():
        hashed = verifier.crypt(b"not-in-the-list-42", setting)
        t0 = time.perf_counter()
        for w in words[:30]:
            verifier.verify(w.encode(), hashed)
        single = (time.perf_counter() - t0) / 30
        target = Target("bench", hashed, [Guess(w, "bench") for w in words], [])
        workers = os.cpu_count() or 1
        t0 = time.perf_counter()
        crack([target], verifier, deadline=time.monotonic() + 3600, workers=workers)
        elapsed = time.perf_counter() - t0
        note = f"   (anchor: yescrypt ≈ {ANCHOR_MS:.0f} ms/guess/core)" if scheme == "yescrypt" else ""
        print(f"{scheme:<9} {single * 1000:6.1f} ms/guess on one core; {target.tried / elapsed:7.1f} guesses/s "
              f"on {workers} workers ({target.tried} tried){note}")


if __name__ == "__main__":
    main()
