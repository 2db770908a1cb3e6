"""Configuration from the environment (or a `.env` file), validated once at start-up.

Every setting has a sane default so a fresh checkout runs in demo mode with no setup. A bad value
stops the app with a message that names the variable and says what is expected.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dotenv import dotenv_values

IMAGE_SIZES = ("256x256", "512x512", "1024x1024", "1024x1536", "1536x1024", "1792x1024", "1024x1792")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    """The validated configuration. Build it with :func:`load_settings`."""

    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    chat_model: str = "gpt-4o-mini"
    image_model: str = "dall-e-3"
    image_size: str = "1024x1024"
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8000
    app_password: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    upstream_timeout: float = 60.0
    upstream_retries: int = 2
    max_prompt_chars: int = 32_000
    history_sidebar_limit: int = 50
    system_prompt: str | None = None
    context_chars: int = 24_000
    allow_unauthenticated: bool = False
    rate_limit: str = "30 per minute"
    login_rate_limit: str = "5 per minute"
    ratelimit_storage_uri: str = field(default="memory://", repr=False)
    daily_request_cap: int = 0
    proxy_fix: int = 0
    # Names the app answers to besides the loopback ones (the Host check against DNS rebinding).
    trusted_hosts: tuple[str, ...] = ()
    max_answer_chars: int = 200_000
    # Shared stores for several app servers (unset: TinyDB files and images in DATA_DIR).
    history_url: str | None = field(default=None, repr=False)
    image_store_url: str | None = None
    image_store_endpoint_url: str | None = None
    image_store_region: str | None = None
    image_store_presign: int = 0
    # A dated backup a day in this folder (unset: none), the newest `backup_keep` kept.
    backup_dir: Path | None = None
    backup_keep: int = 7
    # Read here too (not only by boto3 from the process environment) so a `.env` file works.
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Flask's send_file resolves a relative path against the app package, not the working
        # directory, so every path setting is made absolute here, once, at start-up.
        object.__setattr__(self, "data_dir", absolute_path(self.data_dir))
        if self.backup_dir is not None:
            object.__setattr__(self, "backup_dir", absolute_path(self.backup_dir))

    @property
    def loopback(self) -> bool:
        """True when HOST only accepts connections from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def demo(self) -> bool:
        """True when no API key is configured: answers come from the offline demo provider."""
        return not self.openai_api_key

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs, pages or errors."""
        values = [
            self.openai_api_key,
            self.app_password,
            self.secret_key,
            self.aws_secret_access_key,
            os.environ.get("AWS_SECRET_ACCESS_KEY"),
        ]
        for url in (self.history_url, self.ratelimit_storage_uri):
            values.append(url_password(url))
        return tuple(s for s in values if s)


def absolute_path(path: str | os.PathLike) -> Path:
    """`path` as an absolute path: `~` expanded, a relative one taken from the working directory."""
    return Path(os.path.abspath(os.path.expanduser(path)))


def url_password(url: str | None) -> str | None:
    """The password in a URL such as postgresql://user:password@host/db, if any."""
    if not url or "://" not in url:
        return None
    try:
        return urlparse(url).password
    except ValueError:
        return None


def redact_url_password(url: str) -> str:
    """`postgresql://user:***@host/db` for logs and messages."""
    password = url_password(url)
    return url.replace(f":{password}@", ":***@", 1) if password else url


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _number(name: str, raw: str, lo: float, hi: float, convert: Callable[[str], float], what: str) -> Any:
    """`raw` converted (int or float) and within lo..hi; ConfigError names the variable."""
    try:
        value = convert(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if not lo <= value <= hi:
        shown = [f"{n:g}" if isinstance(n, float) else str(n) for n in (lo, hi, value)]
        raise ConfigError(f"{name} must be between {shown[0]} and {shown[1]}, got {shown[2]}")
    return value


def _int(name: str, raw: str, lo: int, hi: int) -> int:
    return _number(name, raw, lo, hi, int, "a whole number")


def _float(name: str, raw: str, lo: float, hi: float) -> float:
    return _number(name, raw, lo, hi, float, "a number of seconds")


def _bool(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true or false), got {raw!r}")


_RATE = re.compile(r"[0-9]+\s*(/|per)\s*([0-9]+\s*)?(second|minute|hour|day)s?", re.IGNORECASE)


def _rate(name: str, raw: str) -> str:
    if not all(_RATE.fullmatch(part.strip()) for part in raw.split(";")):
        raise ConfigError(f"{name} must be a rate such as '30 per minute' or '5/second', got {raw!r}")
    return raw


def _base_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"OPENAI_BASE_URL must be an http(s) URL such as https://api.openai.com/v1, got {raw!r}"
        )
    return raw.rstrip("/")


_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _host(raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        if not _HOSTNAME.fullmatch(raw):
            raise ConfigError(f"HOST must be an IP address or host name, got {raw!r}") from None
    return raw


def _trusted_hosts(raw: str) -> tuple[str, ...]:
    """TRUSTED_HOSTS: comma-separated host names or IP addresses; `.example.com` also matches
    every subdomain. IPv6 addresses are kept in brackets, as they appear in a Host header."""
    names = []
    for part in raw.split(","):
        name = part.strip().lower()
        if not name:
            continue
        bare = name.removeprefix("[").removesuffix("]")
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            if not _HOSTNAME.fullmatch(name.removeprefix(".")):
                raise ConfigError(
                    "TRUSTED_HOSTS must be host names or IP addresses separated by commas "
                    f"(no ports, no schemes), got {part.strip()!r}"
                ) from None
            names.append(name)
        else:
            names.append(f"[{address}]" if address.version == 6 else str(address))
    return tuple(names)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def s3_url(raw: str) -> str:
    """IMAGE_STORE_URL (or a migration's target) checked: `s3://bucket[/prefix]`, no trailing slash."""
    parsed = urlparse(raw)
    if parsed.scheme != "s3" or not _BUCKET.fullmatch(parsed.netloc or ""):
        raise ConfigError(
            f"IMAGE_STORE_URL must be s3://bucket or s3://bucket/prefix (a valid bucket name), got {raw!r}"
        )
    return raw.rstrip("/")


def open_bind_error(settings: Settings) -> str | None:
    """Why the app must not listen on `settings.host` (others could reach it, no password), or None."""
    if settings.loopback or settings.app_password or settings.allow_unauthenticated:
        return None
    return (
        f"HOST={settings.host} accepts connections from other machines, but no APP_PASSWORD is set: "
        "anyone who can reach it could spend your API key. Set APP_PASSWORD, or set "
        "ALLOW_UNAUTHENTICATED=1 if something in front of the app already checks who may use it. "
        "Set TRUSTED_HOSTS to the names people use to reach it too: any other Host is refused."
    )


Parser = Callable[[str, str], Any]  # (variable name, raw text) -> the setting's value


def _bounded(lo: int, hi: int) -> Parser:
    return lambda name, raw: _int(name, raw, lo, hi)


def _text(name: str, raw: str) -> str:
    return raw


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _model(name: str, raw: str) -> str:
    if len(raw) > 200 or any(c.isspace() for c in raw):
        raise ConfigError(f"{name} must be a model name without spaces, got {raw!r}")
    return raw


def _one_of(choices: tuple[str, ...], fold: Callable[[str], str] = str) -> Parser:
    def parse(name: str, raw: str) -> str:
        if fold(raw) not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return fold(raw)

    return parse


def _storage_uri(name: str, raw: str) -> str:
    if "://" not in raw:
        raise ConfigError(f"{name} must be a URI such as redis://localhost:6379, got {raw!r}")
    return raw


def _history_url(name: str, raw: str) -> str:
    if not raw.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise ConfigError(
            "HISTORY_URL must be a PostgreSQL URL such as postgresql://user:password@db:5432/chat, "
            f"got {redact_url_password(raw)!r} (leave it unset for the history in DATA_DIR)"
        )
    return raw


def _endpoint_url(name: str, raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


# The variables with a value to check, in the order they are checked (the first bad one is
# named), each with its Settings field and its parser.
PARSED: tuple[tuple[str, str, Parser], ...] = (
    ("OPENAI_BASE_URL", "openai_base_url", lambda name, raw: _base_url(raw)),
    ("CHAT_MODEL", "chat_model", _model),
    ("IMAGE_MODEL", "image_model", _model),
    ("IMAGE_SIZE", "image_size", _one_of(IMAGE_SIZES)),
    ("DATA_DIR", "data_dir", _path),
    ("HOST", "host", lambda name, raw: _host(raw)),
    ("PORT", "port", _bounded(1, 65535)),
    ("LOG_LEVEL", "log_level", _one_of(LOG_LEVELS, str.upper)),
    ("UPSTREAM_TIMEOUT", "upstream_timeout", lambda name, raw: _float(name, raw, 1, 3600)),
    ("UPSTREAM_RETRIES", "upstream_retries", _bounded(0, 5)),
    ("SYSTEM_PROMPT", "system_prompt", _text),
    ("CONTEXT_CHARS", "context_chars", _bounded(1_000, 2_000_000)),
    ("ALLOW_UNAUTHENTICATED", "allow_unauthenticated", _bool),
    ("RATE_LIMIT", "rate_limit", _rate),
    ("LOGIN_RATE_LIMIT", "login_rate_limit", _rate),
    ("RATELIMIT_STORAGE_URI", "ratelimit_storage_uri", _storage_uri),
    ("DAILY_REQUEST_CAP", "daily_request_cap", _bounded(0, 10_000_000)),
    ("PROXY_FIX", "proxy_fix", _bounded(0, 5)),
    ("TRUSTED_HOSTS", "trusted_hosts", lambda name, raw: _trusted_hosts(raw)),
    ("MAX_ANSWER_CHARS", "max_answer_chars", _bounded(1_000, 10_000_000)),
    ("HISTORY_URL", "history_url", _history_url),
    ("IMAGE_STORE_URL", "image_store_url", lambda name, raw: s3_url(raw)),
    ("IMAGE_STORE_ENDPOINT_URL", "image_store_endpoint_url", _endpoint_url),
    ("IMAGE_STORE_PRESIGN", "image_store_presign", _bounded(0, 7 * 24 * 3600)),
    ("BACKUP_DIR", "backup_dir", _path),
    ("BACKUP_KEEP", "backup_keep", _bounded(1, 3650)),
    ("MAX_PROMPT_CHARS", "max_prompt_chars", _bounded(1, 1_000_000)),
)


def load_settings(
    environ: dict[str, str] | None = None, env_file: str | os.PathLike | None = ".env"
) -> Settings:
    """Read settings from `environ` (default: the process environment) over an optional `.env`.

    Real environment variables win over the `.env` file, as with python-dotenv's defaults.
    Raises :class:`ConfigError` naming the first bad variable.
    """
    values: dict[str, str | None] = {}
    if env_file and Path(env_file).is_file():
        values.update(dotenv_values(env_file))
    values.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        return _blank_to_none(values.get(name))

    kwargs: dict[str, Any] = {
        "openai_api_key": get("OPENAI_API_KEY"),
        "app_password": get("APP_PASSWORD"),
        "secret_key": get("SECRET_KEY"),
        # Read here too (not only by boto3 from the process environment) so `.env` works.
        "aws_access_key_id": get("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": get("AWS_SECRET_ACCESS_KEY"),
    }
    for name, key, parse in PARSED:
        if raw := get(name):
            kwargs[key] = parse(name, raw)
    if region := get("IMAGE_STORE_REGION") or get("AWS_DEFAULT_REGION") or get("AWS_REGION"):
        kwargs["image_store_region"] = region
    return Settings(**kwargs)


def settings_from_mapping(mapping: dict[str, object]) -> Settings:
    """Build settings from a test configuration dict keyed by field name (tests, embedding)."""
    names = {f.name for f in fields(Settings)}
    unknown = set(mapping) - names
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    data = dict(mapping)
    for key in ("data_dir", "backup_dir"):
        if data.get(key) is not None:
            data[key] = Path(data[key])  # type: ignore[arg-type]
    return Settings(**data)  # type: ignore[arg-type]


def check_startup(settings: Settings) -> None:
    """The checks that span several settings, then DATA_DIR created; ConfigError says what is wrong.

    create_app runs them, and so does a server's master process before it starts any worker.
    """
    if message := open_bind_error(settings):
        raise ConfigError(message)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"DATA_DIR {settings.data_dir} cannot be created: {e.strerror}") from None


def ensure_secret_key(settings: Settings) -> str:
    """Return SECRET_KEY, or one generated once and kept in DATA_DIR so sessions survive restarts."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    # A temporary file of our own (workers may start at the same moment), linked into place:
    # link() fails if another process got there first, and then everyone uses that key.
    fd, tmp_name = tempfile.mkstemp(dir=settings.data_dir, prefix=".secret_key.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
    finally:
        tmp.unlink(missing_ok=True)
    logging.getLogger(__name__).info("Generated a new SECRET_KEY in %s", path)
    return key
