"""Property-based fuzzing of every route's inputs with Hypothesis, against one demo app.

The demo upstream never fails, so any 5xx is a bug. Every response must have the content type
its route promises, and nothing outside DATA_DIR may be read (a sentinel file next to it never
shows up in a response) or written (no new file appears next to DATA_DIR).
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app

from ..support.htmx import HX

# Examples per property: 200 under `make test`; `make test-fast` sets FUZZ_EXAMPLES=25 for the
# inner loop (the same properties, fewer random inputs).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # keep the repository free of a .hypothesis directory
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=max(1, EXAMPLES // 2))

SENTINEL = f"SENTINEL-{uuid.uuid4().hex}"
PASSWD_LINE = b"root:x:0:0"
SEED_DATE = "2024-01-01"
LOGIN_PASSWORD = "fuzz-login-password"
MAX_PROMPT = 3000

JSON_TYPES = {"application/json"}
HTML_TYPES = {"text/html"}
PAGE_OR_JSON = {"text/html", "application/json"}
ANY_ROUTE_TYPES = PAGE_OR_JSON | {
    "text/event-stream",
    "text/plain",
    "text/markdown",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/manifest+json",
    "image/png",
    "image/webp",
    "image/svg+xml",
    "application/zip",  # /backup.zip
}


@dataclass
class Env:
    app: object
    client: object
    root: Path
    data_dir: Path
    image_url: str
    outside: set[Path]


def _outside_files(root: Path, data_dir: Path) -> set[Path]:
    """Every file and folder under `root` but DATA_DIR and what it holds. The walk does not go
    into DATA_DIR, which grows with every example (checked after each one)."""
    found: set[Path] = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if Path(folder, name) != data_dir]
        found.update(Path(folder, name) for name in [*dirs, *files])
    return found


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "sentinel.txt").write_text(SENTINEL)
    (root / "sentinel.png").write_text(SENTINEL)
    data_dir = root / "data"
    app = create_app(
        {
            "data_dir": data_dir,
            "rate_limit": "100000 per minute",
            "upstream_retries": 0,
            "log_level": "WARNING",
            # Small enough that most huge prompts take the 400 path: every stored prompt makes
            # each later write of today's history file longer.
            "max_prompt_chars": MAX_PROMPT,
        }
    )
    app.config["TESTING"] = True
    client = app.test_client()
    rows = [
        {"prompt": "plain", "response": "just text"},
        {"prompt": "code", "response": "```python\nprint(1)\n```\n\n```sql\nSELECT 1;\n```"},
        {"prompt": "failed", "response": "", "error": "it broke"},
    ]
    app.extensions["chatlog"].import_seed({SEED_DATE: rows})
    image_url = client.post("/generate_image", data={"prompt": "seed image"}).get_json()["image_url"]
    assert (data_dir / "images").is_dir()
    return Env(app, client, root, data_dir, image_url, _outside_files(root, data_dir))


@pytest.fixture(scope="module")
def login_client(tmp_path_factory):
    app = create_app(
        {
            "data_dir": tmp_path_factory.mktemp("fuzz-login") / "data",
            "app_password": LOGIN_PASSWORD,
            "login_rate_limit": "100000 per minute",
            "log_level": "WARNING",
        }
    )
    app.config["TESTING"] = True
    return app.test_client()


def check(env: Env, response, types: set[str]) -> None:
    """No 5xx, the promised content type, nothing read or written outside DATA_DIR."""
    body = response.get_data()
    assert response.status_code < 500, body[:500]
    if 300 <= response.status_code < 400:
        # Werkzeug's own redirects (e.g. merging `//` in a path) stay on this site.
        assert re.match(r"(http://localhost)?/(?!/)", response.headers["Location"])
    else:
        assert response.mimetype in types, (response.status_code, response.mimetype, body[:200])
    assert SENTINEL.encode() not in body
    assert PASSWD_LINE not in body
    assert _outside_files(env.root, env.data_dir) == env.outside


# -- strategies ----------------------------------------------------------------------------------

TRICKY = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202eevil\u202c",
    "\ufeff",
    "\ud800",
    "\udfff",
    "x\ud83d",
    "\U0001f600" * 50,
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "{% raw %}",
    "```",
    "\r\n" * 10,
    "%s%n%x",
    "../../etc/passwd",
]

# Any code point, lone surrogates and NUL included.
any_text = st.text(st.characters(), max_size=200) | st.sampled_from(TRICKY)
huge_text = st.builds(
    lambda char, n: char * n, st.characters(exclude_categories=["Cs"]), st.integers(MAX_PROMPT - 10, 40_000)
)
prompt_text = any_text | huge_text

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)

DATES = [
    SEED_DATE,
    "2024-01-01",
    "2024-02-30",
    "9999-99-99",
    "0000-00-00",
    "..",
    "%2e%2e",
    "%2E%2E%2F%2E%2E",
    "..%2f..%2fetc%2fpasswd",
    "../../etc/passwd",
    "....//....//",
    "%00",
    "2024-01-01%00",
    "2024-01-01.json",
    "history",
    "sequence",
    "%252e%252e",
]
INDEXES = ["0", "1", "2", "3", "-1", "99999999999999999999999999999999", "1e3", "0x1", "%2e%2e", "..", "01"]
IMAGE_NAMES = [
    "..",
    "%2e%2e",
    "..%2fsentinel.txt",
    "..%2f..%2fsentinel.txt",
    "%2e%2e%2f%2e%2e%2fsentinel.txt",
    "../sentinel.txt",
    "../../sentinel.txt",
    "..%5c..%5csentinel.txt",
    "sentinel.png",
    "%2Fetc%2Fpasswd",
    "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "0" * 32 + ".png",
    "0" * 32 + ".thumb.webp",
    "0" * 32 + ".png%00.txt",
    "secret_key",
    "..%2fsecret_key",
    "..%2fapp.log",
    ".png",
]


def url_segment(raw_choices: list[str]):
    """A path segment: one of the attack strings as written, or random text percent-encoded."""
    encoded = any_text.map(lambda s: quote(s.encode("utf-8", "surrogatepass"), safe=""))
    return st.sampled_from(raw_choices) | encoded if raw_choices else encoded


dates = url_segment(DATES)
indexes = url_segment(INDEXES) | st.integers(0, 10**30).map(str)
image_names = url_segment(IMAGE_NAMES)


def form_body(fields: dict[str, str]) -> bytes:
    """URL-encoded form with any text (lone surrogates become the invalid UTF-8 they'd be)."""
    return "&".join(
        f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in fields.items()
    ).encode()


def query(**fields: str) -> str:
    return form_body(fields).decode()


accept = st.sampled_from([{}, {"Accept": "application/json"}, {"Accept": "*/*"}, HX, {"Accept": "text/html"}])


# -- generation ----------------------------------------------------------------------------------


@FUZZ
@given(prompt=prompt_text, htmx=st.booleans())
def test_generate_code_form_prompt_never_fails(env, prompt, htmx):
    response = env.client.post(
        "/generate_code",
        data=form_body({"prompt": prompt}),
        content_type="application/x-www-form-urlencoded",
        headers=HX if htmx else {},
    )

    check(env, response, HTML_TYPES if htmx else JSON_TYPES)


@FUZZ
@given(prompt=json_value, model=json_value, extra=st.dictionaries(any_text, json_value, max_size=3))
def test_generate_code_json_body_of_any_shape_never_fails(env, prompt, model, extra):
    body = {**extra, "prompt": prompt, "model": model}
    response = env.client.post("/generate_code", data=json.dumps(body), content_type="application/json")

    check(env, response, JSON_TYPES)


@FUZZ
@given(body=json_value)
def test_generate_code_json_body_that_is_not_an_object_is_400(env, body):
    response = env.client.post("/generate_code", data=json.dumps([body]), content_type="application/json")

    check(env, response, JSON_TYPES)
    assert response.status_code == 400


@FUZZ
@given(
    body=st.binary(max_size=4000),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "text/plain",
            "application/octet-stream",
            "application/json; charset=latin-1",
        ]
    ),
    route=st.sampled_from(["/generate_code", "/generate_image"]),
)
def test_generation_with_random_bytes_body_never_fails(env, body, content_type, route):
    response = env.client.post(route, data=body, content_type=content_type)

    check(env, response, JSON_TYPES)
    assert response.status_code in (200, 400, 413)


@FEW
@given(
    prompt=any_text,
    size=any_text | st.sampled_from(["1024x1024", "256x256", "9999x9999"]),
    quality=any_text,
    style=any_text,
    htmx=st.booleans(),
)
def test_generate_image_with_any_fields_never_fails(env, prompt, size, quality, style, htmx):
    response = env.client.post(
        "/generate_image",
        data=form_body({"prompt": prompt, "size": size, "quality": quality, "style": style}),
        content_type="application/x-www-form-urlencoded",
        headers=HX if htmx else {},
    )

    check(env, response, HTML_TYPES if htmx else JSON_TYPES)


@FEW
@given(prompt=json_value, size=json_value, quality=json_value, style=json_value)
def test_generate_image_json_body_of_any_shape_never_fails(env, prompt, size, quality, style):
    body = {"prompt": prompt, "size": size, "quality": quality, "style": style}
    response = env.client.post("/generate_image", data=json.dumps(body), content_type="application/json")

    check(env, response, JSON_TYPES)


@FUZZ
@given(prompt=any_text)
def test_generated_answer_is_readable_at_its_permalink(env, prompt):
    response = env.client.post("/generate_code", data=form_body({"prompt": prompt}))
    if response.status_code != 200:
        return
    permalink = response.get_json()["entry"]

    entry = env.client.get(permalink, headers={"Accept": "application/json"})
    check(env, entry, JSON_TYPES)
    page = env.client.get(permalink)
    check(env, page, HTML_TYPES)
    assert entry.status_code == page.status_code == 200


# -- history URLs --------------------------------------------------------------------------------


@FUZZ
@given(date=dates, index=indexes, headers=accept)
def test_entry_url_with_any_date_and_index_never_fails(env, date, index, headers):
    response = env.client.get(f"/chatlog/{date}/{index}", headers=headers)

    check(env, response, PAGE_OR_JSON)
    assert response.status_code in (200, 308, 404, 405, 410)


@FUZZ
@given(date=dates, index=indexes, n=indexes)
def test_code_block_download_with_any_numbers_never_fails(env, date, index, n):
    response = env.client.get(f"/chatlog/{date}/{index}/code/{n}")

    check(env, response, {"text/plain", "text/html"})


@FUZZ
@given(date=dates, index=indexes, htmx=st.booleans())
def test_stop_with_any_date_and_index_never_fails(env, date, index, htmx):
    response = env.client.post(f"/chatlog/{date}/{index}/stop", headers=HX if htmx else {})

    check(env, response, HTML_TYPES if htmx else JSON_TYPES)


@FEW
@given(date=dates, index=indexes)
def test_stream_with_any_date_and_index_never_fails(env, date, index):
    response = env.client.get(f"/chatlog/{date}/{index}/stream", headers={"Accept": "text/event-stream"})

    check(env, response, {"text/event-stream", "text/html"})


@FUZZ
@given(date=dates, index=indexes)
def test_image_download_with_any_date_and_index_never_fails(env, date, index):
    response = env.client.get(f"/chatlog/{date}/{index}/image")

    check(env, response, {"image/png", "text/html"})


@FUZZ
@given(date=dates, index=indexes | st.just(""), htmx=st.booleans())
def test_delete_any_path_never_fails(env, date, index, htmx):
    path = f"/chatlog/{date}/{index}" if index else f"/chatlog/{date}"
    response = env.client.delete(path, headers=HX if htmx else {})

    check(env, response, HTML_TYPES if htmx else JSON_TYPES)


@FUZZ
@given(name=image_names, headers=accept)
def test_image_name_never_serves_a_file_outside_the_image_store(env, name, headers):
    response = env.client.get(f"/images/{name}", headers=headers)

    check(env, response, PAGE_OR_JSON | {"image/png", "image/webp"})
    if response.status_code == 200 and "X-Error-Status" not in response.headers:
        assert response.mimetype.startswith("image/")


@FUZZ
@given(path=st.sampled_from(IMAGE_NAMES + DATES) | url_segment([]))
def test_static_path_never_serves_a_file_outside_static(env, path):
    response = env.client.get(f"/static/{path}")

    assert response.status_code < 500
    body = response.get_data()
    assert SENTINEL.encode() not in body
    assert PASSWD_LINE not in body
    assert b"def create_app" not in body
    if response.status_code != 200:
        assert response.mimetype == "text/html"


@FUZZ
@given(
    q=any_text, before=any_text | st.sampled_from([f"{SEED_DATE}/1", "9999-12-31/0", "x/y"]), headers=accept
)
def test_history_search_and_paging_with_any_query_never_fails(env, q, before, headers):
    response = env.client.get(f"/chatlog?{query(q=q, before=before)}", headers=headers)

    check(env, response, PAGE_OR_JSON)
    assert response.status_code == 200


@FUZZ
@given(before=any_text, htmx=st.booleans())
def test_gallery_with_any_cursor_never_fails(env, before, htmx):
    response = env.client.get(f"/images?{query(before=before)}", headers=HX if htmx else {})

    check(env, response, PAGE_OR_JSON)


@FUZZ
@given(prompt=any_text)
def test_index_prefill_with_any_text_never_fails(env, prompt):
    response = env.client.get(f"/?{query(prompt=prompt)}")

    check(env, response, HTML_TYPES)
    assert response.status_code == 200


# -- import --------------------------------------------------------------------------------------


@FUZZ
@given(content=st.binary(max_size=3000), filename=any_text, htmx=st.booleans())
def test_import_of_random_bytes_never_fails(env, content, filename, htmx):
    safe_name = filename.encode("utf-8", "replace").decode() or "x.json"
    response = env.client.post(
        "/chatlog/import",
        data={"file": (io.BytesIO(content), safe_name)},
        headers=HX if htmx else {},
    )

    check(env, response, HTML_TYPES if htmx else JSON_TYPES)


@FUZZ
@given(
    data=json_value
    | st.dictionaries(
        dates.map(lambda s: s.replace("%", "")) | st.sampled_from(["2024-03-01", "2024-02-29"]),
        json_value
        | st.lists(st.dictionaries(st.sampled_from(["prompt", "response", "error"]), json_value), max_size=3),
        max_size=3,
    )
)
def test_import_of_random_json_never_fails(env, data):
    text = json.dumps(data)
    response = env.client.post("/chatlog/import", data={"file": (io.BytesIO(text.encode()), "c.json")})

    check(env, response, JSON_TYPES)
    assert response.status_code in (200, 400)


def test_import_without_a_file_is_400_json(env):
    response = env.client.post("/chatlog/import", data={"other": "x"})

    check(env, response, JSON_TYPES)
    assert response.status_code == 400


# -- every GET route with random path arguments --------------------------------------------------


def _get_rules(app) -> list[str]:
    return sorted(
        rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods and rule.endpoint != "static"
    )


@FUZZ
@given(data=st.data())
def test_every_get_route_with_random_arguments_never_fails(env, data):
    rule = data.draw(st.sampled_from(_get_rules(env.app)), label="rule")
    path = re.sub(r"<(?:[a-z]+:)?[a-z_]+>", lambda _: data.draw(dates | indexes | image_names), rule)
    headers = data.draw(accept, label="headers")

    response = env.client.get(path, headers=headers)

    check(env, response, ANY_ROUTE_TYPES)


# -- login ---------------------------------------------------------------------------------------


@FUZZ
@given(
    password=any_text | st.just(LOGIN_PASSWORD),
    target=any_text | st.sampled_from(["//evil.example", "https://evil.example", "/\\x"]),
)
def test_login_with_any_password_and_next_never_fails_or_leaves_the_site(login_client, password, target):
    response = login_client.post(
        "/login",
        data=form_body({"password": password, "next": target}),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code in (302, 401)
    if response.status_code == 302:
        location = response.headers["Location"]
        assert location.startswith("/")
        assert not location.startswith("//")
        assert "\\" not in location
    else:
        assert response.mimetype == "text/html"


@FEW
@given(prompt=prompt_text, kind=st.sampled_from(["/generate_code", "/generate_image"]))
def test_history_files_stay_valid_json_under_any_prompt(env, prompt, kind):
    env.client.post(
        kind, data=form_body({"prompt": prompt}), content_type="application/x-www-form-urlencoded"
    )

    for path in env.data_dir.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
