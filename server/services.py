"""The long-lived parts of one server, built from its settings and closed together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from annotations.store import AnnotationStore
from audio_store import AudioStore
from finetune_worker import FinetuneWorker
from inference.runs import RunStore
from inference.service import SegmentationService
from jobs.record import FinetuneJobs
from model_registry import ModelRegistry
from server.access import ModelAccess
from server.auth import TokenAuth
from server.settings import ServerSettings


class Cluster(Protocol):
    """The workers of the distributed mode, as ``GET /workers`` lists them."""

    def workers(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


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
    cluster: Cluster | None = None  # the Celery workers; None when jobs run in this process

    @classmethod
    def start(cls, settings: ServerSettings) -> Services:
        """Open the stores under ``settings.data_dir``; jobs run in threads of this process,
        or on Celery workers when a broker is set."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        audio = AudioStore(
            budget_bytes=settings.audio_memory_budget_bytes,
            idle_timeout_s=settings.idle_timeout_hours * 3600,
            max_channels=settings.max_channels,
        )
        models = ModelRegistry(settings.models_dir, max_loaded=settings.max_loaded_models)
        cluster = None
        if settings.broker_url:
            segmentation, training, cluster = _distributed(settings, audio, models)
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
            cluster=cluster,
        )

    def close(self) -> None:
        """Stop the job threads (a running embedded finetune is marked interrupted), close
        the database."""
        if self.cluster is not None:
            self.cluster.close()
        self.segmentation.close()
        self.training.close()
        self.annotations.close()


def _distributed(
    settings: ServerSettings, audio: AudioStore, models: ModelRegistry
) -> tuple[SegmentationService, FinetuneJobs, Cluster]:
    """Job backends that submit to Celery workers through ``settings.broker_url``, and the
    server's share of watching the workers' leases."""
    from distributed.broker import Broker
    from distributed.finetune_jobs import CeleryFinetuneJobs
    from distributed.lease import Cluster as Workers
    from distributed.segmentation import CeleryRunQueue
    from distributed.shared_audio import audio_folder

    shared = audio_folder(settings.data_dir)
    segmentation_broker, training_broker = Broker(settings.broker_url), Broker(settings.broker_url)
    runs = RunStore()  # runs of a previous server process are taken up into it
    queue = CeleryRunQueue(segmentation_broker, audio, shared, runs)
    segmentation = SegmentationService(audio, models, runs=runs, queue=queue)
    training = CeleryFinetuneJobs(models, training_broker, shared)
    watch_broker = Broker(settings.broker_url)
    cluster = Workers(watch_broker, training.store, settings.lease_check_s)
    return segmentation, training, cluster
