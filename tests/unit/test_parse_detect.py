"""Auto-detection of captured logs (`leakhunt import --kind auto`) and frame text of every tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from leakhunt.model import Frame
from leakhunt.parse.detect import detect_kind
from leakhunt.parse.frames import parse_bcc_frame, parse_bpftrace_frame, parse_libbpf_frame

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("bcc-0.26-periodic-cpp.txt", "memleak"),
        ("bcc-0.26-periodic-a.txt", "memleak"),
        ("bcc-0.26-kernel.txt", "memleak"),
        ("bcc-0.26-periodic-a-pasted.txt", "memleak"),  # no header, tabs lost
        ("bcc-0.26-trace.txt", "memleak-trace"),
        ("bpftrace-0.17-protocol.json", "bpftrace-json"),
        ("bpftrace-0.17-protocol.txt", "bpftrace"),
        ("bpftrace-0.17-protocol-default-stack.txt", "bpftrace"),
        ("bcc-0.31-periodic-cpp.txt", "memleak"),
        ("bcc-0.31-combined-only.txt", "memleak"),
        ("bcc-0.31-trace.txt", "memleak-trace"),
        ("bpftrace-0.23-protocol.json", "bpftrace-json"),
        ("bpftrace-0.23-protocol-default-stack.txt", "bpftrace"),
        ("bpftrace-0.23-trace.txt", "bpftrace-trace"),
        ("handmade/libbpf-tools-memleak.txt", "memleak"),
        ("handmade/bcc-old-spaces-blank-lines.txt", "memleak"),
        ("handmade/bcc-py2-trace-interleaved.txt", "memleak-trace"),
        ("handmade/bpftrace-0.24-protocol.json", "bpftrace-json"),
    ],
)
def test_every_fixture_is_detected_and_no_line_is_lost(name: str, kind: str) -> None:
    lines = (FIXTURES / name).read_text().splitlines()
    detection, rest = detect_kind(iter(lines))
    assert detection.kind == kind
    assert list(rest) == lines  # the lines peeked at are given back
    assert detection.evidence in [line.strip()[:120] for line in lines]


def test_nothing_detected_says_so() -> None:
    detection, rest = detect_kind(["hello", "", "world"])
    assert detection.kind is None and "none of the first 3 lines" in detection.describe()
    assert list(rest) == ["hello", "", "world"]


def test_bpftrace_trace_lines() -> None:
    detection, _ = detect_kind(
        ["Attaching 9 probes...", "leakhunt: tracing pid 5", "A 1 5 5 ff 8 app", "F 2 5 5 ff app"]
    )
    assert detection.kind == "bpftrace-trace"


@pytest.mark.parametrize(
    ("text", "frame"),
    [
        (
            "\t\t0x0000563cc6a8f18b\tleaky_alloc+0x12 [leak]",
            Frame("leaky_alloc", 0x12, "leak", 0x563CC6A8F18B),
        ),
        ("leaky_alloc+0x12 [leak]", Frame("leaky_alloc", 0x12, "leak")),
        ("[unknown] [libc.so.6]", Frame("[unknown]", None, "libc.so.6")),
        ("[unknown]", Frame("[unknown]")),
        ("operator+(Money, Money)+0x1c [app]", Frame("operator+(Money, Money)", 0x1C, "app")),
        ("kmem_cache_alloc+0x15c [kernel]", Frame("kmem_cache_alloc", 0x15C, "kernel")),
        ("   ", None),
    ],
)
def test_bcc_frames(text: str, frame: Frame | None) -> None:
    assert parse_bcc_frame(text) == frame


@pytest.mark.parametrize(
    ("text", "frame"),
    [
        ("\t3 [<00007f939ce4224a>] __libc_start_call_main+0x7a [/usr/lib/libc.so.6]",
         Frame("__libc_start_call_main", 0x7A, "libc.so.6", 0x7F939CE4224A)),
        ("\t4 [<0000000000000001>] <null sym>", Frame("[unknown]", None, None, 1)),
        ("\t0 [<ffffffff816360c7>] __kmalloc_cache_noprof+0x237",
         Frame("__kmalloc_cache_noprof", 0x237, None, 0xFFFFFFFF816360C7)),
        ("not a frame", None),
    ],
)  # fmt: skip
def test_libbpf_frames(text: str, frame: Frame | None) -> None:
    assert parse_libbpf_frame(text) == frame


@pytest.mark.parametrize(
    ("text", "frame"),
    [
        ("    leaky_alloc+15", Frame("leaky_alloc", 15)),
        ("\t7f52eed60930 leaky_alloc+15 (/tmp/leak)", Frame("leaky_alloc", 15, "leak", 0x7F52EED60930)),
        ("\t7f43506a958c operator new(unsigned long)+28 (/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30)",
         Frame("operator new(unsigned long)", 28, "libstdc++.so.6.0.30", 0x7F43506A958C)),
        ("\t7f52eed60930 [unknown] ([unknown])", Frame("[unknown]", None, None, 0x7F52EED60930)),
        ("    0x7f52eed60930", Frame("0x7f52eed60930", None, None, 0x7F52EED60930)),
        ("7f52eed60930add_item+4(/tmp/x)", Frame("add_item", 4, "x", 0x7F52EED60930)),
        ("ffffffff8162184bkmalloc+1(kernel)", Frame("kmalloc", 1, "kernel", 0xFFFFFFFF8162184B)),
        ("", None),
    ],
)  # fmt: skip
def test_bpftrace_frames(text: str, frame: Frame | None) -> None:
    assert parse_bpftrace_frame(text) == frame
