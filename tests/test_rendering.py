"""Markdown rendering of untrusted model output (app.rendering.render_markdown)."""

from __future__ import annotations

import re

import pytest
from markupsafe import Markup

from app.rendering import render_markdown


def html_of(text: str) -> str:
    return str(render_markdown(text))


def test_render_markdown_returns_markup_safe_for_jinja():
    assert isinstance(render_markdown("**bold**"), Markup)


def test_fenced_code_is_highlighted_with_pygments_classes():
    html = html_of("```python\ndef ist_primzahl(n):\n    return n > 1\n```")

    assert re.search(r'<pre class="highlight"[^>]*><code>.*<span class="k">def</span>', html, re.DOTALL)
    assert '<span class="nf">ist_primzahl</span>' in html


def test_fenced_code_block_records_its_language():
    assert '<pre class="highlight" data-lang="sql">' in html_of("```sql\nSELECT 1;\n```")


def test_fenced_code_is_wrapped_in_exactly_one_pre():
    assert html_of("```python\nx = 1\n```").count("<pre") == 1


def test_highlighted_code_keeps_html_in_the_code_escaped():
    html = html_of('```python\nprint("<b>bold</b> & co")\n```')

    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in html
    assert "<b>" not in html


def test_markdown_is_rendered():
    html = html_of("# Title\n\nSome **bold** and `code`.\n\n- one\n- two")

    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html
    assert "<code>code</code>" in html
    assert "<li>one</li>" in html


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [
        ("<script>alert(1)</script>", "<script"),
        ("hi <img src=x onerror=alert(1)>", "<img"),
        ('<a href="https://example.org" onclick="alert(1)">x</a>', "<a "),
        ("<iframe src=https://example.org></iframe>", "<iframe"),
        ('<div style="color:red">x</div>', "<div"),
    ],
)
def test_raw_html_in_markdown_is_escaped(source, forbidden):
    html = html_of(source)

    assert forbidden not in html
    assert "&lt;" in html


def test_raw_html_keeps_its_text_visible():
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_of("<script>alert(1)</script>")


@pytest.mark.parametrize(
    "source",
    [
        "[click](javascript:alert(1))",
        "[click](JAVASCRIPT:alert(1))",
        "[click](jav&#x61;script:alert(1))",
        "<javascript:alert(1)>",
        "[click][ref]\n\n[ref]: javascript:alert(1)",
        "[click](vbscript:msgbox(1))",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    ],
)
def test_script_links_are_not_rendered_as_links(source):
    html = html_of(source)

    assert "<a" not in html
    assert not re.search(r"href\s*=", html)


def test_http_links_are_rendered_with_a_safe_rel():
    html = html_of("[docs](https://example.org/docs)")

    assert 'href="https://example.org/docs"' in html
    assert 'rel="nofollow noopener noreferrer"' in html


def test_aligned_tables_have_no_style_attribute():
    html = html_of("| left | right | centre |\n|:-----|------:|:------:|\n| 1 | 2 | 3 |")

    assert "<table>" in html
    assert "<td>2</td>" in html
    assert "style=" not in html


def test_highlighted_code_has_no_style_attribute():
    html = html_of("```python\nclass A:\n    pass\n```")

    assert '<span class="k">class</span>' in html  # highlighted, with classes only
    assert "style=" not in html


def test_unknown_fence_language_falls_back_to_escaped_plain_text():
    html = html_of("```nosuchlanguage\n<b>x</b> & y\n```")

    assert "<pre" in html
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in html
    assert "<span" not in html
    assert "<b>" not in html


def test_fence_without_a_language_is_escaped_plain_text():
    html = html_of("```\n<i>plain</i>\n```")

    assert "&lt;i&gt;plain&lt;/i&gt;" in html
    assert "<span" not in html


def test_a_hostile_fence_language_is_escaped():
    html = html_of('```"><script>alert(1)</script>\ncode\n```')

    assert "<script" not in html
    assert "code" in html


@pytest.mark.parametrize("text", ["", None])
def test_empty_input_renders_to_nothing(text):
    assert str(render_markdown(text)).strip() == ""
