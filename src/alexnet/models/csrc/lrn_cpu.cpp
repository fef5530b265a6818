// Fused local response normalisation for CPU tensors (Krizhevsky et al. 2012, section 3.3).
//
//   b_i = a_i * s_i^-β,   s_i = k + α Σ_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j²
//   ∂L/∂a_m = g_m s_m^-β − 2αβ a_m Σ_{i: |i-m| ≤ n/2} g_i a_i s_i^(−β−1)
//
// With relu=true the input is a = max(z, 0) of the maps z below (the conv layer's ReLU, fused:
// no pass for the ReLU, none for its gradient, which is 0 where z <= 0).
//
// (the window is symmetric because n is odd, so "the i whose window holds m" are m's own window).
// N is the number of maps in one group (one tower); windows never cross a group boundary.
//
// One pass over memory each way: the forward reads a and writes b; the backward reads a and g and
// writes ∂L/∂a, recomputing s from a (cheap: the window lives in L1), so nothing but the input is
// kept for backward. Each row of maps (channels_last: one pixel's maps of one group; NCHW: a tile
// of pixels of each map) is squared into a zero-padded buffer, then normalised in one fused loop
// that the compiler vectorises (the paper's n = 5 and β = 0.75 are compiled as constants). Plain
// IEEE arithmetic (sqrt and division, no fast-math, no approximate rsqrt): results differ from
// the formula only by float rounding.
//
// Built on first use by alexnet/native.py; loaded with torch.ops.load_library. Registers
// torch.ops.alexnet_native.lrn_forward and .lrn_backward.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

struct Params {
  int64_t size;   // window n (odd)
  int64_t half;   // n / 2
  int64_t per;    // maps per group
  double alpha, beta, k;
  bool relu;      // normalise max(a, 0): the ReLU below the LRN, fused
};

// Σ_{d<size} padded[i + d·stride]: the window sum over a zero-padded column of maps (stride 1:
// channels_last rows; stride TILE: NCHW tiles). N = 5 (the paper's n) is unrolled at compile time
// so the loop around it vectorises; N = 0 reads `size` at run time. Same order of additions.
template <int N, typename T>
inline T window(const T* __restrict padded, int64_t i, int64_t stride, int64_t size) {
  T acc = padded[i];
  if constexpr (N > 0) {
    for (int d = 1; d < N; ++d) acc += padded[i + d * stride];
  } else {
    for (int64_t d = 1; d < size; ++d) acc += padded[i + d * stride];
  }
  return acc;
}

// The LRN's input: a, or max(a, 0) with the ReLU fused (NaN stays NaN, as in torch.relu).
template <bool RELU, typename T>
inline T input(T a) {
  if constexpr (RELU) {
    return a < T(0) ? T(0) : a;
  } else {
    return a;
  }
}

// sq[i] = a_i² of the LRN's input a = x (or max(x, 0) with the ReLU fused), i < n.
template <bool RELU, typename T>
inline void squares(const T* __restrict x, T* __restrict sq, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T a = input<RELU>(x[i]);
    sq[i] = a * a;
  }
}

// The ReLU's gradient fused: 0 where a <= 0 (as torch's threshold_backward), else the value.
template <bool RELU, typename T>
inline T through_relu(T a, T value) {
  if constexpr (RELU) {
    return a <= T(0) ? T(0) : value;
  } else {
    return value;
  }
}

// s^-β from s⁻¹. For the paper's β = 0.75 (P075): sqrt(s⁻¹ · sqrt(s⁻¹)), two square roots that
// vectorise, instead of pow.
template <bool P075, typename T>
inline T scale_of(T inv, T beta) {
  if constexpr (P075) {
    return std::sqrt(inv * std::sqrt(inv));
  } else {
    return std::pow(inv, beta);
  }
}

// Calls f(N, P075, RELU) (std::integral_constant / std::bool_constant) for the compiled variant:
// the paper's n = 5 and β = 0.75 as constants, or any odd n and β (pow) read at run time; each
// with or without the fused ReLU.
template <typename F>
inline void dispatch(const Params& p, F&& f) {
  const bool paper = p.size == 5 && p.beta == 0.75;
  if (paper && p.relu) f(std::integral_constant<int, 5>{}, std::true_type{}, std::true_type{});
  else if (paper) f(std::integral_constant<int, 5>{}, std::true_type{}, std::false_type{});
  else if (p.relu) f(std::integral_constant<int, 0>{}, std::false_type{}, std::true_type{});
  else f(std::integral_constant<int, 0>{}, std::false_type{}, std::false_type{});
}

// ---- channels_last (NHWC): row r = pixel · groups + group holds `per` contiguous maps ----

// Rows [begin, end) of x normalised into y (the same row offsets); pad: per + 2·half zeros.
template <int N, bool P075, bool RELU, typename T>
inline void forward_rows(const T* x, T* y, int64_t begin, int64_t end, const Params& p, T* __restrict pad) {
  T* __restrict sq = pad + p.half;
  const T alpha = T(p.alpha), k = T(p.k), beta = T(p.beta);
  for (int64_t r = begin; r < end; ++r) {
    const T* __restrict xr = x + r * p.per;
    T* __restrict yr = y + r * p.per;
    squares<RELU>(xr, sq, p.per);
    for (int64_t c = 0; c < p.per; ++c) {
      const T inv = T(1) / (k + alpha * window<N>(pad, c, 1, p.size));
      yr[c] = input<RELU>(xr[c]) * scale_of<P075>(inv, beta);
    }
  }
}

template <int N, bool P075, bool RELU, typename T>
void forward_channels_last(const T* x, T* y, int64_t rows, const Params& p) {
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    std::vector<T> buf(p.per + 2 * p.half, T(0));  // squares, zero-padded by half each side
    forward_rows<N, P075, RELU>(x, y, begin, end, p, buf.data());
  });
}

// LRN, then max-pooling over K×K windows S apart (no padding, floor mode), channels_last, forward
// only: per image, the LRN of the K image rows under one row of windows is computed into a small
// buffer (the K − S rows shared with the next row of windows are kept, not recomputed) and pooled
// from there, so the LRN's full-size output is never written to memory. The same arithmetic as
// lrn_forward, and the same maximum as max_pool2d (reading order, greater or NaN): bit-identical.
template <int N, bool P075, bool RELU, typename T>
void forward_pool_channels_last(const T* x, T* y, int64_t n, int64_t h, int64_t w, int64_t channels,
                                int64_t groups, int64_t kernel, int64_t stride, const Params& p) {
  const int64_t oh = (h - kernel) / stride + 1, ow = (w - kernel) / stride + 1;
  const int64_t row = w * channels;  // one image row, all maps
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> pad(p.per + 2 * p.half, T(0));
    std::vector<T> rows(kernel * row);
    std::vector<T> best(channels);
    for (int64_t b = begin; b < end; ++b) {
      const T* xb = x + b * h * row;
      for (int64_t i = 0; i < oh; ++i) {
        const int64_t top = i * stride;
        // `rows` holds image rows [top − stride, top − stride + kernel): the last kernel − stride of
        // them are this window row's first ones; move them to the front, normalise the rest
        const int64_t keep = i > 0 ? std::max<int64_t>(0, kernel - stride) : 0;
        if (keep > 0) std::copy(rows.begin() + stride * row, rows.begin() + (stride + keep) * row, rows.begin());
        for (int64_t u = keep; u < kernel; ++u)
          forward_rows<N, P075, RELU>(xb + (top + u) * row, rows.data() + u * row, 0, w * groups, p, pad.data());
        T* yr = y + ((b * oh + i) * ow) * channels;
        for (int64_t j = 0; j < ow; ++j) {
          T* __restrict m = best.data();
          for (int64_t c = 0; c < channels; ++c) m[c] = -std::numeric_limits<T>::infinity();
          for (int64_t u = 0; u < kernel; ++u) {
            for (int64_t v = 0; v < kernel; ++v) {
              const T* __restrict cand = rows.data() + u * row + (j * stride + v) * channels;
              for (int64_t c = 0; c < channels; ++c) {
                const T val = cand[c];
                m[c] = ((val > m[c]) || (val != val)) ? val : m[c];
              }
            }
          }
          std::copy(m, m + channels, yr + j * channels);
        }
      }
    }
  });
}

template <int N, bool P075, bool RELU, typename T>
void backward_channels_last(const T* gy, const T* x, T* gx, int64_t rows, const Params& p) {
  const int64_t padded = p.per + 2 * p.half;
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    std::vector<T> buf(2 * padded + p.per, T(0));  // squares, terms (both zero-padded), s^-β
    T* __restrict pad = buf.data();
    T* __restrict tpad = pad + padded;
    T* __restrict scale = tpad + padded;
    T* __restrict sq = pad + p.half;
    T* __restrict t = tpad + p.half;
    const T alpha = T(p.alpha), k = T(p.k), beta = T(p.beta), coef = T(-2.0 * p.alpha * p.beta);
    for (int64_t r = begin; r < end; ++r) {
      const T* __restrict xr = x + r * p.per;
      const T* __restrict gr = gy + r * p.per;
      T* __restrict out = gx + r * p.per;
      squares<RELU>(xr, sq, p.per);
      for (int64_t c = 0; c < p.per; ++c) {
        const T inv = T(1) / (k + alpha * window<N>(pad, c, 1, p.size));
        const T sc = scale_of<P075>(inv, beta);
        scale[c] = sc;
        t[c] = gr[c] * input<RELU>(xr[c]) * sc * inv;  // g a s^-β / s
      }
      for (int64_t c = 0; c < p.per; ++c) {
        const T a = input<RELU>(xr[c]);
        out[c] = through_relu<RELU>(xr[c], gr[c] * scale[c] + coef * a * window<N>(tpad, c, 1, p.size));
      }
    }
  });
}

// ---- contiguous NCHW: a map's pixels are contiguous; work on tiles of TILE pixels ----

constexpr int64_t TILE = 64;  // 64..256 measured alike

// The squares of one (image, group) block's maps (map stride hw), pixels [p0, p0 + w), into the
// rows of `pad` after its `half` zero rows.
template <bool RELU, typename T>
inline void tile_squares(const T* x, int64_t hw, int64_t p0, int64_t w, const Params& p, T* pad) {
  for (int64_t c = 0; c < p.per; ++c) {
    squares<RELU>(x + c * hw + p0, pad + (p.half + c) * TILE, w);
  }
}

template <int N, bool P075, bool RELU, typename T>
void forward_contiguous(const T* x, T* y, int64_t blocks, int64_t hw, const Params& p) {
  const int64_t tiles = (hw + TILE - 1) / TILE;
  at::parallel_for(0, blocks * tiles, 4, [&](int64_t begin, int64_t end) {
    std::vector<T> buf((p.per + 2 * p.half) * TILE, T(0));
    T* pad = buf.data();
    const T alpha = T(p.alpha), k = T(p.k), beta = T(p.beta);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t base = (u / tiles) * p.per * hw, p0 = (u % tiles) * TILE, w = std::min(TILE, hw - p0);
      tile_squares<RELU>(x + base, hw, p0, w, p, pad);
      for (int64_t c = 0; c < p.per; ++c) {
        const T* __restrict xr = x + base + c * hw + p0;
        const T* __restrict rows = pad + c * TILE;
        T* __restrict yr = y + base + c * hw + p0;
        for (int64_t i = 0; i < w; ++i) {
          const T inv = T(1) / (k + alpha * window<N>(rows, i, TILE, p.size));
          yr[i] = input<RELU>(xr[i]) * scale_of<P075>(inv, beta);
        }
      }
    }
  });
}

template <int N, bool P075, bool RELU, typename T>
void backward_contiguous(const T* gy, const T* x, T* gx, int64_t blocks, int64_t hw, const Params& p) {
  const int64_t tiles = (hw + TILE - 1) / TILE, padded = (p.per + 2 * p.half) * TILE;
  at::parallel_for(0, blocks * tiles, 4, [&](int64_t begin, int64_t end) {
    std::vector<T> buf(2 * padded + p.per * TILE, T(0));  // squares, terms (zero-padded), s^-β
    T* pad = buf.data();
    T* tpad = pad + padded;
    T* scale = tpad + padded;
    const T alpha = T(p.alpha), k = T(p.k), beta = T(p.beta), coef = T(-2.0 * p.alpha * p.beta);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t base = (u / tiles) * p.per * hw, p0 = (u % tiles) * TILE, w = std::min(TILE, hw - p0);
      tile_squares<RELU>(x + base, hw, p0, w, p, pad);
      for (int64_t c = 0; c < p.per; ++c) {
        const T* __restrict xr = x + base + c * hw + p0;
        const T* __restrict gr = gy + base + c * hw + p0;
        const T* __restrict rows = pad + c * TILE;
        T* __restrict sc = scale + c * TILE;
        T* __restrict t = tpad + (p.half + c) * TILE;
        for (int64_t i = 0; i < w; ++i) {
          const T inv = T(1) / (k + alpha * window<N>(rows, i, TILE, p.size));
          sc[i] = scale_of<P075>(inv, beta);
          t[i] = gr[i] * input<RELU>(xr[i]) * sc[i] * inv;  // g a s^-β / s
        }
      }
      for (int64_t c = 0; c < p.per; ++c) {
        const T* __restrict xr = x + base + c * hw + p0;
        const T* __restrict gr = gy + base + c * hw + p0;
        const T* __restrict sc = scale + c * TILE;
        const T* __restrict rows = tpad + c * TILE;
        T* __restrict out = gx + base + c * hw + p0;
        for (int64_t i = 0; i < w; ++i) {
          const T a = input<RELU>(xr[i]);
          out[i] = through_relu<RELU>(xr[i], gr[i] * sc[i] + coef * a * window<N>(rows, i, TILE, p.size));
        }
      }
    }
  });
}

// ---- entry points ----

Params check(const at::Tensor& x, int64_t size, double alpha, double beta, double k, int64_t groups,
             bool relu) {
  TORCH_CHECK(x.device().is_cpu(), "alexnet_native LRN: expected a CPU tensor");
  TORCH_CHECK(x.dim() == 4, "alexnet_native LRN: expected (N, C, H, W), got ", x.dim(), " dims");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "alexnet_native LRN: expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(size >= 1 && size % 2 == 1, "alexnet_native LRN: size must be odd, got ", size);
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0, "alexnet_native LRN: ", x.size(1),
              " channels cannot be split into ", groups, " groups");
  return Params{size, size / 2, x.size(1) / groups, alpha, beta, k, relu};
}

// The layout the kernels run in: NCHW-contiguous, else channels_last-contiguous, else a copy.
at::MemoryFormat layout_of(const at::Tensor& x) {
  if (x.is_contiguous()) return at::MemoryFormat::Contiguous;
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast)) return at::MemoryFormat::ChannelsLast;
  return at::MemoryFormat::Contiguous;
}

at::Tensor lrn_forward(const at::Tensor& input, int64_t size, double alpha, double beta, double k,
                       int64_t groups, bool relu) {
  const Params p = check(input, size, alpha, beta, k, groups, relu);
  const at::MemoryFormat fmt = layout_of(input);
  const at::Tensor x = input.contiguous(fmt);
  at::Tensor y = at::empty_like(x, x.options(), fmt);
  const int64_t n = x.size(0), hw = x.size(2) * x.size(3);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "alexnet_lrn_forward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    dispatch(p, [&](auto size, auto p075, auto relu) {
      if (fmt == at::MemoryFormat::ChannelsLast)
        forward_channels_last<size(), p075(), relu()>(xp, yp, n * hw * groups, p);
      else
        forward_contiguous<size(), p075(), relu()>(xp, yp, n * groups, hw, p);
    });
  });
  return y;
}

at::Tensor lrn_max_pool_forward(const at::Tensor& input, int64_t size, double alpha, double beta, double k,
                                int64_t groups, bool relu, int64_t kernel, int64_t stride) {
  const Params p = check(input, size, alpha, beta, k, groups, relu);
  TORCH_CHECK(kernel >= 1 && stride >= 1 && input.size(2) >= kernel && input.size(3) >= kernel,
              "alexnet_native LRN + max-pool: the window must fit the maps");
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t oh = (h - kernel) / stride + 1, ow = (w - kernel) / stride + 1;
  at::Tensor y = at::empty({n, c, oh, ow}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "alexnet_lrn_max_pool_forward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    dispatch(p, [&](auto size, auto p075, auto relu) {
      forward_pool_channels_last<size(), p075(), relu()>(xp, yp, n, h, w, c, groups, kernel, stride, p);
    });
  });
  return y;
}

at::Tensor lrn_backward(const at::Tensor& grad_out, const at::Tensor& input, int64_t size, double alpha,
                        double beta, double k, int64_t groups, bool relu) {
  const Params p = check(input, size, alpha, beta, k, groups, relu);
  TORCH_CHECK(grad_out.sizes() == input.sizes() && grad_out.scalar_type() == input.scalar_type(),
              "alexnet_native LRN: gradient and input differ in shape or dtype");
  const at::MemoryFormat fmt = layout_of(input);
  const at::Tensor x = input.contiguous(fmt);
  const at::Tensor g = grad_out.contiguous(fmt);
  at::Tensor gx = at::empty_like(x, x.options(), fmt);
  const int64_t n = x.size(0), hw = x.size(2) * x.size(3);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "alexnet_lrn_backward", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    dispatch(p, [&](auto size, auto p075, auto relu) {
      if (fmt == at::MemoryFormat::ChannelsLast)
        backward_channels_last<size(), p075(), relu()>(gp, xp, gxp, n * hw * groups, p);
      else
        backward_contiguous<size(), p075(), relu()>(gp, xp, gxp, n * groups, hw, p);
    });
  });
  return gx;
}

}  // namespace

TORCH_LIBRARY(alexnet_native, m) {
  m.def("lrn_forward(Tensor x, int size, float alpha, float beta, float k, int groups, bool relu=False) -> Tensor");
  m.def(
      "lrn_max_pool_forward(Tensor x, int size, float alpha, float beta, float k, int groups, bool relu, "
      "int kernel, int stride) -> Tensor");
  m.def(
      "lrn_backward(Tensor grad, Tensor x, int size, float alpha, float beta, float k, int groups, "
      "bool relu=False) -> Tensor");
}

TORCH_LIBRARY_IMPL(alexnet_native, CPU, m) {
  m.impl("lrn_max_pool_forward", &lrn_max_pool_forward);
  m.impl("lrn_forward", &lrn_forward);
  m.impl("lrn_backward", &lrn_backward);
}
