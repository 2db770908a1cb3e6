"""What is particular to the TinyDB history (app.history.ChatLog) on real files: what is on
disk when, atomic writes, damaged files, several processes. The behaviour every backend shares
is tested once for both in tests/history/test_store_contract.py."""

from __future__ import annotations

import json
import multiprocessing
import os
from datetime import datetime
from pathlib import Path

import pytest

from app.files import atomic_write as atomic_write_text
from app.history import ChatLog, HistoryCorrupt

from ..support.clock import CEST, Clock
from ..support.disk import read_history, stored_entries
from ..support.writers import write_entries

DAY_ONE = datetime(2024, 8, 30, 9, 15, tzinfo=CEST)
DAY_TWO = datetime(2024, 8, 31, 10, 45, tzinfo=CEST)


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY_ONE)


@pytest.fixture
def chatlog(data_dir: Path, clock: Clock) -> ChatLog:
    return ChatLog(data_dir, clock=clock)


def tmp_files(directory: Path) -> list[str]:
    return [str(path) for path in directory.rglob("*.tmp")]


# -- writes ------------------------------------------------------------------------------------


def test_begin_writes_the_pending_prompt_to_disk_before_returning(chatlog, data_dir):
    entry = chatlog.begin("code", "Write a prime test", "test-model")

    [stored] = stored_entries(data_dir)
    assert stored["id"] == entry.id
    assert stored["prompt"] == "Write a prime test"
    assert stored["status"] == "pending"
    assert stored["response"] == ""


def test_begin_rejects_an_unknown_kind(chatlog, data_dir):
    with pytest.raises(ValueError):
        chatlog.begin("video", "A film", "test-model")
    assert not (data_dir / "history.json").exists()


# -- indexes, permalinks, dates ----------------------------------------------------------------


# -- get ---------------------------------------------------------------------------------------


# -- durability --------------------------------------------------------------------------------


def test_history_file_is_valid_json_after_every_write(chatlog, data_dir, clock):
    writes = [
        lambda: chatlog.begin("code", "one", "m"),
        lambda: chatlog.finish(chatlog.get("2024-08-30", 0), "answer"),
        lambda: chatlog.begin("image", "two", "m"),
        lambda: chatlog.fail(chatlog.get("2024-08-30", 1), "failed"),
        lambda: chatlog.import_seed({"2024-08-29": [{"prompt": "old", "response": "x"}]}),
    ]
    for write in writes:
        write()
        assert all(isinstance(doc, dict) for doc in read_history(data_dir).values())

    assert len(stored_entries(data_dir)) == 3


def test_writes_leave_no_temporary_files(chatlog, data_dir):
    entry = chatlog.begin("code", "one", "m")
    chatlog.finish(entry, "answer")
    chatlog.fail(chatlog.begin("code", "two", "m"), "failed")

    assert tmp_files(data_dir) == []


# -- damaged files -----------------------------------------------------------------------------


DAMAGED = {
    "garbage": b"GARBAGE \x00\x01\x02 this is not json at all",
    "truncated": b'{"entries": {"1": {"id": "a", "date": "2024-08-30", "index": 0}, '
    b'"2": {"id": "b", "index": 1, "pro',
    "not-utf8": '{"entries": {"1": {"date": "2024-08-30", "index": 0, "prompt": "Grüße"}}}'.encode("latin-1"),
    "not-tinydb": b'["a", "list"]',
}


def day_file(data_dir: Path, date: str = "2024-08-30") -> Path:
    return data_dir / "history" / f"{date}.json"


def quarantined_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "history").glob("*.json.corrupt-*"))


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_day_file_is_moved_aside_with_its_bytes_intact(chatlog, data_dir, content):
    day_file(data_dir).write_bytes(content)

    chatlog.begin("code", "new prompt", "m")

    [moved] = quarantined_files(data_dir)
    assert moved.read_bytes() == content
    assert chatlog.quarantined() == [moved.name]
    assert tmp_files(data_dir) == []


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_after_quarantine_the_day_file_is_valid_json_again(chatlog, data_dir, content):
    day_file(data_dir).write_bytes(content)

    entry = chatlog.begin("code", "new prompt", "m")

    assert isinstance(json.loads(day_file(data_dir).read_text(encoding="utf-8")), dict)
    assert chatlog.get(entry.date, entry.index).prompt == "new prompt"


def test_new_entries_continue_after_the_highest_index_in_the_damaged_file(chatlog, data_dir):
    day_file(data_dir).write_bytes(DAMAGED["truncated"])

    entry = chatlog.begin("code", "new prompt", "m")

    # Indexes 0 and 1 are still readable in the damaged file: their permalinks are never reused.
    assert entry.index == 2
    assert chatlog.get("2024-08-30", 0) is None


def test_a_damaged_day_is_logged_with_its_file_name(chatlog, data_dir, caplog):
    day_file(data_dir).write_bytes(DAMAGED["garbage"])

    with caplog.at_level("ERROR", logger="app.history"):
        chatlog.days()

    assert str(day_file(data_dir)) in caplog.text
    assert "damaged" in caplog.text


def test_reading_skips_a_damaged_day_and_keeps_the_other_days(chatlog, data_dir, clock):
    clock.now = DAY_TWO
    kept = chatlog.begin("code", "on the healthy day", "m")
    day_file(data_dir).write_bytes(DAMAGED["truncated"])

    days = chatlog.days()

    assert [d.date for d in days] == [kept.date]
    assert chatlog.get(kept.date, kept.index).prompt == "on the healthy day"
    assert len(quarantined_files(data_dir)) == 1


def test_quarantine_never_moves_a_file_that_was_repaired_meanwhile(chatlog, data_dir):
    path = day_file(data_dir)
    chatlog.begin("code", "good", "m")
    good = path.read_bytes()

    chatlog._quarantine("2024-08-30", HistoryCorrupt(path, "was damaged a moment ago"))

    assert path.read_bytes() == good
    assert quarantined_files(data_dir) == []


# -- concurrency -------------------------------------------------------------------------------


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_concurrent_writers_in_two_processes_lose_nothing(data_dir):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    work = {"finish": False, "at": DAY_ONE}  # prompts only, all on one day
    workers = [
        ctx.Process(target=write_entries, args=(str(data_dir), w, 20, barrier), kwargs=work) for w in range(2)
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=90)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)

    assert [p.exitcode for p in workers] == [0, 0]
    stored = stored_entries(data_dir)
    assert len(stored) == 40
    assert {e["prompt"] for e in stored} == {f"worker {w} prompt {n}" for w in range(2) for n in range(20)}
    assert sorted(e["index"] for e in stored) == list(range(40))


# -- atomic_write_text -------------------------------------------------------------------------


def test_atomic_write_text_replaces_the_content(tmp_path):
    path = tmp_path / "file.json"
    path.write_text("old", encoding="utf-8")

    atomic_write_text(path, '{"new": true}')

    assert path.read_text(encoding="utf-8") == '{"new": true}'
    assert tmp_files(tmp_path) == []


def test_atomic_write_text_keeps_the_old_content_when_encoding_fails(tmp_path):
    path = tmp_path / "file.json"
    path.write_text('{"old": true}', encoding="utf-8")

    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, '{"new": "\ud800"}')  # a lone surrogate cannot be UTF-8

    assert path.read_text(encoding="utf-8") == '{"old": true}'
    assert tmp_files(tmp_path) == []


def test_atomic_write_text_keeps_the_old_content_when_fsync_fails(tmp_path, monkeypatch):
    path = tmp_path / "file.json"
    path.write_text('{"old": true}', encoding="utf-8")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        atomic_write_text(path, '{"new": true}')

    assert path.read_text(encoding="utf-8") == '{"old": true}'
    assert tmp_files(tmp_path) == []


def test_an_empty_day_file_is_damage_and_its_indexes_are_not_reused(chatlog, data_dir):
    first = chatlog.begin("code", "first", "m")
    day_file(data_dir).write_bytes(b"")

    second = chatlog.begin("code", "second", "m")

    assert second.index > first.index
    assert len(quarantined_files(data_dir)) == 1


def test_a_destroyed_day_file_never_hands_out_its_indexes_again(chatlog, data_dir):
    for n in range(3):
        chatlog.begin("code", f"lost {n}", "m")
    chatlog.checkpoint("2024-08-30")  # the entries are in the day file now, no longer in a journal
    day_file(data_dir).write_bytes(b"\x00\xff nothing readable at all")

    entry = chatlog.begin("code", "after the damage", "m")

    assert entry.index > 2  # 0, 1 and 2 were handed out before the file was lost
    assert chatlog.get("2024-08-30", 0) is None
