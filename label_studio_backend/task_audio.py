"""A task's audio URL -> a channel in this server's audio store (fetched once, then kept).

Where a URL points decides how it is fetched:

- files Label Studio serves (a path such as ``/data/upload/3/x.wav``,
  ``/data/local-files/?d=...``, ``/tasks/7/resolve/?fileuri=...``, or a URL on the Label
  Studio this server was started with) come from that Label Studio, with its access token;
- any other http(s) URL goes through ``audio.url_fetch`` under the same rules as
  ``/upload-by-url`` (no loopback, private or link-local addresses unless
  ``--allow-private-urls``; every redirect re-checked; size and time bounded).

Only the first channel of a file is segmented (Label Studio's regions name channel 0).
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from audio.url_fetch import fetch_url
from audio_store import AudioStore, Channel, UnknownAudio
from label_studio_backend.errors import LabelStudioError
from label_studio_backend.ls_api import LabelStudioApi
from server.settings import ServerSettings


def is_label_studio_file(url: str, base_url: str | None) -> bool:
    """True for a path (served by Label Studio) or a URL on Label Studio's own origin."""
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc:
        return url.startswith("/")
    if not base_url:
        return False
    base = urlsplit(base_url)
    return (parts.scheme, parts.netloc.lower()) == (base.scheme, base.netloc.lower())


class TaskAudio:
    """Audio ids by task URL; a URL whose audio was released or evicted is fetched again."""

    def __init__(self, store: AudioStore, api: LabelStudioApi, settings: ServerSettings):
        self.store, self.api, self.settings = store, api, settings
        self._lock = threading.Lock()
        self._ids: dict[str, str] = {}

    def audio_id(self, url: object) -> str:
        """The stored first channel of ``url``; LabelStudioError (400/413) when it cannot be."""
        if not isinstance(url, str) or not url.strip():
            raise LabelStudioError(400, f"The task's audio URL is missing or not text: {url!r}")
        url = url.strip()
        with self._lock:
            known = self._ids.get(url)
        if known is not None and known in self.store:
            return known
        _, ids = self.store.add_file(self._fetch(url))
        self.store.release(ids[1:])
        with self._lock:
            self._ids[url] = ids[0]
        return ids[0]

    def channel(self, url: object) -> tuple[str, Channel]:
        """(audio id, channel) of ``url``, fetching again if it went between the two calls."""
        for _ in range(2):
            audio_id = self.audio_id(url)
            try:
                return audio_id, self.store.get(audio_id)
            except UnknownAudio:
                continue
        raise LabelStudioError(400, f"The audio of {url} could not be kept in memory")

    def _fetch(self, url: str) -> bytes:
        limit = min(self.settings.url_fetch_max_bytes, self.settings.max_upload_bytes)
        timeout = self.settings.url_fetch_timeout_s
        if is_label_studio_file(url, self.api.settings.base_url):
            return self.api.download(url, limit, timeout)
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise LabelStudioError(
                400,
                f"Cannot fetch the task's audio {url!r}: only http(s) URLs and files served by "
                "Label Studio are supported (for cloud storage, let Label Studio serve the files)",
            )
        return fetch_url(
            url, max_bytes=limit, timeout_s=timeout, allow_private=self.settings.allow_private_urls
        )
