"""Fixtures: real recordings from ../shared/data, and apps built on a temporary data dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend import create_app
from server_settings import ServerSettings

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"
SHIPPED_MODEL = PROJECT / "models" / "whisperseg-tiny"


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


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., Flask]:
    """Build an app on ``tmp_path/data``; keyword arguments override settings.

    Its models folder is ``tmp_path/models``, holding a link to the shipped model, so
    models trained by a test never land in the project.
    """
    models_dir = tmp_path / "models"
    models_dir.mkdir(exist_ok=True)
    if SHIPPED_MODEL.is_dir() and not (models_dir / SHIPPED_MODEL.name).exists():
        (models_dir / SHIPPED_MODEL.name).symlink_to(SHIPPED_MODEL, target_is_directory=True)

    def build(**overrides) -> Flask:
        settings = {"data_dir": tmp_path / "data", "models_dir": models_dir, **overrides}
        return create_app(ServerSettings(**settings))

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
