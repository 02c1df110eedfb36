"""`hostguard fix` on a webshell found by `hostguard scan` (family malware) under --root: the file moves into
the quarantine, the re-scan no longer finds it, the ledger keeps the path as this machine sees it (so a restore
puts it back into the tree, never into this host's own /var/www), and the restore brings back the same bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.cli import main
from tests.conftest import HITS, build_tree
from tests.respond.test_fix import FAST, audit, scan

SHELL = "var/www/shop/uploads/cache.php"


def test_fix_quarantines_the_webshell_and_restore_brings_it_back(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    tree, state = build_tree(tmp_path / "tree", HITS / "malware.file"), tmp_path / "state"
    shell = tree / SHELL
    content = shell.read_bytes()
    [finding] = [f for f in scan(tree, state, "malware").values() if f.target["path"] == "/" + SHELL]
    assert finding.target["rule"] == "php_webshell_eval_request"
    assert main(["--config", FAST, "--state", str(state), "fix", "--root", str(tree), "--yes", finding.fingerprint]) == 0
    out = capsys.readouterr().out
    assert not shell.exists() and (tree / "var/www/shop/index.php").exists()
    assert finding.fingerprint not in scan(tree, state, "malware")
    entry = next(line.split()[-1] for line in out.splitlines() if "restore with: hostguard quarantine restore" in line)
    assert [s for a, s, _ in audit(state) if a == "quarantine"] == [entry]
    assert main(["--state", str(state), "quarantine", "list", "--format", "json"]) == 0
    listed = capsys.readouterr().out
    assert str(shell) in listed  # the path on this machine, inside the tree
    assert main(["--state", str(state), "quarantine", "restore", entry]) == 0
    assert shell.read_bytes() == content
    assert finding.fingerprint in scan(tree, state, "malware")
