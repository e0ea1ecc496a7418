"""Loading annotated recordings and the fixed held-out split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisperseg.datasets import (
    find_recordings,
    held_out_group,
    load_recording,
    shared_data_dir,
    split_recordings,
)
from whisperseg.segment import Segment

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(
    DATA is None, reason="shared recordings not found at ../shared/data next to the repository"
)
CANARY = "llb16_1612_2018_05_10_12_13_41"


def test_split_on_file_names() -> None:
    names = [
        "adults/zebra_finch_g4p5U-f00011.wav",
        "adults/zebra_finch_g17y2U-f00007.wav",
        "juveniles/zebra_finch_R3625_41057.44850919_5_28_12_27_30.wav",
        "juveniles/zebra_finch_R3428_40932.29996086_1_24_8_19_56.wav",
        f"canary/{CANARY}.wav",
        "canary/llb16_0602_2018_05_07_14_23_49.wav",
    ]
    train, held_out = split_recordings(names)
    assert [p.name for p in held_out] == [Path(n).name for n in names[0::2]]
    assert [p.name for p in train] == [Path(n).name for n in names[1::2]]
    assert held_out_group(names[0]) == "adults_g4p5U"
    assert held_out_group(names[1]) is None


def test_load_recording_mixes_to_float32_mono(tmp_path: Path) -> None:
    sr = 8000
    stereo = np.stack([np.full(sr, 0.5), np.full(sr, -0.25)], axis=1)
    sf.write(tmp_path / "clip.wav", stereo, sr, subtype="PCM_16")
    meta = {
        "onset": [0.5, 0.1],
        "offset": [0.6, 0.2],
        "cluster": [1, 0],
        "species": "zebra_finch",
        "sr": sr,
        "min_frequency": 0,
        "spec_time_step": 0.0025,
        "min_segment_length": 0.01,
        "tolerance": 0.01,
        "time_per_frame_for_scoring": 0.001,
        "eps": 0.02,
    }
    (tmp_path / "clip.json").write_text(json.dumps(meta))
    rec = load_recording(tmp_path / "clip.wav")
    assert rec.audio.dtype == np.float32 and rec.audio.shape == (sr,)
    assert rec.audio[0] == pytest.approx(0.125, abs=1e-3)
    assert rec.segments == (Segment(0.1, 0.2, "0"), Segment(0.5, 0.6, "1"))
    assert (rec.sr, rec.spec_time_step, rec.eps) == (sr, 0.0025, 0.02)
    assert find_recordings(tmp_path) == [tmp_path / "clip.wav"]


@needs_data
def test_held_out_split_of_shared_data() -> None:
    assert DATA is not None
    paths = find_recordings(DATA)
    assert paths == sorted(paths)
    train, held_out = split_recordings(paths)
    assert not set(train) & set(held_out)
    assert sorted(train + held_out) == paths
    held_names = {p.name for p in held_out}
    assert sum("g4p5U" in n for n in held_names) == 5
    assert sum("R3625" in n for n in held_names) == 5
    assert f"{CANARY}.wav" in held_names
    assert sum("bengalese_finch_bird0_1" in n for n in held_names) == 35
    assert "mouse_usv_amvoc_rec8.wav" in held_names
    assert not any("g4p5U" in p.name or "R3625" in p.name or CANARY in p.name for p in train)


@needs_data
def test_loading_gives_the_json_segments() -> None:
    assert DATA is not None
    path = DATA / "zebra_finch" / "adults" / "zebra_finch_g4p5U-f00011.wav"
    meta = json.loads(path.with_suffix(".json").read_text())
    rec = load_recording(path)
    assert [(s.onset, s.offset, s.cluster) for s in rec.segments] == list(
        zip(meta["onset"], meta["offset"], meta["cluster"], strict=True)
    )
    assert rec.tolerance == meta["tolerance"] and rec.species == meta["species"]
    assert rec.duration == pytest.approx(sf.info(path).duration)


def test_a_copy_of_the_recordings_elsewhere_is_named_by_a_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHISPERSEG_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("WHISPERSEG_SHARED_DATA", str(tmp_path / "absent"))
    assert shared_data_dir() is None
