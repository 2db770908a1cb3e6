"""Import and export of the seed's chatlog.json format: ChatLog, the `flask` CLI, and entry pages.

`tests/data/chatlog.sample.json` is a verbatim copy of the original project's sample
(`seed/chatlog.sample.json` in the shared design folder, which is not part of this repository).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app.history import ChatLog

from ..support.apps import TEST_KEY
from ..support.upstream import Reply, error_body

ROOT = Path(__file__).resolve().parents[2]
EXPIRED_HOST = "oaidalleapiprodscus.blob.core.windows.net"
EXPIRED_URL = (
    f"https://{EXPIRED_HOST}/private/org-xyz/user-abc/img-expired.png"
    "?st=2024-09-02T10%3A00%3A00Z&se=2024-09-02T12%3A00%3A00Z&sig=REDACTED"
)
SCRIPT_PROMPT = "Erkläre <script>-Tags in HTML & warum man Eingaben escapen muss"

SEED_FILE = Path(__file__).resolve().parents[1] / "data" / "chatlog.sample.json"
SEED: dict[str, list[dict[str, str]]] = json.loads(SEED_FILE.read_text(encoding="utf-8"))
SEED_PROMPTS = {row["prompt"] for rows in SEED.values() for row in rows}


@pytest.fixture
def seed_file() -> Path:
    return SEED_FILE


@pytest.fixture
def imported_app(demo_app):
    """The demo app with the seed sample imported into its history."""
    demo_app.extensions["chatlog"].import_seed(SEED, demo_app.extensions["images"].name_for_url)
    return demo_app


@pytest.fixture
def imported_client(imported_app):
    return imported_app.test_client()


def run_flask(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app app ARGS` in a subprocess on DATA_DIR, in demo mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "FLASK_"))}
    env["DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def prompts_in(data_dir: Path) -> set[str]:
    return {e.prompt for day in ChatLog(data_dir).days() for e in day.entries}


class ResourceCollector(HTMLParser):
    """URLs a browser would fetch on its own when loading the page (src, srcset, stylesheets...)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "srcset", "poster", "data"):
            if values.get(name):
                self.urls.append(values[name] or "")
        if tag == "link" and values.get("href"):
            self.urls.append(values["href"] or "")
        if tag == "script":
            self.scripts.append(values)


def collect(html: str) -> ResourceCollector:
    parser = ResourceCollector()
    parser.feed(html)
    return parser


# -- import through ChatLog --------------------------------------------------------------------


def test_import_seed_adds_all_seven_entries(data_dir):
    log = ChatLog(data_dir)

    assert log.import_seed(SEED) == (7, 0)
    assert log.count() == 7
    assert prompts_in(data_dir) == SEED_PROMPTS


def test_import_seed_twice_adds_nothing_the_second_time(data_dir):
    log = ChatLog(data_dir)
    log.import_seed(SEED)

    assert log.import_seed(SEED) == (0, 7)
    assert log.count() == 7


def test_import_seed_keeps_the_seeds_dates_and_indexes(data_dir):
    log = ChatLog(data_dir)
    log.import_seed(SEED)

    for date, rows in SEED.items():
        for index, row in enumerate(rows):
            assert log.get(date, index).prompt == row["prompt"]


def test_import_seed_marks_entries_done(data_dir):
    log = ChatLog(data_dir)
    log.import_seed(SEED)

    assert {e.status for day in log.days() for e in day.entries} == {"done"}


@pytest.mark.parametrize(
    ("date", "index"), [("2024-08-30", 1), ("2024-09-02", 0)], ids=["fixed-local-path", "expired-url"]
)
def test_seed_image_entries_are_imported_as_images(data_dir, date, index):
    log = ChatLog(data_dir)
    log.import_seed(SEED)

    entry = log.get(date, index)
    assert entry.kind == "image"
    assert entry.image_url is None


@pytest.mark.parametrize(
    ("date", "index"),
    [("2024-08-30", 0), ("2024-08-31", 0), ("2024-08-31", 1), ("2024-08-31", 2), ("2024-09-02", 1)],
)
def test_seed_text_entries_are_imported_as_code(data_dir, date, index):
    log = ChatLog(data_dir)
    log.import_seed(SEED)

    assert log.get(date, index).kind == "code"


def test_import_of_a_row_with_an_error_makes_a_failed_entry(data_dir):
    log = ChatLog(data_dir)
    log.import_seed({"2024-09-03": [{"prompt": "p", "response": "", "error": "Upstream down."}]})

    entry = log.get("2024-09-03", 0)
    assert (entry.status, entry.error) == ("failed", "Upstream down.")


# -- import through the CLI --------------------------------------------------------------------


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_cli_import_in_a_subprocess_adds_all_seven_entries(data_dir, seed_file):
    result = run_flask(data_dir, "import-chatlog", str(seed_file))

    assert result.returncode == 0, result.stderr
    assert "Imported 7 entries" in result.stdout
    assert prompts_in(data_dir) == SEED_PROMPTS


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_cli_import_in_a_subprocess_twice_adds_nothing_the_second_time(data_dir, seed_file):
    run_flask(data_dir, "import-chatlog", str(seed_file))

    result = run_flask(data_dir, "import-chatlog", str(seed_file))

    assert result.returncode == 0, result.stderr
    assert "Imported 0 entries, skipped 7" in result.stdout
    assert ChatLog(data_dir).count() == 7


def test_cli_runner_import_adds_all_seven_entries(demo_app, data_dir, seed_file):
    result = demo_app.test_cli_runner().invoke(args=["import-chatlog", str(seed_file)])

    assert result.exit_code == 0, result.output
    assert "Imported 7 entries" in result.output
    assert prompts_in(data_dir) == SEED_PROMPTS


def test_cli_runner_import_twice_adds_nothing_the_second_time(demo_app, data_dir, seed_file):
    runner = demo_app.test_cli_runner()
    runner.invoke(args=["import-chatlog", str(seed_file)])

    result = runner.invoke(args=["import-chatlog", str(seed_file)])

    assert result.exit_code == 0, result.output
    assert "Imported 0 entries, skipped 7" in result.output
    assert ChatLog(data_dir).count() == 7


INVALID_IMPORTS = {
    "not-json": ("{'2024-08-30': [", "is not valid JSON"),
    "a-list": (json.dumps([{"prompt": "p", "response": "r"}]), "expected a JSON object"),
    "impossible-date": (
        json.dumps({"2024-08-30": [{"prompt": "ok", "response": "r"}], "2024-13-45": []}),
        "'2024-13-45' is not a valid date",
    ),
    "not-a-date": (
        json.dumps({"2024-08-30": [{"prompt": "ok", "response": "r"}], "yesterday": []}),
        "'yesterday' is not a date",
    ),
    "entry-without-prompt": (
        json.dumps({"2024-08-30": [{"prompt": "ok", "response": "r"}, {"response": "no prompt"}]}),
        "string 'prompt'",
    ),
    "entries-not-a-list": (json.dumps({"2024-08-30": {"prompt": "p"}}), "string 'prompt'"),
}


@pytest.mark.parametrize(("content", "message"), INVALID_IMPORTS.values(), ids=INVALID_IMPORTS.keys())
def test_cli_import_of_an_invalid_file_fails_with_a_clear_message_and_imports_nothing(
    demo_app, data_dir, tmp_path, content, message
):
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")

    result = demo_app.test_cli_runner().invoke(args=["import-chatlog", str(path)])

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click's error exit, not an uncaught error
    assert "Error:" in result.stderr
    assert message in result.stderr
    assert str(path) in result.stderr
    assert ChatLog(data_dir).count() == 0


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_cli_import_of_an_invalid_file_in_a_subprocess_exits_1_with_the_message_and_no_traceback(
    data_dir, tmp_path
):
    content, message = INVALID_IMPORTS["entry-without-prompt"]
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")

    result = run_flask(data_dir, "import-chatlog", str(path))

    assert result.returncode == 1, result.stderr
    assert "Error:" in result.stderr
    assert message in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert ChatLog(data_dir).count() == 0


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_cli_import_of_a_file_that_is_not_utf8_fails_with_a_clear_message(data_dir, tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(
        json.dumps({"2024-08-30": [{"prompt": "Grüße", "response": "r"}]}, ensure_ascii=False).encode(
            "latin-1"
        )
    )

    result = run_flask(data_dir, "import-chatlog", str(path))

    assert result.returncode == 1
    assert "Error:" in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert ChatLog(data_dir).count() == 0


# -- pages of imported entries -----------------------------------------------------------------


@pytest.mark.parametrize(
    "permalink", ["/chatlog/2024-08-30/1", "/chatlog/2024-09-02/0"], ids=["fixed-local-path", "expired-url"]
)
def test_imported_image_entry_page_says_image_no_longer_available(imported_client, permalink):
    response = imported_client.get(permalink)

    assert response.status_code == 200
    assert "Image no longer available" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "permalink", ["/chatlog/2024-08-30/1", "/chatlog/2024-09-02/0"], ids=["fixed-local-path", "expired-url"]
)
def test_imported_image_entry_page_has_no_image_element(imported_client, permalink):
    response = imported_client.get(permalink)
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "Image no longer available" in html
    assert "<img" not in html


def test_expired_image_url_is_never_fetched_by_its_entry_page(imported_client):
    response = imported_client.get("/chatlog/2024-09-02/0")
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "Ein roter Fuchs im Schnee, fotorealistisch" in html
    assert not [url for url in collect(html).urls if EXPIRED_HOST in url]


def test_gone_local_image_is_never_fetched_by_its_entry_page(imported_client):
    response = imported_client.get("/chatlog/2024-08-30/1")
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "Ein Leuchtturm bei Sonnenuntergang im Stil eines Aquarells" in html
    assert not [url for url in collect(html).urls if "generated_image.png" in url]


@pytest.mark.parametrize("path", ["/", "/chatlog"])
def test_history_pages_never_fetch_the_expired_image(imported_client, path):
    response = imported_client.get(path)
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "Ein roter Fuchs im Schnee" in html  # the expired image's entry is listed
    assert not [url for url in collect(html).urls if EXPIRED_HOST in url]


@pytest.mark.parametrize(
    ("permalink", "language", "highlighted"),
    [
        ("/chatlog/2024-08-30/0", "python", '<span class="k">def</span>'),
        ("/chatlog/2024-08-31/0", "python", '<span class="kn">import</span>'),
        ("/chatlog/2024-08-31/2", "sql", '<span class="k">SELECT</span>'),
        ("/chatlog/2024-09-02/1", "bash", "<span class=\"s1\">'*.log'</span>"),
    ],
)
def test_imported_code_entry_page_renders_highlighted_code(imported_client, permalink, language, highlighted):
    html = imported_client.get(permalink).get_data(as_text=True)

    assert f'<pre class="highlight" data-lang="{language}">' in html
    assert highlighted in html


def test_imported_markdown_prose_is_rendered(imported_client):
    html = imported_client.get("/chatlog/2024-08-30/0").get_data(as_text=True)

    assert "<code>n</code>" in html


def test_script_entry_page_escapes_the_prompt(imported_client):
    html = imported_client.get("/chatlog/2024-08-31/1").get_data(as_text=True)

    assert "Erkläre &lt;script&gt;-Tags in HTML &amp; warum man Eingaben escapen muss" in html
    assert "<script>-Tags" not in html


def test_script_entry_page_escapes_the_response(imported_client):
    html = imported_client.get("/chatlog/2024-08-31/1").get_data(as_text=True)

    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>" in html
    assert "<script>alert(1)" not in html


def test_script_entry_page_runs_only_the_apps_own_scripts(imported_client):
    html = imported_client.get("/chatlog/2024-08-31/1").get_data(as_text=True)

    scripts = collect(html).scripts
    assert scripts
    assert all((s.get("src") or "").startswith("/static/") for s in scripts)


def test_history_page_escapes_the_script_prompt(imported_client):
    html = imported_client.get("/chatlog").get_data(as_text=True)

    assert "Erkläre &lt;script&gt;-Tags" in html
    assert "<script>-Tags" not in html


# -- export ------------------------------------------------------------------------------------


def test_export_seed_round_trips_the_imported_sample(data_dir):
    log = ChatLog(data_dir)
    log.import_seed(SEED)

    assert log.export_seed() == SEED


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_cli_export_to_stdout_in_a_subprocess_round_trips_the_sample(data_dir, seed_file):
    run_flask(data_dir, "import-chatlog", str(seed_file))

    result = run_flask(data_dir, "export-chatlog")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == SEED


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_cli_export_to_a_file_in_a_subprocess_round_trips_the_sample(data_dir, seed_file, tmp_path):
    run_flask(data_dir, "import-chatlog", str(seed_file))
    out = tmp_path / "export.json"

    result = run_flask(data_dir, "export-chatlog", str(out))

    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == SEED
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []


def test_cli_runner_export_to_stdout_round_trips_the_sample(imported_app):
    result = imported_app.test_cli_runner().invoke(args=["export-chatlog"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == SEED


def test_cli_runner_export_to_a_file_round_trips_the_sample(imported_app, tmp_path):
    out = tmp_path / "export.json"

    result = imported_app.test_cli_runner().invoke(args=["export-chatlog", str(out)])

    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8")) == SEED


def test_export_imported_into_a_fresh_history_gives_the_same_export(data_dir, tmp_path):
    first = ChatLog(data_dir)
    first.import_seed(SEED)
    first.begin("code", "a new prompt", "m")
    exported = first.export_seed()
    (tmp_path / "fresh").mkdir()
    second = ChatLog(tmp_path / "fresh")

    second.import_seed(exported)

    assert second.export_seed() == exported


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_export_of_a_failed_generation_includes_the_error(make_app, upstream, data_dir):
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body("boom")))
    response = app.test_client().post("/generate_code", data={"prompt": "This will fail"})
    assert response.status_code == 500

    result = run_flask(data_dir, "export-chatlog")

    [row] = [row for rows in json.loads(result.stdout).values() for row in rows]
    assert row["prompt"] == "This will fail"
    assert row["error"] == response.get_json()["error"]


def test_export_of_a_successful_generation_has_no_error_field(data_dir):
    log = ChatLog(data_dir)
    log.finish(log.begin("code", "fine", "m"), "answer")

    [row] = [row for rows in log.export_seed().values() for row in rows]
    assert row == {"prompt": "fine", "response": "answer"}
