"""The crossing helper: differentiable copies, recorded, in the fixed [a, b] order."""

import torch

from twogpu import cross, exchange, record_crossings


def test_exchange_orders_a_then_b_and_records_both_directions():
    cpu = torch.device("cpu")
    xa = torch.ones(2, 3, requires_grad=True)
    xb = torch.full((2, 5), 2.0, requires_grad=True)
    with record_crossings() as records:
        on_a, on_b = exchange(xa, xb, (cpu, cpu), site="fc6")
    assert torch.equal(on_a, torch.cat([xa, xb], 1)) and torch.equal(on_b, on_a)
    assert [(r.source, r.target, r.shape, r.bytes_forward, r.bytes_backward) for r in records] == [
        ("b", "a", (2, 5), 40, 40), ("a", "b", (2, 3), 24, 24)]


def test_gradient_flows_back_across():
    x = torch.randn(4, requires_grad=True)
    y = cross(x, "cpu", site="t", source="a", target="b")
    (3 * y).sum().backward()
    assert torch.equal(x.grad, torch.full((4,), 3.0))


def test_nothing_recorded_outside_the_context():
    with record_crossings() as records:
        pass
    cross(torch.zeros(1), "cpu", site="t", source="a", target="b")
    assert records == []
