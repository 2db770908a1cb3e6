"""Requests as htmx makes them, and the Server-Sent Events of a streamed answer."""

from __future__ import annotations

import re
from collections.abc import Iterator

import requests

HX = {"HX-Request": "true"}


def parse_sse(text: str) -> list[tuple[str, str]]:
    """Server-Sent Events as (event, data) pairs; multi-line data joined with newlines."""
    events = []
    for block in text.split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "data:":
                data.append("")
        if data or name != "message":
            events.append((name, "\n".join(data)))
    return events


def sse_events(response: requests.Response, limit: int = 1000) -> Iterator[tuple[str, str]]:
    """Events of a streamed response, each as soon as its blank line has arrived (bounded)."""
    buffer = ""
    count = 0
    for piece in response.iter_content(chunk_size=None):
        buffer += piece.decode("utf-8")
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            for event in parse_sse(block + "\n\n"):
                yield event
                count += 1
                if count >= limit:
                    return


class StreamedAnswer:
    """What a browser sees for an htmx code request: the POST fragment, then the event stream."""

    def __init__(self, post, stream_url: str | None, events: list[tuple[str, str]]) -> None:
        self.post = post
        self.stream_url = stream_url
        self.events = events

    @property
    def tokens(self) -> list[str]:
        return [data for name, data in self.events if name == "token"]

    @property
    def final(self) -> str:
        """The rendered entry of the `final` event ('' if the stream never got there)."""
        return next((data for name, data in self.events if name == "final"), "")

    @property
    def html(self) -> str:
        """POST fragment and final entry together: all the HTML the page ends up with."""
        return self.post.get_data(as_text=True) + "\n" + self.final


def htmx_generate_code(client, prompt: str, **fields: str) -> StreamedAnswer:
    """POST /generate_code as htmx, then follow its sse-connect URL to the end of the stream."""
    post = client.post("/generate_code", data={"prompt": prompt, **fields}, headers=HX)
    match = re.search(r'sse-connect="([^"]+)"', post.get_data(as_text=True))
    if not match:
        return StreamedAnswer(post, None, [])
    stream = client.get(match.group(1), headers={"Accept": "text/event-stream"})
    return StreamedAnswer(post, match.group(1), parse_sse(stream.get_data(as_text=True)))
