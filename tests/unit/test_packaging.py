"""`pip install .` (not only editable) must carry the templates inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_every_template(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("leakhunt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = sorted(p.relative_to(ROOT) for p in (ROOT / "templates").rglob("*.j2"))
    assert templates, "no templates in the source tree"
    for rel in templates:
        assert f"leakhunt/{rel.as_posix()}" in names, f"{rel} missing from the wheel"
    assert "leakhunt/cli/__init__.py" in names


def test_installed_wheel_finds_its_templates(tmp_path: Path) -> None:
    """Install the wheel into a fresh target dir and render from there, away from the source tree."""
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(ROOT)],
        check=True,
    )
    (wheel,) = wheel_dir.glob("leakhunt-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
    )
    code = (
        "import leakhunt.templating as t; d = t.templates_dir(); "
        f"print(d); assert str(d).startswith({str(site)!r}), d; assert any(d.rglob('*.j2'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
