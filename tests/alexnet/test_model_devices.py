"""`AlexNet(devices=...)` from Python: a device that is not on this machine is one clear ValueError
naming the tower and the device (as the command line says it), never the CUDA driver's error."""

import pytest
import torch

from alexnet import AlexNet


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_the_readmes_two_gpu_snippet_without_cuda():
    with pytest.raises(ValueError) as error:
        AlexNet(num_classes=1000, devices=("cuda:0", "cuda:1"), preset="paper")
    message = str(error.value)
    assert message == "devices[0] (tower a): 'cuda:0' was requested but CUDA is not available on this machine"


def test_a_gpu_past_the_visible_ones_names_its_tower():
    past = f"cuda:{torch.cuda.device_count() + 3}"
    with pytest.raises(ValueError, match=rf"devices\[1\] \(tower b\): '{past}' was requested"):
        AlexNet(devices=("cpu", past))


@pytest.mark.parametrize(
    "devices, message",
    [
        (("cpu", "gpu1"), r"devices\[1\] \(tower b\): 'gpu1' is not a device name"),
        (("cpu",), "expected two devices"),
        ("cpu", "expected two devices"),
    ],
)
def test_not_two_device_names(devices, message):
    with pytest.raises(ValueError, match=message):
        AlexNet(devices=devices)
