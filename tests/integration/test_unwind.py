"""Call stacks through code without frame pointers, named to the source line (native probe, DWARF).

tests/targets/unwind_leaker.c is built with -O2 and frame pointers, and with plain -O2 (none), and
tests/targets/cpp_leaker.cc with g++ -O2 -fno-omit-frame-pointer, whose shrink-wrapping sets the
frame up after the call to operator new. Frame-pointer walks lose callers in each (Debian's libc has
no frame pointers at all: strdup's caller is lost even in the first build); the native probe's
DWARF unwinding names the leaking function, its callers up to main, and the lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration._probecli import assert_no_probe_left, load_report, run_leakhunt

pytestmark = pytest.mark.probe

TARGETS = Path(__file__).resolve().parent.parent / "targets"


def line_of(source: str, marker: str) -> int:
    for i, line in enumerate((TARGETS / source).read_text().splitlines(), 1):
        if marker in line:
            return i
    raise AssertionError(marker)


def run_native(binary: Path, out: Path, seconds: str = "30") -> dict[str, Any]:
    code, _out, err = run_leakhunt(
        ["run", "--backend", "native", "--duration", "6", "--interval", "1", "--output-dir", str(out),
         "--format", "json,md", "--", str(binary), seconds],
        timeout=240,
    )  # fmt: skip
    report = load_report(out)
    # a target still running at the end is stopped by leakhunt, whose status is then the target's
    assert code == 0, err  # (a command stopped at the end of the run is no failure)
    assert_no_probe_left(report["target"]["pid"])
    return report


def function(frame: str) -> str:
    """``parse_request`` of ``parse_request+0x19 [prog] (unwind_leaker.c:26)``."""
    return re.split(r"\+0x| \[", frame, maxsplit=1)[0]


def chain(frames: list[str], names: list[str]) -> list[str]:
    """The frames that are ``names``, in order (each the first match after the previous one)."""
    found: list[str] = []
    rest = list(frames)
    for name in names:
        for i, frame in enumerate(rest):
            if function(frame) == name:
                found.append(frame)
                rest = rest[i + 1 :]
                break
        else:
            raise AssertionError(f"{name} not found after {found} in {frames}")
    return found


@pytest.mark.parametrize("flags", [("-O2", "-fno-omit-frame-pointer"), ("-O2",)], ids=["O2-fp", "O2"])
def test_leak_named_with_its_callers_and_lines(
    probe_env: None, build_target: Callable[..., Path], tmp_path: Path, flags: tuple[str, ...]
) -> None:
    report = run_native(build_target("unwind_leaker", flags=flags), tmp_path)
    top = report["findings"][0]
    assert top["verdict"] == "leak", report["findings"][:3]
    src = "unwind_leaker.c"
    buffer, parse, handle, serve, main = chain(
        top["frames"], ["make_buffer", "parse_request", "handle_request", "serve", "main"]
    )
    assert buffer.endswith(f"({src}:{line_of(src, 'LEAK: request buffer')}, inlined)")
    assert parse.endswith(f"({src}:{line_of(src, 'char *buf = make_buffer(id);')})")
    assert handle.endswith(f"({src}:{line_of(src, 'char *req = parse_request(id);')})")
    assert serve.endswith(f"({src}:{line_of(src, 'handle_request(round * 64 + i);')})")
    assert main.endswith(f"({src}:{line_of(src, 'serve(round);')})")
    # strdup (libc, no frame pointers) is named at its caller, with the line of the call
    dup = next(f for f in report["findings"] if "strdup" in function(f["frames"][0]))
    assert function(dup["frames"][1]) == "remember_name"
    assert dup["frames"][1].endswith(f"({src}:{line_of(src, 'LEAK: strdup')})")
    chain(dup["frames"], ["remember_name", "serve", "main"])
    # the request lines whose text a frame-pointer walk would read as callers
    stored = next(f for f in report["findings"] if function(f["frames"][0]) == "store_line")
    chain(stored["frames"], ["store_line", "log_request", "serve", "main"])
    assert not any("callers lost" in fr for f in report["findings"][:4] for fr in f["frames"])


def test_operator_new_named_at_its_caller_through_shrink_wrapping(
    probe_env: None, build_target: Callable[..., Path], tmp_path: Path
) -> None:
    binary = build_target("cpp_leaker", flags=("-O2", "-fno-omit-frame-pointer"))
    report = run_native(binary, tmp_path)
    top = report["findings"][0]
    assert top["verdict"] == "leak", report["findings"][:3]
    new, add, main = chain(
        top["frames"], ["operator new(unsigned long)", "app::Registry<app::Blob>::add(unsigned long)", "main"]
    )
    src = "cpp_leaker.cc"
    assert add.endswith(f"({src}:{line_of(src, 'items.push_back(std::make_unique<T>())')})")
    assert main.endswith(f"({src}:{line_of(src, 'registry.add(100);')})")
    assert "libstdc++" in new


def test_a_leak_after_thousands_of_short_lived_stacks_is_unwound(
    probe_env: None, build_target: Callable[..., Path], tmp_path: Path
) -> None:
    """The stack copies of new keys wait in a kernel map of 1,024 until the host program reads
    them. 4,096 start-up stacks freed before any snapshot used to keep that map full for good, so
    every stack that came after, the leak's too, was reported as '[callers lost] the probe's stack
    copy never reached leakhunt' (python3's start-up did this)."""
    binary = build_target("startup_churn", flags=("-O2",))
    report = run_native(binary, tmp_path, "4")
    assert report["findings"], report["quality"]
    top = report["findings"][0]
    assert chain(top["frames"], ["leak_after_startup", "main"])
    found = re.search(r"startup_churn\.c:(\d+)", top["frames"][0])
    assert found is not None, top["frames"]
    lines = range(line_of("startup_churn.c", "malloc(4096)"), line_of("startup_churn.c", "never freed") + 1)
    assert int(found.group(1)) in lines, top["frames"]
    assert top["outstanding_bytes"] >= 100 * 4096, top
    # path 0 keeps a block every 100 ms after start-up: named, with most of its blocks
    kept = [f for f in report["findings"] if f["frames"] and function(f["frames"][0]) == "churn_leaf"]
    assert sum(f["count"] for f in kept) >= 20, kept
    assert all(chain(f["frames"], ["churn_leaf", "walk_a", "main"]) for f in kept)
    # at most the odd block of a start-up stack seen once may lack its copy, and it is said
    lost = [f for f in report["findings"] if f["frames"] and "never reached leakhunt" in f["frames"][0]]
    assert sum(f["count"] for f in lost) <= 3, lost
    if lost:
        assert any("have no frames" in n for n in report["quality"]["notes"]), report["quality"]


def test_a_leak_inside_std_vector_is_named_at_the_programs_own_line(
    probe_env: None, build_target: Callable[..., Path], tmp_path: Path
) -> None:
    """std::vector<char>::resize allocates in _M_default_append (vector.tcc, a template compiled into
    the program, no frame pointers): the stack goes on to the program's own function, and the
    report's headline and source excerpt name that function and its line, not vector.tcc."""
    binary = build_target("cpp_session_leaker", "-pthread", flags=("-O2",))
    report = run_native(binary, tmp_path)
    src = "cpp_session_leaker.cc"
    leaks = [f for f in report["findings"] if f["verdict"] == "leak"]
    payload = next(f for f in leaks if any("_M_default_append" in fr for fr in f["frames"]))
    _append, make, _handle = chain(
        payload["frames"],
        ["std::vector<char, std::allocator<char> >::_M_default_append(unsigned long)",
         "make_session(int)", "handle_request(int)"],
    )  # fmt: skip
    line = line_of(src, "LEAK: the payload")
    assert make.endswith(f"({src}:{line})"), make
    assert payload["source"]["line"] == line, payload["source"]
    md = next(tmp_path.glob("*.md")).read_text()
    assert f"### {payload['rank']}. `make_session(int) ({src}:{line})`" in md, md[:3000]
    assert "vector.tcc" not in md.split("\n### ", 1)[0], md[:3000]  # not in the headline


def test_the_first_allocations_after_exec_keep_their_stacks(
    probe_env: None, build_target: Callable[..., Path], tmp_path: Path
) -> None:
    """Until the native host gave the program the new executable's mappings (it looked every
    0.1 s), stack keys hashed data words too: hundreds of new keys a tenth of a second, more than
    the 1,024 copies the program holds, and 57 of 256 blocks kept at start-up were reported as
    "[callers lost] the probe's stack copy never reached leakhunt". The host now watches for the
    exec every few ms."""
    binary = build_target("early_keep", flags=("-O2",))
    report = run_native(binary, tmp_path)
    kept = [f for f in report["findings"] if f["frames"] and function(f["frames"][0]) == "keep_block"]
    assert sum(f["count"] for f in kept) == 256, [(f["count"], f["frames"][:2]) for f in report["findings"]]
    assert all(chain(f["frames"], ["keep_block", "main"]) for f in kept)
    lost = [f for f in report["findings"] if any("never reached leakhunt" in fr for fr in f["frames"])]
    assert not lost, [(f["count"], f["outstanding_bytes"]) for f in lost]
