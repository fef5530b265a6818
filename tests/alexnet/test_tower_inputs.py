"""Each tower's input, normalised on its own device from the uint8 batch (issue 11, 2g)."""

import torch
from tinydata import make_tiny_dataset

from alexnet.config import DataConfig
from alexnet.data.pipeline import ImagePipeline
from alexnet.models.model import AlexNet
from twogpu import record_crossings

CPU, META = torch.device("cpu"), torch.device("meta")


def _pipeline(root) -> ImagePipeline:
    return ImagePipeline(DataConfig(root=str(root), workers=0), batch_size=4, seed=0)


def test_tower_a_input_is_the_pipeline_input_and_b_gets_the_uint8_batch(tmp_path):
    """Tower a's input equals the one-device input (mean window, lighting from the same generator
    draws); tower b (``meta`` here standing for a second device) receives the uint8 batch and the
    lighting offsets, never tower a's float input. (Tower a is on the host here, so nothing is sent
    to it; on GPUs the batch goes from the host to each: see test_crossings.)"""
    p = _pipeline(make_tiny_dataset(tmp_path))
    b = next(p.train_batches(0))
    ref = p.to_model_input(b, CPU, train=True, generator=torch.Generator().manual_seed(3))
    with record_crossings() as records:
        xa, xb = p.to_tower_inputs(b, (CPU, META), train=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(xa, ref)
    assert xb.device == META and xb.shape == xa.shape and xb.dtype == torch.float32
    n = len(b.labels)
    assert [(r.source, r.target, r.bytes_forward) for r in records] == [
        ("a", "b", n * 150_528),
        ("a", "b", n * 3 * 4),
    ]
    # evaluation: no lighting, so only the images travel
    with record_crossings() as records:
        p.to_tower_inputs(b, (CPU, META), train=False)
    assert [r.bytes_forward for r in records] == [n * 150_528]


def test_one_device_shares_one_input_and_the_model_takes_a_pair(tmp_path):
    p = _pipeline(make_tiny_dataset(tmp_path))
    b = next(p.val_batches(batch_size=2))
    xa, xb = p.to_tower_inputs(b, (CPU, CPU), train=False)
    assert xa is xb
    model = AlexNet(num_classes=2, seed=0).eval()
    with torch.no_grad():
        assert torch.equal(model((xa, xb)), model(xa))
