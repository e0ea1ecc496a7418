"""Token ids for the target-text grammar, for published and compact vocabularies.

Published WhisperSeg checkpoints carry Whisper's BPE tokenizer with the time and
species tokens added; the project's own models carry a compact word-level
vocabulary (the same grammar in ~520 tokens, so a tiny model stays small). Both
are Hugging Face tokenizers saved with ``save_pretrained``; this class hides the
difference.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from whisperseg.target_text import PROMPT_TOKENS, UNKNOWN_SPECIES_TOKEN, time_token

END_TOKEN = "<|endoftext|>"


def compact_vocabulary(max_time_index: int) -> list[str]:
    """Tokens of the compact vocabulary, in id order."""
    specials = [END_TOKEN, *PROMPT_TOKENS, UNKNOWN_SPECIES_TOKEN]
    digits = [str(d) for d in range(10)]
    return specials + digits + [time_token(i) for i in range(max_time_index + 1)]


def build_compact_tokenizer(max_time_index: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer for the target grammar: specials, single digits, time tokens."""
    vocab = compact_vocabulary(max_time_index)
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token=END_TOKEN))
    core.pre_tokenizer = pre_tokenizers.Digits(individual_digits=True)
    core.add_special_tokens([t for t in vocab if t.startswith("<|")])
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=PROMPT_TOKENS[0],
        eos_token=END_TOKEN,
        pad_token=END_TOKEN,
        unk_token=END_TOKEN,
    )


class SegTokenizer:
    """The target grammar over any Hugging Face tokenizer that holds its tokens."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_time_index: int):
        self.hf = tokenizer
        self.max_time_index = max_time_index
        missing = [t for t in (*PROMPT_TOKENS[:1], END_TOKEN) if self._id(t) is None]
        if missing or self._id(time_token(max_time_index)) is None:
            raise ValueError(
                f"tokenizer lacks WhisperSeg tokens ({missing or time_token(max_time_index)})"
            )

    @classmethod
    def load(cls, folder: Path, max_time_index: int) -> SegTokenizer:
        return cls(AutoTokenizer.from_pretrained(str(folder)), max_time_index)

    def _id(self, token: str) -> int | None:
        token_id = self.hf.convert_tokens_to_ids(token)
        if token_id is None or (token_id == self.hf.unk_token_id and token != self.hf.unk_token):
            return None
        return int(token_id)

    @property
    def end_id(self) -> int:
        return self._id(END_TOKEN)

    def species_token(self, species: str | None, species_codebook: dict[str, str]) -> str:
        token = species_codebook.get(species or "", UNKNOWN_SPECIES_TOKEN)
        return token if self._id(token) is not None else UNKNOWN_SPECIES_TOKEN

    def prompt_ids(self, species_token: str) -> list[int]:
        """Forced decoder start: the prompt tokens this vocabulary has, then the species."""
        tokens = [t for t in PROMPT_TOKENS if self._id(t) is not None]
        if self._id(species_token) is not None:
            tokens.append(species_token)
        return [self._id(t) for t in tokens]

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        """Join raw tokens: the grammar has no spaces, so no detokenisation is needed."""
        return "".join(t for t in self.hf.convert_ids_to_tokens(ids) if t != END_TOKEN)

    @cached_property
    def generation_ids(self) -> list[int]:
        """Tokens the grammar allows the decoder to emit: times, digits and the end."""
        digits = [i for t, i in self.hf.get_vocab().items() if t.isdigit() and t.isascii()]
        times = [self._id(time_token(i)) for i in range(self.max_time_index + 1)]
        return sorted({*digits, *(t for t in times if t is not None), self.end_id})
