"""The guard on GPU-to-GPU copies in `alexnet train` (issue 18, item 5), towers on two fake GPUs.

The fake tensors carry no bytes, so the guard's copies are carried by :class:`fakegpu.HostCopies`
(real bytes on the host); everything else is the real `alexnet train`. A machine whose copies between
the GPUs corrupt data stops the run before anything is written, with the cause and the remedy; one
whose copies are intact trains.
"""

from __future__ import annotations

import pytest
from fakegpu import HostCopies, SimulatedGPUs  # noqa: E402  (skips this module if torch lacks what it needs)
from tinydata import make_tiny_dataset

from alexnet import cli
from alexnet.config import load_config
from alexnet.training.train import train

pytestmark = pytest.mark.simulated_cuda

TWO = '["cuda:0", "cuda:1"]'
ONE = '["cuda:0", "cuda:0"]'


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("data"), train_n=2, val_n=1)


def _overrides(tmp_path, devices: str) -> list[str]:
    return [
        f'train.runs_dir="{tmp_path / "runs"}"',
        'train.name="sim"',
        "train.batch_size=2",
        "train.max_steps=1",
        "data.workers=0",
        f"train.devices={devices}",
        "train.checkpoint_minutes=0.0",
    ]


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*"))


def test_corrupting_copies_stop_the_run_before_anything_is_written(tmp_path, tiny_data, capsys):
    before = _files(tiny_data)
    argv = ["train", str(tiny_data)]
    for o in _overrides(tmp_path, TWO):
        argv += ["--set", o]
    copies = HostCopies(corrupt=True)
    with SimulatedGPUs(peer_copies=copies) as sim:
        code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("alexnet train: error: GPU-to-GPU copies"), err
    assert "cuda:0 -> cuda:1 -> cuda:0" in err and "peer access off" in err
    assert "IOMMU" in err and "84803" in err and "train.devices" in err and "make train-1gpu" in err
    assert not (tmp_path / "runs").exists()  # no run directory, no config, no checkpoint
    assert _files(tiny_data) == before  # nor anything beside the data (statistics)
    assert ("cuda:0", "cuda:1") in copies.hops and ("cuda:1", "cuda:0") in copies.hops
    assert "can_device_access_peer(0, 1)" in sim.cuda.calls


def test_intact_copies_let_the_run_proceed_and_are_logged(tmp_path, tiny_data):
    lines: list[str] = []
    copies = HostCopies()
    with SimulatedGPUs(peer_copies=copies) as sim:
        sim.cuda.peer = True
        result = train(
            load_config(None, [f'data.root="{tiny_data}"', *_overrides(tmp_path, TWO)]),
            log=lines.append,
            dashboards=False,
        )
    assert result.status == "max_steps" and result.step == 1, result.message
    checked = [s for s in lines if s.startswith("GPU-to-GPU copies checked")]
    assert len(checked) == 1 and "cuda:0 -> cuda:1 -> cuda:0 intact" in checked[0]
    assert "peer access on" in checked[0]
    assert lines.index(checked[0]) < min(i for i, s in enumerate(lines) if s.startswith("run directory"))
    assert copies.hops  # the guard's copies ran
    assert (tmp_path / "runs" / "sim" / "checkpoints").is_dir()


def test_towers_on_one_gpu_need_no_check(tmp_path, tiny_data):
    lines: list[str] = []
    copies = HostCopies(corrupt=True)
    with SimulatedGPUs(peer_copies=copies):
        result = train(
            load_config(None, [f'data.root="{tiny_data}"', *_overrides(tmp_path, ONE)]),
            log=lines.append,
            dashboards=False,
        )
    assert result.status == "max_steps", result.message
    assert copies.hops == [] and not any("GPU-to-GPU" in s for s in lines)


@pytest.fixture(scope="module")
def two_gpu_checkpoint(tmp_path_factory, tiny_data):
    """A one-step checkpoint trained with the towers on the two fake GPUs (intact copies)."""
    runs = tmp_path_factory.mktemp("ckpt")
    with SimulatedGPUs():
        result = train(
            load_config(None, [f'data.root="{tiny_data}"', *_overrides(runs, TWO)]),
            log=lambda s: None,
            dashboards=False,
        )
    assert result.status == "max_steps", result.message
    return runs / "runs" / "sim" / "checkpoints" / "last.pt"


def test_evaluate_on_corrupting_copies_stops_before_any_batch(
    tmp_path, tiny_data, two_gpu_checkpoint, capsys
):
    out = tmp_path / "eval.json"
    argv = [
        "evaluate",
        "--checkpoint",
        str(two_gpu_checkpoint),
        str(tiny_data),
        "--devices",
        "cuda:0,cuda:1",
        "--out",
        str(out),
    ]
    copies = HostCopies(corrupt=True)
    with SimulatedGPUs(peer_copies=copies):
        code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("alexnet evaluate: error: GPU-to-GPU copies"), err
    assert "IOMMU" in err and "train.devices" in err
    assert not out.exists()
    assert ("cuda:0", "cuda:1") in copies.hops


# evaluate reads the checkpoint's mean image with `.numpy()` while the fake mode is active (a harness
# artefact, as in test_two_fake_gpus)
@pytest.mark.filterwarnings("ignore:Accessing the data pointer of FakeTensor")
def test_evaluate_on_intact_copies_logs_the_check_and_evaluates(
    tmp_path, tiny_data, two_gpu_checkpoint, capsys
):
    out = tmp_path / "eval.json"
    argv = [
        "evaluate",
        "--checkpoint",
        str(two_gpu_checkpoint),
        str(tiny_data),
        "--devices",
        "cuda:0,cuda:1",
        "--out",
        str(out),
    ]
    with SimulatedGPUs(peer_copies=HostCopies()):
        code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "GPU-to-GPU copies checked" in captured.out and "intact" in captured.out
    assert out.exists()
