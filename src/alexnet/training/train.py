"""Training AlexNet (section 5): the config, network, data pipeline and optimiser wired into the
generic :class:`twogpu.trainer.Trainer`.

Tower a and its optimiser state live on ``devices[0]``, tower b on ``devices[1]``; both towers see
the same batch; the logits, the loss and the error counts live on tower a's device. With both
towers on one device (and ``train.grouped_when_single_device``) the grouped twin of
:mod:`alexnet.models.grouped` is trained instead — the same network, faster there — and every checkpoint
is still written in the two-tower layout (weights and momentum buffers converted).

Data-parallel replicas (torchrun, DDP) call :func:`train` with ``rank``/``world_size``, a ``wrap``
function (e.g. ``lambda m: DistributedDataParallel(m)``), an ``agree`` function (all-reduce of a
stop flag) and a ``reduce_sum`` function (all-reduce of validation counts); only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.config import Config, ConfigError, config_to_dict, config_to_toml
from alexnet.data.pipeline import ImagePipeline
from alexnet.data.sizes import preparation_advice
from alexnet.evaluation.features import Fc7Capture
from alexnet.evaluation.metrics import topk_mistakes
from alexnet.evaluation.network import network_for, network_inputs
from alexnet.hints import alexnet_command
from alexnet.models.grouped import GroupedAlexNet, to_grouped_state, to_two_tower_state
from alexnet.models.model import AlexNet
from alexnet.models.speed import prepare_for_speed, tune_cpu_allocator
from alexnet.training.optimizer import build_optimizer, load_named_momentum, named_momentum
from alexnet.training.schedules import schedule_from
from alexnet.training.stall_warning import StallWarning
from twogpu import peer_check, placement, precision
from twogpu.checkpoint import CheckpointDir
from twogpu.files import write_text_atomic
from twogpu.placement import TowerDevices, resolve_devices
from twogpu.rng import device_streams, stream_seed, use_streams
from twogpu.trainer import Hook, RunResult, StepOutput, Trainer, TrainerOptions, print_line


def _silent(line: str) -> None:
    """The console of ranks > 0: every line is rank 0's to print."""


class TrainError(RuntimeError):
    """A run that cannot start (existing run directory, mismatched checkpoint, missing GPUs)."""


ONE_GPU_HINT = "With one GPU or none, run `make train-1gpu DATA=...` (both towers on one device, or the CPU)."


def require_gpus(n: int) -> None:
    """``make train-2gpu``: stop with a clear message unless ``n`` GPUs are visible."""
    try:
        placement.require_gpus(n, "training the two towers on separate GPUs", ONE_GPU_HINT)
    except ValueError as e:
        raise TrainError(str(e)) from None


class AlexNetTask:
    """The model-specific half of training (:class:`twogpu.trainer.TrainTask`)."""

    def __init__(
        self,
        cfg: Config,
        pipeline: Any,
        devices: TowerDevices,
        *,
        rank: int = 0,
        world_size: int = 1,
        wrap: Callable[[nn.Module], nn.Module] | None = None,
        reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
        say: Callable[[str], None] = print_line,
    ) -> None:
        """``say`` prints one console line (a learning-rate drop, a resume note); rank 0 only."""
        self.cfg, self.pipeline, self.rank, self.world_size = cfg, pipeline, rank, world_size
        self.say = say if rank == 0 else _silent
        self.tower_devices = devices
        self.devices = devices.pair
        self.dev = devices.a
        self.reduce_sum = reduce_sum or (lambda t: t)
        torch.manual_seed(cfg.train.seed)
        # the same initial weights on every rank and on any placement; each tower its own draws
        self.model: nn.Module = network_for(
            AlexNet(devices=devices.pair, preset=cfg.model, seed=cfg.train.seed),
            devices,
            enabled=cfg.train.grouped_when_single_device,
        )
        self.grouped = isinstance(self.model, GroupedAlexNet)
        if devices.a.type == "cpu" or devices.b.type == "cpu":
            tune_cpu_allocator(cfg.train.cpu_allocator_cache)
        self.net: nn.Module = prepare_for_speed(
            self.model, channels_last=cfg.train.channels_last, compile=cfg.train.compile
        )
        if wrap is not None:
            self.net = wrap(self.net)
        optim = cfg.optim
        lr = optim.lr * (world_size if optim.lr_scaling == "linear" else 1)
        self.optimizer = build_optimizer(
            self.model,
            lr=lr,
            momentum=optim.momentum,
            weight_decay=optim.weight_decay,
            bias_lr_mult=optim.bias_lr_mult,
            bias_decay=optim.bias_decay,
        )
        self.schedule = schedule_from(
            optim, self.optimizer, lr, total_steps=cfg.train.epochs * pipeline.steps_per_epoch()
        )
        self.generator = torch.Generator(device=self.dev)  # PCA lighting noise, on tower a's device
        self.generator.manual_seed(stream_seed(cfg.train.seed, "lighting", rank=rank))
        # Dropout draws from the global generators, which other code also draws from at times that
        # depend on when the run started (a DataLoader takes a seed from it whenever an epoch's
        # iterator is created). The task keeps the dropout streams itself (one per device, so towers
        # on two GPUs drop different neurons), and a resumed run draws exactly the masks of an
        # uninterrupted one.
        self._cuda_indices = sorted({d.index or 0 for d in devices.pair if d.type == "cuda"})
        self.dropout_rng = device_streams(cfg.train.seed, "dropout", self._cuda_indices, rank=rank)

    # ------------------------------------------------------------------------------- TrainTask
    def steps_per_epoch(self) -> int:
        return self.pipeline.steps_per_epoch()

    def batches(self, epoch: int, start_step: int) -> Iterator[Any]:
        return self.pipeline.train_batches(epoch, start_step)

    def _input(self, batch: Any, train: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The network input: on two devices each tower's own copy, normalised there from the uint8
        batch (:meth:`ImagePipeline.to_tower_inputs`); else one tensor on tower a's device."""
        xs = network_inputs(
            self.pipeline,
            batch,
            self.model,
            self.tower_devices,
            train=train,
            generator=self.generator if train else None,
        )
        if self.cfg.train.channels_last:
            xs = tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in xs)
        return xs if len(xs) == 2 else xs[0]

    def _autocast(self):
        """bf16 autocast on CUDA when ``train.precision = "bf16"``; nothing otherwise
        (twogpu/precision.py)."""
        return precision.autocast(self.dev, self.cfg.train.precision)

    def train_step(self, batch: Any) -> StepOutput:
        x = self._input(batch, train=True)  # (N, 3, 224, 224) on each tower's device
        y = batch.labels.to(self.dev, non_blocking=True)  # (N,)
        self.net.train()
        with use_streams(self.dropout_rng, self._cuda_indices), self._autocast():
            logits = self.net(x)  # (N, classes) on tower a's device
        loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.schedule.before_step()  # 'dexp' sets ε by the fraction of training done
        self.optimizer.step()
        return StepOutput(loss.detach(), int(y.shape[0]), topk_mistakes(logits.detach(), y))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in eval mode (dropout's test-time scaling) for (N, 3, S, S) inputs, S = model.input_size."""
        self.net.eval()
        with self._autocast():
            return self.net(x).float()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Centre-view top-1 / top-5 error and loss on the validation set (sharded, then summed)."""
        limit = self.cfg.train.val_limit or None
        sums = torch.zeros(4, dtype=torch.float64, device=self.dev)  # images, top1 wrong, top5 wrong, loss
        for batch in self.pipeline.val_batches(batch_size=self.cfg.eval.batch_size, limit=limit):
            logits = self.predict(self._input(batch, train=False))
            y = batch.labels.to(self.dev)
            mistakes = topk_mistakes(logits, y)
            sums += torch.stack(
                [
                    torch.tensor(float(len(y)), device=self.dev, dtype=torch.float64),
                    mistakes["top1"].double(),
                    mistakes["top5"].double(),
                    F.cross_entropy(logits, y, reduction="sum").double(),
                ]
            )
        sums = self.reduce_sum(sums)
        images = max(float(sums[0]), 1.0)
        return {
            "val_top1_err": float(sums[1]) / images,
            "val_top5_err": float(sums[2]) / images,
            "val_loss": float(sums[3]) / images,
            "val_images": int(sums[0]),
        }

    def end_epoch(self, metrics: Mapping[str, float]) -> None:
        if self.schedule.end_epoch(metrics.get("val_top1_err")):
            self.say(
                f"learning rate divided by 10 (drop {self.schedule.drops} of at most "
                f"{self.schedule.max_drops}): ε = {self.schedule.lr:g}"
            )

    def lr(self) -> float:
        return self.schedule.lr

    # ------------------------------------------------------------------------------------ state
    def _to_two_tower(self, named: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        named = to_two_tower_state(named, self.cfg.model) if self.grouped else named
        return {
            k: v.detach().cpu().clone() for k, v in named.items()
        }  # clone: views would save whole storages

    def two_tower_state(self) -> dict[str, torch.Tensor]:
        """The weights in the two-tower layout (``a.conv1.weight`` ... ``b.fc7.bias``), on the CPU."""
        return self._to_two_tower(self.model.state_dict())

    def two_tower_grads(self) -> dict[str, torch.Tensor]:
        """The last step's gradients in the two-tower layout (parameters without one are left out)."""
        grads = {n: p.grad for n, p in self.model.named_parameters() if p.grad is not None}
        if self.grouped and len(grads) != len(list(self.model.parameters())):
            return {}
        return self._to_two_tower(grads)

    def state_dict(self) -> dict[str, Any]:
        stats = self.pipeline.stats
        return {
            "model": self.two_tower_state(),
            "optimizer": {"momentum": self._to_two_tower(named_momentum(self.optimizer, self.model))},
            "schedule": self.schedule.state_dict(),
            "lighting_generator": self.generator.get_state(),
            "dropout_rng": {"cpu": self.dropout_rng["cpu"], "cuda": list(self.dropout_rng["cuda"])},
            "classes": list(self.pipeline.classes),
            "class_names": list(self.pipeline.class_names),
            "stats": {
                "mean": torch.as_tensor(stats.mean).float(),
                "eigval": torch.as_tensor(stats.eigval).float(),
                "eigvec": torch.as_tensor(stats.eigvec).float(),
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state["config"]["model"]
        mine = config_to_dict(self.cfg)["model"]
        if saved != mine:
            diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
            raise TrainError(
                f"the checkpoint's network differs from the config's in model.{', model.'.join(diff)}"
            )
        if list(state["classes"]) != list(self.pipeline.classes):
            raise TrainError("the checkpoint was trained on different class folders than data.root holds")
        weights, momentum = state["model"], state["optimizer"]["momentum"]
        if self.grouped:
            weights, momentum = (
                to_grouped_state(weights, self.cfg.model),
                to_grouped_state(momentum, self.cfg.model),
            )
        self.model.load_state_dict(weights)
        load_named_momentum(self.optimizer, self.model, momentum)
        self.schedule.load_state_dict(state["schedule"])
        if self.rank > 0:
            # The checkpoint holds rank 0's random streams: every other replica derives its own from
            # (seed, rank, step), so replicas keep drawing different dropout masks and lighting noise.
            self._reseed_streams(int(state["step"]))
            return
        saved_light = state["lighting_generator"]
        if saved_light.numel() == self.generator.get_state().numel():
            self.generator.set_state(saved_light)
        else:  # resumed on another kind of device: the generator's state does not carry over
            self.say(
                f"resume: the lighting-noise generator was saved on another kind of device; it is "
                f"re-seeded from (seed, step {int(state['step'])})"
            )
            self.generator.manual_seed(
                stream_seed(self.cfg.train.seed, "lighting", rank=self.rank, step=int(state["step"]))
            )
        saved_rng = state["dropout_rng"]
        if len(saved_rng["cuda"]) == len(self._cuda_indices):
            self.dropout_rng = {"cpu": saved_rng["cpu"], "cuda": list(saved_rng["cuda"])}
        else:  # resumed on another kind of device: the CPU stream continues, CUDA streams restart
            self.dropout_rng = {"cpu": saved_rng["cpu"], "cuda": self.dropout_rng["cuda"]}

    def _reseed_streams(self, step: int) -> None:
        """Dropout and lighting streams of this replica from (seed, rank, step)."""
        seed = self.cfg.train.seed
        self.generator.manual_seed(stream_seed(seed, "lighting", rank=self.rank, step=step))
        self.dropout_rng = device_streams(seed, "dropout", self._cuda_indices, rank=self.rank, step=step)

    # -------------------------------------------------------------------------------- dashboards
    @torch.no_grad()
    def sample_validation(self, n: int) -> dict[str, torch.Tensor]:
        """The first ``n`` validation images' centre views (uint8), labels, softmax and fc7 features."""
        images, labels, probs, feats = [], [], [], []
        with Fc7Capture(self.model) as fc7:
            for batch in self.pipeline.val_batches(batch_size=min(n, self.cfg.eval.batch_size), limit=n):
                logits = self.predict(self._input(batch, train=False))
                images.append(batch.images)
                labels.append(batch.labels)
                probs.append(logits.softmax(1).cpu())
                feats.append(fc7.take().float().cpu())  # (N, 4096)
        if not images:
            return {}
        return {
            "images": torch.cat(images)[:n],
            "labels": torch.cat(labels)[:n],
            "probs": torch.cat(probs)[:n],
            "fc7": torch.cat(feats)[:n],
        }


# --------------------------------------------------------------------------------------- train
def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.train.runs_dir) / cfg.train.name


def train(
    cfg: Config,
    *,
    resume: str | None = None,
    rank: int = 0,
    world_size: int = 1,
    device_offset: int = 0,
    devices: TowerDevices | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    agree: Callable[[bool], bool] | None = None,
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
    log: Callable[[str], None] | None = None,
    dashboards: bool = True,
    hooks: Sequence[Hook] = (),
) -> RunResult:
    """Train with ``cfg``; ``resume`` is None (new run), ``"auto"`` (this run's newest checkpoint)
    or a checkpoint path. ``log`` prints one console line (default: stdout); only rank 0 prints.
    Returns the :class:`~twogpu.trainer.RunResult`."""
    say = (log or print_line) if rank == 0 else _silent
    main = rank == 0
    run_dir = run_dir_of(cfg)
    if resume is None and CheckpointDir(run_dir / "checkpoints").step_files():
        raise TrainError(
            f"{run_dir} already holds checkpoints of a run: continue it with --resume, or choose "
            f"another name with --set train.name=..."
        )
    devices = devices or resolve_devices(cfg.train.devices, offset=device_offset)
    try:  # before anything is written: towers on two GPUs exchange every activation by such copies
        copies = peer_check.check_peer_copies(devices.a, devices.b)
    except peer_check.PeerCopyError as e:
        raise TrainError(str(e)) from None
    arithmetic = precision.configure(cfg.train.precision)
    say(f"devices: {devices.reason}")
    if copies:
        say(copies)
    say(f"precision: {arithmetic}")
    if main and "cpu" in (devices.a.type, devices.b.type):
        from alexnet.models import native

        say(f"LRN and max-pool on the CPU: {native.status()}")
    pipeline = ImagePipeline(
        cfg.data,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        rank=rank,
        world_size=world_size,
        device=devices.a,
        input_size=cfg.model.input_size,
    )
    if main and (advice := preparation_advice(pipeline, devices.pair)):
        say(advice)  # a CUDA run on images the loader must resize every epoch
    if pipeline.num_classes != cfg.model.num_classes:
        say(
            f"model.num_classes set to {pipeline.num_classes}, the number of class folders in {cfg.data.root}"
        )
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=pipeline.num_classes))
    task = AlexNetTask(
        cfg, pipeline, devices, rank=rank, world_size=world_size, wrap=wrap, reduce_sum=reduce_sum, say=say
    )
    what = "grouped twin (one device)" if task.grouped else "two towers"
    say(
        f"run directory {run_dir}; {what}; {pipeline.num_classes} classes, "
        f"{len(pipeline.train_samples)} training / {len(pipeline.val_samples)} validation images, "
        f"{pipeline.steps_per_epoch()} steps per epoch of {cfg.train.batch_size}"
    )
    hooks = list(hooks)
    if cfg.train.stall_warn_steps:
        hooks.append(StallWarning(cfg.model.num_classes, cfg.train.stall_warn_steps))
    if dashboards and main:
        from alexnet.training.dashboard import TensorBoardHook

        hooks.append(TensorBoardHook(run_dir, task, cfg))
    options = TrainerOptions(
        epochs=cfg.train.epochs,
        run_dir=run_dir,
        max_steps=cfg.train.max_steps,
        log_every=cfg.train.log_every,
        checkpoint_minutes=cfg.train.checkpoint_minutes,
        keep_last=cfg.train.keep_last,
        rank=rank,
        world_size=world_size,
        resume_hint=alexnet_command("train", "--config", str(run_dir / "config.toml"), "--resume"),
        extra_state={"config": config_to_dict(cfg)},
    )
    trainer = Trainer(task, options, hooks=hooks, agree=agree, log=say)
    if resume is not None:
        if trainer.resume(resume) is None:
            say(f"no checkpoint in {run_dir / 'checkpoints'} yet: starting from the beginning")
    if world_size > 1 and reduce_sum is not None:
        steps = reduce_sum(torch.tensor([float(trainer.step), float(trainer.step) ** 2], dtype=torch.float64))
        if world_size * float(steps[1]) != float(steps[0]) ** 2:  # equal iff every rank is at the same step
            raise TrainError(
                f"replica {rank} is at step {trainer.step}, other replicas are not: every node must "
                f"see the same run directory ({run_dir}) to resume, e.g. on a shared filesystem"
            )
    if main:  # only once the checkpoint (if any) was accepted: the file must describe the weights
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.toml", config_to_toml(cfg))
    try:
        result = trainer.fit()
    finally:
        pipeline.close()
        for h in hooks:
            getattr(h, "close", lambda: None)()
    summary = pipeline.bad_input_summary()
    if summary:
        say(summary)
    if main:
        best = run_dir / "checkpoints" / "best.pt"
        evaluate = alexnet_command("evaluate", "--checkpoint", str(best), str(cfg.data.root))
        say(
            f"dashboards: {run_dir} (make tensorboard, then open http://localhost:6006)"
            + (f"; evaluate: {evaluate}" if best.is_file() else "")
        )
    return result


def check_config_for_training(cfg: Config) -> None:
    """Errors that can be found before any work starts."""
    if not cfg.data.root:
        raise ConfigError(
            "data.root is not set: pass the dataset folder (alexnet train DATA) or --set data.root=..."
        )


def train_data_parallel(
    cfg: Config, *, resume: str | None = None, log: Callable[[str], None] | None = None
) -> RunResult:
    """One replica of a data-parallel run launched by ``torchrun`` (issue: scale out).

    Each process drives one two-tower replica on its own devices, one layout for every replica of
    the node (local rank r → ``cuda:2r``, ``cuda:2r+1``; one GPU each when there are fewer than two per
    replica; the CPU without GPUs; refused when the GPUs do not divide: twogpu/replicas.py),
    ``DistributedDataParallel``
    all-reduces the gradients (NCCL on GPUs, gloo on the CPU), the sampler shards each epoch's
    seeded order, validation counts are summed over ranks, and only rank 0 writes.
    ``train.batch_size`` is per replica, so the global batch is batch_size × replicas.
    """
    from twogpu import replicas

    # every replica's devices first (one layout for the node), then join the group bound to them
    devices = replicas.replica_devices(replicas.world_from_env(), cfg.train.devices)
    world = replicas.init_from_env(timeout_s=cfg.train.dist_timeout_s, device=devices.a)
    try:
        comm = devices.a if world.backend == "nccl" else torch.device("cpu")
        say = (log or print_line) if world.is_main else _silent
        placements = replicas.gather_text(devices.reason, world)  # "replica r ...: tower a on ..."
        say(
            f"data-parallel: {world.world_size} replica(s), backend {world.backend}, global batch "
            f"{cfg.train.batch_size * world.world_size}"
        )
        for line in placements:
            say(line)

        def reduce_sum(t: torch.Tensor) -> torch.Tensor:
            return replicas.all_reduce_sum(t, world, comm)

        result = train(
            cfg,
            resume=resume,
            rank=world.rank,
            world_size=world.world_size,
            devices=devices,
            wrap=lambda m: replicas.wrap(m, world),
            agree=lambda f: replicas.agree_any(f, world, comm),
            reduce_sum=reduce_sum,
            log=say,
        )
    except BaseException:
        replicas.shutdown(world, clean=False)
        raise
    replicas.shutdown(world)  # the model and its DDP wrapper are released: train() has returned
    return result
