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


# What an adversarial pass found unredacted (issue 13): each form, in an argv and inside one
# argument (a shell command string), as reports and the terminal print them.
ISSUE_13_FORMS = [
    (
        ["aws", "s3", "ls", "--key-id", "x", "AKIAIOSFODNN7EXAMPLE"],
        ["aws", "s3", "ls", "--key-id", "***", "***"],
    ),
    (["env", "AWS_KEY=AKIAIOSFODNN7EXAMPLE"], ["env", "AWS_KEY=***"]),
    (["app", "ASIAIOSFODNN7EXAMPLE"], ["app", "***"]),
    (["env", "PGPASSWORD=hunter2", "psql"], ["env", "PGPASSWORD=***", "psql"]),
    (["env", "MYSQL_PWD=hunter2"], ["env", "MYSQL_PWD=***"]),
    (["mysql", "-u", "root", "-p", "hunter2", "db"], ["mysql", "-u", "root", "-p", "***", "db"]),
    (["/usr/bin/mysqldump", "-phunter2", "db"], ["/usr/bin/mysqldump", "-p***", "db"]),
    (["mariadb", "-uroot", "-p", "hunter2"], ["mariadb", "-uroot", "-p", "***"]),
    (["curl", "-H", "X-Api-Key: v"], ["curl", "-H", "X-Api-Key: ***"]),
    (["curl", "-H", "X-Auth-Token:abc"], ["curl", "-H", "X-Auth-Token:***"]),
    (["curl", "-H", "Authorization: Bearer abc"], ["curl", "-H", "Authorization: Bearer ***"]),
    (["curl", "-H", "Authorization: Basic dTpw"], ["curl", "-H", "Authorization: Basic ***"]),
    (["app", "postgres://app:pa/ss@db/x"], ["app", "postgres://app:***@db/x"]),
    (["app", "https://u:p@ss@host/x"], ["app", "https://u:***@host/x"]),
    (["app", "redis://:s3cr3t@cache:6379"], ["app", "redis://:***@cache:6379"]),
    (["app", "--password", "-x"], ["app", "--password", "***"]),
    (["app", "--token", "-"], ["app", "--token", "***"]),
    (
        ["sh", "-c", "mysql -u root -p hunter2 db && curl -H 'X-Api-Key: v' https://u:p/w@h/"],
        ["sh", "-c", "mysql -u root -p *** db && curl -H 'X-Api-Key: ***' https://u:***@h/"],
    ),
    (
        ["sh", "-c", "PGPASSWORD=pw psql; aws AKIAIOSFODNN7EXAMPLE"],
        ["sh", "-c", "PGPASSWORD=*** psql; aws ***"],
    ),
    # still not secrets
    (["app", "https://host:8080/a@b"], ["app", "https://host:8080/a@b"]),
    (["nc", "-p", "8080"], ["nc", "-p", "8080"]),
    (["app", "--verbose", "AKIA"], ["app", "--verbose", "AKIA"]),
]


@pytest.mark.parametrize(("argv", "expected"), ISSUE_13_FORMS, ids=lambda v: " ".join(v)[:40])
def test_redact_issue_13_forms(argv: list[str], expected: list[str]) -> None:
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
