"""Entries as the JSON API shows them: an entry (`GET /chatlog/<date>/<index>`, search hits) and a
generation's answer (the seed's `{"code"}` / `{"image_url"}` with the app's fields)."""

from __future__ import annotations

from typing import Any

from ..generation import Generator
from ..history import Entry
from .plumbing import generator, history


def entry_json(entry: Entry) -> dict[str, Any]:
    """An entry as JSON for API clients: the seed's fields plus the app's metadata."""
    data = {
        "id": entry.id,
        "date": entry.date,
        "index": entry.index,
        "entry": entry.permalink,
        "created_at": entry.created_at,
        "kind": entry.kind,
        "prompt": entry.prompt,
        "response": entry.response,
        "model": entry.model,
        "status": entry.status,
    }
    if entry.kind == "image":
        data["image_url"] = entry.image_url
    elif Generator.answer_cut_at(entry) is not None:
        data["truncated"] = True  # cut at MAX_ANSWER_CHARS
    if entry.error:
        data["error"] = entry.error
    data.update(turn_fields(entry))
    if entry.context_dropped:
        data["context_dropped"] = entry.context_dropped
    return data


def answer_json(entry: Entry) -> dict[str, Any]:
    """The seed's JSON answer (`code` or `image_url`) with the app's fields."""
    field = "code" if entry.kind == "code" else "image_url"
    payload: dict[str, Any] = {
        field: entry.response,
        "entry": entry.permalink,
        "model": entry.model,
        "demo": generator().provider.demo,
    }
    if entry.kind == "code" and Generator.answer_cut_at(entry) is not None:
        payload["truncated"] = True  # cut at MAX_ANSWER_CHARS; only then, so the seed shape stays
    payload.update(turn_fields(entry))
    return payload


def turn_fields(entry: Entry) -> dict[str, Any]:
    """An entry's place in its conversation and its picture, for the JSON answers: `parent`,
    `conversation` and `turn` in a conversation, `siblings` (permalinks of the turn's versions,
    oldest first, itself included) when it has versions, `input_image_url` with a picture."""
    data: dict[str, Any] = {}
    if entry.parent or entry.root:
        parent = entry.parent.url if entry.parent else None
        data.update(parent=parent, conversation=entry.thread.url, turn=entry.turn)
    versions = history().versions(entry)
    if len(versions) > 1:
        data["siblings"] = [v.permalink for v in versions]
    if entry.input_image_url:
        data["input_image_url"] = entry.input_image_url
    return data
