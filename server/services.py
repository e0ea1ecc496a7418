"""The long-lived parts of one server, built from its settings and closed together."""

from __future__ import annotations

from dataclasses import dataclass

from annotations.store import AnnotationStore
from audio_store import AudioStore
from finetune_worker import FinetuneWorker
from inference.service import SegmentationService
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
    segmentation: SegmentationService
    training: FinetuneWorker
    access: ModelAccess

    @classmethod
    def start(cls, settings: ServerSettings) -> Services:
        """Open the stores under ``settings.data_dir``, start the job threads."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        audio = AudioStore(
            budget_bytes=settings.audio_memory_budget_bytes,
            idle_timeout_s=settings.idle_timeout_hours * 3600,
        )
        models = ModelRegistry(settings.models_dir, max_loaded=settings.max_loaded_models)
        segmentation = SegmentationService(audio, models)
        audio.on_removal(segmentation.drop_audio)  # kept predictions go with their audio
        training = FinetuneWorker(models)
        return cls(
            settings=settings,
            audio=audio,
            annotations=AnnotationStore(settings.data_dir / "annotations.sqlite3"),
            models=models,
            segmentation=segmentation,
            training=training,
            access=ModelAccess(TokenAuth.from_file(settings.auth_tokens_file), models, training),
        )

    def close(self) -> None:
        """Stop the job threads (a running finetune is marked interrupted), close the database."""
        self.segmentation.close()
        self.training.close()
        self.annotations.close()
