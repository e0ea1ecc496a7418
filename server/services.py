"""The long-lived parts of one server, built from its settings and closed together."""

from __future__ import annotations

from dataclasses import dataclass

from annotations.store import AnnotationStore
from audio_store import AudioStore
from finetune_worker import FinetuneWorker
from model_registry import ModelRegistry
from server.access import ModelAccess
from server.auth import TokenAuth
from server.settings import ServerSettings


@dataclass(frozen=True)
class Services:
    """Per-app state: audio, annotations, models, the training worker and access rules."""

    settings: ServerSettings
    audio: AudioStore
    annotations: AnnotationStore
    models: ModelRegistry
    training: FinetuneWorker
    access: ModelAccess

    @classmethod
    def start(cls, settings: ServerSettings) -> Services:
        """Open the stores under ``settings.data_dir`` and start the training worker."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        models = ModelRegistry(settings.models_dir, max_loaded=settings.max_loaded_models)
        training = FinetuneWorker(models)
        return cls(
            settings=settings,
            audio=AudioStore(
                budget_bytes=settings.audio_memory_budget_bytes,
                idle_timeout_s=settings.idle_timeout_hours * 3600,
            ),
            annotations=AnnotationStore(settings.data_dir / "annotations.sqlite3"),
            models=models,
            training=training,
            access=ModelAccess(TokenAuth.from_file(settings.auth_tokens_file), models, training),
        )

    def close(self) -> None:
        """Stop the training worker (a running job is marked interrupted), close the database."""
        self.training.close()
        self.annotations.close()
