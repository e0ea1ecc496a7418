"""Label Studio's API, as this backend calls it: through ``label-studio-sdk``.

The SDK (``LabelStudio(base_url, api_key)``) takes a legacy token or a personal access
token (it refreshes the short-lived access token itself), so either kind works here. It is
imported on first use: importing it costs seconds of CPU, and a server that never talks
to Label Studio should not pay them at start.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests

from label_studio_backend.errors import LabelStudioError
from label_studio_backend.settings import LabelStudioSettings

log = logging.getLogger(__name__)
CHUNK_BYTES = 64 * 1024
API_TIMEOUT_S = 60.0


class LabelStudioApi:
    """One SDK client for the Label Studio this server was started with; thread-safe."""

    def __init__(self, settings: LabelStudioSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._client: Any = None

    @property
    def configured(self) -> bool:
        return bool(self.settings.base_url and self.settings.api_key)

    def require(self, what: str) -> None:
        """Raise a clear 400 when the server was started without Label Studio's URL or key."""
        if not self.configured:
            raise LabelStudioError(
                400,
                f"{what} needs Label Studio's URL and an access token: start this server with "
                "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (or WHISPERSEG_LABEL_STUDIO_URL and "
                "WHISPERSEG_LABEL_STUDIO_API_KEY) set",
            )

    def client(self) -> Any:
        """The SDK client, made (and the SDK imported) on first use."""
        self.require("Reading Label Studio")
        with self._lock:
            if self._client is None:
                from label_studio_sdk import LabelStudio

                self._client = LabelStudio(
                    base_url=self.settings.base_url,
                    api_key=self.settings.api_key,
                    timeout=API_TIMEOUT_S,
                )
            return self._client

    def warm_up(self) -> None:
        """Import the SDK in a background thread, so the first real call does not wait."""
        if self.configured and self._client is None:
            threading.Thread(
                target=self._quiet_client, name="label-studio-sdk", daemon=True
            ).start()

    def _quiet_client(self) -> None:
        try:
            self.client()
        except Exception:
            log.warning("could not make the Label Studio client", exc_info=True)

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header the SDK sends (``Token <key>`` or ``Bearer <access>``)."""
        headers = self._call("Authenticating with Label Studio", self._sdk_headers)
        return {"Authorization": headers["Authorization"]}

    def _sdk_headers(self) -> dict[str, str]:
        # The SDK exposes no public call for its headers; its client wrapper's get_headers()
        # is what every SDK request uses (and refreshes a personal access token).
        return self.client()._client_wrapper.get_headers()

    def label_config(self, project_id: int) -> str:
        project = self._call(
            f"Reading project {project_id}", lambda: self.client().projects.get(id=project_id)
        )
        return project.label_config or ""

    def annotated_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project with at least one annotation that was not cancelled."""

        def read() -> list[dict[str, Any]]:
            tasks = self.client().tasks.list(project=project_id, fields="all")
            return [_as_dict(task) for task in tasks]

        tasks = self._call(f"Reading the tasks of project {project_id}", read)
        return [task for task in tasks if usable_annotations(task)]

    def download(self, url: str, max_bytes: int, timeout_s: float) -> bytes:
        """A file Label Studio serves (``url`` relative to it), with this server's token."""
        self.require(f"Fetching {url}")
        full = self.settings.base_url + "/" + url.lstrip("/") if url.startswith("/") else url
        headers = self.auth_headers()
        try:
            with requests.get(full, headers=headers, stream=True, timeout=timeout_s) as reply:
                if reply.status_code != 200:
                    raise LabelStudioError(
                        400, f"Label Studio answered HTTP {reply.status_code} for {full}"
                    )
                return _bounded_body(reply, full, max_bytes)
        except requests.RequestException as exc:
            raise LabelStudioError(
                400, f"Could not fetch {full} from Label Studio: {exc}"
            ) from None

    def _call(self, what: str, call: Any) -> Any:
        """Run an SDK call; its errors become a LabelStudioError naming what was tried."""
        try:
            return call()
        except LabelStudioError:
            raise
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            body = getattr(exc, "body", None)
            detail = f"HTTP {status}: {body}" if status else f"{type(exc).__name__}: {exc}"
            raise LabelStudioError(
                502, f"{what} at {self.settings.base_url} failed ({detail})"
            ) from None


def usable_annotations(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's annotations that were not cancelled (skipped), oldest first."""
    annotations = task.get("annotations") or []
    return [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]


def _as_dict(task: Any) -> dict[str, Any]:
    if isinstance(task, dict):
        return task
    return task.model_dump() if hasattr(task, "model_dump") else task.dict()


def _bounded_body(reply: requests.Response, url: str, max_bytes: int) -> bytes:
    declared = reply.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise LabelStudioError(413, f"{url} is larger than the download limit of {max_bytes} bytes")
    chunks, total = [], 0
    for chunk in reply.iter_content(CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise LabelStudioError(
                413, f"{url} is larger than the download limit of {max_bytes} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)
