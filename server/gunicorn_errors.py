"""gunicorn's own error replies as the server's JSON ``{"error": ...}``, never HTML.

gunicorn answers some requests itself, before the app sees them: 414 for a request line
over ``--limit-request-line`` (4094 bytes), 431 for more than ``--limit-request-fields``
headers (100), 400 for a malformed request. It writes them with ``gunicorn.util.write_error``,
an HTML page. :func:`install` replaces that function, in the worker process, with one that
writes the same status and reason with a JSON body. ``gunicorn.conf.py`` at the project's
root (read by gunicorn from the working directory, so the README's command needs no new
flag) calls it when a worker starts.
"""

from __future__ import annotations

import json


def json_error_response(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 reply: ``status reason``, JSON body ``{"error": ...}``, closed after."""
    text = f"{reason}: {message}" if message else reason
    body = json.dumps({"error": text}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


def install() -> None:
    """Make this process's gunicorn write its error replies as JSON."""
    from gunicorn import util

    def write_error(sock, status_int: int, reason: str, mesg: str) -> None:
        util.write_nonblock(sock, json_error_response(int(status_int), reason, mesg))

    util.write_error = write_error
