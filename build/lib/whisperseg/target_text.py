"""The decoder's text: segments of one window written as time tokens and cluster ids.

Grammar (WHISPERSEG.md): a species token, then for each segment in time order
``<|ON|>CLUSTER<|OFF|>``, where ON/OFF are time-token indices of
``2 * spec_time_step`` seconds and CLUSTER is an integer from the cluster codebook.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

UNKNOWN_SPECIES_TOKEN = "<|unknown|>"
PROMPT_TOKENS = ("<|startoftranscript|>", "<|en|>", "<|notimestamps|>")
_SEGMENT_PATTERN = re.compile(r"<\|(\d+)\|>\s*(\d+)\s*<\|(\d+)\|>")


def time_token(index: int) -> str:
    return f"<|{index}|>"


@dataclass(frozen=True, slots=True)
class TokenSegment:
    """A segment inside one window, in time-token units (what the model reads and writes)."""

    onset: int
    offset: int
    cluster_id: int


def format_target_text(segments: Iterable[TokenSegment], species_token: str) -> str:
    body = "".join(
        f"{time_token(s.onset)}{s.cluster_id}{time_token(s.offset)}"
        for s in sorted(segments, key=lambda s: (s.onset, s.offset))
    )
    return species_token + body


def parse_target_text(text: str, max_time_index: int) -> list[TokenSegment]:
    """Tolerant parse of generated text: malformed or reversed groups are skipped."""
    found = []
    for match in _SEGMENT_PATTERN.finditer(text):
        onset, cluster_id, offset = (int(g) for g in match.groups())
        if onset < offset <= max_time_index:
            found.append(TokenSegment(onset, offset, cluster_id))
    return found
