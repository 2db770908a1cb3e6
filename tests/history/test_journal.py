"""The journal under the TinyDB history (app.history.tinydb: journal, days): what a write
costs on disk, torn and damaged records, checkpoints (and crashes in the middle of them), readers
in other processes, durability before the answer, group commit, upgrading an old DATA_DIR, and
the word index that lets a fresh server search without reading every day."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from app.files import write_temp
from app.history import ChatLog
from app.history.query import parse_query
from app.history.tinydb import checkpoints
from app.history.tinydb import days as days_module
from app.history.tinydb import reader as day_reader
from app.history.tinydb.journal import encode_record

from ..support.clock import CEST, Clock
from ..support.disk import journal_records, stored_entries

DAY = datetime(2024, 8, 30, 9, 15, tzinfo=CEST)
DATE = "2024-08-30"


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY)


@pytest.fixture
def store(data_dir: Path, clock: Clock) -> ChatLog:
    return ChatLog(data_dir, clock=clock)


def history(data_dir: Path) -> Path:
    return data_dir / "history"


def journals(data_dir: Path, date: str = DATE) -> list[Path]:
    return sorted(history(data_dir).glob(f"{date}.*.journal"))


def doc(data_dir: Path, date: str = DATE) -> Path:
    return history(data_dir) / f"{date}.json"


def answered(store: ChatLog, prompt: str) -> object:
    return store.finish(store.begin("code", prompt, "m"), f"answer to {prompt}")


# -- what a write costs -------------------------------------------------------------------------


def test_a_write_appends_to_the_journal_and_leaves_the_day_document_alone(store, data_dir):
    answered(store, "first")
    before = doc(data_dir).stat()
    size = journals(data_dir)[0].stat().st_size

    entry = store.begin("code", "second", "m")
    store.finish(entry, "answer")

    after = doc(data_dir).stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert [
        r.get("put", {}).get("prompt") or r.get("c", {}).get("response")
        for r in journal_records(journals(data_dir)[0])
    ][-2:] == [
        "second",
        "answer",
    ]
    assert journals(data_dir)[0].stat().st_size > size


def test_the_bytes_a_write_appends_do_not_grow_with_the_day(store, data_dir):
    def appended_by_one_answer() -> int:
        size = journals(data_dir)[-1].stat().st_size
        answered(store, "the same prompt")
        return journals(data_dir)[-1].stat().st_size - size

    answered(store, "warm up")
    on_an_empty_day = appended_by_one_answer()
    for n in range(300):
        answered(store, f"filler {n}")
    store.checkpoint(DATE)

    on_a_full_day = appended_by_one_answer()

    assert len(store.dates()) == 1 and store.count() == 303
    assert on_a_full_day <= on_an_empty_day + 8  # the index digits grow, nothing else


# -- durability ---------------------------------------------------------------------------------


def test_the_answer_is_synced_before_finish_returns_and_the_pending_prompt_is_not(store, monkeypatch):
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])

    entry = store.begin("code", "prompt", "m")
    assert synced == []
    store.finish(entry, "answer")

    assert len(synced) == 1


def test_concurrent_answers_share_their_fdatasync_calls(store, monkeypatch):
    entries = [store.begin("code", f"prompt {n}", "m") for n in range(8)]
    calls: list[int] = []
    first_sync_started = threading.Event()
    release = threading.Event()
    real = os.fdatasync

    def slow_sync(fd: int) -> None:
        calls.append(fd)
        first_sync_started.set()
        release.wait(timeout=10)  # every other writer appends while this sync is "on the disk"
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    first = threading.Thread(target=store.finish, args=(entries[0], "answer 0"))
    first.start()
    assert first_sync_started.wait(timeout=10)
    others = [threading.Thread(target=store.finish, args=(e, f"answer {e.index}")) for e in entries[1:]]
    for t in others:
        t.start()
    journal = next(iter(store.paths.root.glob(f"{DATE}.*.journal")))
    for _ in range(1000):  # until all seven answers are appended (then they wait for the sync)
        if len(journal_records(journal)) == 16:
            break
        threading.Event().wait(0.01)
    release.set()
    for t in [first, *others]:
        t.join(timeout=30)

    assert not any(t.is_alive() for t in [first, *others])
    assert [store.get(DATE, n).status for n in range(8)] == ["done"] * 8
    # One sync for the first answer, then one (not seven) for the seven that waited behind it.
    assert len(calls) == 2


def test_a_killed_writer_leaves_its_pending_prompt_for_the_next_process(data_dir, clock):
    ChatLog(data_dir, clock=clock).begin("code", "written before the crash", "m")

    reopened = ChatLog(data_dir, clock=clock)  # a new process: nothing cached

    assert reopened.get(DATE, 0).prompt == "written before the crash"
    assert reopened.get(DATE, 0).status == "pending"


# -- torn and damaged records -------------------------------------------------------------------


def test_a_torn_last_record_is_ignored_and_cut_off_before_the_next_append(data_dir, clock):
    store = ChatLog(data_dir, clock=clock)
    answered(store, "kept")
    journal = journals(data_dir)[0]
    torn = encode_record({"put": {"index": 9, "id": "x" * 32, "prompt": "torn", "date": DATE}})[0][:-20]
    with journal.open("ab") as fh:
        fh.write(torn)  # a power cut in the middle of an append

    reopened = ChatLog(data_dir, clock=clock)
    assert [e.prompt for d in reopened.days() for e in d.entries] == ["kept"]
    entry = reopened.begin("code", "after the tear", "m")

    assert entry.index == 1
    assert [r["put"]["prompt"] for r in journal_records(journal) if "put" in r] == ["kept", "after the tear"]
    assert not journal.read_bytes().count(b"torn")
    assert [e.prompt for d in ChatLog(data_dir, clock=clock).days() for e in d.entries] == [
        "after the tear",
        "kept",
    ]


def test_a_damaged_record_is_skipped_and_the_records_after_it_are_kept(data_dir, clock, caplog):
    store = ChatLog(data_dir, clock=clock)
    for prompt in ("one", "two", "three"):
        store.begin("code", prompt, "m")
    journal = journals(data_dir)[0]
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"two"', b'"TWO"')  # a flipped byte: the checksum no longer fits
    journal.write_bytes(b"".join(lines))

    with caplog.at_level("ERROR", logger="app.history"):
        prompts = [e.prompt for d in ChatLog(data_dir, clock=clock).days() for e in d.entries]

    assert prompts == ["three", "one"]
    assert "damaged" in caplog.text and journal.name in caplog.text


# -- checkpoints --------------------------------------------------------------------------------


def test_a_checkpoint_folds_the_journal_into_the_day_document(store, data_dir):
    for n in range(3):
        answered(store, f"prompt {n}")

    assert store.checkpoint(DATE) is True

    document = json.loads(doc(data_dir).read_text(encoding="utf-8"))
    assert [document["entries"][str(n + 1)]["response"] for n in range(3)] == [
        f"answer to prompt {n}" for n in range(3)
    ]
    assert [p.name for p in journals(data_dir)] == [f"{DATE}.2.journal"]
    assert journals(data_dir)[0].stat().st_size == 0
    assert [e.response for d in ChatLog(data_dir).days() for e in d.entries] == [
        f"answer to prompt {n}" for n in (2, 1, 0)
    ]


def test_writes_after_a_checkpoint_go_to_the_next_journal_and_are_read_by_everyone(store, data_dir, clock):
    answered(store, "before")
    other = ChatLog(data_dir, clock=clock)  # another process, which has read the day already
    assert other.get(DATE, 0).prompt == "before"
    store.checkpoint(DATE)

    answered(store, "after")

    assert [r["put"]["prompt"] for r in journal_records(journals(data_dir)[-1]) if "put" in r] == ["after"]
    assert [e.prompt for d in other.days() for e in d.entries] == ["after", "before"]


def test_a_checkpoint_with_nothing_to_fold_changes_nothing(store, data_dir):
    answered(store, "one")
    store.checkpoint(DATE)
    before = doc(data_dir).stat().st_ino

    assert store.checkpoint(DATE) is False
    assert doc(data_dir).stat().st_ino == before


def test_a_writer_is_not_held_up_while_a_checkpoint_writes_the_day_document(store, data_dir, monkeypatch):
    for n in range(5):
        answered(store, f"prompt {n}")
    writing = threading.Event()
    finish_writing = threading.Event()

    def slow_write_temp(path, data, **kw):
        writing.set()
        finish_writing.wait(timeout=30)  # the document of a very busy day takes its time
        return write_temp(path, data, **kw)

    monkeypatch.setattr(checkpoints, "write_temp", slow_write_temp)
    folding = threading.Thread(target=store.checkpoint, args=(DATE,))
    folding.start()
    assert writing.wait(timeout=10)

    entry = store.begin("code", "while folding", "m")  # would wait for the fold if it held the lock
    store.finish(entry, "answered while folding")

    finish_writing.set()
    folding.join(timeout=30)
    assert not folding.is_alive()
    assert store.get(DATE, 5).response == "answered while folding"
    assert ChatLog(data_dir).get(DATE, 5).response == "answered while folding"


def test_a_checkpoint_waits_for_an_answer_being_synced_and_the_answer_is_kept(store, data_dir, monkeypatch):
    # A checkpoint closes the journal it folds. An answer's fdatasync of that journal runs outside
    # the lock, so the checkpoint may come while it is on the disk: the close must wait for it,
    # and the answer must neither fail nor be lost.
    entry = store.begin("code", "being synced", "m")
    syncing = threading.Event()
    release = threading.Event()
    real = os.fdatasync

    def slow_sync(fd: int) -> None:
        syncing.set()
        release.wait(timeout=10)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    failures: list[BaseException] = []

    def finish() -> None:
        try:
            store.finish(entry, "kept")
        except BaseException as error:  # the test reports it
            failures.append(error)

    answering = threading.Thread(target=finish)
    answering.start()
    assert syncing.wait(timeout=10)
    folding = threading.Thread(target=store.checkpoint, args=(DATE,))
    folding.start()
    folding.join(timeout=0.3)
    assert folding.is_alive()  # the checkpoint waits for the sync under way
    release.set()
    answering.join(timeout=30)
    folding.join(timeout=30)

    assert not answering.is_alive() and not folding.is_alive()
    assert failures == []
    assert store.get(DATE, 0).response == "kept"
    assert ChatLog(data_dir).get(DATE, 0).response == "kept"


def _crash_checkpoint_after(monkeypatch, step: str) -> type[BaseException]:
    """Make the next checkpoint stop dead after `step`, as a kill -9 would."""

    class Killed(BaseException):
        pass

    if step == "switch":
        monkeypatch.setattr(checkpoints, "write_temp", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    else:  # the new document is in place, the folded journal not yet removed
        real_unlink = Path.unlink

        def unlink(self, missing_ok=False):
            if self.name.endswith(".journal"):
                raise Killed()
            return real_unlink(self, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", unlink)
    return Killed


@pytest.mark.parametrize("step", ["switch", "rename"])
def test_a_checkpoint_killed_half_way_loses_and_doubles_nothing(data_dir, clock, monkeypatch, step):
    store = ChatLog(data_dir, clock=clock)
    for n in range(4):
        answered(store, f"prompt {n}")
    followed = store.begin("code", "a follow-up", "m", parent=store.get(DATE, 0))
    killed = _crash_checkpoint_after(monkeypatch, step)

    with pytest.raises(killed):
        store.checkpoint(DATE)
    monkeypatch.undo()

    reopened = ChatLog(data_dir, clock=clock)  # the next process
    assert [(e.index, e.prompt) for d in reopened.days() for e in d.entries] == [
        (4, "a follow-up"),
        *[(n, f"prompt {n}") for n in (3, 2, 1, 0)],
    ]
    assert reopened.get(DATE, 0).followups == 1  # a counter applied twice would say 2
    assert reopened.begin("code", "next", "m").index == followed.index + 1
    reopened.checkpoint(DATE)
    assert len(stored_entries(data_dir)) == 6
    # Whatever the crash left is tidied up: one empty journal, the next to append to.
    assert [(p.name, p.stat().st_size) for p in journals(data_dir)] == [(f"{DATE}.3.journal", 0)]


def test_every_json_file_is_complete_json_through_writes_and_checkpoints(store, data_dir):
    for n in range(20):
        answered(store, f"prompt {n}")
        if n % 7 == 0:
            store.checkpoint(DATE)
        for path in history(data_dir).glob("*.json"):
            assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)


def test_a_journal_past_its_size_limit_is_folded(data_dir, clock):
    store = ChatLog(data_dir, clock=clock, checkpoint_bytes=4_000)

    for n in range(30):
        answered(store, f"prompt {n} " + "x" * 100)

    assert all(p.stat().st_size < 4_000 + 1_000 for p in journals(data_dir))
    assert len(json.loads(doc(data_dir).read_text(encoding="utf-8"))["entries"]) >= 20
    assert store.count() == 30


def test_the_first_write_of_a_new_day_folds_the_day_before(data_dir, clock):
    store = ChatLog(data_dir, clock=clock)
    answered(store, "yesterday")
    clock.now = DAY + timedelta(days=1)

    answered(store, "today")

    assert json.loads(doc(data_dir).read_text(encoding="utf-8"))["entries"]["1"]["prompt"] == "yesterday"
    assert journals(data_dir)[0].stat().st_size == 0


def test_startup_maintenance_folds_what_a_dead_server_left_in_the_journals(data_dir, clock):
    answered(ChatLog(data_dir, clock=clock), "left in the journal")

    ChatLog(data_dir, clock=clock).maintain(startup=True)

    document = json.loads(doc(data_dir).read_text(encoding="utf-8"))
    assert document["entries"]["1"]["response"] == "answer to left in the journal"
    assert all(p.stat().st_size == 0 for p in journals(data_dir))


# -- several processes --------------------------------------------------------------------------


def test_a_reader_catches_up_by_reading_only_what_was_appended(data_dir, clock, monkeypatch):
    writer = ChatLog(data_dir, clock=clock)
    for n in range(50):
        answered(writer, f"prompt {n}")
    writer.checkpoint(DATE)
    reader = ChatLog(data_dir, clock=clock)
    assert reader.count() == 50
    parsed: list[Path] = []
    real = days_module.parse_day_file
    monkeypatch.setattr(day_reader, "parse_day_file", lambda p: (parsed.append(p), real(p))[1])

    answered(writer, "new")

    assert [e.prompt for e in reader.days(limit=1)[0].entries] == ["new"]
    assert parsed == []  # the day document was not read again: only the journal's new bytes


def test_a_reader_takes_in_another_process_checkpoint_without_rereading_the_day(data_dir, clock, monkeypatch):
    writer = ChatLog(data_dir, clock=clock)
    for n in range(10):
        answered(writer, f"prompt {n}")
    reader = ChatLog(data_dir, clock=clock)
    assert reader.count() == 10
    parsed: list[Path] = []
    real = days_module.parse_day_file
    monkeypatch.setattr(day_reader, "parse_day_file", lambda p: (parsed.append(p), real(p))[1])

    writer.checkpoint(DATE)
    answered(writer, "after the fold")

    assert reader.count() == 11
    assert parsed == []  # the new document holds exactly what the reader had: it moved onto it


# -- upgrading a DATA_DIR from before journals ---------------------------------------------------


def _old_day_file(data_dir: Path, date: str, prompts: list[str]) -> None:
    """A day document as versions before the journal wrote it: the entries table alone."""
    table = {
        str(n + 1): {
            "id": f"{n:032x}",
            "date": date,
            "index": n,
            "created_at": f"{date}T10:00:00+02:00",
            "kind": "code",
            "prompt": prompt,
            "response": f"old answer {n}",
            "model": "m",
            "status": "done",
        }
        for n, prompt in enumerate(prompts)
    }
    history(data_dir).mkdir(parents=True, exist_ok=True)
    doc(data_dir, date).write_text(json.dumps({"entries": table}), encoding="utf-8")


def test_an_old_data_dir_is_read_and_written_in_place_with_no_step_by_hand(data_dir, clock):
    _old_day_file(data_dir, DATE, ["old one", "old two"])
    store = ChatLog(data_dir, clock=clock)

    entry = store.begin("code", "new", "m")
    store.finish(entry, "new answer")
    store.maintain(startup=True)

    assert entry.index == 2
    assert [(e.index, e.prompt) for d in ChatLog(data_dir).days() for e in d.entries] == [
        (2, "new"),
        (1, "old two"),
        (0, "old one"),
    ]
    document = json.loads(doc(data_dir).read_text(encoding="utf-8"))
    assert set(document) == {"_journal", "entries"}
    assert document["entries"]["1"]["prompt"] == "old one"


def test_maintenance_indexes_old_day_documents_for_search(data_dir, clock):
    _old_day_file(data_dir, "2024-01-01", ["an unusual zebra prompt"])
    ChatLog(data_dir, clock=clock).maintain()

    index = (history(data_dir) / "2024-01-01.idx").read_bytes()

    assert b"zebra" in index


# -- search from a cold start -------------------------------------------------------------------


@pytest.fixture
def month(data_dir: Path) -> Path:
    """Thirty folded days of history; a rare word on one of them, a common one on all."""
    for day in range(1, 31):
        store = ChatLog(data_dir, clock=Clock(datetime(2024, 6, day, 12, tzinfo=CEST)))
        for n in range(5):
            rare = " parse_rows_quokka " if (day, n) == (17, 3) else ""
            answered(store, f"day {day} prompt {n}: sort a list{rare}")
        store.checkpoint(f"2024-06-{day:02d}")
    return data_dir


def _count_day_reads(monkeypatch) -> list[Path]:
    parsed: list[Path] = []
    real = days_module.parse_day_file
    monkeypatch.setattr(day_reader, "parse_day_file", lambda p: (parsed.append(p), real(p))[1])
    return parsed


def _count_document_reads(monkeypatch) -> list[str]:
    read: list[str] = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: (read.append(p.name), real(p))[1])
    return read


def test_a_fresh_server_reads_only_the_days_that_can_hold_a_rare_word(month, monkeypatch):
    parsed = _count_day_reads(monkeypatch)
    read = _count_document_reads(monkeypatch)

    found = ChatLog(month).search("PARSE_ROWS_quokka")

    assert [(e.date, e.index) for e in found] == [("2024-06-17", 3)]
    assert parsed == []  # the hit is decoded from its place in its day's document, alone
    assert [name for name in read if name.endswith(".json")] == ["2024-06-17.json"]


def test_an_infix_of_a_word_is_still_found_through_the_index(month, monkeypatch):
    parsed = _count_day_reads(monkeypatch)
    read = _count_document_reads(monkeypatch)

    found = ChatLog(month).search("rows_quok")

    assert [(e.date, e.index) for e in found] == [("2024-06-17", 3)]
    assert parsed == [] and [name for name in read if name.endswith(".json")] == ["2024-06-17.json"]


def test_a_search_in_a_day_this_process_has_read_uses_what_it_holds(month, monkeypatch):
    store = ChatLog(month)
    store.get("2024-06-17", 0)
    read = _count_document_reads(monkeypatch)

    found = store.search("quokka")

    assert [(e.date, e.index) for e in found] == [("2024-06-17", 3)]
    assert [name for name in read if name.endswith(".json")] == []


@pytest.mark.parametrize(
    "query",
    [
        *("sort a list", "prompt 4: sort", "day 3 ", ":", "rt a l", "zzz-nothing", '"sort a list"'),
        *("LIST sort 4", '"prompt 4"', "quokka kind:code", "sort kind:image"),
        "day 1 after:2024-06-20 before:2024-06-25",
    ],
)
def test_search_through_the_index_finds_what_a_full_scan_finds(month, query):
    def scan(store: ChatLog) -> list[tuple[str, int]]:
        parsed = parse_query(query)
        scored = [(parsed.rank_raw(raw), raw["date"], raw["index"]) for raw in store.iter_entries()]
        ranked = sorted(((s, d, i) for s, d, i in scored if s is not None), reverse=True)
        return [(d, i) for _, d, i in ranked][:100]

    store = ChatLog(month)

    assert [(e.date, e.index) for e in store.search(query)] == scan(store)


def test_an_index_that_no_longer_describes_its_day_is_not_trusted(month):
    path = month / "history" / "2024-06-05.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["entries"]["1"]["prompt"] = "edited by hand: a platypus"
    path.write_text(json.dumps(document), encoding="utf-8")

    found = ChatLog(month).search("platypus")

    assert [(e.date, e.index) for e in found] == [("2024-06-05", 0)]


def test_a_deleted_entrys_words_leave_the_index(month):
    store = ChatLog(month)
    assert store.delete("2024-06-17", 3) is not None

    assert b"quokka" not in (month / "history" / "2024-06-17.idx").read_bytes()
    assert ChatLog(month).search("quokka") == []
