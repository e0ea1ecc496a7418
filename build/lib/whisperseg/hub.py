"""Pull published WhisperSeg checkpoints from the Hugging Face hub (for users with internet)."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from whisperseg.folder_swap import replace_folder
from whisperseg.model import WhisperSegModel

PUBLISHED = {
    "whisperseg-base-animal-vad": "nccratliri/whisperseg-base-animal-vad",
    "whisperseg-animal-vad": "nccratliri/whisperseg-animal-vad",
    "whisperseg-base-animal-vad-ct2": "nccratliri/whisperseg-base-animal-vad-ct2",
    "whisperseg-animal-vad-ct2": "nccratliri/whisperseg-animal-vad-ct2",
}
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
_FILES = ["*.json", "*.safetensors", "*.bin", "*.txt", "*.model"]


class PullError(RuntimeError):
    """The checkpoint could not be fetched or is not a WhisperSeg folder."""


def resolve_repo(name: str) -> tuple[str, str]:
    """(repo id, local folder name) for a short published name or an ``owner/repo`` id."""
    if name in PUBLISHED:
        return PUBLISHED[name], name
    if _REPO_ID.fullmatch(name) and ".." not in name:
        return name, name.split("/")[1]
    known = ", ".join(PUBLISHED)
    raise PullError(f"unknown model {name!r}: use one of {known} or a hub id like owner/repo")


def pull(name: str, models_dir: Path) -> Path:
    """Download ``name`` into ``models_dir/<folder name>`` and check that it loads.

    The download lands in a hidden staging folder that is renamed into place only
    after the model loaded, so an interrupted pull never shows up as a model.
    """
    repo_id, folder_name = resolve_repo(name)
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".{folder_name}.{uuid.uuid4().hex}.pull"
    try:
        snapshot_download(repo_id, local_dir=staging, allow_patterns=_FILES)
        WhisperSegModel.load(staging, device="cpu")
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise PullError(
            f"could not download {repo_id} from the Hugging Face hub ({error}). "
            "Check the internet connection, or copy a downloaded checkpoint folder "
            f"into {models_dir} by hand."
        ) from error
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging / ".cache", ignore_errors=True)
    target = models_dir / folder_name
    replace_folder(staging, target)
    return target
