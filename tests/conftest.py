"""Fixtures: real recordings from ../shared/data, and apps built on a temporary data dir.

The suite runs on pytest-xdist workers (``-n auto``); each worker, and every process it
starts, gets its share of the CPU's torch threads. ``-m "not slow"`` is the quick loop: it
leaves out what trains, segments real recordings or starts server processes, and fuzzes with
fewer examples.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings

from backend import create_app
from server.settings import ServerSettings
from tests.support.local_cluster import RedisServer, Workers
from whisperseg.initialize import random_tiny

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"
SHIPPED_MODEL = PROJECT / "models" / "whisperseg-tiny"


FUZZ_PROFILE = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("full", max_examples=100, **FUZZ_PROFILE)  # Hypothesis' default
settings.register_profile("quick", max_examples=40, **FUZZ_PROFILE)


def pytest_configure(config: pytest.Config) -> None:
    quick = "not slow" in (config.getoption("markexpr") or "")
    settings.load_profile("quick" if quick else "full")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    threads = max(1, (os.cpu_count() or 1) // workers)
    torch.set_num_threads(threads)
    # Servers, workers and scripts a test starts inherit the share: on 2 cores, two
    # processes each spinning 2 threads slow torch far more than 1 thread each.
    os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared annotated recordings; tests using them skip where the folder is absent."""
    if not (SHARED_DATA / "zebra_finch").is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA} (see shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def zebra_finch_wav(shared_data: Path) -> Path:
    """A real 32 kHz mono zebra finch song with its human annotations beside it (.json)."""
    return shared_data / "zebra_finch" / "adults" / "zebra_finch_g17y2U-f00007.wav"


@pytest.fixture(scope="session")
def saved_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One random tiny WhisperSeg model, saved once per test session (do not change it)."""
    model = random_tiny(d_model=32)
    model.default_segmentation_config = {"test": {"spec_time_step": 0.0025, "num_trials": 1}}
    folder = tmp_path_factory.mktemp("tiny-model") / "tiny"
    model.save(folder)
    return folder


@pytest.fixture
def tiny_folder(tmp_path: Path, saved_tiny_model: Path) -> Path:
    """A random tiny model (one trial per segmentation: fast) in ``tmp_path/tiny``, this
    test's own copy."""
    return Path(shutil.copytree(saved_tiny_model, tmp_path / "tiny"))


@pytest.fixture
def tiny_initial_model(tmp_path: Path, saved_tiny_model: Path) -> str:
    """The random tiny model in ``make_app``'s models folder, for jobs to start from: its
    steps take milliseconds, so a job lasts about as long as its step count says. For tests
    of how jobs run, not of what they learn."""
    shutil.copytree(saved_tiny_model, tmp_path / "models" / "tiny")
    return "tiny"


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build an app on ``tmp_path/data``; keyword arguments override settings.

    Its models folder is ``tmp_path/models``, holding a link to the shipped model, so
    models trained by a test never land in the project. Every app built is closed
    (training worker stopped, database closed) when the test ends.
    """
    models_dir = tmp_path / "models"
    models_dir.mkdir(exist_ok=True)
    if SHIPPED_MODEL.is_dir() and not (models_dir / SHIPPED_MODEL.name).exists():
        (models_dir / SHIPPED_MODEL.name).symlink_to(SHIPPED_MODEL, target_is_directory=True)

    built: list[Flask] = []

    def build(**overrides) -> Flask:
        settings = {"data_dir": tmp_path / "data", "models_dir": models_dir, **overrides}
        built.append(create_app(ServerSettings(**settings)))
        return built[-1]

    yield build
    for app in built:
        app.extensions["whisperseg"].close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own (free port, append-only file under tmp_path)."""
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def workers(redis_server: RedisServer, tmp_path: Path) -> Iterator[Workers]:
    """Celery workers on the folders ``make_app`` gives the server; none started yet."""
    group = Workers(redis_server.url, tmp_path / "models", tmp_path / "data", tmp_path / "logs")
    yield group
    group.stop_all()
    print(group.logs_tail())  # shown when the test failed


@pytest.fixture(params=["embedded", pytest.param("distributed", marks=pytest.mark.slow)])
def job_mode(request: pytest.FixtureRequest) -> str:
    """Job tests run twice: jobs in the server's threads, and on a Celery worker."""
    return request.param


@pytest.fixture
def make_jobs_app(
    make_app: Callable[..., Flask], job_mode: str, request: pytest.FixtureRequest
) -> Callable[..., Flask]:
    """``make_app`` in the test's job mode: distributed, with Redis and one worker."""
    if job_mode == "embedded":
        return make_app
    group: Workers = request.getfixturevalue("workers")
    group.start(1)

    def build(**overrides) -> Flask:
        return make_app(broker_url=group.broker_url, **overrides)

    return build


@pytest.fixture
def jobs_client(make_jobs_app: Callable[..., Flask]) -> FlaskClient:
    return make_jobs_app().test_client()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
