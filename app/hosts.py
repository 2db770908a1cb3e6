"""The Host check: the app answers only to its own names, so it cannot be a DNS-rebinding target.

A page at `http://rebind.example:8000` whose name later resolves to 127.0.0.1 is "same origin"
with the app for the browser: `Origin` and `Host` agree, so the cross-site check passes. Its
requests still carry `Host: rebind.example:8000`, which is none of the app's names: refused.

The app's names: `localhost`, `127.0.0.1` and `[::1]` (any port), the HOST it listens on when
that is one address, and the names in TRUSTED_HOSTS (`.example.com` matches its subdomains).
Behind a reverse proxy with PROXY_FIX set, the name checked is the one the browser used
(X-Forwarded-Host from the trusted proxy).
"""

from __future__ import annotations

import ipaddress
import logging
import re

from flask import Flask, jsonify, request

from .config import Settings
from .i18n import N_

log = logging.getLogger("app.hosts")

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# A Host header: a name or IPv4 address, or an IPv6 address in brackets; an optional port.
_HOST = re.compile(r"(?P<name>[a-z0-9.-]+|\[[a-f0-9:.]+\])(?::[0-9]{1,5})?", re.ASCII | re.IGNORECASE)


def app_names(settings: Settings) -> tuple[str, ...]:
    """Every name the app answers to."""
    names = list(LOOPBACK_NAMES) + list(settings.trusted_hosts)
    try:
        address = ipaddress.ip_address(settings.host)
    except ValueError:
        names.append(settings.host.lower())
    else:
        if not address.is_unspecified:
            names.append(f"[{address}]" if address.version == 6 else str(address))
    return tuple(dict.fromkeys(names))


def host_allowed(host: str | None, names: tuple[str, ...]) -> bool:
    """True when the `Host` header `host` (with or without a port) is one of `names`."""
    match = _HOST.fullmatch(host or "")
    if match is None:
        return False
    name = match["name"].lower()
    return any(name == ref or (ref.startswith(".") and name.endswith(ref)) for ref in names)


def init_app(app: Flask, settings: Settings) -> None:
    """Refuse (421) every request whose Host is not one of the app's names, before anything else."""
    names = app_names(settings)
    if not settings.loopback and not settings.trusted_hosts:
        log.warning(
            "HOST=%s accepts connections from other machines, but TRUSTED_HOSTS is empty: only "
            "requests for %s are answered. Set TRUSTED_HOSTS to the names people use to reach the app.",
            settings.host,
            ", ".join(names),
        )

    @app.before_request
    def check_host():
        host = request.host
        if host_allowed(host, names):
            return None
        log.warning("Refused a request for an unknown host name (%s)", host[:100])
        message = N_(
            "This server does not answer to this host name. If it is one of the app's names, "
            "add it to TRUSTED_HOSTS."
        )
        # A page only for a client that asks for HTML first (a browser's navigation); scripts,
        # curl and fetch() get JSON.
        if request.accept_mimetypes.best_match(["application/json", "text/html"]) != "text/html":
            return jsonify(error=message), 421
        from .views.plumbing import error_response  # the one place that shapes errors for each client

        return error_response(421, message, N_("Misdirected Request"))
