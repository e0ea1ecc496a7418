"""``python tools/lint_layers.py``: ``lint-imports`` with the contracts of pyproject.toml, over
every package and top-level module of the project.

import-linter takes only packages as roots, and the project's fixed top-level modules
(``backend.py``, ``model_registry.py``, ...) are plain modules. A scratch folder, first
on the path, shows each of them as a package whose ``__init__.py`` links to the module,
so their own imports are checked like any package's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TOP_LEVEL_MODULES = ("backend", "finetune_worker", "model_registry", "audio_store", "spectrogram")


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        for name in TOP_LEVEL_MODULES:
            (Path(scratch) / name).mkdir()
            (Path(scratch) / name / "__init__.py").symlink_to(PROJECT / f"{name}.py")
        path = os.pathsep.join([scratch, str(PROJECT), os.environ.get("PYTHONPATH", "")])
        command = ["lint-imports", "--no-cache", str(PROJECT / "pyproject.toml"), *sys.argv[1:]]
        env = {**os.environ, "PYTHONPATH": path}
        return subprocess.call(command, cwd=scratch, env=env)


if __name__ == "__main__":
    sys.exit(main())
