"""The bpftrace trace script (templates/probe/trace.bt.j2): validated values, and bpftrace compiles it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from leakhunt.errors import UsageError
from leakhunt.probe import tools
from leakhunt.probe.bpftrace import render_trace_script

LIBC = next(
    (p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6") if Path(p).exists()),
    "/lib/x86_64-linux-gnu/libc.so.6",
)


def test_script_probes_each_allocator_once_and_filters_the_pid() -> None:
    script = render_trace_script(4242, LIBC)
    probes = re.findall(r"^(uprobe|uretprobe):([^:]+):(\w+)", script, flags=re.M)
    assert {path for _, path, _ in probes} == {LIBC}
    entry = sorted(fn for kind, _, fn in probes if kind == "uprobe")
    # aliases dropped, free once; reallocarray is hooked too (the realloc it calls inside glibc
    # is not printed twice: @inside gates nested calls)
    assert entry == sorted(set(tools.allocator_functions(LIBC)))
    assert "@inside[tid] == 0" in script
    uprobes = [line for line in script.splitlines() if line.startswith("uprobe")]
    # the target and its direct children
    assert all("(pid == 4242 || curtask->real_parent->tgid == 4242)" in line for line in uprobes)
    assert 'printf("leakhunt: tracing pid %d\\n", 4242)' in script


@pytest.mark.parametrize("pid", [0, -1, 2**64])
def test_bad_pids_never_reach_the_script(pid: int) -> None:
    with pytest.raises(UsageError):
        render_trace_script(pid, LIBC)


@pytest.mark.parametrize(
    "path", ["/opt/a b/libc.so.6", '/lib/libc.so.6:malloc { system("id") }', "libc.so.6"]
)
def test_unsafe_library_paths_are_refused(path: str) -> None:
    with pytest.raises(UsageError):
        render_trace_script(1, path)


def test_bpftrace_compiles_the_script(probe_env: None, tmp_path: Path) -> None:
    script = tmp_path / "trace.bt"
    script.write_text(render_trace_script(1, LIBC))
    proc = subprocess.run(
        ["bpftrace", "--emit-elf", str(tmp_path / "trace.elf"), str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "trace.elf").stat().st_size > 0
