"""What training, evaluation, prediction and the figures share (alexnet.evaluation.checkpoints),
checked against
hand-worked answers and against the other layout of the same network."""

import pytest
import torch

from alexnet.evaluation.checkpoints import resolve_checkpoint
from alexnet.evaluation.features import Fc7Capture, fc7_features
from alexnet.evaluation.metrics import topk_mistakes
from alexnet.evaluation.network import network_for
from alexnet.evaluation.pictures import across_classes
from alexnet.models.grouped import GroupedAlexNet, grouped_from
from alexnet.models.model import AlexNet
from twogpu.placement import TowerDevices

CPU = torch.device("cpu")
SAME = TowerDevices(CPU, CPU, "test: one device")
SPLIT = TowerDevices(CPU, torch.device("meta"), "test: two devices")


def test_topk_mistakes_by_hand():
    logits = torch.tensor(
        [
            [0.1, 0.9, 0.0, 0.0, 0.0, 0.0],  # label 1: top-1 right
            [0.9, 0.1, 0.5, 0.4, 0.3, 0.2],  # label 1: 6th of 6 → top-5 wrong too
            [0.9, 0.1, 0.5, 0.4, 0.3, 0.2],
        ]
    )  # label 3: 3rd → top-1 wrong, top-5 right
    m = topk_mistakes(logits, torch.tensor([1, 1, 3]))
    assert int(m["top1"]) == 2 and int(m["top5"]) == 1
    # fewer classes than k: top-5 of 3 classes holds every label
    m = topk_mistakes(torch.tensor([[3.0, 2.0, 1.0]] * 3), torch.tensor([0, 1, 2]))
    assert int(m["top1"]) == 2 and int(m["top5"]) == 0


def test_the_grouped_twin_is_chosen_for_one_device_only():
    model = AlexNet(num_classes=4, devices=("cpu", "cpu"))
    assert isinstance(network_for(model, SAME), GroupedAlexNet)
    assert network_for(model, SAME, enabled=False) is model
    one_tower = AlexNet(num_classes=4, devices=("cpu", "cpu"), towers=1)
    assert network_for(one_tower, SAME) is one_tower
    assert network_for(model, SPLIT) is model


def test_fc7_capture_reads_the_same_features_from_both_layouts():
    """The grouped twin's one drop7 and the two towers' drop7 give the same 4096 features (tower a's
    half first), and fc8 of those features gives the logits."""
    torch.manual_seed(0)
    model = AlexNet(num_classes=6, devices=("cpu", "cpu")).eval()
    twin = grouped_from(model).eval()
    x = torch.randn(3, *model.input_shape) * 50
    f_two, logits = fc7_features(model, x)
    f_twin, logits_twin = fc7_features(twin, x)
    torch.testing.assert_close(f_twin, f_two, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits_twin, logits, rtol=1e-4, atol=1e-4)
    with torch.no_grad(), Fc7Capture(model) as capture:
        model(x[:1])
        first = capture.take()
        model(x[1:])
        rest = capture.take()
    torch.testing.assert_close(torch.cat([first, rest]), f_two)
    with pytest.raises(RuntimeError, match="no forward pass"):
        capture.take()
    assert not model.a.drop7._forward_hooks  # the hooks are gone after the block


def test_resolve_checkpoint_accepts_a_run_directory(tmp_path):
    run = tmp_path / "runs" / "x"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"without checkpoints/best.pt"):
        resolve_checkpoint(run)
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(b"")
    assert resolve_checkpoint(run) == best
    assert resolve_checkpoint(best) == best
    assert resolve_checkpoint(tmp_path / "missing.pt") == tmp_path / "missing.pt"  # load_checkpoint says so


def test_panel_images_spread_over_the_classes():
    labels = torch.tensor([0] * 20 + [1] * 20 + [2] * 20 + [3] * 20)  # in file order, as the loader yields
    shown = across_classes(labels, 3, seed=1)
    assert len(set(labels[shown].tolist())) == 3  # three different classes
    eight = across_classes(labels, 8, seed=1)
    assert sorted(labels[eight].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]  # two rounds over four classes
    assert len(set(eight.tolist())) == 8
    assert torch.equal(eight[:3], shown)  # the queries are the first shown
    assert not torch.equal(across_classes(labels, 8, seed=2), eight)  # seeded
