"""`hostguard block`, `unblock` and `blocks`: drop an attacker's address in hostguard's own nftables table,
never the owner's; list the blocks; restore them after a firewall reload or a reboot (respond/block.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from hostguard.cli.common import EXIT_OK, UsageError, open_state

if TYPE_CHECKING:
    from hostguard.respond.block import Blocker
    from hostguard.respond.block_config import BlockConfig
    from hostguard.store.state import StateStore


def add_parser(sub: Any) -> None:
    """`block`, `unblock`, `blocks`."""
    p = sub.add_parser("block", help="drop an address or network in hostguard's nftables table (never the owner's)")
    p.add_argument("target", metavar="IP|CIDR", help="an address (IPv6: its /64, see [block] ipv6_prefix) or a network")
    p.add_argument("--for", dest="duration", metavar="DURATION",
                   help="how long: 10m, 1h, 7d, 2w, 1h30m (default: until unblocked)")
    p.add_argument("--reason", default="", metavar="TEXT", help="why (recorded with the block and in the audit log)")
    p.add_argument("--force", action="store_true",
                   help="record the block even when it covers an owner's address (the kernel's allow set still "
                        "accepts that address while it stays protected)")
    u = sub.add_parser("unblock", help="remove a block (every block equal to or inside the network given)")
    u.add_argument("target", metavar="IP|CIDR")
    u.add_argument("--reason", default="", metavar="TEXT", help="why (recorded in the audit log)")
    b = sub.add_parser("blocks", help="list the blocks in force; --restore writes them back to nftables")
    b.add_argument("--format", choices=("table", "json"), default="table")
    b.add_argument("--restore", action="store_true",
                   help="check hostguard's nftables table against state.db and write it again if it differs "
                        "(at boot and after firewall reloads: data/block/hostguard-blocks.service)")


def _config(path: str | None) -> BlockConfig:
    """[block] read with the rest of the config (the families' sections too, so a full file is accepted)."""
    from hostguard.config import ConfigError, load
    from hostguard.engine.registry import default_registry
    from hostguard.respond.block_config import BlockConfig

    try:
        return load(path, default_registry().schema())[BlockConfig]
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def _blocker(args: argparse.Namespace) -> tuple[Blocker, StateStore]:
    from hostguard.cli.common import host_key
    from hostguard.host.base import LiveHost
    from hostguard.respond.block import Blocker
    from hostguard.respond.nft_block import Nft
    from hostguard.respond.protect import collect

    config = _config(args.config)
    state = open_state(args)
    host = LiveHost()
    return Blocker(state, Nft(), lambda: collect(host, config.never), config, host_key(host, state)), state


def _run(args: argparse.Namespace, action: Any) -> int:
    """Run ``action(blocker)``; every refusal or failure is one line and exit 2."""
    from hostguard.respond.block import BlockError
    from hostguard.respond.nft_block import NftError

    blocker, state = _blocker(args)
    try:
        return int(action(blocker))
    except (BlockError, NftError) as exc:
        raise UsageError(str(exc)) from exc
    finally:
        state.close()


def block(args: argparse.Namespace) -> int:
    """Validate the input before anything else (a bad address or duration never reaches nft), then block."""
    from hostguard.respond.block import BlockError, parse_duration, parse_target

    try:
        seconds = parse_duration(args.duration) if args.duration is not None else None
        parse_target(args.target, 128)
    except BlockError as exc:
        raise UsageError(str(exc)) from exc

    def act(blocker: Blocker) -> int:
        outcome = blocker.block(args.target, seconds, args.reason, force=args.force)
        for problem in outcome.repaired:
            print(f"restored hostguard's table first: {problem}", file=sys.stderr)
        record = outcome.record
        until = "permanently" if record.expires is None else f"until {record.expires.isoformat(timespec='seconds')}"
        print(f"blocked {record.network} {until}: {record.reason}" if outcome.changed
              else f"{record.network} stays blocked {until}: {record.reason}")
        for note in outcome.notes:
            print(f"note: {note}")
        return EXIT_OK

    return _run(args, act)


def unblock(args: argparse.Namespace) -> int:
    """Remove the blocks equal to or inside the target."""
    from hostguard.respond.block import BlockError, parse_target

    try:
        parse_target(args.target, 128)
    except BlockError as exc:
        raise UsageError(str(exc)) from exc

    def act(blocker: Blocker) -> int:
        for record in blocker.unblock(args.target, args.reason):
            print(f"unblocked {record.network} (was: {record.reason})")
        return EXIT_OK

    return _run(args, act)


def blocks(args: argparse.Namespace) -> int:
    """List the blocks in force (and whether the kernel has them), or restore the table."""
    def act(blocker: Blocker) -> int:
        from hostguard.respond.nft_block import NftError

        if args.restore:
            outcome = blocker.verify_and_restore()
            if args.format == "json":
                print(json.dumps({"restored": outcome.restored, "problems": list(outcome.problems),
                                  "elements": outcome.elements}))
            elif outcome.restored:
                print(f"restored {outcome.elements} block element(s): {'; '.join(outcome.problems)}")
            else:
                print("hostguard's nftables table is in place")
            return EXIT_OK
        now = blocker.clock()
        records = blocker.listing()
        try:
            kernel: dict[str, Any] = {"problems": blocker.verify()}
        except NftError as exc:
            kernel = {"error": str(exc)}
        if args.format == "json":
            print(json.dumps({"blocks": [r.to_dict(now) for r in records], "kernel": kernel}, indent=2))
            return EXIT_OK
        for r in records:
            until = "permanent" if r.expires is None else f"until {r.expires.isoformat(timespec='seconds')}"
            print(f"{str(r.network):<24} {until:<32} {r.source:<16} {r.reason}" + ("  [forced]" if r.forced else ""))
        if not records:
            print("no blocks in force")
        for line in [kernel["error"]] if "error" in kernel else kernel["problems"]:
            print(f"kernel: {line} (hostguard blocks --restore writes it again)", file=sys.stderr)
        return EXIT_OK

    return _run(args, act)


ORDER = 60  # where its commands stand in `hostguard --help`
COMMANDS = {"block": block, "unblock": unblock, "blocks": blocks}
