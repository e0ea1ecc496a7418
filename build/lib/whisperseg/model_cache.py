"""A bounded cache of loaded models, shared by the server's registry and the command line.

Loading takes seconds and hundreds of MB, so a model is loaded once however many ask
for it at the same moment, kept while its weights stay the same (the key holds the
identity of its ``config.json``), and the least recently used one is dropped beyond
``max_loaded``. Safe to share across threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

from whisperseg.model import WhisperSegModel


def folder_identity(folder: Path) -> tuple[int, int]:
    """Changes when a model folder is replaced (same name, new weights)."""
    info = (Path(folder) / "config.json").stat()
    return (info.st_ino, info.st_mtime_ns)


class ModelCache:
    def __init__(self, max_loaded: int = 2):
        self.max_loaded = max(1, max_loaded)
        self._lock = threading.Lock()
        # name -> (identity when loaded, model), least recently used first
        self._loaded: OrderedDict[Hashable, tuple[Hashable, WhisperSegModel]] = OrderedDict()
        self._load_locks: dict[Hashable, threading.Lock] = {}

    @property
    def names(self) -> list[Hashable]:
        """Names of the models in memory, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def get(
        self, name: Hashable, identity: Hashable, load: Callable[[], WhisperSegModel]
    ) -> WhisperSegModel:
        """The model cached under ``name`` if its identity is still ``identity``, else
        ``load()``, called once however many threads ask at once."""
        with self._lock:
            name_lock = self._load_locks.setdefault(name, threading.Lock())
        with name_lock:
            with self._lock:
                entry = self._loaded.get(name)
                if entry is not None and entry[0] == identity:
                    self._loaded.move_to_end(name)
                    return entry[1]
            model = load()
            with self._lock:
                self._loaded[name] = (identity, model)
                self._loaded.move_to_end(name)
                while len(self._loaded) > self.max_loaded:
                    self._loaded.popitem(last=False)
            return model
