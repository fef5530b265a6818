"""The ablation presets (configs/ablations/) and the ``base`` preset inheritance they use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alexnet.config import ConfigError, config_to_dict, load_config
from alexnet.models.model import AlexNet

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# The paper's ablations, written out: each is its base preset with exactly these keys changed.
EXPECTED = {
    "one-tower": {"model.towers": 1},
    "no-lrn": {"model.lrn": False},
    "no-overlap": {"model.pool_size": 2},  # pool_stride stays 2
    "no-lighting": {"data.lighting_std": 0.0},
    "no-dropout": {"model.dropout": 0.0},
    "no-flip-crop": {"data.flip": False, "data.random_crop": False},
}
# What each of those keys is in the paper (sections 3.2-3.5, 4.1, 4.2).
PAPER = {
    "model.towers": 2,
    "model.lrn": True,
    "model.pool_size": 3,
    "model.pool_stride": 2,
    "data.lighting_std": 0.1,
    "model.dropout": 0.5,
    "data.flip": True,
    "data.random_crop": True,
}


def resolved(path: Path, *overrides: str) -> dict:
    cfg = config_to_dict(load_config(path, overrides))
    return {f"{s}.{k}": v for s, values in cfg.items() for k, v in values.items()}


def changed(a: dict, b: dict) -> dict:
    return {k: b[k] for k in a if a[k] != b[k]}


@pytest.mark.parametrize(
    "folder, base", [("ablations", "alexnet-1gpu.toml"), ("ablations/demo", "ablations/demo/baseline.toml")]
)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ablation_changes_exactly_the_named_option(folder, base, name):
    base_cfg = resolved(CONFIGS / base)
    abl = resolved(CONFIGS / folder / f"{name}.toml")
    diff = changed(base_cfg, abl)
    assert diff.pop("train.name") != base_cfg["train.name"]  # its own run directory, nothing else
    assert diff == EXPECTED[name]


def test_paper_preset_has_every_feature_on():
    cfg = resolved(CONFIGS / "alexnet-1gpu.toml")
    assert {k: cfg[k] for k in PAPER} == PAPER


def test_demo_baseline_is_the_demo_preset_under_the_plateau_rule():
    demo = resolved(CONFIGS / "demo.toml")
    diff = changed(demo, resolved(CONFIGS / "ablations/demo/baseline.toml"))
    # Only its run name and the paper's plateau rule (the demo divides ε at a fixed epoch).
    assert diff == {
        "train.name": "demo-ablation-baseline",
        "optim.schedule": "plateau",
        "optim.plateau_patience": 2,
        "optim.plateau_min_epochs": 0,
    }
    assert {k: demo[k] for k in PAPER} == PAPER  # the demo keeps every feature the ablations remove


def test_every_preset_is_covered():
    names = {p.stem for p in (CONFIGS / "ablations").glob("*.toml")}
    demo = {p.stem for p in (CONFIGS / "ablations/demo").glob("*.toml")}
    assert names == set(EXPECTED) and demo == set(EXPECTED) | {"baseline"}


def test_no_overlap_reaches_the_network():
    """The preset's pooling is what the built network does: 2×2 windows at stride 2 (section 3.4's
    "traditional" pooling), and the maps keep the paper's sizes 27, 13, 6 (fc6 still takes 9216)."""
    model = AlexNet(devices=("meta", "meta"), preset=load_config(CONFIGS / "ablations/no-overlap.toml").model)
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 2 and all((p.kernel_size, p.stride) == (2, 2) for p in pools)  # one per tower
    assert model.a.fc6.in_features == 2 * 128 * 6 * 6


# ---------------------------------------------------------------------------- base inheritance
def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_merges_section_wise_and_chains(tmp_path):
    write(tmp_path / "root.toml", '[model]\nlrn = false\ndropout = 0.3\n[optim]\nlr = 0.02\n')
    write(
        tmp_path / "mid" / "mid.toml", 'base = "../root.toml"\n[model]\ndropout = 0.1\n[train]\nepochs = 7\n'
    )
    leaf = write(tmp_path / "leaf.toml", 'base = "mid/mid.toml"\n[model]\ntowers = 1\n')
    cfg = load_config(leaf)
    assert cfg.model.lrn is False  # from root, kept through the section merge
    assert cfg.model.dropout == 0.1  # mid replaces root's key
    assert cfg.model.towers == 1  # leaf's own
    assert cfg.optim.lr == 0.02 and cfg.train.epochs == 7
    assert cfg.model.pool_size == 3  # untouched keys keep their defaults
    assert load_config(leaf, ["model.dropout=0.2"]).model.dropout == 0.2  # --set still wins


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    write(tmp_path / "root.toml", '[model]\nlrm = false\n')
    leaf = write(tmp_path / "leaf.toml", 'base = "root.toml"\n[model]\ntowers = 1\n')
    with pytest.raises(ConfigError, match=r"root\.toml: unknown key\(s\) model\.lrm"):
        load_config(leaf)


def test_base_errors(tmp_path):
    leaf = write(tmp_path / "leaf.toml", 'base = "missing.toml"\n')
    with pytest.raises(ConfigError, match=r"missing\.toml \(named as 'base' in .*leaf\.toml\)"):
        load_config(leaf)
    write(tmp_path / "a.toml", 'base = "b.toml"\n')
    write(tmp_path / "b.toml", 'base = "a.toml"\n')
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.toml")
    with pytest.raises(ConfigError, match="base must be"):
        load_config(write(tmp_path / "c.toml", "base = 3\n"))
    with pytest.raises(ConfigError, match=r"unknown section \[modle\]"):
        load_config(write(tmp_path / "d.toml", "[modle]\nlrn = false\n"))
