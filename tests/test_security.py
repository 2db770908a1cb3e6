"""Security: cross-site refusal, the APP_PASSWORD login, bind refusal, headers, limits, secrets."""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import ConfigError, create_app
from app.logs import RedactingFilter

from .support.apps import TEST_KEY
from .support.htmx import HX, htmx_generate_code
from .support.upstream import Reply, error_body

ROOT = Path(__file__).resolve().parent.parent

EVIL = "https://evil.example"
SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
PASSWORD = "Tr0ub4dor&3 correct horse"
JSON = {"Accept": "application/json"}


def stored(app) -> int:
    return app.extensions["chatlog"].count()


def today_entry(client, prompt: str = "hello") -> str:
    """Generate a code answer (JSON API) and return its permalink."""
    response = client.post("/generate_code", data={"prompt": prompt})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["entry"]


# -- cross-site requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
    ],
    ids=["origin", "sec-fetch-cross-site", "sec-fetch-same-site", "origin-null", "both"],
)
def test_cross_site_generate_code_is_403_json(demo_app, headers):
    response = demo_app.test_client().post("/generate_code", data={"prompt": "spend money"}, headers=headers)

    assert response.status_code == 403
    assert response.is_json
    assert response.get_json()["error"]


@pytest.mark.parametrize(
    "headers",
    [{"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {"Origin": "null"}],
    ids=["origin", "sec-fetch-cross-site", "sec-fetch-same-site", "origin-null"],
)
def test_cross_site_generate_code_stores_nothing(demo_app, headers):
    response = demo_app.test_client().post("/generate_code", data={"prompt": "spend money"}, headers=headers)

    assert response.status_code == 403
    assert response.get_json()["error"]
    assert stored(demo_app) == 0


def test_cross_site_generate_image_is_refused_and_stores_nothing(demo_app):
    response = demo_app.test_client().post(
        "/generate_image", data={"prompt": "a fox"}, headers={"Origin": EVIL}
    )

    assert response.status_code == 403
    assert stored(demo_app) == 0


def test_cross_site_import_is_refused_and_imports_nothing(demo_app):
    upload = io.BytesIO(b'{"2024-01-01": [{"prompt": "p", "response": "r"}]}')
    response = demo_app.test_client().post(
        "/chatlog/import", data={"file": (upload, "chatlog.json")}, headers={"Sec-Fetch-Site": "cross-site"}
    )

    assert response.status_code == 403
    assert stored(demo_app) == 0


def test_same_origin_generate_code_is_allowed(demo_app):
    response = demo_app.test_client().post("/generate_code", data={"prompt": "hi"}, headers=SAME_ORIGIN)

    assert response.status_code == 200
    assert response.get_json()["code"]


def test_curl_like_request_without_origin_headers_is_allowed(demo_app):
    response = demo_app.test_client().post("/generate_code", data={"prompt": "hi"})

    assert response.status_code == 200
    assert stored(demo_app) == 1


def test_cross_site_htmx_request_gets_an_alert_fragment_with_error_status(demo_app):
    response = demo_app.test_client().post(
        "/generate_code", data={"prompt": "spend money"}, headers={**HX, "Origin": EVIL}
    )

    assert response.status_code == 200
    assert response.headers["X-Error-Status"] == "403"
    assert 'role="alert"' in response.get_data(as_text=True)


def test_cross_site_htmx_request_stores_nothing(demo_app):
    response = demo_app.test_client().post(
        "/generate_code", data={"prompt": "spend money"}, headers={**HX, "Sec-Fetch-Site": "cross-site"}
    )

    assert response.status_code == 200  # htmx errors are swapped fragments (see test_htmx)
    assert response.headers["X-Error-Status"] == "403"
    assert 'role="alert"' in response.get_data(as_text=True)
    assert stored(demo_app) == 0


def test_cross_site_delete_is_refused_and_the_entry_stays(demo_app):
    client = demo_app.test_client()
    permalink = today_entry(client, "keep me")

    response = client.delete(permalink, headers={"Origin": EVIL})

    assert response.status_code == 403
    assert client.get(permalink, headers=JSON).get_json()["prompt"] == "keep me"


@pytest.mark.parametrize("path", ["/", "/chatlog", "/chatlog.json", "/healthz"])
def test_get_with_a_foreign_origin_is_not_refused(demo_app, path):
    response = demo_app.test_client().get(path, headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})

    assert response.status_code == 200


# -- login (APP_PASSWORD) ------------------------------------------------------------------------


@pytest.fixture
def locked_app(make_app):
    return make_app(app_password=PASSWORD)


def login(client, password: str = PASSWORD, next_: str = "/", **kwargs):
    return client.post("/login", data={"password": password, "next": next_}, **kwargs)


def test_page_without_login_redirects_to_login_with_next(locked_app):
    response = locked_app.test_client().get("/")

    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/"


def test_json_client_without_login_gets_401_with_bearer_challenge(locked_app):
    response = locked_app.test_client().get("/chatlog", headers=JSON)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"]


def test_api_post_without_login_is_401_and_stores_nothing(locked_app):
    response = locked_app.test_client().post("/generate_code", data={"prompt": "hi"})

    assert response.status_code == 401
    assert stored(locked_app) == 0


def test_wrong_password_is_401_page_with_an_alert(locked_app):
    response = login(locked_app.test_client(), "wrong password")

    assert response.status_code == 401
    assert 'role="alert"' in response.get_data(as_text=True)


def test_wrong_password_sets_no_session_cookie(locked_app):
    client = locked_app.test_client()
    response = login(client, "wrong password")

    assert response.status_code == 401
    assert 'role="alert"' in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    assert client.get_cookie("session") is None


def test_right_password_redirects_to_next(locked_app):
    response = login(locked_app.test_client(), next_="/chatlog?q=x")

    assert response.status_code == 302
    assert response.headers["Location"] == "/chatlog?q=x"


def test_session_cookie_is_httponly_and_samesite_lax(locked_app):
    response = login(locked_app.test_client())

    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_session_cookie_is_secure_over_https(locked_app):
    response = login(locked_app.test_client(), base_url="https://localhost")

    assert "; Secure" in response.headers["Set-Cookie"]


def test_session_cookie_is_not_secure_over_plain_http_on_loopback(locked_app):
    response = login(locked_app.test_client())

    assert "Secure" not in response.headers["Set-Cookie"]


def test_pages_work_after_login(locked_app):
    client = locked_app.test_client()
    login(client)

    assert client.get("/").status_code == 200


def test_api_works_after_login(locked_app):
    client = locked_app.test_client()
    login(client)

    response = client.post("/generate_code", data={"prompt": "hi"})
    assert response.status_code == 200
    assert response.get_json()["code"]


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil.example", "//evil.example/path", "/\\evil.example", "evil.example"],
)
def test_login_never_redirects_to_another_site(locked_app, target):
    response = login(locked_app.test_client(), next_=target)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_bearer_token_works_for_the_api_without_a_session(locked_app):
    client = locked_app.test_client()
    response = client.post(
        "/generate_code", data={"prompt": "hi"}, headers={"Authorization": f"Bearer {PASSWORD}"}
    )

    assert response.status_code == 200
    assert response.get_json()["code"]
    assert client.get_cookie("session") is None


@pytest.mark.parametrize(
    "header",
    ["Bearer wrong", f"Bearer {PASSWORD}x", f"Basic {PASSWORD}", "Bearer ", f"Bearer {PASSWORD[:-1]}"],
)
def test_wrong_bearer_token_is_401(locked_app, header):
    response = locked_app.test_client().post(
        "/generate_code", data={"prompt": "hi"}, headers={"Authorization": header}
    )

    assert response.status_code == 401
    assert stored(locked_app) == 0


def test_logout_ends_the_session(locked_app):
    client = locked_app.test_client()
    login(client)
    assert client.get("/").status_code == 200

    client.post("/logout")

    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/login", "/static/css/app.css"])
def test_open_endpoints_are_reachable_without_login(locked_app, path):
    assert locked_app.test_client().get(path).status_code == 200


@pytest.mark.parametrize(("method", "path"), [("get", "/chatlog"), ("get", "/"), ("post", "/generate_code")])
def test_htmx_request_without_session_gets_hx_redirect_to_login(locked_app, method, path):
    response = getattr(locked_app.test_client(), method)(path, data={"prompt": "hi"}, headers=HX)

    assert response.headers["HX-Redirect"] == "/login"
    assert stored(locked_app) == 0


def _session_cookie(app) -> str:
    client = app.test_client()
    login(client, app.config["SETTINGS"].app_password)
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def test_changing_app_password_invalidates_old_sessions(make_app):
    old = _session_cookie(make_app(app_password="first password", secret_key="same-secret-key"))
    client = make_app(app_password="second password", secret_key="same-secret-key").test_client()
    client.set_cookie("session", old)

    response = client.get("/")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_session_survives_a_restart_with_the_same_password(make_app):
    old = _session_cookie(make_app(app_password="first password", secret_key="same-secret-key"))
    client = make_app(app_password="first password", secret_key="same-secret-key").test_client()
    client.set_cookie("session", old)

    assert client.get("/").status_code == 200


def test_login_attempts_are_rate_limited(make_app):
    client = make_app(app_password=PASSWORD, login_rate_limit="3 per minute").test_client()
    for _ in range(3):
        assert login(client, "wrong").status_code == 401

    response = login(client, "wrong")

    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit()


def test_rate_limited_login_refuses_even_the_right_password(make_app):
    client = make_app(app_password=PASSWORD, login_rate_limit="3 per minute").test_client()
    for _ in range(3):
        login(client, "wrong")

    response = login(client)

    assert response.status_code == 429
    assert client.get_cookie("session") is None


def test_password_never_appears_in_a_response_or_the_log(locked_app, data_dir):
    client = locked_app.test_client()
    bodies = [
        client.get("/").get_data(as_text=True),
        client.get("/login?next=/").get_data(as_text=True),
        login(client, "wrong").get_data(as_text=True),
        client.get("/chatlog", headers=JSON).get_data(as_text=True),
        client.post("/generate_code", data={"prompt": "x"}, headers=HX).get_data(as_text=True),
    ]
    response = login(client)
    bodies.append(response.get_data(as_text=True) + str(response.headers))
    for path in ("/", "/chatlog", "/chatlog.json", "/chatlog.md", "/readyz", "/healthz"):
        bodies.append(client.get(path).get_data(as_text=True))
    bodies.append(client.post("/generate_code", data={"prompt": "hi"}).get_data(as_text=True))
    bodies.append(
        locked_app.test_client()
        .get("/chatlog", headers={"Authorization": "Bearer wrong", **JSON})
        .get_data(as_text=True)
    )

    assert all(PASSWORD not in body for body in bodies)
    assert PASSWORD not in (data_dir / "app.log").read_text(encoding="utf-8")


def test_logged_configured_password_is_redacted_in_app_log(locked_app, data_dir):
    logging.getLogger("app.auth").warning("someone typed %s", PASSWORD)

    log = (data_dir / "app.log").read_text(encoding="utf-8")
    assert "someone typed [REDACTED]" in log
    assert PASSWORD not in log


# -- refusing to listen on other machines without a password -----------------------------------


def test_non_loopback_host_without_password_is_refused(tmp_path):
    with pytest.raises(ConfigError) as raised:
        create_app({"data_dir": tmp_path / "data", "host": "0.0.0.0"})

    assert "APP_PASSWORD" in str(raised.value)
    assert "ALLOW_UNAUTHENTICATED" in str(raised.value)


def test_refused_bind_creates_no_data_dir(tmp_path):
    with pytest.raises(ConfigError):
        create_app({"data_dir": tmp_path / "data", "host": "0.0.0.0"})

    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_every_non_loopback_host_without_password_is_refused(tmp_path, host):
    with pytest.raises(ConfigError):
        create_app({"data_dir": tmp_path / "data", "host": host})


def test_non_loopback_host_with_a_password_starts(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "host": "0.0.0.0", "app_password": PASSWORD})

    assert app.config["SETTINGS"].host == "0.0.0.0"


def test_non_loopback_host_with_allow_unauthenticated_starts(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "host": "0.0.0.0", "allow_unauthenticated": True})

    assert app.config["SETTINGS"].allow_unauthenticated is True


@pytest.mark.parametrize("host", ["::1", "127.0.0.1", "127.0.0.2", "localhost"])
def test_loopback_hosts_start_without_password(tmp_path, host):
    app = create_app({"data_dir": tmp_path / "data", "host": host})

    assert app.config["SETTINGS"].host == host


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_python_m_app_on_0_0_0_0_without_password_exits_2_with_the_reason(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "APP_", "FLASK_"))
        and k not in ("HOST", "PORT", "DATA_DIR", "SECRET_KEY", "ALLOW_UNAUTHENTICATED")
    }
    env.update(PYTHONPATH=str(ROOT), HOST="0.0.0.0", PORT=str(_free_port()), DATA_DIR=str(tmp_path / "d"))

    result = subprocess.run(
        [sys.executable, "-m", "app"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 2
    assert "APP_PASSWORD" in result.stderr
    assert "ALLOW_UNAUTHENTICATED" in result.stderr
    assert "Traceback" not in result.stderr


# -- security headers on every kind of response --------------------------------------------------


def _page(client):
    return client.get("/")


def _fragment(client):
    return client.get("/chatlog", headers=HX)


def _json(client):
    return client.post("/generate_code", data={"prompt": "hi"})


def _json_error(client):
    return client.post("/generate_code", data={"prompt": "   "})


def _not_found_page(client):
    return client.get("/chatlog/2001-01-01/99")


def _sse(client):
    answer = htmx_generate_code(client, "stream me")
    assert answer.stream_url
    return client.get(answer.stream_url, headers={"Accept": "text/event-stream"})


def _static(client):
    return client.get("/static/css/app.css")


def _static_svg(client):
    # An SVG opened on its own is a document that can run script: it needs the CSP most.
    return client.get("/static/icons/icon.svg")


def _image(client):
    url = client.post("/generate_image", data={"prompt": "a fox"}).get_json()["image_url"]
    return client.get(url)


def _too_many(client):
    client.post("/generate_code", data={"prompt": "one"})
    return client.post("/generate_code", data={"prompt": "two"})


def _forbidden(client):
    return client.post("/generate_code", data={"prompt": "hi"}, headers={"Origin": EVIL})


RESPONSES = {
    "page": (_page, 200, "text/html"),
    "htmx-fragment": (_fragment, 200, "text/html"),
    "json": (_json, 200, "application/json"),
    "json-error": (_json_error, 400, "application/json"),
    "404-page": (_not_found_page, 404, "text/html"),
    "sse": (_sse, 200, "text/event-stream"),
    "static": (_static, 200, "text/css"),
    "static-svg": (_static_svg, 200, "image/svg+xml"),
    "image": (_image, 200, "image/png"),
    "429": (_too_many, 429, "application/json"),
    "403": (_forbidden, 403, "application/json"),
}


@pytest.fixture(params=sorted(RESPONSES))
def any_response(request, make_app):
    make, status, mimetype = RESPONSES[request.param]
    response = make(make_app(rate_limit="1 per minute").test_client())
    assert response.status_code == status
    assert response.mimetype == mimetype
    return response


def _directives(response) -> dict[str, list[str]]:
    csp = response.headers.get("Content-Security-Policy")
    assert csp, f"no Content-Security-Policy on {response.request.path}"
    out = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def test_every_response_has_a_csp_with_self_only_scripts(any_response):
    csp = _directives(any_response)

    assert "'self'" in csp["script-src"]
    for name in ("script-src", "script-src-elem", "script-src-attr", "default-src"):
        assert "'unsafe-inline'" not in csp.get(name, [])
        assert "'unsafe-eval'" not in csp.get(name, [])


def test_every_response_forbids_framing(any_response):
    csp = _directives(any_response)

    assert csp["frame-ancestors"] == ["'none'"]


def test_every_response_has_nosniff(any_response):
    assert any_response.headers.get("X-Content-Type-Options") == "nosniff"


def test_every_response_has_a_referrer_policy(any_response):
    assert any_response.headers.get("Referrer-Policy") in (
        "no-referrer",
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
    )


def test_every_response_has_a_permissions_policy(any_response):
    assert "camera=()" in any_response.headers.get("Permissions-Policy", "")


def test_security_headers_are_not_meta_tags(demo_client):
    response = demo_client.get("/")
    page = response.get_data(as_text=True).lower()

    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"]  # sent as a header instead
    assert '<textarea id="prompt"' in page  # the real index page
    assert "http-equiv" not in page


# -- limits --------------------------------------------------------------------------------------


def test_third_generation_over_the_rate_limit_is_429_json_with_retry_after(make_app):
    client = make_app(rate_limit="2 per minute").test_client()
    assert client.post("/generate_code", data={"prompt": "one"}).status_code == 200
    assert client.post("/generate_code", data={"prompt": "two"}).status_code == 200

    response = client.post("/generate_code", data={"prompt": "three"})

    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit()
    assert 1 <= int(response.headers["Retry-After"]) <= 61  # the one-minute window, rounded up
    assert "try again" in response.get_json()["error"].lower()


def test_code_and_image_generations_share_one_rate_limit(make_app):
    # RATE_LIMIT is "generations per client address" (README), not per route.
    client = make_app(rate_limit="2 per minute").test_client()
    assert client.post("/generate_code", data={"prompt": "one"}).status_code == 200
    assert client.post("/generate_image", data={"prompt": "two"}).status_code == 200

    assert client.post("/generate_code", data={"prompt": "three"}).status_code == 429


def test_rate_limited_generation_stores_nothing(make_app):
    app = make_app(rate_limit="2 per minute")
    client = app.test_client()
    for prompt in ("one", "two", "three", "four"):
        client.post("/generate_code", data={"prompt": prompt})

    assert stored(app) == 2


def test_rate_limited_htmx_generation_gets_an_alert_fragment(make_app):
    client = make_app(rate_limit="2 per minute").test_client()
    for prompt in ("one", "two"):
        client.post("/generate_image", data={"prompt": prompt}, headers=HX)

    response = client.post("/generate_image", data={"prompt": "three"}, headers=HX)

    assert response.status_code == 200
    assert response.headers["X-Error-Status"] == "429"
    assert 'role="alert"' in response.get_data(as_text=True)


def test_rate_limit_does_not_apply_to_reading(make_app):
    client = make_app(rate_limit="2 per minute").test_client()
    for prompt in ("one", "two"):
        client.post("/generate_code", data={"prompt": prompt})

    assert all(client.get("/chatlog.json").status_code == 200 for _ in range(5))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {"prompt": "x" * (2 * 1024 * 1024 + 1)}},
        {"json": {"prompt": "x" * (2 * 1024 * 1024 + 1)}},
    ],
    ids=["form", "json"],
)
def test_body_over_2_mb_is_413_json(demo_app, kwargs):
    response = demo_app.test_client().post("/generate_code", **kwargs)

    assert response.status_code == 413
    assert response.get_json()["error"]
    assert stored(demo_app) == 0


def test_prompt_over_max_prompt_chars_is_400(make_app):
    app = make_app(max_prompt_chars=10)

    response = app.test_client().post("/generate_code", data={"prompt": "x" * 11})

    assert response.status_code == 400
    assert "10" in response.get_json()["error"]
    assert stored(app) == 0


def test_daily_cap_refuses_the_third_generation_with_a_message(make_app):
    client = make_app(daily_request_cap=2).test_client()
    assert client.post("/generate_code", data={"prompt": "one"}).status_code == 200
    assert client.post("/generate_image", data={"prompt": "two"}).status_code == 200

    response = client.post("/generate_code", data={"prompt": "three"})

    assert response.status_code == 429
    assert "daily limit" in response.get_json()["error"].lower()


def test_daily_cap_counts_the_shared_history_across_apps(make_app):
    first = make_app(daily_request_cap=2).test_client()
    for prompt in ("one", "two"):
        assert first.post("/generate_code", data={"prompt": prompt}).status_code == 200

    response = make_app(daily_request_cap=2).test_client().post("/generate_code", data={"prompt": "three"})

    assert response.status_code == 429


def test_daily_cap_counts_deleted_entries(make_app):
    client = make_app(daily_request_cap=2).test_client()
    for prompt in ("one", "two"):
        client.delete(today_entry(client, prompt))

    assert client.post("/generate_code", data={"prompt": "three"}).status_code == 429


def test_daily_cap_for_htmx_is_an_alert_fragment(make_app):
    client = make_app(daily_request_cap=1).test_client()
    today_entry(client)

    response = client.post("/generate_code", data={"prompt": "two"}, headers=HX)

    assert response.headers["X-Error-Status"] == "429"
    assert "daily limit" in response.get_data(as_text=True).lower()


# -- ProxyFix ------------------------------------------------------------------------------------

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


def test_behind_a_trusted_proxy_forwarded_https_gets_a_secure_cookie(make_app):
    client = make_app(app_password=PASSWORD, proxy_fix=1).test_client()

    response = login(client, headers=FORWARDED)

    assert response.status_code == 302
    assert "; Secure" in response.headers["Set-Cookie"]


def test_without_proxy_fix_x_forwarded_proto_is_ignored(make_app):
    client = make_app(app_password=PASSWORD).test_client()

    response = login(client, headers=FORWARDED)

    assert response.status_code == 302
    assert "Secure" not in response.headers["Set-Cookie"]


# -- readiness -----------------------------------------------------------------------------------


def test_readyz_is_200_when_the_store_is_writable(demo_client):
    response = demo_client.get("/readyz")

    assert response.status_code == 200
    body = response.get_json()
    assert body["ready"] is True
    assert body["store"] == "writable"


def test_readyz_is_503_when_the_store_is_not_writable(demo_app, data_dir):
    # chmod does not stop root; a file where the directory was stops everyone.
    shutil.rmtree(data_dir / "history")
    (data_dir / "history").write_text("not a directory")

    response = demo_app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["ready"] is False


# -- secrets -------------------------------------------------------------------------------------

KEY_SHAPED_PASSWORD = "sk-password-shaped-0123456789abcdefXYZ"


@pytest.fixture
def secret_tour(make_app, upstream, data_dir):
    """Use every part of the app with a key and a key-shaped password; returns all responses."""
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body(f"boom {TEST_KEY}")))
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url, app_password=KEY_SHAPED_PASSWORD)
    client = app.test_client()
    responses = [
        client.get("/"),
        client.get("/chatlog", headers=JSON),
        client.post("/login", data={"password": "wrong", "next": "/"}),
        client.post("/login", data={"password": KEY_SHAPED_PASSWORD, "next": "/"}),
    ]
    responses += [
        client.post("/generate_code", data={"prompt": "fails upstream"}),
        client.post("/generate_code", data={"prompt": "write hello world"}),
        client.post("/generate_image", data={"prompt": "a fox"}),
        client.post("/generate_code", data={"prompt": ""}),
        client.post("/generate_code", data={"prompt": "hi", "model": "no-such-model"}),
        client.post("/chatlog/import", data={"file": (io.BytesIO(b"{not json"), "c.json")}),
    ]
    answer = htmx_generate_code(client, "streamed please")
    responses.append(answer.post)
    entry = client.post("/generate_code", data={"prompt": "one more"}).get_json()["entry"]
    for path in (
        "/",
        "/chatlog",
        "/chatlog?q=hello",
        "/chatlog.json",
        "/chatlog.full.json",
        "/chatlog.md",
        "/models",
        "/healthz",
        "/readyz",
        "/chatlog/1999-01-01/0",
        "/nowhere",
        entry,
    ):
        responses.append(client.get(path))
        responses.append(client.get(path, headers=JSON))
        responses.append(client.get(path, headers=HX))
    texts = [r.get_data(as_text=True) + "\n" + str(r.headers) for r in responses]
    texts.append("\n".join(data for _, data in answer.events))
    return texts


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_api_key_appears_in_no_response(secret_tour):
    assert any("write hello world" in t for t in secret_tour)  # the tour got past the login
    assert [t for t in secret_tour if TEST_KEY in t] == []


def test_key_shaped_password_appears_in_no_response(secret_tour):
    assert any("write hello world" in t for t in secret_tour)  # the tour got past the login
    assert [t for t in secret_tour if KEY_SHAPED_PASSWORD in t] == []


def test_api_key_is_written_to_no_file_under_data_dir(secret_tour, data_dir):
    files = _files_under(data_dir)

    assert any(p.suffix == ".json" for p in files)  # the tour did write history
    assert [p for p in files if TEST_KEY.encode() in p.read_bytes()] == []


def test_password_is_written_to_no_file_under_data_dir(secret_tour, data_dir):
    files = _files_under(data_dir)

    assert any(p.suffix == ".json" for p in files)  # the tour did write history
    assert [p for p in files if KEY_SHAPED_PASSWORD.encode() in p.read_bytes()] == []


@pytest.mark.parametrize("name", ["app", "app.images", "app.generation", "app.history", "app.auth", "openai"])
def test_key_shaped_string_logged_by_any_app_logger_is_redacted(demo_app, data_dir, name):
    logging.getLogger(name).error("leaked sk-live-abcdefghijklmnop1234 here")

    log = (data_dir / "app.log").read_text(encoding="utf-8")
    assert "leaked [REDACTED] here" in log
    assert "sk-live-abcdefghijklmnop1234" not in log


def test_key_shaped_string_in_a_logged_traceback_is_redacted(demo_app, data_dir):
    try:
        raise RuntimeError("upstream said sk-live-abcdefghijklmnop1234")
    except RuntimeError:
        logging.getLogger("app.generation").exception("failed")

    log = (data_dir / "app.log").read_text(encoding="utf-8")
    assert "RuntimeError: upstream said [REDACTED]" in log
    assert "sk-live-abcdefghijklmnop1234" not in log


def test_flask_app_logger_is_redacted(demo_app, data_dir):
    demo_app.logger.warning("key=%s", "sk-live-abcdefghijklmnop1234")

    assert "key=[REDACTED]" in (data_dir / "app.log").read_text(encoding="utf-8")
    assert "sk-live-abcdefghijklmnop1234" not in (data_dir / "app.log").read_text(encoding="utf-8")


def test_redacting_filter_replaces_configured_secrets_that_are_not_key_shaped():
    redact = RedactingFilter(("hunter2-not-a-key",)).redact

    assert redact("pw is hunter2-not-a-key and sk-abcdefghijkl") == "pw is [REDACTED] and [REDACTED]"


# -- the Host check (DNS rebinding) --------------------------------------------------------------

REBIND = "http://rebind.example:8000"


def test_request_for_a_foreign_host_name_is_refused_with_json_for_api_clients(demo_app):
    client = demo_app.test_client()
    today_entry(client, "private history")

    response = client.get("/chatlog.json", base_url=REBIND)

    assert response.status_code == 421
    assert "TRUSTED_HOSTS" in response.get_json()["error"]
    assert "private history" not in response.get_data(as_text=True)


def test_request_for_a_foreign_host_name_gets_a_page_for_browsers(demo_app):
    response = demo_app.test_client().get("/", base_url=REBIND, headers={"Accept": "text/html"})

    assert response.status_code == 421
    assert response.mimetype == "text/html"
    assert "TRUSTED_HOSTS" in response.get_data(as_text=True)


def test_rebound_same_origin_delete_is_refused_and_the_entry_stays(demo_app):
    client = demo_app.test_client()
    permalink = today_entry(client, "keep me")

    # The attacker's page is same-origin with itself: Origin and Host agree.
    response = client.delete(
        permalink, base_url=REBIND, headers={"Origin": REBIND, "Sec-Fetch-Site": "same-origin"}
    )

    assert response.status_code == 421
    assert client.get(permalink, headers=JSON).get_json()["prompt"] == "keep me"


@pytest.mark.parametrize(
    "base",
    [
        "http://localhost",
        "http://localhost:8000",
        "http://127.0.0.1:8000",
        "http://[::1]:8000",
        "http://[::1]",
    ],
)
def test_loopback_names_are_answered(demo_app, base):
    response = demo_app.test_client().get("/chatlog", base_url=base, headers=JSON)

    assert response.status_code == 200
    assert response.is_json


@pytest.mark.parametrize(
    "base", ["https://chat.example.org", "https://chat.example.org:8443", "http://a.b.lan"]
)
def test_trusted_hosts_are_answered(make_app, base):
    app = make_app(trusted_hosts=("chat.example.org", ".lan"))

    response = app.test_client().get("/chatlog", base_url=base, headers=JSON)

    assert response.status_code == 200


@pytest.mark.parametrize("base", ["http://evil.chat.example.org", "http://lan", "http://127.0.0.1.nip.io"])
def test_names_near_the_trusted_ones_are_refused(make_app, base):
    app = make_app(trusted_hosts=("chat.example.org", ".lan"))

    assert app.test_client().get("/chatlog", base_url=base, headers=JSON).status_code == 421


def test_the_configured_host_address_is_one_of_the_apps_names(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "host": "192.168.1.10", "app_password": PASSWORD})

    response = app.test_client().get("/healthz", base_url="http://192.168.1.10:8000")

    assert response.status_code == 200


def test_forwarded_host_from_a_trusted_proxy_is_what_is_checked(make_app):
    forwarded = {"X-Forwarded-Host": "rebind.example", **JSON}
    refused = make_app(proxy_fix=1).test_client().get("/chatlog", headers=forwarded)
    allowed = (
        make_app(proxy_fix=1, trusted_hosts=("rebind.example",))
        .test_client()
        .get("/chatlog", headers=forwarded)
    )

    assert refused.status_code == 421
    assert allowed.status_code == 200


def test_foreign_host_is_refused_over_real_http(demo_app, live_server):
    import requests

    server = live_server(demo_app)
    url = server.url + "/chatlog.json"

    refused = requests.get(url, headers={"Host": "rebind.example:8000"}, timeout=10)
    answered = requests.get(url, timeout=10)

    assert refused.status_code == 421
    assert "TRUSTED_HOSTS" in refused.json()["error"]
    assert answered.status_code == 200


def test_trusted_hosts_setting_is_parsed_and_normalised():
    from app.config import load_settings

    settings = load_settings({"TRUSTED_HOSTS": " Chat.Example.org, ::1 ,.lan,10.0.0.5 "}, env_file=None)

    assert settings.trusted_hosts == ("chat.example.org", "[::1]", ".lan", "10.0.0.5")


@pytest.mark.parametrize("raw", ["http://chat.example.org", "chat.example.org:8443", "bad name", "*"])
def test_malformed_trusted_hosts_is_a_config_error_naming_the_setting(raw):
    from app.config import load_settings

    with pytest.raises(ConfigError, match="TRUSTED_HOSTS"):
        load_settings({"TRUSTED_HOSTS": raw}, env_file=None)


def test_open_bind_error_mentions_trusted_hosts(tmp_path):
    with pytest.raises(ConfigError, match="TRUSTED_HOSTS"):
        create_app({"data_dir": tmp_path / "data", "host": "0.0.0.0"})


# -- guessing through the bearer token ------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"Accept": "text/html"}, HX, {}],
    ids=["browser-get", "htmx-get", "plain-get"],
)
def test_wrong_bearer_on_a_get_is_401_json_never_the_login_page(locked_app, headers):
    response = locked_app.test_client().get("/", headers={"Authorization": "Bearer wrong", **headers})

    assert response.status_code == 401
    assert response.is_json
    assert "bearer" in response.get_json()["error"].lower()
    assert "Location" not in response.headers
    assert "HX-Redirect" not in response.headers


def test_wrong_bearer_tokens_count_against_the_login_rate_limit(make_app):
    client = make_app(app_password=PASSWORD, login_rate_limit="3 per minute").test_client()
    for _ in range(3):
        assert client.get("/chatlog", headers={"Authorization": "Bearer guess", **JSON}).status_code == 401

    response = login(client)

    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit()
    assert client.get_cookie("session") is None


def test_wrong_login_passwords_and_bearer_tokens_share_one_counter(make_app):
    client = make_app(app_password=PASSWORD, login_rate_limit="3 per minute").test_client()
    login(client, "wrong")
    login(client, "wrong")
    client.get("/chatlog", headers={"Authorization": "Bearer guess", **JSON})

    response = client.get("/chatlog", headers={"Authorization": f"Bearer {PASSWORD}", **JSON})

    assert response.status_code == 429
    assert response.is_json
    assert "Too many failed password attempts" in response.get_json()["error"]


def test_right_bearer_tokens_do_not_use_up_the_login_limit(make_app):
    client = make_app(app_password=PASSWORD, login_rate_limit="3 per minute").test_client()
    for _ in range(6):
        response = client.get("/chatlog", headers={"Authorization": f"Bearer {PASSWORD}", **JSON})
        assert response.status_code == 200

    assert login(client).status_code == 302


def test_wrong_bearer_is_logged_without_the_guess(locked_app, data_dir):
    guess = "my-secret-guess-42"
    locked_app.test_client().get("/chatlog", headers={"Authorization": f"Bearer {guess}", **JSON})

    log = (data_dir / "app.log").read_text(encoding="utf-8")
    assert "Wrong bearer token on GET /chatlog" in log
    assert guess not in log


# -- revoking sessions ----------------------------------------------------------------------------


def test_a_copy_of_the_cookie_stops_working_after_logout(locked_app):
    client = locked_app.test_client()
    login(client)
    stolen = client.get_cookie("session").value

    client.post("/logout")
    replay = locked_app.test_client()
    replay.set_cookie("session", stolen)
    response = replay.get("/chatlog", headers=JSON)

    assert response.status_code == 401
    assert "Authentication required" in response.get_json()["error"]


def test_logout_everywhere_ends_every_session(locked_app):
    laptop, phone = locked_app.test_client(), locked_app.test_client()
    login(laptop)
    login(phone)
    assert phone.get("/chatlog", headers=JSON).status_code == 200

    response = laptop.post("/logout/everywhere")

    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert phone.get("/chatlog", headers=JSON).status_code == 401
    assert laptop.get("/chatlog", headers=JSON).status_code == 401
    login(phone)
    assert phone.get("/chatlog", headers=JSON).status_code == 200  # a new login works again


def test_revocation_holds_across_processes_sharing_the_data_dir(make_app):
    # Two app instances on one DATA_DIR stand for two gunicorn workers (or servers sharing it).
    first = make_app(app_password=PASSWORD, secret_key="shared-secret")
    second = make_app(app_password=PASSWORD, secret_key="shared-secret")
    client = first.test_client()
    login(client)
    cookie = client.get_cookie("session").value
    other = second.test_client()
    other.set_cookie("session", cookie)
    assert other.get("/chatlog", headers=JSON).status_code == 200

    client.post("/logout")

    assert other.get("/chatlog", headers=JSON).status_code == 401


def test_logout_everywhere_needs_a_login(locked_app):
    response = locked_app.test_client().post("/logout/everywhere", headers=JSON)

    assert response.status_code == 401


@pytest.mark.parametrize(("lang", "label"), [("en", "Log out everywhere"), ("de", "Überall abmelden")])
def test_pages_offer_log_out_everywhere_as_a_button(locked_app, lang, label):
    client = locked_app.test_client()
    login(client)

    html = client.get("/", headers={"Accept-Language": lang}).get_data(as_text=True)

    assert 'action="/logout/everywhere"' in html
    assert f">{label}</button>" in html


# -- gunicorn's own bind address -----------------------------------------------------------------


def _gunicorn(bind: str, tmp_path, **env_extra) -> subprocess.Popen:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "APP_", "FLASK_"))
        and k not in ("HOST", "PORT", "DATA_DIR", "SECRET_KEY", "ALLOW_UNAUTHENTICATED", "TRUSTED_HOSTS")
    }
    env.update(PYTHONPATH=str(ROOT), DATA_DIR=str(tmp_path / "data"), WEB_WORKERS="1", WEB_THREADS="2")
    env.update(env_extra)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return subprocess.Popen(
        [str(gunicorn), "--config", str(ROOT / "gunicorn.conf.py"), "-b", bind],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int | None, str]:
    """(exit status, stderr) once it exits within `timeout`; (None, stderr) after stopping it."""
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 15)
        _, err = proc.communicate(timeout=30)
        return None, err


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_gunicorn_bound_to_0_0_0_0_without_password_refuses_to_start(tmp_path):
    proc = _gunicorn(f"0.0.0.0:{_free_port()}", tmp_path)

    status, stderr = _finish(proc, timeout=30)

    assert status == 1, stderr[-2000:]
    assert "APP_PASSWORD" in stderr
    assert "0.0.0.0" in stderr
    assert "Booting worker" not in stderr


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_gunicorn_bound_to_loopback_without_password_starts(tmp_path):
    import requests

    port = _free_port()
    proc = _gunicorn(f"127.0.0.1:{port}", tmp_path)
    try:
        for _ in range(150):  # bounded: up to ~30 s for the first answer
            if proc.poll() is not None:
                break
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-2000:] if proc.stderr else ""
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["status"] == "ok"
    finally:
        _finish(proc, timeout=0.1)


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_gunicorn_bound_to_0_0_0_0_with_a_password_is_not_refused(tmp_path):
    proc = _gunicorn(f"0.0.0.0:{_free_port()}", tmp_path, APP_PASSWORD=PASSWORD)

    status, stderr = _finish(proc, timeout=8)

    assert status is None, stderr[-2000:]  # still running when stopped: it started
    assert PASSWORD not in stderr


# -- control characters in the log ---------------------------------------------------------------


def test_ansi_escapes_in_an_upstream_error_are_escaped_in_the_log(make_app, upstream, data_dir):
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    hostile = "boom \x1b[2J\x1b[31mFAKE ALERT\x1b[0m \x07\x9b31m end"
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body(hostile)))

    response = app.test_client().post("/generate_code", data={"prompt": "hi"})

    assert response.status_code == 500
    log = (data_dir / "app.log").read_text(encoding="utf-8")
    assert "\\x1b[2J\\x1b[31mFAKE ALERT\\x1b[0m \\x07\\x9b31m end" in log
    assert not any(c in log for c in "\x1b\x07\x9b")


# -- name and date patterns match whole strings only ---------------------------------------------


def test_name_and_date_patterns_refuse_a_trailing_newline():
    from app.history import parse_cursor
    from app.images.names import NAME_RE

    assert NAME_RE.match("0" * 32 + ".png\n") is None
    assert parse_cursor("2024-01-01\n/3") is None
    assert tuple(parse_cursor("2024-01-01/3")) == ("2024-01-01", 3)


def test_a_date_with_a_trailing_newline_is_no_history_day(demo_app):
    client = demo_app.test_client()
    today_entry(client, "today")

    followup = client.post("/generate_code", data={"prompt": "more", "parent": "/chatlog/2024-01-01\n/0"})
    upload = io.BytesIO(b'{"2024-01-01\\n": [{"prompt": "p", "response": "r"}]}')
    imported = client.post("/chatlog/import", data={"file": (upload, "chatlog.json")})

    assert followup.status_code == 400
    assert imported.status_code == 400
    assert stored(demo_app) == 1


def test_host_setting_refuses_a_trailing_newline():
    from app.config import _host

    with pytest.raises(ConfigError, match="HOST"):
        _host("example.com\n")


def test_foreign_host_page_is_in_german_when_asked(demo_app):
    response = demo_app.test_client().get(
        "/", base_url=REBIND, headers={"Accept": "text/html", "Accept-Language": "de"}
    )

    assert response.status_code == 421
    assert "Dieser Server antwortet nicht auf diesen Hostnamen" in response.get_data(as_text=True)


def test_foreign_host_gets_no_language_redirect_either(demo_app):
    response = demo_app.test_client().get("/chatlog?lang=de", base_url=REBIND, headers=JSON)

    assert response.status_code == 421
    assert "Set-Cookie" not in response.headers
