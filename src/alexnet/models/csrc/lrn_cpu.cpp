// Fused local response normalisation for CPU tensors (Krizhevsky et al. 2012, section 3.3).
//
//   b_i = a_i * s_i^-β,   s_i = k + α Σ_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j²
//   ∂L/∂a_m = g_m s_m^-β − 2αβ a_m Σ_{i: |i-m| ≤ n/2} g_i a_i s_i^(−β−1)
//
// (the window is symmetric because n is odd, so "the i whose window holds m" are m's own window).
// N is the number of maps in one group (one tower); windows never cross a group boundary.
//
// One pass over memory each way: the forward reads a and writes b; the backward reads a and g and
// writes ∂L/∂a, recomputing s from a (cheap: the window lives in L1), so nothing but the input is
// kept for backward. Plain IEEE arithmetic (sqrt and division, no fast-math, no approximate rsqrt):
// results differ from the formula only by float rounding.
//
// Built on first use by alexnet/native.py; loaded with torch.ops.load_library. Registers
// torch.ops.alexnet_native.lrn_forward and .lrn_backward.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

struct Params {
  int64_t size;   // window n (odd)
  int64_t half;   // n / 2
  int64_t per;    // maps per group
  double alpha, beta, k;
};

// From s (= k + α Σ a²) in place: s ← 1/s and scale ← s^-β. For the paper's β = 0.75,
// s^-β = sqrt(s⁻¹ · sqrt(s⁻¹)): one division and two square roots, all of which vectorise.
template <typename T>
inline void invert_and_scale(T* s, T* scale, int64_t n, double beta) {
  for (int64_t i = 0; i < n; ++i) s[i] = T(1) / s[i];
  if (beta == 0.75) {
    for (int64_t i = 0; i < n; ++i) scale[i] = std::sqrt(s[i] * std::sqrt(s[i]));
  } else {
    const T b = T(beta);
    for (int64_t i = 0; i < n; ++i) scale[i] = std::pow(s[i], b);
  }
}

// out[c] = Σ_{d<size} padded[c + d] for c < n: the window sum of a zero-padded run.
template <typename T>
inline void window_sum(const T* padded, T* out, int64_t n, int64_t size) {
  for (int64_t c = 0; c < n; ++c) out[c] = padded[c];
  for (int64_t d = 1; d < size; ++d)
    for (int64_t c = 0; c < n; ++c) out[c] += padded[c + d];
}

// ---- channels_last (NHWC): one pixel's maps of one group are contiguous ----

template <typename T>
struct RowBuffers {  // per thread: padded squares / terms, 1/s, s^-β, window sums
  std::vector<T> pad, s, scale, inner;
  explicit RowBuffers(const Params& p)
      : pad(p.per + 2 * p.half, T(0)), s(p.per), scale(p.per), inner(p.per) {}
};

// 1/s (s = k + α Σ a²) and s^-β for one row of `per` maps.
template <typename T>
inline void row_norm(const T* x, const Params& p, RowBuffers<T>& b) {
  const int64_t per = p.per;
  T* sq = b.pad.data() + p.half;
  for (int64_t c = 0; c < per; ++c) sq[c] = x[c] * x[c];
  window_sum(b.pad.data(), b.s.data(), per, p.size);
  const T alpha = T(p.alpha), k = T(p.k);
  for (int64_t c = 0; c < per; ++c) b.s[c] = k + alpha * b.s[c];
  invert_and_scale(b.s.data(), b.scale.data(), per, p.beta);
}

template <typename T>
void forward_channels_last(const T* x, T* y, int64_t pixels, int64_t groups, const Params& p) {
  at::parallel_for(0, pixels, 64, [&](int64_t begin, int64_t end) {
    RowBuffers<T> b(p);
    for (int64_t px = begin; px < end; ++px) {
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t off = (px * groups + g) * p.per;
        row_norm(x + off, p, b);
        const T* xr = x + off;
        T* yr = y + off;
        for (int64_t c = 0; c < p.per; ++c) yr[c] = xr[c] * b.scale[c];
      }
    }
  });
}

template <typename T>
void backward_channels_last(const T* gy, const T* x, T* gx, int64_t pixels, int64_t groups,
                            const Params& p) {
  const T coef = T(-2.0 * p.alpha * p.beta);
  at::parallel_for(0, pixels, 64, [&](int64_t begin, int64_t end) {
    RowBuffers<T> b(p);
    for (int64_t px = begin; px < end; ++px) {
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t off = (px * groups + g) * p.per;
        const T* xr = x + off;
        const T* gr = gy + off;
        T* out = gx + off;
        row_norm(xr, p, b);
        T* t = b.pad.data() + p.half;  // g a s^-β / s, zero-padded (pad's squares are done with)
        for (int64_t c = 0; c < p.per; ++c) t[c] = gr[c] * xr[c] * b.scale[c] * b.s[c];
        window_sum(b.pad.data(), b.inner.data(), p.per, p.size);
        for (int64_t c = 0; c < p.per; ++c) out[c] = gr[c] * b.scale[c] + coef * xr[c] * b.inner[c];
      }
    }
  });
}

// ---- contiguous NCHW: a map's pixels are contiguous; work on tiles of TILE pixels ----

constexpr int64_t TILE = 64;  // 64..256 measured alike

template <typename T>
struct TileBuffers {  // per thread: (per + 2·half) padded rows of TILE, plus per-channel 1/s and s^-β
  std::vector<T> pad, s, scale, acc;
  explicit TileBuffers(const Params& p)
      : pad((p.per + 2 * p.half) * TILE, T(0)), s(p.per * TILE), scale(p.per * TILE), acc(TILE) {}
};

// acc[0..w) = Σ_{d<size} rows[(c + d)·TILE + ...]
template <typename T>
inline void tile_window_sum(const T* rows, T* acc, int64_t c, int64_t w, int64_t size) {
  const T* r = rows + c * TILE;
  for (int64_t i = 0; i < w; ++i) acc[i] = r[i];
  for (int64_t d = 1; d < size; ++d) {
    const T* rd = r + d * TILE;
    for (int64_t i = 0; i < w; ++i) acc[i] += rd[i];
  }
}

// Fills 1/s and s^-β (per × TILE) for the maps of one group starting at x (map stride hw), pixels
// [p0, p0 + w).
template <typename T>
inline void tile_norm(const T* x, int64_t hw, int64_t p0, int64_t w, const Params& p, TileBuffers<T>& b) {
  T* sq = b.pad.data() + p.half * TILE;
  for (int64_t c = 0; c < p.per; ++c) {
    const T* xr = x + c * hw + p0;
    T* row = sq + c * TILE;
    for (int64_t i = 0; i < w; ++i) row[i] = xr[i] * xr[i];
  }
  const T alpha = T(p.alpha), k = T(p.k);
  for (int64_t c = 0; c < p.per; ++c) {
    T* s = b.s.data() + c * TILE;
    tile_window_sum(b.pad.data(), s, c, w, p.size);
    for (int64_t i = 0; i < w; ++i) s[i] = k + alpha * s[i];
    invert_and_scale(s, b.scale.data() + c * TILE, w, p.beta);
  }
}

template <typename T>
void forward_contiguous(const T* x, T* y, int64_t n, int64_t groups, int64_t hw, const Params& p) {
  const int64_t tiles = (hw + TILE - 1) / TILE, units = n * groups * tiles;
  at::parallel_for(0, units, 4, [&](int64_t begin, int64_t end) {
    TileBuffers<T> b(p);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t ng = u / tiles, p0 = (u % tiles) * TILE, w = std::min(TILE, hw - p0);
      const int64_t base = ng * p.per * hw;  // (image, group) block
      tile_norm(x + base, hw, p0, w, p, b);
      for (int64_t c = 0; c < p.per; ++c) {
        const T* xr = x + base + c * hw + p0;
        const T* sc = b.scale.data() + c * TILE;
        T* yr = y + base + c * hw + p0;
        for (int64_t i = 0; i < w; ++i) yr[i] = xr[i] * sc[i];
      }
    }
  });
}

template <typename T>
void backward_contiguous(const T* gy, const T* x, T* gx, int64_t n, int64_t groups, int64_t hw,
                         const Params& p) {
  const int64_t tiles = (hw + TILE - 1) / TILE, units = n * groups * tiles;
  const T coef = T(-2.0 * p.alpha * p.beta);
  at::parallel_for(0, units, 4, [&](int64_t begin, int64_t end) {
    TileBuffers<T> b(p);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t ng = u / tiles, p0 = (u % tiles) * TILE, w = std::min(TILE, hw - p0);
      const int64_t base = ng * p.per * hw;
      tile_norm(x + base, hw, p0, w, p, b);
      T* t = b.pad.data() + p.half * TILE;  // g a s^-β / s over the squares' rows
      for (int64_t c = 0; c < p.per; ++c) {
        const T* xr = x + base + c * hw + p0;
        const T* gr = gy + base + c * hw + p0;
        const T* sc = b.scale.data() + c * TILE;
        const T* inv = b.s.data() + c * TILE;
        T* row = t + c * TILE;
        for (int64_t i = 0; i < w; ++i) row[i] = gr[i] * xr[i] * sc[i] * inv[i];
      }
      for (int64_t c = 0; c < p.per; ++c) {
        tile_window_sum(b.pad.data(), b.acc.data(), c, w, p.size);
        const T* xr = x + base + c * hw + p0;
        const T* gr = gy + base + c * hw + p0;
        const T* sc = b.scale.data() + c * TILE;
        T* out = gx + base + c * hw + p0;
        for (int64_t i = 0; i < w; ++i) out[i] = gr[i] * sc[i] + coef * xr[i] * b.acc[i];
      }
    }
  });
}

// ---- entry points ----

Params check(const at::Tensor& x, int64_t size, double alpha, double beta, double k, int64_t groups) {
  TORCH_CHECK(x.device().is_cpu(), "alexnet_native LRN: expected a CPU tensor");
  TORCH_CHECK(x.dim() == 4, "alexnet_native LRN: expected (N, C, H, W), got ", x.dim(), " dims");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "alexnet_native LRN: expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(size >= 1 && size % 2 == 1, "alexnet_native LRN: size must be odd, got ", size);
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0, "alexnet_native LRN: ", x.size(1),
              " channels cannot be split into ", groups, " groups");
  return Params{size, size / 2, x.size(1) / groups, alpha, beta, k};
}

// The layout the kernels run in: NCHW-contiguous, else channels_last-contiguous, else a copy.
at::MemoryFormat layout_of(const at::Tensor& x) {
  if (x.is_contiguous()) return at::MemoryFormat::Contiguous;
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast)) return at::MemoryFormat::ChannelsLast;
  return at::MemoryFormat::Contiguous;
}

at::Tensor lrn_forward(const at::Tensor& input, int64_t size, double alpha, double beta, double k,
                       int64_t groups) {
  const Params p = check(input, size, alpha, beta, k, groups);
  const at::MemoryFormat fmt = layout_of(input);
  const at::Tensor x = input.contiguous(fmt);
  at::Tensor y = at::empty_like(x, x.options(), fmt);
  const int64_t n = x.size(0), hw = x.size(2) * x.size(3);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "alexnet_lrn_forward", [&] {
    if (fmt == at::MemoryFormat::ChannelsLast)
      forward_channels_last<scalar_t>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
                                      n * hw, groups, p);
    else
      forward_contiguous<scalar_t>(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), n,
                                   groups, hw, p);
  });
  return y;
}

at::Tensor lrn_backward(const at::Tensor& grad_out, const at::Tensor& input, int64_t size, double alpha,
                        double beta, double k, int64_t groups) {
  const Params p = check(input, size, alpha, beta, k, groups);
  TORCH_CHECK(grad_out.sizes() == input.sizes() && grad_out.scalar_type() == input.scalar_type(),
              "alexnet_native LRN: gradient and input differ in shape or dtype");
  const at::MemoryFormat fmt = layout_of(input);
  const at::Tensor x = input.contiguous(fmt);
  const at::Tensor g = grad_out.contiguous(fmt);
  at::Tensor gx = at::empty_like(x, x.options(), fmt);
  const int64_t n = x.size(0), hw = x.size(2) * x.size(3);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "alexnet_lrn_backward", [&] {
    if (fmt == at::MemoryFormat::ChannelsLast)
      backward_channels_last<scalar_t>(g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                       gx.mutable_data_ptr<scalar_t>(), n * hw, groups, p);
    else
      backward_contiguous<scalar_t>(g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                    gx.mutable_data_ptr<scalar_t>(), n, groups, hw, p);
  });
  return gx;
}

}  // namespace

TORCH_LIBRARY(alexnet_native, m) {
  m.def("lrn_forward(Tensor x, int size, float alpha, float beta, float k, int groups) -> Tensor");
  m.def("lrn_backward(Tensor grad, Tensor x, int size, float alpha, float beta, float k, int groups) -> Tensor");
}

TORCH_LIBRARY_IMPL(alexnet_native, CPU, m) {
  m.impl("lrn_forward", &lrn_forward);
  m.impl("lrn_backward", &lrn_backward);
}
