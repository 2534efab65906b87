"""Any allocator (issue 11): targets linked with or preloaded with Debian's jemalloc, tcmalloc and
mimalloc; the leak ranks first with its function named, with every backend that can hook it, and a
target whose allocator is not hooked is not given a clean report."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, TARGET_BIN, TARGETS
from tests.integration._probecli import (
    assert_no_probe_left,
    finish,
    load_report,
    run_leakhunt,
    start_leakhunt,
    stop_target,
    wait_for_stderr,
)

pytestmark = pytest.mark.probe

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
LIBS = {
    "jemalloc": LIBDIR / "libjemalloc.so.2",
    "tcmalloc": LIBDIR / "libtcmalloc_minimal.so.4",
    "mimalloc": LIBDIR / "libmimalloc.so.2",
}
LINK = {"jemalloc": "-ljemalloc", "tcmalloc": "-ltcmalloc_minimal", "mimalloc": "-lmimalloc"}
LEAK_FUNCTION = {"alloc_leaker": "leak_in_c", "alloc_leaker_cpp": "leak_with_new"}


def need_allocator(name: str) -> None:
    if not LIBS[name].exists():
        msg = f"{LIBS[name]} missing (scripts/setup.sh --with-test-tools installs it)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def build(source: str, allocator: str | None) -> Path:
    """tests/targets/SOURCE.c(c) linked with ``allocator`` (None: glibc) into tests/targets/bin/."""
    TARGET_BIN.mkdir(exist_ok=True)
    src = TARGETS / f"{source}.c"
    compiler = "gcc"
    if not src.exists():
        src, compiler = TARGETS / f"{source}.cc", "g++"
    out = TARGET_BIN / (f"{source}-{allocator}" if allocator else source)
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        flags = [LINK[allocator]] if allocator else []
        cmd = [compiler, "-O1", "-g", "-fno-omit-frame-pointer", "-o", str(out), str(src), *flags]
        subprocess.run(cmd, check=True)
    return out


def probe_args(backend: str, tmp_path: Path, duration: int = 6) -> list[str]:
    return [
        "--backend", backend, "--duration", str(duration), "--interval", "1",
        "--output-dir", str(tmp_path), "--format", "json,md",
    ]  # fmt: skip


def top_names(report: dict[str, Any]) -> list[str]:
    return [f["frames"][0].split("+")[0].split("(")[0] if f["frames"] else "" for f in report["findings"]]


def assert_leak_first(report: dict[str, Any], function: str, allocator: str) -> None:
    assert report["allocator"]["name"] == allocator, report["allocator"]
    first = report["findings"][0]
    assert first["verdict"] == "leak", (top_names(report), report["quality"]["notes"])
    assert first["frames"][0].split("+")[0].split("(")[0] == function, first["frames"][:3]
    # about 100 KiB/s: 20 blocks of 512 bytes every 100 ms
    assert 50_000 < first["growth_bytes_per_sec"] < 200_000
    assert not report["quality"].get("missed_allocations")


@pytest.mark.parametrize(
    ("source", "allocator", "backend"),
    [
        ("alloc_leaker", "jemalloc", "bpftrace"),
        ("alloc_leaker_cpp", "jemalloc", "bpftrace"),
        ("alloc_leaker_cpp", "tcmalloc", "bpftrace"),
        ("alloc_leaker", "mimalloc", "bpftrace"),
        ("alloc_leaker_cpp", "mimalloc", "native"),
        ("alloc_leaker_cpp", "jemalloc", "native"),
        ("alloc_leaker", "tcmalloc", "bcc"),
    ],
)
def test_linked_allocator_leak_ranks_first(
    probe_env: None, tmp_path: Path, source: str, allocator: str, backend: str
) -> None:
    need_allocator(allocator)
    binary = build(source, allocator)
    code, _out, err = run_leakhunt(["run", *probe_args(backend, tmp_path), "--", str(binary), "60"])
    assert code == 0, err  # the command is stopped with SIGTERM at the end: no failure of its own
    assert f"allocator {allocator}" in err  # said on the terminal before probing
    report = load_report(tmp_path)
    assert report["allocator"]["how"] == "linked"
    assert_leak_first(report, LEAK_FUNCTION[source], allocator)
    md = next(tmp_path.glob("*.md")).read_text()
    assert f"| Allocator | {allocator} " in md
    assert_no_probe_left(report["target"]["pid"])


@pytest.mark.parametrize(
    ("source", "allocator", "backend"),
    [("alloc_leaker_cpp", "tcmalloc", "bpftrace"), ("alloc_leaker", "mimalloc", "bpftrace")],
)
def test_preloaded_allocator_of_a_running_process(
    probe_env: None, tmp_path: Path, source: str, allocator: str, backend: str
) -> None:
    need_allocator(allocator)
    binary = build(source, None)
    env = {**os.environ, "LD_PRELOAD": str(LIBS[allocator])}
    target = subprocess.Popen([str(binary), "60"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert target.stdout is not None
        assert target.stdout.readline().startswith("ready")
        code, _out, err = run_leakhunt(["investigate", str(target.pid), *probe_args(backend, tmp_path)])
        assert code == 0, err
    finally:
        stop_target(target)
    report = load_report(tmp_path)
    assert report["allocator"]["how"] == "LD_PRELOAD"
    assert_leak_first(report, LEAK_FUNCTION[source], allocator)
    if source == "alloc_leaker_cpp":
        assert any(sym.startswith("_Znwm") for sym, _role in report["allocator"]["hooks"])


def test_memleak_that_cannot_hook_jemalloc_says_so_instead_of_a_false_all_clear(
    probe_env: None, tmp_path: Path
) -> None:
    need_allocator("jemalloc")
    binary = build("alloc_leaker", "jemalloc")
    code, _out, err = run_leakhunt(["run", *probe_args("bcc", tmp_path), "--", str(binary), "60"])
    memleak_py = Path("/usr/sbin/memleak-bpfcc")
    if memleak_py.exists() and "can_fail=True) # failed on jemalloc" not in memleak_py.read_text():
        # BCC < 0.29 (Debian 12: 0.26) needs mmap/munmap in the allocator object
        assert code == 2, err
        assert "cannot probe jemalloc" in err and "--backend bpftrace" in err
        assert not list(tmp_path.glob("*.json"))
    else:
        assert code == 0, err
        assert_leak_first(load_report(tmp_path), "leak_in_c", "jemalloc")


def test_an_allocator_left_unhooked_is_not_a_clean_result(
    probe_env: None, tmp_path: Path, build_target: Callable[..., Path]
) -> None:
    """--obj names glibc while the target allocates 3 MiB/s through jemalloc."""
    need_allocator("jemalloc")
    binary = build("alloc_leaker", "jemalloc")
    libc = next(p for p in (LIBDIR / "libc.so.6", Path("/lib/x86_64-linux-gnu/libc.so.6")) if p.exists())
    args = ["run", *probe_args("bpftrace", tmp_path), "--obj", str(libc), "--", str(binary), "60", "300"]
    code, out, _err = run_leakhunt(args)
    report = load_report(tmp_path)
    missed = report["quality"]["missed_allocations"]
    assert "allocator jemalloc (libjemalloc.so.2) not hooked" in missed, missed
    assert "warning: the process's anonymous memory grew" in out
    assert "no stack kept growing" not in out.replace("not a clean result", "")
    assert code != 0 or "not a clean result" in out.lower() or "inconclusive" in out.lower()
    md = next(tmp_path.glob("*.md")).read_text()
    assert "not a clean result" in md.lower()


# --- a real server: redis (Debian links it with jemalloc) ---------------------------------------

REDIS_WRAPPERS = ("zmalloc", "zcalloc", "zrealloc", "zmalloc_usable", "zcalloc_num", "zrealloc_usable")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if shutil.which(tool) is None:
            msg = f"{tool} missing (scripts/setup.sh --with-test-tools installs redis-server, redis-tools)"
            if IN_CI:
                pytest.fail(msg)
            pytest.skip(msg)
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "no", "--dir", str(tmp_path), "--logfile", str(tmp_path / "redis.log")],
        stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ping = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
        )
        if ping.stdout.strip() == "PONG":
            return server, port
        time.sleep(0.1)
    stop_target(server)
    raise AssertionError("redis-server did not answer PING")


class Benchmark:
    """redis-benchmark in short bursts (about 1000 requests a second), until stopped."""

    def __init__(self, port: int, command: str) -> None:
        self.stop = threading.Event()
        argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", command, "-r", "100000000",
                "-n", "500", "-c", "1", "-d", "64", "-q"]  # fmt: skip
        self.thread = threading.Thread(target=self._run, args=(argv,), daemon=True)
        self.thread.start()

    def _run(self, argv: list[str]) -> None:
        while not self.stop.is_set():
            subprocess.run(argv, capture_output=True, timeout=60, check=False)
            self.stop.wait(0.5)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=70)


@pytest.mark.parametrize("command", ["set", "get"])
def test_redis_keyspace_growth_is_found_and_get_only_is_not(
    probe_env: None, tmp_path: Path, command: str
) -> None:
    server, port = start_redis(tmp_path)
    out_dir = tmp_path / "reports"
    try:
        proc = start_leakhunt(["investigate", str(server.pid), *probe_args("bpftrace", out_dir, 10)])
        wait_for_stderr(proc, "probes attached")
        bench = Benchmark(port, command)
        try:
            code, _out, err = finish(proc, timeout=180)
        finally:
            bench.finish()
    finally:
        stop_target(server)
    assert code == 0, err
    report = load_report(out_dir)
    assert report["allocator"]["name"] == "jemalloc"
    leaks = [f for f in report["findings"] if f["verdict"] == "leak"]
    notes = " ".join(report["quality"]["notes"])
    if command == "get":
        assert not leaks, [f["frames"][:2] for f in leaks]
        return
    assert leaks, (top_names(report), notes)
    top = leaks[0]["frames"]
    # the innermost frame names redis' allocation wrapper (the binary exports its symbols)...
    assert top[0].split("+")[0] in REDIS_WRAPPERS, top
    # ...and what is missing is said: Debian builds redis without frame pointers or debug info
    assert "callers lost" in notes or "no debug info" in notes, notes
    assert "Leak found" in next(out_dir.glob("*.md")).read_text()
