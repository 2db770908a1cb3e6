"""Editing a picture: `source` (an image entry) or an attached `image` on POST /generate_image goes
to the image model's `/v1/images/edits` as multipart, through the openai client, for models
that edit (gpt-image-1, dall-e-2, the demo); the result is the next turn with its own file.

Through the real openai client against the local upstream (tests/support/upstream.py), asserting the
multipart body it received; every test runs on TinyDB files and a real PostgreSQL.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageStat

from ..support.apps import BACKENDS, STORAGE_FREE, TEST_KEY
from ..support.conversations import IMAGES, entry_count, only, post_code, post_image, stored
from ..support.html import parse
from ..support.htmx import HX
from ..support.upstream import Reply, error_body, multipart, png_bytes


@pytest.fixture(params=BACKENDS)
def history_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs against the TinyDB files and a real PostgreSQL."""
    return request.param


EDITS = "/v1/images/edits"
NO_EDITS = "This image model cannot edit pictures; editing works with gpt-image-1 and dall-e-2."


@pytest.fixture
def editing_client(make_app, upstream):
    """An app whose image model edits pictures (gpt-image-1), on the local upstream."""
    return make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, image_model="gpt-image-1"
    ).test_client()


def image_bytes(client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data()


def two_colours(size=(200, 100)) -> bytes:
    """Left half red, right half blue."""
    image = Image.new("RGB", size, (220, 20, 20))
    image.paste((20, 20, 220), (size[0] // 2, 0, size[0], size[1]))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# -- what the upstream receives ------------------------------------------------------------------


def test_editing_a_source_sends_its_stored_picture_and_the_prompt_as_multipart(editing_client, upstream):
    client = editing_client
    first = post_image(client, "A lighthouse at sunset")
    source_picture = image_bytes(client, first["image_url"])
    body = post_image(client, "Make the sky purple", source=first["entry"])
    (call,) = upstream.calls(EDITS)
    parts = multipart(call)
    assert parts["image"].data == source_picture
    assert (parts["image"].filename, parts["image"].content_type) == ("image.png", "image/png")
    assert parts["prompt"].text == "Make the sky purple"
    assert (parts["model"].text, parts["size"].text, parts["n"].text) == ("gpt-image-1", "1024x1024", "1")
    assert image_bytes(client, body["input_image_url"]) == source_picture
    assert len(upstream.calls(IMAGES)) == 1  # only the first picture was generated


def test_the_edit_is_the_next_turn_of_the_source_with_its_own_file(editing_client, upstream):
    client = editing_client
    first = post_image(client, "A lighthouse at sunset")
    body = post_image(client, "Make the sky purple", source=first["entry"])
    assert (body["parent"], body["conversation"], body["turn"]) == (first["entry"], first["entry"], 2)
    assert body["image_url"] not in (first["image_url"], body["input_image_url"])
    result = Image.open(io.BytesIO(image_bytes(client, body["image_url"])))
    assert (result.format, result.size) == ("PNG", (80, 60))  # what the upstream's edit returned
    assert image_bytes(client, first["image_url"]) == image_bytes(client, first["image_url"])
    assert stored(client, first["entry"])["image_url"] == first["image_url"]  # the source is unchanged


def test_an_attached_picture_is_edited_from_its_stored_copy(editing_client, upstream):
    client = editing_client
    response = client.post(
        "/generate_image",
        data={"prompt": "Add a hat", "image": (io.BytesIO(png_bytes((90, 90))), "me.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    parts = multipart(upstream.calls(EDITS)[-1])
    assert parts["image"].data == image_bytes(client, body["input_image_url"])
    assert Image.open(io.BytesIO(parts["image"].data)).size == (90, 90)
    assert parts["prompt"].text == "Add a hat"
    assert upstream.calls(IMAGES) == []


def test_a_dall_e_2_edit_answered_by_url_is_fetched_and_stored(make_app, upstream):
    client = make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, image_model="dall-e-2"
    ).test_client()
    first = post_image(client, "A cat", size="512x512")
    url = upstream.serve_file("/files/edited.png", png_bytes((70, 70), (0, 200, 0)))
    upstream.script(EDITS, Reply(json={"created": 0, "data": [{"url": url}]}))
    body = post_image(client, "Make it green", source=first["entry"], size="512x512")
    assert multipart(upstream.calls(EDITS)[-1])["size"].text == "512x512"
    assert Image.open(io.BytesIO(image_bytes(client, body["image_url"]))).size == (70, 70)


def test_regenerating_an_edit_edits_the_same_picture_again(editing_client, upstream):
    client = editing_client
    first = post_image(client, "A lighthouse")
    edit = post_image(client, "Make the sky purple", source=first["entry"])
    response = client.post(f"{edit['entry']}/regenerate")
    assert response.status_code == 303
    again = stored(client, response.headers["Location"])
    assert again["siblings"] == [edit["entry"], again["entry"]]
    calls = upstream.calls(EDITS)
    assert len(calls) == 2
    assert multipart(calls[1])["image"].data == multipart(calls[0])["image"].data


# -- what is refused -------------------------------------------------------------------------------


def test_a_source_that_is_a_code_answer_is_a_400(editing_client, upstream):
    code = post_code(editing_client, "Q1")["entry"]
    response = editing_client.post("/generate_image", data={"prompt": "Edit it", "source": code})
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "Only an image entry's picture can be edited; this entry is a code answer."
    }
    assert upstream.calls(EDITS) == []


def test_a_model_without_edits_refuses_a_source_and_an_attached_picture(app, client, upstream):
    first = post_image(client, "A lighthouse")
    before = entry_count(app)
    response = client.post("/generate_image", data={"prompt": "Purple sky", "source": first["entry"]})
    assert (response.status_code, response.get_json()) == (400, {"error": NO_EDITS})
    response = client.post(
        "/generate_image",
        data={"prompt": "Purple sky", "image": (io.BytesIO(png_bytes()), "a.png")},
        content_type="multipart/form-data",
    )
    assert (response.status_code, response.get_json()) == (400, {"error": NO_EDITS})
    assert entry_count(app) == before
    assert upstream.calls(EDITS) == []


@pytest.mark.parametrize(
    ("source", "status"), [("/chatlog/2020-01-01/4", 404), ("nonsense", 404)], ids=["unknown", "malformed"]
)
def test_an_unknown_source_is_a_404(editing_client, upstream, source, status):
    response = editing_client.post("/generate_image", data={"prompt": "Edit it", "source": source})
    assert response.status_code == status
    assert response.get_json() == {"error": "The image to edit does not exist (any more)."}


def test_a_deleted_source_is_a_410(editing_client, upstream):
    first = post_image(editing_client, "A lighthouse")
    editing_client.delete(first["entry"])
    response = editing_client.post("/generate_image", data={"prompt": "Edit it", "source": first["entry"]})
    assert response.status_code == 410
    assert response.get_json() == {"error": "The image to edit does not exist (any more)."}


def test_a_source_and_an_attached_picture_together_are_a_400(editing_client, upstream):
    first = post_image(editing_client, "A lighthouse")
    response = editing_client.post(
        "/generate_image",
        data={"prompt": "Edit", "source": first["entry"], "image": (io.BytesIO(png_bytes()), "a.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": "Attach an image or name a source to edit, not both."}


def test_a_failed_edit_keeps_the_prompt_and_the_picture(editing_client, upstream):
    first = post_image(editing_client, "A lighthouse")
    upstream.script(EDITS, Reply(status=500, json=error_body("boom")))
    response = editing_client.post("/generate_image", data={"prompt": "Purple sky", "source": first["entry"]})
    assert response.status_code == 500
    entry = stored(editing_client, response.get_json()["entry"])
    assert (entry["status"], entry["prompt"]) == ("failed", "Purple sky")
    assert image_bytes(editing_client, entry["input_image_url"]) == image_bytes(
        editing_client, first["image_url"]
    )


# -- the UI ----------------------------------------------------------------------------------------


def test_images_offer_edit_image_in_place_of_variation_when_the_model_edits(editing_client, client, upstream):
    first = post_image(editing_client, "A lighthouse")
    article = only(parse(editing_client.get(first["entry"]).get_data(as_text=True)).find_all("article"))
    links = {a.text: a.attrs["href"] for a in article.find_all("a") if a.has_class("button-link")}
    assert links["Edit image"] == f"/?source={first['entry']}"
    assert "Variation" not in links
    other = post_image(client, "A lighthouse")  # dall-e-3: no edits
    article = only(parse(client.get(other["entry"]).get_data(as_text=True)).find_all("article"))
    links = {a.text: a.attrs["href"] for a in article.find_all("a") if a.has_class("button-link")}
    assert "Edit image" not in links and links["Variation"] == f"/?parent={other['entry']}"


def test_the_edit_chip_shows_the_picture_and_names_the_source(editing_client, upstream):
    first = post_image(editing_client, "A lighthouse")
    for html in (
        editing_client.get("/followup", query_string={"source": first["entry"]}, headers=HX).get_data(
            as_text=True
        ),
        editing_client.get("/", query_string={"source": first["entry"]}).get_data(as_text=True),
    ):
        chip = parse(html).by_id("followup")
        assert [i.attrs["value"] for i in chip.find_all("input") if i.attrs.get("name") == "source"] == [
            first["entry"]
        ]
        thumb = only(chip.find_all("img"))
        assert thumb.attrs["src"].endswith(".thumb.webp") and thumb.attrs["alt"] == "The image to edit"
        assert "Editing the image" in " ".join(chip.text.split())


def test_after_an_htmx_edit_the_form_edits_the_new_picture(editing_client, upstream):
    first = post_image(editing_client, "A lighthouse")
    response = editing_client.post(
        "/generate_image", data={"prompt": "Purple sky", "source": first["entry"]}, headers=HX
    )
    root = parse(response.get_data(as_text=True))
    new = only([a for a in root.find_all("a") if a.has_class("permalink")]).attrs["href"]
    chip = root.by_id("followup")
    assert chip.attrs["hx-swap-oob"] == "true"
    assert [i.attrs["value"] for i in chip.find_all("input") if i.attrs.get("name") == "source"] == [new]
    assert response.headers["HX-Trigger"] == "generated"


@STORAGE_FREE
def test_the_image_options_say_which_models_edit(editing_client, client, upstream):
    options = parse(editing_client.get("/").get_data(as_text=True)).find_all("details")[0]
    assert "This model also edits pictures" in options.text
    options = parse(client.get("/").get_data(as_text=True)).find_all("details")[0]
    assert "This model makes new pictures only; gpt-image-1, dall-e-2 edit pictures." in " ".join(
        options.text.split()
    )


def test_the_gallery_offers_edit_image_and_shows_the_edited_picture(editing_client, upstream):
    first = post_image(editing_client, "A lighthouse")
    edit = post_image(editing_client, "Purple sky", source=first["entry"])
    root = parse(editing_client.get("/images").get_data(as_text=True))
    items = [li for li in root.find_all("li") if li.has_class("gallery-item")]
    assert len(items) == 2
    newest = items[0]
    assert [i.attrs["src"] for i in newest.find_all("img") if i.has_class("gallery-input")] == [
        edit["input_image_url"].replace(".png", ".thumb.webp")
    ]
    edit_links = [a.attrs["href"] for li in items for a in li.find_all("a") if a.has_class("edit-image-link")]
    assert edit_links == [f"/?source={edit['entry']}", f"/?source={first['entry']}"]


# -- offline -----------------------------------------------------------------------------------------


def test_the_demo_edit_is_visibly_derived_from_the_source(demo_client):
    response = demo_client.post(
        "/generate_image",
        data={"prompt": "Warmer", "image": (io.BytesIO(two_colours()), "two.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    result = Image.open(io.BytesIO(image_bytes(demo_client, body["image_url"]))).convert("RGB")
    width, height = result.size
    left = ImageStat.Stat(result.crop((width // 8, height // 8, width * 3 // 8, height // 2))).mean
    right = ImageStat.Stat(result.crop((width * 5 // 8, height // 8, width * 7 // 8, height // 2))).mean
    assert left[0] > left[2] + 50  # still red on the left …
    assert right[2] > right[0] + 50  # … and blue on the right: the source shows through
    source = Image.open(io.BytesIO(two_colours())).convert("RGB").resize(result.size)
    assert result.tobytes() != source.tobytes()  # and it was changed
    again = demo_client.post(
        "/generate_image",
        data={"prompt": "Warmer", "image": (io.BytesIO(two_colours()), "two.png")},
        content_type="multipart/form-data",
    )
    assert image_bytes(demo_client, again.get_json()["image_url"]) == image_bytes(
        demo_client, body["image_url"]
    )


def test_the_demo_edits_a_source_entry_offline(demo_client):
    first = post_image(demo_client, "A lighthouse")
    body = post_image(demo_client, "At night", source=first["entry"])
    assert (body["parent"], body["turn"]) == (first["entry"], 2)
    assert Image.open(io.BytesIO(image_bytes(demo_client, body["image_url"]))).format == "PNG"
