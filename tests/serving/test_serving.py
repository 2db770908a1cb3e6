"""`make run` (gunicorn with gunicorn.conf.py) and `make dev` (the reloader), as real processes.

`make run` uses the project's .venv as `make test` leaves it; the first-run test
(tests/browser/test_firstrun.py) does the same from a fresh clone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..support.ports import free_port
from ..support.serving import ServerProcess, clean_env

pytestmark = pytest.mark.slow  # real processes: make test runs it, make test-fast does not

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
CONFIG = ROOT / "gunicorn.conf.py"
DEV_SERVER_WARNING = "This is a development server"


def banner_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Serving on ")]


def start_gunicorn(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(GUNICORN), "--config", str(CONFIG)],
        cwd=tmp_path,
        env=clean_env(**settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"PORT": "abc"}, "PORT must be a whole number, got 'abc'"),
        ({"HOST": "0.0.0.0"}, "APP_PASSWORD"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"WEB_WORKERS": "many"}, "WEB_WORKERS must be a whole number"),
    ],
    ids=["port", "public-host-without-password", "log-level", "web-workers"],
)
def test_a_bad_setting_stops_gunicorn_with_one_clear_line_and_status_2(tmp_path, settings, named):
    result = start_gunicorn(tmp_path, **settings)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("Configuration error: ")
    assert named in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "Booting worker" not in result.stderr + result.stdout


def test_make_run_with_a_bad_port_says_so_and_fails(tmp_path):
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "run"],
        env=clean_env(PORT="abc", DATA_DIR=str(tmp_path / "data")),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "Configuration error: PORT must be a whole number, got 'abc'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def serve_once(target: str, tmp_path: Path) -> tuple[str, str, dict, bool]:
    """`make <target>` in the project on a free port and tmp_path/data: started, asked for /healthz,
    stopped with SIGTERM to its group. Returns the banner it should print, its output, the
    /healthz answer and whether the whole group ended in time."""
    port = free_port()
    data_dir = tmp_path / "data"
    server = ServerProcess(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        env=clean_env(PORT=str(port), DATA_DIR=str(data_dir)),
        log=tmp_path / f"make-{target}.log",
    )
    try:
        health = server.wait_healthy(timeout=60)
    finally:
        stopped = server.stop()
    expected = f"Serving on http://127.0.0.1:{port} — demo mode (no OPENAI_API_KEY), data in {data_dir}"
    return expected, server.output(), health.json(), stopped


def test_make_run_serves_with_gunicorn_and_prints_one_banner_with_the_absolute_data_dir(tmp_path):
    banner, output, health, stopped = serve_once("run", tmp_path)

    assert health == {"status": "ok", "demo": True}
    assert banner_lines(output) == [banner]
    assert "gunicorn" in output
    assert DEV_SERVER_WARNING not in output
    assert stopped, output
    assert "Shutting down: Master" in output
    assert (tmp_path / "data" / "app.log").is_file()


def test_gunicorn_config_resolves_the_default_data_dir_in_the_working_directory(tmp_path):
    port = free_port()
    server = ServerProcess(
        [str(GUNICORN), "--config", str(CONFIG)],
        cwd=tmp_path,
        env=clean_env(PORT=str(port), WEB_WORKERS="1", WEB_THREADS="4"),
        log=tmp_path / "gunicorn.log",
    )
    try:
        server.wait_healthy(timeout=60)
    finally:
        assert server.stop(), server.output()

    assert banner_lines(server.output()) == [
        f"Serving on http://127.0.0.1:{port} — demo mode (no OPENAI_API_KEY), data in {tmp_path / 'data'}"
    ]
    assert (tmp_path / "data" / "secret_key").is_file()


def test_make_dev_serves_with_the_reloader_and_prints_the_banner_once(tmp_path):
    banner, output, health, stopped = serve_once("dev", tmp_path)

    assert health == {"status": "ok", "demo": True}
    assert "Restarting with stat" in output  # Werkzeug's reloader runs the server
    assert banner_lines(output) == [banner]
    assert stopped, output


def test_gunicorn_config_takes_port_and_a_relative_data_dir_from_dotenv(tmp_path):
    port = free_port()
    (tmp_path / ".env").write_text(f"PORT={port}\nDATA_DIR=instance/data\n", encoding="utf-8")
    server = ServerProcess(
        [str(GUNICORN), "--config", str(CONFIG)],
        cwd=tmp_path,
        env=clean_env(WEB_WORKERS="1", WEB_THREADS="4"),
        log=tmp_path / "gunicorn.log",
        port=port,
    )
    try:
        health = server.wait_healthy(timeout=60)
    finally:
        assert server.stop(), server.output()

    data_dir = tmp_path / "instance" / "data"
    assert health.json() == {"status": "ok", "demo": True}
    assert banner_lines(server.output())[0].endswith(f", data in {data_dir}")
    assert (data_dir / "secret_key").is_file()


def test_warm_up_compiles_the_pages_and_reads_the_search_indexes_before_the_first_request(
    make_app, data_dir, monkeypatch
):
    from app.history import ChatLog
    from app.serving import warm_up

    store = ChatLog(data_dir)
    store.finish(store.begin("code", "an older prompt", "m"), "an older answer")
    store.checkpoint(store.today())
    app = make_app()
    loaded: list[str] = []
    real_get_template = app.jinja_env.get_template
    monkeypatch.setattr(
        app.jinja_env,
        "get_template",
        lambda name, *a, **k: (loaded.append(name), real_get_template(name, *a, **k))[1],
    )

    from app.assets import SHELL_ASSETS, _compressed

    _compressed.cache_clear()  # the process's compressed assets, shared by its apps
    warm_up(app)

    assert {"index.html", "chatlog.html", "partials/_search_results.html"} <= set(loaded)
    assert app.extensions["chatlog"]._indexes, "the day indexes were read"
    assert _compressed.cache_info().currsize == len(SHELL_ASSETS), "the shell's assets were compressed"
