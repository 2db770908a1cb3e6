"""A small OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

The app reaches it through the real `openai` client over real HTTP. Each test scripts what the
next requests get with :meth:`FakeUpstream.script`; unscripted requests get sensible defaults
(a markdown answer, a PNG by URL). Every request is recorded for assertions.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


def png_bytes(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 60, 30)) -> bytes:
    """A small valid PNG."""
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Reply:
    """One scripted reply: status, JSON or raw body, headers, a delay, or a connection cut."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop_after: int | None = None  # send only this many body bytes, then close the connection
    hang_up: bool = False  # read the request, then reset the connection without any answer
    content_type: str = "application/json"
    # Streaming (for requests with "stream": true): the text pieces to send as chunks.
    chunks: list[str] | None = None
    chunk_delay: float = 0.0  # pause before each chunk
    cut_after: int | None = None  # close after this many chunks, without finish_reason or [DONE]
    finish_reason: str = "stop"
    usage: bool = True  # send a usage chunk at the end (as with stream_options.include_usage)


def chat_completion(text: str, model: str = "test-chat-model", finish_reason: str = "stop") -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18},
    }


def stream_chunk(text: str | None, finish_reason: str | None = None, usage: dict | None = None) -> dict:
    choices = []
    if text is not None or finish_reason is not None:
        delta = {"content": text} if text is not None else {}
        choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return {
        "id": "chatcmpl-stream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "test-chat-model",
        "choices": choices,
        "usage": usage,
    }


def error_body(message: str, kind: str = "server_error", code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body as the upstream received it."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def multipart(request: dict[str, Any]) -> dict[str, Part]:
    """The parts of a recorded multipart request (e.g. `/v1/images/edits`), by field name."""
    ctype = request["headers"].get("Content-Type") or request["headers"].get("content-type") or ""
    assert ctype.startswith("multipart/form-data"), f"not a multipart request: {ctype!r}"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + request["body"]
    )
    parts: dict[str, Part] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        parts[str(name)] = Part(str(name), payload, part.get_filename(), part.get_content_type())
    return parts


class FakeUpstream:
    """Start with :meth:`start`; `url` is the base URL to give the app as OPENAI_BASE_URL."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.files: dict[str, tuple[bytes, str]] = {"/files/image.png": (png_bytes(), "image/png")}
        self.image_mode = "url"
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.streams_finished = 0  # streams sent to the end
        self.streams_abandoned = 0  # streams whose client went away before the end
        self.streams_active = 0
        self.streams_peak = 0  # most streams open at once
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # -- control ---------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return self.origin + "/v1"

    def reset(self) -> None:
        """Forget scripts, recorded requests, extra files and counters (a test's leftovers)."""
        with self._lock:
            self._scripts.clear()
            self.requests.clear()
            self.files = {"/files/image.png": (png_bytes(), "image/png")}
            self.image_mode = "url"
            self.streams_finished = self.streams_abandoned = 0
            self.streams_active = self.streams_peak = 0

    def script(self, path: str, *replies: Reply) -> None:
        """Queue replies for the next requests to `path` (e.g. "/v1/chat/completions")."""
        with self._lock:
            self._scripts[path].extend(replies)

    def serve_file(self, path: str, body: bytes, content_type: str = "image/png") -> str:
        """Serve `body` at `path`; returns its absolute URL."""
        self.files[path] = (body, content_type)
        return self.origin + path

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    def start(self) -> FakeUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without this, Nagle's algorithm
                # and delayed ACKs add ~40 ms to every reply.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                upstream._handle(self, "GET")

            def do_POST(self) -> None:
                upstream._handle(self, "POST")

        class Server(ThreadingHTTPServer):
            # A real server's listen backlog: socketserver's default of 5 resets connections
            # when dozens arrive at once (the 64-stream benchmark).
            request_queue_size = 128

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that hangs up (the app stopping a stream, a test ending) is expected.
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A short poll interval makes stop() quick; tests start many of these.
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # -- serving ---------------------------------------------------------------------------

    def _next_scripted(self, path: str) -> Reply | None:
        with self._lock:
            queue = self._scripts.get(path)
            return queue.popleft() if queue else None

    def _default(self, path: str, body: dict[str, Any] | None) -> Reply:
        if path == "/v1/chat/completions":
            prompt = (body or {}).get("messages", [{}])[-1].get("content", "")
            if isinstance(prompt, list):  # content parts: answer the text, count the pictures
                pictures = sum(1 for p in prompt if p.get("type") == "image_url")
                text = " ".join(p.get("text", "") for p in prompt if p.get("type") == "text")
                prompt = f"{text} (with {pictures} image{'s' if pictures != 1 else ''})"
            text = f"Answer to: {prompt}\n\n```python\nprint('hi')\n```"
            if (body or {}).get("stream"):
                return Reply(chunks=[text[i : i + 8] for i in range(0, len(text), 8)])
            return Reply(json=chat_completion(text))
        if path == "/v1/images/generations":
            if self.image_mode == "b64":
                data = [{"b64_json": base64.b64encode(png_bytes()).decode()}]
            else:
                data = [{"url": self.origin + "/files/image.png", "revised_prompt": "revised"}]
            return Reply(json={"created": int(time.time()), "data": data})
        if path == "/v1/images/edits":
            # gpt-image-1 answers edits in b64_json; a picture of its own, so a test can tell
            # the stored result from the source.
            edited = base64.b64encode(png_bytes((80, 60), (30, 90, 200))).decode()
            return Reply(json={"created": int(time.time()), "data": [{"b64_json": edited}]})
        if path == "/v1/models":
            return Reply(json={"object": "list", "data": [{"id": "test-chat-model", "object": "model"}]})
        if path in self.files:
            data, ctype = self.files[path]
            return Reply(body=data, content_type=ctype)
        return Reply(status=404, json=error_body("not found", "invalid_request_error"))

    def _stream(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        """Send `reply.chunks` as an OpenAI-style SSE stream (chunked, one event per chunk)."""

        def send(data: str) -> None:
            payload = f"data: {data}\n\n".encode()
            handler.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            handler.wfile.flush()

        with self._lock:
            self.streams_active += 1
            self.streams_peak = max(self.streams_peak, self.streams_active)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for n, text in enumerate(reply.chunks or []):
                if reply.cut_after is not None and n >= reply.cut_after:
                    handler.close_connection = True
                    handler.connection.shutdown(2)
                    return
                if reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
                send(json.dumps(stream_chunk(text)))
            send(json.dumps(stream_chunk(None, finish_reason=reply.finish_reason)))
            if reply.usage:
                usage = {"prompt_tokens": 5, "completion_tokens": len(reply.chunks or []), "total_tokens": 0}
                send(json.dumps(stream_chunk(None, usage=usage)))
            send("[DONE]")
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
            with self._lock:
                self.streams_finished += 1
        except (BrokenPipeError, ConnectionResetError):
            with self._lock:
                self.streams_abandoned += 1
        finally:
            with self._lock:
                self.streams_active -= 1

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(
                {
                    "method": method,
                    "path": path,
                    "json": body,
                    "body": raw,
                    "headers": dict(handler.headers.items()),
                }
            )
        reply = self._next_scripted(path) or self._default(path, body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.hang_up:  # as a server (or a keep-alive connection it closed) going away
            handler.close_connection = True
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
            return
        if reply.chunks is not None and reply.status == 200:
            self._stream(handler, reply)
            return
        payload = reply.body if reply.body is not None else json.dumps(reply.json).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if reply.drop_after is not None:
                handler.wfile.write(payload[: reply.drop_after])
                handler.wfile.flush()
                handler.close_connection = True
                handler.connection.shutdown(2)
                return
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
