"""Which distribution this is (/etc/os-release) and the commands that install the probe tools there.

``parse_os_release(text)`` is pure (os-release(5): ``KEY=value`` lines, values optionally quoted with
``"`` or ``'``, backslash escapes inside double quotes, ``#`` comments)::

    NAME="Fedora Linux"
    ID=fedora
    ID_LIKE="rhel centos fedora"      (Rocky; Ubuntu says ID_LIKE=debian)

``install_hints(release, kernel)`` maps the ID (then each ID_LIKE) to a package family and gives the
exact install command for bpftrace, BCC's tools and the kernel headers BCC compiles against.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Family = Literal["debian", "ubuntu", "fedora", "arch", "unknown"]

OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")


@dataclass(frozen=True)
class OsRelease:
    id: str  # "debian", "ubuntu", "fedora", "rhel", "arch", ... ("" when the file does not say)
    id_like: tuple[str, ...]
    pretty_name: str
    version_id: str


@dataclass(frozen=True)
class InstallHints:
    family: Family
    name: str  # what to call this system in messages ("Fedora Linux 42 (Forty Two)")
    bpftrace: str  # command that installs bpftrace
    bcc: str  # command that installs BCC's tools (memleak)
    headers: str  # command that installs the headers of the running kernel
    setup_script: bool  # scripts/setup.sh (apt-based) sets this system up


def parse_os_release(text: str) -> OsRelease:
    """The fields leakhunt needs from os-release text; unknown keys and malformed lines are skipped."""
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        fields[key.strip()] = _unquote(value.strip())
    return OsRelease(
        id=fields.get("ID", "").lower(),
        id_like=tuple(word.lower() for word in fields.get("ID_LIKE", "").split()),
        pretty_name=fields.get("PRETTY_NAME") or fields.get("NAME") or "",
        version_id=fields.get("VERSION_ID", ""),
    )


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        inner = value[1:-1]
        if value[0] == "'":
            return inner
        out: list[str] = []
        escaped = False
        for char in inner:
            if escaped:
                out.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            else:
                out.append(char)
        return "".join(out)
    return value


def read_os_release(paths: Sequence[str] = OS_RELEASE_PATHS) -> OsRelease | None:
    """This host's os-release (the first readable of /etc/os-release, /usr/lib/os-release), or None."""
    for path in paths:
        try:
            return parse_os_release(Path(path).read_text(errors="replace"))
        except OSError:
            continue
    return None


_FAMILY_OF_ID: dict[str, Family] = {
    "debian": "debian",
    "ubuntu": "ubuntu",
    "fedora": "fedora",
    "rhel": "fedora",
    "centos": "fedora",
    "rocky": "fedora",
    "almalinux": "fedora",
    "ol": "fedora",
    "amzn": "fedora",
    "arch": "arch",
    "archarm": "arch",
    "manjaro": "arch",
    "endeavouros": "arch",
}


def family_of(release: OsRelease | None) -> Family:
    """The package family: the ID itself when known, else the first known ID_LIKE (Mint -> ubuntu)."""
    if release is None:
        return "unknown"
    for word in (release.id, *release.id_like):
        family = _FAMILY_OF_ID.get(word)
        if family is not None:
            return family
    return "unknown"


def install_hints(release: OsRelease | None, kernel_release: str) -> InstallHints:
    """The install commands for bpftrace, BCC's tools and kernel headers on ``release``."""
    family = family_of(release)
    name = (release.pretty_name or release.id) if release is not None else ""
    name = name or "this system"
    kernel = shlex.quote(kernel_release)
    if family in ("debian", "ubuntu"):
        return InstallHints(
            family,
            name,
            bpftrace="sudo apt-get install -y bpftrace",
            bcc="sudo apt-get install -y bpfcc-tools",
            headers=f"sudo apt-get install -y linux-headers-{kernel}",
            setup_script=family == "debian",
        )
    if family == "fedora":
        # Fedora, RHEL and its rebuilds: BCC's tools land in /usr/share/bcc/tools (memleak among them).
        return InstallHints(
            family,
            name,
            bpftrace="sudo dnf install -y bpftrace",
            bcc="sudo dnf install -y bcc-tools",
            headers=f"sudo dnf install -y kernel-devel-{kernel}",
            setup_script=False,
        )
    if family == "arch":
        # Arch's headers package follows its kernel package (6.9.1-lts1 -> linux-lts-headers).
        flavor = next((f for f in ("lts", "zen", "hardened", "rt") if f"-{f}" in kernel_release), "")
        return InstallHints(
            family,
            name,
            bpftrace="sudo pacman -S --needed bpftrace",
            bcc="sudo pacman -S --needed bcc-tools",
            headers=f"sudo pacman -S --needed linux-{flavor + '-' if flavor else ''}headers",
            setup_script=False,
        )
    return InstallHints(
        family,
        name,
        bpftrace="install bpftrace with your distribution's package manager",
        bcc="install BCC's tools (bcc-tools or bpfcc-tools) with your distribution's package manager",
        headers=f"install the kernel headers of {kernel_release} with your distribution's package manager",
        setup_script=False,
    )
