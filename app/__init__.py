"""Flask OpenAI chat and image generator: the application factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from werkzeug.routing import Rule

from .config import (
    ConfigError,
    Settings,
    check_startup,
    ensure_secret_key,
    load_settings,
    settings_from_mapping,
)

if TYPE_CHECKING:
    from .generation import Generator

ROOT = Path(__file__).resolve().parent.parent

__version__ = "1.19.0"  # written into backups, so a restore knows what made them
__all__ = ["ConfigError", "__version__", "create_app"]


class _CompiledTemplates(BytecodeCache):
    """Compiled templates kept in memory for every app the process builds (tests and benchmarks
    build many). A template's key includes a checksum of its source, so an edited template is
    compiled again: the development server's reload sees every change."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED_TEMPLATES = _CompiledTemplates()


class _SharedBuilderRule(Rule):
    """A URL rule whose URL-building functions are shared by every app the process builds.
    Werkzeug writes and compiles two Python functions for each rule of each app (about 40 ms of
    the app's start, which tests and benchmarks pay thousands of times). Such a function reads
    its rule's converters through its `self` argument, so it depends only on what the key holds:
    the rule's parsed parts, its defaults and its converters' types."""

    _builders: ClassVar[dict[tuple[Any, ...], Callable[..., tuple[str, str]]]] = {}

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        converters = tuple((name, type(converter)) for name, converter in self._converters.items())
        defaults = repr(sorted((self.defaults or {}).items()))
        key = (self.rule, tuple(self._trace), append_unknown, defaults, converters)
        builder = self._builders.get(key)
        if builder is None:
            builder = self._builders[key] = super()._compile_builder(append_unknown)
        return builder


def create_app(test_config: dict[str, Any] | Settings | None = None) -> Flask:
    """Build the app from the environment (or `.env`), or from `test_config` in tests.

    `test_config` may be a :class:`Settings` or a dict of its field names. Raises ConfigError
    with a clear message for a bad setting.
    """
    if isinstance(test_config, Settings):
        settings = test_config
    elif test_config is not None:
        settings = settings_from_mapping(test_config)
    else:
        settings = load_settings()

    check_startup(settings)
    app = _flask_app(settings)

    from .logs import configure_logging

    configure_logging(app, settings.data_dir, settings.log_level, settings.secrets)
    generator = _services(app, settings)
    _init_extensions(app, settings, generator)
    return app


def _flask_app(settings: Settings) -> Flask:
    """The Flask object with its configuration: templates, static files, limits, sessions, JSON."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=ensure_secret_key(settings),
        # Room for the longest allowed prompt even when every character is form-encoded
        # multi-byte text (up to 9 bytes each); the import upload sets its own, larger cap.
        MAX_CONTENT_LENGTH=max(2 * 1024 * 1024, settings.max_prompt_chars * 9 + 65_536),
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.jinja_options = {**app.jinja_options, "bytecode_cache": _COMPILED_TEMPLATES}
    app.url_rule_class = _SharedBuilderRule
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
        app.json.ensure_ascii = False
    return app


def _services(app: Flask, settings: Settings) -> Generator:
    """The history store, the image store and the generator, as the app's extensions."""
    from .generation import Generator
    from .providers import make_provider
    from .stores import make_history, make_images

    chatlog = make_history(settings)
    images = make_images(settings)
    generator = Generator(settings, make_provider(settings), chatlog, images)
    app.extensions["chatlog"] = chatlog
    app.extensions["images"] = images
    app.extensions["generator"] = generator
    return generator


def _init_extensions(app: Flask, settings: Settings, generator: Generator) -> None:
    """Everything around the routes, in the order requests meet it: the Host check first, then
    languages, History's rows, the views, static files, compression, the login, the security
    headers and rate limits, the CLI, the upkeep, the proxy fix and the template filters."""
    from flask_compress import Compress

    from . import assets, auth, cli, hosts, i18n, security, views
    from .fragments import HistoryRows
    from .maintenance import Maintenance

    hosts.init_app(app, settings)  # first: a request for a foreign host name gets no further
    i18n.init_app(app, ROOT)
    HistoryRows().init_app(app)
    views.init_app(app)
    assets.init_app(app)
    # brotli/gzip for pages, fragments, JSON and static files (which Flask streams from disk).
    # Event streams are never compressed, so tokens are never held back in a compressor:
    # text/event-stream is not among Flask-Compress's mimetypes.
    app.config.update(
        COMPRESS_STREAMS=True,
        COMPRESS_ALGORITHM=["br", "gzip"],
        COMPRESS_ALGORITHM_STREAMING=["br", "deflate"],
        COMPRESS_MIN_SIZE=500,
    )
    Compress(app)
    auth.init_app(app)
    security.init_app(app, settings, image_origin=generator.images.origin())
    cli.init_app(app)
    Maintenance(generator, app).init_app(app)
    if settings.proxy_fix:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Trust X-Forwarded-For/-Proto/-Host from this many proxies in front of the app.
        n = settings.proxy_fix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    _add_template_filters(app, settings)


def _add_template_filters(app: Flask, settings: Settings) -> None:
    """The filters and globals templates use to render answers, matches and code blocks."""
    from .generation import Generator
    from .rendering import code_blocks, highlight_matches, quote_markdown, render_markdown, snippet

    app.add_template_filter(render_markdown, "markdown")
    app.add_template_filter(Generator.answer_cut_at, "answer_cut_at")
    app.add_template_filter(highlight_matches, "highlight")
    app.add_template_filter(snippet, "snippet")
    app.add_template_filter(quote_markdown, "quote_markdown")
    app.add_template_filter(code_blocks, "code_blocks")
    app.jinja_env.globals["demo"] = settings.demo
