"""model.input_size: the paper's 224 with cuda-convnet's output rule, and Caffe's 227 (issue 12).

The references are written out here: cuda-convnet2's output size 1 + ceil((in + 2·pad − filter) /
stride) (layer.py, ConvLayerParser), and a 224 image explicitly zero-padded to 227 at the right and
bottom, which is what the rule means for the last window.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from alexnet.config import ConfigError, load_config
from alexnet.data import augment
from alexnet.models.grouped import GroupedAlexNet, grouped_from, two_tower_from
from alexnet.models.model import AlexNet

SIZES = (224, 227)


def cuda_convnet_outputs(size: int, filt: int = 11, stride: int = 4, pad: int = 0) -> int:
    return 1 + math.ceil((2 * pad + size - filt) / stride)


def caffe_outputs(size: int, filt: int = 11, stride: int = 4) -> int:
    return (size - filt) // stride + 1


def test_both_sizes_give_55_by_either_rule_they_are_built_for():
    assert cuda_convnet_outputs(224) == 55 and caffe_outputs(224) == 54  # why 224 needs the rule
    assert cuda_convnet_outputs(227) == 55 and caffe_outputs(227) == 55


def _shapes(model, x):
    """Output shapes of conv1 and of every pooling call, recorded with forward hooks."""
    seen = {"conv1": [], "pool": []}
    handles = []
    for m in [model] if isinstance(model, GroupedAlexNet) else model.towers()[:1]:
        handles.append(m.conv1.register_forward_hook(lambda mod, i, o: seen["conv1"].append(tuple(o.shape))))
        handles.append(
            m.pool.register_forward_hook(lambda mod, i, o: seen["pool"].append(tuple(o.shape[-2:])))
        )
    model(x)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("preset", ["paper", "cuda-convnet"])
@pytest.mark.parametrize("layout", ["two-tower", "grouped", "one-tower"])
def test_conv1_is_55_and_pool5_is_6_for_every_size_preset_and_layout(size, preset, layout):
    x = torch.zeros(1, 3, size, size, device="meta")
    if layout == "grouped":
        model = GroupedAlexNet(num_classes=10, device="meta", preset=preset, input_size=size)
        width = 96
    else:
        model = AlexNet(
            num_classes=10,
            devices=("meta", "meta"),
            preset=preset,
            input_size=size,
            towers=1 if layout == "one-tower" else 2,
        )
        width = 48
    seen = _shapes(model.eval(), x)
    assert seen["conv1"] == [(1, width, 55, 55)]
    assert seen["pool"] == [(27, 27), (13, 13), (6, 6)]
    assert model.input_shape == (3, size, size)


def test_224_rule_equals_an_explicit_zero_padded_reference():
    torch.manual_seed(0)
    model = AlexNet(num_classes=10, devices=("cpu", "cpu"), input_size=224).eval()
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64) * 60
    model = model.double()
    padded = torch.zeros(2, 3, 227, 227, dtype=torch.float64)
    padded[:, :, :224, :224] = x  # 3 zero pixels at the right and at the bottom
    conv = model.a.conv1
    got = []
    h = conv.register_forward_hook(lambda m, i, o: got.append(o.clone()))  # ReLU is in place
    with torch.no_grad():
        logits = model(x)
    h.remove()
    expect = F.conv2d(padded, conv.weight, conv.bias, stride=4)
    assert expect.shape[-2:] == (55, 55)
    torch.testing.assert_close(got[0], expect)
    # Whole network: the 224 model on x == a no-padding (227) model with the same weights on the padded x.
    caffe = AlexNet(num_classes=10, devices=("cpu", "cpu"), input_size=227).double().eval()
    caffe.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(logits, caffe(padded))


def test_the_last_window_covers_the_last_input_pixels_and_three_zeros():
    # The 55th output column reads input columns 216..226, i.e. 216..223 and 3 padded zeros.
    model = AlexNet(num_classes=10, devices=("cpu", "cpu"), input_size=224).double().eval()
    conv = model.a.conv1
    got = []
    conv.register_forward_hook(lambda m, i, o: got.append(o.clone()))
    x = torch.zeros(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        model(x)
        x[..., 223] = 1.0
        model(x)
    changed = (got[1] - got[0]).abs().amax(dim=(0, 1, 2)) > 0  # per output column
    assert changed.nonzero().flatten().tolist() == [54]  # only the last window sees column 223


@pytest.mark.parametrize("size", SIZES)
def test_grouped_twin_and_conversion_work_for_both_sizes(size):
    torch.manual_seed(0)
    model = AlexNet(num_classes=7, devices=("cpu", "cpu"), input_size=size).double().eval()
    x = torch.rand(2, 3, size, size, dtype=torch.float64) * 255 - 120
    twin = grouped_from(model).double().eval()
    back = two_tower_from(twin).double().eval()
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x))
        torch.testing.assert_close(back(x), model(x))


@pytest.mark.parametrize("size,other", [(224, 227), (227, 224)])
def test_input_shape_error_names_the_size_the_model_was_built_for(size, other):
    for model in (
        AlexNet(num_classes=3, devices=("meta", "meta"), input_size=size),
        GroupedAlexNet(num_classes=3, device="meta", input_size=size),
    ):
        with pytest.raises(ValueError, match=rf"\(N, 3, {size}, {size}\).*input_size = {size}"):
            model(torch.zeros(1, 3, other, other, device="meta"))


def test_input_size_is_one_setting_and_only_the_two_known_values():
    assert load_config().model.input_size == 224
    assert load_config(None, ["model.input_size=227"]).model.input_size == 227
    assert load_config("configs/cuda-convnet-2gpu.toml").model.input_size == 224
    with pytest.raises(ConfigError, match="input_size"):
        load_config(None, ["model.input_size=226"])


# ------------------------------------------------------------------------------ crops and windows
@pytest.mark.parametrize("size", SIZES)
def test_views_follow_the_input_size(size):
    far = 256 - size
    assert augment.centre_crop(256, size) == (far // 2, far // 2, 0)
    views = augment.ten_views(256, size)
    assert {(t, l) for t, l, _ in views} == {(0, 0), (0, far), (far, 0), (far, far), (far // 2, far // 2)}
    tops = {augment.train_crop(0, 0, i, 256, size)[0] for i in range(3000)}
    assert tops == set(range(far + 1))  # 224: offsets 0..32 (cuda-convnet2 jpeg.cpp: rand % (32 + 1))


@pytest.mark.parametrize("size", SIZES)
def test_centre_mean_window_is_subtracted_from_every_view(size):
    rng = np.random.default_rng(0)
    mean = torch.from_numpy(rng.uniform(0, 255, (3, 256, 256)).astype(np.float32))
    image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    views = augment.ten_views(256, size)
    x = torch.from_numpy(np.stack([augment.crop_view(image, v, size) for v in views]))[
        None
    ]  # (1, 10, 3, C, C)
    crops = torch.tensor(views)[None]
    c = (256 - size) // 2
    centre = mean[:, c : c + size, c : c + size]  # not mirrored, for every view
    got = augment.model_input(x, crops, mean, mean_window="centre")
    torch.testing.assert_close(got[0], x[0].float() - centre)
    own = augment.model_input(x, crops, mean, mean_window="crop")  # the paper: each view's own window
    t, l, _ = views[5]  # first mirrored view
    torch.testing.assert_close(own[0, 5], x[0, 5].float() - mean[:, t : t + size, l : l + size].flip(-1))


def test_lighting_rescale_scales_the_whole_training_input_by_one_over_1_1():
    rng = np.random.default_rng(1)
    mean = torch.from_numpy(rng.uniform(0, 255, (3, 256, 256)).astype(np.float32))
    x = torch.from_numpy(rng.integers(0, 256, (4, 3, 224, 224), dtype=np.uint8))
    crops = torch.tensor([augment.train_crop(0, 0, i, 256, 224) for i in range(4)])
    eigval, eigvec = torch.tensor([0.2, 0.02, 0.005]), torch.linalg.qr(torch.randn(3, 3))[0]
    kw = dict(eigval=eigval, eigvec=eigvec, lighting_std=0.1, formula="cuda-convnet", mean_window="centre")
    plain = augment.model_input(x, crops, mean, generator=torch.Generator().manual_seed(3), **kw)
    scaled = augment.model_input(
        x, crops, mean, generator=torch.Generator().manual_seed(3), rescale=True, **kw
    )
    torch.testing.assert_close(scaled, plain * (1 / (1 + 0.1)))  # convdata.py: data *= 1.0 / (1.0 + 0.1)
    off = augment.model_input(x, crops, mean, rescale=True, mean_window="centre")  # no noise: no rescale
    torch.testing.assert_close(off, x.float() - mean[:, 16:240, 16:240])


# ------------------------------------------------------- checkpoint users: evaluate, predict, figures
@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_evaluate_predict_and_figures_use_the_checkpoints_input_size(tmp_path, size):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
    from tinydata import make_tiny_dataset

    from alexnet.commands.evaluate import evaluate
    from alexnet.commands.figures import make_figures
    from alexnet.commands.predict import predict
    from alexnet.config import config_to_dict
    from twogpu.checkpoint import save_checkpoint

    data = make_tiny_dataset(tmp_path / "data", classes=("blue", "green", "red"), train_n=2, val_n=2)
    cfg = load_config(
        None,
        [
            f'data.root="{data}"',
            "model.num_classes=3",
            "data.workers=0",
            "eval.batch_size=4",
            f"model.input_size={size}",
        ],
    )
    model = AlexNet(devices=("cpu", "cpu"), preset=cfg.model, seed=0)
    path = tmp_path / "run" / "checkpoints" / "best.pt"
    save_checkpoint(
        {
            "model": model.state_dict(),
            "config": config_to_dict(cfg),
            "step": 1,
            "epoch": 1,
            "classes": ["blue", "green", "red"],
            "class_names": ["b", "g", "r"],
        },
        path,
    )
    # Each of these builds the model from the checkpoint and cuts views of its size: a view of the
    # other size would be refused by the model's input-shape check.
    result = evaluate(path, str(data), devices=("cpu", "cpu"), log=lambda s: None)
    assert result["images"] == 6 and set(result) >= {"centre", "ten_view"}
    image = next((data / "val" / "red").iterdir())
    (pred,) = predict(path, [image], ten_view=True, log=lambda s: None)
    assert len(pred.labels) == 3 and abs(sum(p for _, p in pred.labels) - 1) < 1e-5
    paths = make_figures(
        path, data, n_images=2, n_queries=1, n_neighbours=2, max_train=4, thumb=16, batch_size=2
    )
    assert len(paths) == 3


class _PadCount(TorchDispatchMode):
    """Counts the zero-padding ops run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.pads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.pads += func.overloadpacket is torch.ops.aten.constant_pad_nd
        return func(*args, **(kwargs or {}))


def test_towers_sharing_one_input_pad_it_once():
    """On one device the towers share the input (and so one padded copy); two different inputs,
    or a 227 input, are padded per tower or not at all; the logits are the same either way."""
    torch.manual_seed(0)
    model = AlexNet(num_classes=10, devices=("cpu", "cpu"), input_size=224).eval()
    x = torch.randn(2, 3, 224, 224) * 60
    counts, logits = [], []
    for inp in (x, (x, x), (x, x.clone())):
        with torch.no_grad(), _PadCount() as mode:
            logits.append(model(inp))
        counts.append(mode.pads)
    assert counts == [1, 1, 2]
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])
    caffe = AlexNet(num_classes=10, devices=("cpu", "cpu"), input_size=227).eval()
    with torch.no_grad(), _PadCount() as mode:
        caffe(torch.zeros(1, 3, 227, 227))
    assert mode.pads == 0
