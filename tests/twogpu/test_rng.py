"""Named random streams (twogpu.rng) and the towers' independent initial weights (issue 11, 2a)."""

import torch

from alexnet.models.grouped import GroupedAlexNet, to_grouped_state
from alexnet.models.model import AlexNet
from twogpu.rng import device_streams, init_generator, stream_seed, use_streams


def test_stream_seeds_differ_by_every_part_of_the_name():
    base = stream_seed(0, "dropout", rank=0, step=0)
    others = [
        stream_seed(1, "dropout"),
        stream_seed(0, "lighting"),
        stream_seed(0, "dropout", rank=1),
        stream_seed(0, "dropout", step=1),
        stream_seed(0, "dropout/cuda:1"),
    ]
    assert len({base, *others}) == 6
    assert all(0 <= s < 2**63 for s in others)
    # the arithmetic it replaces collided: seed*1000 + 7919*step + 1_000_003*rank
    assert stream_seed(0, "x", rank=1, step=0) != stream_seed(1003, "x", rank=0, step=0)
    assert stream_seed(3, "dropout", rank=2, step=7) == stream_seed(3, "dropout", rank=2, step=7)


def test_towers_draw_from_different_host_generators():
    a = torch.randn(100, generator=init_generator(0, "a"))
    b = torch.randn(100, generator=init_generator(0, "b"))
    assert not torch.equal(a, b)


def _weights(model, tower):
    return {k: v for k, v in model.state_dict().items() if k.startswith(f"{tower}.")}


def test_initial_weights_do_not_depend_on_placement():
    """Tower b's weights must not depend on where tower a lives. Before the fix each tower drew from
    its device's generator: with tower a on another device (here ``meta``, which draws nothing; on
    two GPUs, cuda:0's generator) tower b drew what tower a draws on a shared device."""
    torch.manual_seed(5)
    shared = AlexNet(num_classes=10, devices=("cpu", "cpu"))
    torch.manual_seed(5)
    split = AlexNet(num_classes=10, devices=("meta", "cpu"))
    for k, v in _weights(shared, "b").items():
        assert torch.equal(v, split.state_dict()[k]), k
    # and the two towers are not copies of each other
    for layer in ("conv1", "conv2", "conv3", "fc6", "fc7"):
        assert not torch.equal(shared.a.get_submodule(layer).weight, shared.b.get_submodule(layer).weight), (
            layer
        )


def test_grouped_twin_starts_with_the_two_tower_weights():
    towers = AlexNet(num_classes=10, seed=11)
    twin = GroupedAlexNet(num_classes=10, seed=11)
    expected = to_grouped_state(towers.state_dict(), towers.cfg)
    for k, v in twin.state_dict().items():
        assert torch.equal(v, expected[k]), k
    # section 5's init, not PyTorch's default: N(0, 0.01) weights, conv2's biases 1
    assert abs(twin.conv1.weight.std().item() - 0.01) < 1e-3
    assert torch.all(twin.conv2.bias == 1.0)


def test_use_streams_keeps_its_own_state_and_restores_the_global_one():
    streams = device_streams(0, "dropout", [])
    torch.manual_seed(123)
    outside = torch.get_rng_state()
    with use_streams(streams, []):
        first = torch.rand(4)
    assert torch.equal(torch.get_rng_state(), outside)
    with use_streams(streams, []):
        second = torch.rand(4)
    fresh = device_streams(0, "dropout", [])
    with use_streams(fresh, []):
        again = torch.rand(8)
    assert torch.equal(torch.cat([first, second]), again)
