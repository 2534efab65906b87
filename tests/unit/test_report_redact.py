"""Secrets in command lines are removed from reports by default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leakhunt.model import Investigation
from leakhunt.report import jsonio
from leakhunt.report.redact import MASK, is_secret_name, redact, redact_argv, redact_text

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "reports" / "investigation-bcc-memleak.json"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["app", "password=hunter2"], ["app", "password=***"]),
        (["app", "--password", "hunter2", "-v"], ["app", "--password", "***", "-v"]),
        (["app", "--password=hunter2"], ["app", "--password=***"]),
        (["app", "--key", "AKIA123", "x"], ["app", "--key", "***", "x"]),
        (["app", "--api-key", "abc"], ["app", "--api-key", "***"]),
        (["app", "--apiKey", "abc"], ["app", "--apiKey", "***"]),
        (["app", "--token", "t0k"], ["app", "--token", "***"]),
        (["app", "--client-secret=s3"], ["app", "--client-secret=***"]),
        (["app", "DB_PASSWORD=pw"], ["app", "DB_PASSWORD=***"]),
        (
            ["psql", "host=db user=app password=pw port=5432"],
            ["psql", "host=db user=app password=*** port=5432"],
        ),
        (
            ["curl", "https://api/x?access_token=abc&page=2"],
            ["curl", "https://api/x?access_token=***&page=2"],
        ),
        (["app", "postgres://app:s3cr3t@db:5432/x"], ["app", "postgres://app:***@db:5432/x"]),
        (["git", "https://ghp_0123456789abcdefghijklmnop@github.com/x"], ["git", "https://***@github.com/x"]),
        (["curl", "-H", "Authorization: Bearer abcdefgh123"], ["curl", "-H", "Authorization: Bearer ***"]),
        # nothing secret: unchanged
        (
            ["app", "--port", "80", "host=db", "ssh://git@github.com/x"],
            ["app", "--port", "80", "host=db", "ssh://git@github.com/x"],
        ),
        (["app", "-p", "42"], ["app", "-p", "42"]),
        # a secret flag followed by another flag: nothing to hide
        (["app", "--password", "--verbose"], ["app", "--password", "--verbose"]),
    ],
)
def test_redact_argv(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == tuple(expected)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("--db-pass", True),
        ("SECRET_KEY", True),
        ("X-Auth-Token", True),
        ("--port", False),
        ("--host", False),
        ("keyboard", False),
        ("--monkey", False),
        ("passage", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


@given(st.lists(st.text(max_size=30), max_size=6))
def test_redaction_never_raises_and_keeps_the_argument_count(argv: list[str]) -> None:
    out = redact_argv(argv)
    assert len(out) == len(argv)
    assert redact_argv(out) == out  # idempotent


@given(
    st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="=&;,@/:"),
        min_size=1,
        max_size=20,
    )
)
def test_any_password_value_is_removed(value: str) -> None:
    for argv in (
        ["x", f"password={value}"],
        ["x", "--password", value if not value.startswith("-") else "v" + value],
    ):
        out = " ".join(redact_argv(argv))
        assert MASK in out


def test_redact_document_touches_every_command_line() -> None:
    doc = jsonio.load(FIXTURE)
    assert isinstance(doc, Investigation)
    hostile = dataclasses.replace(
        doc,
        target=dataclasses.replace(doc.target, cmdline=("./app", "--token", "T0KEN", "password=hunter2")),
        backend=dataclasses.replace(
            doc.backend, argv=("bpftrace", "-c", "./app --token T0KEN password=hunter2")
        ),
        quality=dataclasses.replace(doc.quality, notes=("launched ./app password=hunter2",)),
        options=(("password", "hunter2"), ("top", "10")),
    )
    clean = redact(hostile)
    text = jsonio.dumps(clean)
    assert "hunter2" not in text and "T0KEN" not in text
    assert clean.options == (("password", MASK), ("top", "10"))
    assert redact_text("nothing here") == "nothing here"
