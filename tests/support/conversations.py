"""Conversations through the app's forms and JSON: post turns, read what was stored and what the
upstream was sent, and find the parts of a page that show them."""

from __future__ import annotations

import re

from .html import Node, parse
from .upstream import Reply, chat_completion

CHAT = "/v1/chat/completions"

IMAGES = "/v1/images/generations"

JSON = {"Accept": "application/json"}

PERMALINK_RE = re.compile(r"/chatlog/\d{4}-\d{2}-\d{2}/\d+")


def only(nodes: list[Node]) -> Node:
    assert len(nodes) == 1, f"expected exactly one, found {len(nodes)}"
    return nodes[0]


def history_aside(html: str) -> Node:
    return only([a for a in parse(html).find_all("aside") if a.attrs.get("id") == "history"])


def history_rows(node: Node) -> dict[str, str]:
    """History rows under `node`: each entry permalink linked from a row → the row's text."""
    rows: dict[str, str] = {}
    for li in node.find_all("li"):
        if not li.has_class("history-row"):
            continue
        for a in li.find_all("a"):
            if PERMALINK_RE.fullmatch(a.attrs.get("href", "")):
                assert a.attrs["href"] not in rows, f"{a.attrs['href']} is listed twice"
                rows[a.attrs["href"]] = " ".join(li.text.split())
    return rows


def post_code(client, prompt: str, **fields: str) -> dict:
    response = client.post("/generate_code", data={"prompt": prompt, **fields})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def sent_messages(upstream) -> list[dict[str, str]]:
    """The `messages` of the last chat request the upstream received."""
    return upstream.calls(CHAT)[-1]["json"]["messages"]


def stored(client, permalink: str) -> dict:
    response = client.get(permalink, headers=JSON)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def turn_messages(*entries: dict) -> list[dict[str, str]]:
    """user/assistant pairs of stored entries, as the context must carry them."""
    out: list[dict[str, str]] = []
    for entry in entries:
        out += [
            {"role": "user", "content": entry["prompt"]},
            {"role": "assistant", "content": entry["response"]},
        ]
    return out


def three_turns(client, upstream) -> tuple[str, str, str]:
    """A conversation of three answered turns with distinct answers; returns their permalinks."""
    upstream.script(
        CHAT,
        Reply(json=chat_completion("First answer: use a list.")),
        Reply(json=chat_completion("Second answer: sort it with sorted().")),
        Reply(json=chat_completion("Third answer: reverse=True.")),
    )
    t1 = post_code(client, "How do I keep several numbers?")["entry"]
    t2 = post_code(client, "And how do I sort them?", parent=t1)["entry"]
    t3 = post_code(client, "Descending, please.", parent=t2)["entry"]
    return t1, t2, t3


def index_of(permalink: str) -> int:
    return int(permalink.rsplit("/", 1)[1])


def conversation_articles(html: str) -> list[Node]:
    section = only([s for s in parse(html).find_all("section") if s.has_class("conversation")])
    return section.find_all("article")


def permalink_of(article: Node) -> str:
    return only([a for a in article.find_all("a") if a.has_class("permalink")]).attrs["href"]


def entry_count(app) -> int:
    """Entries ever created today, tombstones included: a rejected request must add none."""
    chatlog = app.extensions["chatlog"]
    return chatlog.count_on(chatlog.today())


def post_image(client, prompt: str, **fields: str) -> dict:
    response = client.post("/generate_image", data={"prompt": prompt, **fields})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()
