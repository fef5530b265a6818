"""Crossing accounting: the only tensors that cross are those of section 3.2, with these bytes."""

import torch

from alexnet import AlexNet
from alexnet.models.crossings import crossing_report
from twogpu import record_crossings

F32 = 4
# Per image, counted by hand from Figure 2: each tower sends its pool2 maps (128×13×13) for conv3,
# its pool5 maps (128×6×6) for fc6, its fc6 (2048) for fc7 and its fc7 (2048) for fc8.
HAND = {"conv3": 2 * 128 * 13 * 13, "fc6": 2 * 128 * 6 * 6, "fc7": 2 * 2048, "fc8": 2 * 2048}


def test_paper_crossings_sites_and_bytes():
    report = crossing_report("paper", batch_size=8)
    sites = [r.site for r in report.records]
    assert sorted(set(sites)) == ["conv3", "fc6", "fc7", "fc8"]
    per_site = {}
    for r in report.records:
        per_site[r.site] = per_site.get(r.site, 0) + r.bytes_forward
    # split fc8: tower b's 500 logits come back to tower a as well
    expected = {**HAND, "fc8": HAND["fc8"] + 500}
    assert per_site == {k: v * F32 * 8 for k, v in expected.items()}
    assert report.bytes_backward == report.bytes_forward  # every crossing carries a gradient back
    assert report.bytes_per_image == 2 * F32 * sum(expected.values())


def test_cuda_convnet_fc8_on_tower_a_only():
    report = crossing_report("cuda-convnet", batch_size=4, training=False)
    fc8 = [r for r in report.records if r.site == "fc8"]
    assert [(r.source, r.target, r.shape) for r in fc8] == [("b", "a", (4, 2048))]
    assert report.bytes_backward == 0
    assert report.bytes_per_image == F32 * (HAND["conv3"] + HAND["fc6"] + HAND["fc7"] + 2048)


def test_one_tower_ablation_has_no_crossings():
    assert crossing_report(AlexNet(devices=("meta", "meta"), towers=1).cfg, batch_size=2).records == ()


def test_real_forward_records_the_same_as_the_report():
    m = AlexNet(num_classes=10, devices=("cpu", "cpu")).eval()
    with record_crossings() as records, torch.no_grad():
        m(torch.zeros(2, 3, 224, 224))
    assert [(r.site, r.shape) for r in records if r.site != "feed"] == [
        (r.site, r.shape) for r in crossing_report(m.cfg, batch_size=2).records
    ]
    # a float batch handed to the model on tower a's device is fed to tower b as it is
    assert [(r.source, r.target, r.bytes_forward) for r in records if r.site == "feed"] == [
        ("a", "b", 2 * 3 * 224 * 224 * F32)
    ]


def test_feed_is_its_own_line_uint8_from_the_host():
    """Issue 11, 2g: each tower receives the uint8 batch from the host (3·224·224 = 150,528 B per
    image), and in training each image's 3 lighting offsets (float32) go from tower a to tower b."""
    report = crossing_report("paper", batch_size=4)
    assert [(r.source, r.target, r.bytes_forward) for r in report.feed] == [
        ("host", "a", 4 * 150_528),
        ("host", "b", 4 * 150_528),
        ("a", "b", 4 * 3 * F32),
    ]
    assert report.feed_bytes_per_image == 2 * 150_528 + 12
    assert "feed" in report.table()
    assert [r.target for r in crossing_report("paper", 4, training=False).feed] == ["a", "b"]
    assert (
        report.bytes_per_image == crossing_report("paper", 4, lighting=False).bytes_per_image
    )  # not a crossing
