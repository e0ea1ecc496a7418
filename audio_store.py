"""Thread-safe in-memory store of uploaded audio, one entry per channel, keyed by UUID4.

Samples stay in their compact decoded dtype (int16 for sources of 16 bits or fewer and for
lossy codecs, float32 otherwise; see :mod:`audio.codec`), so an hour of 32 kHz mono 16-bit audio
costs about 230 MB. The store keeps a memory budget by evicting the least recently used
channels, forgets channels idle for longer than the idle timeout, and frees released channels
at once. Views at another sampling rate are computed per request into a small LRU cache of
their own and never replace the original samples.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import librosa
import numpy as np

from audio.codec import AudioTooLarge, DecodedAudio, decode_audio, to_float32

log = logging.getLogger(__name__)


class UnknownAudio(LookupError):
    """No channel with that id (never uploaded, released, evicted or expired)."""

    def __init__(self, audio_id: str):
        super().__init__(
            f"Unknown audio_id {audio_id!r}: never uploaded, or released, evicted or expired"
        )


class ResampleTooLarge(ValueError):
    """A resampled view would not fit in the resample cache."""


class ClipTooLong(ValueError):
    """A requested clip has more samples than the server's limit."""


@dataclass(frozen=True)
class Channel:
    """One channel's original samples (1-D, read-only, int16 or float32) and their rate."""

    samples: np.ndarray
    sample_rate: int

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate

    def clip(
        self, start_time: float, duration: float | None, max_samples: int, pad: bool = False
    ) -> np.ndarray:
        """Samples from ``start_time`` for ``duration`` seconds (None: to the end).

        With ``pad`` the clip is zero-padded to the full duration past the end of the
        audio. Raises :class:`ClipTooLong` beyond ``max_samples`` (max_clip_samples).
        """
        start = round(start_time * self.sample_rate)
        if duration is None:
            length = max(0, self.num_samples - start)
        else:
            length = round(duration * self.sample_rate)
        if length > max_samples:
            raise ClipTooLong(
                f"clip_duration * sampling rate = {length} samples is more than the limit of "
                f"{max_samples} (max_clip_samples)"
            )
        available = self.samples[start : start + length]
        if not pad or len(available) == length:
            return available
        padded = np.zeros(length, dtype=self.samples.dtype)
        padded[: len(available)] = available
        return padded


class AudioStore:
    """Channels by id with LRU eviction under a byte budget and an idle timeout."""

    def __init__(
        self,
        budget_bytes: int,
        idle_timeout_s: float,
        resample_cache_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_channels: int | None = None,
    ):
        self.budget_bytes = budget_bytes
        self.max_channels = max_channels  # an upload with more is refused from its header
        self.idle_timeout_s = idle_timeout_s
        self.resample_cache_bytes = (
            budget_bytes // 4 if resample_cache_bytes is None else resample_cache_bytes
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._channels: OrderedDict[str, Channel] = OrderedDict()
        self._last_used: dict[str, float] = {}
        self._resampled: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._removal_listeners: list[Callable[[str], None]] = []
        self._removed: list[str] = []  # removed under the lock, announced after it

    def on_removal(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(audio_id)`` whenever a channel goes (released, evicted, expired)."""
        self._removal_listeners.append(listener)

    def _announce_removals(self) -> None:
        if not self._removed:  # the usual case on the hot path: no lock taken again
            return
        with self._lock:
            removed, self._removed = self._removed, []
        for audio_id in removed:
            for listener in self._removal_listeners:
                listener(audio_id)

    @property
    def bytes_used(self) -> int:
        """Bytes of original samples held (resampled views not included)."""
        with self._lock:
            return sum(c.samples.nbytes for c in self._channels.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._channels)

    def __contains__(self, audio_id: object) -> bool:
        with self._lock:
            return audio_id in self._channels

    def add(self, audio: DecodedAudio) -> list[str]:
        """Store every channel separately; returns their new ids in file order."""
        needed = audio.samples.nbytes
        if needed > self.budget_bytes:
            raise AudioTooLarge(
                f"The audio needs {needed / 2**20:.0f} MB, more than the audio memory budget "
                f"of {self.budget_bytes / 2**20:.0f} MB (audio_memory_budget_mb)"
            )
        channels = [
            Channel(_read_only(np.ascontiguousarray(audio.samples[:, i])), audio.sample_rate)
            for i in range(audio.num_channels)
        ]
        ids = [str(uuid.uuid4()) for _ in channels]
        with self._lock:
            now = self._clock()
            self._evict_for(needed, now)
            for audio_id, channel in zip(ids, channels, strict=True):
                self._channels[audio_id] = channel
                self._last_used[audio_id] = now
        self._announce_removals()
        return ids

    def add_file(
        self, source: bytes | BinaryIO, check: Callable[[int, int], None] | None = None
    ) -> tuple[DecodedAudio, list[str]]:
        """Decode a file and store its channels; returns the decoded audio and the new ids.

        ``check(sample_rate, frames)`` runs on the header, before anything is evicted or
        read, so a refused file changes nothing. Room is made before the samples are
        decoded, so the process never holds a full store and the new samples at once.
        """

        def before_read(frames: int, sample_rate: int, nbytes: int) -> None:
            if check:
                check(sample_rate, frames)
            self.make_room(nbytes)

        decoded = decode_audio(source, self.budget_bytes, before_read, self.max_channels)
        return decoded, self.add(decoded)

    @contextmanager
    def released_on_error(self, audio_ids: list[str]) -> Iterator[None]:
        """Release ``audio_ids`` if the block fails: an upload is stored whole or not at all."""
        try:
            yield
        except BaseException:
            self.release(audio_ids)
            raise

    def make_room(self, nbytes: int) -> None:
        """Evict least recently used audio now so that ``nbytes`` more fit the budget.

        Called before an upload's samples are decoded, so the process never holds the
        full budget and a new file's samples at once.
        """
        with self._lock:
            self._evict_for(nbytes, self._clock())
        self._announce_removals()

    def _evict_for(self, nbytes: int, now: float) -> None:
        self._expire_idle(now)
        used = sum(c.samples.nbytes for c in self._channels.values())
        while self._channels and used + nbytes > self.budget_bytes:
            oldest = next(iter(self._channels))
            used -= self._channels[oldest].samples.nbytes
            log.info(
                "Evicting audio %s (idle %.0f s) to stay within the %.0f MB memory budget",
                oldest,
                now - self._last_used[oldest],
                self.budget_bytes / 2**20,
            )
            self._remove(oldest)

    def get(self, audio_id: str) -> Channel:
        """The channel, marked as just used; :class:`UnknownAudio` if it is not here."""
        with self._lock:
            now = self._clock()
            self._expire_idle(now)
            channel = self._channels.get(audio_id)
            if channel is not None:
                self._channels.move_to_end(audio_id)
                self._last_used[audio_id] = now
        self._announce_removals()
        if channel is None:
            raise UnknownAudio(audio_id)
        return channel

    def samples_at(self, audio_id: str, sample_rate: int) -> np.ndarray:
        """The channel's samples at ``sample_rate``: the originals, or a cached resampled view."""
        channel = self.get(audio_id)
        if sample_rate == channel.sample_rate:
            return channel.samples
        key = (audio_id, sample_rate)
        with self._lock:
            cached = self._resampled.get(key)
            if cached is not None:
                self._resampled.move_to_end(key)
                return cached
        needed = math.ceil(channel.num_samples * sample_rate / channel.sample_rate) * 4
        if needed > self.resample_cache_bytes:
            raise ResampleTooLarge(
                f"Resampling to {sample_rate} Hz needs {needed / 2**20:.0f} MB, more than the "
                f"resample cache of {self.resample_cache_bytes / 2**20:.0f} MB "
                "(a quarter of audio_memory_budget_mb)"
            )
        view = librosa.resample(
            to_float32(channel.samples), orig_sr=channel.sample_rate, target_sr=sample_rate
        )
        view = _read_only(view.astype(np.float32, copy=False))
        with self._lock:
            if audio_id in self._channels:
                self._resampled[key] = view
                self._trim_resample_cache()
        return view

    def release(self, audio_ids: Iterable[str | None]) -> None:
        """Forget these channels now; unknown ids and None are ignored."""
        with self._lock:
            for audio_id in audio_ids:
                if audio_id in self._channels:
                    self._remove(audio_id)
        self._announce_removals()

    def _remove(self, audio_id: str) -> None:
        self._removed.append(audio_id)
        del self._channels[audio_id]
        del self._last_used[audio_id]
        for key in [k for k in self._resampled if k[0] == audio_id]:
            del self._resampled[key]

    def _expire_idle(self, now: float) -> None:
        expired = [i for i, t in self._last_used.items() if now - t > self.idle_timeout_s]
        for audio_id in expired:
            log.info("Releasing audio %s, idle for more than %.0f s", audio_id, self.idle_timeout_s)
            self._remove(audio_id)

    def _trim_resample_cache(self) -> None:
        used = sum(v.nbytes for v in self._resampled.values())
        while used > self.resample_cache_bytes:
            _, dropped = self._resampled.popitem(last=False)
            used -= dropped.nbytes


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
