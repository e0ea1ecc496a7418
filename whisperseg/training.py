"""Finetune a WhisperSeg model on labelled clips (WHISPERSEG.md, Finetuning).

Each step draws random one-window crops (a crop may start up to half a window
before a clip or end past it, as inference windows do), clips the labels at the
crop edges, and teaches the decoder the crop's target text. Light augmentation
(gain, noise, a jittered time step) keeps a model trained on a few minutes of one
species from fitting one recording's loudness and tempo.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import signal

from whisperseg.features import FeatureConfig, window_features
from whisperseg.model import WhisperSegModel, inference_dtype, is_quantized
from whisperseg.segment import Segment
from whisperseg.segmentation import scale_times
from whisperseg.target_text import TokenSegment

IGNORE_INDEX = -100
# Pitch shift of ``augment_species``: declared rate 0.8-1.25x (about -4 to +4 semitones).
PITCH_LOG_RANGE = (float(np.log(0.8)), float(np.log(1.25)))
BAND_LIMIT_PROBABILITY = 0.3
REVERB_PROBABILITY = 0.2
BACKGROUND_PROBABILITY = 0.3
# Background stretches: unlabelled time between calls, this long at least; kept this long at most.
BACKGROUND_SECONDS = (0.2, 2.0)
BACKGROUND_BELOW_DB = (5.0, 25.0)  # mixed this far below the crop's own level


@dataclass(frozen=True)
class TrainingExample:
    """One labelled clip: mono audio, its rate, its segments (seconds from the clip start)."""

    audio: np.ndarray
    sr: int
    segments: tuple[Segment, ...]
    spec_time_step: float
    min_frequency: float = 0.0
    weight: float = 1.0  # crops are drawn in proportion to length in windows times this
    source: str = ""  # the recording it was cut from: labels are held back per recording

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sr


@dataclass(frozen=True)
class TrainingConfig:
    """Choices for one finetuning run; the defaults suit minutes of labels on a CPU."""

    max_steps: int = 200
    learning_rate: float = 1e-4
    warmup_steps: int = 20
    batch_size: int = 4
    weight_decay: float = 0.01
    max_target_tokens: int = 160
    freeze_encoder: bool = False
    augment: bool = True
    # Pitch shift, band limits and reverberation: for a model meant to generalise across
    # species and recordings (a recipe); a job learning one species needs none.
    augment_species: bool = False
    # Other training recordings' backgrounds mixed into crops (measured: it hurts mouse and
    # an unheard mammal; configs/whisperseg-tiny-augmented-backgrounds.json reproduces that).
    augment_background: bool = False
    seed: int = 0


@dataclass(frozen=True)
class TrainingProgress:
    step: int
    total_steps: int
    loss: float
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps

    @property
    def eta_s(self) -> float:
        """Elapsed / done * left, the estimate the model lists show."""
        return (
            self.elapsed_s / self.step * (self.total_steps - self.step) if self.step else math.inf
        )


class TrainingCancelled(Exception):
    """Raised inside ``finetune`` when ``should_stop`` answers True."""


def _crop_labels(
    segments: Sequence[Segment], crop_start: float, features: FeatureConfig, max_index: int
) -> list[tuple[int, int, str]]:
    """Labels inside one crop in time-token units, widened by the FFT smear and clipped."""
    step, widening = features.seconds_per_time_token, features.fft_widening
    window = features.window_samples / features.sr
    found = []
    for s in segments:
        onset = max(0.0, s.onset - widening - crop_start)
        offset = min(window, s.offset + widening - crop_start)
        if offset <= onset:
            continue
        first, last = round(onset / step), min(max_index, round(offset / step))
        if last > first:
            found.append((first, last, s.cluster))
    return found


def _augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gain = 10 ** (rng.uniform(-20, 6) / 20)
    crop = crop * gain
    if rng.random() < 0.3:
        rms = float(np.sqrt(np.mean(crop**2))) + 1e-8
        crop = crop + rng.normal(0, rms * 10 ** (-rng.uniform(10, 40) / 20), crop.shape)
    return crop.astype(np.float32)


def _alter_recording(crop: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Another microphone and room: band limits (a high-pass up to 2% of the rate, a
    low-pass down to 30%) and reverberation (exponentially decaying noise, RT60 30-300 ms)."""
    if rng.random() < BAND_LIMIT_PROBABILITY:
        nyquist = sr / 2
        low, high = rng.uniform(0.0, 0.04) * nyquist, rng.uniform(0.6, 1.0) * nyquist
        if low > 10:
            crop = signal.sosfilt(signal.butter(2, low, "highpass", fs=sr, output="sos"), crop)
        if high < 0.98 * nyquist:
            crop = signal.sosfilt(signal.butter(4, high, "lowpass", fs=sr, output="sos"), crop)
    if rng.random() < REVERB_PROBABILITY:
        rt60 = rng.uniform(0.03, 0.3)
        t = np.arange(round(rt60 * sr)) / sr
        tail = rng.normal(0, 1, t.size) * np.exp(-6.9 * t / rt60)
        wet = signal.fftconvolve(crop, tail / np.sqrt(np.sum(tail**2)))[: crop.size]
        crop = crop + rng.uniform(0.1, 0.5) * wet
    return np.asarray(crop, dtype=np.float32)


def background_stretches(
    examples: Sequence[TrainingExample], seconds: tuple[float, float] = BACKGROUND_SECONDS
) -> list[tuple[np.ndarray, int]]:
    """The unlabelled time between calls of fully annotated examples (each stretch with its
    rate), stretches at least ``seconds[0]`` long, cut to ``seconds[1]``: another recording's
    background, to mix into crops."""
    shortest, longest = seconds
    stretches = []
    for example in examples:
        quiet_from = 0.0
        for s in [*sorted(example.segments, key=lambda s: s.onset), None]:
            quiet_to = example.duration if s is None else s.onset
            if quiet_to - quiet_from >= shortest:
                first = round(quiet_from * example.sr)
                last = min(round(quiet_to * example.sr), first + round(longest * example.sr))
                stretches.append((example.audio[first:last], example.sr))
            if s is not None:
                quiet_from = max(quiet_from, s.offset)
    return stretches


def _mix_background(
    crop: np.ndarray, sr: int, background: tuple[np.ndarray, int], rng: np.random.Generator
) -> np.ndarray:
    """``crop`` with a background stretch (resampled to ``sr``, looped to length from a random
    start) mixed in 5-25 dB below the crop's own level."""
    audio, rate = background
    if rate != sr:
        common = math.gcd(sr, rate)
        audio = signal.resample_poly(audio, sr // common, rate // common)
    looped = np.tile(audio, -(-(crop.size + audio.size) // audio.size))  # stretches are >= 0.2 s
    start = int(rng.integers(0, audio.size))
    looped = looped[start : start + crop.size]
    level = float(np.sqrt(np.mean(crop**2))) * 10 ** (-rng.uniform(*BACKGROUND_BELOW_DB) / 20)
    scale = level / (float(np.sqrt(np.mean(looped**2))) + 1e-12)
    return (crop + scale * looped).astype(np.float32)


class _CropSampler:
    """Random training crops, clips drawn in proportion to their length in windows."""

    def __init__(
        self, examples: Sequence[TrainingExample], model: WhisperSegModel, config: TrainingConfig
    ):
        self.examples, self.model, self.config = examples, model, config
        self.rng = np.random.default_rng(config.seed)
        windows = np.array(
            [
                e.weight * (1.0 + len(e.audio) / self._features(e, 1.0).window_samples)
                for e in examples
            ]
        )
        self.weights = windows / windows.sum()
        self.backgrounds = background_stretches(examples) if config.augment_background else []

    def _features(
        self, example: TrainingExample, step_scale: float, rate_factor: float = 1.0
    ) -> FeatureConfig:
        """The example's columns, its samples declared ``rate_factor`` times faster: the
        same hop in samples, every frequency (and so the pitch) times ``rate_factor``."""
        hop = max(1, round(example.spec_time_step * step_scale * example.sr))
        rate = round(example.sr * rate_factor)
        return FeatureConfig(
            rate, hop / rate, example.min_frequency * rate_factor, self.model.total_spec_columns
        )

    def crop(self) -> tuple[torch.Tensor, list[int]]:
        """One crop's features and its target ids (species token first, end last)."""
        example = self.examples[self.rng.choice(len(self.examples), p=self.weights)]
        scale = float(self.rng.uniform(0.8, 1.25)) if self.config.augment else 1.0
        rate_factor = 1.0
        if self.config.augment_species:
            rate_factor = float(np.exp(self.rng.uniform(*PITCH_LOG_RANGE)))
        features = self._features(example, scale, rate_factor)
        window = features.window_samples
        start = int(
            self.rng.integers(-window // 2, max(len(example.audio) - window // 2, 1 - window // 2))
        )
        declared = scale_times(example.segments, example.sr / features.sr)
        labels = _crop_labels(declared, start / features.sr, features, self.model.max_time_index)
        tokens = [TokenSegment(a, b, self.model.cluster_id(c)) for a, b, c in labels]
        audio = example.audio
        lo, hi = max(start, 0), min(start + window + features.n_fft, len(audio))
        if self.config.augment:
            audio = audio.copy()
            audio[lo:hi] = _augment(audio[lo:hi], self.rng)
            if self.config.augment_species:
                audio[lo:hi] = _alter_recording(audio[lo:hi], features.sr, self.rng)
            if self.backgrounds and self.rng.random() < BACKGROUND_PROBABILITY:
                background = self.backgrounds[self.rng.integers(len(self.backgrounds))]
                audio[lo:hi] = _mix_background(audio[lo:hi], example.sr, background, self.rng)
        return window_features(audio, [start], features)[0], self.model.target_ids(tokens, None)


def _batch_tensors(
    crops: list[tuple[torch.Tensor, list[int]]], prompt: list[int], max_tokens: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, decoder inputs and labels (prompt positions and padding ignored)."""
    sequences = [(prompt[:-1] + ids)[: max_tokens + len(prompt)] for _, ids in crops]
    length = max(len(s) for s in sequences) - 1
    inputs = torch.full((len(crops), length), pad_id, dtype=torch.long)
    labels = torch.full((len(crops), length), IGNORE_INDEX, dtype=torch.long)
    for row, seq in enumerate(sequences):
        inputs[row, : len(seq) - 1] = torch.tensor(seq[:-1])
        labels[row, len(prompt) - 1 : len(seq) - 1] = torch.tensor(seq[len(prompt) :])
    return torch.stack([f for f, _ in crops]), inputs, labels


def _optimizer(network: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and norms."""
    decay, no_decay = [], []
    for name, param in network.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def _schedule(config: TrainingConfig) -> Callable[[int], float]:
    """Linear warm-up, then linear decay to zero at the last step."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        return max(0.0, (config.max_steps - step) / max(1, config.max_steps - config.warmup_steps))

    return factor


def finetune(
    model: WhisperSegModel,
    examples: Sequence[TrainingExample],
    config: TrainingConfig = TrainingConfig(),
    progress: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[float]:
    """Train ``model`` in place on ``examples``; returns the loss of every step.

    New cluster names are added to the model's codebook. On a GPU the step runs
    under fp16/bf16 autocast. Raises ``TrainingCancelled`` when ``should_stop``
    says so (the model is then left half-trained: callers discard it).
    """
    if not examples or not any(e.segments for e in examples):
        raise ValueError("no labelled segments to train on")
    if is_quantized(model.network):
        raise ValueError("a quantized model cannot be trained: load it with quantize=False")
    torch.manual_seed(config.seed)
    network, device = model.network, model.device
    network.float().train()
    for param in network.model.encoder.parameters():
        param.requires_grad = not config.freeze_encoder
    network.model.encoder.embed_positions.weight.requires_grad = False
    optimizer = _optimizer(network, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    half = inference_dtype(device) if device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda", enabled=half == torch.float16)
    sampler = _CropSampler(examples, model, config)
    prompt = model.tokenizer.prompt_ids(model.tokenizer.species_token(None, {}))
    losses: list[float] = []
    started = time.monotonic()
    try:
        for step in range(config.max_steps):
            if should_stop and should_stop():
                raise TrainingCancelled("finetuning cancelled")
            crops = [sampler.crop() for _ in range(config.batch_size)]
            feats, inputs, labels = (
                t.to(device)
                for t in _batch_tensors(
                    crops, prompt, config.max_target_tokens, model.tokenizer.end_id
                )
            )
            with torch.autocast(
                device.type, dtype=half or torch.bfloat16, enabled=half is not None
            ):
                logits = network(input_features=feats, decoder_input_ids=inputs).logits
                loss = torch.nn.functional.cross_entropy(
                    logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(loss.item())
            if progress:
                progress(
                    TrainingProgress(
                        step + 1, config.max_steps, losses[-1], time.monotonic() - started
                    )
                )
    finally:
        network.to(inference_dtype(device)).eval()
    return losses
