"""New WhisperSeg models: from pretrained Whisper weights, or tiny and random for tests.

A model made from Whisper keeps its encoder and decoder weights, cuts the encoder's
positions to ``total_spec_columns // 2`` and swaps the 51k-token vocabulary for the
compact one. Each compact token starts from the Whisper row that means the same
thing (time token k from Whisper's timestamp token k), so times start out ordered:
from random rows the model learns no timing in a CPU-sized budget.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoTokenizer,
    GenerationConfig,
    WhisperConfig,
    WhisperForConditionalGeneration,
)

from whisperseg.model import WhisperSegModel
from whisperseg.target_text import UNKNOWN_SPECIES_TOKEN
from whisperseg.tokenizer import SegTokenizer, build_compact_tokenizer

DEFAULT_TOTAL_SPEC_COLUMNS = 1000


def _with_compact_ids(config: WhisperConfig, vocab_size: int, total_spec_columns: int) -> None:
    """Point the config's special ids at the compact vocabulary's layout."""
    config.vocab_size = vocab_size
    config.max_source_positions = total_spec_columns // 2
    config.total_spec_columns = total_spec_columns
    config.decoder_start_token_id = config.bos_token_id = 1
    config.eos_token_id = config.pad_token_id = 0
    config.suppress_tokens = None
    config.begin_suppress_tokens = None


def _assemble(network: WhisperForConditionalGeneration, tokenizer, columns: int) -> WhisperSegModel:
    network.generation_config = GenerationConfig(
        decoder_start_token_id=1, eos_token_id=0, pad_token_id=0, max_length=448
    )
    return WhisperSegModel(
        network=network.eval(),
        tokenizer=SegTokenizer(tokenizer, columns // 2),
        cluster_codebook={},
    )


def _whisper_row(vocab: dict[str, int], token: str) -> int | None:
    """The id in Whisper's ``vocab`` whose meaning is closest to a compact token."""
    if token.startswith("<|") and token[2:-2].isdigit():
        timestamp_begin = vocab["<|notimestamps|>"] + 1
        return timestamp_begin + int(token[2:-2])
    if token == UNKNOWN_SPECIES_TOKEN:
        return vocab.get("<|nocaptions|>", vocab.get("<|nospeech|>"))
    return vocab.get(token)


def from_whisper(
    whisper_folder: Path, total_spec_columns: int = DEFAULT_TOTAL_SPEC_COLUMNS
) -> WhisperSegModel:
    """A trainable WhisperSeg model from a Hugging Face Whisper folder, compact vocabulary."""
    network = WhisperForConditionalGeneration.from_pretrained(
        str(whisper_folder), dtype=torch.float32
    )
    source_tokenizer = AutoTokenizer.from_pretrained(str(whisper_folder))
    tokenizer = build_compact_tokenizer(total_spec_columns // 2)
    old_rows = network.get_input_embeddings().weight.detach()
    vocab = [tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))]
    source_vocab = source_tokenizer.get_vocab()  # builds a 50k-entry dict: once, not per token
    source_ids = [_whisper_row(source_vocab, t) for t in vocab]
    new_rows = torch.stack(
        [old_rows[i] if i is not None else old_rows.mean(dim=0) for i in source_ids]
    )
    network.model.decoder.embed_tokens = nn.Embedding.from_pretrained(new_rows, freeze=False)
    positions = network.model.encoder.embed_positions.weight.detach()[: total_spec_columns // 2]
    network.model.encoder.embed_positions = nn.Embedding.from_pretrained(positions, freeze=True)
    _with_compact_ids(network.config, len(vocab), total_spec_columns)
    network.tie_weights()
    network.proj_out.weight = network.model.decoder.embed_tokens.weight
    return _assemble(network, tokenizer, total_spec_columns)


def random_tiny(
    d_model: int = 64,
    layers: int = 1,
    heads: int = 2,
    total_spec_columns: int = DEFAULT_TOTAL_SPEC_COLUMNS,
    seed: int = 0,
) -> WhisperSegModel:
    """A small randomly initialised model in the published layout (tests, smoke runs)."""
    torch.manual_seed(seed)
    tokenizer = build_compact_tokenizer(total_spec_columns // 2)
    config = WhisperConfig(
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=4 * d_model,
        decoder_ffn_dim=4 * d_model,
        num_mel_bins=80,
        max_target_positions=448,
    )
    _with_compact_ids(config, len(tokenizer), total_spec_columns)
    return _assemble(WhisperForConditionalGeneration(config), tokenizer, total_spec_columns)
