"""The stages only look forward (cli -> app -> probe/report -> analyze -> parse -> model): the
import-linter contracts in .importlinter hold, and they would catch a probe module importing
analyze (checked on a copy of the package with such an import planted)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(package_parent: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the test extras (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / ".importlinter"), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_parent,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_probe_module_importing_analyze_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "leakhunt", tmp_path / "leakhunt", ignore=shutil.ignore_patterns("__pycache__"))
    live = tmp_path / "leakhunt" / "probe" / "live.py"
    live.write_text(live.read_text() + "\nfrom leakhunt.analyze import stacks as _backwards  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode != 0, done.stdout
    assert "probe never imports analyze" in done.stdout and "BROKEN" in done.stdout
    assert "leakhunt.probe.live -> leakhunt.analyze.stacks" in done.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract", "chain"),
    [
        (
            "analyze/stacks.py",
            "from leakhunt.parse import memleak as _backwards  # noqa",
            "analyze never imports parse",
            "leakhunt.analyze.stacks -> leakhunt.parse.memleak",
        ),
        (
            "analyze/trend.py",
            "from leakhunt import sample as _backwards  # noqa",
            "analyze never imports parse",
            "leakhunt.analyze.trend -> leakhunt.sample",
        ),
        (
            "report/scan.py",
            "from leakhunt import procfs as _backwards  # noqa",
            "report never imports probe",
            "leakhunt.report.scan -> leakhunt.procfs",
        ),
        (
            "procfs.py",
            "from leakhunt import errors as _backwards  # noqa",
            "procfs imports nothing of leakhunt",
            "leakhunt.procfs -> leakhunt.errors",
        ),
    ],
)
def test_backward_imports_break_a_contract(
    tmp_path: Path, module: str, planted: str, contract: str, chain: str
) -> None:
    shutil.copytree(ROOT / "leakhunt", tmp_path / "leakhunt", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "leakhunt" / module
    path.write_text(path.read_text() + f"\n{planted}\n")
    done = _lint(tmp_path)
    assert done.returncode != 0, done.stdout
    assert contract in done.stdout and "BROKEN" in done.stdout
    assert chain in done.stdout
