"""The generic training loop, on a tiny in-memory task (no AlexNet, no images)."""

import json
import os
import signal

import torch
from torch import nn

from twogpu.checkpoint import load_checkpoint
from twogpu.trainer import Hook, StepOutput, Trainer, TrainerOptions


class ToyTask:
    """A 2-layer net with dropout (so the global RNG matters) on data fixed by (seed, epoch, index)."""

    devices = (torch.device("cpu"), torch.device("cpu"))

    def __init__(self, steps=5, batch=4, nan_at=None, signal_at=None, constant_loss=None):
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9)
        self.steps, self.batch = steps, batch
        self.nan_at, self.signal_at, self.constant_loss = nan_at, signal_at, constant_loss
        self.calls = 0
        self.epochs_ended = []

    def steps_per_epoch(self):
        return self.steps

    def batches(self, epoch, start_step):
        for i in range(start_step, self.steps):
            g = torch.Generator().manual_seed(1000 * epoch + i)
            x = torch.randn(self.batch, 6, generator=g)
            yield x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()

    def train_step(self, batch):
        self.calls += 1
        x, y = batch
        self.net.train()
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        if self.signal_at == self.calls:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.nan_at == self.calls:
            loss = loss * float("nan")
        if self.constant_loss is not None:
            loss = torch.tensor(self.constant_loss)
        return StepOutput(loss, len(y), {"top1": (logits.argmax(1) != y).sum()})

    def validate(self):
        self.net.eval()
        g = torch.Generator().manual_seed(99)
        x = torch.randn(32, 6, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        with torch.no_grad():
            return {"val_top1_err": (self.net(x).argmax(1) != y).float().mean().item()}

    def end_epoch(self, metrics):
        self.epochs_ended.append(metrics["epoch"])

    def lr(self):
        return self.opt.param_groups[0]["lr"]

    def state_dict(self):
        return {"model": self.net.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state):
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])


def _run(tmp_path, task, epochs=3, resume=None, **kw):
    lines = []
    trainer = Trainer(
        task,
        TrainerOptions(
            epochs=epochs,
            run_dir=tmp_path,
            log_every=2,
            keep_last=2,
            resume_hint="alexnet train --resume",
            **kw,
        ),
        log=lines.append,
    )
    if resume:
        trainer.resume(resume)
    return trainer, trainer.fit(), lines


def test_sigterm_then_resume_is_bit_identical(tmp_path):
    ref_task = ToyTask()
    _, ref, _ = _run(tmp_path / "ref", ref_task)
    assert ref.status == "finished" and ref.step == 15

    task = ToyTask(signal_at=7)  # mid-epoch 2
    _, first, lines = _run(tmp_path / "run", task)
    assert first.status == "interrupted" and first.exit_code == 0 and first.step == 7
    assert any("SIGTERM" in line for line in lines)
    assert "resume with: alexnet train --resume" in first.message
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored

    resumed_task = ToyTask()  # fresh process state
    torch.manual_seed(12345)  # the global RNG must come from the checkpoint
    trainer, second, _ = _run(tmp_path / "run", resumed_task, resume="auto")
    assert second.status == "finished" and second.step == 15
    assert resumed_task.calls == 8  # exactly the missing steps
    for p, q in zip(ref_task.net.state_dict().values(), resumed_task.net.state_dict().values()):
        assert torch.equal(p, q)
    ref_metrics = (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()
    run_metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    strip = lambda ls: [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"} for line in ls]  # noqa: E731
    assert strip(ref_metrics) == strip(run_metrics)
    assert [m["epoch"] for m in strip(run_metrics)] == [1, 2, 3]


def test_metrics_and_checkpoints_layout(tmp_path):
    _, result, lines = _run(tmp_path, ToyTask(), epochs=3)
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {
        "epoch",
        "step",
        "images_seen",
        "wall_time_s",
        "lr",
        "train_loss",
        "train_top1_err",
        "val_top1_err",
    } <= set(metrics[0])
    assert metrics[-1]["images_seen"] == 3 * 5 * 4
    ck = tmp_path / "checkpoints"
    steps = sorted(p.name for p in ck.glob("step-*.pt"))
    assert steps == ["step-00000010.pt", "step-00000015.pt"]  # keep_last = 2
    assert (ck / "last.pt").exists() and (ck / "best.pt").exists()
    last = load_checkpoint(ck / "last.pt")
    assert last["step"] == 15 and last["epoch"] == 3 and last["step_in_epoch"] == 0
    best_epoch = min(metrics, key=lambda m: m["val_top1_err"])["epoch"]
    assert load_checkpoint(ck / "best.pt")["epoch"] == best_epoch
    assert any("ETA" in line and "img/s" in line for line in lines)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    task = ToyTask(nan_at=8)
    _, result, lines = _run(tmp_path, task)
    assert result.status == "nonfinite" and result.exit_code == 1
    assert "nan" in result.message and "step-00000005.pt" in result.message
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*.pt")) == ["step-00000005.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 5


def test_max_steps_and_hooks_only_on_rank0(tmp_path):
    class Recorder(Hook):
        def __init__(self):
            self.events = []

        def on_log(self, trainer, stats):
            self.events.append(("log", stats))

        def on_epoch(self, trainer, metrics):
            self.events.append(("epoch", metrics["epoch"]))

    rec = Recorder()
    trainer = Trainer(
        ToyTask(),
        TrainerOptions(epochs=3, run_dir=tmp_path, max_steps=7, log_every=2),
        hooks=[rec],
        log=lambda s: None,
    )
    result = trainer.fit()
    assert result.status == "max_steps" and result.step == 7
    assert ("epoch", 1) in rec.events
    stats = [e[1] for e in rec.events if e[0] == "log"][0]
    assert {
        "loss",
        "lr",
        "images_per_s",
        "data_wait_share",
        "step_time_s/a",
        "step_time_s/b",
        "top1_err",
    } <= set(stats)
    assert any(k.startswith("memory_mib/") for k in stats)

    rec1 = Recorder()
    other = Trainer(
        ToyTask(),
        TrainerOptions(epochs=1, run_dir=tmp_path / "r1", rank=1, world_size=2),
        hooks=[rec1],
        log=lambda s: None,
    )
    other.fit()
    assert rec1.events == [] and not (tmp_path / "r1").exists()


def test_pipeline_shorter_than_promised_ends_the_epoch_early(tmp_path):
    # The data pipeline drops a batch made only of unusable images: the run goes on, and says so.
    task = ToyTask()
    task.steps_per_epoch = lambda: 6
    trainer, result, lines = _run(tmp_path, task, epochs=2)
    assert result.status == "finished" and result.step == 10
    assert sum("ended after 5 of 6 batches" in line for line in lines) == 2


def test_resumed_at_max_steps_takes_no_further_step(tmp_path):
    _run(tmp_path, ToyTask(), max_steps=3)
    trainer, result, _ = _run(tmp_path, ToyTask(), max_steps=3, resume="auto")
    assert result.status == "max_steps" and result.step == 3


class CountedReads(torch.Tensor):
    """A tensor that counts how often its value is brought to the host (each read waits for the device)."""

    reads = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in (
            "item",
            "__float__",
            "__int__",
            "__bool__",
            "tolist",
            "__index__",
        ):
            cls.reads += 1
        return super().__torch_function__(func, types, args, kwargs or {})


def test_the_host_reads_losses_only_at_progress_lines(tmp_path):
    """Issue 11 (2h): the loop used to call .item() on every step's loss, making the host wait for the
    devices each step. Now the sums stay on the device and are read once per progress line."""

    class Task(ToyTask):
        def train_step(self, batch):
            out = super().train_step(batch)
            return StepOutput(
                out.loss.detach().as_subclass(CountedReads),
                out.batch_size,
                {k: v.as_subclass(CountedReads) for k, v in out.mistakes.items()},
            )

    CountedReads.reads = 0
    lines = []
    trainer = Trainer(Task(), TrainerOptions(epochs=3, run_dir=tmp_path, log_every=5), log=lines.append)
    result = trainer.fit()
    progress = [line for line in lines if "img/s" in line]
    assert result.step == 15 and len(progress) == 3
    assert CountedReads.reads == 2 * len(progress)  # loss and top1 sums, once per line
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < m["train_loss"] < 5 and 0 <= m["train_top1_err"] <= 1 for m in metrics)


def test_tower_timer_on_the_cpu_uses_the_host_clock():
    import time

    from twogpu.timing import TowerTimer

    timer = TowerTimer([torch.device("cpu"), torch.device("cpu")])
    for _ in range(3):
        timer.start()
        time.sleep(0.01)
        timer.stop()
    a, b = timer.collect()
    assert 0.03 <= a < 1.0 and a == b
    assert timer.collect() == [0.0, 0.0]  # read once


def test_format_duration():
    from twogpu.timing import format_duration

    assert [format_duration(s) for s in (5, 125, 3 * 3600 + 60 * 7, 2 * 86400 + 3600)] == [
        "0m05s",
        "2m05s",
        "3h07m",
        "2d01h",
    ]
    assert format_duration(float("nan")) == "?"


def test_the_final_line_counts_epochs_in_words(tmp_path):
    assert "finished 1 epoch (5 steps)" in _run(tmp_path / "one", ToyTask(), epochs=1)[1].message
    assert "finished 2 epochs (10 steps)" in _run(tmp_path / "two", ToyTask(), epochs=2)[1].message
