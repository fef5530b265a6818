"""A generic training loop for a two-tower model: steps, timing, checkpoints, resume, signals.

The loop knows nothing about the network or the data. A :class:`TrainTask` supplies the batches of
an epoch, one optimisation step, validation and its own state; the :class:`Trainer` runs epochs,
times each step (data wait, and per tower: the time until each tower's device has finished), prints
a progress line with rate and ETA, checkpoints atomically every epoch and every N minutes, resumes
at the exact step, stops cleanly on SIGINT/SIGTERM, stops on a non-finite loss, and warns when the
loss sits at chance level (AlexNet's known stall).

Data-parallel runs (one process per replica) pass ``rank``/``world_size`` and an ``agree``
function (e.g. an all-reduce of a flag) so every rank stops at the same step; only rank 0 writes
files and calls the logging hooks.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import torch

from twogpu.checkpoint import CheckpointDir, CheckpointError, load_checkpoint
from twogpu.rng import rng_state, seed_devices, set_rng_state


@dataclass
class StepOutput:
    """What one training step reports back."""

    loss: torch.Tensor
    """Mean loss over the batch (a scalar tensor; read with ``.item()``)."""
    batch_size: int
    """Images in the batch (this rank's share)."""
    mistakes: Mapping[str, torch.Tensor | int] = field(default_factory=dict)
    """Misclassified images per metric, e.g. ``{"top1": 97, "top5": 80}``; averaged into ``train_<k>_err``."""


class TrainTask(Protocol):
    """The model-specific half of training, supplied by the caller."""

    devices: Sequence[torch.device]
    """Devices of the towers (a, b); used for per-tower step times and memory."""

    def steps_per_epoch(self) -> int: ...
    def batches(self, epoch: int, start_step: int) -> Iterator[Any]:
        """The batches of ``epoch`` (0-based) from position ``start_step``, deterministic."""
    def train_step(self, batch: Any) -> StepOutput: ...
    def validate(self) -> dict[str, float]:
        """Validation metrics (e.g. ``val_top1_err``), reduced over ranks if data-parallel."""
    def end_epoch(self, metrics: Mapping[str, float]) -> None:
        """Called after each epoch's validation (learning-rate schedule)."""
    def lr(self) -> float: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class Hook:
    """Logging hooks; the trainer calls them on rank 0 only. Override what you need."""

    def on_start(self, trainer: "Trainer") -> None: ...
    def on_log(self, trainer: "Trainer", stats: Mapping[str, float]) -> None: ...
    def on_epoch(self, trainer: "Trainer", metrics: Mapping[str, float]) -> None: ...
    def on_end(self, trainer: "Trainer", result: "RunResult") -> None: ...


@dataclass(frozen=True)
class TrainerOptions:
    epochs: int
    run_dir: Path | None = None
    """Where ``metrics.jsonl`` and ``checkpoints/`` go (None: nothing is written)."""
    max_steps: int = 0
    """Stop after this many steps in total (0: no limit)."""
    log_every: int = 20
    checkpoint_minutes: float = 30.0
    keep_last: int = 3
    rank: int = 0
    world_size: int = 1
    best_metric: str = "val_top1_err"
    """Lower is better; the checkpoint with the lowest value is kept as ``best.pt``."""
    stall_loss: float | None = None
    """Chance-level loss (ln of the number of classes); None disables the stall warning."""
    stall_steps: int = 2000
    stall_tolerance: float = 0.05
    stall_hint: str = ""
    resume_hint: str = ""
    """The command that resumes this run, printed when it is interrupted."""
    extra_state: Mapping[str, Any] = field(default_factory=dict)
    """Stored in every checkpoint (e.g. the resolved config)."""


@dataclass(frozen=True)
class RunResult:
    status: str
    """'finished', 'max_steps', 'interrupted' or 'nonfinite'."""
    epoch: int
    step: int
    checkpoint: Path | None
    message: str = ""

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "nonfinite" else 0


# ---------------------------------------------------------------------------------------- helpers
def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s"


def device_memory_mib(device: torch.device) -> float:
    """Peak memory of ``device`` in MiB (CUDA: allocated by PyTorch; CPU: the process's peak RSS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------- trainer
class Trainer:
    """Runs a :class:`TrainTask` for ``options.epochs`` epochs (see the module docstring)."""

    TOWERS = ("a", "b")

    def __init__(self, task: TrainTask, options: TrainerOptions, hooks: Sequence[Hook] = (),
                 agree: Callable[[bool], bool] | None = None, log: Callable[[str], None] | None = None) -> None:
        self.task, self.options = task, options
        self.is_main = options.rank == 0
        self.hooks = list(hooks) if self.is_main else []
        self.agree = agree or (lambda flag: flag)
        self._log = log or (lambda text: print(text, flush=True))
        self.checkpoints = (CheckpointDir(Path(options.run_dir) / "checkpoints", options.keep_last)
                            if options.run_dir is not None else None)
        self.epoch = 0               # epochs completed == 0-based index of the epoch in progress
        self.step = 0                # optimisation steps taken in total
        self.step_in_epoch = 0       # position in the epoch's data order
        self.images_seen = 0         # images seen by all ranks together
        self.wall_offset = 0.0       # training time of earlier sessions (resume)
        self.best = math.inf
        self.last_checkpoint: Path | None = None
        self.last_metrics: dict[str, float] = {}
        self._epoch_acc: dict[str, float] = {}
        self._reset_epoch_acc()
        self._stall_run = 0
        self._stall_warned = False
        self._stop_signal: int | None = None
        self._t_start = time.perf_counter()

    # ---------------------------------------------------------------------------- bookkeeping
    def log(self, text: str) -> None:
        if self.is_main:
            self._log(text)

    def _reset_epoch_acc(self) -> None:
        self._epoch_acc = {"loss": 0.0, "n": 0.0}

    @property
    def wall_time_s(self) -> float:
        return self.wall_offset + (time.perf_counter() - self._t_start)

    def _trainer_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "step_in_epoch": self.step_in_epoch,
                "images_seen": self.images_seen, "wall_time_s": self.wall_time_s,
                "world_size": self.options.world_size,
                "trainer": {"best": self.best, "epoch_acc": dict(self._epoch_acc),
                            "stall_run": self._stall_run, "stall_warned": self._stall_warned},
                "rng": rng_state()}

    def checkpoint(self, *, is_best: bool = False) -> Path | None:
        """Write a checkpoint of the current state (rank 0; other ranks return None)."""
        if self.checkpoints is None or not self.is_main:
            return None
        state = dict(self.options.extra_state)
        state.update(self.task.state_dict())
        state.update(self._trainer_state())
        self.last_checkpoint = self.checkpoints.save(state, self.step, is_best=is_best)
        self._t_last_ckpt = time.perf_counter()
        return self.last_checkpoint

    def resume(self, source: str | Path = "auto") -> Path | None:
        """Load a checkpoint (``"auto"``: the newest readable one of this run) and continue from its
        exact step. Returns the path loaded, or None when ``"auto"`` finds no checkpoint."""
        if source == "auto":
            if self.checkpoints is None:
                raise CheckpointError("resume='auto' needs a run directory")
            found = self.checkpoints.latest_loadable()
            if found is None:
                return None
            path, state = found
        else:
            path, state = Path(source), load_checkpoint(source)
        missing = [k for k in ("epoch", "step", "step_in_epoch", "rng") if k not in state]
        if missing:
            raise CheckpointError(f"{path} is not a resumable training checkpoint (missing {missing})")
        self.task.load_state_dict(state)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        if self.checkpoints is not None and self.is_main:
            aside = self.checkpoints.set_aside_after(self.step)
            if aside:
                self.log(f"resume: {len(aside)} checkpoint(s) newer than step {self.step} moved to {aside[0].parent}")
        self.step_in_epoch = int(state["step_in_epoch"])
        old_ws = int(state.get("world_size", 1))
        if old_ws != self.options.world_size and self.step_in_epoch:
            # the epoch's data order depends on the number of replicas: continue at the same share
            new = self.step_in_epoch * old_ws // self.options.world_size
            self.log(f"resume: checkpoint written with {old_ws} replica(s), now {self.options.world_size}; "
                     f"continuing epoch {self.epoch + 1} at step {new} instead of {self.step_in_epoch}")
            self.step_in_epoch = new
        self.images_seen = int(state.get("images_seen", 0))
        self.wall_offset = float(state.get("wall_time_s", 0.0))
        tr = state.get("trainer", {})
        self.best = float(tr.get("best", math.inf))
        self._epoch_acc = {k: float(v) for k, v in tr.get("epoch_acc", {"loss": 0.0, "n": 0.0}).items()}
        self._stall_run = int(tr.get("stall_run", 0))
        self._stall_warned = bool(tr.get("stall_warned", False))
        set_rng_state(state["rng"])
        if self.options.rank:  # the checkpoint holds rank 0's generators: each replica restarts its own
            seed_devices(torch.initial_seed(), "global", rank=self.options.rank, step=self.step)
        self.last_checkpoint = path
        self._truncate_metrics()
        self.log(f"resumed from {path}: epoch {self.epoch + 1}, step {self.step} "
                 f"({self.step_in_epoch} into the epoch)")
        return path

    def _metrics_path(self) -> Path | None:
        return Path(self.options.run_dir) / "metrics.jsonl" if self.options.run_dir is not None else None

    def _truncate_metrics(self) -> None:
        """Drop metric lines of epochs after the resumed checkpoint (they will be recomputed)."""
        path = self._metrics_path()
        if not self.is_main or path is None or not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if line.strip() and json.loads(line).get("epoch", 0) <= self.epoch:
                    keep.append(line)
            except json.JSONDecodeError:  # a line torn by a crash mid-write: dropped, recomputed
                self.log(f"resume: dropping an unreadable line of {path}")
        tmp = path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, path)

    def _write_metrics(self, metrics: Mapping[str, Any]) -> None:
        path = self._metrics_path()
        if not self.is_main or path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(dict(metrics)) + "\n")
            f.flush()
            os.fsync(f.fileno())

    # --------------------------------------------------------------------------------- signals
    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        pid = os.getpid()
        first_at = [0.0]

        def handler(signum, frame):  # noqa: ARG001
            if os.getpid() != pid:
                # a forked data-loader worker inherited this handler: ignore the signal (a terminal's
                # Ctrl-C or `timeout` signals the whole process group); the main process stops it
                return
            if self._stop_signal is not None:
                # a second signal stops at once, unless it is the same event delivered twice
                # (to the process and to its group) within a second
                if time.monotonic() - first_at[0] > 1.0:
                    signal.signal(signum, signal.SIG_DFL)
                    raise KeyboardInterrupt
                return
            first_at[0] = time.monotonic()
            self._stop_signal = signum
            if self.is_main:
                self._log(f"\n{signal.Signals(signum).name} received: finishing this step, then writing a "
                          f"checkpoint (send it again to stop at once, without one)")

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    def request_stop(self) -> None:
        """Ask the loop to stop after the current step, as a signal would."""
        self._stop_signal = signal.SIGTERM

    # ------------------------------------------------------------------------------------ loop
    def fit(self) -> RunResult:
        """Train until ``epochs`` (or ``max_steps``) are done, a signal arrives or the loss is non-finite."""
        previous = self._install_signals()
        self._t_start = time.perf_counter()
        self._t_last_ckpt = self._t_start
        for h in self.hooks:
            h.on_start(self)
        try:
            result = self._loop()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
        for h in self.hooks:
            h.on_end(self, result)
        self.log(result.message)
        return result

    def _loop(self) -> RunResult:
        opt = self.options
        task = self.task
        towers = list(zip(self.TOWERS, task.devices))
        window = _Window()
        while self.epoch < opt.epochs:
            spe = task.steps_per_epoch()
            total_steps = opt.epochs * spe if not opt.max_steps else min(opt.max_steps, opt.epochs * spe)
            batches = task.batches(self.epoch, self.step_in_epoch) if self.step_in_epoch < spe else iter(())
            while self.step_in_epoch < spe:
                if opt.max_steps and self.step >= opt.max_steps:     # e.g. resumed at the limit
                    return RunResult("max_steps", self.epoch, self.step, self.last_checkpoint,
                                     f"train.max_steps = {opt.max_steps} already reached; checkpoint "
                                     f"{self.last_checkpoint}")
                t0 = time.perf_counter()
                batch = next(batches, None)
                if batch is None:  # whole batches of unusable images were dropped: the epoch ends early
                    self.log(f"epoch {self.epoch + 1} ended after {self.step_in_epoch} of {spe} batches "
                             f"(the data pipeline dropped batches of unusable images)")
                    break
                t1 = time.perf_counter()
                out = task.train_step(batch)
                loss = float(out.loss.detach().item())
                tower_s = {}
                for name, dev in towers:
                    _sync(dev)
                    tower_s[name] = time.perf_counter() - t1
                t2 = time.perf_counter()
                if not self.agree(not math.isfinite(loss)):
                    self.step += 1
                    self.step_in_epoch += 1
                    self.images_seen += out.batch_size * opt.world_size
                    mistakes = {k: float(v) for k, v in out.mistakes.items()}
                    self._epoch_acc["loss"] += loss * out.batch_size
                    self._epoch_acc["n"] += out.batch_size
                    for k, v in mistakes.items():
                        self._epoch_acc[k] = self._epoch_acc.get(k, 0.0) + v
                    window.add(loss, out.batch_size, mistakes, t2 - t0, t1 - t0, tower_s)
                else:
                    return self._nonfinite(loss)
                if self.step % opt.log_every == 0 or self.step_in_epoch == spe:
                    self._log_window(window, spe, total_steps)
                    window = _Window()
                stopping = self.agree(self._stop_signal is not None)
                if stopping or (opt.max_steps and self.step >= opt.max_steps):
                    path = self.checkpoint()
                    if stopping:
                        how = f"; resume with: {opt.resume_hint}" if opt.resume_hint else ""
                        return RunResult("interrupted", self.epoch, self.step, path,
                                         f"stopped at step {self.step} (epoch {self.epoch + 1}); checkpoint "
                                         f"{path}{how}")
                    return RunResult("max_steps", self.epoch, self.step, path,
                                     f"reached train.max_steps = {opt.max_steps}; checkpoint {path}")
                if opt.checkpoint_minutes and time.perf_counter() - self._t_last_ckpt > 60 * opt.checkpoint_minutes:
                    self.checkpoint()
            self._end_epoch()
            if self.agree(self._stop_signal is not None) and self.epoch < opt.epochs:
                how = f"; resume with: {opt.resume_hint}" if opt.resume_hint else ""
                return RunResult("interrupted", self.epoch, self.step, self.last_checkpoint,
                                 f"stopped after epoch {self.epoch}; checkpoint {self.last_checkpoint}{how}")
        return RunResult("finished", self.epoch, self.step, self.last_checkpoint,
                         f"finished {self.epoch} epochs ({self.step} steps) in "
                         f"{format_duration(self.wall_time_s)}; last checkpoint {self.last_checkpoint}")

    def _end_epoch(self) -> None:
        acc = self._epoch_acc
        n = max(acc["n"], 1.0)
        val = self.task.validate()
        metrics: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.step, "images_seen": self.images_seen,
                                   "wall_time_s": round(self.wall_time_s, 3), "lr": self.task.lr(),
                                   "train_loss": acc["loss"] / n}
        for k, v in acc.items():
            if k not in ("loss", "n"):
                metrics[f"train_{k}_err"] = v / n
        metrics.update(val)
        self.task.end_epoch(metrics)
        self.epoch += 1
        self.step_in_epoch = 0
        self._reset_epoch_acc()
        is_best = False
        score = metrics.get(self.options.best_metric)
        if score is not None and math.isfinite(score) and score < self.best:
            self.best, is_best = float(score), True
        self.last_metrics = metrics
        self._write_metrics(metrics)
        self.checkpoint(is_best=is_best)
        shown = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        self.log(f"epoch {self.epoch} done: {shown}" + (" (best)" if is_best else ""))
        for h in self.hooks:
            h.on_epoch(self, metrics)

    def _nonfinite(self, loss: float) -> RunResult:
        where = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                 else "no checkpoint was written yet")
        hint = f" ({self.options.resume_hint})" if self.options.resume_hint and self.last_checkpoint else ""
        return RunResult("nonfinite", self.epoch, self.step, self.last_checkpoint,
                         f"error: the loss became {loss} at step {self.step + 1} (epoch {self.epoch + 1}); training "
                         f"stopped without saving this state; {where}. Lower the learning rate and resume{hint}.")

    def _log_window(self, w: "_Window", spe: int, total_steps: int) -> None:
        if not w.steps:
            return
        opt = self.options
        loss = w.loss / max(w.n, 1)
        rate = w.n * opt.world_size / max(w.time, 1e-9)
        sec_per_step = w.time / w.steps
        eta = (total_steps - self.step) * sec_per_step
        stats: dict[str, float] = {"step": self.step, "epoch": self.epoch + self.step_in_epoch / spe,
                                   "loss": loss, "lr": self.task.lr(), "images_per_s": rate,
                                   "data_wait_share": w.wait / max(w.time, 1e-9),
                                   "step_time_s": sec_per_step}
        for k, v in w.mistakes.items():
            stats[f"{k}_err"] = v / max(w.n, 1)
        for name, dev in zip(self.TOWERS, self.task.devices):
            stats[f"step_time_s/{name}"] = w.tower[name] / w.steps
        for dev in dict.fromkeys(self.task.devices):
            stats[f"memory_mib/{dev}"] = device_memory_mib(dev)
        self._check_stall(loss, w.steps)
        errs = "  ".join(f"{k}_err {stats[f'{k}_err']:.3f}" for k in w.mistakes)   # an error, named as in metrics
        self.log(f"epoch {self.epoch + 1}/{opt.epochs}  step {self.step_in_epoch}/{spe} ({self.step} total)  "
                 f"loss {loss:.4f}  {errs}  {rate:.1f} img/s  data wait {100 * stats['data_wait_share']:.0f}%  "
                 f"lr {stats['lr']:.3g}  ETA {format_duration(eta)}")
        for h in self.hooks:
            h.on_log(self, stats)

    def _check_stall(self, window_loss: float, steps: int) -> None:
        opt = self.options
        if opt.stall_loss is None:
            return
        if abs(window_loss - opt.stall_loss) < opt.stall_tolerance:
            self._stall_run += steps
        else:
            self._stall_run = 0
        if self._stall_run >= opt.stall_steps and not self._stall_warned:
            self._stall_warned = True
            self.log(f"warning: the loss has stayed within {opt.stall_tolerance} of chance level "
                     f"({opt.stall_loss:.3f}) for {self._stall_run} steps. {opt.stall_hint}".rstrip())


class _Window:
    """Sums over the steps since the last progress line."""

    def __init__(self) -> None:
        self.steps, self.n, self.loss, self.time, self.wait = 0, 0, 0.0, 0.0, 0.0
        self.mistakes: dict[str, float] = {}
        self.tower: dict[str, float] = {}

    def add(self, loss: float, n: int, mistakes: Mapping[str, float], step_s: float, wait_s: float,
            tower_s: Mapping[str, float]) -> None:
        self.steps += 1
        self.n += n
        self.loss += loss * n
        self.time += step_s
        self.wait += wait_s
        for k, v in mistakes.items():
            self.mistakes[k] = self.mistakes.get(k, 0.0) + v
        for k, v in tower_s.items():
            self.tower[k] = self.tower.get(k, 0.0) + v
