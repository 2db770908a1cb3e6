"""DATA_DIR as users set it: the default `./data` and relative paths work like absolute ones.

Flask's `send_file` resolves a relative path against the app package, not the working
directory, so a relative DATA_DIR used to store images fine and then serve them as 404. Every
path setting is made absolute once, at start-up, from the working directory of that moment.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image

from app import create_app
from app.config import load_settings, settings_from_mapping

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- resolving -----------------------------------------------------------------------------------


def test_default_data_dir_is_data_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    settings = load_settings({}, env_file=None)

    assert settings.data_dir == tmp_path / "data"
    assert settings.data_dir.is_absolute()


def test_relative_data_dir_from_the_environment_is_resolved_against_the_working_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)

    settings = load_settings({"DATA_DIR": "x/../instance"}, env_file=None)

    assert settings.data_dir == tmp_path / "instance"


def test_relative_data_dir_from_a_dotenv_file_is_resolved_against_the_working_directory(
    tmp_path, monkeypatch
):
    (tmp_path / ".env").write_text("DATA_DIR=from-dotenv\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    settings = load_settings({})

    assert settings.data_dir == tmp_path / "from-dotenv"


def test_data_dir_with_a_tilde_is_in_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    settings = load_settings({"DATA_DIR": "~/chat-data"}, env_file=None)

    assert settings.data_dir == tmp_path / "home" / "chat-data"


def test_relative_data_dir_in_a_test_config_is_resolved_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert settings_from_mapping({"data_dir": "rel"}).data_dir == tmp_path / "rel"


def test_an_absolute_data_dir_is_kept_as_it_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert load_settings({"DATA_DIR": "/srv/chat"}, env_file=None).data_dir == Path("/srv/chat")


# -- the app on a relative DATA_DIR ---------------------------------------------------------------


@pytest.fixture
def relative_app(tmp_path, monkeypatch):
    """A demo app on DATA_DIR=rel, built in tmp_path as the working directory, at INFO."""
    monkeypatch.chdir(tmp_path)
    app = create_app({"data_dir": "rel", "rate_limit": "10000 per minute"})
    app.config["TESTING"] = True
    return app


def _generate_image(client, prompt: str) -> dict:
    response = client.post("/generate_image", data={"prompt": prompt})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_image_on_a_relative_data_dir_is_served_as_png(relative_app, tmp_path):
    client = relative_app.test_client()
    made = _generate_image(client, "A red fox in the snow")

    response = client.get(made["image_url"])

    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.data.startswith(PNG_SIGNATURE)
    assert (tmp_path / "rel" / "images" / made["image_url"].removeprefix("/images/")).is_file()


def test_thumbnail_on_a_relative_data_dir_is_served_as_webp(relative_app):
    client = relative_app.test_client()
    made = _generate_image(client, "A lighthouse at dusk")
    thumb = made["image_url"].removesuffix(".png") + ".thumb.webp"

    response = client.get(thumb)

    assert response.status_code == 200
    assert response.mimetype == "image/webp"
    assert Image.open(io.BytesIO(response.data)).format == "WEBP"


def test_download_on_a_relative_data_dir_is_the_png_named_after_the_prompt(relative_app):
    client = relative_app.test_client()
    made = _generate_image(client, "A red fox in the snow")

    response = client.get(made["entry"] + "/image")

    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.data.startswith(PNG_SIGNATURE)
    assert "a-red-fox-in-the-snow.png" in response.headers["Content-Disposition"]


def test_gallery_on_a_relative_data_dir_links_thumbnails_that_load(relative_app):
    client = relative_app.test_client()
    made = _generate_image(client, "A harbour at night")

    page = client.get("/images")

    assert page.status_code == 200
    thumbs = re.findall(r'<img src="(/images/[0-9a-f]{32}\.thumb\.webp)"', page.get_data(as_text=True))
    assert thumbs == [made["image_url"].removesuffix(".png") + ".thumb.webp"]
    assert client.get(thumbs[0]).status_code == 200


def test_secret_key_history_and_log_live_in_the_relative_data_dir(relative_app, tmp_path):
    client = relative_app.test_client()
    made = _generate_image(client, "A quiet forest")

    data = tmp_path / "rel"
    assert (data / "secret_key").read_text(encoding="ascii").strip() == relative_app.config["SECRET_KEY"]
    assert list((data / "history").glob("????-??-??.json"))
    assert made["entry"] in (data / "app.log").read_text(encoding="utf-8")
    entry = client.get(made["entry"], headers={"Accept": "application/json"})
    assert entry.status_code == 200
    assert entry.get_json()["prompt"] == "A quiet forest"


def test_a_later_change_of_working_directory_does_not_move_the_data(relative_app, tmp_path, monkeypatch):
    client = relative_app.test_client()
    made = _generate_image(client, "A red fox in the snow")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    response = client.get(made["image_url"])
    second = _generate_image(client, "A second fox")

    assert response.status_code == 200
    assert response.data.startswith(PNG_SIGNATURE)
    assert client.get(second["image_url"]).status_code == 200
    assert not (elsewhere / "rel").exists()


def test_the_default_data_dir_serves_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = create_app(load_settings({"RATE_LIMIT": "10000 per minute"}, env_file=None))
    client = app.test_client()
    made = _generate_image(client, "A red fox in the snow")

    response = client.get(made["image_url"])

    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert (tmp_path / "data" / "images" / made["image_url"].removeprefix("/images/")).is_file()
