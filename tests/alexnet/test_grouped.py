"""The grouped single-device twin is a second implementation of the same network: after weight
conversion the two layouts must agree on outputs and on every parameter's gradient."""

import pytest
import torch

from alexnet import (
    AlexNet,
    GroupedAlexNet,
    grouped_from,
    to_grouped_state,
    to_two_tower_state,
    two_tower_from,
)


def image(n=2, size=224):
    return torch.rand(n, 3, size, size, dtype=torch.float64) * 255 - 120


@pytest.mark.parametrize("preset", ["paper", "cuda-convnet", "caffe"])
def test_forward_and_every_gradient_agree(preset):
    torch.manual_seed(3)
    # float64 so that the comparison can be tight; dropout is deterministic in eval mode (× 0.5).
    model = AlexNet(num_classes=20, devices=("cpu", "cpu"), preset=preset).double().eval()
    twin = grouped_from(model).double().eval()
    x = image(size=model.cfg.input_size)  # caffe: 227
    y_model, y_twin = model(x), twin(x)
    torch.testing.assert_close(y_model, y_twin, rtol=1e-10, atol=1e-10)
    target = torch.randint(0, 20, (2,))
    torch.nn.functional.cross_entropy(y_model, target).backward()
    torch.nn.functional.cross_entropy(y_twin, target).backward()
    model_grads = {k: p.grad for k, p in model.named_parameters()}
    twin_grads = to_two_tower_state({k: p.grad for k, p in twin.named_parameters()}, model.cfg)
    assert model_grads.keys() == twin_grads.keys()
    for k in model_grads:
        torch.testing.assert_close(model_grads[k], twin_grads[k], rtol=1e-9, atol=1e-12, msg=k)


def test_grouped_lrn_does_not_mix_towers():
    # A grouped twin whose tower-b half of conv1 is huge must not change tower a's LRN output.
    torch.manual_seed(4)
    twin = GroupedAlexNet(num_classes=10).eval()
    x = image(1).float()
    feats = {}
    twin.lrn1.register_forward_hook(lambda m, i, o: feats.setdefault("lrn1", o))
    twin(x)
    before = feats.pop("lrn1")[:, :48].clone()
    with torch.no_grad():
        twin.conv1.weight[48:] *= 100
    twin(x)
    torch.testing.assert_close(feats["lrn1"][:, :48], before)


def test_state_conversion_round_trip_both_placements():
    for preset in ("paper", "cuda-convnet"):
        m = AlexNet(num_classes=11, devices=("cpu", "cpu"), preset=preset)
        state = m.state_dict()
        back = to_two_tower_state(to_grouped_state(state, m.cfg), m.cfg)
        assert back.keys() == state.keys()
        for k in state:
            assert torch.equal(back[k], state[k]), k
        twin_state = to_grouped_state(state, m.cfg)
        assert twin_state["conv2.weight"].shape == (256, 48, 5, 5)  # groups=2
        assert twin_state["conv3.weight"].shape == (384, 256, 3, 3)  # full: the crossing
        assert twin_state["fc8.weight"].shape == (11, 4096)


def test_two_tower_from_twin_gives_same_outputs():
    twin = GroupedAlexNet(num_classes=6).eval()
    model = two_tower_from(twin)
    x = image(1).float()
    torch.testing.assert_close(model(x), twin(x))


def test_one_tower_has_no_twin():
    with pytest.raises(ValueError, match="two-tower"):
        GroupedAlexNet(towers=1)
