"""The learning-rate schedules (section 5; cuda-convnet2's lr.cu) and their choice from the config."""

import math

import pytest
import torch
from torch import nn

from alexnet.config import load_config
from alexnet.training.optimizer import PaperSGD, param_groups
from alexnet.training.schedules import (
    DexpSchedule,
    MilestoneSchedule,
    PlateauSchedule,
    dexp_rates,
    schedule_from,
)


def test_plateau_drops_after_patience_and_at_most_three_times():
    opt = PaperSGD(param_groups(nn.Linear(1, 1), lr=0.01, weight_decay=0, momentum=0.9, bias_lr_mult=2))
    sched = PlateauSchedule(opt, 0.01, patience=2, max_drops=3)
    errors = [
        0.9,
        0.8,
        0.8,
        0.85,  # two epochs without improvement → drop 1
        0.7,
        0.75,
        0.7,  # drop 2
        0.72,
        0.71,  # drop 3
        0.9,
        0.9,
        0.9,
        0.9,
        0.9,
        0.9,
    ]  # never a fourth
    drops = [sched.end_epoch(e) for e in errors]
    assert [i for i, d in enumerate(drops) if d] == [3, 6, 8]
    assert sched.drops == 3
    assert math.isclose(sched.lr, 0.01 * 1e-3)
    assert math.isclose(opt.param_groups[0]["lr"], 1e-5) and math.isclose(opt.param_groups[1]["lr"], 2e-5)


def test_plateau_state_round_trip():
    opt = PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = PlateauSchedule(opt, 0.01, patience=2)
    for e in (0.5, 0.6):
        sched.end_epoch(e)
    other = PlateauSchedule(PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01), 0.01, patience=2)
    other.load_state_dict(sched.state_dict())
    assert other.end_epoch(0.6) and sched.end_epoch(0.6)
    assert other.lr == sched.lr


def test_milestones():
    opt = PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = MilestoneSchedule(opt, 0.01, milestones=(2, 4, 5, 7), max_drops=3)
    drops = [sched.end_epoch(None) for _ in range(8)]
    assert [i + 1 for i, d in enumerate(drops) if d] == [2, 4, 5]
    assert math.isclose(opt.param_groups[0]["lr"], 1e-5)


# ------------------------------------------------- the paper preset's plateau rule over 90 epochs
def _paper_schedule():
    o = load_config().optim  # the paper preset's values
    opt = PaperSGD([nn.Parameter(torch.zeros(1))], lr=o.lr)
    sched = schedule_from(o, opt, o.lr, total_steps=90)
    assert isinstance(sched, PlateauSchedule)
    return o, sched


def _run(sched, curve):
    drops = []
    for epoch, err in enumerate(curve, 1):
        if sched.end_epoch(err):
            drops.append(epoch)
    return drops


def _run_on_simulated_training(sched, epochs=90, seed=0):
    """Drive the rule with a validation curve that answers to it, like a real run: at each rate the
    top-1 error approaches that rate's floor (0.8^t, flat after ~15-20 epochs), each division of ε
    opens a lower floor, and each epoch's measurement carries the binomial noise of 50,000 validation
    images (σ ≈ 0.22 points at 40 %). Returns the drop epochs and the noiseless curve."""
    import random

    rng = random.Random(seed)
    floors = (0.50, 0.445, 0.42, 0.415)
    level, at_rate, clean, drops = 0.75, 0, [], []
    for epoch in range(1, epochs + 1):
        at_rate += 1
        floor = floors[sched.drops]
        err = floor + (level - floor) * 0.8**at_rate
        clean.append(err)
        if sched.end_epoch(err + rng.gauss(0, 0.0022)):
            drops.append(epoch)
            level, at_rate = err, 0
    return drops, clean


@pytest.mark.parametrize("seed", range(20))
def test_plateau_rule_gives_three_drops_within_90_epochs_on_a_flattening_curve(seed):
    o, sched = _paper_schedule()
    assert (o.plateau_patience, o.plateau_min_epochs, o.plateau_max_epochs, o.max_drops) == (5, 10, 25, 3)
    drops, clean = _run_on_simulated_training(sched, seed=seed)
    assert len(drops) == 3 and drops[-1] <= 75, drops  # all three, well before epoch 90
    assert drops[0] >= 10  # not in the first noisy epochs
    assert all(b - a >= 10 for a, b in zip(drops, drops[1:]))  # each rate lasts at least min_epochs
    for d in drops:  # fired only once the (noiseless) curve had stopped improving: < 0.5 points in 5 epochs
        assert clean[d - 1 - o.plateau_patience] - clean[d - 1] < 0.005, (drops, d)
    assert sched.lr == pytest.approx(0.01 * 0.1**3)


def test_plateau_rule_cannot_fire_early_on_a_noisy_flat_start():
    _, sched = _paper_schedule()
    flat = [0.99 + 0.001 * (i % 2) for i in range(90)]  # no improvement at all from epoch 2
    drops = _run(sched, flat)
    assert drops[0] == 10  # held back to min_epochs, not epoch 6
    assert drops == [10, 20, 30]


def test_plateau_rule_still_fires_when_the_curve_keeps_creeping_down():
    _, sched = _paper_schedule()
    creeping = [0.9 - 0.002 * e for e in range(90)]  # improves by 0.2 points every epoch
    drops = _run(sched, creeping)
    assert drops == [25, 50, 75]  # plateau_max_epochs: never silent


# ----------------------------------------------------------------------------------- dexp schedule
def test_dexp_rates_by_hand():
    w = dexp_rates(0.02, 250, 4)
    expect = [0.02, 0.02 / 250 ** (1 / 3), 0.02 / 250 ** (2 / 3), 0.02 / 250]
    assert w == pytest.approx(expect, rel=1e-12)
    assert dexp_rates(0.04, 25, 2) == pytest.approx([0.04, 0.0016], rel=1e-12)


def test_dexp_schedule_sets_weights_and_biases_over_the_quarters_of_training():
    model = torch.nn.Linear(2, 2)
    groups = param_groups(
        model, lr=0.02, weight_decay=0.0005, momentum=0.9, bias_lr_mult=2.0, bias_decay=False
    )
    opt = PaperSGD(groups, lr=0.02)
    total = 400
    sched = DexpSchedule(opt, 0.02, total_steps=total, weights=(250.0, 4), biases=(25.0, 2))
    seen = []
    for _ in range(total):
        sched.before_step()
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[1]["lr"]))
    w = [0.02, 0.02 / 250 ** (1 / 3), 0.02 / 250 ** (2 / 3), 0.02 / 250]
    # step s (0-based) trains at progress s / total; lr.cu: rate i while progress <= (i + 1) / 4
    for s, (lw, lb) in enumerate(seen):
        quarter = 0 if s <= 100 else 1 if s <= 200 else 2 if s <= 300 else 3
        assert lw == pytest.approx(w[quarter], rel=1e-12), s
        assert lb == pytest.approx(0.04 if s <= 200 else 0.0016, rel=1e-12), s
    # Resume: the step count travels with the schedule's state.
    again = DexpSchedule(opt, 0.02, total_steps=total, weights=(250.0, 4), biases=(25.0, 2))
    state = sched.state_dict()
    state["steps_done"] = 250
    again.load_state_dict(state)
    again.before_step()
    assert opt.param_groups[0]["lr"] == pytest.approx(w[2]) and opt.param_groups[1]["lr"] == pytest.approx(
        0.0016
    )


def test_schedule_from_picks_the_configured_rule_with_its_settings():
    model = nn.Linear(2, 2)
    opt = PaperSGD(param_groups(model, lr=0.02, weight_decay=0, momentum=0.9, bias_lr_mult=2.0))
    paper = load_config().optim
    plateau = schedule_from(paper, opt, 0.02, total_steps=100)
    assert isinstance(plateau, PlateauSchedule)
    assert (plateau.patience, plateau.min_epochs, plateau.max_epochs, plateau.max_drops) == (5, 10, 25, 3)
    cc2 = load_config(
        None, ['optim.schedule="dexp"', "optim.dexp_steps=3", "optim.dexp_bias_factor=10"]
    ).optim
    dexp = schedule_from(cc2, opt, 0.02, total_steps=100)
    assert isinstance(dexp, DexpSchedule) and (dexp.weights, dexp.biases) == ((250.0, 3), (10.0, 2))
    assert opt.param_groups[1]["lr"] == pytest.approx(0.04)  # biases: lr × bias_lr_mult at the start
    fixed = load_config(None, ['optim.schedule="milestones"', "optim.milestones=[3, 1]"]).optim
    milestones = schedule_from(fixed, opt, 0.02, total_steps=100)
    assert isinstance(milestones, MilestoneSchedule) and milestones.milestones == (1, 3)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)


def test_a_checkpoint_of_another_schedule_is_refused_naming_both():
    opt = PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    saved = MilestoneSchedule(opt, 0.01, milestones=(1,)).state_dict()
    with pytest.raises(ValueError, match="schedule = 'milestones', the config's 'plateau'"):
        PlateauSchedule(opt, 0.01).load_state_dict(saved)


@pytest.mark.parametrize("schedule", ["plateau", "milestones", "dexp"])
def test_a_resumed_schedule_sets_the_rates_of_an_uninterrupted_one(schedule):
    """A schedule rebuilt from the config and loaded from a state saved mid-run (as a checkpoint
    resume does) sets, step by step and epoch by epoch, the rates of the one that ran through."""
    optim = load_config(None, [f'optim.schedule="{schedule}"', "optim.milestones=[4, 9]"]).optim
    steps, epochs = 3, 14
    curve = [0.9 - 0.01 * min(e, 3) for e in range(epochs)]  # improves for 3 epochs, then flat

    def fresh():
        opt = PaperSGD(param_groups(nn.Linear(1, 1), lr=0.01, weight_decay=0, momentum=0.9, bias_lr_mult=2))
        return opt, schedule_from(optim, opt, 0.01, total_steps=steps * epochs)

    def run(opt, sched, first_epoch):
        rates = []
        for epoch in range(first_epoch, epochs):
            for _ in range(steps):
                sched.before_step()
                rates.append([g["lr"] for g in opt.param_groups])
            sched.end_epoch(curve[epoch])
        return rates

    whole = run(*fresh(), 0)
    opt, sched = fresh()
    for epoch in range(7):
        for _ in range(steps):
            sched.before_step()
        sched.end_epoch(curve[epoch])
    saved = sched.state_dict()
    opt2, resumed = fresh()
    resumed.load_state_dict(saved)
    assert run(opt2, resumed, 7) == whole[7 * steps :]
    assert len({tuple(r) for r in whole}) > 1  # the rates did change over the run
