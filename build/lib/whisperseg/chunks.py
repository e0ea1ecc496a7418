"""Segment a long recording chunk by chunk: results arrive in order, memory stays flat.

Each chunk is segmented with a margin of audio on both sides, and keeps only the
segments whose onset falls inside it, so a call that crosses a chunk edge is found
whole, once. The margin must hold the segmenter's context (a WhisperSeg window) and
the longest call; the chunk is many margins long, so the overlap costs little.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from whisperseg.segment import Segment

# Chunks are at least this many margins long: the overlap costs at most 2 / this share.
MARGINS_PER_CHUNK = 20
MIN_CHUNK_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Chunk:
    """Onsets in [keep_start, keep_end) s belong to it; samples [read_start, read_end) are read."""

    keep_start: float
    keep_end: float
    read_start: int
    read_end: int


def plan_chunks(num_samples: int, sr: int, margin_s: float) -> list[Chunk]:
    """Chunks covering the recording; one chunk, without margins, when it is short."""
    duration = num_samples / sr
    length = max(MIN_CHUNK_SECONDS, MARGINS_PER_CHUNK * margin_s)
    count = max(1, math.ceil(duration / length))
    margin = round(margin_s * sr)
    chunks = []
    for index in range(count):
        start, end = index * length, min(duration, (index + 1) * length)
        read_start = 0 if index == 0 else max(0, round(start * sr) - margin)
        read_end = num_samples if index == count - 1 else min(num_samples, round(end * sr) + margin)
        keep_end = math.inf if index == count - 1 else end
        chunks.append(Chunk(start, keep_end, read_start, read_end))
    return chunks


def segment_in_chunks(
    segment: Callable[[np.ndarray], list[Segment]],
    audio: np.ndarray,
    sr: int,
    margin_s: float,
    first_chunk: int = 0,
) -> Iterator[tuple[float, list[Segment]]]:
    """(fraction of the recording done, the chunk's segments in recording seconds), in order.

    ``segment`` turns a stretch of ``audio`` into segments in seconds from its start;
    ``first_chunk`` resumes after the chunks a lost worker already reported.
    """
    chunks = plan_chunks(len(audio), sr, margin_s)
    for chunk in chunks[first_chunk:]:
        offset = chunk.read_start / sr
        found = segment(audio[chunk.read_start : chunk.read_end])
        shifted = [s.shifted(offset) for s in found]
        kept = [s for s in shifted if chunk.keep_start <= s.onset < chunk.keep_end]
        yield min(1.0, chunk.keep_end * sr / max(1, len(audio))), kept
