"""The paper's update rule (eq. 1, section 5), its parameter groups and momentum buffers by name."""

import copy

import pytest
import torch
from torch import nn

from alexnet.training.optimizer import (
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


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="momentum"):
        PaperSGD([nn.Parameter(torch.zeros(1))], momentum=1.5)
