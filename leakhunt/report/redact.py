"""Remove secrets from command lines before they go into a report attached to a ticket.

Reports quote the target's command line (and the probe's, which embeds it in launch mode). Command
lines routinely carry secrets: ``--password hunter2``, ``token=abc``, ``postgres://app:pw@db/x``.
What is removed (the value becomes ``***``, the name stays so a reader knows something was there):

- ``NAME=VALUE`` and ``--NAME=VALUE`` where NAME mentions a secret word (password, passwd, pwd, pass,
  token, secret, key, apikey, auth, credential, cookie, session, signature, private), anywhere in an
  argument, including DSNs (``"host=db password=pw"``) and URL query strings (``?access_token=...``);
- ``--NAME VALUE`` (two arguments) for the same names;
- credentials in URLs (``scheme://user:PASSWORD@host`` keeps the user; a lone token-like user, as in
  ``https://ghp_xxx@github.com``, is removed);
- ``Authorization: Bearer VALUE`` / ``Basic VALUE`` header text (any length), and header lines
  such as ``X-Api-Key: VALUE``;
- names that only contain a secret word (``PGPASSWORD=``, ``MYSQL_PWD=``);
- ``-p VALUE`` and ``-pVALUE`` after mysql/mariadb (their password option), in an argv or a string;
- AWS access key ids (``AKIA...``, ``ASIA...``) wherever they appear;
- after a secret option, the next argument even when it starts with one dash (``--password -x``).

It errs on the side of removing: ``--max-key-size 5`` loses its 5. ``--no-redact`` turns it all off.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import overload

from leakhunt.model import (
    BackendInfo,
    DataQuality,
    Investigation,
    ProcessTrend,
    ScanResult,
    Target,
    TraceResult,
)

MASK = "***"

# A name counts as secret when one of its words (split on - _ . and case changes) is one of these.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "token",
        "secret",
        "key",
        "apikey",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "session",
        "sig",
        "signature",
        "private",
        "privatekey",
        "accesskey",
        "secretkey",
    }
)

# Words so specific that a name containing them anywhere is secret (PGPASSWORD, MYSQLPWD).
_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "token", "credential", "apikey", "privatekey")

_WORD_SPLIT = re.compile(r"[-_.]+|(?<=[a-z])(?=[A-Z])")
# NAME=VALUE inside an argument: NAME starts after a separator or at the start; VALUE runs to the next
# separator used by DSNs, query strings and shell-ish lists.
# ("Name: value" is a header line: curl -H 'X-Api-Key: v'.)
_ASSIGN = re.compile(
    r"(?P<name>(?:^|(?<=[\s?&;,'\"]))-{0,2}[A-Za-z][\w.-]*)(?P<sep>=|:(?!//)[ \t]*)(?P<value>[^\s&;,]+)"
)
# "--flag VALUE" inside one argument (a shell command string given to -c, a note quoting a command).
_FLAG_VALUE = re.compile(r"(?P<flag>(?:^|(?<=\s))--?[A-Za-z][\w.-]*)(?P<ws>\s+)(?P<value>[^\s-]\S*)")
# scheme:// and the rest of the word: its credentials end at an '@' (found by _url_cred)
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>[^\s'\"<>]*)")
_PORT_PATH = re.compile(r"\d{1,5}(?:[/?#].*)?")
_BEARER = re.compile(
    r"(?i)\b(?:(?P<kind>bearer|basic)\s+(?P<value>[A-Za-z0-9._~+/=-]+)"
    r"|(?P<tkind>token)\s+(?P<tvalue>[A-Za-z0-9._~+/=-]{8,}))"
)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}\b")
_MYSQL = re.compile(r"^(?:mysql|mariadb)[\w-]*$")
# in a command string: mysql ... -p VALUE / -pVALUE (up to the end of that command)
_MYSQL_TEXT = re.compile(
    r"(?P<head>\b(?:mysql|mariadb)[\w-]*\s(?:[^;&|\n]*?\s)?-p)"
    r"(?P<ws>[ \t]*)(?P<value>[^\s;&|'\"-][^\s;&|'\"]*)"
)
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{20,}")


def is_secret_name(name: str) -> bool:
    """True when an option or variable name suggests its value is a secret."""
    words = [w.lower() for w in _WORD_SPLIT.split(name.strip("-")) if w]
    if not words:
        return False
    joined = "".join(words)
    if any(w in _SECRET_WORDS for w in words) or joined in _SECRET_WORDS:
        return True
    return any(part in joined for part in _SECRET_PARTS)


def _url_cred(m: re.Match[str]) -> str:
    """``scheme://user:PASSWORD@host...`` -> ``scheme://user:***@host...``; the password may hold
    '/' or '@' (the credentials end at the last '@' before a query or fragment)."""
    scheme, rest = m.group("scheme"), m.group("rest")
    at = -1
    for i, ch in enumerate(rest):
        if ch in "?#":
            break
        if ch == "@":
            at = i
    if at < 0:
        return m.group(0)
    userinfo, host = rest[:at], rest[at + 1 :]
    user, colon, pw = userinfo.partition(":")
    if colon:
        if "/" in user or _PORT_PATH.fullmatch(pw):
            return m.group(0)  # host:port/path@x, not credentials
        return f"{scheme}{user}:{MASK}@{host}"
    if "/" not in user and _TOKEN_LIKE.fullmatch(user):
        return f"{scheme}{MASK}@{host}"
    return m.group(0)


def redact_text(text: str) -> str:
    """One argument (or any free text) with secret values replaced by ``***``."""

    def assign(m: re.Match[str]) -> str:
        name = m.group("name")
        value = m.group("value")
        core = value.rstrip("'\"") or value  # a closing quote of -H 'X-Api-Key: v' stays
        if m.group("sep") != "=" and core.lower() in ("bearer", "basic", "digest"):
            return m.group(0)  # "Authorization: Bearer VALUE": the value after the scheme goes below
        # "host:port" and "scheme:" are not assignments: only '=' or a secret name before ':' counts.
        if is_secret_name(name) and core != MASK:
            return f"{name}{m.group('sep')}{MASK}{value[len(core) :]}"
        return m.group(0)

    def flag(m: re.Match[str]) -> str:
        if len(m.group("flag")) > 2 and is_secret_name(m.group("flag")):
            return f"{m.group('flag')}{m.group('ws')}{MASK}"
        return m.group(0)

    def bearer(m: re.Match[str]) -> str:
        return f"{m.group('kind') or m.group('tkind')} {MASK}"

    text = _AWS_KEY_ID.sub(MASK, text)
    text = _URL.sub(_url_cred, text)
    text = _ASSIGN.sub(assign, text)
    text = _FLAG_VALUE.sub(flag, text)
    text = _MYSQL_TEXT.sub(lambda m: f"{m.group('head')}{m.group('ws')}{MASK}", text)
    return _BEARER.sub(bearer, text)


def redact_argv(argv: Sequence[str]) -> tuple[str, ...]:
    """A command line with secret values replaced by ``***`` (the number of arguments is kept)."""
    out: list[str] = []
    hide_next = False
    mysql = bool(argv) and _MYSQL.match(argv[0].rsplit("/", 1)[-1]) is not None
    for arg in argv:
        if hide_next:
            hide_next = False
            # a value may start with one dash (--password -x); a long option is the next option
            if not arg.startswith("--") or arg == "--":
                out.append(MASK)
                continue
        if arg.startswith("-") and "=" not in arg and is_secret_name(arg) and len(arg) > 2:
            hide_next = True
        if mysql and arg == "-p":
            hide_next = True
        elif mysql and arg.startswith("-p") and not arg.startswith("--"):
            out.append(f"-p{MASK}")
            continue
        out.append(redact_text(arg))
    return tuple(out)


def _target(t: Target) -> Target:
    return dataclasses.replace(t, cmdline=redact_argv(t.cmdline))


def _backend(b: BackendInfo) -> BackendInfo:
    return dataclasses.replace(b, argv=redact_argv(b.argv), reason=redact_text(b.reason))


def _quality(q: DataQuality) -> DataQuality:
    return dataclasses.replace(
        q,
        notes=tuple(redact_text(n) for n in q.notes),
        unparsed_examples=tuple(redact_text(n) for n in q.unparsed_examples),
    )


def _investigation(inv: Investigation) -> Investigation:
    return dataclasses.replace(
        inv,
        target=_target(inv.target),
        backend=_backend(inv.backend),
        quality=_quality(inv.quality),
        options=tuple((k, MASK if is_secret_name(k) else redact_text(v)) for k, v in inv.options),
    )


def _process(p: ProcessTrend) -> ProcessTrend:
    return dataclasses.replace(p, cmdline=redact_argv(p.cmdline))


@overload
def redact(doc: Investigation) -> Investigation: ...
@overload
def redact(doc: ScanResult) -> ScanResult: ...
@overload
def redact(doc: TraceResult) -> TraceResult: ...
@overload
def redact(doc: Investigation | ScanResult | TraceResult) -> Investigation | ScanResult | TraceResult: ...


def redact(doc: Investigation | ScanResult | TraceResult) -> Investigation | ScanResult | TraceResult:
    """A copy of the document with secrets removed from every command line and note in it."""
    if isinstance(doc, Investigation):
        return _investigation(doc)
    if isinstance(doc, ScanResult):
        return dataclasses.replace(
            doc,
            processes=tuple(_process(p) for p in doc.processes),
            investigations=tuple(_investigation(i) for i in doc.investigations),
        )
    return dataclasses.replace(
        doc, target=_target(doc.target), backend=_backend(doc.backend), quality=_quality(doc.quality)
    )
