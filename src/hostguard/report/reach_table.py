"""`hostguard firewall reach`: who can reach each port, as a table or JSON.

It sees plain entries (a port's key and the evidence the firewall findings carry), never host facts: the
same answer a finding's evidence holds, for every port, including the ones no finding is about.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import IO, Any

from rich.console import Console
from rich.table import Table


def render_json(entries: Sequence[Mapping[str, Any]]) -> str:
    """One object per port: port, proto, address, process, reachable_from, reach, decided_by, ..."""
    return json.dumps({"ports": list(entries)}, indent=2, ensure_ascii=False) + "\n"


def render_table(entries: Sequence[Mapping[str, Any]], out: IO[str], color: bool, width: int | None) -> None:
    """Port, address, process and who can reach it, one row per listening (or DNAT-published) port."""
    console = Console(file=out, force_terminal=color, no_color=not color, width=width, highlight=False)
    if not entries:
        console.print("No port listens beyond loopback and no port is published by DNAT.")
        return
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for name in ("PORT", "ADDRESS", "PROCESS", "WHO CAN REACH IT"):
        table.add_column(name, overflow="fold")
    for e in sorted(entries, key=lambda e: (e["proto"], e["port"], e["address"])):
        what = e.get("process") or (f"published to {e['dnat_to']}" if e.get("dnat_to") else "-")
        table.add_row(f"{e['port']}/{e['proto']}", str(e["address"]), str(what), str(e["reachable_from"]))
    console.print(table)
