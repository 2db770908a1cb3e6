"""Configuration: app.config.load_settings, the generated SECRET_KEY, and `python -m app`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from app.config import ConfigError, load_settings

from .support.apps import TEST_KEY
from .support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


def settings_from(environ: dict[str, str], env_file: Path | None = None):
    return load_settings(environ=environ, env_file=env_file)


def subprocess_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The test's environment without upstream or app settings, plus `extra`."""
    names = {
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "CHAT_MODEL",
        "IMAGE_MODEL",
        "IMAGE_SIZE",
        "HOST",
        "PORT",
        "APP_PASSWORD",
        "SECRET_KEY",
        "LOG_LEVEL",
        "UPSTREAM_TIMEOUT",
    }
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["PYTHONPATH"] = str(ROOT)
    env["DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


# -- defaults and sources ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("chat_model", "gpt-4o-mini"),
        ("image_model", "dall-e-3"),
        ("host", "127.0.0.1"),
        ("port", 8000),
        ("openai_api_key", None),
        ("openai_base_url", None),
    ],
)
def test_default_setting(attribute, expected):
    assert getattr(settings_from({}), attribute) == expected


def test_demo_mode_without_an_api_key():
    assert settings_from({}).demo is True


def test_no_demo_mode_with_an_api_key():
    assert settings_from({"OPENAI_API_KEY": TEST_KEY}).demo is False


def test_blank_value_means_the_default():
    assert settings_from({"PORT": "  ", "OPENAI_API_KEY": ""}).port == 8000


def test_env_file_values_are_read(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("CHAT_MODEL=model-from-dotenv\nPORT=9001\n", encoding="utf-8")

    settings = settings_from({}, env_file)

    assert (settings.chat_model, settings.port) == ("model-from-dotenv", 9001)


def test_environment_wins_over_the_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("CHAT_MODEL=model-from-dotenv\nPORT=9001\n", encoding="utf-8")

    settings = settings_from({"PORT": "9002"}, env_file)

    assert (settings.chat_model, settings.port) == ("model-from-dotenv", 9002)


def test_a_missing_env_file_is_not_an_error(tmp_path):
    assert settings_from({}, tmp_path / "no-such.env").port == 8000


def test_a_bad_value_in_the_env_file_is_reported(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=eighty\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="PORT"):
        settings_from({}, env_file)


# -- validation --------------------------------------------------------------------------------


BAD_VALUES = [
    ("PORT", "abc"),
    ("PORT", "70000"),
    ("PORT", "0"),
    ("OPENAI_BASE_URL", "ftp://x"),
    ("OPENAI_BASE_URL", "not a url"),
    ("IMAGE_SIZE", "13x13"),
    ("LOG_LEVEL", "LOUD"),
    ("UPSTREAM_TIMEOUT", "-1"),
    ("UPSTREAM_TIMEOUT", "soon"),
    ("HOST", "bad host!"),
    ("CHAT_MODEL", "gpt 4"),
    ("MAX_PROMPT_CHARS", "0"),
    ("HISTORY_URL", "mysql://u:p@db/chat"),
    ("HISTORY_URL", "data/history"),
    ("IMAGE_STORE_URL", "https://bucket.example.org/x"),
    ("IMAGE_STORE_URL", "s3://"),
    ("IMAGE_STORE_URL", "s3://UPPER_case/x"),
    ("IMAGE_STORE_ENDPOINT_URL", "minio:9000"),
    ("IMAGE_STORE_PRESIGN", "forever"),
    ("IMAGE_STORE_PRESIGN", "-5"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[f"{n}={v}" for n, v in BAD_VALUES])
def test_a_bad_value_raises_config_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as raised:
        settings_from({name: value})

    assert name in str(raised.value)


@pytest.mark.parametrize("host", ["0.0.0.0", "::1", "localhost", "my-server.example.org"])
def test_host_accepts_addresses_and_host_names(host):
    assert settings_from({"HOST": host}).host == host


def test_log_level_is_case_insensitive():
    assert settings_from({"LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_base_url_loses_its_trailing_slash():
    assert settings_from({"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1/"}).openai_base_url == (
        "http://127.0.0.1:11434/v1"
    )


# -- shared stores -----------------------------------------------------------------------------


def test_shared_stores_are_off_by_default():
    settings = settings_from({})

    assert (settings.history_url, settings.image_store_url, settings.image_store_presign) == (None, None, 0)


@pytest.mark.parametrize(
    "url", ["postgresql://u:p@db:5432/chat", "postgres://db/chat", "postgresql+psycopg://db/c"]
)
def test_history_url_accepts_postgresql_urls(url):
    assert settings_from({"HISTORY_URL": url}).history_url == url


def test_image_store_settings_are_read():
    settings = settings_from(
        {
            "IMAGE_STORE_URL": "s3://chat-images/prod/",
            "IMAGE_STORE_ENDPOINT_URL": "http://minio.internal:9000/",
            "IMAGE_STORE_REGION": "eu-central-1",
            "IMAGE_STORE_PRESIGN": "3600",
        }
    )

    assert settings.image_store_url == "s3://chat-images/prod"
    assert settings.image_store_endpoint_url == "http://minio.internal:9000"
    assert (settings.image_store_region, settings.image_store_presign) == ("eu-central-1", 3600)


def test_a_bad_history_url_error_does_not_show_its_password():
    with pytest.raises(ConfigError) as raised:
        settings_from({"HISTORY_URL": "mysql://chat:pw-DO-NOT-LEAK@db/chat"})

    assert "pw-DO-NOT-LEAK" not in str(raised.value)
    assert "HISTORY_URL" in str(raised.value)


def test_passwords_in_store_urls_are_secrets_redacted_from_logs(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-DO-NOT-LEAK")
    settings = settings_from(
        {
            "HISTORY_URL": "postgresql://chat:pg-pw-DO-NOT-LEAK@db/chat",
            "RATELIMIT_STORAGE_URI": "redis://:redis-pw-DO-NOT-LEAK@cache:6379/0",
        }
    )

    assert {"pg-pw-DO-NOT-LEAK", "redis-pw-DO-NOT-LEAK", "aws-secret-DO-NOT-LEAK"} <= set(settings.secrets)
    assert "pg-pw-DO-NOT-LEAK" not in repr(settings)


# -- secrets -----------------------------------------------------------------------------------


def test_repr_of_settings_never_contains_the_api_key():
    settings = settings_from({"OPENAI_API_KEY": TEST_KEY})

    assert TEST_KEY not in repr(settings)
    assert TEST_KEY not in str(settings)


def test_repr_of_settings_never_contains_the_password_or_secret_key():
    settings = settings_from({"APP_PASSWORD": "hunter2-password", "SECRET_KEY": "s3cret-session-key"})

    assert "hunter2-password" not in repr(settings)
    assert "s3cret-session-key" not in repr(settings)


def test_secret_key_is_generated_into_the_data_dir(make_app, data_dir):
    app = make_app()

    key = (data_dir / "secret_key").read_text(encoding="ascii").strip()
    assert app.config["SECRET_KEY"] == key
    assert len(key) >= 32


def test_generated_secret_key_is_reused_by_a_second_app(make_app):
    first = make_app()
    second = make_app()

    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]


def test_separate_data_dirs_get_separate_secret_keys(make_app, tmp_path):
    other = tmp_path / "other-data"

    assert make_app().config["SECRET_KEY"] != make_app(data_dir=other).config["SECRET_KEY"]


def test_generated_secret_key_file_is_private(make_app, data_dir):
    make_app()

    mode = stat.S_IMODE((data_dir / "secret_key").stat().st_mode)
    assert mode & (stat.S_IRWXG | stat.S_IRWXO) == 0


def test_generating_the_secret_key_leaves_no_temporary_file(make_app, data_dir):
    make_app()

    assert [name for name in os.listdir(data_dir) if name.endswith(".tmp")] == []


def test_configured_secret_key_is_used_and_nothing_is_written(make_app, data_dir):
    app = make_app(secret_key="configured-secret-key")

    assert app.config["SECRET_KEY"] == "configured-secret-key"
    assert not (data_dir / "secret_key").exists()


# -- python -m app -----------------------------------------------------------------------------


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_python_m_app_with_a_bad_port_exits_2_naming_port(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=tmp_path,
        env=subprocess_env(tmp_path / "data", PORT="abc"),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "PORT" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_python_m_app_serves_healthz(tmp_path):
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=tmp_path,
            env=subprocess_env(tmp_path / "data", PORT=str(port), HOST="127.0.0.1"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        response = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and server.poll() is None:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)

    assert response is not None, log_path.read_text()
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "demo": True}
