"""Images in S3-compatible storage, in a real browser (Debian's chromium through Playwright).

Both ways the app hands images out: streamed through the app (`/images/<name>` answers with the
bytes) and presigned (`IMAGE_STORE_PRESIGN`: `/images/<name>` answers 302 to a signed URL on the
object store's own origin, which the CSP must allow). Each is checked on a fresh page and once the
service worker controls the page: it intercepts `/images/*` and fetches them itself (cache first),
so with presign its fetch follows a cross-origin redirect, under the CSP of `/sw.js`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Request,
    Response,
    Worker,
    expect,
)

from ..support.s3 import APP_PREFIX, build_s3_app

pytestmark = pytest.mark.browser

PRESIGN = 300
MODES = pytest.mark.parametrize("presign", [0, PRESIGN], ids=["through-app", "presigned"])
PROMPT = "A red Fox, in the snow!"
FILENAME = "a-red-fox-in-the-snow.png"
UI_PROMPT = "A lighthouse at dusk"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_PATH = re.compile(r"/images/[0-9a-f]{32}(\.thumb\.webp|\.png)$")
IMAGE_NAME = re.compile(r"/[0-9a-f]{32}(\.thumb\.webp|\.png)$")  # /images/… or the object's key

# Runs in every document before its own scripts: CSP violations are reported to the test as they
# happen (a binding survives navigations, a window variable would not).
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolation(`${e.effectiveDirective} blocked ${e.blockedURI} (${e.sourceFile || location.href})`);
}, true);
"""

# Installed in the service worker once it runs: violations inside it (its own fetches of images,
# under the CSP /sw.js was served with) are fired at its global scope, not at any page.
SW_CSP_WATCH = """
() => {
  if (!self.__csp) {
    self.__csp = [];
    self.addEventListener("securitypolicyviolation", (e) => {
      self.__csp.push(`service worker: ${e.effectiveDirective} blocked ${e.blockedURI}`);
    });
  }
  return true;
}
"""


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials for boto3 (moto accepts any), none from the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-for-browser-tests")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@dataclass
class Site:
    """The app on a live server with its images in a moto bucket, and a watched browser tab."""

    app: Any
    base: str
    endpoint: str
    presign: int
    context: BrowserContext
    page: Page
    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    failed_requests: list[tuple[str, str | None]] = field(default_factory=list)
    image_responses: list[Response] = field(default_factory=list)

    def generate(self, prompt: str = PROMPT) -> dict:
        """Generate an image through the JSON API, as another client would (not the page)."""
        response = self.app.test_client().post("/generate_image", json={"prompt": prompt})
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert IMAGE_PATH.search(body["image_url"]), body
        return body

    def request_failed(self, request: Request) -> None:
        # Leaving a page cancels what it still loads (its icon …): only images count then.
        aborted = request.failure == "net::ERR_ABORTED"
        if not aborted or IMAGE_NAME.search(urlsplit(request.url).path):
            self.failed_requests.append((request.url, request.failure))

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None and response.ok, (path, response and response.status)

    def report(self) -> str:
        return (
            f"console errors: {self.console_errors}\nCSP violations: {self.csp_violations}\n"
            f"in the service worker: {self.service_worker_violations()}\n"
            f"failed requests: {self.failed_requests}"
        )

    def service_worker(self) -> Worker:
        workers = [w for w in self.context.service_workers if w.url.startswith(self.base)]
        assert workers, "no service worker running for the app"
        return workers[0]

    def control_by_service_worker(self) -> Worker:
        """Wait (bounded) until the service worker controls the page; reload once if needed."""
        self.page.wait_for_function(
            "() => navigator.serviceWorker.ready.then(r => !!r.active)", timeout=10_000
        )
        if not self.page.evaluate("navigator.serviceWorker.controller !== null"):
            self.page.reload()
        self.page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=10_000)
        worker = self.service_worker()
        worker.evaluate(SW_CSP_WATCH)
        return worker

    def service_worker_violations(self) -> list[str]:
        workers = [w for w in self.context.service_workers if w.url.startswith(self.base)]
        return [v for w in workers for v in w.evaluate("self.__csp || []")]

    def cached_images(self) -> list[str]:
        """Paths in the service worker's image cache."""
        return self.page.evaluate(
            "caches.open('chat-images-v1').then(c => c.keys())"
            ".then(keys => keys.map(r => new URL(r.url).pathname))"
        )

    def assert_images_load(self, images, count: int) -> list[dict]:
        """Every image of `images` (a locator) is decoded with a real size; their details."""
        expect(images).to_have_count(count)
        for n in range(count):
            images.nth(n).scroll_into_view_if_needed()  # they are loading="lazy"
        handles = images.element_handles()
        try:
            self.page.wait_for_function(
                "imgs => imgs.every(img => img.complete)", arg=handles, timeout=10_000
            )
        except Exception as exc:  # still loading after 10 s: say which and why
            raise AssertionError(f"images never finished loading\n{self.report()}") from exc
        found = self.page.evaluate(
            "imgs => imgs.map(img => ({src: img.getAttribute('src'), width: img.naturalWidth,"
            " height: img.naturalHeight}))",
            handles,
        )
        broken = [image for image in found if not image["width"] > 0]
        assert broken == [], f"broken images: {broken}\n{self.report()}"
        return found

    def assert_clean(self) -> None:
        assert self.csp_violations == [], self.report()
        assert self.service_worker_violations() == [], self.report()
        assert self.console_errors == [], self.report()
        assert self.failed_requests == [], self.report()


@pytest.fixture
def open_site(browser: Browser, make_app, upstream, s3_bucket, live_server) -> Iterator[Callable[..., Site]]:
    contexts: list[BrowserContext] = []
    endpoint = s3_bucket[0]

    def open_with(presign: int, *, worker: bool) -> Site:
        """A tab on the app; without `worker` the service worker is blocked, so no page is
        ever controlled (it claims pages as soon as it activates)."""
        app = build_s3_app(make_app, upstream, s3_bucket, image_store_presign=presign).app
        server = live_server(app)
        context = browser.new_context(accept_downloads=True, service_workers="allow" if worker else "block")
        contexts.append(context)
        page = context.new_page()
        site = Site(app, server.url, endpoint, presign, context, page)
        context.expose_function("__cspViolation", lambda text: site.csp_violations.append(text))
        context.add_init_script(CSP_WATCH)
        # Console errors of the pages and of the service worker alike.
        context.on("console", lambda m: m.type == "error" and site.console_errors.append(m.text))
        page.on("pageerror", lambda e: site.console_errors.append(str(e)))
        context.on("requestfailed", site.request_failed)
        # Image responses of the pages and of the service worker's own fetches.
        context.on(
            "response",
            lambda r: IMAGE_NAME.search(r.url.split("?")[0]) and site.image_responses.append(r),
        )
        return site

    yield open_with
    for context in contexts:
        context.close()


def entry_images(site: Site):
    """The images of the entry on its own page."""
    return site.page.locator("main article.entry-image figure img")


def gallery_thumb(site: Site, permalink: str):
    return site.page.locator(f'.gallery-item a[href="{permalink}"] img')


def assert_served_as_configured(site: Site, loaded: list[dict]) -> None:
    """Through the app the bytes come from the app; presigned, from the object store's origin."""
    names = [image["src"] for image in loaded]
    store_hits = [r for r in site.image_responses if r.url.startswith(site.endpoint)]
    if site.presign:
        for name in names:
            key = APP_PREFIX + name.removeprefix("/images")  # /images/<name> → imgs/<name>
            hits = [r for r in store_hits if urlsplit(r.url).path.endswith("/" + key)]
            assert hits and all(r.status == 200 for r in hits), (name, [r.url for r in store_hits])
    else:
        assert store_hits == [], [r.url for r in store_hits]


# -- 1. a fresh page, no service worker ---------------------------------------------------------


@MODES
def test_stored_images_display_in_the_gallery_and_on_the_entry_page(open_site, presign):
    site = open_site(presign, worker=False)
    body = site.generate()

    site.goto("/")  # the History sidebar links to the entry page (it shows no image itself)
    site.page.get_by_role("complementary", name="History").get_by_role(
        "link", name=re.compile("red Fox")
    ).click()
    expect(site.page).to_have_url(site.base + body["entry"])
    images = site.assert_images_load(entry_images(site), 1)
    assert [(i["src"], i["width"], i["height"]) for i in images] == [(body["image_url"], 64, 48)]

    site.goto("/images")  # the gallery: the entry's thumbnail
    thumbs = site.assert_images_load(gallery_thumb(site, body["entry"]), 1)
    assert thumbs[0]["src"] == body["image_url"].removesuffix(".png") + ".thumb.webp"

    assert_served_as_configured(site, thumbs + images)
    assert site.page.evaluate("navigator.serviceWorker.controller") is None
    site.assert_clean()


@MODES
def test_an_image_generated_in_the_page_displays_in_results(open_site, presign):
    site = open_site(presign, worker=False)
    site.goto("/")
    prompt = site.page.get_by_role("textbox", name="Prompt")
    prompt.fill(UI_PROMPT)
    prompt.press("Control+Shift+Enter")

    results = site.page.get_by_role("region", name="Results")
    loaded = site.assert_images_load(results.get_by_role("img", name=re.compile("lighthouse")), 1)
    assert loaded[0]["width"] == 64

    assert_served_as_configured(site, loaded)
    assert site.page.evaluate("navigator.serviceWorker.controller") is None
    site.assert_clean()


# -- 2. the page controlled by the service worker ------------------------------------------------


@MODES
def test_stored_images_display_when_the_service_worker_controls_the_page(open_site, presign):
    site = open_site(presign, worker=True)
    body = site.generate()
    site.goto("/")
    site.control_by_service_worker()

    thumb = body["image_url"].removesuffix(".png") + ".thumb.webp"

    loaded = []
    for _ in range(2):  # first the worker's own fetches, then whatever it (or HTTP) cached
        site.goto(body["entry"])
        loaded += site.assert_images_load(entry_images(site), 1)
        site.goto("/images")
        loaded += site.assert_images_load(gallery_thumb(site, body["entry"]), 1)
        answered = {urlsplit(r.url).path for r in site.image_responses if r.from_service_worker}
        assert answered == {body["image_url"], thumb}, "the service worker did not answer them"
        site.image_responses[:] = [r for r in site.image_responses if not r.from_service_worker]

    assert site.page.evaluate("navigator.serviceWorker.controller !== null")
    assert [(i["width"], i["height"]) for i in loaded] == [(64, 48)] * 4  # small: thumb = image
    assert_served_as_configured(site, loaded)
    if presign:  # the worker itself followed the redirect to the object store
        by_worker = [r.url for r in site.image_responses if r.request.service_worker]
        assert any(url.startswith(site.endpoint) for url in by_worker), by_worker
    else:  # cache first: the worker keeps what the app served
        assert sorted(site.cached_images()) == sorted([body["image_url"], thumb])
    site.assert_clean()


@MODES
def test_an_image_generated_under_the_service_worker_displays_in_results(open_site, presign):
    site = open_site(presign, worker=True)
    site.goto("/")
    site.control_by_service_worker()
    prompt = site.page.get_by_role("textbox", name="Prompt")
    prompt.fill(UI_PROMPT)
    prompt.press("Control+Shift+Enter")

    results = site.page.get_by_role("region", name="Results")
    loaded = site.assert_images_load(results.get_by_role("img", name=re.compile("lighthouse")), 1)
    assert loaded[0]["width"] == 64
    assert [r for r in site.image_responses if r.from_service_worker], "not through the worker"
    assert_served_as_configured(site, loaded)
    site.assert_clean()


# -- 3. downloads --------------------------------------------------------------------------------


@MODES
@pytest.mark.parametrize("worker", [False, True], ids=["no-sw", "sw"])
def test_download_link_saves_a_png_named_after_the_prompt(open_site, presign, worker, tmp_path):
    site = open_site(presign, worker=worker)
    body = site.generate()
    site.goto("/")
    if worker:
        site.control_by_service_worker()
    site.goto(body["entry"])
    assert site.page.evaluate("navigator.serviceWorker.controller !== null") is worker
    link = site.page.get_by_role("link", name="Download image")
    expect(link).to_have_attribute("href", body["entry"] + "/image")

    with site.page.expect_download(timeout=10_000) as info:
        link.click()
    download = info.value

    assert download.suggested_filename == FILENAME
    assert download.suggested_filename.endswith(".png")
    saved = tmp_path / "saved.png"
    download.save_as(saved)
    assert saved.read_bytes().startswith(PNG_SIGNATURE)
    assert download.failure() is None
    # A navigation that turns into a download is reported as aborted: that one is expected.
    site.failed_requests[:] = [f for f in site.failed_requests if f != (download.url, "net::ERR_ABORTED")]
    site.assert_clean()
