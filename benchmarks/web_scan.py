"""How long ``hostguard scan --only web`` takes on a host with 10 sites and 100k files under their roots.

Issue 10's anchor: under 10 s. A ``--root`` tree is made in a temp directory: the clean fixture host plus an
nginx serving 10 sites (``site0.test`` … ``site9.test``, each its own root of 500 directories of 20 files,
root-owned 0644/0755, a WordPress-style uploads directory the web user owns) with a PHP location, as the
account ``web`` of the tree's passwd. Then the whole web family runs (admin paths, leftovers, phpinfo pages,
what the web user can write, PHP in writable directories, banners, listing): every root is walked for names
and for permissions. Run: ``.venv/bin/python benchmarks/web_scan.py [--runs N]`` (as root, so the files get
their owners).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from hostguard.config import build
from hostguard.engine.registry import default_registry
from hostguard.engine.runner import run_scan
from hostguard.host.base import RootHost
from hostguard.store.state import StateStore

ANCHOR_SECONDS = 10.0
SITES = 10
DIRS = 500
FILES = 20
WEB = 4242
CLEAN = Path(__file__).resolve().parent.parent / "tests/fixtures/hosts/clean"


def make_tree(base: Path) -> Path:
    """The clean host with an nginx of SITES sites of DIRS x FILES files each."""
    tree = base / "host"
    shutil.copytree(CLEAN, tree, symlinks=True)
    with open(tree / "etc/passwd", "a") as f:
        f.write(f"web:x:{WEB}:{WEB}:web:/var/www:/usr/sbin/nologin\n")
    with open(tree / "etc/group", "a") as f:
        f.write(f"web:x:{WEB}:\n")
    servers = []
    for s in range(SITES):
        root = tree / f"var/www/site{s}"
        for d in range(DIRS):
            directory = root / f"d{d}"
            directory.mkdir(parents=True)
            for n in range(FILES):
                (directory / f"f{n}.php").write_text("<?php echo 1;\n")
        uploads = root / "wp-content/uploads"
        uploads.mkdir(parents=True)
        (root / "wp-includes").mkdir()
        (root / "wp-includes/version.php").write_text("<?php $wp_version = '6.4';\n")
        if os.geteuid() == 0:
            os.chown(uploads, WEB, WEB)
        servers.append(f"    server {{ listen 80; server_name site{s}.test; root /var/www/site{s};\n"
                       "        location ~ \\.php$ { fastcgi_pass unix:/run/php/php8.2-fpm.sock; } }\n")
    (tree / "etc/nginx").mkdir(parents=True)
    (tree / "etc/nginx/nginx.conf").write_text("user web;\nevents { worker_connections 64; }\nhttp {\n"
                                               + "".join(servers) + "}\n")
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config = build({}, default_registry().schema())
    with tempfile.TemporaryDirectory() as scratch:
        t0 = time.perf_counter()
        tree = make_tree(Path(scratch))
        built = time.perf_counter() - t0
        times = []
        for _ in range(args.runs):
            state = StateStore(os.path.join(scratch, "state"))
            t0 = time.perf_counter()
            outcome = run_scan(RootHost(str(tree)), config, state, only=["web"], record=False)
            times.append(time.perf_counter() - t0)
            state.close()
    files = SITES * DIRS * FILES
    print(f"hostguard scan --only web, {SITES} sites, {files} files (tree built in {built:.1f} s), {args.runs} runs")
    print(f"  median {statistics.median(times):.2f} s   (anchor: < {ANCHOR_SECONDS:.0f} s)   "
          f"min {min(times):.2f} s  max {max(times):.2f} s")
    print(f"findings: {len(outcome.report.findings)}, not checked: {len(outcome.report.skipped)}")


if __name__ == "__main__":
    main()
