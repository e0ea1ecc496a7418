"""The layers the code keeps by itself: the import contracts hold, and the engine installs
and runs on its own, outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns("__pycache__")
SERVER_MODULES = ("flask", "flask_cors", "werkzeug", "celery", "kombu", "redis", "gunicorn")


def test_the_import_contracts_hold() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT / "tools" / "lint_layers.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_plain_lint_imports_holds_over_the_packages() -> None:
    """``lint-imports`` as a newcomer runs it, in the checkout (top-level modules skipped)."""
    result = subprocess.run(
        ["lint-imports", "--no-cache"], capture_output=True, text=True, cwd=PROJECT, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.slow  # a fresh interpreter importing torch and all: lint-imports is the quick check
def test_importing_every_engine_module_loads_no_server_module() -> None:
    script = (
        "import pkgutil, sys, whisperseg\n"
        "for m in pkgutil.walk_packages(whisperseg.__path__, 'whisperseg.'):\n"
        "    if m.name != 'whisperseg.__main__':\n"
        "        __import__(m.name)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {SERVER_MODULES!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_pip_install_gives_a_whisperseg_package_and_command_outside_the_checkout(
    tmp_path: Path,
) -> None:
    """A fresh virtual environment (seeing this machine's packages, so nothing is
    downloaded), ``pip install .``, then a notebook's folder elsewhere."""
    env_dir = tmp_path / "env"
    venv.create(env_dir, system_site_packages=True)  # its pip and setuptools: this machine's
    python, command = env_dir / "bin" / "python", env_dir / "bin" / "whisperseg"
    source = tmp_path / "source"  # a copy: building leaves build/ beside the sources
    shutil.copytree(PROJECT / "whisperseg", source / "whisperseg", ignore=IGNORED)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT / name, source / name)
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-build-isolation", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    notebook = tmp_path / "notebook"
    notebook.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [python, "-c", "import whisperseg, backend"], capture_output=True, text=True, cwd=notebook
    )
    assert "No module named 'backend'" in where.stderr  # only the engine was installed
    found = subprocess.run(
        [python, "-c", "import whisperseg; print(whisperseg.__file__)"],
        capture_output=True,
        text=True,
        cwd=notebook,
        env=env,
    )
    assert found.returncode == 0 and str(env_dir) in found.stdout, found.stderr
    song = PROJECT / "example_audios" / "synthetic_song.wav"
    model = PROJECT / "models" / "whisperseg-tiny"
    segmented = subprocess.run(
        [command, "segment", str(song), "--model", str(model), "--num-trials", "1"],
        capture_output=True,
        text=True,
        cwd=notebook,
        env=env,
        timeout=600,
    )
    assert segmented.returncode == 0, segmented.stderr
    header, *rows = segmented.stdout.strip().splitlines()
    assert header == "file,onset,offset,species,individual,cluster,confidence"
    assert len(rows) > 10
