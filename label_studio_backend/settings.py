"""What the adapter needs to know about Label Studio, from environment variables.

Each setting reads ``WHISPERSEG_LABEL_STUDIO_<NAME>``; the URL and the key also read the
names Label Studio's own ML backends use (``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY``).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str, *others: str) -> AliasChoices:
    return AliasChoices(f"WHISPERSEG_LABEL_STUDIO_{name}", *others)


class LabelStudioSettings(BaseSettings):
    """Where Label Studio is, and how this server acts towards it."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # Label Studio's base URL (http://127.0.0.1:8080): files it serves (/data/upload/...,
    # /data/local-files/...) are fetched from there, and training reads projects through it.
    url: str | None = Field(None, validation_alias=_env("URL", "LABEL_STUDIO_URL"))
    # A Label Studio access token (legacy token or personal access token) of a user who can
    # read the projects connected to this server.
    api_key: str | None = Field(None, validation_alias=_env("API_KEY", "LABEL_STUDIO_API_KEY"))
    # This server's token the adapter acts with when --auth-tokens-file is set (needs the
    # "train" right to train); ignored with authentication off.
    token: str | None = Field(None, validation_alias=_env("TOKEN"))
    # The model a project starts from (default: the server's default model).
    model: str | None = Field(None, validation_alias=_env("MODEL"))
    # Start a finetuning job on every new or changed annotation too, not only on the
    # training button (a job already queued or training for the project is not doubled).
    train_on_annotation: bool = Field(False, validation_alias=_env("TRAIN_ON_ANNOTATION"))

    @property
    def base_url(self) -> str | None:
        return self.url.rstrip("/") if self.url else None
