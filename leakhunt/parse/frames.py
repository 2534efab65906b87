"""One stack frame as each tool prints it -> ``model.Frame``.

BCC memleak (offsets hex, module base name; the address column exists from 0.25 on)::

    0x0000563cc6a8f18b\tleaky_alloc+0x12 [leak]
    operator new(unsigned long)+0x1c [libstdc++.so.6.0.30]
    [unknown] [libc.so.6]
    [unknown]
    kmem_cache_alloc+0x15c [kernel]

libbpf-tools memleak (the leading number is the frame index)::

    0 [<00007f939ce4224a>] __libc_start_call_main+0x7a [/usr/lib/x86_64-linux-gnu/libc.so.6]
    3 [<ffffffff8160d5b1>] __vmalloc_node_noprof+0x41
    2 [<00007f939ce4224a>] <null sym>

bpftrace ``ustack`` (offsets DECIMAL), default and ``perf`` forms, and ``kstack(perf)`` (no module:
the kernel's; the address is always 16 hex digits, glued to the name in >= 0.24's JSON keys)::

    leaky_alloc+15
    7f52eed60930 leaky_alloc+15 (/tmp/leak)
    7f52eed60930 ([unknown])
    ffffffff81652d20 kmem_cache_alloc_noprof+560

The functions here return None when a line is not a frame; they never raise.

``cut_garbage`` ends a user stack at its first frame that cannot be a code address (a frame-pointer
walk through code built without frame pointers reads saved registers and text as return addresses):
memleak then prints ``0x622d36313a383475 [unknown]`` ("u48:16-b" read as an address), a different
value per call, so one leak site becomes many stacks.
"""

from __future__ import annotations

import os
import re

from leakhunt.model import Frame

UNKNOWN = "[unknown]"

# Digits are bounded everywhere: int() of a huge digit string is slow and, past 4300 digits, raises.
# greedy: a C++ name may hold "+0x" itself (operator+), the offset is the last one
_SYM_HEX_OFF = re.compile(r"(?P<sym>.+)\+0x(?P<off>[0-9a-fA-F]{1,16})(?: \[(?P<mod>[^\]]*)\])?")
_SYM_MOD = re.compile(r"(?P<sym>.+?) \[(?P<mod>[^\]]*)\]")
_BCC_ADDR = re.compile(r"0x(?P<addr>[0-9a-fA-F]{1,16})\s+(?P<rest>.*)")
_LIBBPF = re.compile(r"\d{1,5} \[<(?P<addr>[0-9a-fA-F]{1,16})>\](?: (?P<rest>.*))?")
_BLAZE_LOC = re.compile(r"(?P<head>.+\+0x[0-9a-fA-F]{1,16}) (?P<loc>\S+):\d+")
_BT_SYM_DEC = re.compile(r"(?P<sym>.+)\+(?P<off>\d{1,12})")
_BT_PERF = re.compile(r"(?P<addr>[0-9a-fA-F]{1,16}) (?P<rest>.*?) ?\((?P<mod>[^()]*)\)")
_BT_KERNEL = re.compile(r"(?P<addr>[fF]{4}[0-9a-fA-F]{12}) ?(?P<rest>[^\s()]+)")
KERNEL_MODULE = "kernel"  # the module name memleak prints for kernel frames; used for bpftrace's too
_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]{1,16}")


CALLERS_LOST_NO_FP = "[callers lost: code without frame pointers]"
_USER_TOP = 0x0000_8000_0000_0000  # x86-64 / arm64 user addresses are below (canonical, 47-48 bits)
_KERNEL_BOTTOM = 0xFFFF_8000_0000_0000
_LOW = 0x10000  # nothing is mapped below (vm.mmap_min_addr); small values are counters or flags
_SMALL = "a small number, not an address"


def garbage_reason(frame: Frame) -> str | None:
    """Why ``frame`` cannot be a frame of a real stack, or None when it may be one.

    Only frames no tool could name are judged: a value that is not a canonical user address
    (kernel frames say ``[kernel]``), a tiny value, or eight printable bytes (text)."""
    if not frame.is_unknown or frame.module == "kernel":
        return None
    value = frame.address
    if value is None and frame.symbol.startswith("0x"):
        try:
            value = int(frame.symbol, 16)
        except ValueError:
            return None
    if value is None:
        return None
    if value >= _KERNEL_BOTTOM:
        return None
    raw = value.to_bytes(8, "little")
    if all(0x20 <= b < 0x7F for b in raw):
        return f"text read as an address ({raw.decode('ascii')!r})"
    if value >= _USER_TOP:
        return "not a user-space address"
    if value < _LOW:
        return _SMALL
    return None


def cut_garbage(frames: tuple[Frame, ...]) -> tuple[tuple[Frame, ...], str | None]:
    """``frames`` up to (not including) the first garbage frame, closed by a
    ``[callers lost: code without frame pointers]`` frame, and the reason; unchanged when clean.
    The stack keeps at least its first frame, so the allocation site stays."""
    for i, frame in enumerate(frames):
        reason = garbage_reason(frame)
        if reason is None or i == 0:
            continue
        if i == len(frames) - 1 and reason == _SMALL:
            # the value a frame-pointer chain ends on past the program's entry: nothing is lost
            return frames, None
        return (*frames[:i], Frame(CALLERS_LOST_NO_FP)), reason
    return frames, None


# Where a whole user stack ends: the program's entry and thread starts (glibc, musl, ld.so).
ENTRY_FUNCTIONS = frozenset(
    {
        "main",
        "_start",
        "__libc_start_main",
        "__libc_start_call_main",
        "__libc_start_main_impl",
        "start_thread",
        "clone",
        "clone3",
        "__clone",
        "__clone3",
        "__GI___clone",
        "__GI___clone3",
        "thread_start",
        "_dl_start_user",
        "_dl_init",
        "call_init",
    }
)


def ends_early(frames: tuple[Frame, ...]) -> bool:
    """True when a user stack stops at a named function that is not an entry point (``main``,
    ``_start``, a thread start): a frame-pointer walk lost its callers. Stacks ending in an unknown
    or bracketed frame (``[unknown]``, ``[callers lost...]``) and kernel stacks are not judged."""
    if not frames or any(f.module == "kernel" for f in frames):
        return False
    last = frames[-1]
    if last.symbol.startswith("[") or last.is_unknown:
        return False
    name = last.symbol.split("(", 1)[0].strip()
    return name not in ENTRY_FUNCTIONS


def module_name(text: str | None) -> str | None:
    """The base name of a module path (``/usr/lib/.../libc.so.6`` -> ``libc.so.6``)."""
    if not text or text == UNKNOWN:
        return None
    return os.path.basename(text.rstrip("/")) or text


def _symbol_hex_offset(text: str, address: int | None) -> Frame | None:
    """``name+0xOFF [module]``, ``name [module]``, ``[unknown] [module]``, ``[unknown]``."""
    text = text.strip()
    if not text:
        return None
    if text in (UNKNOWN, "<null sym>"):
        return Frame(UNKNOWN, None, None, address)
    m = _SYM_HEX_OFF.fullmatch(text)
    if m is not None:
        sym = m.group("sym")
        return Frame(sym, int(m.group("off"), 16), module_name(m.group("mod")), address)
    m = _SYM_MOD.fullmatch(text)
    if m is not None:
        sym = m.group("sym").strip()
        return Frame(sym or UNKNOWN, None, module_name(m.group("mod")), address)
    return Frame(text, None, None, address)


def parse_bcc_frame(line: str) -> Frame | None:
    """A BCC memleak frame line (leading whitespace allowed), or None for an empty line."""
    text = line.strip()
    if not text:
        return None
    m = _BCC_ADDR.fullmatch(text)
    if m is not None:
        return _symbol_hex_offset(m.group("rest"), int(m.group("addr"), 16))
    return _symbol_hex_offset(text, None)


def parse_libbpf_frame(line: str) -> Frame | None:
    """A libbpf-tools memleak frame line (``\\t0 [<addr>] sym+0xoff [module]``), or None."""
    m = _LIBBPF.fullmatch(line.strip())
    if m is None:
        return None
    address = int(m.group("addr"), 16)
    rest = (m.group("rest") or "").strip()
    if not rest or rest == "<null sym>":
        return Frame(UNKNOWN, None, None, address)
    if rest.startswith("[") and rest.endswith("]") and rest != UNKNOWN:
        # a module but no symbol: "[/usr/lib/libfoo.so]"
        return Frame(UNKNOWN, None, module_name(rest[1:-1]), address)
    blaze = _BLAZE_LOC.fullmatch(rest)
    if blaze is not None:
        frame = _symbol_hex_offset(blaze.group("head"), address)
        if frame is not None:
            return Frame(frame.symbol, frame.offset, module_name(blaze.group("loc")), address)
    return _symbol_hex_offset(rest, address)


def _bt_symbol(text: str, address: int | None, module: str | None) -> Frame:
    text = text.strip()
    if not text or text == UNKNOWN:
        return Frame(UNKNOWN, None, module, address)
    m = _BT_SYM_DEC.fullmatch(text)
    if m is not None:
        return Frame(m.group("sym"), int(m.group("off")), module, address)
    if _HEX.fullmatch(text):
        # bpftrace prints an address it could not name as bare hex
        value = int(text, 16)
        return Frame(f"0x{value:x}", None, module, address if address is not None else value)
    return Frame(text, None, module, address)


def parse_bpftrace_frame(line: str) -> Frame | None:
    """One line of a bpftrace ``ustack``/``kstack`` key, default or ``perf`` form, or None if empty.

    Also reads the space-less keys of bpftrace >= 0.24's JSON output
    (``7f52eed60930leaky_alloc+15(/tmp/leak)``); see ``_split_spaceless_perf``.
    """
    text = line.strip()
    if not text:
        return None
    if text.endswith(")"):
        m = _BT_PERF.fullmatch(text)
        if m is not None:
            address = int(m.group("addr"), 16)
            return _bt_symbol(m.group("rest"), address, module_name(m.group("mod")))
        split = _split_spaceless_perf(text)
        if split is not None:
            address, rest, mod = split
            return _bt_symbol(rest, address, module_name(mod))
    kernel = _BT_KERNEL.fullmatch(text)
    if kernel is not None:
        return _bt_symbol(kernel.group("rest"), int(kernel.group("addr"), 16), KERNEL_MODULE)
    return _bt_symbol(text, None, None)


def _split_spaceless_perf(text: str) -> tuple[int, str, str] | None:
    """Split ``7f52eed60930leaky_alloc+15(/tmp/leak)`` (bpftrace >= 0.24 JSON keys lost their spaces).

    The address and the symbol are glued together, so where the address ends is a guess: x86-64
    user addresses print as 12 hex digits (0x55.., 0x7f..), kernel ones as 16 (ffff..), and
    non-PIE executables' text as 6 (0x40....).
    """
    open_paren = text.rfind("(")
    if open_paren <= 0:
        return None
    head, mod = text[:open_paren], text[open_paren + 1 : -1]
    run = 0
    while run < len(head) and run < 16 and head[run] in "0123456789abcdefABCDEF":
        run += 1
    if run == 0:
        return None
    if run >= 16 and head.lower().startswith("ffff"):
        cut = 16
    elif run >= 12 and head[0] in "1234567":
        cut = 12
    elif run >= 6 and head[0] == "4":
        cut = 6
    else:
        cut = run
    return int(head[:cut], 16), head[cut:], mod
