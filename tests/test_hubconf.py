"""torch.hub builds the model from this clone (source="local", nothing downloaded)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet import AlexNet, GroupedAlexNet
from alexnet.config import Config, config_to_dict, model_preset
from twogpu.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_hub_lists_and_builds_each_preset():
    model = torch.hub.load(
        str(REPO), "alexnet", source="local", preset="caffe", devices=("cpu", "cpu"), num_classes=7
    )
    assert isinstance(model, AlexNet) and model.cfg.preset == "caffe" and model.cfg.lrn_across_towers
    assert model.a.fc8.out_features + model.b.fc8.out_features == 7
    twin = torch.hub.load(str(REPO), "alexnet", source="local", twin=True, num_classes=7, lrn=False)
    assert isinstance(twin, GroupedAlexNet) and twin.cfg.preset == "paper" and not twin.cfg.lrn


def test_hub_loads_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = AlexNet(num_classes=3, preset="caffe")
    ckpt = tmp_path / "c.pt"
    save_checkpoint(
        {
            "model": source.state_dict(),
            "config": config_to_dict(Config(model=model_preset("caffe", num_classes=3))),
        },
        ckpt,
    )
    model = torch.hub.load(str(REPO), "alexnet", source="local", checkpoint=str(ckpt))
    assert not model.training and model.cfg.preset == "caffe"
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with pytest.raises(ValueError, match="holds a 'caffe' model, not 'paper'"):
        torch.hub.load(str(REPO), "alexnet", source="local", checkpoint=str(ckpt), preset="paper")


def test_hub_from_the_repo_dir_in_a_fresh_interpreter():
    code = (
        "import torch; m = torch.hub.load('.', 'alexnet', source='local', preset='cuda-convnet', "
        "devices='auto'); print(type(m).__name__, m.cfg.preset)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["AlexNet", "cuda-convnet"]
