"""`logons ingest` on the log of a real OpenSSH server (the one of tests/logons/test_sshd_real.py, on loopback):
three wrong passwords for root, then root's good key. With the success-after threshold at three failures, that
success is the critical alert, and the brute-force threshold (left at its default) is not reached; reading the
log again raises nothing. The near misses of both detectors are in tests/detect."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.cli import main
from tests.conftest import need_root, need_tool
from tests.logons.test_sshd_real import Sshd


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    need_tool("sshd", "ssh", "ssh-keygen")
    need_root("a real sshd (privilege separation needs root and /run/sshd)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    server = Sshd(tmp_path, "INFO")
    try:
        yield server
    finally:
        server.stop()


def test_success_after_three_wrong_passwords_on_a_real_sshd(sshd: Sshd, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    sshd.ssh("root", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
             "-o", "NumberOfPasswordPrompts=3")
    sshd.ssh("root", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey",
             "-i", str(sshd.tmp / "good_key"), until="Accepted publickey")
    sshd.stop()
    config = tmp_path / "hg.toml"
    config.write_text("[detect.success_after]\nfailures = 3\n")
    argv = ["--state", str(tmp_path / "state"), "--config", str(config), "logons", "ingest", str(sshd.log),
            "--program", "sshd", "--format", "json"]
    capsys.readouterr()
    code = main(argv)
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [(a["id"], a["target"]) for a in doc["alerts"]] == [
        ("logon.success_after_brute_force", {"kind": "user", "user": "root", "service": "sshd",
                                             "address": "127.0.0.1"})]
    alert = doc["alerts"][0]
    assert alert["evidence"]["failures"] == 3 and alert["event"]["method"] == "publickey"
    assert alert["time"] is None  # `sshd -E` lines carry no time: the alert says so rather than invent one
    capsys.readouterr()
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["alerts"] == []
