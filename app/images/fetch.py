"""Fetching an image URL the upstream handed back: the one place where the server requests a URL
it was given, so it is careful.

Providers call it (a provider always returns image bytes): http(s) only, a timeout for the whole
download, a size cap checked while streaming, an image content type, at most three redirects
(each checked again), and no request to a private, loopback or link-local address unless it is
the configured upstream's own host and port. URLs are parsed by urllib3, the parser that
connects; backslashes, userinfo, whitespace and control characters are refused. Each hop
connects to the very address its check resolved (the name is kept for `Host`, TLS SNI and the
certificate check), so DNS rebinding between check and connect cannot happen, and no proxy
variable or ~/.netrc is ever consulted.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import certifi
import urllib3
from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

from ..messages import failure
from ..providers import BadImage, UpstreamTimeout

log = logging.getLogger("app.images")

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_REDIRECTS = 3


def redact_url(url: str) -> str:
    """The URL without query or fragment: signed upstream URLs carry tokens in the query."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# Whitespace and control characters (C0, DEL, C1) and backslashes: URL parsers drop, keep or
# reinterpret them differently, which is how one parser's host becomes another's userinfo.
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\\]")
REDIRECTS = (301, 302, 303, 307, 308)
# The CA bundle for https image URLs (requests' own, certifi); tests point it at their own CA.
CA_CERTS = certifi.where()


@dataclass(frozen=True)
class _Target:
    """One hop of a download: where to connect (a checked address) and what to ask for."""

    scheme: str
    host: str  # the name from the URL: Host header, TLS SNI and certificate check
    port: int
    request_uri: str
    address: str  # the resolved address that was checked, connected to as is

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _parse(url: str) -> Url:
    """`url` parsed by urllib3, the parser that connects; BadImage for anything ambiguous."""
    if not isinstance(url, str) or _URL_FORBIDDEN.search(url):
        raise BadImage(failure("image_url_invalid"))
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise BadImage(failure("image_url_invalid")) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadImage(failure("image_url_not_http"))
    # Userinfo is refused outright (the standard library and urllib3 disagree on where it ends).
    if parsed.auth is not None or "@" in urlsplit(url).netloc:
        raise BadImage(failure("image_url_invalid"))
    return parsed


def _host_port(url: str) -> tuple[str, int] | None:
    try:
        parsed = parse_url(url)
    except LocationParseError:
        return None
    if not parsed.host:
        return None
    return parsed.host.strip("[]").lower(), parsed.port or (443 if parsed.scheme == "https" else 80)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (one lookup; the caller connects to one of these)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise BadImage(failure("image_host_unknown")) from None
    return [str(info[4][0]) for info in infos]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Not global in any case: the local-use NAT64 prefix and the deprecated IPv4-compatible block.
_NEVER = (ipaddress.ip_network("64:ff9b:1::/48"), ipaddress.ip_network("::/96"))


def is_public(address: str) -> bool:
    """True for a global unicast address, including the IPv4 inside NAT64, 6to4 and mapped forms."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _NEVER):
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(str(embedded))
    return True


def _check_address(url: str, trusted: tuple[str, int] | None) -> _Target:
    """The hop to make for `url`: refuse non-http(s) and ambiguous URLs, resolve the host once,
    and refuse it unless every address is public (or it is the trusted upstream's host:port)."""
    parsed = _parse(url)
    host, scheme = (parsed.host or "").strip("[]").lower(), parsed.scheme or "http"
    port = parsed.port or (443 if scheme == "https" else 80)
    addresses = resolve(host, port)
    if not addresses:
        raise BadImage(failure("image_host_unknown"))
    if trusted is None or (host, port) != trusted:
        for address in addresses:
            if not is_public(address):
                log.warning("Refused to fetch an image from a non-public address: %s", host)
                raise BadImage(failure("image_url_private"))
    return _Target(scheme, host, port, parsed.request_uri, addresses[0].split("%")[0])


def _open(target: _Target, timeout: float) -> tuple[HTTPConnectionPool, BaseHTTPResponse]:
    """GET the target from its checked address; the name stays in Host, SNI and the cert check.

    urllib3 is used directly (no requests session): no proxy variables, no ~/.netrc, and no
    second DNS lookup between the check and the connection.
    """
    limit = urllib3.Timeout(total=timeout)
    if target.scheme == "https":
        pool: HTTPConnectionPool = HTTPSConnectionPool(
            target.address,
            port=target.port,
            timeout=limit,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=CA_CERTS,
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = HTTPConnectionPool(target.address, port=target.port, timeout=limit, retries=False, maxsize=1)
    headers = {"Host": target.host_header, "Accept": "image/*", "User-Agent": "chat-image-fetch"}
    try:
        response = pool.urlopen(
            "GET",
            target.request_uri,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
    except BaseException:
        pool.close()
        raise
    return pool, response


def fetch_image(
    url: str, timeout: float, max_bytes: int = MAX_DOWNLOAD_BYTES, trusted_upstream: str | None = None
) -> bytes:
    """Download an image URL (see the module docstring for the rules); raise BadImage/UpstreamTimeout.

    `trusted_upstream` is the configured OPENAI_BASE_URL: its own host and port may be private
    (a local model server), nothing else may. Every hop, that one included, connects to the
    address its check resolved, so a name cannot change its answer in between.
    """
    trusted = _host_port(trusted_upstream) if trusted_upstream else None
    # `timeout` bounds the whole download (every hop and every byte), not each socket read.
    deadline = time.monotonic() + timeout
    try:
        for _ in range(MAX_REDIRECTS + 1):
            target = _check_address(url, trusted)
            pool, response = _open(target, _remaining(deadline))
            try:
                if response.status in REDIRECTS and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    continue
                return _read_image_body(response, max_bytes, deadline)
            finally:
                response.release_conn()
                pool.close()
        raise BadImage(failure("image_redirects"))
    except urllib3.exceptions.NewConnectionError as e:  # a subclass of the timeout error
        log.error("Image download failed: %s", type(e).__name__)
        raise BadImage(failure("image_download_failed")) from None
    except urllib3.exceptions.TimeoutError:
        raise UpstreamTimeout(failure("image_download_timeout")) from None
    except (urllib3.exceptions.HTTPError, OSError) as e:
        log.error("Image download failed: %s", type(e).__name__)
        raise BadImage(failure("image_download_failed")) from None


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise UpstreamTimeout(failure("image_download_timeout"))
    return remaining


def _read_image_body(response: BaseHTTPResponse, max_bytes: int, deadline: float) -> bytes:
    if response.status != 200:
        raise BadImage(failure("image_download_status", status=response.status))
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith("image/") and ctype != "application/octet-stream":
        raise BadImage(failure("image_url_not_image"))
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise BadImage(failure("image_too_large"))
    chunks, total = [], 0
    while True:
        _remaining(deadline)
        # read1 returns what has arrived (at most 64 KiB) instead of waiting for a full buffer,
        # so a trickling body cannot hold the download past the deadline.
        chunk = response.read1(64 * 1024, decode_content=True)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise BadImage(failure("image_too_large"))
        chunks.append(chunk)
    return b"".join(chunks)
