"""The paper's layers against their definitions written out by hand (section 3.3 LRN, section 4.2
dropout): explicit loops over the channel window, edges included, both α conventions."""

import contextlib

import pytest
import torch

from alexnet.models.layers import Dropout, LocalResponseNorm, channel_window_sum, local_response_norm


def lrn_by_loops(
    a: torch.Tensor, n: int, alpha: float, beta: float, k: float, towers: int = 1
) -> torch.Tensor:
    """b_i = a_i / (k + α Σ_{j=max(0,i−n/2)}^{min(N−1,i+n/2)} a_j²)^β, N the maps of one tower,
    one channel at a time (differentiable, so autograd of it is the reference gradient)."""
    N = a.shape[1] // towers
    out = []
    for t in range(towers):
        for i in range(N):
            s = torch.zeros_like(a[:, 0])
            for j in range(max(0, i - n // 2), min(N - 1, i + n // 2) + 1):
                s = s + a[:, t * N + j] ** 2
            out.append(a[:, t * N + i] / (k + alpha * s) ** beta)
    return torch.stack(out, 1)


WINDOWS = ["fused", "mm", "conv", "shift"]


@pytest.fixture(autouse=True)
def _native_kernel(request):
    """Tests of window="fused" need the native kernel: it must build here unless ALEXNET_NATIVE=0."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("window") != "fused":
        return
    from alexnet.models import native

    if native.disabled():
        pytest.skip("native kernels disabled by ALEXNET_NATIVE")
    assert native.load(), native.status()


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("towers", [1, 2])
@pytest.mark.parametrize("alpha_per_size", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_lrn_matches_formula_forward_and_gradient(window, towers, alpha_per_size, channels_last):
    torch.manual_seed(0)
    # 7 maps per tower: the windows at channels 0, 1, 5, 6 are clipped by the edges; large values
    # make α Σ a² comparable with k so the normalisation is far from the identity.
    a = torch.randn(2, 7 * towers, 4, 3, dtype=torch.float64) * 60
    if channels_last:
        a = a.contiguous(memory_format=torch.channels_last)
    a.requires_grad_()
    layer = LocalResponseNorm(5, 1e-4, 0.75, 2.0, alpha_per_size=alpha_per_size, groups=towers)
    alpha_in_formula = 1e-4 / 5 if alpha_per_size else 1e-4
    expected = lrn_by_loops(a, 5, alpha_in_formula, 0.75, 2.0, towers)
    assert (expected - a).abs().max() > 1.0  # the layer does something
    got = local_response_norm(a, 5, layer.alpha, 0.75, 2.0, towers, window=window)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(expected)
    (want,) = torch.autograd.grad(expected, a, g)
    (have,) = torch.autograd.grad(got, a, g)
    torch.testing.assert_close(have, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_lrn_with_fused_relu_is_relu_then_formula(window, channels_last):
    torch.manual_seed(3)
    a = torch.randn(2, 14, 4, 3, dtype=torch.float64) * 60  # negative inputs: the ReLU matters
    if channels_last:
        a = a.contiguous(memory_format=torch.channels_last)
    a.requires_grad_()
    expected = lrn_by_loops(torch.relu(a), 5, 1e-4, 0.75, 2.0, 2)
    got = local_response_norm(a, 5, 1e-4, 0.75, 2.0, 2, window=window, relu=True)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(expected)
    (want,) = torch.autograd.grad(expected, a, g)
    (have,) = torch.autograd.grad(got, a, g)
    torch.testing.assert_close(have, want, rtol=1e-10, atol=1e-12)


def test_lrn_module_default_path_and_alpha_conventions():
    torch.manual_seed(1)
    a = torch.randn(2, 10, 5, 5, dtype=torch.float64) * 80
    paper = LocalResponseNorm(5, 1e-4, 0.75, 2.0)
    caffe = LocalResponseNorm(5, 1e-4, 0.75, 2.0, alpha_per_size=True)
    torch.testing.assert_close(paper(a), lrn_by_loops(a, 5, 1e-4, 0.75, 2.0))
    torch.testing.assert_close(caffe(a), lrn_by_loops(a, 5, 2e-5, 0.75, 2.0))
    # the α/n convention is PyTorch's own nn.LocalResponseNorm(size, alpha, beta, k)
    torch.testing.assert_close(caffe(a), torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(a))
    assert not torch.allclose(paper(a), caffe(a))


@pytest.mark.parametrize("window", WINDOWS)
def test_lrn_gradcheck(window):
    torch.manual_seed(2)
    a = (torch.randn(1, 6, 3, 2, dtype=torch.float64) * 50).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: local_response_norm(t, 3, 1e-3, 0.75, 2.0, 2, window=window), (a,)
    )
    assert torch.autograd.gradcheck(
        lambda t: local_response_norm(t, 5, 1e-3, 0.6, 1.0, 1, window=window), (a,)
    )


def test_grouped_lrn_keeps_windows_inside_each_tower():
    # A spike in tower b's first map must not normalise tower a's last maps, and vice versa.
    a = torch.ones(1, 8, 2, 2, dtype=torch.float64)
    a[:, 4] = 1000.0  # tower b, map 0
    out = local_response_norm(a, 5, 1e-4, 0.75, 2.0, groups=2)
    alone = local_response_norm(a[:, :4], 5, 1e-4, 0.75, 2.0)
    torch.testing.assert_close(out[:, :4], alone)  # tower a unaffected by tower b's spike
    one_group = local_response_norm(a, 5, 1e-4, 0.75, 2.0, groups=1)
    assert not torch.allclose(one_group[:, :4], alone)  # without towers the window would cross


def test_channel_window_sum_edges():
    x = torch.arange(1.0, 7.0).view(1, 6, 1, 1)  # channels 1..6
    s = channel_window_sum(x, 5).flatten().tolist()
    assert s == [1 + 2 + 3, 1 + 2 + 3 + 4, 1 + 2 + 3 + 4 + 5, 2 + 3 + 4 + 5 + 6, 3 + 4 + 5 + 6, 4 + 5 + 6]
    s2 = channel_window_sum(x, 3, groups=2).flatten().tolist()
    assert s2 == [1 + 2, 1 + 2 + 3, 2 + 3, 4 + 5, 4 + 5 + 6, 5 + 6]


def test_lrn_keeps_memory_format_and_half_precision_input():
    torch.manual_seed(3)
    a = torch.randn(2, 8, 5, 5) * 30
    ref = lrn_by_loops(a.double(), 5, 1e-4, 0.75, 2.0, 2)
    cl = a.contiguous(memory_format=torch.channels_last)
    out = local_response_norm(cl, 5, 1e-4, 0.75, 2.0, 2)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    bf = local_response_norm(a.bfloat16(), 5, 1e-4, 0.75, 2.0, 2)  # computed in float32, returned in bf16
    assert bf.dtype == torch.bfloat16
    torch.testing.assert_close(bf.double(), ref, rtol=1e-2, atol=1e-2)


def test_lrn_rejects_bad_input():
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNorm(4)
    with pytest.raises(ValueError, match="towers"):
        local_response_norm(torch.ones(1, 5, 2, 2), 5, 1e-4, 0.75, 2.0, groups=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        local_response_norm(torch.ones(5, 2, 2), 5, 1e-4, 0.75, 2.0)


def test_paper_dropout_semantics():
    torch.manual_seed(4)
    drop = Dropout(0.5, "paper")
    x = torch.rand(200, 500) + 1.0  # strictly positive
    y = drop.train()(x)
    kept = y != 0
    assert torch.equal(y[kept], x[kept])  # kept outputs unscaled while training
    assert abs(kept.float().mean().item() - 0.5) < 0.01  # each zeroed with probability 0.5
    torch.testing.assert_close(drop.eval()(x), x * 0.5)  # test time: all neurons, times 0.5
    inv = Dropout(0.5, "inverted").train()(x)
    kept = inv != 0
    torch.testing.assert_close(inv[kept], x[kept] * 2.0)  # PyTorch's convention, for contrast
    assert torch.equal(Dropout(0.5, "inverted").eval()(x), x)


def test_paper_dropout_gradient_follows_mask():
    torch.manual_seed(5)
    x = torch.rand(50, 40, requires_grad=True)
    y = Dropout(0.5, "paper").train()(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).to(x.dtype))


def spatial_norm_by_loops(a: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """cuda-convnet's rnorm written out: b = a / (k + α/size² Σ_{size×size window} a²)^β, zeros outside."""
    n, c, h, w = a.shape
    half = size // 2
    out = torch.empty_like(a)
    for y in range(h):
        for x in range(w):
            win = a[:, :, max(0, y - half) : y + half + 1, max(0, x - half) : x + half + 1]
            s = (win**2).sum((2, 3))
            out[:, :, y, x] = a[:, :, y, x] / (k + alpha / size**2 * s) ** beta
    return out


@contextlib.contextmanager
def fake_cuda_bf16_autocast():
    """Fake CUDA tensors (no GPU needed) under CUDA's bf16 autocast policy — the one that promotes
    ``pow`` to float32. ``torch.autocast("cuda")`` disables itself without a GPU, so the policy is
    switched on with the lower-level calls it makes; the fake devices pass the model's check that
    its devices exist here."""
    from unittest import mock

    import twogpu.placement

    fake = pytest.importorskip("torch._subclasses.fake_tensor", reason="FakeTensorMode is a private API")
    prev, dtype = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    with (
        fake.FakeTensorMode(allow_non_fake_inputs=True),
        mock.patch.object(twogpu.placement, "_check_device", lambda dev, name: None),
    ):
        torch.set_autocast_dtype("cuda", torch.bfloat16)
        torch.set_autocast_enabled("cuda", True)
        torch.autocast_increment_nesting()
        try:
            yield
        finally:
            torch.autocast_decrement_nesting()
            torch.set_autocast_enabled("cuda", prev)
            torch.set_autocast_dtype("cuda", dtype)


def test_spatial_norm_matches_its_definition_and_keeps_bf16_under_autocast():
    from alexnet.models.layers import SpatialResponseNorm

    torch.manual_seed(5)
    a = torch.randn(2, 3, 7, 6) * 20
    norm = SpatialResponseNorm(5, 1e-3, 0.75, 1.0)
    ref = spatial_norm_by_loops(a.double(), 5, 1e-3, 0.75, 1.0)
    torch.testing.assert_close(norm(a).double(), ref, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf = norm(a.bfloat16())
    assert bf.dtype == torch.bfloat16
    torch.testing.assert_close(bf.double(), ref, rtol=2e-2, atol=2e-2)
    with fake_cuda_bf16_autocast():
        out = norm(torch.empty(2, 3, 7, 6, device="cuda:0", dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16  # CUDA autocast's pow would make it float32


def test_cuda_convnet_preset_under_bf16_sends_bf16_at_every_crossing():
    """Issue 11 (2f): conv2's spatial normalisation must not pull the conv3 crossing to float32.
    Towers on two fake GPUs under CUDA's bf16 autocast policy. Bytes per image counted by hand
    (bf16 = 2 bytes): each tower sends its 128×13×13 pool2 maps for conv3, its 128×6×6 pool5 maps
    for fc6, its 2048 fc6 units for fc7, and tower b its 2048 fc7 units to tower a for fc8
    (cuda-convnet's fc8 on tower a only): 117,248 B (203,776 with conv3 in float32)."""
    from alexnet import AlexNet
    from twogpu import record_crossings

    with fake_cuda_bf16_autocast():
        m = AlexNet(num_classes=10, devices=("cuda:0", "cuda:1"), preset="cuda-convnet", seed=0).eval()
        with record_crossings() as records, torch.no_grad():
            side = m.cfg.input_size  # 224 (cuda-convnet's rule gives conv1 55 either way)
            m(torch.empty(2, 3, side, side, device="cuda:0"))
    by_site = {}
    for r in records:
        if r.site != "feed":  # the input's way to the towers, not a crossing
            by_site[r.site] = by_site.get(r.site, 0) + r.bytes_forward // 2
    bf16 = 2
    assert by_site == {
        "conv3": bf16 * 2 * 128 * 13 * 13,
        "fc6": bf16 * 2 * 128 * 6 * 6,
        "fc7": bf16 * 2 * 2048,
        "fc8": bf16 * 2048,
    }
    assert sum(by_site.values()) == 117_248
