"""The one error type of the adapter: a message for Label Studio's user and an HTTP status."""

from __future__ import annotations

from api.json_api import ApiError


class LabelStudioError(ApiError):
    """A request Label Studio made that cannot be answered as asked: ``{"error": message}``
    with ``status`` (4xx, or 502 when Label Studio's own API failed)."""
