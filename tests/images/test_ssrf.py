"""SSRF: the image download connects only where the address check said it may.

Every test runs real HTTP against loopback listeners. Host names are answered by a stub resolver
(`socket.getaddrinfo`), and a guard around urllib3's connect resolves through the same stub and
refuses anything but 127.0.0.1, recording every attempt: a "public" address in these tests is
never connected to. A listener that must stay untouched records whether anything reached it.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import urllib3.util.connection

from app.images.fetch import fetch_image
from app.providers import BadImage

from ..support.upstream import Reply, png_bytes

PUBLIC = "93.184.215.14"  # a global address: the guard refuses it, so nothing is ever sent there
ELSEWHERE = "http://api.example.invalid/v1"  # an upstream that is not any of the listeners
PRIVATE = "private or local address"
INVALID = "invalid image URL"


class Listener:
    """An HTTP server on 127.0.0.1 that answers a PNG and records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                listener.requests.append({"path": self.path, "headers": dict(self.headers.items())})
                body = png_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def contacted(self) -> bool:
        return bool(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def resolver(monkeypatch):
    """Stub DNS: `resolver.answers[name]` is the list of addresses its successive lookups get (the
    last one repeats). IP literals and unknown names go to the real resolver. `calls` records
    each name looked up."""

    class Stub:
        answers: dict[str, list[str]] = {}
        calls: list[str] = []

    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name in Stub.answers:
            Stub.calls.append(name)
            queue = Stub.answers[name]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            if ":" in address:
                return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port or 0), 0, 0))]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    Stub.answers, Stub.calls = {}, []
    return Stub


@pytest.fixture(autouse=True)
def connections(monkeypatch, resolver) -> list[tuple]:
    """Every connect urllib3 makes, as (host, resolved address, port); only 127.0.0.1 is opened.

    The guard resolves as urllib3's own create_connection would (through the stub), so a name
    that rebinds to loopback on its second lookup does reach the listener unless the app pinned it.
    """
    attempts: list[tuple] = []
    real = urllib3.util.connection.create_connection

    def guarded(address, *args, **kwargs):
        host, port = address
        resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
        attempts.append((host, resolved, port))
        if resolved != "127.0.0.1":
            raise OSError(f"test guard: refused to connect to {resolved}")
        return real((resolved, port), *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded)
    return attempts


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def refused(url: str, trusted: str = ELSEWHERE) -> str:
    with pytest.raises(BadImage) as raised:
        fetch_image(url, timeout=5, trusted_upstream=trusted)
    return raised.value.message


def redirect(location: str) -> Reply:
    return Reply(status=302, headers={"Location": location}, body=b"", content_type="text/plain")


# -- the parser that connects decides -------------------------------------------------------------


def test_backslash_before_userinfo_never_reaches_the_host_urllib3_sees(listener, resolver, connections):
    # urlsplit reads the host as cdn.example; urllib3 (which connects) reads 127.0.0.1.
    resolver.answers["cdn.example"] = [PUBLIC]

    message = refused(f"http://127.0.0.1:{listener.port}\\@cdn.example/x.png")

    assert INVALID in message
    assert not listener.contacted
    assert connections == []


def test_userinfo_in_an_image_url_is_refused_and_sends_no_credentials(upstream):
    url = upstream.origin.replace("http://", "http://user:secret@") + "/files/image.png"

    message = refused(url, trusted=upstream.url)

    assert INVALID in message
    assert upstream.calls("/files/image.png") == []


@pytest.mark.parametrize("bad", [" ", "\t", "\n", "\r", "\x00", "\x1b", "\x7f", "\x85"])
def test_whitespace_and_control_characters_are_refused(listener, resolver, connections, bad):
    resolver.answers["cdn.example"] = [PUBLIC]

    message = refused(f"http://cdn.example/x{bad}.png")

    assert INVALID in message
    assert connections == []


def test_redirect_to_the_backslash_form_is_refused(upstream, listener, resolver):
    resolver.answers["cdn.example"] = [PUBLIC]
    upstream.script("/files/hop.png", redirect(f"http://127.0.0.1:{listener.port}\\@cdn.example/x.png"))

    message = refused(upstream.origin + "/files/hop.png", trusted=upstream.url)

    assert INVALID in message
    assert len(upstream.calls("/files/hop.png")) == 1
    assert not listener.contacted


def test_redirect_to_a_userinfo_url_is_refused(upstream):
    target = upstream.origin.replace("http://", "http://user:secret@") + "/files/image.png"
    upstream.script("/files/hop.png", redirect(target))

    message = refused(upstream.origin + "/files/hop.png", trusted=upstream.url)

    assert INVALID in message
    assert upstream.calls("/files/image.png") == []


# -- DNS rebinding: the connection goes to the address that was checked -----------------------------


def test_a_name_rebinding_to_loopback_after_the_check_never_reaches_loopback(listener, resolver, connections):
    resolver.answers["rebind.example"] = [PUBLIC, "127.0.0.1"]

    with pytest.raises(BadImage):
        fetch_image(f"http://rebind.example:{listener.port}/x.png", timeout=5, trusted_upstream=ELSEWHERE)

    assert not listener.contacted
    assert [resolved for _, resolved, _ in connections] == [PUBLIC]
    assert resolver.calls == ["rebind.example"]  # looked up once: the checked answer is used


def test_a_redirect_to_a_rebinding_name_never_reaches_loopback(upstream, listener, resolver, connections):
    resolver.answers["rebind.example"] = [PUBLIC, "127.0.0.1"]
    upstream.script("/files/hop.png", redirect(f"http://rebind.example:{listener.port}/x.png"))

    with pytest.raises(BadImage):
        fetch_image(upstream.origin + "/files/hop.png", timeout=5, trusted_upstream=upstream.url)

    assert not listener.contacted
    assert [resolved for _, resolved, _ in connections] == ["127.0.0.1", PUBLIC]


def test_the_trusted_upstream_name_is_pinned_too_and_keeps_its_host_header(listener, resolver, connections):
    # A local model server by name: it may be private, but it is resolved once and pinned.
    resolver.answers["models.internal"] = ["127.0.0.1", "10.20.30.40"]
    origin = f"http://models.internal:{listener.port}"

    data = fetch_image(origin + "/x.png", timeout=5, trusted_upstream=origin + "/v1")

    assert data == png_bytes()
    assert resolver.calls == ["models.internal"]
    assert connections == [("127.0.0.1", "127.0.0.1", listener.port)]
    assert listener.requests[0]["headers"]["Host"] == f"models.internal:{listener.port}"


# -- addresses that only look global ---------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64 prefix
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::7f00:1",  # IPv4-compatible (deprecated)
    ],
)
def test_ipv6_forms_of_private_ipv4_addresses_are_refused(resolver, connections, address):
    resolver.answers["cdn.example"] = [address]

    assert PRIVATE in refused("http://cdn.example/x.png")
    assert PRIVATE in refused(f"http://[{address}]/x.png")
    assert connections == []


# -- the environment is never consulted -----------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_proxy_variables_are_ignored(upstream, listener, monkeypatch, variable):
    monkeypatch.setenv(variable, f"http://127.0.0.1:{listener.port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.port}")

    data = fetch_image(upstream.origin + "/files/image.png", timeout=5, trusted_upstream=upstream.url)

    assert data == png_bytes()
    assert not listener.contacted
    assert len(upstream.calls("/files/image.png")) == 1


def test_netrc_credentials_are_never_sent(upstream, tmp_path, monkeypatch):
    netrc = tmp_path / ".netrc"
    host = urlsplit(upstream.origin).hostname
    netrc.write_text(f"machine {host} login someone password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))

    data = fetch_image(upstream.origin + "/files/image.png", timeout=5, trusted_upstream=upstream.url)

    assert data == png_bytes()
    headers = upstream.calls("/files/image.png")[0]["headers"]
    assert "Authorization" not in headers


# -- https: the address is pinned, the name still verifies the certificate -------------------------


def _certificate(tmp_path, name: str) -> tuple[str, str]:
    """A self-signed certificate for `name` (its own CA) and its key, as PEM file paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_listener(tmp_path, monkeypatch):
    """(listener, server names seen in TLS handshakes, CA file) for a certificate of images.test."""
    import ssl

    cert, key = _certificate(tmp_path, "images.test")
    server = Listener()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    yield server, names, cert
    server.close()


def test_https_connects_to_the_checked_address_and_verifies_the_name(
    tls_listener, resolver, connections, monkeypatch
):
    server, names, ca = tls_listener
    monkeypatch.setattr("app.images.fetch.CA_CERTS", ca)
    resolver.answers["images.test"] = ["127.0.0.1", "10.20.30.40"]
    origin = f"https://images.test:{server.port}"

    data = fetch_image(origin + "/x.png", timeout=5, trusted_upstream=origin + "/v1")

    assert data == png_bytes()
    assert connections == [("127.0.0.1", "127.0.0.1", server.port)]
    assert names == ["images.test"]  # SNI carries the name, not the pinned address
    assert server.requests[0]["headers"]["Host"] == f"images.test:{server.port}"


def test_https_certificate_for_another_name_is_refused(tls_listener, resolver, monkeypatch):
    server, _names, ca = tls_listener
    monkeypatch.setattr("app.images.fetch.CA_CERTS", ca)
    resolver.answers["other.test"] = ["127.0.0.1"]
    origin = f"https://other.test:{server.port}"

    with pytest.raises(BadImage):
        fetch_image(origin + "/x.png", timeout=5, trusted_upstream=origin + "/v1")

    assert not server.contacted
