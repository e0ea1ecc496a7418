#!/usr/bin/env bash
# Regenerates speech_hello.wav, the English speech clip that tests/test_conversion.py transcribes.
# Needs espeak-ng (Debian: apt-get install -y espeak-ng) and the project's requirements
# (numpy, scipy, soundfile). espeak-ng speaks at 22.05 kHz; Whisper wants 16 kHz mono 16-bit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
text="Hello. The quick brown fox jumps over the lazy dog."
raw="$(mktemp --suffix=.wav)"
trap 'rm -f "$raw"' EXIT

# The male "m3" variant at 120 words/min is the espeak-ng rendering tiny.en transcribes best.
espeak-ng -v en-us+m3 -s 120 -w "$raw" "$text"

python3 - "$raw" "$here/speech_hello.wav" <<'PY'
import sys
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

src, dst = sys.argv[1], sys.argv[2]
audio, rate = sf.read(src, dtype="float32", always_2d=True)
target = 16_000
step = gcd(rate, target)
resampled = resample_poly(audio.mean(axis=1), target // step, rate // step)
sf.write(dst, np.clip(resampled, -1.0, 1.0), target, subtype="PCM_16")
PY
