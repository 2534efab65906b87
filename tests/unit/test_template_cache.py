"""The compiled-template cache (``templating.bytecode_cache``): a cache hit renders what compiling
renders, HTML and text environments never share an entry, and a damaged, unwritable or unsafe
cache only means compiling again."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jinja2
import pytest

from leakhunt import templating


def _env(templates: Path, cache_dir: Path | None, *, autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=autoescape,  # noqa: S701 - the text environment is under test too
        undefined=jinja2.StrictUndefined,
    )
    env.bytecode_cache = templating.bytecode_cache(env, None if cache_dir is None else str(cache_dir))
    return env


def _no_compiling(env: jinja2.Environment) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("compiled although the cache holds the template")

    env.compile = refuse  # type: ignore[method-assign,assignment]


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    d = tmp_path / "templates"
    d.mkdir()
    (d / "t.j2").write_text("<p>{{ name }}</p>{% for i in items %}[{{ i }}]{% endfor %}\n")
    return d


def test_a_cached_template_renders_what_a_compiled_one_does(tmp_path: Path, templates: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    ctx = {"name": "<script>x</script>", "items": [1, 2]}
    compiled = _env(templates, cache, autoescape=True).get_template("t.j2").render(ctx)
    assert len(list(cache.iterdir())) == 1

    cached_env = _env(templates, cache, autoescape=True)
    _no_compiling(cached_env)
    assert cached_env.get_template("t.j2").render(ctx) == compiled
    assert compiled == "<p>&lt;script&gt;x&lt;/script&gt;</p>[1][2]"


def test_an_edited_template_is_compiled_again(tmp_path: Path, templates: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    assert (
        _env(templates, cache, autoescape=True).get_template("t.j2").render(name="a", items=[]) == "<p>a</p>"
    )
    (templates / "t.j2").write_text("<b>{{ name }}</b>")
    assert _env(templates, cache, autoescape=True).get_template("t.j2").render(name="a") == "<b>a</b>"


def test_html_and_text_environments_never_share_an_entry(tmp_path: Path, templates: Path) -> None:
    """The same source compiles to escaping code in one and to plain code in the other: a shared
    entry would put unescaped target text into an HTML report."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    ctx = {"name": "<b>", "items": []}
    text = _env(templates, cache, autoescape=False).get_template("t.j2").render(ctx)
    html = _env(templates, cache, autoescape=True).get_template("t.j2").render(ctx)
    assert text == "<p><b></p>"
    assert html == "<p>&lt;b&gt;</p>"
    assert len(list(cache.iterdir())) == 2
    # both now from the cache
    for autoescape, expected in ((True, html), (False, text)):
        env = _env(templates, cache, autoescape=autoescape)
        _no_compiling(env)
        assert env.get_template("t.j2").render(ctx) == expected


def test_the_real_environments_use_different_entries() -> None:
    html_cache = templating.html_env().bytecode_cache
    text_cache = templating.text_env().bytecode_cache
    assert isinstance(html_cache, jinja2.FileSystemBytecodeCache)
    assert isinstance(text_cache, jinja2.FileSystemBytecodeCache)
    assert html_cache.pattern != text_cache.pattern


def test_a_damaged_entry_is_compiled_again(tmp_path: Path, templates: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    _env(templates, cache, autoescape=True).get_template("t.j2")
    (entry,) = cache.iterdir()
    data = entry.read_bytes()
    for damaged in (b"", data[:20], data[: len(data) // 2], b"\x00" * len(data)):
        entry.write_bytes(damaged)
        out = _env(templates, cache, autoescape=True).get_template("t.j2").render(name="n", items=[3])
        assert out == "<p>n</p>[3]"


def test_an_unwritable_cache_only_means_compiling(tmp_path: Path, templates: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir(mode=0o700)
    env = _env(templates, gone, autoescape=True)
    gone.rmdir()  # removed after the environment was made: the entry cannot be written
    assert env.get_template("t.j2").render(name="n", items=[]) == "<p>n</p>"

    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    env = _env(templates, a_file, autoescape=True)
    assert env.get_template("t.j2").render(name="n", items=[]) == "<p>n</p>"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory to another user")
def test_a_cache_directory_someone_else_owns_is_not_used(
    tmp_path: Path, templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default directory ($TMPDIR/_jinja2-cache-UID) holds code leakhunt runs: one made by
    another user (who could write entries into it) turns the cache off."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"_jinja2-cache-{os.getuid()}"
    planted.mkdir(mode=0o777)
    os.chown(planted, 65534, 65534)
    env = _env(templates, None, autoescape=True)
    assert env.bytecode_cache is None
    assert env.get_template("t.j2").render(name="n", items=[]) == "<p>n</p>"
    assert list(planted.iterdir()) == []


def test_the_default_directory_is_private(
    tmp_path: Path, templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env = _env(templates, None, autoescape=True)
    assert env.get_template("t.j2").render(name="n", items=[]) == "<p>n</p>"
    made = tmp_path / f"_jinja2-cache-{os.getuid()}"
    assert made.stat().st_mode & 0o777 == 0o700
    assert len(list(made.iterdir())) == 1
