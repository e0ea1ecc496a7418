"""Regenerate ``colormap_luts.npz``: the 256-entry RGB tables of the spectrogram colormaps.

matplotlib is not a dependency of the server, so the tables are generated once and
committed. Run with matplotlib importable (e.g. ``pip install matplotlib`` in a scratch
environment): ``python tools/make_colormap_luts.py``.
"""

from pathlib import Path

import matplotlib
import numpy as np

NAMES = ("viridis", "plasma", "inferno", "magma", "cividis", "gray")
OUTPUT = Path(__file__).resolve().parents[1] / "colormap_luts.npz"


def main() -> None:
    levels = np.linspace(0.0, 1.0, 256)
    tables = {name: matplotlib.colormaps[name](levels, bytes=True)[:, :3] for name in NAMES}
    np.savez_compressed(OUTPUT, **tables)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
