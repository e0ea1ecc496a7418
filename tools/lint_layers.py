"""``python tools/lint_layers.py``: ``lint-imports`` with the contracts of pyproject.toml, over
every package and top-level module of the project.

import-linter takes only packages as roots, and the project's fixed top-level modules
(``backend.py``, ``model_registry.py``, ...) are plain modules: pyproject.toml names them as
optional layers, in parentheses, so a plain ``lint-imports`` checks the packages and skips
them. Here a scratch folder, first on the path, shows each of them as a package whose
``__init__.py`` links to the module, and a copy of the configuration adds them to the root
packages, so their own imports are checked like any package's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def _ini_value(value: object) -> str:
    if isinstance(value, list):
        return "".join(f"\n    {item}" for item in value)
    return str(value)


def _ini(section: str, values: dict) -> list[str]:
    return [f"[{section}]", *(f"{k} = {_ini_value(v)}" for k, v in values.items()), ""]


def top_level_modules(config: dict) -> list[str]:
    """The optional layers that are the project's top-level ``.py`` files."""
    names = {
        name
        for contract in config.get("contracts", [])
        for layer in contract.get("layers", [])
        for name in re.findall(r"\((\w+)\)", layer)
    }
    return sorted(n for n in names if (PROJECT / f"{n}.py").is_file())


def main() -> int:
    config = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["importlinter"]
    modules = top_level_modules(config)
    settings = {k: v for k, v in config.items() if k != "contracts"}
    settings["root_packages"] = [*config["root_packages"], *modules]
    lines = _ini("importlinter", settings)
    for number, contract in enumerate(config.get("contracts", []), start=1):
        lines += _ini(f"importlinter:contract:{number}", contract)
    with tempfile.TemporaryDirectory() as scratch:
        for name in modules:
            (Path(scratch) / name).mkdir()
            (Path(scratch) / name / "__init__.py").symlink_to(PROJECT / f"{name}.py")
        (Path(scratch) / "importlinter.ini").write_text("\n".join(lines))
        path = os.pathsep.join([scratch, str(PROJECT), os.environ.get("PYTHONPATH", "")])
        command = ["lint-imports", "--no-cache", "--config", "importlinter.ini", *sys.argv[1:]]
        env = {**os.environ, "PYTHONPATH": path}
        return subprocess.call(command, cwd=scratch, env=env)


if __name__ == "__main__":
    sys.exit(main())
