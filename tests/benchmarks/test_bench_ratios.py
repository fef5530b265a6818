"""The same-run ratios `make bench` prints, and their spread, on times worked out by hand."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench import ratio_spread, ratios, targets  # noqa: E402

# seconds per round; torchvision takes 1 s in every round, ours 1, 2, 1.25, 0.5, 1.25 s:
# speed ratios per round 1, 0.5, 0.8, 2, 0.8 → sorted 0.5, 0.8, 0.8, 1, 2
TIMES = {"grouped": [1.0, 2.0, 1.25, 0.5, 1.25], "torchvision": [1.0] * 5}


def test_ratio_is_the_median_of_the_rounds_ratios():
    assert ratios(TIMES) == pytest.approx({"grouped": 0.8, "torchvision": 1.0})


def test_spread_is_the_interquartile_range_of_the_rounds_ratios():
    spread = ratio_spread(TIMES)
    assert spread["grouped"] == pytest.approx([0.8, 1.0])  # 2nd and 4th of the five sorted ratios
    assert spread["torchvision"] == pytest.approx([1.0, 1.0])


def test_one_round_has_no_spread():
    assert ratio_spread({"grouped": [2.0], "torchvision": [1.0]})["grouped"] == pytest.approx([0.5, 0.5])


def test_targets_print_each_ratio_with_its_spread():
    r = {
        "train_ratio_to_torchvision": ratios(TIMES),
        "train_ratio_spread": ratio_spread(TIMES),
        "infer_ratio_to_torchvision": {"grouped": 0.97, "torchvision": 1.0},
        "lrn": {"ours_over_conv1": 0.15},
    }
    out = targets(r)
    assert "grouped 0.80x [0.80-1.00]" in out and "grouped 0.97x" in out
    assert "plain PyTorch defaults: not run" in out and "0.15x" in out
