"""Download a user-supplied URL without letting it reach addresses the operator did not allow.

Each hop's host is resolved once, every resolved address is checked, and the connection goes
to that checked address (so a second DNS answer cannot point elsewhere: no DNS rebinding).
Redirects are followed by hand, re-checking each hop. Size and time are bounded.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 5
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024
USER_AGENT = "whisperseg-annotation-server"


class UrlFetchError(Exception):
    """A download refused or failed; ``status`` is the HTTP code to answer the client with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def fetch_url(url: str, *, max_bytes: int, timeout_s: float, allow_private: bool = False) -> bytes:
    """The body of ``url`` (http/https), following at most 5 redirects."""
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        response, connection = _request(url, deadline, allow_private)
        try:
            if response.status in REDIRECT_CODES:
                location = response.getheader("Location")
                if not location:
                    raise UrlFetchError(400, f"{url} redirected without a Location header")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise UrlFetchError(400, f"{url} answered HTTP {response.status} {response.reason}")
            return _read_body(response, connection, url, max_bytes, deadline)
        finally:
            response.close()
            connection.close()
    raise UrlFetchError(400, f"Too many redirects (more than {MAX_REDIRECTS})")


def forbidden_reason(address: str) -> str | None:
    """Why an IP address may not be fetched by default (None if it is a public address)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (  # most specific first: several of these ranges also count as "private"
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local (cloud metadata)", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _request(url: str, deadline: float, allow_private: bool):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlFetchError(400, f"Only http and https URLs can be fetched, not {parts.scheme!r}")
    if not parts.hostname:
        raise UrlFetchError(400, f"No host in URL {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UrlFetchError(400, f"Invalid port in URL {url!r}") from None
    address = _resolve(parts.hostname, port, allow_private)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(parts.hostname, port, address, _remaining(deadline, url))
    try:
        connection.request("GET", path, headers={"User-Agent": USER_AGENT})
        return connection.getresponse(), connection
    except TimeoutError:
        connection.close()
        raise UrlFetchError(400, f"Timed out fetching {url}") from None
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        raise UrlFetchError(400, f"Could not fetch {url}: {exc}") from None


def _resolve(host: str, port: int, allow_private: bool) -> str:
    """The first resolved address of ``host``, refusing hosts with any forbidden address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UrlFetchError(400, f"Cannot resolve host {host!r}: {exc}") from None
    addresses = [info[4][0] for info in infos]
    if not allow_private:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason:
                raise UrlFetchError(
                    400,
                    f"Refusing to fetch {host!r}: it resolves to {address}, a {reason} address "
                    "(the server's allow_private_urls setting is off)",
                )
    return addresses[0]


def _read_body(
    response: http.client.HTTPResponse,
    connection: _PinnedHTTPConnection | _PinnedHTTPSConnection,
    url: str,
    max_bytes: int,
    deadline: float,
) -> bytes:
    """Stream the body, stopping as soon as it passes ``max_bytes`` or the deadline."""
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise UrlFetchError(413, _too_large(url, max_bytes))
    chunks, total = [], 0
    try:
        while True:
            connection.pinned_socket.settimeout(_remaining(deadline, url))
            chunk = response.read1(CHUNK_BYTES)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise UrlFetchError(413, _too_large(url, max_bytes))
            chunks.append(chunk)
    except TimeoutError:
        raise UrlFetchError(400, f"Timed out downloading {url}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise UrlFetchError(400, f"Download of {url} failed: {exc}") from None
    return b"".join(chunks)


def _too_large(url: str, max_bytes: int) -> str:
    return f"{url} is larger than the download limit of {max_bytes} bytes (url_fetch_max_bytes)"


def _remaining(deadline: float, url: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise UrlFetchError(400, f"Timed out fetching {url}")
    return left


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to a pre-resolved address, with the URL's host in the Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        # Kept after http.client drops ``sock`` for "Connection: close" replies, to bound reads.
        self.pinned_socket = self.sock


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a pre-resolved address; the certificate is still checked against the host."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.tls = ssl.create_default_context()

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.pinned_socket = self.tls.wrap_socket(sock, server_hostname=self.host)
