"""Speed options change how the network runs, never what it computes or how its weights are named."""

import pytest
import torch

from alexnet.models.grouped import GroupedAlexNet, grouped_from
from alexnet.models.model import AlexNet
from alexnet.models.speed import prepare_for_speed, to_input
from twogpu.precision import autocast


def _pair():
    torch.manual_seed(0)
    model = AlexNet(num_classes=10, devices=("cpu", "cpu")).eval()
    fast = AlexNet(num_classes=10, devices=("cpu", "cpu")).eval()
    fast.load_state_dict(model.state_dict())
    return model, fast


@pytest.mark.slow
def test_channels_last_keeps_keys_and_outputs():
    model, fast = _pair()
    keys = list(model.state_dict())
    prepare_for_speed(fast, channels_last=True)
    assert list(fast.state_dict()) == keys
    assert fast.a.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 224, 224) * 50
    torch.testing.assert_close(fast(to_input(x, "cpu", channels_last=True)), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_channels_last_grouped_twin_gradients_match():
    model, _ = _pair()
    twin = grouped_from(model).train()
    fast = grouped_from(model).train()
    prepare_for_speed(fast, channels_last=True)
    assert isinstance(fast, GroupedAlexNet) and list(fast.state_dict()) == list(twin.state_dict())
    x = torch.randn(2, 3, 224, 224) * 50
    torch.manual_seed(1)
    twin(x).sum().backward()
    torch.manual_seed(1)  # same dropout masks
    fast(to_input(x, "cpu", channels_last=True)).sum().backward()
    torch.testing.assert_close(fast.conv1.weight.grad, twin.conv1.weight.grad, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_bf16_autocast_runs_and_stays_close():
    model, _ = _pair()
    x = torch.randn(2, 3, 224, 224) * 50
    with autocast("cpu", "bf16", on_cpu=True):
        y = model(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), model(x), rtol=0.1, atol=0.05)
    with autocast("cpu", "fp32", on_cpu=True):
        assert model(x).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        autocast("cpu", "fp8")


def test_tower_streams_only_for_two_towers_on_one_gpu():
    model = AlexNet(num_classes=10, devices=("meta", "meta"))
    assert model.use_side_stream() is False  # not CUDA: plain sequential forward
    assert model.side_stream is None


@pytest.mark.cuda
def test_tower_streams_same_gpu_match_sequential():
    torch.manual_seed(0)
    model = AlexNet(num_classes=10, devices=("cuda:0", "cuda:0")).eval()
    x = torch.randn(4, 3, 224, 224, device="cuda:0") * 50
    ref = model(x)
    assert model.use_side_stream()
    torch.testing.assert_close(model(x), ref)
