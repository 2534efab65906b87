"""Real third-party readers of leakhunt's exports, for the tests: ``go tool pprof`` and speedscope.

scripts/setup.sh installs both: Debian's golang-go (``go tool pprof``) and speedscope from npm into
.venv/node, which runs in Debian's headless chromium. speedscope's own importers read the file (via
its ``#localProfilePath=`` hook, the one its command-line launcher uses), and its "sandwich" view
lists every function with its total and self value as an HTML table, which ``--dump-dom`` prints.
Without the tools, the tests that need them skip, except under CI=true where they fail.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from tests.conftest import ROOT, require_or_skip

SPEEDSCOPE = ROOT / ".venv" / "node" / "node_modules" / "speedscope" / "dist" / "release" / "index.html"


def go_pprof(profile: Path, *args: str) -> str:
    """``go tool pprof -symbolize=none ARGS PROFILE``'s stdout (no network: symbolization off)."""
    go = shutil.which("go")
    if go is None:
        require_or_skip("go not installed (scripts/setup.sh installs golang-go)")
        raise AssertionError("unreachable")
    with tempfile.TemporaryDirectory() as home:
        proc = subprocess.run(
            [go, "tool", "pprof", "-symbolize=none", *args, str(profile)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "HOME": home, "GOCACHE": home, "PPROF_TMPDIR": home},
            check=False,
        )
    assert proc.returncode == 0, f"go tool pprof failed: {proc.stderr}"
    return proc.stdout


@dataclass(frozen=True)
class PprofRawSample:
    values: tuple[int, ...]
    location_ids: tuple[int, ...]
    labels: str


@dataclass(frozen=True)
class PprofRaw:
    """``go tool pprof -raw``: sample types, samples and the function of each location id."""

    sample_types: tuple[str, ...]
    samples: tuple[PprofRawSample, ...]
    functions: dict[int, str]
    mappings: tuple[str, ...]


_RAW_SAMPLE = re.compile(r"^\s*(-?\d+(?:\s+-?\d+)*):((?:\s+\d+)+)\s*$")
_RAW_LOCATION = re.compile(r"^\s*(\d+): 0x[0-9a-f]+ (?:M=\d+ )?(.*?) :\d+ s=\d+$")


def go_pprof_raw(profile: Path) -> PprofRaw:
    """Parse what ``go tool pprof -raw`` prints of ``profile``."""
    text = go_pprof(profile, "-raw")
    section = ""
    types: tuple[str, ...] = ()
    samples: list[PprofRawSample] = []
    functions: dict[int, str] = {}
    mappings: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line in ("Samples:", "Locations", "Mappings"):
            section = line
            i += 1
            if section == "Samples:":
                types = tuple(t.replace("[dflt]", "") for t in lines[i].split())
                i += 1
            continue
        if section == "Samples:":
            m = _RAW_SAMPLE.match(line)
            if m:
                labels = []
                while (
                    i + 1 < len(lines)
                    and not _RAW_SAMPLE.match(lines[i + 1])
                    and lines[i + 1].startswith(" ")
                ):
                    i += 1
                    labels.append(lines[i].strip())
                samples.append(
                    PprofRawSample(
                        tuple(int(v) for v in m.group(1).split()),
                        tuple(int(v) for v in m.group(2).split()),
                        " ".join(labels),
                    )
                )
        elif section == "Locations":
            m = _RAW_LOCATION.match(line)
            if m:
                functions[int(m.group(1))] = m.group(2)
        elif section == "Mappings" and line.strip():
            mappings.append(line.split()[-2] if line.rstrip().endswith("]") else line.split()[-1])
        i += 1
    return PprofRaw(types, tuple(samples), functions, tuple(mappings))


@dataclass(frozen=True)
class SandwichRow:
    """One function in speedscope's sandwich table: its total and self value as displayed."""

    name: str
    total: str
    self_: str


class _Sandwich(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cells: list[str] | None = None
        self._cell: list[str] | None = None
        self._depth = 0  # nesting inside the current <td>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self._cells = []
        elif tag == "td" and self._cells is not None:
            self._cell = []
            self._depth = 0
        elif self._cell is not None:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._cells is not None:
            self._cells.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._cells is not None:
            if self._cells:
                self.rows.append(self._cells)
            self._cells = None
        elif self._cell is not None:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def speedscope_sandwich(profile: Path, *, budget_ms: int = 8000) -> list[SandwichRow]:
    """Open ``profile`` in speedscope (headless chromium) and read its sandwich table."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not SPEEDSCOPE.exists():
        require_or_skip("chromium or speedscope missing (scripts/setup.sh installs both)")
        raise AssertionError("unreachable")
    with tempfile.TemporaryDirectory() as tmp:
        loader = Path(tmp) / "profile.js"
        payload = base64.b64encode(profile.read_bytes()).decode("ascii")
        loader.write_text(
            f"speedscope.loadFileFromBase64({json.dumps(profile.name)}, {json.dumps(payload)});\n"
        )
        url = f"{SPEEDSCOPE.as_uri()}#localProfilePath={loader}&view=sandwich"
        proc = subprocess.run(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={tmp}/profile",
                f"--virtual-time-budget={budget_ms}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, f"chromium failed: {proc.stderr[-2000:]}"
    parser = _Sandwich()
    parser.feed(proc.stdout)
    rows = [r for r in parser.rows if len(r) == 3]
    return [SandwichRow(name=r[2], total=r[0], self_=r[1]) for r in rows]


def speedscope_number(cell: str) -> float:
    """``"4,096 (98%)"`` -> 4096.0; ``"16.00 KB (100%)"`` -> 16384.0 (speedscope's KB is 1024 B)."""
    m = re.match(r"\s*([\d,.]+)\s*([KMG]?B)?", cell)
    assert m, f"not a speedscope value: {cell!r}"
    number = float(m.group(1).replace(",", ""))
    scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}.get(m.group(2) or "", 1)
    return number * scale
