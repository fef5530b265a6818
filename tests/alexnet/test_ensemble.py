"""Table 2's ensembles (issue 19): `alexnet evaluate` and `alexnet predict` with several checkpoints,
against errors and probabilities written out in the test from each member's own softmax outputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.commands.evaluate import evaluate, evaluate_ensemble
from alexnet.commands.predict import predict
from alexnet.config import config_to_dict, load_config
from alexnet.data.pipeline import ImagePipeline
from alexnet.evaluation.checkpoints import load_model
from alexnet.models.model import AlexNet
from twogpu.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("c0", "c1", "c2", "c3", "c4", "c5", "c6")
QUIET = {"devices": ("cpu", "cpu"), "log": lambda s: None}


@pytest.fixture(scope="module")
def data7(tmp_path_factory) -> Path:
    """val/<c0..c6>/: two noisy 40×52 images per class, seven hues (seven classes: top-5 counts)."""
    root = tmp_path_factory.mktemp("d7")
    rng = np.random.default_rng(1)
    for i, c in enumerate(CLASSES):
        (root / "val" / c).mkdir(parents=True)
        colour = np.array([255 * ((i >> b) & 1) for b in range(3)]) * 0.7 + 30
        for j in range(2):
            arr = np.clip(rng.normal(colour, 50, size=(40, 52, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / "val" / c / f"{j}.png")
    return root


def _member(path: Path, data: Path, seed: int, *extra: str, classes=CLASSES, fc8_gain: float = 300.0) -> Path:
    """A checkpoint of a randomly initialised AlexNet (seed ``seed``) without biases (so its output
    follows the image's colour, not the biases) and with fc8's weights scaled up: its answers differ
    from image to image and from member to member."""
    cfg = load_config(
        None,
        [f'data.root="{data}"', f"model.num_classes={len(classes)}", "data.workers=0", "eval.batch_size=5"]
        + ["model.init_bias_one=0.0", *extra],
    )
    torch.manual_seed(seed)
    model = AlexNet(devices=("cpu", "cpu"), preset=cfg.model)
    with torch.no_grad():
        for tower in model.towers():
            if tower.fc8 is not None:
                tower.fc8.weight.mul_(fc8_gain)
    state = {
        "model": model.state_dict(),
        "config": config_to_dict(cfg),
        "step": seed,
        "epoch": 1,
        "classes": list(classes),
        "class_names": [f"{c} thing" for c in classes],
    }
    save_checkpoint(state, path)
    return path


@pytest.fixture(scope="module")
def members(tmp_path_factory, data7) -> tuple[Path, Path]:
    """Two different members: the paper's two towers at 224, and one tower at Caffe's 227."""
    d = tmp_path_factory.mktemp("members")
    return (
        _member(d / "a.pt", data7, 4),
        _member(d / "b.pt", data7, 6, "model.towers=1", "model.input_size=227"),
    )


def _softmax_of(checkpoint: Path, data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A member's own centre-view softmax outputs (N, classes) and the labels, computed here."""
    model, cfg = load_model(checkpoint)
    pipe = ImagePipeline(cfg.data, batch_size=100, seed=0, input_size=cfg.model.input_size, need_train=False)
    (batch,) = list(pipe.val_batches())
    with torch.no_grad():
        probs = model(pipe.to_model_input(batch, torch.device("cpu"), train=False)).softmax(1)
    return probs.double(), batch.labels


def _errors(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """top-1 / top-5 error written out: the label's rank among the probabilities."""
    rank = (probs > probs.gather(1, labels[:, None])).sum(1)  # classes scored above the label
    return {"top1_err": (rank >= 1).double().mean().item(), "top5_err": (rank >= 5).double().mean().item()}


@pytest.mark.slow
def test_the_same_checkpoint_twice_is_the_checkpoint(tmp_path, members, data7):
    a, _ = members
    single = evaluate(a, str(data7), out=tmp_path / "single.json", **QUIET)
    both = evaluate_ensemble([a, a], str(data7), out=tmp_path / "ens.json", **QUIET)
    for view in ("centre", "ten_view"):
        assert both["ensemble"][view]["top1_err"] == single[view]["top1_err"]
        assert both["ensemble"][view]["top5_err"] == single[view]["top5_err"]
        assert [m[view] for m in both["members"]] == [single[view]] * 2
        assert both["gain_over_best"][view]["top1"]["value"] == 0.0
    assert json.loads((tmp_path / "ens.json").read_text()) == both


@pytest.mark.slow
def test_two_members_average_their_softmax_outputs(tmp_path, members, data7):
    """Members of different layouts and input sizes: each member's errors and the ensemble's equal
    those of the softmax outputs computed here, averaged here."""
    a, b = members
    (pa, labels), (pb, labels_b) = _softmax_of(a, data7), _softmax_of(b, data7)
    assert torch.equal(labels, labels_b) and len(labels) == 14
    mean = (pa + pb) / 2
    # the test tells averaging from either member alone: the ensemble's errors are neither's
    assert _errors(mean, labels) not in (_errors(pa, labels), _errors(pb, labels))
    out = tmp_path / "ens.json"
    result = evaluate_ensemble([a, b], str(data7), out=out, ten_view=False, **QUIET)
    assert result["images"] == 14 and "ten_view" not in result["ensemble"]
    assert result["members"][0]["centre"] == pytest.approx(_errors(pa, labels))
    assert result["members"][1]["centre"] == pytest.approx(_errors(pb, labels))
    expected = _errors(mean, labels)
    got = result["ensemble"]["centre"]
    assert {k: got[k] for k in expected} == pytest.approx(expected)
    best = min(_errors(pa, labels)["top1_err"], _errors(pb, labels)["top1_err"])
    assert result["gain_over_best"]["centre"]["top1"]["value"] == pytest.approx(best - expected["top1_err"])
    lo, hi = got["top1_err_ci"]
    assert lo <= got["top1_err"] <= hi
    written = json.loads(out.read_text())
    assert [m["checkpoint"] for m in written["members"]] == [str(a), str(b)]
    assert written["paper"]["one_cnn"] == {"top1_err": 0.407, "top5_err": 0.182}


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alexnet", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_members_with_different_class_lists_are_refused_before_any_work(tmp_path, members, data7):
    a, _ = members
    other = _member(tmp_path / "other.pt", data7, 3, classes=CLASSES[::-1])
    out = tmp_path / "ens.json"
    r = _cli("evaluate", "--checkpoint", str(a), str(other), str(data7), "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert str(a) in r.stderr and str(other) in r.stderr and "different class lists" in r.stderr
    assert "mean image" not in r.stdout and not out.exists()  # nothing evaluated, nothing written
    r = _cli("predict", "--checkpoint", str(a), str(other), str(next((data7 / "val" / "c0").iterdir())))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "different class lists" in r.stderr


@pytest.mark.slow
def test_an_ensemble_needs_out(tmp_path, members, data7):
    a, b = members
    r = _cli("evaluate", "--checkpoint", str(a), str(b), str(data7))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--out" in r.stderr


@pytest.mark.slow
def test_predict_averages_the_members_and_shows_each_top1(tmp_path, data7):
    """Members whose fc8 ignores the image (weights 0, biases chosen): the averaged probabilities
    and each member's top-1 are known by construction."""
    biases = {"a.pt": [1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 6.0], "b.pt": [5.0, 0.0, 0.0, 0.0, 4.5, 0.0, 0.0]}
    paths = []
    for name, bias in biases.items():
        path = _member(tmp_path / name, data7, 0, fc8_gain=0.0)
        state = torch.load(path, weights_only=True)
        half = state["model"]["a.fc8.bias"].numel()  # tower a's share of fc8
        state["model"]["a.fc8.bias"] = torch.tensor(bias[:half])
        state["model"]["b.fc8.bias"] = torch.tensor(bias[half:])
        save_checkpoint(state, path)
        paths.append(path)
    image = next((data7 / "val" / "c0").iterdir())
    (result,) = predict(paths, [image], k=3, log=lambda s: None)
    soft = [torch.tensor(b, dtype=torch.float64).softmax(0) for b in biases.values()]
    mean = (soft[0] + soft[1]) / 2
    top = mean.argsort(descending=True)[:3]
    assert [label for label, _ in result.labels] == [f"c{int(i)} thing" for i in top]
    assert [p for _, p in result.labels] == pytest.approx(mean[top].tolist(), rel=1e-5)
    assert [label for label, _ in result.members] == ["c6 thing", "c0 thing"]
    assert [p for _, p in result.members] == pytest.approx([float(s.max()) for s in soft], rel=1e-5)
    r = _cli("predict", "--checkpoint", *map(str, paths), str(image), "-k", "2")
    assert r.returncode == 0, r.stderr
    assert "member 1 top-1:" in r.stdout and "member 2 top-1:" in r.stdout
