"""Markdown rendering of model output: untrusted text in, sanitized HTML out.

markdown-it-py parses with raw HTML disabled, Pygments highlights fenced code server-side (CSS
classes, no inline styles, so the CSP needs no `unsafe-inline`), and nh3 then sanitizes the
result against a small allow-list. Only the sanitized output is ever marked safe for Jinja.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import nh3
import pygments
from markdown_it import MarkdownIt
from markupsafe import Markup, escape
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "code", "pre", "span", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a", "del", "s",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "span": {"class"},
    "code": {"class"},
    "pre": {"class", "data-lang"},
    "a": {"href", "title"},
    "ol": {"start"},
}
_FORMATTER = HtmlFormatter(cssclass="highlight", nowrap=True)


def _highlight(code: str, lang: str, _attrs: str) -> str:
    name = (lang or "").strip().split()[0] if lang and lang.strip() else ""
    try:
        # Only the languages of the app's own list (EXTENSIONS): a model's answer does not get to
        # pick any of Pygments' hundreds of lexers, some slow on hostile input.
        lexer = get_lexer_by_name(name.lower()) if name.lower() in EXTENSIONS else None
    except ClassNotFound:
        lexer = None
    body = pygments.highlight(code, lexer, _FORMATTER) if lexer else str(escape(code))
    label = f' data-lang="{escape(name)}"' if name else ""
    # Starting with "<pre" tells markdown-it not to wrap the block again.
    return f'<pre class="highlight"{label}><code>{body}</code></pre>\n'


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
    md.enable(["table", "strikethrough"])
    return md


def render_markdown(text: str) -> Markup:
    """Render untrusted markdown to sanitized HTML safe to insert into a page."""
    md = _parser()
    tokens = md.parse(text or "")
    for token in tokens:
        # Table alignment comes as inline style attributes, which the CSP forbids; drop it.
        if token.type in ("th_open", "td_open"):
            token.attrs.pop("style", None)
    html = md.renderer.render(tokens, md.options, {})
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
    )
    return Markup(clean)  # nh3 output: only allow-listed tags and attributes remain


def pygments_css() -> str:
    """Highlight styles, light and dark, following the same theme rules as app.css.

    Written to static/css/pygments.css by `make pygments-css`.
    """
    light = HtmlFormatter(style="default").get_style_defs(".highlight")
    dark_system = HtmlFormatter(style="monokai").get_style_defs(':root:not([data-theme="light"]) .highlight')
    dark_chosen = HtmlFormatter(style="monokai").get_style_defs(':root[data-theme="dark"] .highlight')
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark_system}\n}}\n{dark_chosen}\n"


def highlight_matches(text: str, query: str) -> Markup:
    """`text` escaped, with each case-insensitive occurrence of `query` wrapped in <mark>."""
    text = str(text)
    if not query:
        return escape(text)
    parts: list[Markup] = []
    last = 0
    for match in re.finditer(re.escape(query), text, flags=re.IGNORECASE):
        parts.append(escape(text[last : match.start()]))
        parts.append(Markup("<mark>%s</mark>") % match.group())
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


def snippet(text: str, query: str, width: int = 160) -> str:
    """About `width` characters of `text` around the first match of `query`, on one line."""
    flat = " ".join(str(text).split())
    at = flat.lower().find(query.lower()) if query else -1
    if at < 0:
        return flat[:width] + ("…" if len(flat) > width else "")
    start = max(0, at - width // 3)
    end = min(len(flat), start + width)
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")


def quote_markdown(text: str) -> str:
    """`text` as a Markdown block quote (for the Markdown export)."""
    return "\n".join("> " + line if line else ">" for line in str(text).splitlines()) or ">"


EXTENSIONS = {
    "python": "py", "py": "py", "javascript": "js", "js": "js", "typescript": "ts", "ts": "ts",
    "bash": "sh", "sh": "sh", "shell": "sh", "zsh": "sh", "sql": "sql", "html": "html", "css": "css",
    "json": "json", "yaml": "yaml", "yml": "yaml", "toml": "toml", "go": "go", "rust": "rs", "rs": "rs",
    "java": "java", "kotlin": "kt", "c": "c", "cpp": "cpp", "c++": "cpp", "csharp": "cs", "cs": "cs",
    "ruby": "rb", "php": "php", "swift": "swift", "markdown": "md", "md": "md", "xml": "xml",
    "dockerfile": "Dockerfile", "makefile": "Makefile", "r": "r", "lua": "lua", "perl": "pl",
}  # fmt: skip


@dataclass(frozen=True)
class CodeBlock:
    """A fenced code block of an answer, with a download file name from its language."""

    lang: str
    code: str
    filename: str


def code_blocks(text: str) -> list[CodeBlock]:
    """The fenced code blocks of a markdown answer, in order."""
    blocks: list[CodeBlock] = []
    for token in _parser().parse(text or ""):
        if token.type != "fence":
            continue
        lang = (token.info or "").strip().split()[0].lower() if (token.info or "").strip() else ""
        ext = EXTENSIONS.get(lang, "txt")
        n = len(blocks) + 1
        name = ext if ext in ("Dockerfile", "Makefile") else f"answer-{n}.{ext}"
        blocks.append(CodeBlock(lang, token.content, name))
    return blocks
