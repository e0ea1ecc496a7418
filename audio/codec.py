"""Decode uploaded audio bytes (WAV, MP3, FLAC, OGG; any channel count) with soundfile.

Samples are kept compactly: int16 when the source has 16 bits or fewer, or is a lossy codec
(MP3, Vorbis, Opus decode to far less than 16 bits of real precision), else float32.
Non-finite float samples (NaN, infinity) are read as silence.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf

INT16_SUBTYPES = frozenset(
    {"PCM_S8", "PCM_U8", "PCM_16", "ULAW", "ALAW", "MPEG_LAYER_III", "VORBIS", "OPUS"}
)
INT16_SCALE = 1.0 / 32768.0


class AudioDecodeError(ValueError):
    """The bytes are not audio we can read (empty, not audio, corrupt): a 400 for clients."""


class AudioTooLarge(ValueError):
    """The audio would take more memory than allowed: a 413 for clients."""


@dataclass(frozen=True)
class DecodedAudio:
    """``samples`` has shape (frames, channels), dtype int16 or float32."""

    samples: np.ndarray
    sample_rate: int

    @property
    def num_channels(self) -> int:
        return self.samples.shape[1]


def decode_audio(
    source: bytes | BinaryIO,
    max_bytes: int,
    before_read: Callable[[int, int, int], None] | None = None,
    max_channels: int | None = None,
) -> DecodedAudio:
    """Decode a whole file (bytes or a seekable file object, e.g. a spooled upload).

    Refuses before reading if the header claims more than ``max_bytes`` or more than
    ``max_channels`` channels (each channel costs its own spectrogram in the reply).
    ``before_read`` gets (frames, sample rate, bytes the samples will take) from the header,
    before the samples are read: the place to refuse or to make room.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    if stream.seek(0, io.SEEK_END) == 0:
        raise AudioDecodeError("The file is empty")
    stream.seek(0)
    try:
        with sf.SoundFile(stream) as f:
            if max_channels is not None and f.channels > max_channels:
                raise AudioDecodeError(
                    f"The file has {f.channels} channels, more than the limit of "
                    f"{max_channels} (max_channels)"
                )
            dtype = "int16" if f.subtype in INT16_SUBTYPES else "float32"
            needed = f.frames * f.channels * np.dtype(dtype).itemsize
            if needed > max_bytes:
                raise AudioTooLarge(
                    f"The audio needs {needed / 2**20:.0f} MB of memory "
                    f"({f.frames} frames x {f.channels} channels), more than the limit of "
                    f"{max_bytes / 2**20:.0f} MB (audio_memory_budget_mb)"
                )
            if before_read:
                before_read(f.frames, f.samplerate, needed)
            samples = f.read(dtype=dtype, always_2d=True)
            sample_rate = f.samplerate
    except sf.SoundFileError as exc:
        reason = getattr(exc, "error_string", None) or str(exc)
        if "does not exist" in reason:  # libsndfile's words for unknown bytes in memory
            reason = "the format was not recognised"
        raise AudioDecodeError(
            f"Not a readable audio file (WAV, MP3, FLAC or OGG expected): {reason}"
        ) from None
    if samples.shape[0] == 0:
        raise AudioDecodeError("The audio file contains no samples")
    if samples.dtype == np.float32:
        # NaN/infinity would reach replies as NaN, which the frontend's JSON.parse rejects.
        np.nan_to_num(samples, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return DecodedAudio(samples, int(sample_rate))


def to_float32(samples: np.ndarray) -> np.ndarray:
    """Samples as float32 in [-1, 1], whichever compact dtype they are stored in."""
    if samples.dtype == np.int16:
        return samples.astype(np.float32) * np.float32(INT16_SCALE)
    return samples.astype(np.float32, copy=False)


def encode_wav_int16(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono 16-bit PCM WAV bytes (float input is clipped to [-1, 1])."""
    if samples.dtype != np.int16:
        samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
