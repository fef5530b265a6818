"""The two-tower network against the paper's numbers (Figure 2, section 3.5) and its connectivity
(section 3.2)."""

import pytest
import torch

from alexnet import AlexNet
from alexnet.config import ConfigError, model_preset

PAPER_PARAMETERS = 60_965_224  # counted by hand from Figure 2's layer sizes (section 3.5: "60 million")
STAGE_SIZES = [55, 27, 27, 13, 13, 13, 13, 6]  # conv1, pool1, conv2, pool2, conv3, conv4, conv5, pool5


def image(n=2):
    return torch.rand(n, 3, 224, 224) * 255 - 120


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AlexNet(num_classes=1000, devices=("cpu", "cpu"), preset="paper")


def capture(model, names):
    """Forward hooks recording each named module's outputs, in call order."""
    seen, handles = [], []
    for tower in "ab":
        for name in names:
            module = model.get_submodule(f"{tower}.{name}")
            handles.append(
                module.register_forward_hook(lambda m, i, o, key=f"{tower}.{name}": seen.append((key, o)))
            )
    return seen, handles


def test_stage_sizes_and_logits(model):
    seen, handles = capture(model, ["conv1", "pool", "conv2", "conv3", "conv4", "conv5"])
    logits = model.eval()(image())
    for h in handles:
        h.remove()
    assert logits.shape == (2, 1000)
    for tower in "ab":
        outs = [o for k, o in seen if k.startswith(tower)]
        sizes = [o.shape[-1] for o in outs]
        assert sizes == STAGE_SIZES, f"tower {tower}: {sizes}"
        channels = [o.shape[1] for o in outs]
        assert channels == [48, 48, 128, 128, 192, 192, 128, 128]


def test_parameter_count_matches_paper(model):
    assert sum(p.numel() for p in model.parameters()) == PAPER_PARAMETERS
    assert sum(p.numel() for p in model.a.parameters()) == sum(p.numel() for p in model.b.parameters())


@pytest.mark.parametrize("preset", ["paper", "cuda-convnet"])
def test_parameter_count_same_in_both_presets_and_fc8_placement(preset):
    m = AlexNet(devices=("meta", "meta"), preset=preset)
    assert sum(p.numel() for p in m.parameters()) == PAPER_PARAMETERS
    if preset == "paper":
        assert m.a.fc8.out_features == 500 and m.b.fc8.out_features == 500
    else:
        assert m.a.fc8.out_features == 1000 and m.b.fc8 is None


def test_kernel_shapes_per_tower(model):
    # Figure 2: conv2, conv4, conv5 take only their own tower's maps; conv3 and fc take both.
    expected = {
        "conv1": (48, 3, 11, 11),
        "conv2": (128, 48, 5, 5),
        "conv3": (192, 256, 3, 3),
        "conv4": (192, 192, 3, 3),
        "conv5": (128, 192, 3, 3),
        "fc6": (2048, 9216),
        "fc7": (2048, 4096),
        "fc8": (500, 4096),
    }
    for tower in (model.a, model.b):
        for name, shape in expected.items():
            assert tuple(getattr(tower, name).weight.shape) == shape, name


def test_wrong_input_shape_names_expected_shape(model):
    with pytest.raises(ValueError, match=r"\(N, 3, 224, 224\)"):
        model(torch.zeros(2, 3, 227, 227))
    with pytest.raises(ValueError, match=r"\(N, 3, 224, 224\)"):
        model(torch.zeros(3, 224, 224))


def test_odd_number_of_classes_is_split_between_towers():
    m = AlexNet(num_classes=7, devices=("cpu", "cpu"))
    assert (m.a.fc8.out_features, m.b.fc8.out_features) == (4, 3)
    assert m.eval()(image(1)).shape == (1, 7)


def test_one_tower_ablation_matches_footnote():
    m = AlexNet(devices=("meta", "meta"), towers=1)
    assert m.b is None
    widths = [
        m.a.conv1.out_channels,
        m.a.conv2.out_channels,
        m.a.conv3.out_channels,
        m.a.conv4.out_channels,
        m.a.conv5.out_channels,
        m.a.fc6.out_features,
        m.a.fc7.out_features,
    ]
    assert widths == [48, 128, 192, 192, 256, 4096, 4096]


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown model preset"):
        model_preset("torch7")


# --------------------------------------------------------------------------- connectivity
def grads_of(output, params):
    gs = torch.autograd.grad(output.sum(), params, allow_unused=True, retain_graph=True)
    return [0.0 if g is None else g.abs().sum().item() for g in gs]


def test_connectivity_with_gradients():
    torch.manual_seed(1)
    m = AlexNet(num_classes=10, devices=("cpu", "cpu")).eval()
    seen, handles = capture(m, ["conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"])
    m(image(2))
    for h in handles:
        h.remove()
    out = dict(seen)
    a, b = m.a, m.b
    # conv2: own tower only.
    assert grads_of(out["a.conv2"], [b.conv1.weight, b.conv2.weight]) == [0.0, 0.0]
    assert grads_of(out["a.conv2"], [a.conv1.weight])[0] > 0
    # conv3: tower a's conv3 sees tower b's conv2 maps (and its own).
    g_b2, g_a2 = grads_of(out["a.conv3"], [b.conv2.weight, a.conv2.weight])
    assert g_b2 > 0 and g_a2 > 0
    # conv4, conv5: after conv3, tower a depends on nothing more of tower b.
    for key in ("a.conv4", "a.conv5"):
        assert grads_of(out[key], [b.conv3.weight, b.conv4.weight, b.conv5.weight]) == [0.0, 0.0, 0.0], key
        assert grads_of(out[key], [b.conv2.weight])[0] > 0, key  # only through conv3's crossing
    # fc6, fc7, fc8: connected to both towers' previous layer.
    assert min(grads_of(out["a.fc6"], [b.conv5.weight, a.conv5.weight])) > 0
    assert min(grads_of(out["a.fc7"], [b.fc6.weight, a.fc6.weight])) > 0
    assert min(grads_of(out["a.fc8"], [b.fc7.weight, a.fc7.weight])) > 0
    assert min(grads_of(out["b.fc8"], [b.fc7.weight, a.fc7.weight])) > 0


# ------------------------------------------------------------------------- initialisation
@pytest.mark.parametrize("preset,conv345_std", [("paper", 0.01), ("cuda-convnet", 0.03)])
def test_initialisation_statistics(preset, conv345_std):
    torch.manual_seed(2)
    m = AlexNet(devices=("cpu", "cpu"), preset=preset)
    bias_one = {"conv2", "conv4", "conv5", "fc6", "fc7"}  # section 5
    for tower in m.towers():
        for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
            layer = getattr(tower, name)
            if layer is None:  # cuda-convnet: fc8 on tower a only
                continue
            w = layer.weight.detach()
            std = conv345_std if name in ("conv3", "conv4", "conv5") else 0.01
            # n >= 17,424 samples: the sample std is within 3 % of the true one (>> 4 sigma).
            assert abs(w.std().item() / std - 1) < 0.03, (name, w.std().item())
            assert abs(w.mean().item()) < 4 * std / w.numel() ** 0.5, name
            expected_bias = 1.0 if name in bias_one else 0.0
            assert torch.all(layer.bias == expected_bias), name


def test_init_bias_one_option():
    m = AlexNet(devices=("meta", "meta"), init_bias_one=0.1)
    assert m.cfg.init_bias_one == 0.1


# ------------------------------------------------------------------------------ placement
def test_towers_on_the_devices_asked_for():
    m = AlexNet(devices=("cpu", "meta"))
    assert {p.device.type for p in m.a.parameters()} == {"cpu"}
    assert {p.device.type for p in m.b.parameters()} == {"meta"}


@pytest.mark.cuda
def test_cuda_placement_and_forward():
    # Two GPUs when present, else one GPU plus the CPU: real copies between devices.
    second = "cuda:1" if torch.cuda.device_count() >= 2 else "cpu"
    m = AlexNet(num_classes=10, devices=("cuda:0", second)).eval()
    assert {str(p.device) for p in m.a.parameters()} == {"cuda:0"}
    assert {p.device.type for p in m.b.parameters()} == {torch.device(second).type}
    x = image(2)
    y = m(x)
    assert y.device == torch.device("cuda:0") and y.shape == (2, 10)
    ref = AlexNet(num_classes=10, devices=("cpu", "cpu")).eval()
    ref.load_state_dict({k: v.cpu() for k, v in m.state_dict().items()})
    torch.testing.assert_close(y.cpu(), ref(x), rtol=1e-3, atol=1e-3)
