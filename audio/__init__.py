"""Audio in and out: decoding uploads, fetching URLs, WAV clips and waveform overviews."""
