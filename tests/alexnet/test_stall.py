"""The chance-level stall warning, an AlexNet hook on the generic trainer (the runtime knows nothing
of chance levels): warns once after the configured number of steps at ln(classes), never otherwise,
and remembers its count across a resume."""

import math

import torch

from alexnet.training.stall_warning import StallWarning
from twogpu.trainer import StepOutput, Trainer, TrainerOptions


class ConstantLoss:
    devices = (torch.device("cpu"), torch.device("cpu"))

    def __init__(self, loss, steps=5):
        self.loss, self.steps = loss, steps

    def steps_per_epoch(self):
        return self.steps

    def batches(self, epoch, start_step):
        return iter(range(start_step, self.steps))

    def train_step(self, batch):
        return StepOutput(torch.tensor(self.loss), 4, {"top1": torch.tensor(3)})

    def validate(self):
        return {"val_top1_err": 0.5}

    def end_epoch(self, metrics):
        pass

    def lr(self):
        return 0.01

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _run(tmp_path, loss, epochs=2, steps=6, resume=None):
    lines = []
    hook = StallWarning(num_classes=3, steps=steps, hint="try a smaller bias")
    trainer = Trainer(
        ConstantLoss(loss),
        TrainerOptions(epochs=epochs, run_dir=tmp_path, log_every=2),
        hooks=[hook],
        log=lines.append,
    )
    if resume:
        trainer.resume(resume)
    trainer.fit()
    return hook, [line for line in lines if "chance level" in line]


def test_warns_once_at_chance_level(tmp_path):
    hook, warnings = _run(tmp_path, math.log(3))
    assert len(warnings) == 1 and "try a smaller bias" in warnings[0] and "for 6 steps" in warnings[0]
    assert hook.run == 10


def test_silent_away_from_chance_level(tmp_path):
    hook, warnings = _run(tmp_path, math.log(3) + 0.1)
    assert warnings == [] and hook.run == 0


def test_count_survives_a_resume(tmp_path):
    _run(tmp_path, math.log(3), epochs=1, steps=8)  # 5 steps at chance level, no warning yet
    hook, warnings = _run(tmp_path, math.log(3), epochs=2, steps=8, resume="auto")
    assert len(warnings) == 1 and "for 8 steps" in warnings[0]
