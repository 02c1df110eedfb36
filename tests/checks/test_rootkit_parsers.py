"""Parsers of the kernel's own formats the rootkit family reads: known lines, round trips, and on arbitrary
text either a result or one clear HostError line, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.host.base import HostError
from hostguard.host.kernel import (
    ProcModule,
    module_name,
    parse_modules_builtin,
    parse_modules_dep,
    parse_proc_modules,
)
from hostguard.host.netif import PacketSocket, parse_flags, parse_packet_table

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from(":,()-\n\t 0x"),
               max_size=400)
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=20)


def test_proc_modules_lines_as_the_kernel_writes_them() -> None:
    text = ("veth 40960 0 - Live 0x0000000000000000\n"
            "nvidia 56885248 67 nvidia_uvm,nvidia_modeset, Live 0xffffffffc0a00000 (POE)\n"
            "ip_tables 32768 1 [permanent], Loading 0x0000000000000000\n"
            "nolunload 16384 - - Unloading 0x0000000000000000 (E)\n")
    assert parse_proc_modules(text) == [
        ProcModule("veth", 40960, 0, (), "Live", ""),
        ProcModule("nvidia", 56885248, 67, ("nvidia_uvm", "nvidia_modeset"), "Live", "POE"),
        ProcModule("ip_tables", 32768, 1, ("[permanent]",), "Loading", ""),
        ProcModule("nolunload", 16384, None, (), "Unloading", "E")]


@pytest.mark.parametrize("line", ["veth 40960 0 - Live", "veth x 0 - Live 0x0", "veth 1 0 - Live 0x0 (oe)",
                                  "veth 1 0 - Live 0x0 OE", "veth 1 ² - Live 0x0"])
def test_a_line_the_kernel_would_not_write_is_an_error(line: str) -> None:
    with pytest.raises(HostError, match=r"^/proc/modules line 1: "):
        parse_proc_modules(line + "\n")


@settings(max_examples=200)
@given(st.lists(st.tuples(NAME, st.integers(0, 2**32), st.integers(0, 999), st.lists(NAME, max_size=3),
                          st.sampled_from(["Live", "Loading", "Unloading"]), st.sampled_from(["", "O", "OE", "POE"]))))
def test_proc_modules_round_trip(mods: list[tuple[str, int, int, list[str], str, str]]) -> None:
    text = "".join(f"{n} {size} {ref} {''.join(u + ',' for u in users) or '-'} {state} 0x0" + (f" ({t})" if t else "")
                   + "\n" for n, size, ref, users, state, t in mods)
    assert parse_proc_modules(text) == [ProcModule(n, size, ref, tuple(users), state, t)
                                        for n, size, ref, users, state, t in mods]


@settings(max_examples=300)
@given(TEXT)
def test_parsers_never_crash(text: str) -> None:
    for parse in (parse_proc_modules, parse_modules_dep, parse_packet_table):
        try:
            parse(text)
        except HostError as exc:
            assert "\n" not in str(exc)
    parse_modules_builtin(text)
    try:
        parse_flags(text, "flags")
    except HostError as exc:
        assert "\n" not in str(exc)


def test_module_names_from_files() -> None:
    assert module_name("kernel/net/ipv4/ip-tunnel.ko.zst") == "ip_tunnel"
    assert module_name("/lib/modules/6.1.0/extra/foo.ko") == "foo"
    assert [module_name(p) for p in ("kernel/a.o", ".ko", "kernel/x.ko.bz2")] == [None, None, None]
    dep = "kernel/fs/ext4/ext4.ko.xz: kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz\nkernel/fs/mbcache.ko.xz:\n"
    assert parse_modules_dep(dep) == {"ext4": "kernel/fs/ext4/ext4.ko.xz", "mbcache": "kernel/fs/mbcache.ko.xz"}
    with pytest.raises(HostError, match=r"^modules.dep line 1: "):
        parse_modules_dep("kernel/fs/ext4/ext4.ko.xz kernel/fs/mbcache.ko.xz\n")
    assert parse_modules_builtin("kernel/lib/crc32c.ko\n\nkernel/drivers/char/mem.ko\n") == {"crc32c", "mem"}


def test_packet_table_and_flags() -> None:
    text = ("sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n"
            "0000000000000000 3      3    0003   5     1 0      0      31337\n"
            "ffff8880a1b2c3d4 3      2    0800   0     1 0      101    42\n")
    assert parse_packet_table(text) == [PacketSocket(3, 3, 5, 0, 31337), PacketSocket(2, 0x800, 0, 101, 42)]
    with pytest.raises(HostError, match=r"^/proc/net/packet line 2: "):
        parse_packet_table(text.replace("31337", "x"))
    assert parse_flags("0x1103\n", "f") == 0x1103
    with pytest.raises(HostError, match=r"^f: "):
        parse_flags("up\n", "f")
