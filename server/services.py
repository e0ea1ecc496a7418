"""The long-lived parts of one server, built from its settings and closed together."""

from __future__ import annotations

from dataclasses import dataclass

from annotations.store import AnnotationStore
from audio_store import AudioStore
from finetune_worker import FinetuneWorker
from inference.service import SegmentationService
from jobs.record import FinetuneJobs
from model_registry import ModelRegistry
from server.access import ModelAccess
from server.auth import TokenAuth
from server.settings import ServerSettings


@dataclass(frozen=True)
class Services:
    """Per-app state: audio, annotations, models, the job backends and access rules."""

    settings: ServerSettings
    audio: AudioStore
    annotations: AnnotationStore
    models: ModelRegistry
    segmentation: SegmentationService
    training: FinetuneJobs
    access: ModelAccess

    @classmethod
    def start(cls, settings: ServerSettings) -> Services:
        """Open the stores under ``settings.data_dir``; jobs run in threads of this process,
        or on Celery workers when a broker is set."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        audio = AudioStore(
            budget_bytes=settings.audio_memory_budget_bytes,
            idle_timeout_s=settings.idle_timeout_hours * 3600,
        )
        models = ModelRegistry(settings.models_dir, max_loaded=settings.max_loaded_models)
        if settings.broker_url:
            segmentation, training = _distributed(settings, audio, models)
        else:
            segmentation, training = SegmentationService(audio, models), FinetuneWorker(models)
        audio.on_removal(segmentation.drop_audio)  # kept predictions go with their audio
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
        """Stop the job threads (a running embedded finetune is marked interrupted), close
        the database."""
        self.segmentation.close()
        self.training.close()
        self.annotations.close()


def _distributed(
    settings: ServerSettings, audio: AudioStore, models: ModelRegistry
) -> tuple[SegmentationService, FinetuneJobs]:
    """Job backends that submit to Celery workers through ``settings.broker_url``."""
    from distributed.broker import Broker
    from distributed.finetune_jobs import CeleryFinetuneJobs
    from distributed.segmentation import CeleryRunQueue
    from distributed.shared_audio import audio_folder

    shared = audio_folder(settings.data_dir)
    segmentation_broker, training_broker = Broker(settings.broker_url), Broker(settings.broker_url)
    queue = CeleryRunQueue(segmentation_broker, audio, shared)
    segmentation = SegmentationService(audio, models, queue=queue)
    return segmentation, CeleryFinetuneJobs(models, training_broker, shared)
