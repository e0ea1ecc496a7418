"""POST /upload-by-url against a local http.server, and the address policy of url_fetch."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from api_helpers import audio_bytes, decode_jpeg, serve_http, tone

from audio import url_fetch

SONG = audio_bytes(tone(1500, 1.0, 16000), 16000, subtype="PCM_16")


class Handler(BaseHTTPRequestHandler):
    """Routes of the test server; ``hosts_seen`` records each request's Host header."""

    hosts_seen: list[str] = []

    def do_GET(self) -> None:
        Handler.hosts_seen.append(self.headers["Host"])
        port = self.server.server_address[1]
        routes = {
            "/song.wav": lambda: self._send(200, SONG),
            "/redirect": lambda: self._redirect("/song.wav"),
            "/loop": lambda: self._redirect("/loop"),
            "/to-other-loopback": lambda: self._redirect(f"http://127.0.0.2:{port}/song.wav"),
            "/to-file": lambda: self._redirect("file:///etc/passwd"),
            "/stream": self._stream_without_length,
            "/slow": self._slow,
            "/not-audio": lambda: self._send(200, b"<html>hello</html>" * 100),
        }
        routes.get(self.path, lambda: self._send(404, b"missing"))()

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # clients refusing a large body hang up early
            self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _stream_without_length(self) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        with contextlib.suppress(OSError):  # the client hangs up at its size limit
            for _ in range(100):
                self.wfile.write(b"\0" * 1000)

    def _slow(self) -> None:
        time.sleep(2)
        with contextlib.suppress(OSError):  # the client has given up by now
            self._send(200, SONG)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Base URL of a local HTTP server (loopback: refused unless private URLs are allowed)."""
    with serve_http(Handler) as url:
        yield url


@pytest.fixture
def private_client(make_app):
    return make_app(allow_private_urls=True).test_client()


def by_url(client, url: str, **params):
    return client.post("/upload-by-url", json={"audio_url": url, **params})


def test_allowed_download_gives_the_upload_reply(private_client, server):
    reply = by_url(private_client, f"{server}/song.wav", num_spec_columns="200", hop_length=None)
    assert reply.status_code == 201, reply.json
    assert set(reply.json) == {"configurations", "channels"}
    assert reply.json["configurations"]["hop_length"] == 16000 // 200
    [channel] = reply.json["channels"]
    assert channel["audio_duration"] == pytest.approx(1.0)
    assert decode_jpeg(channel["spec"]).shape == (300, 200, 3)
    wav = private_client.post("/get-audio-clip-wav", json={"audio_id": channel["audio_id"]})
    assert wav.status_code == 200


def test_redirects_are_followed(private_client, server):
    assert by_url(private_client, f"{server}/redirect").status_code == 201


def test_loopback_is_refused_by_default(client, app, server):
    for url in (f"{server}/song.wav", f"http://localhost:{server.rsplit(':', 1)[1]}/song.wav"):
        reply = by_url(client, url)
        assert reply.status_code == 400
        assert "loopback" in reply.json["error"] and "allow_private_urls" in reply.json["error"]
    assert len(app.extensions["whisperseg"].audio) == 0


def test_redirect_to_a_forbidden_address_is_refused(client, server, monkeypatch):
    """Pretend the test server (127.0.0.1) is public: only the redirect's target is forbidden."""
    real_policy = url_fetch.forbidden_reason
    monkeypatch.setattr(
        url_fetch, "forbidden_reason", lambda a: None if a == "127.0.0.1" else real_policy(a)
    )
    assert by_url(client, f"{server}/song.wav").status_code == 201
    reply = by_url(client, f"{server}/to-other-loopback")
    assert reply.status_code == 400 and "127.0.0.2" in reply.json["error"]


def test_host_is_resolved_once_and_the_checked_address_is_used(private_client, server, monkeypatch):
    port = int(server.rsplit(":", 1)[1])
    lookups = []

    def fake_getaddrinfo(host, *args, **kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(url_fetch.socket, "getaddrinfo", fake_getaddrinfo)
    Handler.hosts_seen.clear()
    reply = by_url(private_client, f"http://audio.example.test:{port}/song.wav")
    assert reply.status_code == 201
    # One DNS lookup of the name; the connection itself only "resolves" the checked IP literal.
    assert lookups[0] == "audio.example.test" and set(lookups[1:]) <= {"127.0.0.1"}
    assert Handler.hosts_seen == [f"audio.example.test:{port}"]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.org/a.wav", "gopher://x", "not a url", "http://"]
)
def test_non_http_urls_are_refused(private_client, url):
    reply = by_url(private_client, url)
    assert reply.status_code == 400 and reply.json["error"]


def test_redirect_to_another_scheme_and_redirect_loops_are_refused(private_client, server):
    reply = by_url(private_client, f"{server}/to-file")
    assert reply.status_code == 400 and "http" in reply.json["error"]
    reply = by_url(private_client, f"{server}/loop")
    assert reply.status_code == 400 and "redirects" in reply.json["error"]


def test_oversize_downloads_are_413(make_app, server):
    client = make_app(allow_private_urls=True, url_fetch_max_bytes=20_000).test_client()
    for path in ("/song.wav", "/stream"):  # declared length, then a body without one
        reply = by_url(client, f"{server}{path}")
        assert reply.status_code == 413 and "url_fetch_max_bytes" in reply.json["error"], path


def test_slow_server_times_out_with_a_4xx(make_app, server):
    client = make_app(allow_private_urls=True, url_fetch_timeout_s=0.5).test_client()
    started = time.monotonic()
    reply = by_url(client, f"{server}/slow")
    assert reply.status_code == 400 and "Timed out" in reply.json["error"]
    assert time.monotonic() - started < 1.9


def test_unreachable_missing_and_non_audio_urls_are_400(private_client, server):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    reply = by_url(private_client, f"http://127.0.0.1:{closed_port}/song.wav")
    assert reply.status_code == 400 and "Could not fetch" in reply.json["error"]
    reply = by_url(private_client, f"{server}/missing.wav")
    assert reply.status_code == 400 and "404" in reply.json["error"]
    reply = by_url(private_client, f"{server}/not-audio")
    assert reply.status_code == 400 and "audio" in reply.json["error"]
    reply = private_client.post("/upload-by-url", json={"audio_url": None})
    assert reply.status_code == 400 and "audio_url" in reply.json["error"]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_policy(address, reason):
    found = url_fetch.forbidden_reason(address)
    assert (found is None) if reason is None else (found is not None and reason in found)
