"""What the GPU path chooses (precision, CTranslate2 compute type, batch), checked on the CPU."""

from __future__ import annotations

import pytest
import torch

from whisperseg import ct2
from whisperseg.model import inference_dtype, pick_device
from whisperseg.segmentation import _default_batch_size

CUDA = torch.device("cuda")


def chip(native_bf16: bool):
    """``torch.cuda.is_bf16_supported`` of a chip: bf16 emulated everywhere, native or not."""

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native_bf16 or including_emulation

    return is_bf16_supported


@pytest.mark.parametrize(
    ("native_bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)]
)
def test_a_gpu_gets_bf16_only_where_the_chip_has_it(
    monkeypatch: pytest.MonkeyPatch, native_bf16: bool, expected: torch.dtype
) -> None:
    # A T4 or V100: torch reports bf16 as supported, emulated; fp16 is far faster there.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", chip(native_bf16))
    assert inference_dtype(CUDA) == expected


def test_the_cpu_keeps_full_precision_and_its_own_choices() -> None:
    cpu = pick_device("cpu")
    assert inference_dtype(cpu) == torch.float32
    assert ct2.compute_type(cpu) == "int8" and ct2.compute_type(CUDA) == "int8_float16"
    assert _default_batch_size(cpu) == 16 and _default_batch_size(CUDA) == 64
