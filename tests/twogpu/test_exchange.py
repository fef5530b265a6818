"""The crossing helper: differentiable copies, recorded, in the fixed [a, b] order."""

import torch

from twogpu import cross, exchange, gather, record_crossings


def test_exchange_orders_a_then_b_and_records_both_directions():
    cpu = torch.device("cpu")
    xa = torch.ones(2, 3, requires_grad=True)
    xb = torch.full((2, 5), 2.0, requires_grad=True)
    with record_crossings() as records:
        on_a, on_b = exchange(xa, xb, (cpu, cpu), site="fc6")
    assert torch.equal(on_a, torch.cat([xa, xb], 1)) and torch.equal(on_b, on_a)
    assert [(r.source, r.target, r.shape, r.bytes_forward, r.bytes_backward) for r in records] == [
        ("b", "a", (2, 5), 40, 0),
        ("a", "b", (2, 3), 24, 0),
    ]
    # the backward pass adds the gradient bytes that really cross: only on_b's gradient reaches xa
    # through the a→b crossing, only on_a's reaches xb through b→a; in float64 here
    (on_a.double().sum() + 0 * on_b.sum()).backward()
    assert [r.bytes_backward for r in records] == [40, 24]


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


def test_cross_is_a_named_autograd_function_with_both_directions():
    x = torch.randn(3, requires_grad=True)
    y = cross(x, "cpu", site="t", source="a", target="b")
    assert type(y.grad_fn).__name__ == "CrossBackward"
    assert y is not x and y.data_ptr() == x.data_ptr()  # one device: no copy, a new tensor


def test_gather_sends_b_to_a_only():
    xa, xb = torch.ones(2, 1, requires_grad=True), torch.zeros(2, 2, requires_grad=True)
    with record_crossings() as records:
        out = gather(xa, xb, torch.device("cpu"), site="fc8")
    assert out.tolist() == [[1, 0, 0], [1, 0, 0]]
    out.sum().backward()
    assert [(r.site, r.source, r.target, r.bytes_forward, r.bytes_backward) for r in records] == [
        ("fc8", "b", "a", 16, 16)
    ]
