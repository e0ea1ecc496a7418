"""Who may see and use which models and jobs: the one place the visibility rules live.

With authentication off everyone sees everything. With it on, a user sees the shipped
and pulled models (no owner) and the models and jobs they trained themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.record import FinetuneJobs, JobRecord, UnknownJobError
from model_registry import ModelInfo, ModelRegistry, UnknownModelError
from server.auth import Right, TokenAuth


@dataclass(frozen=True)
class ModelAccess:
    """Models and jobs as one token's user may see them."""

    auth: TokenAuth
    models: ModelRegistry
    training: FinetuneJobs

    def user(self, token: str | None, right: Right = "inference") -> str | None:
        """The user a token acts for; raises NotAuthorized (403)."""
        return self.auth.user(token, right)

    def visible_models(self, user: str | None, finetunable: bool = False) -> list[ModelInfo]:
        """Ready models this user may use; only those a job can start from if ``finetunable``."""
        return [
            info
            for info in self.models.list_ready()
            if self.auth.can_see(user, info.owner) and (info.can_finetune or not finetunable)
        ]

    def usable_model(self, name: str | None, user: str | None) -> str:
        """The named model (default: the shipped one) if it is ready and this user may use it."""
        name = name or self.models.default_model_name
        if all(info.name != name for info in self.visible_models(user)):
            raise UnknownModelError(
                f"Unknown model {name!r}: ask list-models-available-for-inference"
            )
        return name

    def visible_jobs(self, user: str | None) -> list[JobRecord]:
        """Every job this user may see, oldest first."""
        return [j for j in self.training.jobs() if self.auth.can_see(user, j.owner)]

    def visible_job(self, name: str, user: str | None) -> JobRecord:
        """One job this user may see; UnknownJobError (404) otherwise."""
        job = next((j for j in self.visible_jobs(user) if j.name == name), None)
        if job is None:
            raise UnknownJobError(f"No finetuning job named {name!r}")
        return job
