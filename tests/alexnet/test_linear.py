"""The fully-connected layer (alexnet.models.linear) against y_j = Σ_k x_k W_jk + b_j written out
in float64, on the CPU's transposed path and on its F.linear fallback."""

import pytest
import torch
from torch import nn

from alexnet.models.linear import Linear, _transposed_ok, linear


def by_sums(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """y[n, j] = Σ_k x[n, k] · w[j, k] (+ b[j]), as elementwise products summed in float64."""
    y = (x.double()[..., None, :] * w.double()).sum(-1)
    return y if b is None else y + b.double()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("transposed_input", [False, True])
def test_forward_and_gradients_match_the_sums(dtype, bias, transposed_input):
    torch.manual_seed(0)
    x = torch.randn(7, 33, dtype=dtype)
    if transposed_input:  # a (7, 33) view of a (33, 7) tensor, as a crossing may hand over
        x = torch.randn(33, 7, dtype=dtype).t()
    x.requires_grad_()
    layer = Linear(33, 5, bias=bias).to(dtype)
    assert _transposed_ok(x, layer.weight)  # the CPU path under test, not the fallback
    y = layer(x)
    assert y.shape == (7, 5) and y.dtype == dtype and y.is_contiguous()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    expected = by_sums(x, layer.weight, layer.bias)
    assert (y.double() - expected).abs().max() < tol

    g = torch.randn(7, 5, dtype=torch.float64)
    y.backward(g.to(dtype))
    # ∂L/∂x = g W, ∂L/∂W = gᵀ x, ∂L/∂b = Σ_n g, written out
    gx = (g[:, :, None] * layer.weight.double()[None]).sum(1)
    gw = (g[:, :, None] * x.double()[:, None, :]).sum(0)
    assert (x.grad.double() - gx).abs().max() < tol
    assert (layer.weight.grad.double() - gw).abs().max() < tol
    if bias:
        assert (layer.bias.grad.double() - g.sum(0)).abs().max() < tol


def test_fallbacks_compute_the_same_layer():
    torch.manual_seed(1)
    layer = Linear(12, 4)
    x3 = torch.randn(2, 3, 12)  # a 3-D input: F.linear
    assert not _transposed_ok(x3, layer.weight)
    assert (layer(x3).double() - by_sums(x3, layer.weight, layer.bias)).abs().max() < 1e-5
    x = torch.randn(5, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast picks its own kernel: F.linear
        assert not _transposed_ok(x, layer.weight)
        y = layer(x)
    assert y.dtype == torch.bfloat16
    assert (y.double() - by_sums(x, layer.weight, layer.bias)).abs().max() < 0.1
    assert not _transposed_ok(x.to(torch.bfloat16), layer.weight.to(torch.bfloat16))


def test_is_an_nn_linear_with_its_state_and_repr():
    layer = Linear(6, 3)
    plain = nn.Linear(6, 3)
    assert isinstance(layer, nn.Linear)
    assert list(layer.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    assert repr(layer) == "Linear(in_features=6, out_features=3, bias=True)"
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(4, 6, dtype=torch.float64)
    assert torch.allclose(
        linear(x, layer.weight.double(), layer.bias.double()), plain.double()(x), atol=1e-12
    )


def test_the_networks_fully_connected_layers_use_it():
    from alexnet.models.grouped import GroupedAlexNet
    from alexnet.models.model import AlexNet

    towers = AlexNet(num_classes=10, devices=("meta", "meta"))
    twin = GroupedAlexNet(num_classes=10, device="meta")
    for fc in (towers.a.fc6, towers.a.fc7, towers.a.fc8, towers.b.fc6, twin.fc6, twin.fc7, twin.fc8):
        assert type(fc) is Linear
