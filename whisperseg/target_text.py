"""The decoder's text: segments of one window written as time tokens and cluster ids.

Grammar (WHISPERSEG.md): a species token, then for each segment in time order
``<|ON|>CLUSTER<|OFF|>``, where ON/OFF are time-token indices of
``2 * spec_time_step`` seconds and CLUSTER is an integer from the cluster codebook.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

UNKNOWN_SPECIES_TOKEN = "<|unknown|>"
PROMPT_TOKENS = ("<|startoftranscript|>", "<|en|>", "<|notimestamps|>")
_SEGMENT_PATTERN = re.compile(r"<\|(\d+)\|>\s*(\d+)\s*<\|(\d+)\|>")


def time_token(index: int) -> str:
    return f"<|{index}|>"


@dataclass(frozen=True, slots=True)
class TokenSegment:
    """A segment inside one window, in time-token units (what the model reads and writes).

    ``score``: how sure the decoder was of both boundaries (the product of the probability
    it gave the onset and the offset token's neighbourhood; 1.0 when not measured).
    """

    onset: int
    offset: int
    cluster_id: int
    score: float = field(default=1.0, compare=False)


def format_target_text(segments: Iterable[TokenSegment], species_token: str) -> str:
    body = "".join(
        f"{time_token(s.onset)}{s.cluster_id}{time_token(s.offset)}"
        for s in sorted(segments, key=lambda s: (s.onset, s.offset))
    )
    return species_token + body


def parse_target_text(text: str, max_time_index: int) -> list[TokenSegment]:
    """Tolerant parse of generated text: malformed or reversed groups are skipped."""
    return parse_tokens([text], None, max_time_index)


def parse_tokens(
    pieces: Sequence[str], scores: Sequence[float] | None, max_time_index: int
) -> list[TokenSegment]:
    """Like :func:`parse_target_text` over generated tokens (their text ``pieces``), each
    segment scored with the ``scores`` of its onset and offset tokens (None: 1.0)."""
    text = "".join(pieces)
    owner = [i for i, piece in enumerate(pieces) for _ in piece]  # character -> token
    found = []
    for match in _SEGMENT_PATTERN.finditer(text):
        onset, cluster_id, offset = (int(g) for g in match.groups())
        if onset < offset <= max_time_index:
            score = 1.0
            if scores is not None:
                score = scores[owner[match.start()]] * scores[owner[match.end() - 1]]
            found.append(TokenSegment(onset, offset, cluster_id, score))
    return found
