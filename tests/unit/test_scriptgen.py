"""Probe script generation: only validated values reach a bpftrace script; injection is refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakhunt.errors import TargetError, UsageError
from leakhunt.probe import bpftrace, growth, kernel, memleak, placement, scriptgen, tools
from leakhunt.probe.backend import ProbeOptions

LIBC = tools.target_libc(os.getpid())


@pytest.mark.parametrize(
    "path",
    [
        "relative/libc.so.6",
        '/lib/libc.so.6:malloc { system("id") }',
        "/opt/a b/libc.so",
        "/opt/x\nBEGIN { exit(); }",
        '/opt/"quoted"',
        "/opt/$(id)",
        "/opt/`id`",
        "/opt/*.so",
        "/opt/../etc/passwd",
        "/opt/a;b",
        "/opt/{a}",
        "",
    ],
)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(UsageError):
        scriptgen.safe_path(path, must_exist=False)


def test_safe_path_must_exist() -> None:
    assert str(scriptgen.safe_path(LIBC)) == LIBC
    with pytest.raises(UsageError, match="does not exist"):
        scriptgen.safe_path("/no/such/libc.so.6")


@pytest.mark.parametrize("name", ["malloc; exit()", "1abc", "a-b", "", "free\n", "x" * 200, "é"])
def test_bad_identifiers_are_refused(name: str) -> None:
    with pytest.raises(UsageError):
        scriptgen.identifier(name)


@pytest.mark.parametrize("value", ["12; exit()", "-1", "0", "1e3", True, 2**64, 1.5, None, "0x10"])
def test_bad_integers_are_refused(value: object) -> None:
    with pytest.raises(UsageError):
        scriptgen.positive_int(value, "n")


def test_integers_from_text() -> None:
    assert scriptgen.positive_int("42", "n") == 42
    assert scriptgen.positive_int(0, "n", allow_zero=True) == 0


def test_render_refuses_unvalidated_strings() -> None:
    with pytest.raises(TypeError, match="not validated"):
        scriptgen.render_probe("investigate", lib=LIBC)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        scriptgen.render_probe("../../etc/passwd")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_is_either_refused_or_plain(text: str) -> None:
    try:
        path = scriptgen.safe_path("/" + text, must_exist=False)
    except UsageError:
        return
    # what passes can be neither a probe separator nor code
    assert re.fullmatch(r"/[A-Za-z0-9_./+@=,-]*", str(path))


def script(**overrides: object) -> str:
    opts = ProbeOptions(**{"interval": 2.0, **overrides})  # type: ignore[arg-type]
    return bpftrace.render_script(4321, LIBC, opts, armer=99)


def test_script_filters_the_pid_and_hooks_every_allocator_function() -> None:
    text = script()
    # reallocarray has a probe of its own: glibc's tail-jumps to realloc, and only the outer call
    # (one number per hooked function in @req) records the block
    funcs = tools.allocator_functions(LIBC)
    assert {"malloc", "calloc", "realloc", "free", "posix_memalign"} <= set(funcs)
    for fn in funcs:
        assert f"uprobe:{LIBC}:{fn} /pid == 4321" in text
        if fn != "free":
            assert f"uretprobe:{LIBC}:{fn} /pid == 4321" in text
    assert "interval:ms:2000" in text
    assert "ustack(perf" in text
    # armed by leakhunt (pid 99) once every probe is attached
    assert "sys_enter_kill /pid == 99 && args->pid == 4321" in text
    assert "older_than" not in text and "@pend_bytes" not in text
    assert "sched_process_exec" not in text
    launched = bpftrace.render_script(4321, LIBC, ProbeOptions(), armer=99, launched=True)
    assert "tracepoint:sched:sched_process_exec /pid == 4321/" in launched
    assert "sys_enter_kill" not in launched


def test_glibc_aliases_are_probed_once() -> None:
    symbols = tools.elf_functions(LIBC)
    if symbols.get("memalign") == symbols.get("aligned_alloc"):
        text = script()
        assert text.count(":memalign ") + text.count(":aligned_alloc ") == 2  # entry + return, once


def test_options_reach_the_script() -> None:
    text = script(min_size=64, max_size=8192, sample_rate=10, older_than_ms=500)
    assert "arg0 >= 64 && arg0 <= 8192" in text
    assert "rand % 10 == 0" in text
    assert ">= 500000000" in text and "@pend_bytes" in text


def test_static_binary_without_allocator_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no malloc or free"):
        bpftrace.render_script(4321, sys.executable, ProbeOptions())


def check_argv(bpftrace_path: str, text: str) -> list[str]:
    """bpftrace checking the program ``text`` without attaching anything: ``--dry-run`` where it
    exists (0.2x: there "-d ast" prints the tree and then runs the program), else "-d ast" (0.17:
    parses and checks the program, exits 1 on an error)."""
    done = subprocess.run([bpftrace_path, "--help"], capture_output=True, text=True, check=False)
    if "--dry-run" in done.stdout + done.stderr:
        return [bpftrace_path, "--dry-run", "-e", text]
    return [bpftrace_path, "-d", "ast", "-e", text]


@pytest.mark.parametrize("older_than_ms", [0, 500])
def test_rendered_scripts_compile(probe_env: None, older_than_ms: int) -> None:
    """bpftrace itself accepts the script (checked without attaching anything)."""
    tool = tools.find_bpftrace()
    assert tool is not None
    text = bpftrace.render_script(
        os.getpid(), LIBC, ProbeOptions(older_than_ms=older_than_ms), armer=os.getpid()
    )
    args = check_argv(tool.path, text)
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    # the same check refuses a broken script
    args[-1] = text + "\nBEGIN { @x = no_such_function(); }\n"
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode != 0


def test_memleak_argv_maps_every_option() -> None:
    tool = tools.Tool("/usr/sbin/memleak-bpfcc", "0.26.0", "bcc")
    argv = memleak.argv_for(
        tool,
        1234,
        ProbeOptions(
            interval=2.6, min_size=16, max_size=4096, sample_rate=3, older_than_ms=100, top=5, obj="jemalloc"
        ),
    )
    assert argv == (
        "/usr/sbin/memleak-bpfcc", "-p", "1234", "-z", "16", "-Z", "4096", "-s", "3", "-o", "100",
        "-T", "200", "-O", "jemalloc", "3",
    )  # fmt: skip
    assert memleak.argv_for(tool, 1, ProbeOptions()) == (
        "/usr/sbin/memleak-bpfcc",
        "-p",
        "1",
        "-T",
        "200",
        "5",
    )


def test_parse_version() -> None:
    assert tools.parse_version("bpftrace v0.23.2") == (0, 23, 2)
    assert tools.parse_version("no digits") == ()


def test_target_libc_of_this_process_and_errors() -> None:
    assert LIBC.endswith(("libc.so.6", ".so"))
    with pytest.raises(TargetError, match="no process"):
        tools.target_libc(999_999_999)
    with pytest.raises(TargetError, match="kernel thread"):
        tools.check_pid(2)


# --- kernel mode -----------------------------------------------------------------------------------


def test_kernel_script_filters_allocations_by_pid_but_never_frees() -> None:
    text = kernel.render_script(4321, ProbeOptions(interval=2), armer=99)
    for probe in ("kmem:kmalloc ", "kmem:kmem_cache_alloc "):
        line = next(line for line in text.splitlines() if line.startswith(f"tracepoint:{probe}"))
        assert "pid == 4321" in line and "@armed" in line
    for probe in ("kmem:kfree", "kmem:kmem_cache_free", "percpu:percpu_free_percpu"):
        assert f"tracepoint:{probe}\n" in text  # a free is counted whoever frees
    assert "args->pid == 4321" in text and "pid == 99" in text  # armed by leakhunt's kill(4321, 0)
    assert "interval:ms:2000" in text
    assert "mm_page_alloc" not in text  # pages only when asked


def test_kernel_script_without_pid_traces_every_task_and_arms_on_itself() -> None:
    text = kernel.render_script(None, ProbeOptions(kernel_pages=True, min_size=64), armer=77)
    alloc = next(line for line in text.splitlines() if line.startswith("tracepoint:kmem:kmalloc "))
    assert "pid ==" not in alloc and "args->bytes_alloc >= 64" in alloc
    assert "args->pid == 77" in text
    assert "tracepoint:kmem:mm_page_alloc" in text and "tracepoint:kmem:mm_page_free" in text


def test_kernel_memleak_argv_has_no_pid_and_refuses_what_it_cannot_do() -> None:
    tool = tools.Tool("/usr/sbin/memleak-bpfcc", "0.26.0", "bcc")
    assert kernel.memleak_argv(tool, ProbeOptions(interval=2, min_size=16)) == (
        "/usr/sbin/memleak-bpfcc", "-z", "16", "-T", "200", "2",
    )  # fmt: skip
    with pytest.raises(UsageError, match="--obj"):
        kernel.check_options(ProbeOptions(mode="kernel", obj="jemalloc"), "bpftrace", None)
    with pytest.raises(UsageError, match="by process"):
        kernel.check_options(ProbeOptions(mode="kernel"), "bcc", 1234)
    with pytest.raises(UsageError, match="libbpf"):
        kernel.memleak_argv(tools.Tool("/usr/sbin/memleak", "1.0", "libbpf"), ProbeOptions())


def test_kernel_script_counts_only_what_its_full_maps_could_hold() -> None:
    """A full map refuses new keys silently: each allocation's size is read back, and one that
    was not stored is noted in @untracked instead of being counted (its free could never be
    matched, so its stack would seem to leak). The map is printed with the others and cleared."""
    text = kernel.render_script(None, ProbeOptions(kernel_pages=True), armer=77)
    records = re.findall(
        r"@(slab|pcpu|pg)_size\[([^\]]+)\] = ([^;]+);\n(.*?)@allocs = sum\(1\);", text, flags=re.S
    )
    assert sorted({space for space, *_ in records}) == ["pcpu", "pg", "slab"]
    assert len(records) == 4  # kmalloc, kmem_cache_alloc, percpu, pages
    for space, addr, size, body in records:
        check = f"if (@{space}_size[{addr}] != {size}) {{"
        assert body.lstrip().startswith(check), body
        untracked, _, tracked = body.partition("} else {")
        assert "@untracked[$s] = count();" in untracked and "@bytes" not in untracked
        for counted in (
            f"@{space}_stk[{addr}] = $s;",
            "@bytes[$s] = sum(",
            "@count[$s] = sum(1);",
            "@live = sum(1);",
        ):
            assert counted in tracked, (space, tracked)
    interval = text[text.index("interval:ms:") :]
    assert (
        interval.index("print(@count);")
        < interval.index("print(@untracked);")
        < interval.index("print(@live);")
    )
    assert "clear(@untracked);" in text[text.index("END") :]


@pytest.mark.parametrize("pid", [None, 1])
def test_kernel_scripts_compile(probe_env: None, pid: int | None) -> None:
    tool = tools.find_bpftrace()
    assert tool is not None
    text = kernel.render_script(pid, ProbeOptions(kernel_pages=True, sample_rate=2), armer=os.getpid())
    args = check_argv(tool.path, text)
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


# --- growth mode -----------------------------------------------------------------------------------


def test_growth_script_counts_first_touch_faults_of_the_pid_only() -> None:
    text = growth.render_script(4321, ProbeOptions(interval=0.5), armer=99)
    fault = next(
        line for line in text.splitlines() if line.startswith("tracepoint:exceptions:page_fault_user")
    )
    assert "pid == 4321" in fault and "@armed" in fault and "(args->error_code & 1) == 0" in fault
    assert f"sum({os.sysconf('SC_PAGE_SIZE')})" in text
    assert "uprobe" not in text  # the point of growth mode: nothing on the allocator's hot path
    assert "interval:ms:500" in text and "args->pid == 4321" in text


def test_growth_mode_refuses_allocator_filters() -> None:
    growth.check_options(ProbeOptions(mode="growth"))
    with pytest.raises(UsageError, match="--min-size, --sample-rate"):
        growth.check_options(ProbeOptions(mode="growth", min_size=16, sample_rate=4))


def test_growth_script_compiles(probe_env: None) -> None:
    tool = tools.find_bpftrace()
    assert tool is not None
    text = growth.render_script(1, ProbeOptions(), armer=os.getpid(), launched=True)
    args = check_argv(tool.path, text)
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_bpftrace_022_and_later_probe_free_on_an_emulated_instruction(tmp_path: Path) -> None:
    """bpftrace >= 0.22 attaches at an offset with --unsafe: free's probe goes where the native
    probe would put it (probe.placement), so a free costs one emulated trap, not a single step."""
    libc = tools.target_libc(os.getpid())
    old = tools.Tool("/usr/bin/bpftrace", "0.17.0")
    new = tools.Tool("/usr/bin/bpftrace", "0.23.2")
    assert bpftrace.free_placement(old, libc) == (0, "")
    offset, note = bpftrace.free_placement(new, libc)
    assert offset > 0 and note == ""
    start = tools.elf_functions(libc)["free"]
    where = placement.place(placement.read_code(libc, start), frozenset({"rdi"}), address=start)
    assert where.emulated and where.offset == offset
    opts = ProbeOptions(duration=5, interval=1)
    script = str(tmp_path / "x.bt")
    cmd_new = bpftrace.BpftraceBackend(new, "test").investigate(
        os.getpid(), opts, script_path=script, launched=False
    )
    assert cmd_new.argv[:2] == ("/usr/bin/bpftrace", "--unsafe")
    assert cmd_new.script is not None and f"{libc}:free+{offset} /" in cmd_new.script
    cmd_old = bpftrace.BpftraceBackend(old, "test").investigate(
        os.getpid(), opts, script_path=script, launched=False
    )
    assert "--unsafe" not in cmd_old.argv
    assert cmd_old.script is not None and f"{libc}:free /" in cmd_old.script


def test_snapshots_have_a_last_line_and_end_says_only_cleanup_follows() -> None:
    """run_live's stop reads these signs (probe.bpftrace.starts_snapshot/ends_snapshot/is_end)."""
    text = script()
    begin = text[text.index("BEGIN") : text.index("}", text.index("BEGIN"))]
    assert "@frees = sum(0);" in begin  # printed every interval, even before the first free
    interval = text[text.index("interval:ms:") :]
    prints = re.findall(r"print\((@\w+)\)", interval[: interval.index("}")])
    assert prints[-1] == "@frees"  # the snapshot's last line
    end = text[text.index("\nEND\n") :]
    statements = [line.strip() for line in end.splitlines()[3:] if line.strip()]
    assert statements[0] == f'printf("{bpftrace.END_MARKER}\\n");'  # before the slow clears
    assert all(s.startswith("clear(") or s == "}" for s in statements[1:])


def test_the_stop_signs_of_bpftrace_output() -> None:
    # as bpftrace 0.17 prints them with -f json (tests/fixtures/bpftrace-0.17-protocol.json)
    assert bpftrace.starts_snapshot('{"type": "time", "data": "09:14:31\\n"}')
    assert bpftrace.starts_snapshot('{"type":"time","data":"09:14:31\\n"}')  # 0.24: no spaces
    assert not bpftrace.starts_snapshot('{"type": "printf", "data": "time\\n"}')
    assert bpftrace.ends_snapshot('{"type": "map", "data": {"@frees": 0}}')
    assert not bpftrace.ends_snapshot('{"type": "map", "data": {"@allocs": 12}}')
    assert bpftrace.is_end('{"type": "printf", "data": "leakhunt: end\\n"}')
    assert bpftrace.is_end("leakhunt: end")
    assert not bpftrace.is_end('{"type": "printf", "data": "leakhunt: ending\\n"}')
    assert bpftrace.is_chatter('{"type": "printf", "data": "leakhunt: end\\n"}')  # never a note
    assert not bpftrace.is_chatter('{"type": "printf", "data": "leakhunt: attached\\n"}')
