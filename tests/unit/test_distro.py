"""os-release -> the install commands `leakhunt doctor` prints, on os-release files captured from each
distribution (tests/fixtures/os-release/README.md says where)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leakhunt.cli import doctor
from leakhunt.probe import distro

OS_RELEASE = Path(__file__).resolve().parent.parent / "fixtures" / "os-release"


def release(name: str) -> distro.OsRelease:
    return distro.parse_os_release((OS_RELEASE / name).read_text())


@pytest.mark.parametrize(
    ("name", "family", "pretty"),
    [
        ("debian-12", "debian", "Debian GNU/Linux 12 (bookworm)"),
        ("debian-13", "debian", "Debian GNU/Linux 13 (trixie)"),
        ("ubuntu-24.04", "ubuntu", "Ubuntu 24.04.3 LTS"),
        ("fedora-42", "fedora", "Fedora Linux 42 (Forty Two)"),
        ("rhel-9.6", "fedora", "Red Hat Enterprise Linux 9.6 (Plow)"),
        ("rocky-9.3", "fedora", "Rocky Linux 9.3 (Blue Onyx)"),
        ("arch", "arch", "Arch Linux"),
        ("alpine-3.23", "unknown", "Alpine Linux v3.23"),
    ],
)
def test_family_of_captured_os_release(name: str, family: str, pretty: str) -> None:
    found = release(name)
    assert distro.family_of(found) == family
    assert found.pretty_name == pretty


def test_debian_and_ubuntu_use_apt_with_the_exact_headers() -> None:
    for name in ("debian-12", "debian-13", "ubuntu-24.04"):
        hints = distro.install_hints(release(name), "6.8.0-45-generic")
        assert hints.bpftrace == "sudo apt-get install -y bpftrace"
        assert hints.bcc == "sudo apt-get install -y bpfcc-tools"
        assert hints.headers == "sudo apt-get install -y linux-headers-6.8.0-45-generic"
    assert distro.install_hints(release("debian-13"), "6.12.1").setup_script
    assert not distro.install_hints(release("ubuntu-24.04"), "6.8.0").setup_script


def test_fedora_and_rhel_use_dnf_and_kernel_devel() -> None:
    for name in ("fedora-42", "rhel-9.6", "rocky-9.3"):
        hints = distro.install_hints(release(name), "5.14.0-570.el9.x86_64")
        assert hints.bpftrace == "sudo dnf install -y bpftrace"
        assert hints.bcc == "sudo dnf install -y bcc-tools"
        assert hints.headers == "sudo dnf install -y kernel-devel-5.14.0-570.el9.x86_64"
        assert not hints.setup_script


def test_arch_uses_pacman_and_the_headers_of_its_kernel_flavour() -> None:
    arch = release("arch")
    hints = distro.install_hints(arch, "6.12.4-arch1-1")
    assert hints.bpftrace == "sudo pacman -S --needed bpftrace"
    assert hints.bcc == "sudo pacman -S --needed bcc-tools"
    assert hints.headers == "sudo pacman -S --needed linux-headers"
    assert distro.install_hints(arch, "6.6.63-1-lts").headers == "sudo pacman -S --needed linux-lts-headers"


def test_unknown_distribution_and_missing_file_say_so_instead_of_guessing() -> None:
    for found in (release("alpine-3.23"), None):
        hints = distro.install_hints(found, "6.1.0")
        assert hints.family == "unknown"
        assert "package manager" in hints.bpftrace
        assert not hints.bpftrace.startswith("sudo")


def test_derivatives_follow_id_like() -> None:
    mint = distro.parse_os_release('ID=linuxmint\nID_LIKE="ubuntu debian"\nNAME="Linux Mint"\n')
    assert distro.family_of(mint) == "ubuntu"
    assert mint.pretty_name == "Linux Mint"
    manjaro = distro.parse_os_release("ID=manjaro\nID_LIKE=arch\n")
    assert distro.family_of(manjaro) == "arch"


def test_quoting_comments_and_escapes() -> None:
    found = distro.parse_os_release(
        '# comment\n\nPRETTY_NAME="a \\"quoted\\" name"\nID=\'fedora\'\nbroken line\nID_LIKE=\n'
    )
    assert found.pretty_name == 'a "quoted" name'
    assert found.id == "fedora"
    assert found.id_like == ()


def test_kernel_release_is_quoted_in_the_command() -> None:
    hints = distro.install_hints(release("fedora-42"), "6.1; rm -rf /")
    assert hints.headers == "sudo dnf install -y kernel-devel-'6.1; rm -rf /'"


@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    distro.install_hints(distro.parse_os_release(text), "6.1.0")


def test_doctor_prints_dnf_commands_on_fedora(monkeypatch: pytest.MonkeyPatch) -> None:
    # No tool found: the fixes are the install commands of the distribution given.
    monkeypatch.setenv("LEAKHUNT_BPFTRACE", "")
    monkeypatch.setenv("LEAKHUNT_MEMLEAK", "")
    checks = {c.name: c for c in doctor.run_checks(release("fedora-42"))}
    assert checks["distribution"].detail == "Fedora Linux 42 (Forty Two) (fixes below use dnf)"
    assert checks["bpftrace"].fix == "sudo dnf install -y bpftrace"
    assert checks["memleak (BCC)"].fix == "sudo dnf install -y bcc-tools"
    assert checks["kernel headers"].fix.startswith("sudo dnf install -y kernel-devel-")
