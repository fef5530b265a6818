"""A generic training loop for a two-tower model: steps, timing, checkpoints, resume, signals.

The loop knows nothing about the network or the data. A :class:`~twogpu.task.TrainTask` supplies
the batches of an epoch, one optimisation step, validation and its own state; the :class:`Trainer` runs
epochs,
keeps the host ahead of the devices (losses and error counts are summed on the device and read every
``log_every`` steps, per-tower step times come from CUDA events: :mod:`twogpu.timing`), prints a
progress line with rate and ETA, checkpoints atomically every epoch and every N minutes, resumes at
the exact step, stops cleanly on SIGINT/SIGTERM (:mod:`twogpu.signals`) and stops on a non-finite
loss. Model-specific warnings (e.g. a loss stuck at chance level) are hooks the caller supplies.

Data-parallel runs (one process per replica) pass ``rank``/``world_size`` and an ``agree``
function (e.g. an all-reduce of a flag) so every rank stops at the same step — they agree at the
steps where the loop reads its sums anyway, so a stop signal takes effect within ``log_every``
steps; only rank 0 writes files and calls the hooks.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from twogpu.checkpoint import CheckpointDir, CheckpointError, load_checkpoint
from twogpu.files import append_line_durable, write_text_atomic
from twogpu.rng import rng_state, seed_devices, set_rng_state
from twogpu.signals import StopRequest
from twogpu.task import Hook, RunResult, StepOutput, TrainerOptions, TrainTask
from twogpu.timing import TowerTimer, format_duration

__all__ = ["Hook", "RunResult", "StepOutput", "Trainer", "TrainerOptions", "TrainTask", "print_line"]


# ---------------------------------------------------------------------------------------- helpers
def print_line(line: str) -> None:
    """The trainer's console: one line to stdout in a single write, flushed, so that lines of
    processes sharing a terminal never run together. Callers print on rank 0 only."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def device_memory_mib(device: torch.device) -> float:
    """Peak memory of ``device`` in MiB (CUDA: allocated by PyTorch; CPU: the process's peak RSS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class _Window:
    """Sums over the steps since the last progress line. Losses and mistakes are added as tensors
    on their device (no host wait); :meth:`read` brings them to the host once."""

    def __init__(self, first_step: int) -> None:
        self.steps, self.images, self.wait = 0, 0, 0.0
        self.first_step = first_step
        self.t0 = time.perf_counter()
        self._sums: dict[str, torch.Tensor | float] = {}

    def add(self, out: StepOutput, wait_s: float) -> None:
        self.steps += 1
        self.images += out.batch_size
        self.wait += wait_s
        self._add("loss", out.loss.detach().float() * out.batch_size)
        for k, v in out.mistakes.items():
            self._add(k, v.detach() if isinstance(v, torch.Tensor) else float(v))

    def _add(self, key: str, value: torch.Tensor | float) -> None:
        self._sums[key] = self._sums[key] + value if key in self._sums else value

    def read(self) -> dict[str, float]:
        """The sums as floats (waits for the devices to finish the window's steps)."""
        return {k: float(v) for k, v in self._sums.items()}


# ---------------------------------------------------------------------------------------- trainer
_RESUME_KEYS = (
    "epoch",
    "step",
    "step_in_epoch",
    "images_seen",
    "wall_time_s",
    "world_size",
    "trainer",
    "hooks",
    "rng",
)
"""What :meth:`Trainer.checkpoint` writes of the trainer's own state, all needed to resume."""


class Trainer:
    """Runs a :class:`TrainTask` for ``options.epochs`` epochs (see the module docstring)."""

    TOWERS = ("a", "b")

    def __init__(
        self,
        task: TrainTask,
        options: TrainerOptions,
        hooks: Sequence[Hook] = (),
        agree: Callable[[bool], bool] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.task, self.options = task, options
        self.is_main = options.rank == 0
        self.hooks = list(hooks) if self.is_main else []
        self.agree = agree or (lambda flag: flag)
        self._log = log or print_line
        self.checkpoints = (
            CheckpointDir(Path(options.run_dir) / "checkpoints", options.keep_last)
            if options.run_dir is not None
            else None
        )
        self.epoch = 0  # epochs completed == 0-based index of the epoch in progress
        self.step = 0  # optimisation steps taken in total
        self.step_in_epoch = 0  # position in the epoch's data order
        self.images_seen = 0  # images seen by all ranks together
        self.wall_offset = 0.0  # training time of earlier sessions (resume)
        self.best = math.inf
        self.last_checkpoint: Path | None = None
        self.last_metrics: dict[str, float] = {}
        self._epoch_acc: dict[str, float] = {"loss": 0.0, "n": 0.0}
        self.stop = StopRequest(announce=self._log if self.is_main else None)
        self.timer = TowerTimer(task.devices)
        self._window = _Window(0)
        self._t_start = time.perf_counter()
        self._t_last_ckpt = self._t_start

    # ---------------------------------------------------------------------------- bookkeeping
    def log(self, text: str) -> None:
        if self.is_main:
            self._log(text)

    @property
    def wall_time_s(self) -> float:
        return self.wall_offset + (time.perf_counter() - self._t_start)

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": self.step_in_epoch,
            "images_seen": self.images_seen,
            "wall_time_s": self.wall_time_s,
            "world_size": self.options.world_size,
            "trainer": {"best": self.best, "epoch_acc": dict(self._epoch_acc)},
            "hooks": {h.name: h.state_dict() for h in self.hooks if h.name},
            "rng": rng_state(),
        }

    def checkpoint(self, *, is_best: bool = False) -> Path | None:
        """Write a checkpoint of the current state (rank 0; other ranks return None). The loop calls
        it only where the window's sums have just been read, so the state is all accounted for."""
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
        missing = [k for k in _RESUME_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"{path} is not a resumable training checkpoint (missing {missing})")
        self.task.load_state_dict(state)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        if self.checkpoints is not None and self.is_main:
            aside = self.checkpoints.set_aside_after(self.step)
            if aside:
                self.log(
                    f"resume: {len(aside)} checkpoint(s) newer than step {self.step} moved to "
                    f"{aside[0].parent}"
                )
        self.step_in_epoch = int(state["step_in_epoch"])
        old_ws = int(state["world_size"])
        if old_ws != self.options.world_size and self.step_in_epoch:
            # the epoch's data order depends on the number of replicas: continue at the same share
            new = self.step_in_epoch * old_ws // self.options.world_size
            self.log(
                f"resume: checkpoint written with {old_ws} replica(s), now {self.options.world_size}; "
                f"continuing epoch {self.epoch + 1} at step {new} instead of {self.step_in_epoch}"
            )
            self.step_in_epoch = new
        self.images_seen = int(state["images_seen"])
        self.wall_offset = float(state["wall_time_s"])
        self.best = float(state["trainer"]["best"])
        self._epoch_acc = {k: float(v) for k, v in state["trainer"]["epoch_acc"].items()}
        saved_hooks = state["hooks"]
        for h in self.hooks:  # a hook of this run that the checkpoint's run did not have starts afresh
            if h.name and h.name in saved_hooks:
                h.load_state_dict(saved_hooks[h.name])
        set_rng_state(state["rng"])
        if self.options.rank:  # the checkpoint holds rank 0's generators: each replica restarts its own
            seed_devices(torch.initial_seed(), "global", rank=self.options.rank, step=self.step)
        self.last_checkpoint = path
        self._truncate_metrics()
        self.log(
            f"resumed from {path}: epoch {self.epoch + 1}, step {self.step} "
            f"({self.step_in_epoch} into the epoch)"
        )
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
        write_text_atomic(path, "".join(line + "\n" for line in keep))

    def _write_metrics(self, metrics: Mapping[str, Any]) -> None:
        path = self._metrics_path()
        if self.is_main and path is not None:
            append_line_durable(path, json.dumps(dict(metrics)))

    def request_stop(self) -> None:
        """Ask the loop to stop after the current step, as a signal would."""
        self.stop.request()

    # ------------------------------------------------------------------------------------ loop
    def fit(self) -> RunResult:
        """Train until ``epochs`` (or ``max_steps``) are done, a signal arrives or the loss is non-finite."""
        self._t_start = time.perf_counter()
        self._t_last_ckpt = self._t_start
        for h in self.hooks:
            h.on_start(self)
        with self.stop.installed():
            result = self._loop()
        for h in self.hooks:
            h.on_end(self, result)
        self.log(result.message)
        return result

    def _loop(self) -> RunResult:
        opt = self.options
        while self.epoch < opt.epochs:
            epoch_steps = self.task.steps_per_epoch()
            total_steps = (
                opt.epochs * epoch_steps
                if not opt.max_steps
                else min(opt.max_steps, opt.epochs * epoch_steps)
            )
            batches = (
                self.task.batches(self.epoch, self.step_in_epoch)
                if self.step_in_epoch < epoch_steps
                else iter(())
            )
            self._window = _Window(self.step)
            while self.step_in_epoch < epoch_steps:
                if opt.max_steps and self.step >= opt.max_steps:  # e.g. resumed at the limit
                    return RunResult(
                        "max_steps",
                        self.epoch,
                        self.step,
                        self.last_checkpoint,
                        f"train.max_steps = {opt.max_steps} already reached; checkpoint "
                        f"{self.last_checkpoint}",
                    )
                if not self._step(batches):
                    # whole batches of unusable images were dropped: the epoch ends early
                    self.log(
                        f"epoch {self.epoch + 1} ended after {self.step_in_epoch} of {epoch_steps} batches "
                        f"(the data pipeline dropped batches of unusable images)"
                    )
                    break
                result = self._after_step(epoch_steps, total_steps)
                if result is not None:
                    return result
            bad = self._read_window(epoch_steps, total_steps)  # what an early end left unread
            if bad is not None:
                return self._nonfinite(bad)
            self._end_epoch()
            if self.agree(self.stop.requested) and self.epoch < opt.epochs:
                how = f"; resume with: {opt.resume_hint}" if opt.resume_hint else ""
                return RunResult(
                    "interrupted",
                    self.epoch,
                    self.step,
                    self.last_checkpoint,
                    f"stopped after epoch {self.epoch}; checkpoint {self.last_checkpoint}{how}",
                )
        return RunResult(
            "finished",
            self.epoch,
            self.step,
            self.last_checkpoint,
            f"finished {self.epoch} epoch{'s' if self.epoch != 1 else ''} ({self.step} steps) in "
            f"{format_duration(self.wall_time_s)}; last checkpoint {self.last_checkpoint}",
        )

    def _step(self, batches: Iterator[Any]) -> bool:
        """One optimisation step, queued without waiting for the devices; False when the data ended."""
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return False
        wait = time.perf_counter() - t0
        self.timer.start()
        out = self.task.train_step(batch)
        self.timer.stop()
        self._window.add(out, wait)
        self.step += 1
        self.step_in_epoch += 1
        self.images_seen += out.batch_size * self.options.world_size
        return True

    def _after_step(self, epoch_steps: int, total_steps: int) -> RunResult | None:
        """At the steps where the loop synchronises (every ``log_every`` steps, the end of the epoch,
        ``max_steps``, a stop request in a single process): read the sums, agree on a non-finite loss
        and on stopping, checkpoint. Elsewhere nothing: the host queues the next step at once."""
        opt = self.options
        at_limit = bool(opt.max_steps) and self.step >= opt.max_steps
        due = self.step % opt.log_every == 0 or self.step_in_epoch == epoch_steps or at_limit
        if not (due or (self.stop.requested and opt.world_size == 1)):
            return None
        bad = self._read_window(epoch_steps, total_steps)
        if bad is not None:
            return self._nonfinite(bad)
        stopping = self.agree(self.stop.requested)
        if stopping:
            path = self.checkpoint()
            how = f"; resume with: {opt.resume_hint}" if opt.resume_hint else ""
            return RunResult(
                "interrupted",
                self.epoch,
                self.step,
                path,
                f"stopped at step {self.step} (epoch {self.epoch + 1}); checkpoint {path}{how}",
            )
        if at_limit:
            path = self.checkpoint()
            return RunResult(
                "max_steps",
                self.epoch,
                self.step,
                path,
                f"reached train.max_steps = {opt.max_steps}; checkpoint {path}",
            )
        if opt.checkpoint_minutes and time.perf_counter() - self._t_last_ckpt > 60 * opt.checkpoint_minutes:
            if self.step_in_epoch < epoch_steps:  # at the end of the epoch its own checkpoint follows
                self.checkpoint()
        return None

    def _read_window(self, epoch_steps: int, total_steps: int) -> float | None:
        """Bring the window's sums to the host (one wait for the devices), add them to the epoch's,
        log the progress line; returns the window's loss when any rank's is not finite."""
        window = self._window
        if not window.steps:
            return None
        sums = window.read()
        tower_s = self.timer.collect()
        elapsed = time.perf_counter() - window.t0
        loss = sums["loss"] / max(window.images, 1)
        if self.agree(not math.isfinite(loss)):
            return loss
        self._epoch_acc["n"] += window.images
        for k, v in sums.items():
            self._epoch_acc[k] = self._epoch_acc.get(k, 0.0) + v
        self._log_window(window, sums, tower_s, elapsed, epoch_steps, total_steps)
        self._window = _Window(self.step)
        return None

    def _end_epoch(self) -> None:
        acc = self._epoch_acc
        n = max(acc["n"], 1.0)
        val = self.task.validate()
        metrics: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "images_seen": self.images_seen,
            "wall_time_s": round(self.wall_time_s, 3),
            "lr": self.task.lr(),
            "train_loss": acc["loss"] / n,
        }
        for k, v in acc.items():
            if k not in ("loss", "n"):
                metrics[f"train_{k}_err"] = v / n
        metrics.update(val)
        self.task.end_epoch(metrics)
        self.epoch += 1
        self.step_in_epoch = 0
        self._epoch_acc = {"loss": 0.0, "n": 0.0}
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
        self._window = _Window(self.step)  # validation time is not a training step's

    def _nonfinite(self, loss: float) -> RunResult:
        first = self._window.first_step + 1
        when = f"step {self.step}" if first == self.step else f"steps {first}-{self.step}"
        where = (
            f"the last good checkpoint is {self.last_checkpoint}"
            if self.last_checkpoint
            else "no checkpoint was written yet"
        )
        hint = f" ({self.options.resume_hint})" if self.options.resume_hint and self.last_checkpoint else ""
        return RunResult(
            "nonfinite",
            self.epoch,
            self.step,
            self.last_checkpoint,
            f"error: the loss became {loss} within {when} (epoch {self.epoch + 1}); training "
            f"stopped without saving this state; {where}. Lower the learning rate and resume{hint}.",
        )

    def _log_window(
        self,
        window: _Window,
        sums: Mapping[str, float],
        tower_s: Sequence[float],
        elapsed: float,
        epoch_steps: int,
        total_steps: int,
    ) -> None:
        opt = self.options
        loss = sums["loss"] / max(window.images, 1)
        rate = window.images * opt.world_size / max(elapsed, 1e-9)
        sec_per_step = elapsed / window.steps
        eta = (total_steps - self.step) * sec_per_step
        stats: dict[str, float] = {
            "step": self.step,
            "epoch": self.epoch + self.step_in_epoch / epoch_steps,
            "loss": loss,
            "lr": self.task.lr(),
            "images_per_s": rate,
            "data_wait_share": window.wait / max(elapsed, 1e-9),
            "step_time_s": sec_per_step,
            "window_steps": window.steps,
        }
        mistakes = [k for k in sums if k != "loss"]
        for k in mistakes:
            stats[f"{k}_err"] = sums[k] / max(window.images, 1)
        for name, seconds in zip(self.TOWERS, tower_s):
            stats[f"step_time_s/{name}"] = seconds / window.steps
        for dev in dict.fromkeys(self.task.devices):
            stats[f"memory_mib/{dev}"] = device_memory_mib(dev)
        errs = "  ".join(
            f"{k}_err {stats[f'{k}_err']:.3f}" for k in mistakes
        )  # an error, named as in metrics
        self.log(
            f"epoch {self.epoch + 1}/{opt.epochs}  "
            f"step {self.step_in_epoch}/{epoch_steps} ({self.step} total)  "
            f"loss {loss:.4f}  {errs}  {rate:.1f} img/s  data wait {100 * stats['data_wait_share']:.0f}%  "
            f"lr {stats['lr']:.3g}  ETA {format_duration(eta)}"
        )
        for h in self.hooks:
            h.on_log(self, stats)
