"""The one result type that carries segments through the engine, the server and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

# A finetuned model writes species, individual and cluster name as one cluster string.
CLUSTER_SEPARATOR = "<==SEPARATOR==>"
UNKNOWN = "Unknown"


def join_cluster(species: str, individual: str, clustername: str) -> str:
    return CLUSTER_SEPARATOR.join((species, individual, clustername))


def split_cluster(cluster: str) -> tuple[str, str, str]:
    """(species, individual, clustername); a plain cluster string is the cluster name."""
    parts = cluster.split(CLUSTER_SEPARATOR)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return UNKNOWN, UNKNOWN, cluster


@dataclass(frozen=True, slots=True)
class Segment:
    """A labelled stretch of audio, times in seconds from the start of the recording.

    ``confidence`` is a model's calibrated chance (0-1) that this segment is right
    (``whisperseg.confidence``; inside the consensus step, the share of trials that
    agreed); 1.0 for human labels.
    """

    onset: float
    offset: float
    cluster: str
    confidence: float = 1.0

    @property
    def duration(self) -> float:
        return self.offset - self.onset

    def shifted(self, seconds: float) -> Segment:
        """The same segment ``seconds`` later (milliseconds kept exact)."""
        return Segment(
            round(self.onset + seconds, 6),
            round(self.offset + seconds, 6),
            self.cluster,
            self.confidence,
        )
