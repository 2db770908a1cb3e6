"""The history store contract (app.history.HistoryStore), run against both backends alike:
ChatLog (TinyDB files in a temporary DATA_DIR) and SQLChatLog (a fresh database on a real
PostgreSQL). Every test that takes `store` runs once per backend; the PostgreSQL-only tests at
the end say so in their names.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.history import ChatLog, Entry, HistoryStore, HistoryUnavailable, Permalink
from app.history.sql import SQLChatLog, sqlalchemy_url
from app.messages import failure

from ..support.apps import BACKENDS
from ..support.clock import CEST, Clock
from ..support.ports import free_port

DAY_ONE = datetime(2024, 8, 30, 9, 15, tzinfo=CEST)
DAY_TWO = datetime(2024, 8, 31, 10, 45, tzinfo=CEST)
DAY_THREE = datetime(2024, 9, 1, 8, 5, tzinfo=CEST)
ENTRY_FIELDS = set(Entry.__dataclass_fields__)


class Stores:
    """Opens history stores of either kind on fresh places and closes them after the test.

    A place is a directory (TinyDB) or a database URL (PostgreSQL); the first PostgreSQL place
    is the test's `pg_url`, further ones are extra databases on the same server.
    """

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> None:
        self.request = request
        self.tmp_path = tmp_path
        self.clock = clock
        self.opened: list[HistoryStore] = []
        self.extra_databases: list[str] = []
        self.used_pg_url = False
        self.pg_server: Any = None

    def fresh_place(self, kind: str) -> Any:
        if kind == "tinydb":
            path = self.tmp_path / f"place-{uuid.uuid4().hex[:8]}"
            path.mkdir()
            return path
        if not self.used_pg_url:
            self.used_pg_url = True
            return self.request.getfixturevalue("pg_url")
        self.pg_server = self.request.getfixturevalue("pg_server")
        name = f"test_{uuid.uuid4().hex[:16]}"
        self.extra_databases.append(name)
        return self.pg_server.create_database(name)

    def open(self, kind: str, place: Any, clock: Callable[[], datetime] | None = None) -> HistoryStore:
        clock = clock or self.clock
        if kind == "tinydb":
            store: HistoryStore = ChatLog(place, clock=clock)
        else:
            store = SQLChatLog(place, clock=clock)
            assert store.ensure_schema()
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            close = getattr(store, "close", None)
            if close:
                close()
        for name in self.extra_databases:
            self.pg_server.drop_database(name)


def other_kind(kind: str) -> str:
    return "postgresql" if kind == "tinydb" else "tinydb"


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY_ONE)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def stores(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Stores]:
    opened = Stores(request, tmp_path, clock)
    yield opened
    opened.close()


@pytest.fixture
def place(stores: Stores, backend: str) -> Any:
    """Where `store` keeps its history (a directory, or a database URL)."""
    return stores.fresh_place(backend)


@pytest.fixture
def store(stores: Stores, backend: str, place: Any) -> HistoryStore:
    """An empty history store of each kind (a PostgreSQL server starts only for that kind)."""
    return stores.open(backend, place)


@pytest.fixture
def reopen(stores: Stores, backend: str, place: Any) -> Callable[..., HistoryStore]:
    """A NEW store instance on the same directory or database, as after a server restart."""

    def again(clock: Callable[[], datetime] | None = None) -> HistoryStore:
        return stores.open(backend, place, clock)

    return again


def prompts(entries: list[Entry]) -> list[str]:
    return [e.prompt for e in entries]


def shape(days) -> list[tuple[str, list[str]]]:
    return [(day.date, prompts(day.entries)) for day in days]


def make(store: HistoryStore, prompt: str, kind: str = "code", **kwargs: Any) -> Entry:
    """A finished entry."""
    entry = store.begin(kind, prompt, "test-model", **kwargs)
    return store.finish(entry, f"answer to {prompt}")


def image(store: HistoryStore, prompt: str) -> Entry:
    """A finished image entry with its (app-local) image file."""
    entry = store.begin("image", prompt, "dall-e-3")
    name = f"{entry.id}.png"
    return store.finish(entry, f"/images/{name}", image_file=name)


@pytest.fixture
def two_days(store: HistoryStore, clock: Clock) -> HistoryStore:
    """Prompts a, b on 2024-08-30 and c, d on 2024-08-31."""
    for prompt in ("a", "b"):
        make(store, prompt)
    clock.now = DAY_TWO
    for prompt in ("c", "d"):
        make(store, prompt)
    return store


# -- begin, finish, fail, stop -----------------------------------------------------------------


def test_begin_stores_a_pending_entry_that_a_reopened_store_sees_before_finish(store, reopen):
    entry = store.begin("code", "Write a prime test", "test-model")

    stored = reopen().get(entry.date, entry.index)

    assert stored == entry
    assert (stored.prompt, stored.status, stored.response, stored.model) == (
        "Write a prime test",
        "pending",
        "",
        "test-model",
    )


def test_begin_returns_a_pending_entry_with_its_kind_model_and_demo_flag(store):
    entry = store.begin("image", "A lighthouse", "dall-e-3", demo=True)

    assert (entry.kind, entry.status, entry.model, entry.demo, entry.error) == (
        "image",
        "pending",
        "dall-e-3",
        True,
        None,
    )
    assert len(entry.id) == 32
    assert entry.created_at == "2024-08-30T09:15:00+02:00"


def test_begin_rejects_an_unknown_kind_and_stores_nothing(store):
    with pytest.raises(ValueError):
        store.begin("video", "A film", "test-model")

    assert store.count() == 0
    assert store.get("2024-08-30", 0) is None


def test_finish_marks_the_entry_done_with_response_and_extra_fields(store, reopen):
    entry = store.begin("code", "Prompt", "test-model")
    usage = {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}

    finished = store.finish(
        entry, "```python\nprint(1)\n```", usage=usage, model="answer-model", context_dropped=2
    )

    stored = reopen().get(entry.date, entry.index)
    assert stored == finished
    assert (stored.status, stored.response, stored.error) == ("done", "```python\nprint(1)\n```", None)
    assert (stored.usage, stored.model, stored.context_dropped) == (usage, "answer-model", 2)
    assert (stored.id, stored.prompt) == (entry.id, "Prompt")


def test_fail_marks_the_entry_failed_and_keeps_prompt_and_partial_answer(store, reopen):
    entry = store.begin("code", "Keep me", "test-model")
    nothing_came = store.begin("code", "Nothing came", "test-model")
    assert store.fail(nothing_came, "The upstream timed out.").response == ""

    store.fail(entry, "The upstream had a server error (500).", partial="def f(", usage={"total_tokens": 3})

    stored = reopen().get(entry.date, entry.index)
    assert (stored.status, stored.error, stored.prompt, stored.response, stored.usage) == (
        "failed",
        "The upstream had a server error (500).",
        "Keep me",
        "def f(",
        {"total_tokens": 3},
    )


def test_fail_with_a_failure_message_stores_its_kind_and_values_beside_the_english_sentence(store, reopen):
    entry = store.begin("code", "Keep me", "test-model")
    plain = store.begin("code", "As before", "test-model")

    store.fail(entry, failure("server_error", status=503))
    store.fail(plain, "The upstream timed out.")

    stored, stored_plain = (reopen().get(e.date, e.index) for e in (entry, plain))
    assert (stored.error, stored.error_kind, stored.error_params) == (
        "The upstream had a server error (503). Try again in a moment.",
        "server_error",
        {"status": 503},
    )
    assert (stored_plain.error, stored_plain.error_kind, stored_plain.error_params) == (
        "The upstream timed out.",
        None,
        {},
    )


def test_a_deleted_failed_entry_keeps_no_failure(store, reopen):
    entry = store.fail(store.begin("code", "Delete me", "test-model"), failure("server_error", status=500))

    store.delete(entry.date, entry.index)

    tomb = reopen().get(entry.date, entry.index)
    assert (tomb.deleted, tomb.error, tomb.error_kind, tomb.error_params) == (True, None, None, {})


def test_stop_marks_the_entry_stopped_and_keeps_the_partial_answer(store, reopen):
    entry = store.begin("code", "Stop me", "test-model")

    store.stop(entry, "half an answ", model="answer-model")

    stored = reopen().get(entry.date, entry.index)
    assert (stored.status, stored.response, stored.error, stored.model) == (
        "stopped",
        "half an answ",
        None,
        "answer-model",
    )


def late_outcomes(store: HistoryStore, entry: Entry) -> list[Entry]:
    """What finish, fail and stop return when they come for `entry` once more."""
    return [
        store.finish(entry, "another answer", usage={"total_tokens": 1}),
        store.fail(entry, "too late", partial="x"),
        store.stop(entry, "partial"),
    ]


def test_a_late_outcome_never_overwrites_a_finished_entry(store, reopen):
    entry = store.begin("code", "Prompt", "test-model")
    finished = store.finish(entry, "the answer", usage={"total_tokens": 5})

    outcomes = late_outcomes(reopen(), entry)

    assert outcomes == [finished] * 3
    assert store.get(entry.date, entry.index) == finished


def test_a_late_outcome_never_overwrites_a_deleted_entry(store):
    entry = store.begin("code", "Deleted while generating", "test-model")
    store.delete(entry.date, entry.index)

    outcomes = late_outcomes(store, entry)

    stored = store.get(entry.date, entry.index)
    assert [o.deleted for o in outcomes] == [True] * 3
    assert (stored.deleted, stored.prompt, stored.response, stored.status, stored.usage) == (
        True,
        "",
        "",
        "pending",
        {},
    )


def test_finishing_an_entry_that_is_not_in_this_store_raises_key_error(store):
    here = store.begin("code", "Here", "test-model")
    stranger_at_same_place = dataclasses.replace(here, id=uuid.uuid4().hex)
    stranger_at_free_place = dataclasses.replace(here, id=uuid.uuid4().hex, index=7)

    with pytest.raises(KeyError):
        store.finish(stranger_at_same_place, "answer")
    with pytest.raises(KeyError):
        store.fail(stranger_at_free_place, "error")

    assert store.get(here.date, here.index).status == "pending"
    assert store.get(here.date, 7) is None


# -- indexes, permalinks, dates ----------------------------------------------------------------


def test_indexes_start_at_zero_and_increase_within_a_day(store):
    indexes = [store.begin("code", f"p{n}", "m").index for n in range(4)]

    assert indexes == [0, 1, 2, 3]


def test_indexes_restart_at_zero_on_a_new_day(store, clock):
    store.begin("code", "day one a", "m")
    store.begin("code", "day one b", "m")
    clock.now = DAY_TWO

    entries = [store.begin("code", f"day two {n}", "m") for n in range(2)]

    assert [(e.date, e.index) for e in entries] == [("2024-08-31", 0), ("2024-08-31", 1)]


def test_indexes_continue_after_a_restart(store, reopen):
    store.begin("code", "a", "m")
    store.begin("code", "b", "m")

    entry = reopen().begin("code", "after restart", "m")

    assert entry.index == 2
    assert entry.permalink == "/chatlog/2024-08-30/2"


def test_permalinks_keep_pointing_at_the_same_entry_after_later_writes(store, clock, reopen):
    first = store.begin("code", "first", "m")
    second = store.begin("code", "second", "m")
    store.finish(second, "answer two")
    store.fail(first, "broken")
    clock.now = DAY_TWO
    store.begin("code", "next day", "m")
    store.delete(second.date, second.index)
    store.begin("code", "one more", "m")

    later = reopen()
    assert later.get(first.date, first.index).id == first.id
    assert later.get(first.date, first.index).prompt == "first"
    assert later.get(second.date, second.index).id == second.id
    assert first.permalink == "/chatlog/2024-08-30/0"


def test_entries_are_dated_by_the_clocks_local_date_not_utc(store, clock):
    clock.now = datetime(2024, 8, 31, 0, 30, tzinfo=CEST)  # still 2024-08-30 in UTC

    entry = store.begin("code", "late night", "m")

    assert entry.date == "2024-08-31"
    assert entry.created_at == "2024-08-31T00:30:00+02:00"
    assert store.get("2024-08-31", 0).id == entry.id
    assert store.today() == "2024-08-31"


# -- get -----------------------------------------------------------------------------------------


def test_get_returns_the_entry_at_date_and_index(two_days):
    entry = two_days.get("2024-08-31", 1)

    assert (entry.prompt, entry.date, entry.index) == ("d", "2024-08-31", 1)


def test_get_of_an_unknown_date_an_unknown_index_or_a_negative_index_is_none(two_days):
    assert two_days.get("2024-09-01", 0) is None
    assert two_days.get("2024-08-30", 2) is None
    assert two_days.get("2024-08-30", -1) is None
    assert two_days.get("2024-08-31", 1) is not None


@pytest.mark.parametrize("date", ["2024-8-30", "30.08.2024", "../history", "", "2024-08-30x"])
def test_get_of_a_malformed_date_is_none(two_days, date):
    assert two_days.get(date, 0) is None


# -- days ----------------------------------------------------------------------------------------


def test_days_lists_newest_date_and_newest_entry_first_by_default(two_days):
    assert shape(two_days.days()) == [("2024-08-31", ["d", "c"]), ("2024-08-30", ["b", "a"])]


def test_days_lists_oldest_first_when_asked(two_days):
    assert shape(two_days.days(newest_first=False)) == [
        ("2024-08-30", ["a", "b"]),
        ("2024-08-31", ["c", "d"]),
    ]


def test_days_limit_caps_the_number_of_entries_in_either_order(two_days):
    assert shape(two_days.days(limit=3)) == [("2024-08-31", ["d", "c"]), ("2024-08-30", ["b"])]
    assert shape(two_days.days(newest_first=False, limit=3)) == [
        ("2024-08-30", ["a", "b"]),
        ("2024-08-31", ["c"]),
    ]


def test_days_leave_deleted_entries_out(two_days):
    two_days.delete("2024-08-30", 1)

    assert shape(two_days.days()) == [("2024-08-31", ["d", "c"]), ("2024-08-30", ["a"])]


def test_days_of_an_empty_history_is_empty(store):
    assert store.days() == []


# -- page ----------------------------------------------------------------------------------------


def collect_pages(store: HistoryStore, limit: int) -> list[list[tuple[str, int]]]:
    """Every page from the first, following each page's cursor (bounded)."""
    pages, cursor = [], None
    for _ in range(100):
        page = store.page(limit, before=cursor)
        pages.append([(e.date, e.index) for day in page.days for e in day.entries])
        cursor = page.next_cursor
        if cursor is None:
            return pages
    raise AssertionError("the cursors never end")


def test_page_lists_newest_first_and_gives_the_cursor_of_the_rest(two_days):
    page = two_days.page(3)

    assert shape(page.days) == [("2024-08-31", ["d", "c"]), ("2024-08-30", ["b"])]
    assert page.next_cursor == "2024-08-30/1"
    rest = two_days.page(3, before=page.next_cursor)
    assert (shape(rest.days), rest.next_cursor) == ([("2024-08-30", ["a"])], None)
    assert shape(two_days.page(10, before="garbage").days) == shape(two_days.days())


def test_page_cursors_cover_every_entry_exactly_once_across_days(store, clock):
    for now, count in ((DAY_ONE, 3), (DAY_TWO, 2), (DAY_THREE, 4)):
        clock.now = now
        for n in range(count):
            make(store, f"{now.date()} #{n}")
    everything = [(e.date, e.index) for day in store.days() for e in day.entries]

    pages = collect_pages(store, 2)

    assert [len(p) for p in pages] == [2, 2, 2, 2, 1]
    assert [key for p in pages for key in p] == everything
    assert len(everything) == 9


def test_page_that_ends_exactly_at_the_last_entry_has_no_cursor(two_days):
    pages = collect_pages(two_days, 2)

    assert pages == [[("2024-08-31", 1), ("2024-08-31", 0)], [("2024-08-30", 1), ("2024-08-30", 0)]]


def test_page_hides_turns_that_have_follow_ups(store):
    root = make(store, "root")
    second = make(store, "second turn", parent=root)
    make(store, "alone")
    third = make(store, "third turn", parent=second)

    listed = [e.prompt for day in store.page(10).days for e in day.entries]

    assert listed == ["third turn", "alone"]
    assert [e.prompt for p in collect_pages(store, 1) for e in (store.get(*k) for k in p)] == listed
    assert third.root == root.address


def test_page_of_an_empty_history_is_empty_without_a_cursor(store):
    page = store.page(10)

    assert (page.days, page.next_cursor) == ([], None)


# -- images_page ---------------------------------------------------------------------------------


def test_images_page_lists_only_image_entries_with_an_image_file_newest_first(store, clock):
    make(store, "code entry")
    assert store.images_page(10) == ([], None)
    first = image(store, "first image")
    store.fail(store.begin("image", "failed image", "dall-e-3"), "refused")
    second = image(store, "second image")
    gone = image(store, "deleted image")
    store.delete(gone.date, gone.index)
    clock.now = DAY_TWO
    third = image(store, "third image")

    found, cursor = store.images_page(2)
    rest, end = store.images_page(2, before=cursor)

    assert prompts(found) == ["third image", "second image"]
    assert cursor == f"{second.date}/{second.index}"
    assert (prompts(rest), end) == (["first image"], None)
    assert found[0].image_file == f"{third.id}.png"
    assert rest[0].image_url == f"/images/{first.id}.png"


# -- search --------------------------------------------------------------------------------------


def test_search_is_case_insensitive(store):
    make(store, "Write a Fibonacci function")
    make(store, "Something else")

    for query in ("fibonacci", "FIBONACCI", "fIbOnAcCi"):
        assert prompts(store.search(query)) == ["Write a Fibonacci function"], query


def test_search_folds_non_ascii_case_as_python_casefold_does(store):
    # What both backends must agree on: str.casefold() maps ß to "ss".
    assert "STRASSE".casefold() == "Straße".casefold() == "strasse"
    make(store, "Die Straße entlang")
    make(store, "STRASSENBAHN fahren")
    make(store, "Ein Weg")

    assert prompts(store.search("STRASSE")) == ["STRASSENBAHN fahren", "Die Straße entlang"]
    assert prompts(store.search("straße")) == ["STRASSENBAHN fahren", "Die Straße entlang"]
    assert prompts(store.search("ÄPFEL")) == []


def test_search_finds_a_substring_of_the_prompt_or_of_a_code_answer(store):
    in_prompt = store.finish(store.begin("code", "Sort a list quickly", "m"), "plain answer")
    in_answer = store.finish(store.begin("code", "Another question", "m"), "use heapq.nsmallest here")
    make(store, "unrelated")

    assert prompts(store.search("a list qui")) == [in_prompt.prompt]
    assert prompts(store.search("heapq.nsmall")) == [in_answer.prompt]


def test_search_does_not_look_into_an_image_entrys_url(store):
    picture = image(store, "A lighthouse at dusk")

    assert store.search("images") == []
    assert store.search(picture.id[:12]) == []
    assert store.search(".png") == []
    assert prompts(store.search("lighthouse")) == ["A lighthouse at dusk"]


LITERAL_SEARCHES = {
    # query: (what it must find, what a LIKE or glob wildcard would find as well)
    "100%": ("a discount of 100% off", "a discount of 100 percent off"),
    "%": ("50% more", "fifty percent more"),
    "e_c": ("snake_case name", "snakeXcase name"),
    "_": ("under_score", "under score"),
    "\\": ("path C:\\temp", "path C:/temp"),
    ":\\t": ("path C:\\temp", "path C:temp"),
    "\\%": ("a literal \\% sign", "a literal % sign"),
}


def test_search_matches_percent_underscore_and_backslash_literally(store):
    for matching, not_matching in LITERAL_SEARCHES.values():
        make(store, matching)
        make(store, not_matching)

    found = {query: sorted(set(prompts(store.search(query)))) for query in LITERAL_SEARCHES}

    assert found == {
        "100%": ["a discount of 100% off"],
        "%": ["50% more", "a discount of 100% off", "a literal % sign", "a literal \\% sign"],
        "e_c": ["snake_case name"],
        "_": ["snake_case name", "under_score"],
        "\\": ["a literal \\% sign", "path C:\\temp"],
        ":\\t": ["path C:\\temp"],
        "\\%": ["a literal \\% sign"],
    }


def test_search_respects_the_limit_and_lists_newest_first(store, clock):
    for n in range(3):
        make(store, f"needle day one {n}")
    clock.now = DAY_TWO
    for n in range(2):
        make(store, f"needle day two {n}")
    make(store, "haystack")

    assert prompts(store.search("needle", limit=3)) == [
        "needle day two 1",
        "needle day two 0",
        "needle day one 2",
    ]
    assert len(store.search("needle")) == 5


def test_search_does_not_find_deleted_entries(store):
    kept = make(store, "secret plan A")
    gone = make(store, "secret plan B")
    store.delete(gone.date, gone.index)

    assert prompts(store.search("secret plan")) == [kept.prompt]
    assert store.search("plan B") == []


def test_search_for_an_empty_or_blank_query_finds_nothing(store):
    make(store, "a prompt with spaces")

    assert [store.search(query) for query in ("", " ", "   ", "\t\n ")] == [[], [], [], []]
    assert store.search(" spaces ") != []


# -- delete --------------------------------------------------------------------------------------


def test_delete_leaves_a_tombstone_without_content(store, reopen):
    entry = store.begin("image", "Delete me", "dall-e-3")
    store.finish(entry, f"/images/{entry.id}.png", image_file=f"{entry.id}.png", usage={"total_tokens": 9})

    deleted = store.delete(entry.date, entry.index)

    assert (deleted.prompt, deleted.image_file) == ("Delete me", f"{entry.id}.png")
    tomb = reopen().get(entry.date, entry.index)
    assert (tomb.id, tomb.deleted, tomb.prompt, tomb.response) == (entry.id, True, "", "")
    assert (tomb.error, tomb.image_file, tomb.usage) == (None, None, {})


def test_a_second_delete_and_a_delete_of_nothing_return_none(store):
    entry = make(store, "once")
    assert store.delete(entry.date, entry.index) is not None

    assert store.delete(entry.date, entry.index) is None
    assert [store.delete(d, i) for d, i in (("2024-08-30", 5), ("2024-09-09", 0), ("2024-08-30", -1))] == [
        None
    ] * 3
    assert store.delete("../history", 0) is None
    assert store.count_on("2024-08-30") == 1


def test_a_deleted_index_is_never_reused(store, reopen):
    make(store, "first")
    last = make(store, "last")
    store.delete(last.date, last.index)

    after = store.begin("code", "after delete", "m")
    after_restart = reopen().begin("code", "after restart", "m")

    assert (after.index, after_restart.index) == (2, 3)
    assert store.get(last.date, last.index).deleted


def test_delete_day_deletes_only_the_live_entries_of_the_date_and_returns_them(two_days):
    two_days.delete("2024-08-31", 0)

    deleted = two_days.delete_day("2024-08-31")

    assert prompts(deleted) == ["d"]
    assert two_days.get("2024-08-31", 1).deleted
    assert two_days.count_on("2024-08-31") == 2
    assert shape(two_days.days()) == [("2024-08-30", ["b", "a"])]
    assert sorted(prompts(two_days.delete_day("2024-08-30"))) == ["a", "b"]
    assert two_days.days() == [] and two_days.delete_day("2024-08-30") == []


def test_delete_day_of_an_unknown_or_malformed_date_returns_nothing(two_days):
    assert [two_days.delete_day(date) for date in ("2024-09-09", "not-a-date", "", "../history")] == [[]] * 4
    assert two_days.count() == 4


# -- conversations -------------------------------------------------------------------------------


@pytest.fixture
def thread(store: HistoryStore, clock: Clock) -> list[Entry]:
    """A conversation of three turns (the last on the next day), and an unrelated entry."""
    first = make(store, "turn one")
    make(store, "unrelated")
    second = make(store, "turn two", parent=first)
    clock.now = DAY_TWO
    third = make(store, "turn three", parent=second)
    return [first, second, third]


def test_a_follow_up_records_its_parent_root_and_turn(store, thread):
    first, second, third = thread

    assert (first.parent, first.root, first.turn) == (None, None, 1)
    assert (second.parent, second.root, second.turn) == (first.address, first.address, 2)
    assert (third.parent, third.root, third.turn) == (second.address, first.address, 3)
    assert store.get(third.date, third.index).root == Permalink("2024-08-30", 0)


def test_a_parent_counts_its_follow_ups(store, thread):
    first = thread[0]
    make(store, "a second branch", parent=first)

    assert [store.get(e.date, e.index).followups for e in thread] == [2, 1, 0]


def test_conversation_returns_every_live_turn_in_order_from_any_turn(store, thread):
    expected = ["turn one", "turn two", "turn three"]

    for turn in thread:
        assert prompts(store.conversation(turn)) == expected
    alone = store.get("2024-08-30", 1)
    assert store.conversation(alone) == [alone]


def test_chain_lists_the_turns_oldest_first_and_skips_deleted_ones(store, thread):
    _, second, third = thread
    assert prompts(store.chain(third)) == ["turn one", "turn two", "turn three"]

    store.delete(second.date, second.index)

    assert prompts(store.chain(store.get(third.date, third.index))) == ["turn one", "turn three"]
    assert prompts(store.conversation(third)) == ["turn one", "turn three"]


def test_deleting_a_middle_turn_keeps_the_thread_listed_exactly_once(store, thread):
    first, second, third = thread

    store.delete(second.date, second.index)

    assert store.get(first.date, first.index).followups == 1
    listed = [e.prompt for p in collect_pages(store, 1) for e in (store.get(*k) for k in p)]
    assert listed == ["turn three", "unrelated"]

    store.delete(third.date, third.index)

    assert store.get(first.date, first.index).followups == 0
    assert [e.prompt for day in store.page(10).days for e in day.entries] == ["unrelated", "turn one"]


# -- counts and dates ----------------------------------------------------------------------------


def test_count_leaves_deleted_entries_out_and_count_on_includes_them(two_days):
    two_days.delete("2024-08-30", 0)

    assert two_days.count() == 3
    assert (two_days.count_on("2024-08-30"), two_days.count_on("2024-08-31")) == (2, 2)
    assert two_days.count_on("2024-09-01") == 0
    assert two_days.count_on("30.08.2024") == 0


def test_dates_lists_every_date_with_entries_oldest_first(store, clock):
    assert store.dates() == []
    for now in (DAY_TWO, DAY_ONE, DAY_THREE):
        clock.now = now
        make(store, str(now))

    assert store.dates() == ["2024-08-30", "2024-08-31", "2024-09-01"]


# -- import and export ---------------------------------------------------------------------------


SEED = {
    "2024-08-29": [
        {"prompt": "Write hello world", "response": "```python\nprint('hello')\n```"},
        {"prompt": "A timeout", "response": "", "error": "The upstream timed out."},
    ],
    "2024-08-30": [{"prompt": "Sort a list", "response": "sorted(xs)"}],
}


def test_import_seed_adds_entries_after_the_existing_ones(store):
    existing = store.begin("code", "already here", "m")

    added = store.import_seed(SEED)

    assert added == (3, 0)
    assert store.get("2024-08-30", 0).id == existing.id
    imported = store.get("2024-08-30", 1)
    assert (imported.prompt, imported.response, imported.status, imported.model) == (
        "Sort a list",
        "sorted(xs)",
        "done",
        "imported",
    )
    assert (imported.kind, imported.created_at) == ("code", "2024-08-30T00:00:00")
    assert prompts(store.days(newest_first=False)[0].entries) == ["Write hello world", "A timeout"]
    assert store.begin("code", "after import", "m").index == 2


def test_import_seed_marks_rows_with_an_error_as_failed(store):
    store.import_seed(SEED)

    failed = store.get("2024-08-29", 1)
    assert (failed.status, failed.error, failed.prompt) == ("failed", "The upstream timed out.", "A timeout")
    assert store.get("2024-08-29", 0).error is None


def test_import_seed_twice_adds_nothing_the_second_time(store, reopen):
    store.import_seed(SEED)
    before = store.export_full()

    again = reopen().import_seed(SEED)

    assert again == (0, 3)
    assert store.export_full() == before
    assert store.count() == 3


BAD_SEEDS = {
    "a list": [],
    "a string": "2024-08-30",
    "a short date": {"2024-8-30": []},
    "an impossible date": {"2024-02-30": []},
    "rows not a list": {"2024-08-30": "not a list"},
    "a row without prompt": {"2024-08-30": [{"response": "no prompt"}]},
    "a number as prompt": {"2024-08-30": [{"prompt": 42, "response": "x"}]},
    "a list as response": {"2024-08-30": [{"prompt": "p", "response": ["x"]}]},
    "a bad second day": {"2024-08-29": [{"prompt": "fine", "response": "ok"}], "2024-08-30": ["a string"]},
}


def test_import_seed_rejects_bad_shapes_with_a_message_and_imports_nothing(store):
    messages = {}
    for name, data in BAD_SEEDS.items():
        with pytest.raises(ValueError) as raised:
            store.import_seed(data)
        messages[name] = str(raised.value)

    assert [name for name, message in messages.items() if len(message) < 10] == []
    assert "2024-8-30" in messages["a short date"] and "2024-02-30" in messages["an impossible date"]
    assert store.count() == 0
    assert store.dates() == []


def test_import_seed_maps_image_responses_through_image_file_for(store):
    local = uuid.uuid4().hex
    data = {
        "2024-08-30": [
            {"prompt": "A cat", "response": f"/images/{local}.png"},
            {"prompt": "A dog", "response": "https://example.com/generated/dog.png"},
            {"prompt": "Some code", "response": "print(1)"},
        ]
    }
    asked: list[str] = []

    def image_file_for(response: str) -> str | None:
        asked.append(response)
        return f"{local}.png" if response.startswith("/images/") else None

    store.import_seed(data, image_file_for)

    assert asked == [f"/images/{local}.png", "https://example.com/generated/dog.png"]
    got = [store.get("2024-08-30", n) for n in range(3)]
    assert [(e.kind, e.image_file) for e in got] == [
        ("image", f"{local}.png"),
        ("image", None),
        ("code", None),
    ]
    assert got[0].image_url == f"/images/{local}.png"
    assert prompts(store.images_page(10)[0]) == ["A cat"]


@pytest.fixture
def populated(store: HistoryStore, clock: Clock) -> HistoryStore:
    """Two days of every kind of entry: done, failed, stopped, pending, image, deleted."""
    make(store, "Write a prime test")
    store.fail(store.begin("code", "Broken", "m"), "The upstream had a server error (500).", partial="def")
    store.stop(store.begin("code", "Stopped", "m"), "half")
    gone = make(store, "Deleted")
    store.delete(gone.date, gone.index)
    clock.now = DAY_TWO
    image(store, "A lighthouse")
    store.begin("code", "Still pending", "m")
    return store


def test_export_seed_gives_the_seed_shape_oldest_first_without_deleted_entries(populated):
    picture = populated.get("2024-08-31", 0)

    assert populated.export_seed() == {
        "2024-08-30": [
            {"prompt": "Write a prime test", "response": "answer to Write a prime test"},
            {"prompt": "Broken", "response": "def", "error": "The upstream had a server error (500)."},
            {"prompt": "Stopped", "response": "half"},
        ],
        "2024-08-31": [
            {"prompt": "A lighthouse", "response": f"/images/{picture.id}.png"},
            {"prompt": "Still pending", "response": "", "error": "The answer was not finished."},
        ],
    }


def test_export_seed_round_trips_through_the_other_kind_of_store_and_back(populated, stores, backend):
    exported = populated.export_seed()
    other = stores.open(other_kind(backend), stores.fresh_place(other_kind(backend)))

    assert other.import_seed(exported) == (5, 0)
    assert other.export_seed() == exported

    back = stores.open(backend, stores.fresh_place(backend))
    assert back.import_seed(other.export_seed()) == (5, 0)
    assert back.export_seed() == exported


def test_export_full_gives_every_live_entry_with_all_its_fields_oldest_first(populated):
    full = populated.export_full()

    assert [row["prompt"] for row in full] == [
        "Write a prime test",
        "Broken",
        "Stopped",
        "A lighthouse",
        "Still pending",
    ]
    assert all(set(row) == ENTRY_FIELDS for row in full)
    assert full == [populated.get(row["date"], row["index"]).to_dict() for row in full]
    assert [(row["date"], row["index"], row["status"]) for row in full] == [
        ("2024-08-30", 0, "done"),
        ("2024-08-30", 1, "failed"),
        ("2024-08-30", 2, "stopped"),
        ("2024-08-31", 0, "done"),
        ("2024-08-31", 1, "pending"),
    ]


def test_a_pending_entry_exports_with_the_not_finished_error(store):
    store.begin("code", "Never answered", "m")

    assert store.export_seed() == {
        "2024-08-30": [{"prompt": "Never answered", "response": "", "error": "The answer was not finished."}]
    }
    assert store.export_full()[0]["status"] == "pending"


# -- stream runs ---------------------------------------------------------------------------------


def test_claim_run_is_true_exactly_once(store, reopen):
    entry_id = uuid.uuid4().hex

    assert store.claims.claim(entry_id) is True
    assert store.claims.claim(entry_id) is False
    assert reopen().claims.claim(entry_id) is False
    assert store.claims.claim(uuid.uuid4().hex) is True


def test_run_claimed_for_is_none_before_a_claim_and_a_small_age_after(store):
    entry_id = uuid.uuid4().hex
    assert store.claims.claimed_for(entry_id) is None

    store.claims.claim(entry_id)

    age = store.claims.claimed_for(entry_id)
    assert isinstance(age, float)
    assert 0 <= age < 5


def test_request_stop_after_a_claim_is_seen_by_every_store(store, reopen):
    entry_id = uuid.uuid4().hex
    store.claims.claim(entry_id)
    assert store.claims.stop_requested(entry_id) is False

    reopen().claims.request_stop(entry_id)

    assert store.claims.stop_requested(entry_id) is True


def test_a_claim_after_a_stop_request_still_succeeds_once(store):
    entry_id = uuid.uuid4().hex

    store.claims.request_stop(entry_id)

    assert store.claims.stop_requested(entry_id) is True
    assert store.claims.claimed_for(entry_id) is None
    assert store.claims.claim(entry_id) is True
    assert store.claims.claim(entry_id) is False
    assert store.claims.stop_requested(entry_id) is True


def test_release_run_clears_the_claim_and_the_stop_request(store):
    entry_id = uuid.uuid4().hex
    store.claims.claim(entry_id)
    store.claims.request_stop(entry_id)

    store.claims.release(entry_id)

    assert store.claims.claimed_for(entry_id) is None
    assert store.claims.stop_requested(entry_id) is False
    assert store.claims.claim(entry_id) is True
    store.claims.release(uuid.uuid4().hex)  # nothing to release: no error


def test_ready_says_the_store_takes_writes(store):
    ok, why = store.ready()

    assert ok is True
    assert isinstance(why, str) and why


# -- concurrency ---------------------------------------------------------------------------------


def begin_and_finish_from_threads(
    pool: list[HistoryStore], threads_n: int = 8, per_thread: int = 25
) -> list[Entry]:
    """Each thread begins and finishes `per_thread` entries on its store of `pool`; returns them."""
    barrier = threading.Barrier(threads_n, timeout=30)
    created: list[Entry] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def work(worker: int) -> None:
        mine = pool[worker % len(pool)]
        try:
            barrier.wait()
            for n in range(per_thread):
                entry = mine.begin("code", f"thread {worker} prompt {n}", "m")
                mine.finish(entry, f"answer {worker}/{n}")
                with guard:
                    created.append(entry)
        except BaseException as e:  # collected and asserted below
            with guard:
                errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [t for t in threads if t.is_alive()] == []
    assert errors == []
    return created


def assert_all_200_stored(created: list[Entry], full: list[dict[str, Any]]) -> None:
    assert sorted(e.index for e in created) == list(range(200))
    assert len(full) == 200
    assert sorted(row["index"] for row in full) == list(range(200))
    assert {row["id"] for row in full} == {e.id for e in created}
    assert all(row["status"] == "done" and row["response"].startswith("answer ") for row in full)


def test_concurrent_begin_and_finish_from_eight_threads_lose_nothing(store, reopen):
    created = begin_and_finish_from_threads([store])

    assert_all_200_stored(created, reopen().export_full())


# -- PostgreSQL only -----------------------------------------------------------------------------

SECRET = "pw-MUST-NOT-LEAK-7f3a9c"


def test_postgresql_two_servers_writing_at_once_lose_nothing(pg_url):
    servers = [SQLChatLog(pg_url, clock=Clock(DAY_ONE)) for _ in range(2)]
    try:
        for server in servers:
            assert server.ensure_schema()

        created = begin_and_finish_from_threads(servers)

        assert_all_200_stored(created, servers[1].export_full())
        assert {e.date for e in created} == {"2024-08-30"}
    finally:
        for server in servers:
            server.close()


def test_postgresql_store_on_a_closed_port_is_unavailable_without_leaking_the_password(caplog):
    url = f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/history"
    store = SQLChatLog(url, clock=Clock(DAY_ONE), connect_timeout=2)
    raised: list[BaseException] = []
    try:
        with caplog.at_level(logging.DEBUG):
            for attempt in (
                lambda: store.begin("code", "lost?", "m"),
                lambda: store.get("2024-08-30", 0),
            ):
                with pytest.raises(HistoryUnavailable) as unavailable:
                    attempt()
                raised.append(unavailable.value)
            ready = store.ready()
    finally:
        store.close()

    assert ready[0] is False
    assert SECRET not in ready[1]
    for error in raised:
        assert SECRET not in "".join(traceback.format_exception(error))
    assert caplog.records, "the failure is logged"
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in (record.exc_text or "")
    assert SECRET not in caplog.text


def test_postgresql_two_servers_migrating_the_same_empty_database_at_once_both_succeed(pg_url):
    servers = [SQLChatLog(pg_url, clock=Clock(DAY_ONE)) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def migrate(server: SQLChatLog) -> None:
        try:
            barrier.wait()
            server.migrate()
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    try:
        threads = [threading.Thread(target=migrate, args=(s,)) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

        assert [t for t in threads if t.is_alive()] == [], "a migration is stuck"
        assert errors == []
        first = servers[0].begin("code", "from server one", "m")
        second = servers[1].begin("code", "from server two", "m")
        assert (first.index, second.index) == (0, 1)
        with servers[0].engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        for server in servers:
            server.close()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@db.example:5432/chat",
        "postgres://app:pw@db.example:5432/chat",
        "postgresql+psycopg://app:pw@db.example:5432/chat",
    ],
)
def test_postgresql_sqlalchemy_url_accepts_postgres_urls_and_picks_psycopg(url):
    assert sqlalchemy_url(url) == "postgresql+psycopg://app:pw@db.example:5432/chat"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://app:pw@db.example/chat",
        "sqlite:///history.db",
        "http://db.example/chat",
        "postgresql+asyncpg://app:pw@db.example/chat",
        "db.example:5432/chat",
        "",
    ],
)
def test_postgresql_sqlalchemy_url_rejects_other_urls(url):
    with pytest.raises(ValueError) as raised:
        sqlalchemy_url(url)

    assert "postgresql://" in str(raised.value)
    assert ":pw@" not in str(raised.value)


# -- what PostgreSQL text cannot hold, and indexes beyond its integer ------------------------------


def test_an_answer_with_nul_characters_is_stored(store, reopen):
    # Model output is untrusted and may contain NUL, which PostgreSQL text cannot hold; the
    # answer is kept (NUL shown as U+FFFD there), never lost to a database error.
    entry = store.begin("code", "nul\x00prompt", "m")
    store.finish(entry, "a\x00b", usage={"total_tokens": 3}, options={"x\x00": "y\x00"})

    stored = reopen().get(entry.date, entry.index)
    assert stored.status == "done"
    assert stored.response in ("a\x00b", "a\ufffdb")
    assert stored.prompt in ("nul\x00prompt", "nul\ufffdprompt")
    assert [e.id for e in store.search("prompt")] == [entry.id]


def test_an_unpaired_surrogate_in_an_answer_is_stored(store, reopen):
    entry = store.begin("code", "surrogate", "m")
    store.finish(entry, "x\ud800y")

    assert reopen().get(entry.date, entry.index).response in ("x\ud800y", "x?y")


def test_indexes_beyond_any_stored_one_are_simply_not_there(store):
    make(store, "only")
    huge = 3_000_000_000

    assert store.get("2024-08-30", huge) is None
    assert store.delete("2024-08-30", huge) is None
    assert prompts([e for day in store.page(10, before=f"2024-08-30/{huge}").days for e in day.entries]) == [
        "only"
    ]
    assert store.images_page(10, before=f"2024-08-30/{huge}") == ([], None)


def test_concurrent_deletes_up_a_conversation_keep_it_listed_exactly_right(store):
    # R <- A <- P: deleting A and P at once must leave R listed (no live follow-up left).
    for round_ in range(5):
        root = make(store, f"root {round_}")
        middle = make(store, f"middle {round_}", parent=root)
        last = make(store, f"last {round_}", parent=middle)
        barrier = threading.Barrier(2)

        def delete(entry: Entry, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(5)
            store.delete(entry.date, entry.index)

        threads = [threading.Thread(target=delete, args=(e,)) for e in (middle, last)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert store.get(root.date, root.index).followups == 0, round_
        listed = prompts([e for day in store.page(100).days for e in day.entries])
        assert f"root {round_}" in listed, (round_, listed)


# -- PostgreSQL only: a full pool, a schema newer than the code -----------------------------------


def test_postgresql_a_full_connection_pool_is_unavailable_not_a_crash(pg_url):
    store = SQLChatLog(pg_url, pool_size=1, max_overflow=0, connect_timeout=1)
    try:
        assert store.ensure_schema()
        with store.engine.connect(), pytest.raises(HistoryUnavailable):  # the only connection is taken
            store.get("2024-08-30", 0)
    finally:
        store.close()


def test_postgresql_a_schema_newer_than_the_code_keeps_the_server_working(pg_url, caplog):
    first = SQLChatLog(pg_url)
    try:
        assert first.ensure_schema()
        entry = first.begin("code", "before the upgrade", "m")
        with first.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    finally:
        first.close()

    older = SQLChatLog(pg_url)
    try:
        with caplog.at_level(logging.WARNING, logger="app.history"):
            assert older.ensure_schema()
        assert "newer than this version" in caplog.text
        assert older.get(entry.date, entry.index).prompt == "before the upgrade"
    finally:
        older.close()


# -- pending entries (for the reaper of interrupted answers) ---------------------------------------


def test_pending_lists_the_unanswered_entries_of_every_day_and_nothing_else(store, clock, reopen):
    waiting = store.begin("code", "still waiting", "m")
    store.finish(store.begin("code", "answered", "m"), "answer")
    store.fail(store.begin("code", "failed", "m"), "error")
    store.delete(*store.begin("code", "deleted while waiting", "m").address)
    clock.now = DAY_TWO
    later = store.begin("image", "waiting on day two", "m")

    assert sorted((e.date, e.index) for e in reopen().pending()) == sorted(
        [(waiting.date, waiting.index), (later.date, later.index)]
    )


def test_pending_is_empty_once_every_answer_is_in(store, reopen):
    entry = store.begin("code", "prompt", "m")
    store.stop(entry, "partial")

    assert store.pending() == []
    assert reopen().pending() == []
