"""TensorBoard dashboards of a training run, written into the run directory itself.

Every ``log_every`` steps: train loss and top-1/top-5 error, learning rate, images/s, the share of
step time spent waiting for data, step time per tower, memory per device. Every epoch: train and
validation error, conv1's kernels per tower as an image grid (the paper's Figure 3: tower a's
kernels come out largely colour-agnostic, tower b's colour-specific), weight and gradient
histograms per layer per tower, validation images with their five most probable labels (Figure 4,
left), fc7 features of validation images in the embedding projector (Figure 4, right). Once: the
resolved config as text and as hparams. View with ``make tensorboard`` (``tensorboard --logdir runs``).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from google.protobuf import text_format
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from alexnet.config import Config, config_to_dict, config_to_toml
from alexnet.evaluation.pictures import across_classes, kernel_grid, top5_panel
from twogpu.trainer import Hook, RunResult, Trainer

HISTOGRAM_SAMPLE = 1 << 20
"""Histograms of larger tensors use every k-th element (at most ~2^20 values; fc6 holds 19 M per tower)."""
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
HPARAM_METRICS = ("hparam/val_top1_err", "hparam/val_top5_err")


def flat_hparams(cfg: Config) -> dict[str, Any]:
    """Config keys as ``section.key`` with TensorBoard-compatible values (lists become strings)."""
    out: dict[str, Any] = {}
    for section, values in config_to_dict(cfg).items():
        for k, v in values.items():
            out[f"{section}.{k}"] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


def _sample(t: torch.Tensor) -> torch.Tensor:
    flat = t.detach().flatten()
    stride = -(-flat.numel() // HISTOGRAM_SAMPLE)
    return flat[::stride] if stride > 1 else flat


class TensorBoardHook(Hook):
    """Writes the dashboards of :mod:`alexnet.training.dashboard` for an
    :class:`alexnet.training.train.AlexNetTask`."""

    def __init__(self, run_dir: str | Path, task: Any, cfg: Config) -> None:
        self.run_dir, self.task, self.cfg = Path(run_dir), task, cfg
        self.writer: SummaryWriter | None = None

    def on_start(self, trainer: Trainer) -> None:
        # purge_step drops events a crashed session wrote after the checkpoint being resumed
        self.writer = SummaryWriter(
            log_dir=str(self.run_dir), purge_step=trainer.step + 1 if trainer.step else None
        )
        self._resume_embeddings(trainer.step)
        if trainer.step == 0:
            self.writer.add_text("config", "```\n" + config_to_toml(self.cfg) + "\n```", 0)
            exp, ssi, sei = hparams(flat_hparams(self.cfg), {m: float("nan") for m in HPARAM_METRICS})
            fw = self.writer._get_file_writer()
            for summary in (exp, ssi, sei):
                fw.add_summary(summary)
            self.writer.flush()

    def _resume_embeddings(self, step: int) -> None:
        """The projector's fc7 embeddings continue like the scalars: those written after ``step`` (by a
        session whose later history the resumed checkpoint discards) are removed, so the same step
        is not written twice; the earlier ones stay listed beside the new ones (the writer would
        otherwise list only this session's)."""
        config_file = self.run_dir / "projector_config.pbtxt"
        config = ProjectorConfig()
        if config_file.is_file():
            text_format.Parse(config_file.read_text(), config)
        kept = [e for e in config.embeddings if int(e.tensor_name.rsplit(":", 1)[-1]) <= step]
        for folder in self.run_dir.iterdir():
            if folder.is_dir() and folder.name.isdigit() and int(folder.name) > step:
                shutil.rmtree(folder)  # add_embedding's <step:05d>/<tag>/ folders
        if kept:  # SummaryWriter.add_embedding appends to this and rewrites projector_config.pbtxt
            self.writer._projector_config = ProjectorConfig(embeddings=kept)

    def on_log(self, trainer: Trainer, stats: Mapping[str, float]) -> None:
        writer, step = self.writer, trainer.step
        assert writer is not None
        writer.add_scalar("train/loss", stats["loss"], step)
        for k in ("top1", "top5"):
            if f"{k}_err" in stats:
                writer.add_scalar(f"train/{k}_err", stats[f"{k}_err"], step)
        writer.add_scalar("train/lr", stats["lr"], step)
        writer.add_scalar("speed/images_per_s", stats["images_per_s"], step)
        writer.add_scalar("speed/data_wait_share", stats["data_wait_share"], step)
        for key, value in stats.items():
            if key.startswith("step_time_s/"):
                writer.add_scalar(f"speed/step_time_s_tower_{key.split('/', 1)[1]}", value, step)
            elif key.startswith("memory_mib/"):
                writer.add_scalar(f"memory_mib/{key.split('/', 1)[1].replace(':', '_')}", value, step)

    def on_epoch(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        writer, step = self.writer, trainer.step
        assert writer is not None
        for split in ("train", "val"):
            for k in ("top1", "top5"):
                if f"{split}_{k}_err" in metrics:
                    writer.add_scalar(f"error/{split}_{k}_err", metrics[f"{split}_{k}_err"], step)
        writer.add_scalar("epoch/train_loss", metrics["train_loss"], step)
        if "val_loss" in metrics:
            writer.add_scalar("epoch/val_loss", metrics["val_loss"], step)
        writer.add_scalar("epoch/lr", metrics["lr"], step)
        for m in HPARAM_METRICS:
            key = m.split("/", 1)[1]
            if key in metrics:
                writer.add_scalar(m, metrics[key], step)
        self._weights(step)
        self._validation_images(step)
        writer.flush()

    def _weights(self, step: int) -> None:
        writer = self.writer
        assert writer is not None
        state = self.task.two_tower_state()
        grads = self.task.two_tower_grads()
        for tower in ("a", "b"):
            key = f"{tower}.conv1.weight"
            if key in state:
                writer.add_image(
                    f"conv1_kernels/tower_{tower}", kernel_grid([state[key]]), step, dataformats="HWC"
                )
            for layer in LAYERS:
                for kind in ("weight", "bias"):
                    name = f"{tower}.{layer}.{kind}"
                    if name in state:
                        writer.add_histogram(f"weights/{tower}/{layer}.{kind}", _sample(state[name]), step)
                    if name in grads:
                        writer.add_histogram(f"grads/{tower}/{layer}.{kind}", _sample(grads[name]), step)

    def _validation_images(self, step: int) -> None:
        n = self.cfg.train.dashboard_images
        if n <= 0:
            return
        sample = self.task.sample_validation(16 * n)
        if not sample:
            return
        writer = self.writer
        assert writer is not None
        names = self.task.pipeline.class_names
        shown = across_classes(sample["labels"], n)  # as Figure 4: different classes, not the first files
        panel = top5_panel(sample["images"][shown], sample["probs"][shown], sample["labels"][shown], names)
        writer.add_image("validation/top5", panel, step, dataformats="HWC")
        thumbs = torch.nn.functional.interpolate(
            sample["images"].float() / 255, size=(64, 64), mode="bilinear", align_corners=False
        )
        writer.add_embedding(
            sample["fc7"],
            metadata=[names[int(i)] for i in sample["labels"]],
            label_img=thumbs,
            global_step=step,
            tag="fc7",
        )

    def on_end(self, trainer: Trainer, result: RunResult) -> None:
        if self.writer is not None:
            self.writer.add_text("result", result.message, trainer.step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
