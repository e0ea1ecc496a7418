"""Hostile input: URLs aimed at the server's own network, unsafe model names and audio ids,
and request bodies far over the upload limit (on a live server, as deployed)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from api_helpers import audio_bytes, serve_http, tone, upload
from flask.testing import FlaskClient

from audio import url_fetch
from tests.support.live_server import LiveServer

SONG = audio_bytes(tone(2000, 0.5, 16000), 16000, subtype="PCM_16")
# Addresses the server must never connect to by default, with the reason it names.
FORBIDDEN_URLS = [
    ("http://127.0.0.1/a.wav", "loopback"),
    ("http://127.1.2.3:8050/a.wav", "loopback"),
    ("https://127.0.0.1/a.wav", "loopback"),
    ("http://[::1]/a.wav", "loopback"),
    ("http://[::ffff:127.0.0.1]/a.wav", "loopback"),
    ("http://localhost:8050/a.wav", "loopback"),
    ("http://10.0.0.8/a.wav", "private"),
    ("http://172.16.5.4/a.wav", "private"),
    ("http://192.168.1.1/a.wav", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", "link-local"),
    ("http://0.0.0.0:8050/a.wav", "unspecified"),
    ("http://[::]/a.wav", "unspecified"),
    ("http://user:pw@127.0.0.1/a.wav", "loopback"),
]
# Other spellings of 127.0.0.1 that C resolvers accept.
OBFUSCATED_LOOPBACK = ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1"]
NOT_HTTP = [
    "file:///etc/passwd",
    "ftp://example.org/a.wav",
    "gopher://example.org/_GET",
    "data:audio/wav;base64,UklGRiQAAABXQVZF",
    "javascript:alert(1)",
    "//example.org/a.wav",
]


def by_url(client: FlaskClient, url: str):
    return client.post("/upload-by-url", json={"audio_url": url})


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Addresses url_fetch connects to; only the test server (127.0.0.1) is really reached."""
    made: list[str] = []
    real_connect = socket.create_connection

    def connect(address, *args, **kwargs):
        made.append(address[0])
        if address[0] != "127.0.0.1":
            raise OSError("this test allows no connection there")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(url_fetch.socket, "create_connection", connect)
    return made


@pytest.mark.parametrize("url", NOT_HTTP)
def test_only_http_and_https_are_fetched(client: FlaskClient, connections, url: str) -> None:
    reply = by_url(client, url)
    assert reply.status_code == 400 and "http" in reply.json["error"]
    assert connections == []


@pytest.mark.parametrize(("url", "reason"), FORBIDDEN_URLS)
def test_internal_addresses_are_refused_without_connecting(
    client: FlaskClient, connections, url: str, reason: str
) -> None:
    reply = by_url(client, url)
    assert reply.status_code == 400
    assert reason in reply.json["error"] and "allow_private_urls" in reply.json["error"]
    assert connections == []


@pytest.mark.parametrize("host", OBFUSCATED_LOOPBACK)
def test_numeric_spellings_of_loopback_are_refused(client, connections, host: str) -> None:
    reply = by_url(client, f"http://{host}:8050/a.wav")
    assert reply.status_code == 400
    resolves = True
    try:
        socket.getaddrinfo(host, 80)
    except OSError:
        resolves = False
    assert ("loopback" if resolves else "Cannot resolve") in reply.json["error"]
    assert connections == []


def test_a_name_with_one_internal_address_among_public_ones_is_refused(
    client: FlaskClient, connections, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DNS answer mixing public and internal addresses must not be a way in."""
    answer = [("8.8.8.8", 80), ("10.1.2.3", 80)]
    monkeypatch.setattr(
        url_fetch.socket,
        "getaddrinfo",
        lambda *args, **kwargs: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", a) for a in answer],
    )
    reply = by_url(client, "http://audio.example.test/a.wav")
    assert reply.status_code == 400 and "10.1.2.3" in reply.json["error"]
    assert connections == []


class Handler(BaseHTTPRequestHandler):
    """``/hops/<n>/<target>`` redirects n times on this server, then to TARGETS[target]."""

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        targets = {
            "public": "/song.wav",
            "metadata": "http://169.254.169.254/latest/meta-data/",
            "ipv6-loopback": f"http://[::1]:{port}/song.wav",
            "mapped-loopback": f"http://[::ffff:127.0.0.2]:{port}/song.wav",
            "decimal-loopback": f"http://2130706434:{port}/song.wav",
            "private": "http://192.168.0.10/song.wav",
            "file": "file:///etc/passwd",
        }
        parts = self.path.strip("/").split("/")
        if parts[0] == "hops":
            hops, target = int(parts[1]), parts[2]
            self._redirect(f"/hops/{hops - 1}/{target}" if hops else targets[target])
        elif parts[0] == "song.wav":
            self._headers(200, len(SONG))
            self.wfile.write(SONG)
        elif parts[0] == "drip":
            self._drip()
        elif parts[0] == "endless-chunks":
            self._endless_chunks()
        else:
            self._headers(404, 0)

    def _headers(self, status: int, length: int | None = None, **extra: str) -> None:
        self.send_response(status)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()

    def _redirect(self, location: str) -> None:
        self._headers(302, 0, Location=location)

    def _drip(self) -> None:
        """A byte every 50 ms: every single read is quick, only a total deadline stops it."""
        self._headers(200, 10**6)
        with contextlib.suppress(OSError):
            for _ in range(10**6):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.05)

    def _endless_chunks(self) -> None:
        """Chunked encoding: no length announced, and the body never ends."""
        self.protocol_version = "HTTP/1.1"
        self._headers(200, None, Transfer_Encoding="chunked")
        chunk = b"%x\r\n%s\r\n" % (65536, b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                self.wfile.write(chunk)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web_server() -> Iterator[str]:
    with serve_http(Handler) as url:
        yield url


@pytest.fixture
def test_server_counts_as_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only 127.0.0.1 (the test server) passes the address check: redirects can then prove
    that every hop is checked again, with allow_private_urls off."""
    real_policy = url_fetch.forbidden_reason
    monkeypatch.setattr(
        url_fetch, "forbidden_reason", lambda a: None if a == "127.0.0.1" else real_policy(a)
    )


def test_a_redirect_chain_to_the_test_server_is_followed(
    client, web_server, connections, test_server_counts_as_public
) -> None:
    """Control: the same chain that ends on an allowed address downloads fine."""
    reply = by_url(client, f"{web_server}/hops/3/public")
    assert reply.status_code == 201, reply.json
    assert connections == ["127.0.0.1"] * 5


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("metadata", "169.254.169.254"),
        ("ipv6-loopback", "::1"),
        ("mapped-loopback", "::ffff:127.0.0.2"),
        ("decimal-loopback", "127.0.0.2"),
        ("private", "192.168.0.10"),
        ("file", "http"),
    ],
)
def test_the_last_of_several_redirects_is_checked_too(
    client, web_server, connections, test_server_counts_as_public, target: str, named: str
) -> None:
    reply = by_url(client, f"{web_server}/hops/3/{target}")
    assert reply.status_code == 400 and named in reply.json["error"]
    assert connections == ["127.0.0.1"] * 4  # the four hops on the test server, nothing else


def test_an_endless_body_is_cut_at_the_download_limit(make_app, web_server) -> None:
    client = make_app(allow_private_urls=True, url_fetch_max_bytes=1_000_000).test_client()
    started = time.monotonic()
    reply = by_url(client, f"{web_server}/endless-chunks")
    assert reply.status_code == 413 and "url_fetch_max_bytes" in reply.json["error"]
    assert time.monotonic() - started < 10


def test_a_drip_fed_body_is_stopped_by_the_total_timeout(make_app, web_server) -> None:
    client = make_app(allow_private_urls=True, url_fetch_timeout_s=1.0).test_client()
    started = time.monotonic()
    reply = by_url(client, f"{web_server}/drip")
    assert reply.status_code == 400 and "Timed out" in reply.json["error"]
    assert time.monotonic() - started < 3


# --- Names and ids -----------------------------------------------------------------------

UNSAFE_MODEL_NAMES = [
    "../escaped",
    "../../etc",
    "/etc",
    "/tmp/evil",
    "a/b",
    "a\\b",
    "..",
    ".",
    ".hidden",
    "name\u202egnp.exe",  # right-to-left override: shows as "nameexe.png"
    "bad\x00name",
    "ｆｕｌｌｗｉｄｔｈ",
    "con",
    "x" * 300,
    "name\n",
    "energy-threshold",
]


def tree(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.parametrize("name", UNSAFE_MODEL_NAMES)
def test_unsafe_model_names_are_400_and_create_nothing(
    client: FlaskClient, tmp_path: Path, name: str
) -> None:
    audio_id = upload(client, SONG).json["channels"][0]["audio_id"]
    before = tree(tmp_path)
    reply = client.post(
        "/finetune-whisperseg",
        json={
            "audio_id": audio_id,
            "new_model_name": name,
            "annotated_areas": [{"onset": 0, "offset": 0.5}],
            "human_labels": [{"onset": 0.1, "offset": 0.2, "clustername": "a"}],
        },
    )
    assert reply.status_code == 400 and "name" in reply.json["error"]
    assert tree(tmp_path) == before
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/evil").exists()


@pytest.mark.parametrize("name", ["../models/whisperseg-tiny", "/etc/passwd", "a/b", "\x00"])
def test_unsafe_model_names_elsewhere_are_404(client: FlaskClient, name: str) -> None:
    audio_id = upload(client, SONG).json["channels"][0]["audio_id"]
    replies = [
        client.post("/get-labels", json={"audio_id": audio_id, "model_name": name}),
        client.post("/cancel-finetuning", json={"model_name": name}),
        client.get("/training-jobs/" + name.replace("/", "%2F")),
    ]
    for reply in replies:
        assert reply.status_code == 404 and reply.json["error"]


HOSTILE_AUDIO_IDS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..\\..\\boot.ini",
    "\x00",
    "\u202e",
    "%00",
    "a" * 1_000_000,
]


@pytest.mark.parametrize("audio_id", HOSTILE_AUDIO_IDS, ids=lambda a: repr(a[:20]))
def test_hostile_audio_ids_are_404(client: FlaskClient, audio_id: str) -> None:
    for route in (
        "/get-audio-clip-spec",
        "/get-audio-clip-wav",
        "/get-audio-clip-for-visualization",
        "/get-labels",
    ):
        reply = client.post(route, json={"audio_id": audio_id})
        assert reply.status_code == 404 and "Unknown audio_id" in reply.json["error"], route
    reply = client.post("/release-audio-given-ids", json={"audio_id_list": [audio_id]})
    assert reply.status_code == 201


def test_a_long_hash_id_round_trips(client: FlaskClient) -> None:
    hash_id = "h" * 10_000
    annotations = {"annotations": [{"onset": 1.0, "offset": 2.0}]}
    assert client.post(f"/post-annotations/{hash_id}", json=annotations).status_code == 201
    assert client.get(f"/get-annotations/{hash_id}").json[0]["annotations"] == [
        {"onset": 1.0, "offset": 2.0}
    ]


# --- Upload size on a live server ----------------------------------------------------------


@pytest.fixture(scope="module", params=["gunicorn", "python"])
def small_limit_server(request, tmp_path_factory) -> Iterator[LiveServer]:
    """A live server (both documented launchers) with a 1 MB upload limit."""
    root = tmp_path_factory.mktemp(f"live-{request.param}")
    server = LiveServer(root, {"WHISPERSEG_MAX_UPLOAD_MB": "1"}, launcher=request.param)
    with server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/upload", "multipart/form-data; boundary=x"), ("/post-annotations/h", "application/json")],
)
def test_a_huge_declared_body_is_refused_at_once(
    small_limit_server: LiveServer, path: str, content_type: str
) -> None:
    """10 GB announced, 1 kB sent: the 413 comes back without waiting for the rest."""
    connection = http.client.HTTPConnection("127.0.0.1", small_limit_server.port, timeout=10)
    started = time.monotonic()
    connection.putrequest("POST", path)
    connection.putheader("Content-Type", content_type)
    connection.putheader("Content-Length", str(10 * 2**30))
    connection.endheaders(b"--x\r\n" + b"\0" * 1024)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 413 and b"max_upload_mb" in body
    assert response.getheader("Content-Type") == "application/json"
    assert time.monotonic() - started < 5
    status = http.client.HTTPConnection("127.0.0.1", small_limit_server.port, timeout=10)
    status.request("GET", "/get-status")
    assert status.getresponse().status == 200  # and the server still serves
    status.close()
