"""The host program of leakhunt's own probe, run by the *system* Python (it has BCC's ``bcc`` module).

    /usr/bin/python3 native_host.py -p PID CONFIG.json

leakhunt (``leakhunt.probe.native``) renders the BPF C program, decides where each probe goes, and
writes CONFIG.json (0600, in its private temporary directory); this program compiles the C with
BCC, attaches every probe with ``pid=`` (the kernel fires them for the target only), then prints a
snapshot of the kernel's per-stack totals every interval until SIGINT, when it prints a last one and
exits. It imports nothing from leakhunt (the system Python need not have leakhunt's dependencies)
and checks the configuration's types again before using any of it.

Output, one record per line (read by ``leakhunt.parse.native``)::

    leakhunt-native: compiled
    leakhunt-native: attached 19 probes
    T 12:00:05 5.002                       a snapshot starts: wall clock, seconds since armed
    S 4096 4 4 0 3                         a stack: bytes, blocks, tracked blocks, variance, frames
    F 0x000055d0c0a1b18b leaky_alloc+0x12 [leak]
    F 0x000055d0c0a1b1c2 main+0x21 [leak]
    F 0x00007f939ce4224a __libc_start_call_main+0x7a [libc.so.6]
    C calls=10 allocs=9 frees=5 blocks_full=0 stack_lost=0 aggs_full=0 inflight_full=0 ...
    E                                      the snapshot ends
    leakhunt-native: target exited         the target has no address space any more (gone or a
                                           zombie): the snapshots after it show what it freed on
                                           its way out, and blocks no one will free
    leakhunt-native: stopped               after the last snapshot (SIGINT): only the detach follows

With DWARF unwinding (``"unwind": "dwarf"``) a stack is not walked here: its ``S`` line has no
``F`` lines but a ``U KEY`` line, and the first snapshot that has the key carries, before it, the
registers and the copied top of the stack for leakhunt to unwind::

    R 3735928559 0x55d0c0a1b18b 0x7ffd6c204e10 0x1 0a1b2c...   key, ip, sp, bp, the bytes in hex
    S 4096 4 4 0 0
    U 3735928559

Errors go to stderr with a non-zero exit status.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import signal
import sys
import time

COUNTERS = (
    "allocs",
    "frees",
    "blocks_full",
    "stack_lost",
    "aggs_full",
    "inflight_full",
    "calls",
    "sampled_out",
    "replaced",
    "stack_cached",
    "copy_deferred",
)
EXEC_WATCH_S = 3.0  # `run`: how long the exec is watched for closely (see main)
EXEC_POLL_S = 0.005
HELD_COPIES = 4096  # stack copies drained from the kernel and not sent yet (at most 8 KiB each)
LOST_STACK = 0xFFFFFFFF
STOPPED = "leakhunt-native: stopped"  # printed after the last snapshot (leakhunt.probe.native)
TARGET_EXITED = "leakhunt-native: target exited"  # in the stream, before the next snapshot
_PROGRAMS = {
    "lh_enter_alloc0",
    "lh_enter_alloc1",
    "lh_enter_calloc",
    "lh_enter_realloc",
    "lh_enter_reallocarray",
    "lh_enter_posix_memalign",
    "lh_free",
}


class ConfigError(Exception):
    pass


def _int(doc: dict[str, object], key: str, low: int = 0, high: int = 2**63 - 1) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key}: expected an integer in [{low}, {high}], got {value!r}")
    return value


def _str(doc: dict[str, object], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value or "\0" in value or "\n" in value:
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def load_config(path: str) -> dict[str, object]:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict):
        raise ConfigError("the configuration is not an object")
    hooks = doc.get("hooks")
    if not isinstance(hooks, list) or not hooks:
        raise ConfigError("hooks: expected a non-empty list")
    checked = []
    for hook in hooks:
        if not isinstance(hook, dict):
            raise ConfigError("hooks: expected objects")
        program = _str(hook, "program")
        if program not in _PROGRAMS:
            raise ConfigError(f"unknown program {program!r}")
        path_ = _str(hook, "path")
        if not os.path.isabs(path_):
            raise ConfigError(f"{path_!r} is not an absolute path")
        checked.append(
            {
                "path": path_,
                "symbol": _str(hook, "symbol"),
                "address": _int(hook, "address", 1),
                "program": program,
                "returns": bool(hook.get("returns")),
            }
        )
    return {
        "pid": _int(doc, "pid", 1, 2**22),
        "source": _str(doc, "source"),
        "interval_ms": _int(doc, "interval_ms", 100, 86_400_000),
        "arm_now": bool(doc.get("arm_now")),
        "older_than_ns": _int(doc, "older_than_ns"),
        "sample_bytes": _int(doc, "sample_bytes", 0, 1 << 28),
        "hooks": checked,
        "unwind_dwarf": doc.get("unwind") == "dwarf",
    }


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Host:
    def __init__(self, config: dict[str, object]) -> None:
        from bcc import BPF  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 (system Python only)

        self.config = config
        self.pid = int(config["pid"])  # type: ignore[call-overload]
        with open(str(config["source"]), encoding="utf-8") as fh:
            text = fh.read()
        self.bpf = BPF(text=text, cflags=["-Wno-macro-redefined", "-Wno-unused-function"])
        _say("leakhunt-native: compiled")
        self.t0 = time.monotonic()
        self.symbols: dict[int, str] = {}
        self.dwarf = bool(config.get("unwind_dwarf"))
        self.sent_copies: set[int] = set()
        # key -> (ip, sp, bp, stack bytes): copies taken out of the kernel's pending map (1,024
        # entries) every tick, so that stacks freed before any snapshot do not hold its room
        self.held: collections.OrderedDict[int, tuple[int, int, int, bytes]] = collections.OrderedDict()
        self.ranges: list[tuple[int, int]] = []
        self.sample_bytes = int(config["sample_bytes"])  # type: ignore[call-overload]
        if self.sample_bytes:
            table = self.bpf["ptable"]
            for k in range(4097):
                table[table.Key(k)] = table.Leaf(int((1.0 - math.exp(-k / 256.0)) * 2**32))

    def attach(self) -> int:
        n = 0
        hooks = self.config["hooks"]
        assert isinstance(hooks, list)
        # frees first: an allocation recorded before its free probe is in would never be released
        for hook in sorted(hooks, key=lambda h: h["program"] != "lh_free"):
            # By address (the ELF virtual address of the probed instruction; BCC turns it into the
            # file offset): the return probe shares the entry probe's address, so one trap serves
            # both (the stack pointer there still points at the return address; see placement.py).
            try:
                self.bpf.attach_uprobe(
                    name=hook["path"], addr=hook["address"], fn_name=hook["program"], pid=self.pid
                )
                n += 1
                if hook["returns"]:
                    self.bpf.attach_uretprobe(
                        name=hook["path"], addr=hook["address"], fn_name="lh_return", pid=self.pid
                    )
                    n += 1
            except Exception as err:
                raise RuntimeError(f"cannot attach to {hook['symbol']} in {hook['path']}: {err}") from err
        return n

    def arm(self) -> None:
        armed = self.bpf["armed"]
        armed[armed.Key(0)] = armed.Leaf(1)
        self.t0 = time.monotonic()

    def exec_pending(self) -> bool:
        """DWARF mode: whether the program cleared ``ranges_ok`` at an exec and waits for the new
        program's mappings (one map lookup)."""
        if not self.dwarf:
            return False
        ok = self.bpf["ranges_ok"]
        return not ok[ok.Key(0)].value

    def refresh_ranges(self) -> None:
        """DWARF mode: give the program the target's executable mappings (at most 8: the closest
        merged), the words of a stack copy that may be return addresses."""
        if not self.dwarf:
            return
        try:
            with open(f"/proc/{self.pid}/maps", encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return
        spans = []
        for line in lines:
            parts = line.split()
            if len(parts) < 2 or "x" not in parts[1]:
                continue
            lo, _, hi = parts[0].partition("-")
            try:
                start, end = int(lo, 16), int(hi, 16)
            except ValueError:
                continue
            if end <= 0x800000000000:
                spans.append([start, end])
        spans.sort()
        merged: list[list[int]] = []
        for span in spans:
            if merged and span[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], span[1])
            else:
                merged.append(span)
        while len(merged) > 8:
            gaps = [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]
            i = gaps.index(min(gaps))
            merged[i][1] = merged[i + 1][1]
            del merged[i + 1]
        ranges = [(a, b - a) for a, b in merged]
        ok = self.bpf["ranges_ok"]
        # cleared by the program at exec: the mappings read now are the new program's
        if ranges == self.ranges and ok[ok.Key(0)].value:
            return
        table = self.bpf["text_ranges"]
        whole = (ranges[0][0], ranges[-1][0] + ranges[-1][1] - ranges[0][0]) if ranges else (0, 0)
        for i in range(9):  # 8 ranges, then their span
            lo_, size = whole if i == 8 else ranges[i] if i < len(ranges) else (0, 0)
            leaf = table.Leaf()
            leaf.lo = lo_
            leaf.size = size
            table[table.Key(i)] = leaf
        ok[ok.Key(0)] = ok.Leaf(1)
        self.ranges = ranges

    def drain_copies(self) -> None:
        """DWARF mode: move the stack copies of new keys out of the kernel's pending map into
        ``held`` (the oldest go beyond HELD_COPIES), and free their kernel memory for the next
        new keys. A key freed before any snapshot would otherwise keep its room for good, and
        once the map is full every new stack, the leak's too, would never be unwound."""
        if not self.dwarf:
            return
        copies = self.bpf["ucopies"]
        try:
            entries = list(copies.items())
        except Exception:  # BCC raises plain Exception when a key vanishes during the walk
            return
        for k, c in entries:
            key = int(k.value)
            if key not in self.sent_copies:
                length = min(int(c.len), len(c.data))
                self.held[key] = (int(c.ip), int(c.sp), int(c.bp), bytes(bytearray(c.data)[:length]))
                self.held.move_to_end(key)
            with contextlib.suppress(KeyError):
                del copies[k]
        while len(self.held) > HELD_COPIES:
            self.held.popitem(last=False)

    def resend_copies(self, keys: set[int]) -> None:
        """Ask the program for these keys' copies again (their copy was pushed out of its LRU
        map before the host read it): forget that it knows them, and drop the call sites that
        point to them, so that the next allocation from such a stack copies it again."""
        known = self.bpf["ukeys"]
        forgotten = set()
        for key in keys:
            with contextlib.suppress(KeyError):
                del known[known.Key(key)]
                forgotten.add(key)
        # a call site caches only a key the program knew: asked once and not known again since,
        # a key has none (a one-off stack stays missing: no walk of the sites every snapshot)
        if not forgotten:
            return
        sites = self.bpf["sites"]
        try:
            stale = [k for k, site in sites.items() if int(site.key) in forgotten]
        except Exception:  # BCC raises plain Exception when an entry vanishes during the walk
            return
        for k in stale:
            with contextlib.suppress(KeyError):
                del sites[k]

    def _copy_line(self, key: int) -> str | None:
        """The ``R`` line of a stack key not sent yet (its registers and stack copy), or None."""
        if key in self.sent_copies or key == LOST_STACK:
            return None
        held = self.held.pop(key, None)
        if held is None:
            return None
        ip, sp, bp, data = held
        self.sent_copies.add(key)
        return f"R {key} {ip:#x} {sp:#x} {bp:#x} {data.hex()}"

    def _symbol(self, addr: int) -> str:
        text = self.symbols.get(addr)
        if text is None:
            raw = self.bpf.sym(addr, self.pid, show_module=True, show_offset=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            text = text.replace("\n", " ").replace("\r", " ")
            if "[unknown]" not in text:
                self.symbols[addr] = text
        return text

    def _rows(self) -> list[tuple[int, int, int, int, int]]:
        """(stack id, bytes, blocks/65536, tracked, variance) of every stack with bytes outstanding."""
        older = int(self.config["older_than_ns"])  # type: ignore[call-overload]
        rows: dict[int, list[int]] = {}
        if older:
            # memleak -o: only blocks older than that; read block by block
            now = _ktime_ns()
            for _addr, block in self.bpf["blocks"].items():
                if now - block.ts < older:
                    continue
                row = rows.setdefault(block.stack_id, [0, 0, 0, 0])
                row[0] += block.weight
                row[1] += block.cweight
                row[2] += 1
                row[3] += block.var
        else:
            sampled = self.sample_bytes > 0
            for key, agg in self.bpf["aggs"].items():
                if agg.kept > 0:
                    # exact: the program keeps no block fraction or variance (each block counts 1)
                    cblocks, var = (agg.cblocks, agg.var) if sampled else (agg.kept << 16, 0)
                    rows[key.value] = [agg.bytes, cblocks, agg.kept, var]
        return [(sid, r[0], r[1], r[2], r[3]) for sid, r in rows.items()]

    def counters(self) -> dict[str, int]:
        table = self.bpf["counters"]
        out = {}
        for i, name in enumerate(COUNTERS):
            out[name] = int(sum(table[table.Key(i)]))
        return out

    def snapshot(self) -> None:
        self.drain_copies()
        rows = self._rows()
        stacks = self.bpf["stack_traces"]
        out = [f"T {time.strftime('%H:%M:%S')} {time.monotonic() - self.t0:.3f}"]
        retried = False
        missing: set[int] = set()
        for sid, nbytes, cblocks, kept, var in sorted(rows, key=lambda r: -r[1]):
            if self.dwarf:
                copy = self._copy_line(sid)
                if copy is not None:
                    out.append(copy)
                elif sid not in self.sent_copies and sid != LOST_STACK:
                    missing.add(sid)
                out.append(f"S {nbytes} {(cblocks + 32768) >> 16} {kept} {var} 0")
                if sid != LOST_STACK:
                    out.append(f"U {sid}")
                continue
            frames: list[int] = []
            if sid != LOST_STACK:
                try:
                    frames = list(stacks.walk(sid))
                except KeyError:
                    frames = []
            texts = [self._symbol(a) for a in frames]
            # Not once the target is gone: a cache made then knows no mapping, every frame of the
            # last snapshot would change name and split each stack's series in two (seen with BCC
            # 0.31, which leaves libc's start frame [unknown], so the retry runs every snapshot).
            if not retried and any("[unknown]" in t for t in texts) and _has_mappings(self.pid):
                # a library loaded after the symbol cache was made: read the process's maps again
                retried = True
                _drop_symbol_cache(self.pid)
                texts = [self._symbol(a) for a in frames]
            blocks = (cblocks + 32768) >> 16
            out.append(f"S {nbytes} {blocks} {kept} {var} {len(frames)}")
            out.extend(f"F {a:#018x} {t}" for a, t in zip(frames, texts, strict=True))
        self.resend_copies(missing)
        counters = self.counters()
        counters["tracked"] = sum(r[3] for r in rows)
        out.append("C " + " ".join(f"{k}={v}" for k, v in counters.items()))
        out.append("E")
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()


def _ktime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _has_mappings(pid: int) -> bool:
    """True while the process has an address space (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as fh:
            return bool(fh.read(1))
    except OSError:
        return False


def _drop_symbol_cache(pid: int) -> None:
    try:
        from bcc import BPF  # noqa: PLC0415 (system Python only)

        BPF._sym_caches.pop(pid, None)
    except (ImportError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    # -p PID repeats the config's pid so that `ps` shows which process is probed
    if len(argv) != 4 or argv[1] != "-p" or not argv[2].isdigit():
        sys.stderr.write("usage: native_host.py -p PID CONFIG.json\n")
        return 2
    try:
        config = load_config(argv[3])
        if config["pid"] != int(argv[2]):
            raise ConfigError(f"-p {argv[2]} is not the configuration's pid {config['pid']}")
    except (OSError, ValueError, ConfigError) as err:
        sys.stderr.write(f"leakhunt-native: bad configuration: {err}\n")
        return 2
    interval = int(config["interval_ms"]) / 1000.0  # type: ignore[call-overload]
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        host = Host(config)
        n = host.attach()
    except Exception as err:  # BCC raises plain Exception for compile and attach failures
        sys.stderr.write(f"leakhunt-native: {err}\n")
        return 1
    host.refresh_ranges()
    if config["arm_now"]:
        host.arm()
    _say(f"leakhunt-native: attached {n} probes")
    due = time.monotonic() + interval
    exited = False

    def say_if_exited() -> None:
        # said in the stream, so that leakhunt places the exit between the right snapshots however
        # far behind it is in reading them; checked before every snapshot (a host whose snapshots
        # take longer than the interval never sleeps), the last one included
        nonlocal exited
        if not exited and not _has_mappings(host.pid):
            exited = True
            _say(TARGET_EXITED)

    # `run`: the command execs once the probes are in. Until the program has the new executable's
    # mappings, every user address on a stack counts as code, data words too, and nearly every
    # call makes a new stack key: 811 in the first 0.1 s of a malloc loop, beyond the program's
    # room for 1,024 copies (the rest: "[callers lost]"). So for the first seconds, the exec is
    # watched for every few ms, and the mappings given as soon as it comes.
    watch_until = time.monotonic() + EXEC_WATCH_S if host.dwarf and not config["arm_now"] else 0.0
    next_refresh = 0.0
    while not stop:
        say_if_exited()
        left = due - time.monotonic()
        if left > 0:
            watching = time.monotonic() < watch_until
            time.sleep(min(left, EXEC_POLL_S if watching else 0.1))
            if watching and time.monotonic() < next_refresh:
                if host.exec_pending():
                    host.refresh_ranges()
                continue
            next_refresh = time.monotonic() + 0.1
            host.refresh_ranges()  # a library loaded, or the launched command exec'd
            host.drain_copies()
            continue
        host.snapshot()
        due += interval
    say_if_exited()
    host.snapshot()
    # leakhunt need not wait for the detach (seconds: the kernel waits for RCU at every probe)
    _say(STOPPED)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
