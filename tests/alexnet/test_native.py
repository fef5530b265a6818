"""The fused native LRN kernel (alexnet/csrc/lrn_cpu.cpp) against section 3.3's formula written
out here with explicit zero padding, in both memory layouts, odd shapes and parameters; its build,
cache and fallback; and tracing by torch.compile."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from alexnet.models import native
from alexnet.models.layers import local_response_norm

pytestmark = pytest.mark.skipif(native.disabled(), reason="native kernels disabled by ALEXNET_NATIVE")


@pytest.fixture(scope="module", autouse=True)
def kernel():
    assert native.load(), native.status()  # a compiler is part of the test machine


def lrn_formula(a: torch.Tensor, n: int, alpha: float, beta: float, k: float, groups: int) -> torch.Tensor:
    """b_i = a_i / (k + α Σ_{j=max(0,i−n/2)}^{min(N−1,i+n/2)} a_j²)^β per group of N maps: the
    clipped window as zero padding of n/2 maps on each side of the group."""
    N = a.shape[1] // groups
    out = []
    for g in range(groups):
        x = a[:, g * N : (g + 1) * N]
        sq = F.pad(x * x, (0, 0, 0, 0, n // 2, n // 2))  # pads dim 1 (channels)
        s = sum(sq[:, d : d + N] for d in range(n))
        out.append(x / (k + alpha * s) ** beta)
    return torch.cat(out, 1)


def fused(a, n, alpha, beta, k, groups):
    return local_response_norm(a, n, alpha, beta, k, groups, window="fused")


CASES = [  # (maps per group, groups, n, α, β, k)
    (48, 2, 5, 1e-4, 0.75, 2.0),  # LRN1 of the grouped twin (the paper's constants)
    (7, 1, 5, 1e-3, 0.6, 1.0),  # β ≠ 0.75 takes the pow path
    (2, 3, 7, 1e-3, 0.75, 2.0),  # window wider than the group: every map sees all of it
    (1, 2, 3, 1e-2, 0.75, 2.0),  # one map per group
    (9, 1, 1, 1e-2, 0.75, 2.0),  # n = 1: each map normalised by itself only
]


@pytest.mark.parametrize("per,groups,n,alpha,beta,k", CASES)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_fused_matches_formula_and_its_gradient(per, groups, n, alpha, beta, k, layout):
    torch.manual_seed(per * 10 + groups)
    base = torch.randn(2, per * groups, 5, 67, dtype=torch.float64) * 40  # 335 pixels: 5 tiles + a tail
    if layout == "channels_last":
        base = base.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        base = torch.randn(2, per * groups, 67, 5, dtype=torch.float64).transpose(2, 3) * 40  # neither layout
    a = base.detach().requires_grad_()
    want = lrn_formula(a, n, alpha, beta, k, groups)
    assert (want - a).abs().max() > 0.5  # the normalisation does something
    got = fused(a, n, alpha, beta, k, groups)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(want)
    (gw,) = torch.autograd.grad(want, a, g)
    (gh,) = torch.autograd.grad(got, a, g)
    torch.testing.assert_close(gh, gw, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("n,beta", [(5, 0.75), (3, 0.6)])
def test_fused_relu_matches_relu_then_formula(layout, n, beta):
    """relu=True is the conv layer's ReLU then the LRN: forward, and the gradient through both
    (zero where the input is negative), against the formula applied to torch.relu of the input."""
    torch.manual_seed(11)
    base = torch.randn(2, 12, 5, 67, dtype=torch.float64) * 40  # half the inputs negative
    if layout == "channels_last":
        base = base.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        base = torch.randn(2, 12, 67, 5, dtype=torch.float64).transpose(2, 3) * 40
    a = base.detach().requires_grad_()
    want = lrn_formula(torch.relu(a), n, 1e-3, beta, 2.0, 2)
    got = local_response_norm(a, n, 1e-3, beta, 2.0, 2, window="fused", relu=True)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(want)
    (gw,) = torch.autograd.grad(want, a, g)
    (gh,) = torch.autograd.grad(got, a, g)
    assert (gh[a < 0] == 0).all() and (gh[a > 0] != 0).all()
    torch.testing.assert_close(gh, gw, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_float32_on_conv1_sized_maps(channels_last):
    torch.manual_seed(5)
    x = torch.randn(2, 96, 55, 55).relu_().mul_(30)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = fused(x, 5, 1e-4, 0.75, 2.0, 2)
    assert y.dtype == torch.float32 and y.is_contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )
    x64 = x.detach().double().requires_grad_()
    want = lrn_formula(x64, 5, 1e-4, 0.75, 2.0, 2)
    torch.testing.assert_close(y.double(), want, rtol=2e-6, atol=1e-5)
    other = torch.contiguous_format if channels_last else torch.channels_last
    g = torch.randn_like(y).contiguous(memory_format=other)  # gradient in the other layout
    (gh,) = torch.autograd.grad(y, x, g)
    (gw,) = torch.autograd.grad(want, x64, g.double())
    torch.testing.assert_close(gh.double(), gw, rtol=1e-5, atol=1e-6)


def test_auto_uses_the_fused_kernel_on_the_cpu(monkeypatch):
    import alexnet.models.layers as layers

    calls, original = [], layers._FusedLRNFunction

    class Spy(original):
        @staticmethod
        def forward(ctx, *args):
            calls.append(args[0].shape)
            return original.forward(ctx, *args)

    monkeypatch.setattr(layers, "_FusedLRNFunction", Spy)
    x = torch.rand(1, 6, 3, 3)
    local_response_norm(x, 5, 1e-4, 0.75, 2.0)
    assert calls == [x.shape]
    local_response_norm(x.double(), 5, 1e-4, 0.75, 2.0, window="mm")
    assert len(calls) == 1  # an explicit eager window is honoured


@pytest.mark.parametrize(
    "shape,channels_last", [((0, 6, 3, 3), False), ((2, 6, 1, 1), True), ((2, 1, 3, 3), True)]
)
def test_fused_degenerate_shapes(shape, channels_last):
    x = torch.rand(shape, dtype=torch.float64) * 40  # no images; one pixel; one map (ambiguous layouts)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = fused(x, 5, 1e-3, 0.75, 2.0, 1)
    torch.testing.assert_close(y, lrn_formula(x, 5, 1e-3, 0.75, 2.0, 1))
    g = torch.rand_like(y)
    torch.testing.assert_close(
        torch.autograd.grad(y, x, g)[0], torch.autograd.grad(lrn_formula(x, 5, 1e-3, 0.75, 2.0, 1), x, g)[0]
    )


@pytest.mark.parametrize("window", ["fused", "mm", "shift"])
def test_double_backward_is_an_error_not_a_wrong_number(window):
    x = (torch.randn(1, 6, 2, 2, dtype=torch.float64) * 30).requires_grad_()
    y = local_response_norm(x, 5, 1e-3, 0.75, 2.0, 1, window=window).pow(2).sum()
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(y, x, create_graph=True)


def test_fused_rejects_what_it_cannot_run():
    with pytest.raises(RuntimeError, match="fused"):
        local_response_norm(torch.ones(1, 4, 2, 2, dtype=torch.int32), 5, 1e-4, 0.75, 2.0, window="fused")
    with pytest.raises(RuntimeError, match="odd"):
        torch.ops.alexnet_native.lrn_forward(torch.ones(1, 4, 2, 2), 4, 1e-4, 0.75, 2.0, 1)


def test_torch_compile_traces_through_the_kernel():
    torch.manual_seed(6)
    x = (torch.randn(2, 8, 4, 4) * 30).requires_grad_()
    f = lambda t: local_response_norm(t, 5, 1e-4, 0.75, 2.0, 2).sum()  # noqa: E731
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    (g1,) = torch.autograd.grad(compiled(x), x)
    (g2,) = torch.autograd.grad(f(x), x)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_fake_implementations_agree_with_the_kernels(layout):
    """torch.library.opcheck: schema, and the shape/stride-only versions used by torch.compile
    against real runs (a wrong output layout there would mislead compiled code)."""
    x = torch.rand(2, 6, 4, 3) * 20
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = torch.rand(2, 6, 3, 4).transpose(2, 3) * 20
    g = torch.randn(2, 6, 4, 3)
    tests = ("test_schema", "test_faketensor")
    torch.library.opcheck(
        torch.ops.alexnet_native.lrn_forward.default, (x, 5, 1e-4, 0.75, 2.0, 2), test_utils=tests
    )
    torch.library.opcheck(
        torch.ops.alexnet_native.lrn_backward.default, (g, x, 5, 1e-4, 0.75, 2.0, 2), test_utils=tests
    )


def test_build_is_cached_and_leaves_no_temporaries(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_NATIVE_CACHE", str(tmp_path))
    path = native.build()
    assert path.parent == tmp_path and path.exists()
    mtime = path.stat().st_mtime_ns
    assert native.build() == path and path.stat().st_mtime_ns == mtime  # found, not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == [".build.lock", path.name]
    assert path.stat().st_mode & 0o755 == 0o755  # other users of a shared cache can load it


def _run(code: str, unset: tuple[str, ...] = (), **env) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python, with ``env`` added to this environment and ``unset`` removed."""
    base = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**base, **env}, timeout=120
    )


CHECK_FALLBACK = """
import warnings, torch
from alexnet.models.layers import local_response_norm
from alexnet.models import native
x = torch.rand(2, 6, 3, 3, dtype=torch.float64) * 40
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    y = local_response_norm(x, 5, 1e-4, 0.75, 2.0)
    y2 = local_response_norm(x, 5, 1e-4, 0.75, 2.0)
print(len([m for m in w if "native CPU kernels" in str(m.message)]), native.status())
s = torch.nn.functional.pad(x * x, (0, 0, 0, 0, 2, 2))
want = x / (2.0 + 1e-4 * sum(s[:, d:d + 6] for d in range(5))) ** 0.75
torch.testing.assert_close(y, want)
"""


def test_without_a_compiler_the_eager_lrn_runs_with_one_warning(tmp_path):
    proc = _run(CHECK_FALLBACK, CXX=str(tmp_path / "no-such-compiler"), ALEXNET_NATIVE_CACHE=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    count, status = proc.stdout.split(" ", 1)
    assert count == "1" and status.startswith("eager PyTorch")


def test_without_any_compiler_on_path(tmp_path):
    proc = _run(CHECK_FALLBACK, unset=("CXX",), PATH=str(tmp_path), ALEXNET_NATIVE_CACHE=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("1 eager PyTorch (no C++ compiler found")


COMPILE_FRESH = """
import torch
from alexnet.models.layers import local_response_norm
x = (torch.randn(2, 8, 4, 4) * 30).requires_grad_()
f = lambda t: local_response_norm(t, 5, 1e-4, 0.75, 2.0, 2).sum()
(g1,) = torch.autograd.grad(torch.compile(f, backend="aot_eager", fullgraph=True)(x), x)
(g2,) = torch.autograd.grad(f(x), x)
torch.testing.assert_close(g1, g2)
print("ok")
"""


def test_torch_compile_fullgraph_in_a_fresh_process():
    # the kernel is not loaded yet when tracing starts: tracing must not try to build it
    proc = _run(COMPILE_FRESH)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_disabled_by_environment():
    proc = _run(CHECK_FALLBACK, ALEXNET_NATIVE="0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("0 eager PyTorch (disabled by ALEXNET_NATIVE=0)")
