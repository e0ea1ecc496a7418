"""A WhisperSeg checkpoint: Whisper encoder-decoder, its tokenizer and the config extras.

The folder layout is the published one (``save_pretrained`` of
``WhisperForConditionalGeneration`` plus tokenizer files; ``config.json`` carries
``total_spec_columns``, ``cluster_codebook``, ``default_segmentation_config`` and
``species_codebook``), so published checkpoints load unchanged.
"""

from __future__ import annotations

import threading
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import WhisperForConditionalGeneration

from whisperseg import ct2, published_ct2
from whisperseg.confidence import (
    CALIBRATION_FILE,
    Calibration,
    calibrations_for,
    default_calibrations,
    save_calibrations,
)
from whisperseg.ct2 import Ct2Decoder
from whisperseg.folder_swap import replace_folder
from whisperseg.target_text import TokenSegment, format_target_text, parse_tokens, time_token
from whisperseg.tokenizer import SegTokenizer

MAX_DECODER_TOKENS = 448
# A boundary's score is the probability the decoder gave the time tokens this close to it.
BOUNDARY_NEIGHBOURHOOD = 2
# CTranslate2 hands over whole logit rows; above this vocabulary (published BPE ones) they
# cost too much memory, and its segments go unscored.
MAX_SCORED_VOCABULARY = 8192
MAX_SHARD_SIZE = "40MB"  # per weights file; git hosts refuse files over 50-100 MB
Backend = Literal["torch", "auto", "ct2"]
# from_pretrained builds models under a process-wide "meta device" context; a model built
# or quantized in another thread meanwhile gets empty (meta) weights. Loads take turns.
_LOAD_LOCK = threading.Lock()


def make_ct2_copy(folder: Path) -> Path:
    """The folder's current CTranslate2 copy, converted now if it has none (thread-safe)."""
    with _LOAD_LOCK:
        return ct2.convert(folder)


def pick_device(requested: str | None = None) -> torch.device:
    """The GPU when there is one, else the CPU; ``requested`` overrides ("cpu", "cuda:1")."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype(device: torch.device) -> torch.dtype:
    """Half precision on a GPU (bf16 where the chip has it, fp16 before Ampere), full
    precision on the CPU. Emulated bf16 (which torch reports as supported on a T4 or V100
    by default) would run far slower than fp16 there."""
    if device.type != "cuda":
        return torch.float32
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if native else torch.float16


def _quantized(network: WhisperForConditionalGeneration) -> WhisperForConditionalGeneration:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return torch.ao.quantization.quantize_dynamic(network, {nn.Linear}, dtype=torch.qint8)


def is_quantized(network: nn.Module) -> bool:
    dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
    return any(isinstance(m, dynamic_linear) for m in network.modules())


@dataclass
class WhisperSegModel:
    """A loaded WhisperSeg model and what is needed to read and write its target text."""

    network: WhisperForConditionalGeneration
    tokenizer: SegTokenizer
    cluster_codebook: dict[str, int] = field(default_factory=dict)
    default_segmentation_config: dict = field(default_factory=dict)
    species_codebook: dict[str, str] = field(default_factory=dict)
    fast_decoder: Ct2Decoder | None = None  # decodes instead of ``network`` when set
    # How its segments' evidence becomes confidence (whisperseg.confidence), by name.
    calibrations: dict[str, Calibration] = field(default_factory=lambda: calibrations_for(None))

    @property
    def total_spec_columns(self) -> int:
        return int(self.network.config.total_spec_columns)

    @property
    def max_time_index(self) -> int:
        return self.total_spec_columns // 2

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def scores_boundaries(self) -> bool:
        """Whether its decoder measures how sure it is of each boundary token."""
        vocabulary = self.network.config.vocab_size
        return self.fast_decoder is None or vocabulary <= MAX_SCORED_VOCABULARY

    @property
    def cluster_names(self) -> dict[int, str]:
        return {index: name for name, index in self.cluster_codebook.items()}

    @classmethod
    def load(
        cls,
        folder: Path | str,
        device: str | None = None,
        quantize: bool = False,
        backend: Backend = "torch",
    ) -> WhisperSegModel:
        """Load a checkpoint folder; ``quantize`` makes CPU inference about 2x faster.

        Quantized models (int8 dynamic quantization of the linear layers, CPU only)
        can segment but not train or be saved. ``backend`` picks what decodes:
        "torch"; "auto" (CTranslate2 when the folder has a current converted copy and
        the package is installed, else torch); "ct2" (CTranslate2, converting first if
        needed). A published ``-ct2`` folder is imported first
        (:mod:`whisperseg.published_ct2`).
        """
        folder = Path(folder)
        target = pick_device(device)
        if published_ct2.is_published_ct2(folder):
            published_ct2.import_published_ct2(folder)
        with _LOAD_LOCK:
            network = WhisperForConditionalGeneration.from_pretrained(
                str(folder), dtype=inference_dtype(target)
            )
            network.to(target).eval()
            if quantize and target.type == "cpu":
                network = _quantized(network)
        config = network.config
        if not hasattr(config, "total_spec_columns"):
            config.total_spec_columns = 2 * config.max_source_positions
        tokenizer = SegTokenizer.load(folder, config.total_spec_columns // 2)
        model = cls(
            network=network,
            tokenizer=tokenizer,
            cluster_codebook=dict(getattr(config, "cluster_codebook", None) or {}),
            default_segmentation_config=dict(
                getattr(config, "default_segmentation_config", None) or {}
            ),
            species_codebook=dict(getattr(config, "species_codebook", None) or {}),
            calibrations=calibrations_for(folder),
        )
        if backend != "torch":
            model.fast_decoder = model._ct2_decoder(folder, backend == "ct2")
        return model

    def _ct2_decoder(self, folder: Path, convert: bool) -> Ct2Decoder | None:
        """The CTranslate2 decoder of ``folder``'s converted copy (made first if ``convert``)."""
        if not ct2.available():
            if convert:
                raise RuntimeError("the ct2 backend needs the ctranslate2 package")
            return None
        copy = make_ct2_copy(folder) if convert else ct2.current_copy(folder)
        if copy is None:
            return None
        allowed = set(self.tokenizer.generation_ids)
        suppress = [i for i in range(self.network.config.vocab_size) if i not in allowed]
        return Ct2Decoder(copy, self.device, suppress)

    def save(self, folder: Path | str, dtype: torch.dtype = torch.float16) -> None:
        """Write the published layout (safetensors in ``dtype``), config extras included.

        Weights over MAX_SHARD_SIZE are split into shards with an index (transformers'
        layout), so a shipped model's files stay under git hosts' size limits. Calibrations
        of its confidence other than the shipped ones go to the folder's ``confidence.json``.
        The folder appears whole or not at all: files go to a hidden sibling that is renamed
        into place, so a crash never leaves a half-written model behind.
        """
        if is_quantized(self.network):
            raise ValueError("a quantized model cannot be saved: load it with quantize=False")
        folder = Path(folder)
        staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
        config = self.network.config
        config.cluster_codebook = self.cluster_codebook
        config.default_segmentation_config = self.default_segmentation_config
        config.species_codebook = self.species_codebook
        original = next(self.network.parameters()).dtype
        self.network.to(dtype)
        try:
            self.network.save_pretrained(str(staging), max_shard_size=MAX_SHARD_SIZE)
            self.tokenizer.hf.save_pretrained(str(staging))
        finally:
            self.network.to(original)
        if self.calibrations != default_calibrations():
            about = "this model's own calibrations of whisperseg/confidence.py"
            save_calibrations(staging / CALIBRATION_FILE, self.calibrations, about)
        replace_folder(staging, folder)

    def cluster_id(self, name: str) -> int:
        """The codebook id of a cluster name, adding new names (finetuning on new labels)."""
        if name not in self.cluster_codebook:
            self.cluster_codebook[name] = max(self.cluster_codebook.values(), default=-1) + 1
        return self.cluster_codebook[name]

    @torch.inference_mode()
    def generate(
        self, features: torch.Tensor, species: str | None = None
    ) -> list[list[TokenSegment]]:
        """Greedy decoding of a batch of windows, restricted to the grammar's tokens.

        ``features``: (batch, 80, total_spec_columns). Returns each window's segments
        in time-token units, each with the ``score`` the decoder gave its boundaries
        (:meth:`token_scores`; 1.0 where a CTranslate2 decoder cannot measure it).
        """
        species_token = self.tokenizer.species_token(species, self.species_codebook)
        prompt = self.tokenizer.prompt_ids(species_token)
        if self.fast_decoder is not None:
            scored = self.network.config.vocab_size <= MAX_SCORED_VOCABULARY
            generated = [
                (ids, None if logits is None else self.token_scores(logits, ids))
                for ids, logits in self.fast_decoder.generate(
                    features, prompt, MAX_DECODER_TOKENS, logits=scored
                )
            ]
        else:
            generated = self._generate_torch(features, prompt)
        return [
            parse_tokens(self._pieces(ids), scores, self.max_time_index)
            for ids, scores in generated
        ]

    def _pieces(self, ids: list[int]) -> list[str]:
        end = self.tokenizer.end_id
        return [
            "" if i == end else t
            for i, t in zip(ids, self.tokenizer.hf.convert_ids_to_tokens(ids), strict=True)
        ]

    def token_scores(self, logits: torch.Tensor, chosen: Sequence[int] | torch.Tensor) -> list:
        """Per generated token: the probability of the chosen token among the grammar's,
        or for a time token the probability of the time tokens within
        BOUNDARY_NEIGHBOURHOOD of it (a boundary a step off is still a good boundary).
        ``logits``: (tokens, vocabulary), disallowed tokens already at -inf or lowest."""
        chosen = torch.as_tensor(chosen, dtype=torch.long, device=logits.device)
        if chosen.numel() == 0:
            return []
        time_ids, time_index = self._time_token_tables(logits.device)
        probs = torch.softmax(logits.float(), dim=-1)
        own = probs.gather(1, chosen[:, None])[:, 0]
        index = time_index[chosen]
        count = time_ids.numel()
        cumulative = torch.nn.functional.pad(probs[:, time_ids].cumsum(1), (1, 0))
        low = (index - BOUNDARY_NEIGHBOURHOOD).clamp(0, count)
        high = (index + BOUNDARY_NEIGHBOURHOOD + 1).clamp(0, count)
        near = cumulative.gather(1, high[:, None])[:, 0] - cumulative.gather(1, low[:, None])[:, 0]
        return torch.where(index >= 0, near, own).clamp(0.0, 1.0).tolist()

    def _time_token_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Vocabulary ids of the time tokens in time order, and each id's place (-1: none)."""
        cached = getattr(self, "_time_tables", None)
        if cached is None or cached[0].device != device:
            ids = [self.tokenizer.hf.convert_tokens_to_ids(time_token(i))
                   for i in range(self.max_time_index + 1)]  # fmt: skip
            time_ids = torch.tensor(ids, dtype=torch.long, device=device)
            index = torch.full((self.network.config.vocab_size,), -1, dtype=torch.long)
            index[time_ids.cpu()] = torch.arange(len(ids))
            cached = (time_ids, index.to(device))
            self._time_tables = cached
        return cached

    def _generate_torch(
        self, features: torch.Tensor, prompt_ids: list[int]
    ) -> list[tuple[list[int], list[float]]]:
        device, network = self.device, self.network
        dtype = next(network.parameters()).dtype
        encoded = network.model.encoder(input_features=features.to(device, dtype)).last_hidden_state
        decoder, head = network.model.decoder, network.proj_out
        batch = features.shape[0]
        prompt = torch.tensor([prompt_ids] * batch, device=device)
        allowed = torch.full((network.config.vocab_size,), float("-inf"), device=device)
        allowed[self.tokenizer.generation_ids] = 0.0
        end_id = self.tokenizer.end_id

        generated: list[list[int]] = [[] for _ in range(batch)]
        scores: list[list[float]] = [[] for _ in range(batch)]
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        step_input, cache = prompt, None
        for _ in range(MAX_DECODER_TOKENS - prompt.shape[1]):
            out = decoder(
                input_ids=step_input, encoder_hidden_states=encoded, cache=cache, use_cache=True
            )
            cache = out.cache
            logits = head(out.last_hidden_state[:, -1, :]).float() + allowed
            next_ids = logits.argmax(dim=-1)
            next_ids = torch.where(finished, torch.full_like(next_ids, end_id), next_ids)
            finished |= next_ids == end_id
            step_scores = self.token_scores(logits, next_ids)
            for row, token in enumerate(next_ids.tolist()):
                if token != end_id:
                    generated[row].append(token)
                    scores[row].append(step_scores[row])
            if bool(finished.all()):
                break
            step_input = next_ids[:, None]
        return list(zip(generated, scores, strict=True))

    def target_ids(self, segments: Sequence[TokenSegment], species: str | None) -> list[int]:
        """Token ids a window's segments are written as (species token first, end last)."""
        species_token = self.tokenizer.species_token(species, self.species_codebook)
        text = format_target_text(segments, species_token)
        return self.tokenizer.encode(text) + [self.tokenizer.end_id]
