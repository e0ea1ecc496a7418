"""An app's services start with it and stop together when closed."""

from __future__ import annotations

import threading


def worker_threads() -> int:
    return sum(t.name == "finetune-worker" and t.is_alive() for t in threading.enumerate())


def test_closing_an_app_stops_its_training_thread_and_database(make_app):
    before = worker_threads()
    app = make_app()
    assert worker_threads() == before + 1
    services = app.extensions["whisperseg"]
    services.close()
    assert worker_threads() == before
    services.close()  # closing twice is harmless (teardown after an explicit close)
