"""Search over HTTP on both engines: words, phrases, accents, identifiers, ranking, filters, and
snippets that mark the match safely; a hit's link marks the match on the entry page.

Every test runs against the TinyDB files and a real PostgreSQL alike (`history_backend`); the
entries are written through the app's own store with a settable clock, so dates and models are
chosen by the test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from ..support.apps import BACKENDS
from ..support.html import parse
from ..support.htmx import HX

JSON = {"Accept": "application/json"}
UTC = UTC


@pytest.fixture(params=BACKENDS)
def history_backend(request: pytest.FixtureRequest) -> str:
    return request.param


class History:
    """Writes finished entries into an app's store on chosen dates."""

    def __init__(self, app) -> None:
        self.store = app.extensions["chatlog"]
        self.when = datetime(2025, 3, 1, 12, tzinfo=UTC)

    def add(self, prompt: str, answer: str = "an answer", *, day: str | None = None, **kw) -> str:
        """Store one finished entry (code unless `kind`), a minute after the last; its permalink."""
        self.when = (
            datetime.fromisoformat(f"{day}T12:00:00+00:00") if day else self.when + timedelta(minutes=1)
        )
        self.store.clock = lambda: self.when
        entry = self.store.begin(kw.get("kind", "code"), prompt, kw.get("model", "gpt-test"))
        return self.store.finish(entry, answer).permalink


@pytest.fixture
def history(demo_app) -> History:
    return History(demo_app)


def search(client, q: str) -> list[str]:
    """The permalinks of the hits for `q`, best first (JSON API)."""
    response = client.get("/chatlog", query_string={"q": q}, headers=JSON)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [hit["entry"] for hit in response.get_json()["results"]]


# -- what matches ---------------------------------------------------------------------------------


def test_several_words_match_entries_holding_all_of_them_in_any_order_and_field(demo_client, history):
    both = history.add("a fox in the garden", "jumps over the lazy dog")
    history.add("a fox alone", "nothing else")
    history.add("the dog alone", "nothing else")

    assert search(demo_client, "dog fox") == [both]


def test_a_quoted_phrase_matches_only_those_words_in_that_order(demo_client, history):
    exact = history.add("the red fox runs")
    history.add("a fox that is red")
    history.add("bored foxes sleep")

    assert search(demo_client, '"red fox"') == [exact]


def test_search_is_case_insensitive_and_accent_folded(demo_client, history):
    uber = history.add("Über den Wolken", "Grüße aus München")

    assert search(demo_client, "uber") == [uber]
    assert search(demo_client, "GRUSSE muenchen") == []  # ß folds to ss, ü to u, not to ue
    assert search(demo_client, "grusse munchen") == [uber]
    assert search(demo_client, "ÜBER") == [uber]


def test_code_identifiers_match_as_typed(demo_client, history):
    rows = history.add("why is parse_rows slow", "it copies every row")
    vector = history.add("sort it", "use std::vector<int> and std::sort")
    history.add("parse rows of a csv", "with csv.reader")

    assert search(demo_client, "parse_rows") == [rows]
    assert search(demo_client, "std::vector") == [vector]
    assert search(demo_client, "std::vector<int>") == [vector]


def test_a_word_matches_inside_longer_words(demo_client, history):
    quokka = history.add("PARSE_ROWS_quokka is here")

    assert search(demo_client, "rows_quok") == [quokka]


# -- ranking --------------------------------------------------------------------------------------


def test_a_match_in_the_prompt_ranks_above_a_newer_match_only_in_the_answer(demo_client, history):
    in_prompt = history.add("how do I use a heap", "like this")
    in_answer = history.add("sorting question", "use a heap")

    assert search(demo_client, "heap") == [in_prompt, in_answer]


def test_more_of_the_words_in_the_prompt_ranks_higher(demo_client, history):
    two = history.add("heap sort in python", "an answer")
    one = history.add("heap question", "in python")
    none = history.add("a question", "heap in python")

    assert search(demo_client, "python heap") == [two, one, none]


def test_equal_matches_are_newest_first(demo_client, history):
    old = history.add("a heap", day="2025-01-01")
    new = history.add("another heap", day="2025-02-01")
    later_same_day = history.add("a third heap", day="2025-02-01")

    assert search(demo_client, "heap") == [later_same_day, new, old]


# -- filters --------------------------------------------------------------------------------------


@pytest.fixture
def mixed(history) -> dict[str, str]:
    return {
        "old_code": history.add("fox code", day="2025-01-10", model="gpt-4o-mini"),
        "image": history.add("fox picture", "/images/" + "a" * 32 + ".png", day="2025-02-10", kind="image"),
        "new_code": history.add("fox again", day="2025-03-10", model="llama3.2"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("fox kind:image", ["image"]),
        ("fox kind:code", ["new_code", "old_code"]),
        ("fox before:2025-02-10", ["old_code"]),
        ("fox after:2025-02-10", ["new_code"]),
        ("fox after:2025-01-01 before:2025-03-01", ["image", "old_code"]),
        ("fox model:GPT-4o-mini", ["old_code"]),
        ("kind:code", ["new_code", "old_code"]),
    ],
)
def test_filters_narrow_the_hits(demo_client, mixed, query, expected):
    assert search(demo_client, query) == [mixed[name] for name in expected]


@pytest.mark.parametrize("query", ["kind:video", "before:yesterday", "after:2025-1-1", "model:"])
def test_a_malformed_filter_is_a_400_saying_what_is_expected(demo_client, mixed, query):
    response = demo_client.get("/chatlog", query_string={"q": query}, headers=JSON)

    assert response.status_code == 400
    assert query.partition(":")[0] + ":" in response.get_json()["error"]


def test_a_malformed_filter_is_an_alert_in_the_search_fragment(demo_client, mixed):
    response = demo_client.get("/chatlog", query_string={"q": "fox kind:video"}, headers=HX)

    assert response.status_code == 200
    alerts = [
        p for p in parse(response.get_data(as_text=True)).find_all("p") if p.attrs.get("role") == "alert"
    ]
    assert len(alerts) == 1 and "kind:image or kind:code" in alerts[0].text


# -- snippets and links ---------------------------------------------------------------------------


def test_a_hit_in_the_answer_has_a_snippet_around_the_match_with_it_marked(demo_client, history):
    long_answer = "filler words " * 60 + "the zebra case needs a heap " + "more filler " * 60
    history.add("sorting question", long_answer)

    hit = demo_client.get("/chatlog", query_string={"q": "zebra"}, headers=JSON).get_json()["results"][0]

    assert hit["match"] == "answer"
    assert "<mark>zebra</mark>" in hit["snippet_html"]
    assert len(hit["snippet_html"]) < 260
    assert hit["snippet_html"].startswith("…") and hit["snippet_html"].endswith("…")


def test_snippets_escape_model_text_and_keep_multibyte_characters_whole(demo_client, history):
    answer = "日本語のテキスト " * 30 + "<script>alert(1)</script> naïve café 🦊 fox " + "ü" * 300
    history.add("<b>bold</b> prompt", answer)

    response = demo_client.get("/chatlog", query_string={"q": "fox"}, headers=HX)
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    snippet = parse(html).find_all("p")[-1]
    assert snippet.has_class("snippet")
    assert [m.text for m in snippet.find_all("mark")] == ["fox"]
    assert "naïve café 🦊 fox" in snippet.text
    assert "\ufffd" not in html


def test_accented_text_is_marked_as_written(demo_client, history):
    history.add("Grüße über alles")

    hit = demo_client.get("/chatlog", query_string={"q": "UBER grusse"}, headers=JSON).get_json()["results"][
        0
    ]

    assert hit["title_html"] == "<mark>Grüße</mark> <mark>über</mark> alles"


def test_a_hit_links_to_its_entry_with_the_query_and_the_match_fragment(demo_client, history):
    permalink = history.add("a heap question")

    hit = demo_client.get("/chatlog", query_string={"q": "heap"}, headers=JSON).get_json()["results"][0]
    url = urlsplit(hit["url"])

    assert url.path == permalink and url.fragment == "match"
    assert parse_qs(url.query) == {"hl": ["heap"]}


def test_the_entry_page_marks_the_first_match_as_the_links_target(demo_client, history):
    permalink = history.add("a question", "first line\n\nthe heap is here, and another heap")

    response = demo_client.get(permalink, query_string={"hl": "heap"})
    marks = parse(response.get_data(as_text=True)).find_all("mark")

    assert response.status_code == 200
    assert [m.text for m in marks] == ["heap", "heap"]
    assert [m.attrs.get("id") for m in marks] == ["match", None]


def test_more_hits_than_shown_are_announced(demo_client, history):
    for n in range(101):
        history.add(f"heap {n}")

    response = demo_client.get("/chatlog", query_string={"q": "heap"}, headers=HX)
    body = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "100+ entries match “heap”" in body
    assert demo_client.get("/chatlog", query_string={"q": "heap"}, headers=JSON).get_json()["more"] is True


def test_ranking_holds_across_the_newest_rows_and_the_older_ones(demo_client, history, monkeypatch):
    # PostgreSQL reads the newest rows in windows, then the older ones through its indexes:
    # with windows of one and three rows, a history of twelve crosses every boundary.
    from app.history.sql import reads as sql_reads

    monkeypatch.setattr(sql_reads, "SEARCH_WINDOWS", (1, 3))
    made = [
        (history.add(f"heap {n}") if n % 3 == 0 else history.add(f"question {n}", "use a heap"), n % 3 == 0)
        for n in range(12)
    ]
    history.add("nothing to find here")

    in_prompt = [link for link, prompt in reversed(made) if prompt]
    in_answer = [link for link, prompt in reversed(made) if not prompt]
    assert search(demo_client, "heap") == in_prompt + in_answer


def test_migration_0003_folds_the_text_of_rows_written_before_it(pg_at_revision):
    # A database at revision 0002 with a row as that version wrote it (only case-folded),
    # upgraded as a server does when it starts: the row is found by its accent-free words.
    from app.history.sql import SQLChatLog

    url = pg_at_revision(
        "0002",
        (
            "INSERT INTO entries (day, idx, id, created_at, kind, prompt, response, model, status, "
            "searchable) VALUES ('2025-01-02', 0, 'a1', '2025-01-02T10:00:00', 'code', "
            "'Grüße aus München', 'Über alles', 'm', 'done', :old)",
            {"old": "grüße aus münchen\x1füber alles"},
        ),
        ("INSERT INTO days (day, next_idx) VALUES ('2025-01-02', 1)", {}),
    )
    store = SQLChatLog(url)
    try:
        store.migrate()
        found = store.search("munchen uber")
        prompt_first = store.search("grusse")
    finally:
        store.close()

    assert [(e.date, e.index) for e in found] == [("2025-01-02", 0)]
    assert [e.prompt for e in prompt_first] == ["Grüße aus München"]
