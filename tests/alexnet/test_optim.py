"""The paper's update rule (eq. 1) and the learning-rate schedule (section 5)."""

import copy
import math

import pytest
import torch
from torch import nn

from alexnet.training.optim import (
    LRSchedule,
    PaperSGD,
    build_optimizer,
    load_named_momentum,
    named_momentum,
    param_groups,
)


def _grads(step: int, shapes):
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]


def test_matches_eq1_by_hand_with_lr_change():
    """v ← μv − λεw − ε∇L ; w ← w + v, written out per element, over 6 steps with ε changed twice."""
    mu, lam = 0.9, 0.0005
    shapes = [(3, 4), (5,)]
    w0 = [torch.randn(s, dtype=torch.float64) for s in shapes]
    params = [nn.Parameter(w.clone()) for w in w0]
    opt = PaperSGD(params, lr=0.01, momentum=mu, weight_decay=lam)
    lrs = [0.01, 0.01, 0.001, 0.001, 0.02, 0.02]

    # the reference: plain Python floats, element by element
    ref_w = [w.flatten().tolist() for w in w0]
    ref_v = [[0.0] * len(w) for w in ref_w]
    for step, eps in enumerate(lrs):
        grads = _grads(step, shapes)
        for p, g in zip(params, grads):
            p.grad = g.clone()
        for group in opt.param_groups:
            group["lr"] = eps
        opt.step()
        for i, g in enumerate(grads):
            gl = g.flatten().tolist()
            for j in range(len(gl)):
                ref_v[i][j] = mu * ref_v[i][j] - lam * eps * ref_w[i][j] - eps * gl[j]
                ref_w[i][j] = ref_w[i][j] + ref_v[i][j]
    for p, w in zip(params, ref_w):
        torch.testing.assert_close(
            p.detach().flatten(), torch.tensor(w, dtype=torch.float64), rtol=1e-12, atol=1e-15
        )


def test_differs_from_torch_sgd_when_lr_changes():
    """PyTorch's SGD keeps ε outside the momentum buffer: same until ε changes, different after."""
    w0 = torch.randn(10, dtype=torch.float64)
    a, b = nn.Parameter(w0.clone()), nn.Parameter(w0.clone())
    ours = PaperSGD([a], lr=0.01, momentum=0.9, weight_decay=0.0)
    theirs = torch.optim.SGD([b], lr=0.01, momentum=0.9, weight_decay=0.0)
    for step, eps in enumerate([0.01, 0.01, 0.001, 0.001]):
        g = _grads(step, [(10,)])[0]
        a.grad, b.grad = g.clone(), g.clone()
        for o in (ours, theirs):
            o.param_groups[0]["lr"] = eps
        ours.step()
        theirs.step()
        if step < 2:
            torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-15)
    assert not torch.allclose(a.detach(), b.detach(), rtol=1e-6, atol=0)


def test_cuda_convnet_groups_bias_lr_and_no_decay():
    lin = nn.Linear(3, 2).double()
    groups = param_groups(lin, lr=0.01, weight_decay=0.0005, momentum=0.9, bias_lr_mult=2.0, bias_decay=False)
    assert [g["lr"] for g in groups] == [0.01, 0.02]
    assert [g["weight_decay"] for g in groups] == [0.0005, 0.0]
    opt = PaperSGD(groups)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    lin.weight.grad = torch.ones_like(w0)
    lin.bias.grad = torch.ones_like(b0)
    opt.step()
    # first step from v = 0: Δw = −λεw − εg
    torch.testing.assert_close(lin.weight.detach(), w0 - 0.0005 * 0.01 * w0 - 0.01)
    torch.testing.assert_close(lin.bias.detach(), b0 - 0.02)


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    opt = build_optimizer(model, lr=0.05, momentum=0.9, weight_decay=0.0005, bias_lr_mult=2, bias_decay=False)
    x = torch.randn(8, 4)

    def step(m, o):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()

    for _ in range(3):
        step(model, opt)
    clone = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    clone.load_state_dict(model.state_dict())
    opt2 = build_optimizer(
        clone, lr=0.05, momentum=0.9, weight_decay=0.0005, bias_lr_mult=2, bias_decay=False
    )
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # (as if read from disk: no shared buffers)
    clone3 = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    clone3.load_state_dict(model.state_dict())
    opt3 = build_optimizer(
        clone3, lr=0.05, momentum=0.9, weight_decay=0.0005, bias_lr_mult=2, bias_decay=False
    )
    load_named_momentum(opt3, clone3, named_momentum(opt, model))
    for _ in range(3):
        step(model, opt)
        step(clone, opt2)
        step(clone3, opt3)
    for p, q, r in zip(model.parameters(), clone.parameters(), clone3.parameters()):
        assert torch.equal(p, q) and torch.equal(p, r)


def test_plateau_drops_after_patience_and_at_most_three_times():
    p = nn.Parameter(torch.zeros(1))
    opt = PaperSGD(param_groups(nn.Linear(1, 1), lr=0.01, weight_decay=0, momentum=0.9, bias_lr_mult=2))
    sched = LRSchedule(opt, 0.01, mode="plateau", patience=2, max_drops=3)
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
    drops = [sched.step(e) for e in errors]
    assert [i for i, d in enumerate(drops) if d] == [3, 6, 8]
    assert sched.drops == 3
    assert math.isclose(sched.lr, 0.01 * 1e-3)
    assert math.isclose(opt.param_groups[0]["lr"], 1e-5) and math.isclose(opt.param_groups[1]["lr"], 2e-5)
    del p


def test_plateau_state_round_trip():
    opt = PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = LRSchedule(opt, 0.01, patience=2)
    for e in (0.5, 0.6):
        sched.step(e)
    other = LRSchedule(PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01), 0.01, patience=2)
    other.load_state_dict(sched.state_dict())
    assert other.step(0.6) and sched.step(0.6)
    assert other.lr == sched.lr


def test_milestones():
    opt = PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = LRSchedule(opt, 0.01, mode="milestones", milestones=(2, 4, 5, 7), max_drops=3)
    drops = [sched.step(None) for _ in range(8)]
    assert [i + 1 for i, d in enumerate(drops) if d] == [2, 4, 5]
    assert math.isclose(opt.param_groups[0]["lr"], 1e-5)


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="momentum"):
        PaperSGD([nn.Parameter(torch.zeros(1))], momentum=1.5)


# ------------------------------------------------- the paper preset's plateau rule over 90 epochs
def _paper_schedule():
    from alexnet.config import load_config

    o = load_config().optim  # the paper preset's values
    opt = PaperSGD([nn.Parameter(torch.zeros(1))], lr=o.lr)
    return o, LRSchedule(
        opt,
        o.lr,
        mode=o.schedule,
        patience=o.plateau_patience,
        max_drops=o.max_drops,
        min_delta=o.plateau_min_delta,
        min_epochs=o.plateau_min_epochs,
        max_epochs=o.plateau_max_epochs,
    )


def _run(sched, curve):
    drops = []
    for epoch, err in enumerate(curve, 1):
        if sched.step(err):
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
        if sched.step(err + rng.gauss(0, 0.0022)):
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
