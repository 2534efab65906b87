"""What an adversarial run as root found in leakhunt's file handling (issue 13), as a user meets it:
real files, device nodes, FIFOs and symlinks made here, leakhunt run as a real process.

No probe runs here: ``report``, ``diff``, ``import`` and option checking only.
"""

from __future__ import annotations

import json
import os
import re
import resource
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_or_skip

FIXTURES = ROOT / "tests" / "fixtures"
GOOD = FIXTURES / "reports" / "investigation-bpftrace.json"
BEFORE = FIXTURES / "diff" / "investigation-v1.json"
AFTER = FIXTURES / "diff" / "investigation-v2.json"
MEMLEAK_LOG = FIXTURES / "bcc-0.26-periodic-a.txt"


@pytest.fixture
def needs_root() -> None:
    """Device nodes need mknod, so root: skipped elsewhere, a failure under CI=true."""
    require_or_skip(None if os.geteuid() == 0 else "makes device nodes (mknod needs root)")


def leakhunt(
    *args: str,
    stdout: int | None = subprocess.PIPE,
    stdin: int | None = subprocess.DEVNULL,
    timeout: float = 60,
    memory_limit: int | None = None,
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if memory_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run(
        [sys.executable, "-m", "leakhunt", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        stdin=stdin,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=limit if memory_limit is not None else None,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "leakhunt: error:" in proc.stderr, proc.stderr


# --- 1. -o never replaces a device, a FIFO or a link to a file descriptor ---------------------------


@pytest.mark.usefixtures("needs_root")
def test_output_into_a_device_streams_and_keeps_the_device(tmp_path: Path) -> None:
    null = tmp_path / "null"
    full = tmp_path / "full"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    ok = leakhunt("report", str(GOOD), "--format", "md", "-o", str(null))
    assert ok.returncode == 0, ok.stderr
    failed = leakhunt("report", str(GOOD), "--format", "md", "-o", str(full))
    assert_clean_error(failed)
    assert "No space left on device" in failed.stderr
    for node in (null, full):
        assert stat.S_ISCHR(node.lstat().st_mode), f"{node} was replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null"]  # no temporary left


@pytest.mark.usefixtures("needs_root")
def test_output_into_a_block_device_is_refused(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    os.mknod(disk, stat.S_IFBLK | 0o600, os.makedev(7, 200))  # a loop device number nobody uses
    proc = leakhunt("report", str(GOOD), "--format", "md", "-o", str(disk))
    assert_clean_error(proc)
    assert "block device" in proc.stderr
    assert stat.S_ISBLK(disk.lstat().st_mode)


def test_output_into_a_fifo_streams_to_its_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    reader = threading.Thread(target=read)
    reader.start()
    proc = leakhunt("report", str(GOOD), "--format", "md", "-o", str(fifo))
    reader.join(30)
    assert proc.returncode == 0, proc.stderr
    assert got and got[0].startswith(b"# ")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_output_into_a_fifo_without_reader_fails_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = leakhunt("report", str(GOOD), "--format", "md", "-o", str(fifo), timeout=20)
    assert_clean_error(proc)
    assert "no reader" in proc.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_output_into_a_link_to_stdout_streams(tmp_path: Path) -> None:
    link = tmp_path / "out"
    link.symlink_to("/proc/self/fd/1")
    proc = leakhunt("report", str(GOOD), "--format", "md", "-o", str(link))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# ")
    assert link.is_symlink()


# --- 7. ENOSPC on standard output -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("report", str(GOOD), "--format", "md", "-o", "-"),
        ("report", str(GOOD), "--format", "json", "-o", "-"),
        ("diff", str(BEFORE), str(AFTER)),
        ("diff", str(BEFORE), str(AFTER), "--format", "md", "-o", "-"),
        ("scan", "--duration", "1", "--interval", "0.5", "--json", "--pid", str(os.getpid())),
    ],
    ids=["report-md", "report-json", "diff", "diff-md", "scan-json"],
)
def test_full_stdout_is_a_clear_error(args: tuple[str, ...]) -> None:
    with open("/dev/full", "w") as full:
        proc = leakhunt(*args, stdout=full.fileno())
    # 2, never 1: for diff, 1 means "a leak was found"
    assert_clean_error(proc)
    assert "standard output" in proc.stderr
    assert "No space left on device" in proc.stderr
    assert "Exception ignored" not in proc.stderr


# --- 8. non-finite durations and intervals --------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("investigate", "1", "--duration", "inf"),
        ("investigate", "1", "--duration", "nan"),
        ("investigate", "1", "--interval", "inf"),
        ("investigate", "1", "--interval", "nan"),
        ("run", "--duration", "nan", "--", "/bin/true"),
        ("trace", "--duration", "inf", "1"),
        ("trace", "--bucket", "nan", "1"),
        ("scan", "--duration", "inf"),
        ("scan", "--duration", "nan"),
        ("scan", "--interval", "inf"),
        ("scan", "--interval", "nan"),
        ("scan", "--duration", "1e308"),
        ("investigate", "1", "--duration", "1e308"),
    ],
    ids=" ".join,
)
def test_non_finite_or_huge_times_are_refused_up_front(args: tuple[str, ...]) -> None:
    proc = leakhunt(*args, timeout=20)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Invalid value" in proc.stderr or "leakhunt: error" in proc.stderr, proc.stderr


# --- 9, 10. endless, huge and blocking input -------------------------------------------------------


@pytest.mark.parametrize("command", ["import", "report", "diff"])
def test_dev_zero_is_refused_quickly(command: str) -> None:
    args = ["/dev/zero", str(AFTER)] if command == "diff" else ["/dev/zero"]
    proc = leakhunt(command, *args, timeout=30, memory_limit=1 << 30)
    assert_clean_error(proc)
    assert "not a regular file" in proc.stderr


@pytest.mark.parametrize("command", ["import", "report"])
def test_endless_stdin_is_bounded(command: str) -> None:
    """`yes | leakhunt ...` style input: a pipe that never ends, under a 1 GiB memory limit."""
    with subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE) as zeros:
        assert zeros.stdout is not None
        proc = leakhunt(command, "-", stdin=zeros.stdout.fileno(), timeout=60, memory_limit=1 << 30)
        zeros.kill()
    assert_clean_error(proc)
    assert "too long" in proc.stderr or "too large" in proc.stderr


def test_huge_single_line_import_is_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    with open(big, "wb") as fh:
        fh.write(b"x" * (80 << 20))  # 80 MiB, no newline
    proc = leakhunt("import", str(big), "--output-dir", str(tmp_path / "out"), memory_limit=1 << 30)
    assert_clean_error(proc)
    assert "too long" in proc.stderr


@pytest.mark.parametrize("command", ["import", "report", "diff"])
def test_fifo_without_writer_does_not_hang(command: str, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = [str(fifo), str(AFTER)] if command == "diff" else [str(fifo)]
    proc = leakhunt(command, *args, "--output-dir", str(tmp_path / "out"), timeout=30)
    assert_clean_error(proc)
    assert "empty" in proc.stderr


def test_report_from_a_pipe_still_works(tmp_path: Path) -> None:
    """Process substitution and /dev/stdin are FIFOs: they stay readable."""
    with open(GOOD, "rb") as fh:
        proc = leakhunt("report", "/dev/stdin", "--format", "md", "-o", "-", stdin=fh.fileno())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# ")


# --- 11. hostile numbers and schema versions -------------------------------------------------------


def _hostile(tmp_path: Path, name: str, edit: str) -> Path:
    """GOOD with one text substitution (numbers that json.dumps would never write)."""
    text = GOOD.read_text()
    pid = json.loads(text)["target"]["pid"]
    first = f'"pid": {pid}'
    assert first in text
    path = tmp_path / name
    path.write_text(text.replace(first, f'"pid": {edit}', 1))
    return path


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("digits", "1" * 5000),
        ("pow", "1" + "0" * 4000),
        ("infinity", "Infinity"),
        ("nan", "NaN"),
        ("float-overflow", "1e4000"),
        ("u64", str(2**64)),
    ],
)
def test_hostile_numbers_are_clear_errors(tmp_path: Path, name: str, edit: str) -> None:
    bad = _hostile(tmp_path, f"{name}.json", edit)
    for args in (
        ("report", str(bad), "--format", "md", "-o", "-"),
        ("report", str(bad), "--format", "pprof", "-o", str(tmp_path / "x.pb.gz")),
        ("diff", str(bad), str(AFTER)),
    ):
        proc = leakhunt(*args)
        assert_clean_error(proc)


@pytest.mark.parametrize("edit", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_times_are_clear_errors(tmp_path: Path, edit: str) -> None:
    text = GOOD.read_text()
    duration = json.loads(text)["duration_s"]
    bad = tmp_path / "t.json"
    bad.write_text(text.replace(f'"duration_s": {duration}', f'"duration_s": {edit}', 1))
    assert bad.read_text() != text
    for args in (("report", str(bad), "--format", "md", "-o", "-"), ("diff", str(bad), str(AFTER))):
        assert_clean_error(leakhunt(*args))


def test_huge_byte_counts_are_clear_errors_in_pprof(tmp_path: Path) -> None:
    data = json.loads(GOOD.read_text())
    data["findings"][0]["outstanding_bytes"] = 2**64
    data["snapshots"][-1]["stacks"][0]["outstanding_bytes"] = 2**64 + 5
    bad = tmp_path / "u64.json"
    bad.write_text(json.dumps(data))
    proc = leakhunt("report", str(bad), "--format", "pprof", "-o", str(tmp_path / "x.pb.gz"))
    assert_clean_error(proc)


@pytest.mark.parametrize("version", [0, -1])
def test_schema_version_below_one_is_refused(tmp_path: Path, version: int) -> None:
    data = json.loads(GOOD.read_text())
    data["schema_version"] = version
    bad = tmp_path / "old.json"
    bad.write_text(json.dumps(data))
    proc = leakhunt("report", str(bad), "--format", "md", "-o", "-")
    assert_clean_error(proc)
    assert "schema_version" in proc.stderr


# --- 12, 13. control characters and secrets on the terminal and in text reports ---------------------

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b1m\u202e"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_import_of_hostile_symbols_prints_and_writes_them_harmlessly(tmp_path: Path) -> None:
    log = tmp_path / "memleak.log"
    log.write_text(MEMLEAK_LOG.read_text().replace("work+0xa1", f"work{HOSTILE}+0xa1"))
    proc = leakhunt("import", str(log), "--output-dir", str(tmp_path / "out"), "--format", "md,folded")
    assert proc.returncode == 0, proc.stderr
    assert "pwned" in proc.stdout  # the frame is shown ...
    assert not UNSAFE.search(proc.stdout + proc.stderr)  # ... with its escapes made visible
    for report in (tmp_path / "out").iterdir():
        assert not UNSAFE.search(report.read_text()), report.name


def test_scan_of_a_hostile_process_prints_it_harmlessly(tmp_path: Path) -> None:
    """A process that names itself with escape sequences and carries a password in its argv."""
    code = (
        "import ctypes, sys, time\n"
        "ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"  # PR_SET_NAME
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    name = "\x1b]0;pw\x07[/]"  # 15 bytes at most; '[/]' would be rich markup
    with subprocess.Popen(
        [sys.executable, "-c", code, name, "--password", "hunter2", "-H", "X-Api-Key: s3cr3t"],
        stdout=subprocess.PIPE,
        text=True,
    ) as target:
        try:
            assert target.stdout is not None and target.stdout.readline() == "ready\n"
            comm = Path(f"/proc/{target.pid}/comm").read_text()
            assert "\x1b" in comm  # the kernel kept the escape: the test is real
            out = tmp_path / "out"
            args = ("scan", "--pid", str(target.pid), "--duration", "1", "--interval", "0.25")
            proc = leakhunt(*args, "--output-dir", str(out), "--format", "md,json")
            as_json = leakhunt(*args, "--json", "--format", "md")
        finally:
            target.kill()
    assert proc.returncode == 0, proc.stderr
    assert as_json.returncode == 0, as_json.stderr
    texts = [proc.stdout, proc.stderr, as_json.stdout, as_json.stderr]
    texts += [p.read_text() for p in out.iterdir()]
    for text in texts:
        assert not UNSAFE.search(text), UNSAFE.findall(text)
        assert "hunter2" not in text and "s3cr3t" not in text
    assert "]0;pw" in proc.stdout  # the process is listed, its name shown harmlessly


# --- 3. --output-dir through a symlink says where the reports went -----------------------------------


def test_output_dir_symlink_says_where_reports_really_are(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    link = tmp_path / "reports"
    link.symlink_to(real)
    proc = leakhunt("report", str(GOOD), "--format", "md,json", "--output-dir", str(link))
    assert proc.returncode == 0, proc.stderr
    assert "symbolic link" in proc.stderr
    written = sorted(real.iterdir())
    assert len(written) == 2
    for path in written:
        assert f"report: {path}" in proc.stderr  # the real path, not the link's
