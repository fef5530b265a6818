"""The native NCHW max-pooling (alexnet/models/csrc/max_pool_cpu.cpp, section 3.4) against the
pooling written out here (each window's maximum, its gradient at the first maximum in reading
order, by plain loops) and against PyTorch's F.max_pool2d bit for bit: ties, NaN, -inf, odd sizes,
the paper's overlapping window and others; its use by the model's pooling layer, and tracing."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.models import native
from alexnet.models.pooling import MaxPool, max_pool

pytestmark = pytest.mark.skipif(native.disabled(), reason="native kernels disabled by ALEXNET_NATIVE")


@pytest.fixture(scope="module", autouse=True)
def kernel():
    assert native.load(), native.status()  # a compiler is part of the test machine


def pool_by_loops(x: torch.Tensor, k: int, s: int, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y[i, j] = max over the k×k window at (s i, s j); the gradient of output (i, j) goes to the
    window's first maximum in reading order (row by row), or to its last NaN when it holds one."""
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    y = torch.empty(n, c, oh, ow, dtype=x.dtype)
    gx = torch.zeros_like(x)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    cells = [(s * i + u, s * j + v) for u in range(k) for v in range(k)]
                    values = [float(x[b, ch, r, q]) for r, q in cells]
                    nans = [m for m, val in enumerate(values) if val != val]
                    m = nans[-1] if nans else values.index(max(values))
                    y[b, ch, i, j] = x[b, ch, cells[m][0], cells[m][1]]
                    gx[b, ch, cells[m][0], cells[m][1]] += g[b, ch, i, j]
    return y, gx


def _native_pool_and_grad(x: torch.Tensor, k: int, s: int, g: torch.Tensor):
    x = x.detach().requires_grad_()
    y = max_pool(x, k, s)
    (gx,) = torch.autograd.grad(y, x, g)
    return y.detach(), gx


WINDOWS = [(3, 2), (2, 2), (3, 3), (5, 1), (1, 1)]


@pytest.mark.parametrize("k,s", WINDOWS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_the_loops_on_ties(k, s, dtype):
    torch.manual_seed(k * 10 + s)
    x = torch.randint(0, 3, (2, 3, 9, 8)).to(dtype)  # three values: most windows hold ties
    x[0, 0, 1, 1] = float("-inf")
    x[1, 2] = float("-inf")  # a whole map of -inf: the first pixel of each window
    shape = (2, 3, (9 - k) // s + 1, (8 - k) // s + 1)
    g = torch.randint(1, 5, shape).to(dtype)  # integers: sums exact in any order
    y, gx = _native_pool_and_grad(x, k, s, g)
    want_y, want_gx = pool_by_loops(x, k, s, g)
    assert torch.equal(y, want_y) and torch.equal(gx, want_gx)


def test_nan_windows_match_the_loops():
    x = torch.arange(2 * 7 * 7, dtype=torch.float64).view(1, 2, 7, 7) % 5
    x[0, 0, 0, 1] = x[0, 0, 2, 0] = float("nan")  # two NaNs in the first window: the last one wins
    x[0, 1, 4, 4] = float("nan")
    g = torch.arange(1.0, 1 + 2 * 9, dtype=torch.float64).view(1, 2, 3, 3)
    y, gx = _native_pool_and_grad(x, 3, 2, g)
    want_y, want_gx = pool_by_loops(x, 3, 2, g)
    assert torch.equal(y.isnan(), want_y.isnan()) and torch.equal(y.nan_to_num(), want_y.nan_to_num())
    assert torch.equal(gx, want_gx)


@pytest.mark.parametrize("shape", [(4, 48, 55, 55), (3, 5, 13, 13), (2, 3, 12, 11), (1, 2, 3, 3)])
def test_bit_identical_to_max_pool2d(shape):
    """Against PyTorch's own kernel, float32, conv1-sized maps included (the paper's window)."""
    torch.manual_seed(shape[1])
    x = torch.randn(shape).relu_()  # ReLU'd maps: ties at zero, as in the network
    x.view(-1)[::97] = -0.0
    x = x.requires_grad_()
    g = torch.randn(F.max_pool2d(x, 3, 2).shape)
    want = F.max_pool2d(x, 3, 2)
    (want_g,) = torch.autograd.grad(want, x, g)
    y, gx = _native_pool_and_grad(x, 3, 2, g)
    assert torch.equal(y, want) and torch.equal(torch.signbit(y), torch.signbit(want))
    assert torch.equal(gx, want_g)


def test_the_layer_runs_the_kernel_only_where_it_is_faster(monkeypatch):
    import alexnet.models.pooling as pooling

    calls, original = [], pooling._NativeMaxPoolFunction

    class Spy(original):
        @staticmethod
        def forward(ctx, *args):
            calls.append(args[0].shape)
            return original.forward(ctx, *args)

    monkeypatch.setattr(pooling, "_NativeMaxPoolFunction", Spy)
    layer = MaxPool(3, 2)
    x = torch.rand(2, 4, 7, 7)
    layer(x)
    assert calls == [x.shape]  # NCHW float on the CPU
    layer(x.contiguous(memory_format=torch.channels_last))  # PyTorch's channels_last kernel is fast
    layer(x.bfloat16())  # autocast's dtype: PyTorch's
    assert len(calls) == 1


def test_smaller_than_the_window_is_pytorchs_error():
    with pytest.raises(RuntimeError, match="too small|Output size"):
        MaxPool(3, 2)(torch.rand(1, 2, 2, 2))


def test_same_module_as_nn_max_pool2d():
    ours, theirs = MaxPool(3, 2), nn.MaxPool2d(3, 2)
    assert repr(ours).replace("MaxPool(", "MaxPool2d(") == repr(theirs)
    assert ours.state_dict() == {} and isinstance(ours, nn.MaxPool2d)


def test_double_backward_is_an_error_not_a_wrong_number():
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    y = max_pool(x, 3, 2).pow(2).sum()
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(y, x, create_graph=True)


def test_fake_implementations_agree_with_the_kernels():
    """torch.library.opcheck: schema, and the shape-only versions torch.compile traces with."""
    x = torch.rand(2, 3, 9, 8)
    tests = ("test_schema", "test_faketensor")
    torch.library.opcheck(torch.ops.alexnet_native.max_pool_forward.default, (x, 3, 2), test_utils=tests)
    _, argmax = torch.ops.alexnet_native.max_pool_forward(x, 3, 2)
    g = torch.randn(argmax.shape)
    torch.library.opcheck(
        torch.ops.alexnet_native.max_pool_backward.default, (g, argmax, 9, 8, 3, 2), test_utils=tests
    )


def test_torch_compile_traces_through_the_kernel():
    torch.manual_seed(3)
    x = torch.randn(2, 4, 11, 11).requires_grad_()
    f = lambda t: max_pool(t, 3, 2).pow(2).sum()  # noqa: E731
    (g1,) = torch.autograd.grad(torch.compile(f, backend="aot_eager", fullgraph=True)(x), x)
    (g2,) = torch.autograd.grad(F.max_pool2d(x, 3, 2).pow(2).sum(), x)
    assert torch.equal(g1, g2)


def test_the_kernel_rejects_what_it_cannot_run():
    with pytest.raises(RuntimeError, match="kernel must be 1..16"):
        torch.ops.alexnet_native.max_pool_forward(torch.rand(1, 1, 40, 40), 17, 1)
    with pytest.raises(RuntimeError, match="smaller than the window"):
        torch.ops.alexnet_native.max_pool_forward(torch.rand(1, 1, 2, 2), 3, 2)


# ---- LRN then max-pool in one pass (inference, channels_last) ----

LRN_CASES = [  # (channels, groups, n, α, β, k, relu): the paper's LRN (compiled constants) and others
    (96, 2, 5, 1e-4, 0.75, 2.0, True),
    (10, 2, 5, 1e-4, 0.75, 2.0, False),
    (7, 1, 3, 1e-2, 0.6, 1.0, True),
]


@pytest.mark.parametrize("channels,groups,n,alpha,beta,k,relu", LRN_CASES)
@pytest.mark.parametrize("window", [(3, 2), (2, 2), (3, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_norm_then_pool_is_bit_identical_to_lrn_then_pool(
    channels, groups, n, alpha, beta, k, relu, window, dtype
):
    from alexnet.models.layers import LocalResponseNorm, local_response_norm
    from alexnet.models.pooling import norm_then_pool

    torch.manual_seed(channels + n)
    x = (torch.randn(3, channels, 13, 11, dtype=dtype) * 20).contiguous(memory_format=torch.channels_last)
    x[:, :, ::4, ::3] = 0.0  # ties, and of +0 with -0 (the first in reading order wins)
    x[:, :, 1::4, 1::3] = -0.0
    x[:, :, 2::4, ::3] = -1.0
    x[0, 1, 5, 5] = float("nan")
    lrn = LocalResponseNorm(n, alpha, beta, k, groups=groups, relu=relu)
    pool = MaxPool(*window)
    with torch.inference_mode():
        got = norm_then_pool(lrn, pool, x)
        want = F.max_pool2d(
            local_response_norm(x, n, alpha, beta, k, groups, window="fused", relu=relu), *window
        )
    assert got.is_contiguous(memory_format=torch.channels_last) and got.shape == want.shape
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.nan_to_num(), want.nan_to_num())
    assert torch.equal(got.signbit(), want.signbit())


def test_norm_then_pool_fuses_only_without_autograd_on_channels_last_float_maps():
    from alexnet.models.pooling import _fused_ok

    x = torch.rand(2, 4, 9, 9).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert _fused_ok(x) and _fused_ok(x.double())
        assert not _fused_ok(x.contiguous())  # NCHW: the LRN and the native NCHW pool, separately
        assert not _fused_ok(x.bfloat16())
    assert _fused_ok(x)  # grad mode, but nothing asks for a gradient
    assert not _fused_ok(x.requires_grad_())  # training: the pool's backward needs the LRN's output


@pytest.mark.parametrize("preset", ["paper", "cuda-convnet", "caffe"])
def test_models_infer_the_same_numbers_with_and_without_the_fused_pass(preset):
    """Inference (fused LRN + pool) against the same models run with autograd (separate passes)."""
    from alexnet.models.grouped import GroupedAlexNet
    from alexnet.models.model import AlexNet

    towers = AlexNet(num_classes=10, preset=preset, seed=1).eval().to(memory_format=torch.channels_last)
    twin = GroupedAlexNet(num_classes=10, preset=preset, seed=1).eval().to(memory_format=torch.channels_last)
    side = towers.input_shape[1]
    x = torch.randn(2, 3, side, side).contiguous(memory_format=torch.channels_last)
    for model in (towers, twin):
        with torch.inference_mode():
            fused = model(x)
        separate = model(x.clone().requires_grad_()).detach()
        assert torch.equal(fused, separate), (type(model).__name__, preset)
