"""The precision setting (issue 11, 2b): one name, the backend flags it implies, autocast only where
it says."""

import contextlib

import pytest
import torch

from twogpu import precision


@pytest.fixture(autouse=True)
def _restore_flags():
    """configure() is process-wide: put PyTorch's own defaults back after each test."""
    saved = precision.tf32_enabled()
    yield
    precision.configure("tf32" if saved["cudnn_conv"] else "fp32")
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "tf32" if saved["cuda_matmul"] else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = saved["cuda_matmul"]


def test_fp32_switches_tf32_off_for_cudnn_convolutions_and_matmuls():
    precision.configure("tf32")
    assert precision.tf32_enabled() == {"cudnn_conv": True, "cuda_matmul": True}
    said = precision.configure("fp32")
    assert precision.tf32_enabled() == {"cudnn_conv": False, "cuda_matmul": False}
    assert "TF32 off" in said
    precision.configure("bf16")  # what autocast leaves in float32 is true float32
    assert precision.tf32_enabled() == {"cudnn_conv": False, "cuda_matmul": False}


def test_autocast_only_for_bf16_and_only_on_cuda_unless_asked():
    assert isinstance(precision.autocast("cpu", "bf16"), contextlib.nullcontext)
    assert isinstance(precision.autocast("cuda:0", "fp32"), contextlib.nullcontext)
    assert isinstance(precision.autocast("cuda:0", "tf32"), contextlib.nullcontext)
    with precision.autocast("cpu", "bf16", on_cpu=True):
        y = torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3))
    assert y.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.configure("fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.autocast("cpu", "none")


def test_precision_is_the_one_key_and_amp_is_unknown(tmp_path):
    """fp32 by default; a file or --set with a key ``amp`` is refused, the message listing the known
    keys (precision among them)."""
    from alexnet.config import ConfigError, config_from_dict, load_config

    assert config_from_dict({}).train.precision == "fp32"
    old = tmp_path / "old.toml"
    old.write_text('[train]\namp = "bf16"\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) train.amp; known keys .*precision"):
        load_config(old)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) train.amp"):
        load_config(None, ["train.amp=bf16"])
    with pytest.raises(ConfigError, match="train.precision"):
        config_from_dict({"train": {"precision": "fp16"}})
