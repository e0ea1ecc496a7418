"""Annotation lists as files other tools open: CSV, Raven selection table, Audacity labels.

Annotations come as the frontend posts them (and as ``segment_annotations`` turns a
model's segments into): dicts with ``onset``/``offset`` in seconds and
optional ``species``, ``individual``, ``clustername``, ``minFrequency``, ``maxFrequency``,
``filename``, ``channelIndex`` (0-based), where -1, null or a missing key mean "no value".
Rows are sorted by onset. Rows that carry a ``confidence`` (a model's segments, or a
prediction the frontend posted back) get a confidence column in CSV and Raven; without
one the columns stay as they were.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from whisperseg.segment import Segment, split_cluster

CSV_COLUMNS = (
    "onset",
    "offset",
    "minFrequency",
    "maxFrequency",
    "species",
    "individual",
    "clustername",
    "filename",
    "channelIndex",
)
RAVEN_COLUMNS = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Species",
    "Individual",
    "Cluster",
)
LABEL_KEYS = ("species", "individual", "clustername")
CONFIDENCE = "confidence"
# What the frontend sends for "no value": a missing key, null, "" or its -1 placeholder.
NO_VALUE = (None, "", -1, "-1")

Annotation = dict[str, Any]


@dataclass(frozen=True)
class ExportFormat:
    media_type: str
    extension: str
    render: Callable[[list[Annotation]], str]

    def file_name(self, hash_id: str) -> str:
        """A download name safe on any disk: the hash id with unusual characters replaced."""
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", hash_id) or "annotations"
        return f"{stem}.{self.extension}"


def _has_confidence(annotations: list[Annotation]) -> bool:
    return any(has_value(item.get(CONFIDENCE)) for item in annotations)


def to_csv(annotations: list[Annotation]) -> str:
    """Comma-separated, one header row of :data:`CSV_COLUMNS` (then ``confidence`` where a
    row carries one); values as posted."""
    buffer = io.StringIO()
    columns = CSV_COLUMNS + ((CONFIDENCE,) if _has_confidence(annotations) else ())
    writer = csv.DictWriter(buffer, columns, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(_by_onset(annotations))
    return buffer.getvalue()


def to_raven(annotations: list[Annotation]) -> str:
    """Raven selection table; an unknown low frequency is 0 Hz, an unknown high one empty;
    a ``Confidence`` column where a row carries one."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    confidence = _has_confidence(annotations)
    writer.writerow(RAVEN_COLUMNS + (("Confidence",) if confidence else ()))
    for number, item in enumerate(_by_onset(annotations), start=1):
        channel = _value(item, "channelIndex")
        low, high = _value(item, "minFrequency"), _value(item, "maxFrequency")
        writer.writerow(
            [
                number,
                "Spectrogram 1",
                int(channel) + 1 if channel is not None else 1,
                _seconds(item["onset"]),
                _seconds(item["offset"]),
                low if low is not None else 0,
                high if high is not None else "",
                *(_text(item, key) for key in LABEL_KEYS),
                *((_text(item, CONFIDENCE),) if confidence else ()),
            ]
        )
    return buffer.getvalue()


def to_audacity(annotations: list[Annotation]) -> str:
    """Audacity label track: ``onset<TAB>offset<TAB>species / individual / clustername``."""
    lines = []
    for item in _by_onset(annotations):
        label = " / ".join(t for t in (_text(item, k) for k in LABEL_KEYS) if t)
        lines.append(f"{_seconds(item['onset'])}\t{_seconds(item['offset'])}\t{label}\n")
    return "".join(lines)


FORMATS = {
    "csv": ExportFormat("text/csv", "csv", to_csv),
    "raven": ExportFormat("text/tab-separated-values", "selections.txt", to_raven),
    "audacity": ExportFormat("text/plain", "labels.txt", to_audacity),
}


def has_value(value: object) -> bool:
    """False for the frontend's "no value" markers (see :data:`NO_VALUE`)."""
    return value not in NO_VALUE


def segment_annotations(segments: list[Segment]) -> list[Annotation]:
    """A model's segments as annotations: its cluster split into species, individual and
    cluster name (a finetuned model writes them joined)."""
    rows = []
    for s in segments:
        species, individual, cluster = split_cluster(s.cluster)
        rows.append(
            {
                "onset": s.onset,
                "offset": s.offset,
                "species": species,
                "individual": individual,
                "clustername": cluster,
                "confidence": s.confidence,
            }
        )
    return rows


def _by_onset(annotations: list[Annotation]) -> list[Annotation]:
    return sorted(annotations, key=lambda a: float(a["onset"]))


def _value(item: Annotation, key: str) -> Any:
    """The value, or None for the frontend's "no value" markers."""
    value = item.get(key)
    return value if has_value(value) else None


def _text(item: Annotation, key: str) -> str:
    value = _value(item, key)
    return "" if value is None else str(value)


def _seconds(value: Any) -> str:
    return f"{float(value):.6f}"
