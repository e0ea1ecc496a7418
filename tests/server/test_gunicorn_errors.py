"""gunicorn answers over-long request lines (414) and too many headers (431) itself, before
the app: those replies are JSON ``{"error": ...}`` too (``gunicorn.conf.py``)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.gunicorn_errors import json_error_response
from tests.support.live_server import LiveServer


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("gunicorn")) as server:
        yield server


def raw_request(server: LiveServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (requests would refuse some), read the whole reply."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_the_json_error_reply_is_well_formed() -> None:
    reply = json_error_response(414, "URI Too Long", "Request Line is too large (5000 > 4094)")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert body == b'{"error": "URI Too Long: Request Line is too large (5000 > 4094)"}'


@pytest.mark.slow
def test_gunicorn_refuses_a_long_request_line_with_json_414(gunicorn_server: LiveServer) -> None:
    path = "/get-annotations/" + "a" * 5000
    status, headers, body = raw_request(
        gunicorn_server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    assert status == 414
    assert headers["Content-Type"] == "application/json"
    assert "too large" in json.loads(body)["error"]


@pytest.mark.slow
def test_gunicorn_refuses_too_many_headers_with_json_431(gunicorn_server: LiveServer) -> None:
    headers = "".join(f"X-Header-{i}: {i}\r\n" for i in range(120))
    request = f"GET /get-status HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
    status, reply_headers, body = raw_request(gunicorn_server, request)
    assert status == 431
    assert reply_headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"].startswith("Request Header Fields Too Large")


@pytest.mark.slow
def test_the_app_still_answers_under_the_config(gunicorn_server: LiveServer) -> None:
    status, _, body = raw_request(
        gunicorn_server, b"GET /get-status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and b"success" in body


def test_the_config_file_is_where_gunicorn_reads_it() -> None:
    assert (Path(__file__).resolve().parents[2] / "gunicorn.conf.py").is_file()
