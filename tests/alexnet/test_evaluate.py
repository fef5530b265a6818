"""Evaluation, `load_model` and prediction on a checkpoint whose answers are known by construction."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tinydata import make_tiny_dataset

from alexnet.cli import main
from alexnet.commands.evaluate import evaluate
from alexnet.commands.predict import predict
from alexnet.config import config_to_dict, load_config
from alexnet.evaluation.checkpoints import load_model
from alexnet.models.model import AlexNet
from twogpu import precision
from twogpu.checkpoint import CheckpointError, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _checkpoint(tmp_path: Path, data: Path, favourite: int | None, mean: float | None = None) -> Path:
    """A run directory with a checkpoint of a 3-class AlexNet. With ``favourite`` set, fc8 ignores
    its input and always ranks that class first, then the others in index order. With ``mean``, the
    checkpoint carries a constant mean image of that value (as training saves its statistics)."""
    cfg = load_config(
        None, [f'data.root="{data}"', "model.num_classes=3", "data.workers=0", "eval.batch_size=4"]
    )
    torch.manual_seed(0)
    model = AlexNet(devices=("cpu", "cpu"), preset=cfg.model)
    if favourite is not None:
        with torch.no_grad():
            for tower in model.towers():
                if tower.fc8 is not None:
                    tower.fc8.weight.zero_()
            n_a = model.a.fc8.out_features
            bias = torch.tensor([3.0, 2.0, 1.0])
            bias[favourite] = 10.0
            model.a.fc8.bias.copy_(bias[:n_a])
            model.b.fc8.bias.copy_(bias[n_a:])
    run = tmp_path / "runs" / "x"
    path = run / "checkpoints" / "best.pt"
    state = {
        "model": model.state_dict(),
        "config": config_to_dict(cfg),
        "step": 5,
        "epoch": 1,
        "classes": ["blue", "green", "red"],
        "class_names": ["blue thing", "green thing", "red thing"],
    }
    if mean is not None:
        state["stats"] = {
            "mean": torch.full((3, 256, 256), mean),
            "eigval": torch.ones(3),
            "eigvec": torch.eye(3),
        }
    save_checkpoint(state, path)
    return path


@pytest.fixture(scope="module")
def data3(tmp_path_factory):
    # val: 3 blue, 3 green, 3 red images
    return make_tiny_dataset(
        tmp_path_factory.mktemp("d3"), classes=("blue", "green", "red"), train_n=2, val_n=3
    )


def test_evaluate_uses_the_precision_the_run_trained_with(tmp_path, data3):
    """An fp32 run is evaluated in true fp32: TF32 left on by an earlier setting is turned off, and
    the log says which arithmetic is used (issue 11, 2b)."""
    path = _checkpoint(tmp_path, data3, favourite=1)
    precision.configure("tf32")
    try:
        lines: list[str] = []
        evaluate(path, str(data3), devices=("cpu", "cpu"), ten_view=False, log=lines.append)
        assert precision.tf32_enabled() == {"cudnn_conv": False, "cuda_matmul": False}
        assert any(s.startswith("precision: fp32 (IEEE float32") for s in lines), lines
    finally:
        precision.configure("fp32")


@pytest.mark.slow
def test_load_model_round_trip(tmp_path, data3):
    path = _checkpoint(tmp_path, data3, favourite=None)
    model, cfg = load_model(path)
    assert not model.training and cfg.model.num_classes == 3
    torch.manual_seed(0)
    reference = AlexNet(devices=("cpu", "cpu"), preset=cfg.model).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


@pytest.mark.slow
def test_errors_of_a_constant_classifier(tmp_path, data3):
    """Always answering 'green' (index 1) then blue, red: top-1 wrong on the 6 non-green images of 9;
    top-5 (clipped to 3 classes) never wrong. The same for the centre view and for 10 views."""
    path = _checkpoint(tmp_path, data3, favourite=1)
    result = evaluate(path, str(data3), devices=("cpu", "cpu"), log=lambda s: None)
    assert result["images"] == 9
    for view in ("centre", "ten_view"):
        assert result[view]["top1_err"] == pytest.approx(6 / 9)
        assert result[view]["top5_err"] == 0.0
    written = json.loads((tmp_path / "runs" / "x" / "eval.json").read_text())
    assert written["checkpoint"] == str(path) and written["centre"] == result["centre"]


@pytest.mark.slow
def test_evaluate_needs_only_val_and_names_the_checkpoints_mean(tmp_path, data3, caplog):
    """A copy holding only val/ (no train/, no stats.pt) is enough, and the mean image in use is the
    checkpoint's — said so, with no warning about ImageNet's published mean."""
    path = _checkpoint(tmp_path, data3, favourite=1, mean=100.0)
    val_only = tmp_path / "val-only"
    shutil.copytree(data3 / "val", val_only / "val")
    lines: list[str] = []
    result = evaluate(
        tmp_path / "runs" / "x", str(val_only), devices=("cpu", "cpu"), ten_view=False, log=lines.append
    )  # the run directory stands for best.pt
    assert result["centre"]["top1_err"] == pytest.approx(6 / 9) and result["mean_image"] == str(path)
    assert f"mean image: the per-pixel mean image from {path}" in lines
    assert "published" not in caplog.text
    # without statistics in the checkpoint (older runs) it says that it uses the published mean
    path = _checkpoint(tmp_path, data3, favourite=1)
    lines.clear()
    evaluate(path, str(val_only), devices=("cpu", "cpu"), ten_view=False, log=lines.append)
    assert any(s.startswith("mean image: ImageNet's published per-channel mean") for s in lines)


@pytest.mark.slow
def test_predict_lists_top5_with_probabilities(tmp_path, data3):
    path = _checkpoint(tmp_path, data3, favourite=2)
    bad = tmp_path / "not-an-image.jpg"
    bad.write_text("hello")
    image = next((data3 / "val" / "blue").iterdir())
    good, bad = predict(path, [image, bad])
    assert [label for label, _ in good.labels] == ["red thing", "blue thing", "green thing"]
    probs = [p for _, p in good.labels]
    # logits 10, 3, 2 (fc8 weights are zero): the softmax written out
    z = torch.tensor([10.0, 3.0, 2.0]).exp()
    assert probs == pytest.approx((z / z.sum()).tolist(), rel=1e-5)
    assert good.members == [] and good.error is None  # one network: no members' top-1
    assert "not-an-image" in bad.error and bad.labels == []
    # a folder stands for its images (sorted, recursively), a run directory for its best.pt
    folder = [r.path for r in predict(tmp_path / "runs" / "x", [data3 / "val"], log=lambda s: None)]
    assert folder == sorted(str(p) for p in (data3 / "val").rglob("*.jpg")) and len(folder) == 9
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without image files"):
        predict(path, [tmp_path / "empty"], log=lambda s: None)


@pytest.mark.slow
def test_cli_reports_a_truncated_checkpoint(tmp_path, data3):
    path = _checkpoint(tmp_path, data3, favourite=0)
    path.write_bytes(path.read_bytes()[:1000])
    r = subprocess.run(
        [sys.executable, "-m", "alexnet", "evaluate", "--checkpoint", str(path), str(data3)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and str(path) in r.stderr and "truncated or corrupt" in r.stderr
    with pytest.raises(CheckpointError):
        load_model(path)


# ------------------------------------------------------------- bad input (issue 17): one line, exit 2


def _main(capsys, *argv: str) -> tuple[int, str]:
    """``alexnet ARGV`` in this process: (exit status, stderr)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ("evaluate", "--batch-size", "-4"),
        ("evaluate", "--batch-size", "0"),
        ("evaluate", "--limit", "0"),
        ("evaluate", "--limit", "-5"),
        ("predict", "-k", "-2"),
        ("predict", "-k", "0"),
    ],
)
def test_counts_below_one_are_refused_and_eval_json_kept(tmp_path, data3, capsys, argv):
    """Before: 0.00 % error on 0 images, exit 0, the run's eval.json overwritten; --limit -5 evaluated
    all but 5 images; predict -k -2 a traceback."""
    path = _checkpoint(tmp_path, data3, favourite=1)
    eval_json = tmp_path / "runs" / "x" / "eval.json"
    eval_json.write_text("{}")
    command, *option = argv
    target = [str(data3)] if command == "evaluate" else [next((data3 / "val" / "red").iterdir())]
    rc, err = _main(capsys, command, "--checkpoint", path, *target, *option)
    assert rc == 2 and err.count("\n") == 1 and option[0] in err and "at least 1" in err, err
    assert eval_json.read_text() == "{}"
    with pytest.raises(ValueError, match="at least 1"):
        evaluate(path, str(data3), devices=("cpu", "cpu"), limit=0, log=lambda s: None)


def test_weights_of_another_network_are_refused(tmp_path, data3, capsys):
    """A file with 'model' and 'config' keys whose weights are another network's (before: the
    ``Missing key(s)`` traceback of load_state_dict), or of other shapes."""
    path = _checkpoint(tmp_path, data3, favourite=1)
    state = torch.load(path, weights_only=True)
    other = tmp_path / "torchvision.pt"
    save_checkpoint(
        {"model": {"features.0.weight": torch.zeros(64, 3, 11, 11)}, "config": state["config"]}, other
    )
    rc, err = _main(capsys, "evaluate", "--checkpoint", other, data3)
    assert rc == 2 and err.count("\n") == 1 and str(other) in err, err
    assert "another network" in err and "missing" in err and "features.0.weight" in err
    state["model"]["a.conv1.weight"] = torch.zeros(96, 3, 11, 11)  # the paper's tower a has 48 kernels
    save_checkpoint(state, other)
    rc, err = _main(capsys, "predict", "--checkpoint", other, next((data3 / "val" / "red").iterdir()))
    assert rc == 2 and err.count("\n") == 1 and "of another shape (e.g. a.conv1.weight (96, 3, 11, 11)" in err


def test_predict_says_not_a_checkpoint(tmp_path, data3, capsys):
    """An image, or a torch file holding a pickled module, given as the checkpoint: "not a
    checkpoint", not torch's advice to load it with weights_only=False (which runs its code)."""
    image = next((data3 / "val" / "red").iterdir())
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)
    for path in (image, module):
        rc, err = _main(capsys, "predict", "--checkpoint", path, image)
        assert rc == 2 and err.count("\n") == 1 and str(path) in err, err
        assert "not a " in err and "checkpoint" in err
        assert "weights_only" not in err and "Weights only" not in err and "truncated" not in err


def test_evaluate_elsewhere_names_the_checkpoints_relative_data_root(tmp_path, data3, capsys, monkeypatch):
    """Without DATA, a checkpoint trained on a relative data.root evaluated from another folder:
    before, only the dataset's missing folder was named, not where the path came from."""
    path = _checkpoint(tmp_path, data3, favourite=1)
    state = torch.load(path, weights_only=True)
    state["config"]["data"]["root"] = "data/demo"
    save_checkpoint(state, path)
    monkeypatch.chdir(tmp_path)
    rc, err = _main(capsys, "evaluate", "--checkpoint", path)
    assert rc == 2 and err.count("\n") == 1, err
    assert "data.root 'data/demo'" in err and "relative" in err and "DATA" in err and str(tmp_path) in err
    rc, err = _main(capsys, "evaluate", "--checkpoint", path, data3, "--no-ten-view", "--limit", "2")
    assert rc == 0, err  # with DATA it is evaluated


def test_predict_without_images(tmp_path, data3, capsys):
    path = _checkpoint(tmp_path, data3, favourite=1)
    rc, err = _main(capsys, "predict", "--checkpoint", path)
    assert rc == 2 and err.count("\n") == 1 and "no image" in err
