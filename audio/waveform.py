"""The waveform array the frontend draws above the spectrogram."""

from __future__ import annotations

import numpy as np

from audio.codec import to_float32

REDUCE_ABOVE = 100_000  # samples; longer spans are reduced before sending
REDUCED_BUCKETS = 5_000  # min/max pairs: about 10,000 values, enough for any screen width


def visualization_array(samples: np.ndarray, target_length: int) -> np.ndarray:
    """Z-scored samples; long spans as per-bucket (min, max) pairs so peaks stay visible.

    An empty span gives ``target_length`` zeros.
    """
    if len(samples) == 0:
        return np.zeros(target_length, dtype=np.float32)
    values = to_float32(samples)
    if len(values) > REDUCE_ABOVE:
        starts = np.linspace(0, len(values), REDUCED_BUCKETS, endpoint=False).astype(np.int64)
        pairs = np.stack([np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)])
        values = pairs.T.ravel()
    std = values.std()
    centred = values - values.mean()
    return centred / std if std > 0 else centred
