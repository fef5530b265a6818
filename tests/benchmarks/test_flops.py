"""The benchmark's FLOP count against a hand computation from the paper's layer table."""

import sys
from pathlib import Path

import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from flops import forward_flops, layer_macs, training_flops  # noqa: E402

from alexnet.models.grouped import GroupedAlexNet  # noqa: E402
from alexnet.models.model import AlexNet  # noqa: E402

# Multiply-adds per image, written out from the layer table (both towers; out maps × out side² ×
# inputs per output). conv2, conv4, conv5 see one tower's maps; conv3 and fc6-fc8 see both.
PAPER_MACS = {
    "conv1": 2 * 48 * 55 * 55 * (3 * 11 * 11),
    "conv2": 2 * 128 * 27 * 27 * (48 * 5 * 5),
    "conv3": 2 * 192 * 13 * 13 * (256 * 3 * 3),
    "conv4": 2 * 192 * 13 * 13 * (192 * 3 * 3),
    "conv5": 2 * 128 * 13 * 13 * (192 * 3 * 3),
    "fc6": 2 * 2048 * (256 * 6 * 6),
    "fc7": 2 * 2048 * 4096,
    "fc8": 1000 * 4096,
}


def test_two_tower_count_matches_hand_computation():
    counts = layer_macs(AlexNet(devices=("meta", "meta")))
    per_layer: dict[str, int] = {}
    for c in counts:  # "a.conv1", "b.conv1" → "conv1"
        layer = c.name.split(".")[-1]
        per_layer[layer] = per_layer.get(layer, 0) + c.macs
    assert per_layer == PAPER_MACS
    total = sum(PAPER_MACS.values())
    assert forward_flops(counts) == 2 * total
    # backward: weight gradients everywhere, input gradients everywhere except conv1 (the image)
    assert training_flops(counts) == 2 * (3 * total - PAPER_MACS["conv1"])


def test_grouped_twin_counts_the_same_work():
    counts = layer_macs(GroupedAlexNet(device="meta"))
    assert {c.name: c.macs for c in counts} == PAPER_MACS


def test_torchvision_alexnet_matches_its_published_count():
    # torchvision documents AlexNet at 0.71 GFLOPS (multiply-adds) for a 224×224 image; by hand:
    hand = (
        64 * 55 * 55 * 3 * 121
        + 192 * 27 * 27 * 64 * 25
        + 384 * 13 * 13 * 192 * 9
        + 256 * 13 * 13 * 384 * 9
        + 256 * 13 * 13 * 256 * 9
        + 9216 * 4096
        + 4096 * 4096
        + 4096 * 1000
    )
    counts = layer_macs(torchvision.models.alexnet().to("meta"), (3, 224, 224))
    assert sum(c.macs for c in counts) == hand
    assert round(hand / 1e9, 2) == 0.71
